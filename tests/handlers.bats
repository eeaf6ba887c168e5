#!/usr/bin/env bats
# handlers.bats: how the bridge runs its handlers' processes: --exec commands that
# leave a child behind, the stop sequence (end of input, wait, SIGTERM, SIGKILL),
# handlers that cannot run at all, the descriptors a handler gets, and handler stderr
# in JSON logs.

load helpers
load background

setup() {
	bg_setup
}

teardown() {
	bg_stop || true
	[ -z "${HD_UNIQUE:-}" ] || pkill -KILL -f "^sleep $HD_UNIQUE\$" || true
	fake_stop
	# A sanitizer build reports on the bridge's stderr.
	if grep -E 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$T/err" 2>/dev/null; then
		return 1
	fi
}

# hd_queue TEXT [EXTRA_FIELDS]: queues one message from the peer; prints its row id.
hd_queue() {
	queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"text\":\"$1\"${2:+,$2}}"
}

# hd_replies: the texts posted to the peer, one per line, in posting order.
hd_replies() {
	posts a2a | jq -r --arg p "/workspaces/$PEER_ID/a2a" \
		'.[] | select(.path == $p) | .body.params.message.parts | map(.text) | join("")'
}

# hd_reply_count N: exactly N replies were posted to the peer.
hd_reply_count() {
	[ "$(hd_replies | wc -l)" -eq "$1" ]
}

# hd_not_done ID...: the state file exists and marks none of the IDs done.
hd_not_done() {
	local id
	[ -f "$T/state/$WS_ID.json" ] || { echo "no state file" >&2; return 1; }
	for id in "$@"; do
		jq -e --arg id "$id" '.last_since_id != $id and ((.done_ids // []) | index($id) == null)' \
			"$T/state/$WS_ID.json" >/dev/null || {
			echo "state marks $id done: $(cat "$T/state/$WS_ID.json")" >&2
			return 1
		}
	done
}

# hd_procs N: exactly N processes run "sleep $HD_UNIQUE".
hd_procs() {
	[ "$(pgrep -f "^sleep $HD_UNIQUE\$" | wc -l)" -eq "$1" ]
}

# ---- --exec and what a command leaves behind ----

@test "--exec: a command that leaves a child holding its stdout times out, later messages go on, nothing survives" {
	HD_UNIQUE="1000.$RANDOM$RANDOM"
	local first second
	first=$(hd_queue stuck)
	second=$(hd_queue fine)
	bg_start --exec-timeout 1 --exec \
		"if [ \"\$(cat)\" = stuck ]; then echo hi; sleep $HD_UNIQUE & else echo done; fi" "$WS_ID"
	# The shell exits at once; its background sleep holds the output open.
	wait_until 10 hd_procs 1
	wait_until 15 hd_reply_count 2
	assert_eq "$(hd_replies | paste -sd,)" "error: timed out after 1 s,done" "replies, in order"
	# The timeout killed the whole group: the sleep went with it.
	wait_until 5 hd_procs 0
	wait_until 10 state_file_has '.last_since_id == $id' --arg id "$second"
	bg_stop
	assert_eq "$BG_RC" 0
}

@test "--exec: what a finished command left running in its group is stopped with the bridge" {
	HD_UNIQUE="1000.$RANDOM$RANDOM"
	hd_queue detach >/dev/null
	# The sleep does not hold the command's output: the command is done at once.
	bg_start --drain-timeout 1 --exec "sleep $HD_UNIQUE >/dev/null 2>&1 & echo started" "$WS_ID"
	wait_until 10 hd_reply_count 1
	assert_eq "$(hd_replies)" started
	hd_procs 1
	bg_stop
	assert_eq "$BG_RC" 0
	hd_procs 0
}

# ---- stopping: end of input first, then signals ----

@test "--once: the co-process gets end of input and time to finish before any signal" {
	cat >"$T/handler" <<-EOF
		#!/bin/sh
		trap 'echo term >>"$T/events"' TERM
		while IFS= read -r line; do
			printf '%s\n' "\$line" | jq -c '{id, text: ("echo: " + .text)}'
		done
		echo eof >>"$T/events"
		# Cleaning up takes a moment, as it does for real handlers.
		sleep 0.3
		echo cleaned >>"$T/events"
	EOF
	chmod +x "$T/handler"
	hd_queue one >/dev/null
	bg_start --once "$WS_ID" -- "$T/handler"
	bg_wait_exit 15
	assert_eq "$BG_RC" 0
	assert_eq "$(hd_replies)" "echo: one"
	assert_eq "$(paste -sd, "$T/events")" "eof,cleaned" "what the handler did after its input ended"
}

@test "SIGTERM: end of input, the drain timeout, then SIGTERM to the group, then SIGKILL" {
	HD_UNIQUE="1000.$RANDOM$RANDOM"
	cat >"$T/handler" <<-EOF
		#!/bin/sh
		trap 'echo term >>"$T/events"' TERM
		sleep $HD_UNIQUE &
		while IFS= read -r line; do :; done
		echo eof >>"$T/events"
		# Stubborn: it waits for its child, which only SIGKILL ends.
		while :; do wait; done
	EOF
	chmod +x "$T/handler"
	hd_queue ignored >/dev/null
	bg_start --drain-timeout 1 "$WS_ID" -- "$T/handler"
	wait_until 10 hd_procs 1
	kill -TERM "$BG_PID"
	bg_wait_exit 15
	assert_eq "$BG_RC" 0
	assert_eq "$(paste -sd, "$T/events")" "eof,term" "end of input came first, then SIGTERM"
	# SIGKILL took the group: its child too.
	hd_procs 0
}

@test "stopping waits for a stubborn handler on SIGCHLD, without sleeping in a loop" {
	command -v strace >/dev/null || skip "strace is not installed"
	strace -o /dev/null true 2>/dev/null || skip "strace cannot trace here"
	cat >"$T/handler" <<-EOF
		#!/bin/sh
		trap '' TERM
		while IFS= read -r line; do :; done
		exec sleep 30
	EOF
	chmod +x "$T/handler"
	# LeakSanitizer cannot work under ptrace: a sanitizer build leaves it out here.
	ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" strace -o "$T/trace" -e trace=nanosleep,clock_nanosleep \
		"$MC_BIN" --api-url "$FAKE_URL" --state-dir "$T/state" --interval 0.05 --heartbeat 1 \
		--drain-timeout 0.5 "$WS_ID" -- "$T/handler" </dev/null >"$T/out" 2>>"$T/err" 3>&- &
	BG_PID=$!
	wait_until 10 eval '[ "$(posts register | jq length)" -ge 1 ]' >/dev/null
	# strace ends with the bridge: end of input, 0.5 s, SIGTERM, 2 s, SIGKILL.
	bg_stop_traced
	assert_eq "$BG_RC" 0
	grep -q '+++ exited with 0 +++' "$T/trace" || { tail "$T/trace" >&2; false; }
	run grep -cE '^(clock_)?nanosleep\(' "$T/trace"
	assert_eq "$output" 0 "sleeps while stopping"
}

@test "contrib/demo.sh shows the messages, the handler's last line and the replies" {
	run bash "$TOP_SRCDIR/contrib/demo.sh" "$BUILDDIR"
	[ "$status" -eq 0 ] || { echo "$output"; false; }
	[ "$(grep -c '"origin":' <<<"$output")" -eq 4 ] || { echo "$output"; false; }
	grep -qE '^handler: end of input at [0-9:]+ after 4 messages, exiting$' <<<"$output" || { echo "$output"; false; }
	[ "$(grep -c 'echo: ' <<<"$output")" -eq 4 ] || { echo "$output"; false; }
}

# ---- a handler that cannot run consumes nothing ----

@test "--exec nosuchcmd: exit 127 naming the command, no message done; a fixed command answers them all" {
	local ids
	ids=$(queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"count\":3,\"text\":\"m{n}\"}")
	bg_start --concurrency 2 --exec nosuchcmd-xyz "$WS_ID"
	bg_wait_exit 15
	assert_eq "$BG_RC" 127 "exit status"
	grep -q "error: --exec: the command 'nosuchcmd-xyz' cannot be run (exit status 127: not found)" "$T/err"
	hd_reply_count 0
	# shellcheck disable=SC2086 # one id a word
	hd_not_done $ids
	bg_start --once --exec 'echo "ok: $(cat)"' "$WS_ID"
	bg_wait_exit 15
	assert_eq "$BG_RC" 0
	assert_eq "$(hd_replies | paste -sd,)" "ok: m1,ok: m2,ok: m3"
}

@test "--exec: 127 after a command has succeeded is that message's error reply" {
	hd_queue good >/dev/null
	hd_queue bad >/dev/null
	hd_queue good >/dev/null
	bg_start --exec 'if [ "$(cat)" = bad ]; then nosuchcmd-xyz; else echo fine; fi' "$WS_ID"
	wait_until 10 hd_reply_count 3
	assert_eq "$(hd_replies | paste -sd,)" "fine,error: exit status 127,fine"
	bg_stop
	assert_eq "$BG_RC" 0
}

@test "a co-process that is not executable: exit 126, nothing done, nothing restarted" {
	printf '#!/bin/sh\nexec cat\n' >"$T/handler"
	chmod 644 "$T/handler"
	local id
	id=$(hd_queue hello)
	bg_start "$WS_ID" -- "$T/handler"
	bg_wait_exit 10
	assert_eq "$BG_RC" 126 "exit status"
	grep -q "error: cannot start $T/handler: Permission denied" "$T/err"
	hd_not_done "$id"
}

@test "a co-process whose #! interpreter is missing: exit 127, saying so" {
	printf '#!/nonexistent/interpreter\n' >"$T/handler"
	chmod 755 "$T/handler"
	local id
	id=$(hd_queue hello)
	bg_start "$WS_ID" -- "$T/handler"
	bg_wait_exit 10
	assert_eq "$BG_RC" 127 "exit status"
	grep -q "error: cannot start $T/handler: the interpreter named on its first line (#!) is missing" "$T/err"
	hd_not_done "$id"
}

@test "a co-process that exits 127 before answering (its tools are missing): stops at once, nothing done" {
	cat >"$T/handler" <<-EOF
		#!/bin/sh
		echo start >>"$T/starts"
		echo "handler: jq not found" >&2
		exit 127
	EOF
	chmod +x "$T/handler"
	local ids
	ids=$(queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"count\":2,\"text\":\"m{n}\"}")
	bg_start --restart-limit 5 "$WS_ID" -- "$T/handler"
	bg_wait_exit 10
	assert_eq "$BG_RC" 127 "exit status"
	assert_eq "$(wc -l <"$T/starts")" 1 "starts: not restarted"
	grep -q "error: handler $T/handler cannot be run (exit status 127)" "$T/err"
	# shellcheck disable=SC2086 # one id a word
	hd_not_done $ids
	hd_reply_count 0
}

# ---- descriptors ----

@test "close-on-exec: a handler holds only 0, 1 and 2; every descriptor of the bridge is close-on-exec" {
	# A descriptor this shell opened is inherited by the bridge: not by its handlers.
	exec 7</dev/null
	hd_queue one >/dev/null
	"$MC_BIN" --api-url "$FAKE_URL" --state-dir "$T/state" --interval 0.05 --heartbeat 1 --log-format json \
		"$WS_ID" -- sh -c 'echo $$ >"$0"; exec jq -c --unbuffered "{id, text: \"ok\"}"' "$T/pid.coproc" \
		</dev/null >"$T/out" 2>>"$T/err" 3>&- &
	BG_PID=$!
	exec 7<&-
	wait_until 10 hd_reply_count 1
	assert_eq "$(ls "/proc/$(cat "$T/pid.coproc")/fd" | sort -n | paste -sd' ')" "0 1 2" "a co-process's descriptors"
	# The bridge's own: its lock, signalfd, pipes, libcurl's sockets, all close-on-exec.
	local fd flags open=0
	for fd in /proc/"$BG_PID"/fdinfo/*; do
		[ "${fd##*/}" -gt 2 ] || continue
		flags=$(awk '/^flags:/ { print $2 }' "$fd")
		open=$((open + 1))
		(((8#$flags & 8#2000000) != 0)) || {
			echo "descriptor ${fd##*/} is not close-on-exec: $(readlink "/proc/$BG_PID/fd/${fd##*/}")" >&2
			false
		}
	done
	[ "$open" -ge 4 ] || { echo "only $open descriptors looked at" >&2; false; }
	bg_stop

	hd_queue two >/dev/null
	exec 7</dev/null
	HD_DIR=$T bg_start --drain-timeout 0 --exec 'echo $$ >"$HD_DIR/pid.exec"; exec sleep 600' "$WS_ID"
	exec 7<&-
	wait_until 10 test -s "$T/pid.exec"
	assert_eq "$(ls "/proc/$(cat "$T/pid.exec")/fd" | sort -n | paste -sd' ')" "0 1 2" "an --exec command's descriptors"
}

# ---- handler stderr in JSON logs ----

@test "--log-format json: what a handler writes on stderr is JSON log lines too" {
	cat >"$T/handler" <<-EOF
		#!/bin/sh
		echo "plain marker line" >&2
		printf 'quote " backslash \\\\ tab \t bad \377 end\n' >&2
		head -c 10000 /dev/zero | tr '\0' x >&2
		echo >&2
		printf 'no newline at the end' >&2
		exec jq -c --unbuffered '{id, text: "ok"}'
	EOF
	chmod +x "$T/handler"
	hd_queue one >/dev/null
	bg_start --log-format json "$WS_ID" -- "$T/handler"
	wait_until 10 hd_reply_count 1
	bg_stop
	assert_eq "$BG_RC" 0
	# Every line of the bridge's stderr is a JSON object.
	jq -e -s 'all(type == "object")' "$T/err" >/dev/null || { cat "$T/err" >&2; false; }
	local h='select(.handler == $h)'
	jq -e -s --arg h "$T/handler" "[.[] | $h | .msg] | any(. == \"plain marker line\")" "$T/err" >/dev/null
	jq -e -s --arg h "$T/handler" "[.[] | $h | .msg] | any(startswith(\"quote \\\" backslash \\\\ tab \\t bad \"))" "$T/err" >/dev/null
	# A long line is cut, the line after it is whole.
	jq -e -s --arg h "$T/handler" "[.[] | $h | .msg] | any(. == (\"x\" * 8192) + \"...\")" "$T/err" >/dev/null
	jq -e -s --arg h "$T/handler" "[.[] | $h | .msg] | any(. == \"no newline at the end\")" "$T/err" >/dev/null
	# Each names the level and the handler's pid.
	jq -e --arg h "$T/handler" -s "[.[] | $h] | length == 4 and all(.level == \"info\" and (.pid | type) == \"number\" and (.ts | type) == \"string\")" "$T/err" >/dev/null || { cat "$T/err" >&2; false; }

	# --exec commands' stderr the same way.
	: >"$T/err"
	hd_queue two >/dev/null
	bg_start --log-format json --exec 'echo "exec stderr marker" >&2; echo ok' "$WS_ID"
	wait_until 10 hd_reply_count 2
	bg_stop
	jq -e -s 'all(type == "object")' "$T/err" >/dev/null || { cat "$T/err" >&2; false; }
	jq -e -s 'any(.handler == "--exec" and .msg == "exec stderr marker")' "$T/err" >/dev/null
}
