#!/usr/bin/env bats

@test "placeholder exec" {
  true
}
