#!/usr/bin/env bats

@test "placeholder faults" {
  true
}
