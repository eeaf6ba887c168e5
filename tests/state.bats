#!/usr/bin/env bats

@test "placeholder state" {
  true
}
