#!/usr/bin/env bats

@test "placeholder fake-platform" {
  true
}
