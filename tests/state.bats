#!/usr/bin/env bats
# state.bats: the state file across restarts, crashes and hand edits: cursor, done ids,
# kept replies, modes, atomic saves, corruption, the lock, the Go client's format.

load helpers

setup() {
	bridge_setup
	SD=$T/state
	STATE_PIDS=()
	STATE_FIFO_OPEN=
	echo_handler
}

teardown() {
	kill_pids "${STATE_PIDS[@]}"
	[ -z "$STATE_FIFO_OPEN" ] || exec 5>&-
	fake_stop
}

# state_filter TAG [OPTIONS...]: starts the bridge for WS_ID in filter mode, reading
# replies from the FIFO $T/TAG.in (held open on fd 5: write replies with state_reply),
# writing messages to $T/TAG.out and logs to $T/TAG.err. Sets BR_PID.
state_filter() {
	local tag=$1
	shift
	mkfifo "$T/$tag.in"
	exec 5<>"$T/$tag.in"
	STATE_FIFO_OPEN=1
	"$MC_BIN" --api-url "$FAKE_URL" --state-dir "$SD" --interval 0.05 --heartbeat 1 "$@" \
		"$WS_ID" <"$T/$tag.in" >"$T/$tag.out" 2>"$T/$tag.err" 3>&- 5>&- &
	BR_PID=$!
	STATE_PIDS+=("$BR_PID")
}

# state_coproc TAG [OPTIONS...]: the same with the echo handler as co-process (it answers
# "h:<text>" and logs the message lines to $T/TAG.seen).
state_coproc() {
	local tag=$1
	shift
	: >"$T/$tag.seen"
	"$MC_BIN" --api-url "$FAKE_URL" --state-dir "$SD" --interval 0.05 --heartbeat 1 "$@" \
		"$WS_ID" -- sh "$T/echo.sh" "$T/$tag.seen" </dev/null >"$T/$tag.out" \
		2>"$T/$tag.err" 3>&- 5>&- &
	BR_PID=$!
	STATE_PIDS+=("$BR_PID")
}

# state_reply LINE: one reply line to the filter-mode bridge.
state_reply() {
	printf '%s\n' "$1" >&5
}

@test "restart: answered messages are not handed out again, open ones are, in order" {
	local ids
	ids=($(queue_msgs "$WS_ID" "{\"count\":4,\"from\":\"$PEER_ID\",\"text\":\"m{n}\"}"))
	[ "${#ids[@]}" -eq 4 ]

	state_filter r1 --drain-timeout 1
	wait_until 10 file_lines "$T/r1.out" 4
	assert_eq "$(line_ids "$T/r1.out")" "${ids[*]}" "first run hands out 1..4"
	state_reply "{\"id\":\"${ids[0]}\",\"text\":\"r1\"}"
	state_reply "{\"id\":\"${ids[1]}\",\"text\":\"r2\"}"
	wait_until 10 a2a_ok_posts 2
	stop_bridge TERM
	assert_eq "$BR_STATUS" 0 "exit status after SIGTERM"
	assert_eq "$(jq -r .last_since_id "$SD/$WS_ID.json")" "${ids[1]}" "cursor after the first run"

	state_filter r2 --drain-timeout 1
	wait_until 10 file_lines "$T/r2.out" 2
	# Had 1 or 2 come again, they would come first (messages go out in order).
	assert_eq "$(line_ids "$T/r2.out")" "${ids[2]} ${ids[3]}" "second run hands out 3 and 4 only"
	state_reply "{\"id\":\"${ids[2]}\",\"text\":\"r3\"}"
	state_reply "{\"id\":\"${ids[3]}\",\"text\":\"r4\"}"
	wait_until 10 a2a_ok_posts 4
	stop_bridge TERM
	assert_eq "$BR_STATUS" 0
	assert_eq "$(wc -l <"$T/r2.out")" 2 "lines of the second run"
	assert_eq "$(a2a_ok_texts | paste -sd' ' -)" "r1 r2 r3 r4" "replies posted"
	assert_eq "$(jq -r .last_since_id "$SD/$WS_ID.json")" "${ids[3]}" "cursor after the second run"
}

@test "out of order: a message done above the cursor is remembered and not handed out again" {
	local ids=() peer_a=$PEER_ID peer_b
	# 3 comes from another peer: its reply need not wait for 1 and 2 (same-peer order).
	new_peer >/dev/null
	peer_b=$PEER_ID
	ids+=($(queue_msgs "$WS_ID" "{\"count\":2,\"from\":\"$peer_a\",\"text\":\"m{n}\"}"))
	ids+=($(queue_msgs "$WS_ID" "{\"from\":\"$peer_b\",\"text\":\"m3\"}"))
	ids+=($(queue_msgs "$WS_ID" "{\"from\":\"$peer_a\",\"text\":\"m4\"}"))
	[ "${#ids[@]}" -eq 4 ]

	state_filter r1 --drain-timeout 1
	wait_until 10 file_lines "$T/r1.out" 4
	state_reply "{\"id\":\"${ids[2]}\",\"text\":\"r3\"}"
	wait_until 10 a2a_ok_posts 1
	wait_until 10 state_file_has 'any(.done_ids[]; . == $id)' --arg id "${ids[2]}"
	# The cursor cannot pass 1: 1 and 2 are still open.
	state_file_has '.last_since_id as $c | [$ids[] | select(. == $c)] | length == 0' \
		--argjson ids "$(printf '%s\n' "${ids[@]}" | jq -R . | jq -sc .)"
	stop_bridge TERM
	assert_eq "$BR_STATUS" 0
	state_file_has 'any(.done_ids[]; . == $id)' --arg id "${ids[2]}"
	state_file_has '.last_since_id as $c | [$ids[] | select(. == $c)] | length == 0' \
		--argjson ids "$(printf '%s\n' "${ids[@]}" | jq -R . | jq -sc .)"

	state_filter r2 --drain-timeout 1
	wait_until 10 file_lines "$T/r2.out" 3
	assert_eq "$(line_ids "$T/r2.out")" "${ids[0]} ${ids[1]} ${ids[3]}" "second run hands out 1, 2, 4"
	state_reply "{\"id\":\"${ids[0]}\",\"text\":\"r1\"}"
	state_reply "{\"id\":\"${ids[1]}\",\"text\":\"r2\"}"
	state_reply "{\"id\":\"${ids[3]}\",\"text\":\"r4\"}"
	wait_until 10 a2a_ok_posts 4
	stop_bridge TERM
	assert_eq "$BR_STATUS" 0
	assert_eq "$(wc -l <"$T/r2.out")" 3 "lines of the second run"
	assert_eq "$(a2a_ok_texts | sort | paste -sd' ' -)" "r1 r2 r3 r4" "each reply posted once"
	assert_eq "$(jq -r .last_since_id "$SD/$WS_ID.json")" "${ids[3]}" "cursor at the end"
}

@test "kill -9 with replies unposted: they are kept in the state file and posted after a restart, in order" {
	local peer_a=$PEER_ID peer_b ids=() i
	new_peer >/dev/null
	peer_b=$PEER_ID
	for i in 1 2 3; do
		ids+=($(queue_msgs "$WS_ID" "{\"from\":\"$peer_a\",\"text\":\"a$i\"}"))
		ids+=($(queue_msgs "$WS_ID" "{\"from\":\"$peer_b\",\"text\":\"b$i\"}"))
	done
	[ "${#ids[@]}" -eq 6 ]
	fault '{"endpoint":"a2a","status":503,"fail_next":1000000}'

	state_filter r1
	wait_until 10 file_lines "$T/r1.out" 6
	while IFS= read -r line; do
		state_reply "$(jq -c '{id, text: ("r:" + .text)}' <<<"$line")"
	done <"$T/r1.out"
	wait_until 10 state_file_has '.replies | length == 6'
	# Each kept reply is the post it stands for.
	state_file_has '[.replies[].path] | sort == ([range(3)] | map("/workspaces/\($a)/a2a", "/workspaces/\($b)/a2a") | sort)' \
		--arg a "$peer_a" --arg b "$peer_b"
	kill -KILL "$BR_PID"
	wait "$BR_PID" || true
	assert_eq "$(a2a_ok_texts | wc -l)" 0 "nothing accepted while the fault was on"
	ctl DELETE /_control/faults >/dev/null

	state_coproc r2
	wait_until 20 eval '[ "$(a2a_ok_texts | sed "s/^[rh]://" | sort -u | paste -sd" " -)" = "a1 a2 a3 b1 b2 b3" ]'
	# First replies per peer follow the order the messages arrived in.
	local path
	for path in "/workspaces/$peer_a/a2a" "/workspaces/$peer_b/a2a"; do
		posts a2a | jq -r --arg p "$path" \
			'.[] | select(.status == 200 and .path == $p) | .body.params.message.parts[0].text' \
			| sed 's/^[rh]://' | awk '!seen[$0]++' >"$T/order"
		if [ "$path" = "/workspaces/$peer_a/a2a" ]; then
			assert_eq "$(paste -sd' ' - <"$T/order")" "a1 a2 a3" "order to peer a"
		else
			assert_eq "$(paste -sd' ' - <"$T/order")" "b1 b2 b3" "order to peer b"
		fi
	done
	proc_alive "$BR_PID"
}

@test "kill -9 mid-stream: every message answered after a restart, each reply stored once, nothing done on disk answered again" {
	local ids total
	ids=($(queue_msgs "$WS_ID" "{\"count\":30,\"from\":\"$PEER_ID\",\"text\":\"m{n}\"}"))
	[ "${#ids[@]}" -eq 30 ]
	# An echo handler that takes 50 ms a message, so that the kill lands mid-stream.
	cat >"$T/slow.sh" <<-'EOF'
		exec {nap}<> <(:)
		while IFS= read -r line; do
			read -rt 0.05 -u "$nap" _ || true
			[[ $line =~ \"id\":\"([^\"]*)\" ]] && id=${BASH_REMATCH[1]}
			[[ $line =~ \"text\":\"([^\"]*)\" ]] && text=${BASH_REMATCH[1]}
			printf '{"id":"%s","text":"h:%s"}\n' "$id" "$text"
		done
	EOF

	"$MC_BIN" --api-url "$FAKE_URL" --state-dir "$SD" --interval 0.05 --heartbeat 1 \
		--max-inflight 4 "$WS_ID" -- bash "$T/slow.sh" </dev/null >/dev/null 2>"$T/r1.err" 3>&- &
	BR_PID=$!
	STATE_PIDS+=("$BR_PID")
	wait_until 20 a2a_ok_posts 10
	kill -KILL "$BR_PID"
	wait "$BR_PID" || true
	total=$(a2a_ok_texts | wc -l)
	[ "$total" -lt 30 ] || { echo "all 30 answered before the kill: not mid-stream"; return 1; }
	# What the state file says is done (the cursor and what is done above it) or
	# answered (a kept reply) must never be answered again.
	local settled
	settled=$(jq -c --argjson ids "$(printf '%s\n' "${ids[@]}" | jq -R . | jq -sc .)" '
		.last_since_id as $c
		| ([$ids | to_entries[] | select(.value == $c) | .key] | first // -1) as $upto
		| [$ids | to_entries[] | select(.key <= $upto) | .value] + .done_ids + [.replies[].id]
		| map(. as $id | $ids | index($id) | select(. != null) | "h:m\(. + 1)") | unique' "$SD/$WS_ID.json")

	"$MC_BIN" --api-url "$FAKE_URL" --state-dir "$SD" --interval 0.05 --heartbeat 1 \
		--max-inflight 4 "$WS_ID" -- bash "$T/slow.sh" </dev/null >/dev/null 2>"$T/r2.err" 3>&- &
	BR_PID=$!
	STATE_PIDS+=("$BR_PID")
	wait_until 30 eval '[ "$(a2a_ok_texts | sort -u | wc -l)" -eq 30 ]'
	local want got
	want=$(seq 1 30 | sed 's/^/h:m/' | paste -sd' ' -)
	got=$(a2a_ok_texts | awk '!seen[$0]++' | paste -sd' ' -)
	assert_eq "$got" "$want" "first replies, in order"
	# Answered again (a new answer, not a kept reply posted again): only what was
	# not settled on disk; and the peer stores each reply once, answered twice or not.
	assert_eq "$(posts a2a "$WS_ID" | jq -c --argjson settled "$settled" '
		[group_by(.body.params.message.messageId)[]
		 | select((map(.body.id) | unique | length) > 1) | .[0].body.params.message.parts[0].text]
		| map(select(. as $t | $settled | index($t))) ')" '[]' "settled messages answered again"
	assert_eq "$(activity "$PEER_ID" | jq -c --arg ws "$WS_ID" \
		'[.[] | select(.source_id == $ws) | .request_body.params.message.parts[0].text] | [length, (unique | length)]')" \
		'[30,30]' "replies stored on the peer"
}

@test "state file: mode 0600 in a 0700 directory created with its parents, saved atomically" {
	local ids rest
	ids=($(queue_msgs "$WS_ID" "{\"count\":5,\"from\":\"$PEER_ID\",\"text\":\"m{n}\"}"))
	umask 000
	SD=$T/a/b/state
	run timeout 20 "$MC_BIN" --api-url "$FAKE_URL" --state-dir "$SD" --interval 0.05 \
		--heartbeat 1 --once "$WS_ID" -- jq -c --unbuffered '{id, text: ("h:" + .text)}'
	[ "$status" -eq 0 ] || { echo "status $status: $output"; return 1; }
	[ -d "$T/a" ] && [ -d "$T/a/b" ]
	assert_eq "$(stat -c %a "$SD")" 700 "directory mode"
	assert_eq "$(stat -c %a "$SD/$WS_ID.json")" 600 "file mode"
	assert_eq "$(stat -c %U "$SD/$WS_ID.json")" "$(id -un)" "file owner"
	state_file_has '.workspace_id == $ws and .last_since_id == $last' \
		--arg ws "$WS_ID" --arg last "${ids[4]}"
	# Nothing but the state file (and the lock file) is left: no temporary files.
	rest=$(ls -A "$SD" | grep -vxF "$WS_ID.lock" | paste -sd' ' -)
	assert_eq "$rest" "$WS_ID.json" "files in the state directory"
}

@test "a corrupt state file: exit 1 naming the file, and the file is left as it was" {
	mkdir -m 700 "$SD"
	printf 'garbage{' >"$SD/$WS_ID.json"
	chmod 600 "$SD/$WS_ID.json"
	cp "$SD/$WS_ID.json" "$T/before"
	queue_msgs "$WS_ID" >/dev/null
	run timeout 20 "$MC_BIN" --api-url "$FAKE_URL" --state-dir "$SD" --interval 0.05 \
		--heartbeat 1 "$WS_ID" -- jq -c --unbuffered '{id, text}'
	[ "$status" -eq 1 ] || { echo "status $status: $output"; return 1; }
	[[ "$output" == *"$SD/$WS_ID.json"* ]] || { echo "file not named: $output"; return 1; }
	[[ "$output" == *corrupt* ]] || { echo "no 'corrupt': $output"; return 1; }
	cmp "$T/before" "$SD/$WS_ID.json"
	assert_eq "$(posts a2a | jq length)$(posts notify | jq length)" 00 "nothing answered"
}

@test "lock: a second bridge on the same workspace exits 1, another workspace in the same directory runs" {
	state_filter r1
	wait_until 10 eval '[ "$(posts heartbeat | jq length)" -ge 1 ]'

	run timeout 20 "$MC_BIN" --api-url "$FAKE_URL" --state-dir "$SD" --interval 0.05 \
		--heartbeat 1 "$WS_ID" </dev/null
	[ "$status" -eq 1 ] || { echo "status $status: $output"; return 1; }
	[[ "$output" == *"another molecule-connect is running"* ]] || { echo "$output"; return 1; }
	proc_alive "$BR_PID"

	local other other_token
	new_peer >/dev/null
	other=$PEER_ID
	other_token=$PEER_TOKEN
	queue_msgs "$other" '{"text":"for the other"}' >/dev/null
	run env MOLECULE_WORKSPACE_TOKEN="$other_token" timeout 20 "$MC_BIN" --api-url "$FAKE_URL" \
		--state-dir "$SD" --interval 0.05 --heartbeat 1 --once "$other" \
		-- jq -c --unbuffered '{id, text: ("h:" + .text)}'
	[ "$status" -eq 0 ] || { echo "status $status: $output"; return 1; }
	assert_eq "$(posts notify "$other" | jq -r '.[] | select(.status == 200) | .body.message')" \
		"h:for the other" "the other workspace's reply"
	[ -f "$SD/$other.json" ]
	proc_alive "$BR_PID"
	stop_bridge TERM
	assert_eq "$BR_STATUS" 0
}

@test "a state file in the Go client's format is read, and stays readable by it" {
	local ids
	ids=($(queue_msgs "$WS_ID" "{\"count\":4,\"from\":\"$PEER_ID\",\"text\":\"m{n}\"}"))
	mkdir -m 700 "$SD"
	printf '{"workspace_id":"%s","last_since_id":"%s"}\n' "$WS_ID" "${ids[1]}" >"$SD/$WS_ID.json"
	chmod 600 "$SD/$WS_ID.json"

	run timeout 20 "$MC_BIN" --api-url "$FAKE_URL" --state-dir "$SD" --interval 0.05 \
		--heartbeat 1 --once "$WS_ID" -- sh "$T/echo.sh" "$T/seen"
	[ "$status" -eq 0 ] || { echo "status $status: $output"; return 1; }
	assert_eq "$(line_ids "$T/seen")" "${ids[2]} ${ids[3]}" "messages handed out"
	assert_eq "$(a2a_ok_texts | paste -sd' ' -)" "h:m3 h:m4" "replies posted"
	state_file_has '.workspace_id == $ws and .last_since_id == $last and
		(.done_ids | type) == "array" and (.replies | type) == "array"' \
		--arg ws "$WS_ID" --arg last "${ids[3]}"
}

@test "a state directory that cannot be created: exit 1 naming the path" {
	: >"$T/file"
	run timeout 20 "$MC_BIN" --api-url "$FAKE_URL" --state-dir "$T/file/state" --interval 0.05 \
		--heartbeat 1 "$WS_ID" </dev/null
	[ "$status" -eq 1 ] || { echo "status $status: $output"; return 1; }
	[[ "$output" == *"$T/file/state"* ]] || { echo "path not named: $output"; return 1; }
	[[ "$output" == *"molecule-connect: error: "* ]] || { echo "no error line: $output"; return 1; }
	[ -f "$T/file" ] && [ ! -s "$T/file" ]
}
