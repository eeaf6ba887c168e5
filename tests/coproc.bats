#!/usr/bin/env bats

@test "placeholder coproc" {
  true
}
