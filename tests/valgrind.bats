#!/usr/bin/env bats
# Memory checking: a whole round trip (register, poll, co-process, replies,
# state save, exit) run under valgrind memcheck, which must report no error
# and no definitely lost block. Skipped on a sanitizer build (the two do not
# mix) and where valgrind is not installed.

load helpers

setup() {
	T=$BATS_TEST_TMPDIR
	: "${MC_BIN:?MC_BIN must name the molecule-connect binary}"
	if ! command -v valgrind >/dev/null 2>&1; then
		skip "valgrind is not installed"
	fi
	if valgrind_sanitized "$MC_BIN"; then
		skip "MC_BIN is built with sanitizers: valgrind cannot run it"
	fi
	fake_start --rate-limit 0
	new_ws >/dev/null
	new_peer >/dev/null
	export MOLECULE_WORKSPACE_TOKEN=$WS_TOKEN
}

teardown() {
	fake_stop
}

# valgrind_sanitized BIN: true when BIN carries AddressSanitizer or
# UndefinedBehaviorSanitizer (linked in statically, as clang does, or as a
# shared library, as gcc does).
valgrind_sanitized() {
	if nm -an "$1" 2>/dev/null | grep -qE '__asan_init|__ubsan_handle_'; then
		return 0
	fi
	ldd "$1" 2>/dev/null | grep -qE 'lib(asan|ubsan|tsan|lsan)\.so'
}

# valgrind_replies PEER: the texts of the replies posted to PEER, one per line.
valgrind_replies() {
	posts a2a | jq -r --arg p "/workspaces/$1/a2a" \
		'.[] | select(.path == $p) | .body.params.message.parts | map(.text) | join("")'
}

@test "valgrind: 5 messages through a co-process with --once: no memory error, nothing definitely lost" {
	local ids
	ids=$(queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"count\":5,\"text\":\"m{n}\"}")
	assert_eq "$(wc -l <<<"$ids")" 5 "queued messages"
	# The co-process (jq) is not traced: only the bridge runs under memcheck.
	run timeout 120 valgrind --error-exitcode=99 --leak-check=full \
		--errors-for-leak-kinds=definite --track-fds=no --log-file="$T/valgrind.log" \
		"$MC_BIN" --api-url "$FAKE_URL" --state-dir "$T/state" --interval 0.05 --heartbeat 1 \
		--once "$WS_ID" -- jq -c --unbuffered '{id, text: ("echo: " + .text)}' \
		</dev/null 2>"$T/err" 3>&-
	if [ "$status" -ne 0 ]; then
		echo "exit status $status; stderr:" >&2
		tail -n 20 "$T/err" >&2
		echo "valgrind log:" >&2
		tail -n 60 "$T/valgrind.log" >&2
	fi
	assert_eq "$status" 0 "exit status under valgrind"
	grep -q 'ERROR SUMMARY: 0 errors' "$T/valgrind.log"
	grep -qE 'definitely lost: 0 bytes in 0 blocks|All heap blocks were freed -- no leaks are possible' \
		"$T/valgrind.log"
	# The round trip really happened: every message answered, in order.
	assert_eq "$(valgrind_replies "$PEER_ID")" "$(printf 'echo: m%d\n' 1 2 3 4 5)" "replies posted"
	# And the cursor moved past the last one.
	assert_eq "$(jq -r .last_since_id "$T/state/$WS_ID.json")" "$(tail -n 1 <<<"$ids")" "saved cursor"
}
