#!/usr/bin/env bats

@test "placeholder docs" {
  true
}
