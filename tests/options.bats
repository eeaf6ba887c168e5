#!/usr/bin/env bats

@test "placeholder options" {
  true
}
