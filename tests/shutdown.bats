#!/usr/bin/env bats
# shutdown.bats: how the bridge stops (SIGTERM/SIGINT drain, drain timeout, a second
# signal, end of input, a reader that went away) and how it behaves with a slow
# reader, without losing or wrongly finishing a message.
# Needs MC_BIN and FAKE_BIN (set by make check).

load helpers

setup() {
	: "${MC_BIN:?MC_BIN must name the built molecule-connect}"
	unset MOLECULE_API_URL MOLECULE_ORG_ID XDG_CONFIG_HOME
	T=$BATS_TEST_TMPDIR
	SHUTDOWN_STATE=$T/state
	SHUTDOWN_PID=
	SHUTDOWN_HEAD_PID=
	fake_start --rate-limit 0
	new_ws >/dev/null
	new_peer >/dev/null
	export MOLECULE_WORKSPACE_TOKEN=$WS_TOKEN
}

teardown() {
	shutdown_kill
	if [ -n "${SHUTDOWN_HEAD_PID:-}" ]; then
		kill -KILL "$SHUTDOWN_HEAD_PID" 2>/dev/null || true
		wait "$SHUTDOWN_HEAD_PID" 2>/dev/null || true
	fi
	exec 5>&- 6>&- 7>&-
	fake_stop
}

# shutdown_args: the options every bridge in this file gets.
shutdown_args() {
	SHUTDOWN_ARGS=(--api-url "$FAKE_URL" --state-dir "$SHUTDOWN_STATE" --interval 0.05 --heartbeat 1)
}

# shutdown_stdin: makes the FIFO $T/in, open for writing (and reading, so that
# opening it never blocks) on fd 5: the bridge's stdin sees no end until fd 5 closes.
shutdown_stdin() {
	rm -f "$T/in"
	mkfifo "$T/in"
	exec 5<>"$T/in"
}

# shutdown_start [OPTIONS...]: starts a filter-mode bridge in the background, stdin
# from $T/in (see shutdown_stdin), stdout to $T/out, stderr appended to $T/err.
shutdown_start() {
	shutdown_stdin
	shutdown_args
	: >"$T/out"
	"$MC_BIN" "${SHUTDOWN_ARGS[@]}" "$@" "$WS_ID" <"$T/in" >"$T/out" 2>>"$T/err" 3>&- 5>&- 6>&- 7>&- &
	SHUTDOWN_PID=$!
}

# shutdown_gone: true once the bridge has exited.
shutdown_gone() {
	! kill -0 "$SHUTDOWN_PID" 2>/dev/null
}

# shutdown_wait_exit SECS: waits at most SECS for the bridge to exit; sets SHUTDOWN_RC.
shutdown_wait_exit() {
	wait_until "$1" shutdown_gone || { echo "the bridge still runs after $1 s"; cat "$T/err"; return 1; }
	SHUTDOWN_RC=0
	wait "$SHUTDOWN_PID" || SHUTDOWN_RC=$?
	SHUTDOWN_PID=
}

# shutdown_kill: stops the bridge if it still runs (SIGTERM twice, then SIGKILL).
shutdown_kill() {
	[ -n "${SHUTDOWN_PID:-}" ] || return 0
	kill -TERM "$SHUTDOWN_PID" 2>/dev/null || true
	nap 0.1
	kill -TERM "$SHUTDOWN_PID" 2>/dev/null || true
	wait_until 5 shutdown_gone >/dev/null || kill -KILL "$SHUTDOWN_PID" 2>/dev/null || true
	wait "$SHUTDOWN_PID" 2>/dev/null || true
	SHUTDOWN_PID=
}

# shutdown_lines N [FILE]: true when FILE ($T/out) holds at least N lines.
shutdown_lines() {
	[ "$(grep -c '' "${2:-$T/out}")" -ge "$1" ]
}

# shutdown_id TEXT: the id of the first message line whose text is TEXT.
shutdown_id() {
	jq -r --arg t "$1" 'select(.text == $t) | .id' "$T/out" | head -n 1
}

# shutdown_texts [FILE]: the texts of the message lines of FILE ($T/out), comma-separated.
shutdown_texts() {
	jq -r .text "${1:-$T/out}" | paste -sd, -
}

# shutdown_a2a_texts: the first text part of every a2a post, in order, as JSON.
shutdown_a2a_texts() {
	posts a2a "$WS_ID" | jq -c '[.[].body.params.message.parts[0].text]'
}

# shutdown_state JQ: runs JQ on the state file.
shutdown_state() {
	jq -r "$1" "$SHUTDOWN_STATE/$WS_ID.json"
}

# shutdown_nothing_done: the state file exists and moves no cursor: no last_since_id,
# nothing done above it.
shutdown_nothing_done() {
	assert_eq "$(shutdown_state '[(.last_since_id // ""), (.done_ids // [] | length)] | @json')" '["",0]' "cursor and done ids"
}

# shutdown_heartbeats: how many heartbeats the fake platform has seen.
shutdown_heartbeats() {
	posts heartbeat "$WS_ID" | jq length
}

# shutdown_heartbeats_at_least N: true when the fake platform has seen N heartbeats.
shutdown_heartbeats_at_least() {
	[ "$(shutdown_heartbeats)" -ge "$1" ]
}

# shutdown_polled_since_id: true once the bridge has polled with a since_id cursor.
shutdown_polled_since_id() {
	ctl GET /_control/requests | jq -e 'any(.[]; .path | contains("/activity?") and contains("since_id="))' >/dev/null
}

# shutdown_queue N: queues N messages m1..mN from the peer; prints their ids.
shutdown_queue() {
	queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"count\":$1,\"text\":\"m{n}\"}"
}

# shutdown_all_again N: a fresh bridge hands out m1..mN again (nothing was done);
# then it is stopped.
shutdown_all_again() {
	local want
	want=$(seq 1 "$1" | sed 's/^/m/' | paste -sd, -)
	shutdown_start
	wait_until 10 shutdown_lines "$1"
	nap 0.3
	assert_eq "$(shutdown_texts)" "$want" "handed out again"
	shutdown_kill
}

@test "SIGTERM: a reply written during the drain is posted, then exit 0 with the cursor past it" {
	local id
	id=$(shutdown_queue 1)
	shutdown_start --drain-timeout 30
	wait_until 10 shutdown_lines 1
	assert_eq "$(shutdown_id m1)" "$id" "message handed out"
	kill -TERM "$SHUTDOWN_PID"
	# Draining: it waits for the open message instead of exiting.
	nap 0.5
	kill -0 "$SHUTDOWN_PID"
	printf '{"id":"%s","text":"late answer"}\n' "$id" >&5
	# Exits once drained, long before the 30 s drain timeout.
	shutdown_wait_exit 10
	assert_eq "$SHUTDOWN_RC" 0 "exit status"
	assert_eq "$(shutdown_a2a_texts)" '["late answer"]' "a2a posts"
	assert_eq "$(shutdown_state .last_since_id)" "$id" cursor
}

@test "drain timeout: an unanswered message ends the drain after --drain-timeout and is not done" {
	local id
	id=$(shutdown_queue 1)
	shutdown_start --drain-timeout 1
	wait_until 10 shutdown_lines 1
	kill -TERM "$SHUTDOWN_PID"
	# 1 s of drain, then exit: well within 6 s (the default drain alone is 10 s).
	shutdown_wait_exit 6
	assert_eq "$SHUTDOWN_RC" 0 "exit status"
	assert_eq "$(shutdown_a2a_texts)" '[]' "a2a posts"
	shutdown_nothing_done
	shutdown_start
	wait_until 10 shutdown_lines 1
	assert_eq "$(jq -c '[.id, .text]' "$T/out")" "[\"$id\",\"m1\"]" "handed out again"
}

@test "end of input: stdin from /dev/null exits 0 after registering and loses no message" {
	shutdown_queue 3 >/dev/null
	shutdown_args
	run timeout 20 "$MC_BIN" "${SHUTDOWN_ARGS[@]}" "$WS_ID" </dev/null 3>&-
	[ "$status" -eq 0 ] || { echo "status $status: $output"; return 1; }
	assert_eq "$(posts register | jq -r '[.[].body.id] | @json')" "[\"$WS_ID\"]" "registered"
	assert_eq "$(posts a2a "$WS_ID" | jq length)" 0 "a2a posts"
	shutdown_nothing_done
	shutdown_all_again 3
}

@test "a reader that takes one line and exits (| head -n 1): exit 0, nothing done" {
	# head reads the bridge's stdout through a FIFO, which is a pipe to the bridge,
	# and lets this file know both process ids.
	shutdown_queue 3 >/dev/null
	shutdown_stdin
	shutdown_args
	mkfifo "$T/pipe"
	head -n 1 <"$T/pipe" >"$T/head" 3>&- 5>&- &
	SHUTDOWN_HEAD_PID=$!
	"$MC_BIN" "${SHUTDOWN_ARGS[@]}" "$WS_ID" <"$T/in" >"$T/pipe" 2>>"$T/err" 3>&- 5>&- &
	SHUTDOWN_PID=$!
	wait_until 10 shutdown_lines 1 "$T/head"
	wait "$SHUTDOWN_HEAD_PID"
	SHUTDOWN_HEAD_PID=
	shutdown_wait_exit 10
	assert_eq "$SHUTDOWN_RC" 0 "exit status"
	assert_eq "$(grep -c '' "$T/head")" 1 "lines read by head"
	assert_eq "$(shutdown_texts "$T/head")" m1 "the line head read"
	shutdown_nothing_done
	shutdown_all_again 3
}

@test "slow reader: a full stdout pipe stalls neither heartbeats nor --max-inflight" {
	local seed big n0 limits
	# Start from a saved cursor, so every poll is a since_id poll sized by the window.
	seed=$(queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"text\":\"seed\"}")
	mkdir -m 700 "$SHUTDOWN_STATE"
	(umask 077 && printf '{"workspace_id":"%s","last_since_id":"%s"}\n' "$WS_ID" "$seed" >"$SHUTDOWN_STATE/$WS_ID.json")
	# 20 kB texts: each line carries the text three times (text, parts, request),
	# so one line nearly fills a 64 KiB pipe and the second blocks.
	big=$(head -c 20000 /dev/zero | tr '\0' x)
	queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"count\":50,\"text\":\"{n}:$big\"}" >/dev/null
	ctl DELETE /_control/requests >/dev/null
	mkfifo "$T/slow"
	exec 6<>"$T/slow"
	shutdown_stdin
	shutdown_args
	"$MC_BIN" "${SHUTDOWN_ARGS[@]}" --max-inflight 4 "$WS_ID" <"$T/in" >"$T/slow" 2>>"$T/err" 3>&- 5>&- 6>&- &
	SHUTDOWN_PID=$!
	wait_until 10 shutdown_heartbeats_at_least 1
	wait_until 10 shutdown_polled_since_id
	n0=$(shutdown_heartbeats)
	# Nobody reads: heartbeats still come, one a second.
	wait_until 10 shutdown_heartbeats_at_least $((n0 + 3))
	kill -0 "$SHUTDOWN_PID"
	# What it wrote: the 4 oldest messages, whole lines, nothing more.
	timeout 2 cat <&6 >"$T/got" || true
	assert_eq "$(jq -r '.text[0:2]' "$T/got" | paste -sd, -)" "1:,2:,3:,4:" "lines written"
	# Every poll asked for no more than the window has room for.
	limits=$(ctl GET /_control/requests | jq -c '[.[] | select(.path | contains("/activity")) | .path | capture("limit=(?<n>[0-9]+)").n | tonumber]')
	jq -e 'length > 0 and max <= 4' <<<"$limits" >/dev/null || { echo "poll limits: $limits"; return 1; }
}

@test "cold start: the replayed backlog is handed out no more than --max-inflight at a time" {
	local id1
	shutdown_queue 10 >/dev/null
	shutdown_start --max-inflight 3
	wait_until 10 shutdown_lines 3
	nap 0.5
	assert_eq "$(shutdown_texts)" "m1,m2,m3" "lines before any reply"
	id1=$(shutdown_id m1)
	printf '{"id":"%s"}\n' "$id1" >&5
	wait_until 10 shutdown_lines 4
	nap 0.3
	assert_eq "$(shutdown_texts)" "m1,m2,m3,m4" "lines after one reply"
}

@test "SIGINT drains like SIGTERM" {
	local id
	id=$(shutdown_queue 1)
	shutdown_start --drain-timeout 30
	wait_until 10 shutdown_lines 1
	kill -INT "$SHUTDOWN_PID"
	nap 0.5
	kill -0 "$SHUTDOWN_PID"
	printf '{"id":"%s","text":"after ctrl-c"}\n' "$id" >&5
	shutdown_wait_exit 10
	assert_eq "$SHUTDOWN_RC" 0 "exit status"
	assert_eq "$(shutdown_a2a_texts)" '["after ctrl-c"]' "a2a posts"
	assert_eq "$(shutdown_state .last_since_id)" "$id" cursor
}

@test "a second SIGTERM during the drain stops at once, exit 0, nothing wrongly done" {
	local id
	id=$(shutdown_queue 1)
	shutdown_start --drain-timeout 30
	wait_until 10 shutdown_lines 1
	kill -TERM "$SHUTDOWN_PID"
	nap 0.5
	kill -0 "$SHUTDOWN_PID"
	kill -TERM "$SHUTDOWN_PID"
	shutdown_wait_exit 10
	assert_eq "$SHUTDOWN_RC" 0 "exit status"
	assert_eq "$(shutdown_a2a_texts)" '[]' "a2a posts"
	shutdown_nothing_done
	shutdown_start
	wait_until 10 shutdown_lines 1
	assert_eq "$(jq -c '[.id, .text]' "$T/out")" "[\"$id\",\"m1\"]" "handed out again"
}

@test "stdout to a pipe whose reader is gone: exit 0, no cursor moved" {
	shutdown_queue 3 >/dev/null
	shutdown_stdin
	shutdown_args
	# fd 7: the write end of a pipe nobody reads any more.
	mkfifo "$T/dead"
	exec 6<>"$T/dead"
	exec 7>"$T/dead"
	exec 6<&-
	"$MC_BIN" "${SHUTDOWN_ARGS[@]}" "$WS_ID" <"$T/in" >&7 2>>"$T/err" 3>&- 5>&- 7>&- &
	SHUTDOWN_PID=$!
	exec 7>&-
	shutdown_wait_exit 10
	assert_eq "$SHUTDOWN_RC" 0 "exit status"
	assert_eq "$(posts a2a "$WS_ID" | jq length)" 0 "a2a posts"
	shutdown_nothing_done
	shutdown_all_again 3
}

@test "stdout closed (>&-): exit 0, no cursor moved" {
	shutdown_queue 3 >/dev/null
	shutdown_stdin
	shutdown_args
	"$MC_BIN" "${SHUTDOWN_ARGS[@]}" "$WS_ID" <"$T/in" >&- 2>>"$T/err" 3>&- 5>&- &
	SHUTDOWN_PID=$!
	shutdown_wait_exit 10
	assert_eq "$SHUTDOWN_RC" 0 "exit status"
	shutdown_nothing_done
	shutdown_all_again 3
}
