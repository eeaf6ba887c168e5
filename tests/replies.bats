#!/usr/bin/env bats

@test "placeholder replies" {
  true
}
