#!/usr/bin/env bats

@test "placeholder shutdown" {
  true
}
