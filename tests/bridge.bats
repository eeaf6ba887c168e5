#!/usr/bin/env bats

@test "placeholder bridge" {
  true
}
