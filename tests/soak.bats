#!/usr/bin/env bats
# The short soak: a few hundred messages under injected faults, handler deaths
# and kill -9 of the bridge; fails when a delivery bound is broken. `make soak`
# runs the long form.

@test "soak: nothing lost, duplicates bounded, nothing done answered again, per-peer order, no growth" {
	run bash "$TOP_SRCDIR/tests/soak/soak.sh" "$MC_BIN" "$FAKE_BIN" 300 2
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *$'lost\t0'* ]]
	[[ "$output" == *"RESULT ok"* ]]
}
