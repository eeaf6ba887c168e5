#!/usr/bin/env bats
# delivery.bats: the delivery promises where they used to leak: a first run that
# finished nothing, a 410 on the first poll after a restart, --once for cron (every
# page, bounded in time, an unreachable platform), --max-messages counting done
# messages.

load helpers

setup() {
	tagged_setup
}

teardown() {
	tagged_teardown
}

# dl_created_ms ID: the created_at of WS_ID's row ID in epoch milliseconds.
dl_created_ms() {
	activity "$WS_ID" | jq -r --arg id "$1" \
		'.[] | select(.id == $id) | .created_at | sub("\\.[0-9]+Z$"; "Z") | fromdate * 1000'
}

# dl_now_after MS: the wall clock has passed MS (epoch milliseconds).
dl_now_after() {
	[ "$(now_ms)" -gt "$1" ]
}

# dl_first_run_nothing_done STOP: a first run with a one-second window whose handler
# (this test) answers nothing, stopped by STOP ("TERM", or "KILL" once the state file
# holds where the window began), then a restart after the messages left that window:
# every message is handed out and answered.
dl_first_run_nothing_done() {
	local ids oldest
	mapfile -t ids < <(queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"count\":3,\"text\":\"m{n}\"}")
	tagged_filter r1 --since-secs 1 --drain-timeout 0.5
	wait_until 10 file_lines "$T/r1.out" 3
	assert_eq "$(line_ids "$T/r1.out")" "${ids[*]}" "handed out in the first run"
	if [ "$1" = KILL ]; then
		wait_until 10 state_file_has '.replay_from | type == "string"'
		kill -KILL "$BR_PID"
		wait "$BR_PID" || true
	else
		stop_bridge TERM
	fi
	tagged_close
	state_file_has '.last_since_id == "" and .done_ids == []'
	# The restart comes after the messages left the one-second window (the clock
	# cannot be moved: it is waited for).
	oldest=$(dl_created_ms "${ids[0]}")
	wait_until 10 dl_now_after $((oldest + 2500))
	tagged_once r2 --since-secs 1
	assert_eq "$RUN_STATUS" 0 "exit status"
	assert_eq "$(line_ids "$T/r2.seen")" "${ids[*]}" "handed out again after the restart"
	assert_eq "$(a2a_ok_texts | paste -sd' ' -)" "h:m1 h:m2 h:m3" "replies"
	# Done now: the cursor replaces the anchor.
	state_file_has '.last_since_id == $id and (has("replay_from") | not)' --arg id "${ids[2]}"
}

@test "a first run that finished nothing, stopped, restarted after its --since-secs window: every message handed out" {
	dl_first_run_nothing_done TERM
}

@test "a first run that finished nothing, killed, restarted after its --since-secs window: every message handed out" {
	dl_first_run_nothing_done KILL
}

@test "a 410 on the first poll after a restart: nothing done before is handed out again" {
	local a b
	mapfile -t a < <(queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"count\":4,\"text\":\"a{n}\"}")
	# First run: a1 and a2 answered (the cursor), a4 answered out of order (a done id),
	# a3 left open.
	tagged_filter r1 --drain-timeout 0.5
	wait_until 10 file_lines "$T/r1.out" 4
	tagged_reply "{\"id\":\"${a[0]}\"}"
	tagged_reply "{\"id\":\"${a[1]}\"}"
	tagged_reply "{\"id\":\"${a[3]}\"}"
	wait_until 10 state_file_has '.last_since_id == $c and .done_ids == [$d]' --arg c "${a[1]}" --arg d "${a[3]}"
	stop_bridge TERM
	cp "$SD/$WS_ID.json" "$T/r1.json"
	tagged_close
	# The platform prunes the cursor row only: a1, before it, is still there.
	ctl POST /_control/prune "{\"workspace_id\":\"$WS_ID\",\"ids\":[\"${a[1]}\"]}" >/dev/null
	mapfile -t b < <(queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"count\":2,\"text\":\"b{n}\"}")
	tagged_once r2
	assert_eq "$RUN_STATUS" 0 "exit status"
	grep -Eq '^molecule-connect: warning: .*cursor.*410' "$T/r2.err"
	# Only what was not done: a3 (open at the stop), then the new ones.
	assert_eq "$(line_ids "$T/r2.seen")" "${a[2]} ${b[*]}" "handed out after the 410"
	assert_eq "$(a2a_ok_texts | paste -sd' ' -)" "h:a3 h:b1 h:b2" "replies"
	# What made it possible: the first run kept where its last done message stands.
	jq -e --arg s "$(activity "$WS_ID" | jq -r --arg id "${a[0]}" '.[] | select(.id == $id) | .seq + 1')" 		'.done_seq == ($s | tonumber) and (.done_at | type == "string")' "$T/r1.json" >/dev/null
}

@test "--once with a saved cursor: every message waiting is handed out, not one page" {
	local first ids
	first=$(queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"text\":\"first\"}")
	tagged_once r1
	assert_eq "$RUN_STATUS" 0 "first run"
	state_file_has '.last_since_id == $id' --arg id "$first"
	mapfile -t ids < <(queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"count\":40,\"text\":\"n{n}\"}")
	tagged_once r2 --drain-timeout 20
	assert_eq "$RUN_STATUS" 0 "second run"
	assert_eq "$(line_ids "$T/r2.seen")" "${ids[*]}" "all forty handed out, in order"
	assert_eq "$(a2a_ok_texts | wc -l)" 41 "replies"
	state_file_has '.last_since_id == $id and .done_ids == []' --arg id "${ids[39]}"
}

@test "--once with a message the handler never answers: ends at --drain-timeout, exit 0, what is not done is kept" {
	local ids t0 t1
	mapfile -t ids < <(queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"count\":3,\"text\":\"m{n}\"}")
	queue_msgs "$WS_ID" '{"from":null,"text":"canvas"}' >/dev/null
	t0=$(now_ms)
	tagged_once r1 --drain-timeout 2 -- \
		jq -c --unbuffered 'select(.text != "m2") | {id, text: ("h:" + .text)}'
	t1=$(now_ms)
	assert_eq "$RUN_STATUS" 0 "exit status"
	# Bounded: it did not wait for the missing reply (timeout 30 would have ended it).
	[ $((t1 - t0)) -lt 20000 ]
	grep -Eq '^molecule-connect: warning: --once: --drain-timeout \(2 s\) is up: 1 message unanswered, 1 reply not posted; kept for the next run$' "$T/r1.err"
	# m1 and the canvas are answered; m3's reply waits behind m2 (replies to one
	# peer keep their order) and is kept in the state file with it.
	assert_eq "$(a2a_ok_texts | paste -sd' ' -)" "h:m1" "posted to the peer"
	assert_eq "$(posts notify "$WS_ID" | jq -r '.[].body.message')" "h:canvas" "posted to the canvas"
	state_file_has '.last_since_id == $c and (.replies | map(.id)) == [$r]' --arg c "${ids[0]}" --arg r "${ids[2]}"
	# The next run hands out m2, and only m2, and posts both replies.
	tagged_once r2
	assert_eq "$RUN_STATUS" 0 "next run"
	assert_eq "$(line_ids "$T/r2.seen")" "${ids[1]}" "handed out by the next run"
	assert_eq "$(a2a_ok_texts | sort | paste -sd' ' -)" "h:m1 h:m2 h:m3" "posted after the next run"
	# All done: the cursor is past the last row (the echo of the canvas reply).
	state_file_has '.last_since_id == $c and .replies == [] and .done_ids == []' \
		--arg c "$(activity "$WS_ID" | jq -r '.[-1].id')"
}

@test "--once against a platform that cannot be reached: a bounded retry, then exit 1 with an error" {
	local url=$FAKE_URL t0 t1
	fake_stop
	t0=$(now_ms)
	RUN_STATUS=0
	timeout 30 "$MC_BIN" --api-url "$url" --state-dir "$SD" --once --drain-timeout 2 "$WS_ID" \
		-- sh "$T/echo.sh" "$T/seen" </dev/null >"$T/r1.out" 2>"$T/r1.err" 3>&- || RUN_STATUS=$?
	t1=$(now_ms)
	assert_eq "$RUN_STATUS" 1 "exit status"
	[ $((t1 - t0)) -lt 20000 ]
	assert_eq "$(grep -c '^molecule-connect: error: ' "$T/r1.err")" 1 "error lines"
	grep -q "^molecule-connect: error: --once: the platform at $url did not answer within --drain-timeout (2 s)" "$T/r1.err"
	# It was tried more than once meanwhile.
	grep -q 'attempt 1, retrying' "$T/r1.err"
	[ ! -s "$T/r1.out" ]
}

@test "--max-messages counts done messages: one handed out again does not end the run early" {
	local ids
	mapfile -t ids < <(queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"count\":3,\"text\":\"m{n}\"}")
	# The handler asks for m1 again the first time it sees it, and answers the rest.
	cat >"$T/retry-once.sh" <<-'EOF'
		#!/bin/sh
		while IFS= read -r line; do
			printf '%s\n' "$line" >>"$1"
			id=$(printf '%s' "$line" | jq -r .id)
			text=$(printf '%s' "$line" | jq -r .text)
			if [ "$text" = m1 ] && [ ! -e "$1.retried" ]; then
				: >"$1.retried"
				printf '{"id":"%s","retry":true}\n' "$id"
			else
				printf '{"id":"%s","text":"h:%s"}\n' "$id" "$text"
			fi
		done
	EOF
	RUN_STATUS=0
	timeout 30 "$MC_BIN" --api-url "$FAKE_URL" --state-dir "$SD" --interval 0.05 --heartbeat 1 \
		--max-messages 2 "$WS_ID" -- sh "$T/retry-once.sh" "$T/seen" \
		</dev/null >"$T/r1.out" 2>"$T/r1.err" 3>&- || RUN_STATUS=$?
	assert_eq "$RUN_STATUS" 0 "exit status"
	# m1 came back and was answered: two messages done (m2's reply waited for it:
	# replies to one peer keep their order), each posted once; m3 waits for the
	# next run.
	assert_eq "$(a2a_ok_texts | paste -sd' ' -)" "h:m1 h:m2" "replies posted"
	assert_eq "$(jq -r .text "$T/seen" | paste -sd' ' -)" "m1 m2 m1" "handed out"
	state_file_has '.last_since_id == $id' --arg id "${ids[1]}"
}
