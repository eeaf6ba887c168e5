#!/usr/bin/env bats
# Co-process mode (molecule-connect [options] ID -- COMMAND [ARG...]) and contrib/:
# the handler's pipes, environment, restarts, shutdown, and the example handlers
# (contrib/claude-handler is tested in claude.bats, the systemd unit in install.bats).

load helpers

setup() {
	T=$BATS_TEST_TMPDIR
	CONTRIB=${TOP_SRCDIR:?TOP_SRCDIR must name the source tree}/contrib
	COPROC_PID=""
	fake_start --rate-limit 0
	new_ws >/dev/null
	new_peer >/dev/null
	export MOLECULE_WORKSPACE_TOKEN=$WS_TOKEN
}

teardown() {
	coproc_stop_bridge || true
	fake_stop
	# A sanitizer build reports on the bridge's stderr.
	if grep -E 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$T/err" 2>/dev/null; then
		return 1
	fi
}

# coproc_start_bridge ARGS...: starts the bridge in the background against the fake
# platform with fast settings (stdout in $T/out, stderr added to $T/err); COPROC_PID.
coproc_start_bridge() {
	"$MC_BIN" --api-url "$FAKE_URL" --state-dir "$T/state" --interval 0.05 --heartbeat 1 \
		"$@" </dev/null >"$T/out" 2>>"$T/err" 3>&- &
	COPROC_PID=$!
}

# coproc_wait_exit SECS: waits for the bridge to end on its own; its status in
# COPROC_RC. Fails (after SIGKILL) if it is still running after SECS.
coproc_wait_exit() {
	local deadline=$(($(now_us) + $1 * 1000000))
	while kill -0 "$COPROC_PID" 2>/dev/null; do
		if [ "$(now_us)" -gt "$deadline" ]; then
			echo "the bridge is still running after $1 s" >&2
			kill -KILL "$COPROC_PID" 2>/dev/null
			wait "$COPROC_PID" 2>/dev/null
			COPROC_PID=""
			return 1
		fi
		nap 0.02
	done
	COPROC_RC=0
	wait "$COPROC_PID" || COPROC_RC=$?
	COPROC_PID=""
}

# coproc_stop_bridge: SIGTERM, then the exit status in COPROC_RC (fails after 15 s).
coproc_stop_bridge() {
	[ -n "$COPROC_PID" ] || return 0
	kill -TERM "$COPROC_PID" 2>/dev/null || true
	coproc_wait_exit 15
}

# coproc_queue PEER|null TEXT [EXTRA_FIELDS]: queues one message; prints its row id.
coproc_queue() {
	local from="\"$1\""
	[ "$1" != null ] || from=null
	queue_msgs "$WS_ID" "{\"from\":$from,\"text\":\"$2\"${3:+,$3}}"
}

# coproc_replies PEER: the texts posted to PEER, one per line, in posting order.
coproc_replies() {
	posts a2a | jq -r --arg p "/workspaces/$1/a2a" \
		'.[] | select(.path == $p) | .body.params.message.parts | map(.text) | join("")'
}

# coproc_reply_count PEER N: true once exactly N replies were posted to PEER.
coproc_reply_count() {
	local n
	n=$(posts a2a | jq --arg p "/workspaces/$1/a2a" '[.[] | select(.path == $p)] | length')
	[ "$n" -eq "$2" ]
}

# coproc_state_field FIELD: a field of the saved state file (jq -c).
coproc_state_field() {
	jq -c ".$1" "$T/state/$WS_ID.json"
}

# coproc_lines FILE N: true once FILE has N lines.
coproc_lines() {
	[ -f "$1" ] && [ "$(wc -l <"$1")" -eq "$2" ]
}

# coproc_not_done ID: the saved state neither has its cursor at ID nor lists ID as done.
coproc_not_done() {
	jq -e --arg id "$1" '.last_since_id != $id and ((.done_ids // []) | index($id) == null)' \
		"$T/state/$WS_ID.json" >/dev/null || {
		echo "state marks $1 done: $(cat "$T/state/$WS_ID.json")" >&2
		return 1
	}
}

# coproc_active_tasks N: true when the latest heartbeat reports N active tasks.
coproc_active_tasks() {
	posts heartbeat "$WS_ID" | jq -e --argjson n "$1" 'length > 0 and .[-1].body.active_tasks == $n' >/dev/null
}

@test "echo co-process (contrib/examples/echo.sh): 5 messages from 2 peers all answered, in order per peer" {
	local a=$PEER_ID b ids=()
	new_peer >/dev/null
	b=$PEER_ID
	ids+=("$(coproc_queue "$a" a1)")
	ids+=("$(coproc_queue "$b" b1)")
	ids+=("$(coproc_queue "$a" a2)")
	ids+=("$(coproc_queue "$b" b2)")
	ids+=("$(coproc_queue "$a" a3)")
	coproc_start_bridge "$WS_ID" -- "$CONTRIB/examples/echo.sh"
	wait_until 10 coproc_reply_count "$a" 3
	wait_until 10 coproc_reply_count "$b" 2
	assert_eq "$(coproc_replies "$a" | paste -sd,)" "echo: a1,echo: a2,echo: a3" "replies to peer a"
	assert_eq "$(coproc_replies "$b" | paste -sd,)" "echo: b1,echo: b2" "replies to peer b"
	# Each reply is a new message from this workspace, role agent.
	posts a2a | jq -e --arg ws "$WS_ID" --arg tok "Bearer $WS_TOKEN" 'length == 5 and all(.[];
		.headers["x-workspace-id"] == $ws and .headers.authorization == $tok
		and .body.method == "message/send" and .body.params.message.role == "agent")'
	coproc_stop_bridge
	assert_eq "$COPROC_RC" 0 "exit status after SIGTERM"
	# The co-process has the messages; the bridge's own stdout stays empty.
	assert_eq "$(wc -c <"$T/out")" 0 "bytes on the bridge's stdout"
	assert_eq "$(coproc_state_field last_since_id)" "\"${ids[4]}\"" "cursor after all 5"
}

@test "co-process environment: MOLECULE_WORKSPACE_ID, no token anywhere, own process group, stderr passed through" {
	cat >"$T/handler" <<-EOF
		#!/bin/sh
		env >"$T/env"
		echo \$\$ >"$T/pid"
		echo "handler-stderr-marker-42" >&2
		exec jq -c --unbuffered '{id, text: "ok"}'
	EOF
	chmod +x "$T/handler"
	coproc_queue "$PEER_ID" hi >/dev/null
	coproc_start_bridge "$WS_ID" -- "$T/handler" some-arg
	wait_until 10 coproc_reply_count "$PEER_ID" 1
	assert_eq "$(coproc_replies "$PEER_ID")" ok
	local pid
	pid=$(cat "$T/pid")
	grep -qx "MOLECULE_WORKSPACE_ID=$WS_ID" "$T/env"
	run grep -c '^MOLECULE_WORKSPACE_TOKEN=' "$T/env"
	assert_eq "$output" 0 "MOLECULE_WORKSPACE_TOKEN lines in the co-process environment"
	run grep -cF -e "$WS_TOKEN" "$T/env"
	assert_eq "$output" 0 "lines of the co-process environment holding the token"
	# The running handler (jq after exec): neither its argv nor its environment holds it.
	[ -r "/proc/$pid/cmdline" ]
	run grep -caF -e "$WS_TOKEN" "/proc/$pid/cmdline" "/proc/$pid/environ" "/proc/$COPROC_PID/cmdline"
	assert_eq "$output" $'/proc/'"$pid"$'/cmdline:0\n/proc/'"$pid"$'/environ:0\n/proc/'"$COPROC_PID"'/cmdline:0' "token in /proc"
	# It leads its own process group (signals reach whatever it starts).
	assert_eq "$(ps -o pgid= -p "$pid" | tr -d ' ')" "$pid" "co-process group id"
	grep -qx "handler-stderr-marker-42" "$T/err"
	coproc_stop_bridge
	assert_eq "$COPROC_RC" 0
}

@test "co-process killed with SIGKILL mid-stream: restarted, all 10 messages answered once, in order" {
	# First run: reads 3 lines, answers none, waits to be killed. Later runs: echo.
	cat >"$T/handler" <<-EOF
		#!/bin/sh
		echo \$\$ >>"$T/pids"
		if [ ! -e "$T/first" ]; then
			: >"$T/first"
			for i in 1 2 3; do
				IFS= read -r line || exit 0
				printf '%s\n' "\$line" >>"$T/first"
			done
			exec sleep 30
		fi
		tee -a "$T/second" | jq -c --unbuffered '{id, text: ("echo: " + .text)}'
	EOF
	chmod +x "$T/handler"
	local ids
	ids=$(queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"count\":10,\"text\":\"m{n}\"}")
	coproc_start_bridge "$WS_ID" -- "$T/handler"
	wait_until 10 coproc_lines "$T/first" 3
	assert_eq "$(jq -r .text "$T/first" | paste -sd,)" "m1,m2,m3" "what the first run read"
	coproc_reply_count "$PEER_ID" 0
	kill -KILL "$(head -n 1 "$T/pids")"
	wait_until 10 coproc_reply_count "$PEER_ID" 10
	local want
	want=$(printf 'echo: m%d\n' 1 2 3 4 5 6 7 8 9 10)
	assert_eq "$(coproc_replies "$PEER_ID")" "$want" "replies after the restart"
	# The restarted handler got all 10 again, in order, each once.
	assert_eq "$(jq -r .id "$T/second")" "$ids" "messages the restarted handler read"
	assert_eq "$(wc -l <"$T/pids")" 2 "handler starts"
	grep -q 'warning: handler .*ended' "$T/err"
	nap 0.3 # no duplicate posts trickle in
	coproc_reply_count "$PEER_ID" 10
	coproc_stop_bridge
	assert_eq "$COPROC_RC" 0
	assert_eq "$(coproc_state_field last_since_id)" "\"$(tail -n 1 <<<"$ids")\"" "cursor"
}

@test "a co-process that keeps dying: --restart-limit 2 gives up with its exit status, state kept" {
	local ids
	ids=$(queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"count\":2,\"text\":\"m{n}\"}")
	local t0
	t0=$(now_ms)
	coproc_start_bridge --restart-limit 2 "$WS_ID" -- false
	coproc_wait_exit 10
	assert_eq "$COPROC_RC" 1 "exit status (false's)"
	[ $(($(now_ms) - t0)) -lt 8000 ]
	grep -q 'error: handler false keeps failing' "$T/err"
	# Nothing was answered: the cursor did not pass the messages, none is done.
	[ -f "$T/state/$WS_ID.json" ]
	assert_eq "$(coproc_state_field workspace_id)" "\"$WS_ID\""
	coproc_not_done "$(head -n 1 <<<"$ids")"
	coproc_not_done "$(tail -n 1 <<<"$ids")"
	coproc_reply_count "$PEER_ID" 0

	# Its own status comes back, and --restart-limit 2 is 1 start + 2 restarts.
	coproc_start_bridge --restart-limit 2 "$WS_ID" -- sh -c "echo x >>'$T/starts'; exit 3"
	coproc_wait_exit 10
	assert_eq "$COPROC_RC" 3 "exit status (the handler's 3)"
	assert_eq "$(wc -l <"$T/starts")" 3 "handler starts"

	# Nothing was lost: a working handler answers both.
	coproc_start_bridge --once "$WS_ID" -- "$CONTRIB/examples/echo.sh"
	coproc_wait_exit 10
	assert_eq "$COPROC_RC" 0 "--once exit status"
	assert_eq "$(coproc_replies "$PEER_ID" | paste -sd,)" "echo: m1,echo: m2"
}

@test "a co-process command that cannot be started: exit 127, cannot start" {
	coproc_start_bridge "$WS_ID" -- "$T/no-such-handler" arg
	coproc_wait_exit 10
	assert_eq "$COPROC_RC" 127 "exit status"
	grep -q "error: .*cannot start.*no-such-handler" "$T/err"

	coproc_start_bridge "$WS_ID" -- no-such-command-on-path-xyz
	coproc_wait_exit 10
	assert_eq "$COPROC_RC" 127 "exit status (PATH search)"
	grep -q "error: .*cannot start.*no-such-command-on-path-xyz" "$T/err"
}

@test "SIGTERM: the co-process gets end of input and finishes, the bridge exits 0" {
	cat >"$T/handler" <<-EOF
		#!/bin/sh
		while IFS= read -r line; do
			printf '%s\n' "\$line" | jq -c '{id, text: ("echo: " + .text)}'
		done
		echo eof >>"$T/eof"
	EOF
	chmod +x "$T/handler"
	local id
	id=$(coproc_queue "$PEER_ID" hello)
	coproc_start_bridge "$WS_ID" -- "$T/handler"
	wait_until 10 coproc_reply_count "$PEER_ID" 1
	[ ! -e "$T/eof" ]
	coproc_stop_bridge
	assert_eq "$COPROC_RC" 0 "exit status"
	assert_eq "$(cat "$T/eof")" eof "what the handler wrote after its input ended"
	assert_eq "$(coproc_replies "$PEER_ID")" "echo: hello"
	assert_eq "$(coproc_state_field last_since_id)" "\"$id\"" "cursor"
}

@test "SIGTERM: a co-process ignoring end of input and SIGTERM is killed after drain timeout + grace" {
	local unique="1000.$RANDOM$RANDOM"
	cat >"$T/handler" <<-EOF
		#!/bin/sh
		trap '' TERM
		exec sleep $unique
	EOF
	chmod +x "$T/handler"
	local id
	id=$(coproc_queue "$PEER_ID" "never answered")
	coproc_start_bridge --drain-timeout 1 "$WS_ID" -- "$T/handler"
	wait_until 10 pgrep -f "^sleep $unique\$"
	# The message is handed out (open) before the signal.
	wait_until 10 coproc_active_tasks 1
	local t0 elapsed
	t0=$(now_ms)
	kill -TERM "$COPROC_PID"
	coproc_wait_exit 15
	elapsed=$(($(now_ms) - t0))
	assert_eq "$COPROC_RC" 0 "exit status"
	# 1 s drain + 2 s between SIGTERM and SIGKILL, and some slack.
	[ "$elapsed" -lt 5500 ] || { echo "took $elapsed ms" >&2; false; }
	run pgrep -f "^sleep $unique\$"
	assert_eq "$status" 1 "a stubborn co-process left running"
	# The message was not answered: it is not done.
	coproc_not_done "$id"
}

@test "--exec 'claude -p' (the README's form) with a plain-text claude" {
	mkdir -p "$T/bin"
	cat >"$T/bin/claude" <<-EOF
		#!/bin/sh
		printf '%s\n' "\$@" >"$T/claude.argv"
		printf 'plain answer to: %s\n' "\$(cat)"
	EOF
	chmod +x "$T/bin/claude"
	coproc_queue "$PEER_ID" "what is up" >/dev/null
	PATH="$T/bin:$PATH" coproc_start_bridge --exec 'claude -p' "$WS_ID"
	wait_until 10 coproc_reply_count "$PEER_ID" 1
	assert_eq "$(coproc_replies "$PEER_ID")" "plain answer to: what is up"
	assert_eq "$(cat "$T/claude.argv")" "-p" "claude's arguments"
	coproc_stop_bridge
	assert_eq "$COPROC_RC" 0
}

@test "contrib/examples: shell-handler.sh and python-handler.py answer through the bridge" {
	coproc_queue "$PEER_ID" date >/dev/null
	coproc_queue "$PEER_ID" "hello there" >/dev/null
	coproc_start_bridge "$WS_ID" -- "$CONTRIB/examples/shell-handler.sh"
	wait_until 10 coproc_reply_count "$PEER_ID" 2
	local r
	r=$(coproc_replies "$PEER_ID")
	[[ "$(head -n 1 <<<"$r")" =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z$ ]] || { echo "date reply: $r" >&2; false; }
	assert_eq "$(tail -n 1 <<<"$r")" "you said: hello there"
	coproc_stop_bridge
	assert_eq "$COPROC_RC" 0

	command -v python3 >/dev/null || skip "python3 is not installed"
	coproc_queue "$PEER_ID" "one two three" >/dev/null
	coproc_queue "$PEER_ID" stats >/dev/null
	coproc_start_bridge "$WS_ID" -- "$CONTRIB/examples/python-handler.py"
	wait_until 10 coproc_reply_count "$PEER_ID" 4
	assert_eq "$(coproc_replies "$PEER_ID" | tail -n 2 | paste -sd,)" \
		"three two one,2 messages from $PEER_ID so far"
	coproc_stop_bridge
	assert_eq "$COPROC_RC" 0
}
