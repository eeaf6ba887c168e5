#!/usr/bin/env bats
# --exec mode: one /bin/sh -c per message; its output is the reply, its exit
# status says whether it failed; environment, timeouts, concurrency, --filter.

load helpers

setup() {
	T=$BATS_TEST_TMPDIR
	EXEC_PID=""
	fake_start --rate-limit 0
	new_ws >/dev/null
	new_peer >/dev/null
	export MOLECULE_WORKSPACE_TOKEN=$WS_TOKEN
}

teardown() {
	exec_stop_bridge || true
	fake_stop
	# A sanitizer build reports on the bridge's stderr.
	if grep -E 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$T/err" 2>/dev/null; then
		return 1
	fi
}

# exec_start_bridge ARGS...: starts the bridge in the background against the fake
# platform with fast settings (stdout in $T/out, stderr added to $T/err); EXEC_PID.
exec_start_bridge() {
	"$MC_BIN" --api-url "$FAKE_URL" --state-dir "$T/state" --interval 0.05 --heartbeat 1 \
		"$@" </dev/null >"$T/out" 2>>"$T/err" 3>&- &
	EXEC_PID=$!
}

# exec_stop_bridge: SIGTERM and wait; the exit status in EXEC_RC (fails after 15 s).
exec_stop_bridge() {
	[ -n "$EXEC_PID" ] || return 0
	local deadline=$(($(now_us) + 15000000))
	kill -TERM "$EXEC_PID" 2>/dev/null || true
	while kill -0 "$EXEC_PID" 2>/dev/null; do
		if [ "$(now_us)" -gt "$deadline" ]; then
			echo "the bridge did not stop within 15 s of SIGTERM" >&2
			kill -KILL "$EXEC_PID" 2>/dev/null
			wait "$EXEC_PID" 2>/dev/null
			EXEC_PID=""
			return 1
		fi
		nap 0.02
	done
	EXEC_RC=0
	wait "$EXEC_PID" || EXEC_RC=$?
	EXEC_PID=""
}

# exec_queue PEER|null TEXT [EXTRA_FIELDS]: queues one message; prints its row id.
exec_queue() {
	local from="\"$1\""
	[ "$1" != null ] || from=null
	queue_msgs "$WS_ID" "{\"from\":$from,\"text\":\"$2\"${3:+,$3}}"
}

# exec_replies PEER: the texts posted to PEER, one JSON string per line, in order.
exec_replies() {
	posts a2a | jq -c --arg p "/workspaces/$1/a2a" \
		'.[] | select(.path == $p) | .body.params.message.parts | map(.text) | join("")'
}

# exec_reply_count PEER N: true once exactly N replies were posted to PEER.
exec_reply_count() {
	local n
	n=$(posts a2a | jq --arg p "/workspaces/$1/a2a" '[.[] | select(.path == $p)] | length')
	[ "$n" -eq "$2" ]
}

# exec_cursor_is ID: true once the saved state's cursor is ID and nothing is
# done above it.
exec_cursor_is() {
	[ -f "$T/state/$WS_ID.json" ] &&
		jq -e --arg id "$1" '.last_since_id == $id and ((.done_ids // []) | length == 0)' \
			"$T/state/$WS_ID.json" >/dev/null
}

# exec_post_count KIND N: true once N posts of KIND (a2a, notify) were recorded.
exec_post_count() {
	[ "$(posts "$1" | jq length)" -eq "$2" ]
}

# exec_error_heartbeat: true once a heartbeat reported a non-zero error_rate and a
# sample_error.
exec_error_heartbeat() {
	posts heartbeat "$WS_ID" |
		jq -e 'any(.[]; .body.error_rate > 0 and (.body.sample_error | type == "string"))' >/dev/null
}

@test "--exec 'tr a-z A-Z': the reply is the command's output, trailing newlines trimmed" {
	exec_queue "$PEER_ID" 'hello exec\nsecond line' >/dev/null
	exec_queue null 'from the canvas' >/dev/null
	exec_start_bridge --exec 'tr a-z A-Z; printf "\n\n"' "$WS_ID"
	wait_until 10 exec_reply_count "$PEER_ID" 1
	assert_eq "$(exec_replies "$PEER_ID")" '"HELLO EXEC\nSECOND LINE"' "reply to the peer"
	# A canvas message is answered on the canvas.
	wait_until 10 exec_post_count notify 1
	assert_eq "$(posts notify | jq -c '[.[].body]')" '[{"message":"FROM THE CANVAS"}]' "canvas reply"
	exec_stop_bridge
	assert_eq "$EXEC_RC" 0
}

@test "--exec-input json: the command reads the message line" {
	local id
	id=$(exec_queue "$PEER_ID" 'ignored text' '"context_id":"ctx-json"')
	exec_start_bridge --exec-input json --exec 'jq -r ".id + \" \" + .context_id + \" \" + .source_id"' "$WS_ID"
	wait_until 10 exec_reply_count "$PEER_ID" 1
	assert_eq "$(exec_replies "$PEER_ID")" "\"$id ctx-json $PEER_ID\"" "reply built from the JSON line"
	# The reply carries the request's contextId.
	assert_eq "$(posts a2a | jq -r '.[0].body.params.message.contextId')" ctx-json
}

@test "--exec environment: workspace, caller, message, task, context, method; never the token" {
	local peer_msg canvas_msg
	peer_msg=$(exec_queue "$PEER_ID" one '"task_id":"task-7","context_id":"ctx-9"')
	canvas_msg=$(exec_queue null two)
	# EXEC_DIR reaches the command through the bridge's environment.
	EXEC_DIR=$T exec_start_bridge --exec 'env >"$EXEC_DIR/env.$MOLECULE_MESSAGE_ID"; echo ok' "$WS_ID"
	wait_until 10 test -s "$T/env.$canvas_msg"
	wait_until 10 exec_reply_count "$PEER_ID" 1
	local e="$T/env.$peer_msg"
	grep -qx "MOLECULE_WORKSPACE_ID=$WS_ID" "$e"
	grep -qx "MOLECULE_CALLER_ID=$PEER_ID" "$e"
	grep -qx "MOLECULE_MESSAGE_ID=$peer_msg" "$e"
	grep -qx "MOLECULE_TASK_ID=task-7" "$e"
	grep -qx "MOLECULE_CONTEXT_ID=ctx-9" "$e"
	grep -qx "MOLECULE_METHOD=message/send" "$e"
	e="$T/env.$canvas_msg"
	grep -qx "MOLECULE_WORKSPACE_ID=$WS_ID" "$e"
	grep -qx "MOLECULE_CALLER_ID=" "$e"
	grep -qx "MOLECULE_MESSAGE_ID=$canvas_msg" "$e"
	grep -qx "MOLECULE_TASK_ID=" "$e"
	grep -qx "MOLECULE_METHOD=message/send" "$e"
	run grep -c '^MOLECULE_WORKSPACE_TOKEN=' "$T/env.$peer_msg" "$T/env.$canvas_msg"
	assert_eq "$output" "$T/env.$peer_msg:0"$'\n'"$T/env.$canvas_msg:0" "token variable in the environment"
	run grep -cF -e "$WS_TOKEN" "$T/env.$peer_msg" "$T/env.$canvas_msg"
	assert_eq "$output" "$T/env.$peer_msg:0"$'\n'"$T/env.$canvas_msg:0" "token value in the environment"
}

@test "--exec non-zero exit: an error reply to the sender, counted in the heartbeat's error_rate" {
	local id
	id=$(exec_queue "$PEER_ID" boom)
	exec_start_bridge --exec 'echo partial output; exit 3' "$WS_ID"
	wait_until 10 exec_reply_count "$PEER_ID" 1
	local text
	text=$(exec_replies "$PEER_ID" | jq -r .)
	[[ "$text" == "error: "* ]] || { echo "reply: $text" >&2; false; }
	[[ "$text" != *"partial output"* ]] || { echo "reply: $text" >&2; false; }
	wait_until 10 exec_error_heartbeat
	# An error reply is an answer: the message is done.
	wait_until 10 exec_cursor_is "$id"
}

@test "--exec empty output: nothing is posted, the message is done" {
	local quiet
	exec_queue "$PEER_ID" loud >/dev/null
	quiet=$(exec_queue "$PEER_ID" quiet)
	exec_start_bridge --exec 'if [ "$(cat)" = loud ]; then echo "said loud"; fi' "$WS_ID"
	wait_until 10 exec_reply_count "$PEER_ID" 1
	# The cursor passes the quiet one too (it is the newest).
	wait_until 10 exec_cursor_is "$quiet"
	exec_stop_bridge
	assert_eq "$EXEC_RC" 0
	assert_eq "$(exec_replies "$PEER_ID")" '"said loud"'
	assert_eq "$(posts a2a | jq length)" 1 "a2a posts"
	assert_eq "$(posts notify | jq length)" 0 "notify posts"
	exec_cursor_is "$quiet"
}

# exec_procs PATTERN N: true when N processes match PATTERN (pgrep -f).
exec_procs() {
	[ "$(pgrep -f "$1" | wc -l)" -eq "$2" ]
}

@test "--exec-timeout: a hung command and its children are killed, the sender gets a timed out error" {
	local unique="1000.$RANDOM$RANDOM"
	local id
	id=$(exec_queue "$PEER_ID" hang)
	exec_start_bridge --exec "sleep $unique & sleep $unique" --exec-timeout 1 "$WS_ID"
	# Both sleeps run (matched from the start of their command lines: the bridge's
	# and the shell's hold the string too).
	wait_until 10 exec_procs "^sleep $unique\$" 2
	wait_until 15 exec_reply_count "$PEER_ID" 1
	local text
	text=$(exec_replies "$PEER_ID" | jq -r .)
	[[ "$text" == "error: "*"timed out"* ]] || { echo "reply: $text" >&2; false; }
	# Both sleeps are gone: the one in the background too (the whole group).
	wait_until 3 exec_procs "^sleep $unique\$" 0
	wait_until 10 exec_cursor_is "$id"
	grep -q 'timed out' "$T/err"
}

# exec_max_overlap LOG: the most commands running at once, from "start"/"end" lines.
exec_max_overlap() {
	awk '$1 == "start" { n++; if (n > max) max = n } $1 == "end" { n-- } END { print max + 0 }' "$1"
}

@test "--concurrency 4: one peer's replies stay in message order; 4 peers run at once" {
	# Earlier messages sleep longer, so their commands finish last.
	local i
	for i in 1 2 3 4 5 6 7 8; do
		exec_queue "$PEER_ID" "$(printf '0.%02d' $(((9 - i) * 5)))" >/dev/null
	done
	# EXEC_LOG reaches the commands through the bridge's environment.
	EXEC_LOG="$T/log" exec_start_bridge --concurrency 4 --exec \
		'echo "start $MOLECULE_MESSAGE_ID" >>"$EXEC_LOG"; t=$(cat); sleep "$t"; echo "end $MOLECULE_MESSAGE_ID" >>"$EXEC_LOG"; echo "slept $t"' \
		"$WS_ID"
	wait_until 15 exec_reply_count "$PEER_ID" 8
	assert_eq "$(exec_replies "$PEER_ID" | jq -r . | paste -sd,)" \
		"slept 0.40,slept 0.35,slept 0.30,slept 0.25,slept 0.20,slept 0.15,slept 0.10,slept 0.05" "reply order"
	local max
	max=$(exec_max_overlap "$T/log")
	[ "$max" -ge 2 ] && [ "$max" -le 4 ] || { echo "overlap $max:" >&2; cat "$T/log" >&2; false; }
	exec_stop_bridge

	# Four peers, one message each: all four commands run at the same time.
	local p peers=()
	rm -f "$T/log"
	for i in 1 2 3 4; do
		new_peer >/dev/null
		peers+=("$PEER_ID")
		exec_queue "$PEER_ID" 0.5 >/dev/null
	done
	EXEC_LOG="$T/log" exec_start_bridge --concurrency 4 --exec \
		'echo "start $MOLECULE_MESSAGE_ID" >>"$EXEC_LOG"; t=$(cat); sleep "$t"; echo "end $MOLECULE_MESSAGE_ID" >>"$EXEC_LOG"; echo "slept $t"' \
		"$WS_ID"
	for p in "${peers[@]}"; do
		wait_until 10 exec_reply_count "$p" 1
	done
	assert_eq "$(exec_max_overlap "$T/log")" 4 "commands running at once"
}

@test "--filter with --exec: skipped messages never reach the command, and are done" {
	local ids=()
	ids+=("$(exec_queue "$PEER_ID" a)")
	ids+=("$(exec_queue "$PEER_ID" "skip me")")
	ids+=("$(exec_queue "$PEER_ID" b)")
	ids+=("$(exec_queue "$PEER_ID" "skip me")")
	EXEC_LOG="$T/ran" exec_start_bridge --exec-input json \
		--filter 'select(.text != "skip me") | .text |= ascii_upcase' \
		--exec 'jq -r .text | tee -a "$EXEC_LOG"' "$WS_ID"
	wait_until 10 exec_reply_count "$PEER_ID" 2
	# The last message was skipped: the cursor reaching it says skipped is done.
	wait_until 10 exec_cursor_is "${ids[3]}"
	assert_eq "$(exec_replies "$PEER_ID" | jq -r . | paste -sd,)" "A,B" "replies"
	assert_eq "$(paste -sd, "$T/ran")" "A,B" "what the command was given"
	exec_stop_bridge
	assert_eq "$EXEC_RC" 0
	assert_eq "$(posts a2a | jq length)" 2 "a2a posts"
}
