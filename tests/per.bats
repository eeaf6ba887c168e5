#!/usr/bin/env bats
# per.bats: --per peer|context: one co-process per conversation, started on its first
# message and fed only its messages; slots (--max-procs), --idle-exit, restarts and
# --restart-limit per conversation, --reply-timeout, a killed bridge, --per with --exec,
# and bounded processes and descriptors.

load helpers
load background

setup() {
	bg_setup
	A=$PEER_ID
	new_peer >/dev/null
	B=$PEER_ID
	per_handler
}

teardown() {
	bg_stop || true
	# Handlers a killed bridge left behind (they end at end of input or a gate).
	touch "$T"/gate-* 2>/dev/null || true
	fake_stop
	if grep -E 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$T/err" 2>/dev/null; then
		return 1
	fi
}

# per_handler: writes $T/h, a handler that keeps a count of the messages it answered
# in memory and answers "<count> <text>". It logs "start KEY PID", "eof KEY" and
# "exit KEY" to $T/log and its environment to $T/env.<pid>. A text "gate:NAME" waits
# for the file $T/gate-NAME first; "crash" exits 3 (once per conversation when
# $T/crash-once exists); "hang" never answers; "die-always" exits 4.
per_handler() {
	cat >"$T/h" <<-EOF
		#!/bin/sh
		key=\$MOLECULE_CONVERSATION
		tag=\$(printf '%s' "\$key" | tr -c 'a-zA-Z0-9' _)
		echo "start \$key \$\$" >>"$T/log"
		env >"$T/env.\$\$"
		n=0
		while IFS= read -r line; do
			text=\$(printf '%s\n' "\$line" | jq -r .text)
			case \$text in
			gate:*) while [ ! -e "$T/gate-\${text#gate:}" ]; do sleep 0.02; done ;;
			crash)
				if [ ! -e "$T/crash-once" ] || [ ! -e "$T/crashed-\$tag" ]; then
					: >"$T/crashed-\$tag"
					echo "exit \$key" >>"$T/log"
					exit 3
				fi ;;
			die-always) echo "exit \$key" >>"$T/log"; exit 4 ;;
			hang) exec sleep 600 ;;
			esac
			n=\$((n + 1))
			printf '%s\n' "\$line" | jq -c --arg n "\$n" '{id, text: (\$n + " " + .text)}'
		done
		echo "eof \$key" >>"$T/log"
		echo "exit \$key" >>"$T/log"
	EOF
	chmod +x "$T/h"
}

# per_queue FROM TEXT [EXTRA_FIELDS]: one message from FROM (a peer id or null).
per_queue() {
	local from="\"$1\""
	[ "$1" != null ] || from=null
	queue_msgs "$WS_ID" "{\"from\":$from,\"text\":\"$2\"${3:+,$3}}"
}

# per_replies PEER: the texts posted to PEER, one per line, in posting order.
per_replies() {
	posts a2a | jq -r --arg p "/workspaces/$1/a2a" \
		'.[] | select(.path == $p and .status == 200) | .body.params.message.parts | map(.text) | join("")'
}

# per_count PEER N: at least N replies were posted to PEER.
per_count() {
	[ "$(per_replies "$1" | wc -l)" -ge "$2" ]
}

# per_log_count PATTERN N: $T/log has exactly N lines matching the extended regex.
per_log_count() {
	[ "$(grep -cE -- "$1" "$T/log" 2>/dev/null)" -eq "$2" ]
}

# per_line_no PATTERN: the line number of the first line of $T/log matching PATTERN.
per_line_no() {
	grep -nE -- "$1" "$T/log" | head -n 1 | cut -d: -f1
}

# per_env PID NAME: a variable of the environment handler PID started with.
per_env() {
	sed -n "s/^$2=//p" "$T/env.$1"
}

# per_max_alive: the most handlers alive at once, from the start/exit lines of $T/log.
per_max_alive() {
	awk '$1 == "start" { n++; if (n > max) max = n } $1 == "exit" { n-- } END { print max + 0 }' "$T/log"
}

@test "--per peer: each conversation its own co-process, fed its messages in order, state kept in memory" {
	local i
	for i in 1 2 3; do
		per_queue "$A" "a$i" >/dev/null
		per_queue "$B" "b$i" >/dev/null
	done
	per_queue null "c1" >/dev/null
	per_queue null "c2" >/dev/null
	bg_start --per peer "$WS_ID" -- "$T/h"
	wait_until 10 per_count "$A" 3
	wait_until 10 per_count "$B" 3
	wait_until 10 eval '[ "$(posts notify | jq length)" -eq 2 ]'
	# Each handler counts its own conversation's messages only.
	assert_eq "$(per_replies "$A" | paste -sd,)" "1 a1,2 a2,3 a3" "replies to A"
	assert_eq "$(per_replies "$B" | paste -sd,)" "1 b1,2 b2,3 b3" "replies to B"
	assert_eq "$(posts notify | jq -r '[.[].body.message] | join(",")')" "1 c1,2 c2" "replies to the canvas"
	# One start per conversation.
	per_log_count "^start peer:$A " 1
	per_log_count "^start peer:$B " 1
	per_log_count "^start canvas " 1
	bg_stop
	assert_eq "$BG_RC" 0
	# Each got end of input and finished.
	per_log_count "^eof " 3
}

@test "--per: a slow conversation does not hold up another one" {
	per_queue "$A" "gate:a" >/dev/null
	per_queue "$A" "a2" >/dev/null
	per_queue "$B" "b1" >/dev/null
	per_queue "$B" "b2" >/dev/null
	bg_start --per peer "$WS_ID" -- "$T/h"
	# B is answered while A's first message is still being worked on.
	wait_until 10 per_count "$B" 2
	assert_eq "$(per_replies "$A" | wc -l)" 0 "replies to A before its gate opens"
	touch "$T/gate-a"
	wait_until 10 per_count "$A" 2
	assert_eq "$(per_replies "$A" | paste -sd,)" "1 gate:a,2 a2" "replies to A, in order"
	assert_eq "$(per_replies "$B" | paste -sd,)" "1 b1,2 b2" "replies to B"
}

@test "--per: the heartbeat's active_tasks counts the messages out across all conversations" {
	per_queue "$A" "gate:h" >/dev/null
	per_queue "$B" "gate:h" >/dev/null
	per_queue "$B" b2 >/dev/null
	bg_start --per peer "$WS_ID" -- "$T/h"
	wait_until 10 per_log_count '^start ' 2
	wait_until 10 eval 'posts heartbeat "$WS_ID" | jq -e ".[-1].body.active_tasks == 3" >/dev/null'
	touch "$T/gate-h"
	wait_until 10 per_count "$B" 2
	wait_until 10 eval 'posts heartbeat "$WS_ID" | jq -e ".[-1].body.active_tasks == 0" >/dev/null'
}

@test "--per context: keyed by context id, else by peer; the environment says which" {
	per_queue "$A" x1 '"context_id":"ctx-1"' >/dev/null
	per_queue "$B" x2 '"context_id":"ctx-1"' >/dev/null
	per_queue "$A" y1 '"context_id":"ctx-2"' >/dev/null
	per_queue "$A" "no context" >/dev/null
	bg_start --per context "$WS_ID" -- "$T/h"
	wait_until 10 per_count "$A" 3
	wait_until 10 per_count "$B" 1
	# One conversation across both peers in ctx-1: B's message is its second.
	assert_eq "$(per_replies "$B")" "2 x2" "B's reply in ctx-1"
	assert_eq "$(per_replies "$A" | sort | paste -sd,)" "1 no context,1 x1,1 y1" "replies to A"
	per_log_count '^start ' 3
	local pid
	pid=$(awk '$2 == "context:ctx-2" { print $3 }' "$T/log")
	assert_eq "$(per_env "$pid" MOLECULE_CONVERSATION)" "context:ctx-2"
	assert_eq "$(per_env "$pid" MOLECULE_CONTEXT_ID)" "ctx-2"
	assert_eq "$(per_env "$pid" MOLECULE_PEER_ID)" "$A"
	assert_eq "$(per_env "$pid" MOLECULE_WORKSPACE_ID)" "$WS_ID"
	pid=$(awk -v k="peer:$A" '$2 == k { print $3 }' "$T/log")
	assert_eq "$(per_env "$pid" MOLECULE_CONTEXT_ID)" "" "no context"
	assert_eq "$(per_env "$pid" MOLECULE_PEER_ID)" "$A"
	run grep -c "^MOLECULE_WORKSPACE_TOKEN=" "$T/env.$pid"
	assert_eq "$output" 0 "the token in a handler's environment"
}

@test "--idle-exit: a quiet co-process gets end of input; its next message starts it again, same session id" {
	per_queue "$A" one >/dev/null
	bg_start --per peer --idle-exit 0.3 "$WS_ID" -- "$T/h"
	wait_until 10 per_count "$A" 1
	wait_until 10 per_log_count "^eof peer:$A\$" 1
	per_queue "$A" two >/dev/null
	wait_until 10 per_count "$A" 2
	# A new process: its count starts again.
	assert_eq "$(per_replies "$A" | paste -sd,)" "1 one,1 two" "replies"
	per_log_count "^start peer:$A " 2
	local first second session
	first=$(awk '$1 == "start" { print $3 }' "$T/log" | head -n 1)
	second=$(awk '$1 == "start" { print $3 }' "$T/log" | tail -n 1)
	session=$(per_env "$first" MOLECULE_SESSION_ID)
	[[ "$session" =~ ^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$ ]] ||
		{ echo "session id: $session" >&2; false; }
	assert_eq "$(per_env "$second" MOLECULE_SESSION_ID)" "$session" "session id of the second start"
	assert_eq "$(per_env "$second" MOLECULE_CONVERSATION)" "peer:$A"
	bg_stop

	# A restarted bridge: the same conversation has the same session id, another one another.
	per_queue "$A" three >/dev/null
	per_queue "$B" other >/dev/null
	bg_start --per peer "$WS_ID" -- "$T/h"
	wait_until 10 per_count "$A" 3
	wait_until 10 per_count "$B" 1
	local third b
	third=$(awk -v k="peer:$A" '$1 == "start" && $2 == k { print $3 }' "$T/log" | tail -n 1)
	b=$(awk -v k="peer:$B" '$1 == "start" && $2 == k { print $3 }' "$T/log")
	assert_eq "$(per_env "$third" MOLECULE_SESSION_ID)" "$session" "session id after a bridge restart"
	[ "$(per_env "$b" MOLECULE_SESSION_ID)" != "$session" ]
}

@test "--max-procs 2 with 3 conversations: the third waits, an idle one is closed, nothing lost" {
	local c
	new_peer >/dev/null
	c=$PEER_ID
	per_queue "$A" "gate:a" >/dev/null
	per_queue "$B" "gate:b" >/dev/null
	per_queue "$c" c1 >/dev/null
	bg_start --per peer --max-procs 2 "$WS_ID" -- "$T/h"
	wait_until 10 per_log_count '^start ' 2
	# A and B are busy: C waits for a slot.
	nap 0.3
	per_log_count '^start ' 2
	assert_eq "$(per_replies "$c" | wc -l)" 0 "replies to C while both slots are busy"
	touch "$T/gate-a"
	wait_until 10 per_count "$c" 1
	# A went idle and was closed (end of input first) to make room for C.
	[ "$(per_line_no "^eof peer:$A\$")" -lt "$(per_line_no "^start peer:$c ")" ]
	touch "$T/gate-b"
	wait_until 10 per_count "$B" 1
	wait_until 10 per_count "$A" 1
	# A's next message starts A again, in a slot an idle one gives up.
	per_queue "$A" a2 >/dev/null
	wait_until 10 per_count "$A" 2
	assert_eq "$(per_replies "$A" | paste -sd,)" "1 gate:a,1 a2"
	assert_eq "$(per_max_alive)" 2 "handlers alive at once"
}

@test "restarts per conversation: a crash hands its messages to its own restart only; --restart-limit per conversation" {
	: >"$T/crash-once"
	per_queue "$A" crash >/dev/null
	per_queue "$A" a2 >/dev/null
	per_queue "$B" "gate:b" >/dev/null
	per_queue "$B" crash >/dev/null
	per_queue "$B" b3 >/dev/null
	# Each conversation fails once: one failure each is within --restart-limit 1.
	bg_start --per peer --restart-limit 1 "$WS_ID" -- "$T/h"
	wait_until 10 per_count "$A" 2
	# A crashed and restarted while B was busy: B's handler is the same process.
	per_log_count "^start peer:$A " 2
	per_log_count "^start peer:$B " 1
	touch "$T/gate-b"
	wait_until 10 per_count "$B" 3
	assert_eq "$(per_replies "$A" | paste -sd,)" "1 crash,2 a2" "A: both to the restart, in order"
	assert_eq "$(per_replies "$B" | paste -sd,)" "1 gate:b,1 crash,2 b3" "B: its first answered, the rest to its restart"
	per_log_count "^start peer:$B " 2
	grep -q "warning: handler $T/h for peer:$A ended (exit status 3)" "$T/err"
	bg_stop
	assert_eq "$BG_RC" 0

	# A conversation that always fails gives up after 1 + --restart-limit starts,
	# while the other one is answered.
	: >"$T/log"
	per_queue "$B" "still fine" >/dev/null
	per_queue "$A" die-always >/dev/null
	bg_start --per peer --restart-limit 2 "$WS_ID" -- "$T/h"
	bg_wait_exit 20
	assert_eq "$BG_RC" 4 "exit status: the handler's"
	per_log_count "^start peer:$A " 3
	grep -q "error: handler $T/h for peer:$A keeps failing" "$T/err"
	per_replies "$B" | grep -qx "1 still fine"
}

@test "--reply-timeout: the held message gets an error reply, the conversation a fresh co-process" {
	per_queue "$A" hang >/dev/null
	per_queue "$A" after >/dev/null
	per_queue "$B" b1 >/dev/null
	bg_start --per peer --reply-timeout 1 "$WS_ID" -- "$T/h"
	wait_until 15 per_count "$A" 2
	assert_eq "$(per_replies "$A" | paste -sd,)" "error: timed out after 1 s,1 after" "replies to A"
	per_log_count "^start peer:$A " 2
	per_log_count "^start peer:$B " 1
	assert_eq "$(per_replies "$B")" "1 b1"
	# Its process group got SIGTERM: the hung one (exec'd into sleep) is gone.
	local hung
	hung=$(awk -v k="peer:$A" '$1 == "start" && $2 == k { print $3 }' "$T/log" | head -n 1)
	wait_until 5 eval '! proc_alive "$hung"'
	grep -q "held message .* for more than 1 s" "$T/err"
	bg_stop

	# The same without --per: the one co-process is restarted.
	: >"$T/log"
	per_queue "$A" hang >/dev/null
	per_queue "$A" next >/dev/null
	bg_start --reply-timeout 0.5 "$WS_ID" -- "$T/h"
	wait_until 15 per_count "$A" 4
	assert_eq "$(per_replies "$A" | tail -n 2 | paste -sd,)" "error: timed out after 0.5 s,1 next"
	per_log_count '^start ' 2
}

@test "kill -9 with several conversations open: the next run answers every message, in order per peer" {
	local c i
	new_peer >/dev/null
	c=$PEER_ID
	per_queue "$A" "gate:x" >/dev/null
	per_queue "$c" "gate:x" >/dev/null
	for i in 1 2 3; do
		per_queue "$B" "m$i" >/dev/null
	done
	for i in 2 3; do
		per_queue "$A" "a$i" >/dev/null
		per_queue "$c" "c$i" >/dev/null
	done
	bg_start --per peer "$WS_ID" -- "$T/h"
	wait_until 10 per_count "$B" 3
	wait_until 10 per_log_count '^start ' 3
	kill -KILL "$BG_PID"
	wait "$BG_PID" 2>/dev/null || true
	BG_PID=""
	# The orphaned handlers see end of input once the gate opens.
	touch "$T/gate-x"
	wait_until 10 per_log_count '^eof ' 3
	bg_start --per peer "$WS_ID" -- "$T/h"
	wait_until 15 per_count "$A" 3
	wait_until 15 per_count "$c" 3
	bg_stop
	assert_eq "$BG_RC" 0
	# At least once, and in order: the texts in the order first posted.
	assert_eq "$(per_replies "$A" | cut -d' ' -f2- | awk '!seen[$0]++' | paste -sd,)" "gate:x,a2,a3" "replies to A"
	assert_eq "$(per_replies "$c" | cut -d' ' -f2- | awk '!seen[$0]++' | paste -sd,)" "gate:x,c2,c3" "replies to C"
	assert_eq "$(per_replies "$B" | cut -d' ' -f2- | awk '!seen[$0]++' | paste -sd,)" "m1,m2,m3" "replies to B"
	# The restarted handlers got their conversation's messages in order.
	assert_eq "$(per_replies "$A" | tail -n 3 | paste -sd,)" "1 gate:x,2 a2,3 a3" "A after the restart"
	state_file_has '(.replies // []) | length == 0'
}

@test "--per with --exec: one command at a time per conversation, --concurrency bounds the total" {
	local i
	per_queue "$A" "gate:a" >/dev/null
	for i in 2 3; do
		per_queue "$A" "a$i" >/dev/null
	done
	for i in 1 2 3; do
		per_queue "$B" "b$i" >/dev/null
	done
	PER_T=$T bg_start --per peer --concurrency 4 --exec-input json --exec '
		text=$(jq -r .text)
		echo "start $MOLECULE_CONVERSATION $text" >>"$PER_T/log"
		case $text in gate:*) while [ ! -e "$PER_T/gate-${text#gate:}" ]; do sleep 0.02; done ;; esac
		echo "exit $MOLECULE_CONVERSATION $text" >>"$PER_T/log"
		echo "done $text"' "$WS_ID"
	# B's three run while A's first waits: A's second has not started.
	wait_until 10 per_count "$B" 3
	per_log_count "^start peer:$A " 1
	touch "$T/gate-a"
	wait_until 10 per_count "$A" 3
	assert_eq "$(per_replies "$A" | paste -sd,)" "done gate:a,done a2,done a3"
	# Within a conversation, each command starts after the one before ended.
	local conv
	for conv in "peer:$A" "peer:$B"; do
		assert_eq "$(awk -v k="$conv" '$2 == k { print $1 }' "$T/log" | paste -sd' ')" \
			"start exit start exit start exit" "commands of $conv"
	done
	bg_stop

	# --concurrency 1: the conversations take turns, never two at once.
	: >"$T/log"
	for i in 4 5; do
		per_queue "$A" "a$i" >/dev/null
		per_queue "$B" "b$i" >/dev/null
	done
	PER_T=$T bg_start --per peer --concurrency 1 --exec-input json --exec '
		echo "start $MOLECULE_CONVERSATION" >>"$PER_T/log"; jq -r .text; echo "exit $MOLECULE_CONVERSATION" >>"$PER_T/log"' "$WS_ID"
	wait_until 10 per_count "$A" 5
	wait_until 10 per_count "$B" 5
	assert_eq "$(per_max_alive)" 1 "commands at once"
}

@test "50 conversations, --max-procs 4: handlers and descriptors never above the bound, none left over" {
	cat >"$T/count" <<-EOF
		#!/bin/sh
		# Sampled as each handler starts: the bridge's children, its descriptors.
		echo "\$(pgrep -P \$PPID | wc -l) \$(ls /proc/\$PPID/fd | wc -l)" >>"$T/samples"
		exec "$T/h"
	EOF
	chmod +x "$T/count"
	local i ids=()
	for i in $(seq 1 50); do
		new_peer >/dev/null
		ids+=("$PEER_ID")
		per_queue "$PEER_ID" "hello $i" >/dev/null
	done
	bg_start --per peer --max-procs 4 --max-inflight 64 "$WS_ID" -- "$T/count"
	wait_until 60 eval '[ "$(posts a2a | jq "[.[] | select(.status == 200)] | length")" -ge 50 ]'
	local fds_at_end
	fds_at_end=$(ls "/proc/$BG_PID/fd" | wc -l)
	# Every conversation was answered once.
	for i in 0 9 49; do
		assert_eq "$(per_replies "${ids[$i]}")" "1 hello $((i + 1))"
	done
	# One start per conversation.
	per_log_count '^start ' 50
	local max_children max_fds
	max_children=$(awk '{ if ($1 > m) m = $1 } END { print m }' "$T/samples")
	max_fds=$(awk '{ if ($2 > m) m = $2 } END { print m }' "$T/samples")
	# The one starting counts itself.
	[ "$max_children" -le 4 ] || { echo "$max_children children" >&2; false; }
	[ "$(per_max_alive)" -le 4 ] || { echo "$(per_max_alive) handlers at once" >&2; false; }
	# Its own dozen, three pipes a handler, a few sockets.
	[ "$max_fds" -le $((12 + 3 * 4 + 6)) ] || { echo "$max_fds descriptors" >&2; false; }
	[ "$fds_at_end" -le $((12 + 3 * 4 + 6)) ] || { echo "$fds_at_end descriptors at the end" >&2; false; }
	bg_stop
	assert_eq "$BG_RC" 0
	per_log_count '^exit ' 50
}

@test "--per and its options: checked values, what needs what, --dry-run" {
	run "$MC_BIN" --dry-run --per thread "$WS_ID" -- cat
	assert_eq "$status" 2
	[[ "$output" == *"--per: 'thread' is not a conversation key: use peer or context"* ]]
	run "$MC_BIN" --dry-run --per peer "$WS_ID"
	assert_eq "$status" 2
	[[ "$output" == *"--per needs a co-process ('-- COMMAND') or --exec"* ]]
	run "$MC_BIN" --dry-run --max-procs 3 "$WS_ID" -- cat
	assert_eq "$status" 2
	[[ "$output" == *"--max-procs only applies with --per"* ]]
	run "$MC_BIN" --dry-run --idle-exit 5 "$WS_ID" -- cat
	assert_eq "$status" 2
	[[ "$output" == *"--idle-exit only applies with --per"* ]]
	run "$MC_BIN" --dry-run --reply-timeout 5 --exec cat "$WS_ID"
	assert_eq "$status" 2
	[[ "$output" == *"--reply-timeout applies to a co-process"* ]]
	local opt v
	while read -r opt v; do
		run "$MC_BIN" --dry-run --per peer "--$opt" "$v" "$WS_ID" -- cat
		assert_eq "$status" 2 "--$opt $v"
		[[ "$output" == *"--$opt: '$v' is not a"* ]] || { echo "$output"; false; }
	done <<-'EOF2'
	max-procs 0
	max-procs 257
	idle-exit -1
	idle-exit 86401
	reply-timeout 86401
	reply-timeout x
	EOF2
	run "$MC_BIN" --dry-run --per context "$WS_ID" -- cat
	assert_eq "$status" 0
	[[ "$output" == *$'per: context\nmax_procs: 8\nidle_exit: 600\nreply_timeout: 0'* ]] || { echo "$output"; false; }
	run "$MC_BIN" --dry-run --per peer --max-procs 2 --idle-exit 1.5 --reply-timeout 30 "$WS_ID" -- cat
	[[ "$output" == *$'per: peer\nmax_procs: 2\nidle_exit: 1.5\nreply_timeout: 30'* ]] || { echo "$output"; false; }
	run "$MC_BIN" --dry-run --per peer --exec cat "$WS_ID"
	[[ "$output" == *$'concurrency: 1\nper: peer'* ]] || { echo "$output"; false; }
}

# per_polls FILE: the poll(2) calls strace recorded in FILE so far.
per_polls() {
	grep -cE '^p?poll\(' "$1" || true
}

# per_quiet_while_waiting TRACE: over a second in which nothing happens, the traced
# bridge polls a few hundred times at most (the platform every 50 ms, heartbeats),
# where spinning would be tens of thousands.
per_quiet_while_waiting() {
	local before after
	before=$(per_polls "$1")
	nap 1
	after=$(per_polls "$1")
	[ $((after - before)) -lt 1500 ] || { echo "$((after - before)) polls in a second" >&2; false; }
}

@test "--per: waiting for a busy conversation or for a slot wakes on events, it does not spin" {
	command -v strace >/dev/null || skip "strace is not installed"
	strace -o /dev/null true 2>/dev/null || skip "strace cannot trace here"
	# LeakSanitizer cannot work under ptrace: a sanitizer build leaves it out here.
	export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
	local traced=(strace -o "$T/trace" -e trace=poll,ppoll "$MC_BIN" --api-url "$FAKE_URL"
		--state-dir "$T/state" --interval 0.05 --heartbeat 1 --per peer)
	# --exec: A's second command waits for its first, with room in --concurrency.
	per_queue "$A" "gate:w" >/dev/null
	per_queue "$A" a2 >/dev/null
	PER_T=$T "${traced[@]}" --concurrency 4 --exec-input json --exec '
		text=$(jq -r .text); echo "start $text" >>"$PER_T/log"
		case $text in gate:*) while [ ! -e "$PER_T/gate-${text#gate:}" ]; do sleep 0.02; done ;; esac
		echo "done $text"' "$WS_ID" </dev/null >"$T/out" 2>>"$T/err" 3>&- &
	BG_PID=$!
	wait_until 10 per_log_count '^start gate:w$' 1
	per_quiet_while_waiting "$T/trace"
	touch "$T/gate-w"
	wait_until 10 per_count "$A" 2
	bg_stop_traced

	# Co-processes: B waits for the one slot A holds.
	: >"$T/log"
	per_queue "$A" "gate:v" >/dev/null
	per_queue "$B" b1 >/dev/null
	"${traced[@]}" --max-procs 1 "$WS_ID" -- "$T/h" </dev/null >"$T/out" 2>>"$T/err" 3>&- &
	BG_PID=$!
	wait_until 10 per_log_count "^start peer:$A " 1
	per_quiet_while_waiting "$T/trace"
	touch "$T/gate-v"
	wait_until 10 per_count "$B" 1
	bg_stop_traced
}
