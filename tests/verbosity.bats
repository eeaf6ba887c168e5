#!/usr/bin/env bats
# verbosity.bats: what -v and -vv add to the log (each message's path, every request,
# a draining backlog's progress), the token kept out of it, and the summary line at
# exit, as text and as JSON.

load helpers

setup() {
	tagged_setup
}

teardown() {
	tagged_teardown
}

# count_lines FILE REGEX: how many lines of FILE match the extended REGEX.
count_lines() {
	grep -Ec -- "$2" "$1" || true
}

# keep_one_handler: makes $T/echo.sh (what tagged_coproc runs) a co-process that logs
# every message line to the file named by its first argument and answers every
# message but those whose text is "skip".
keep_one_handler() {
	cat >"$T/echo.sh" <<-'EOF'
		#!/bin/sh
		tee -a "$1" | jq -c --unbuffered 'select(.text != "skip") | {id, text: ("h:" + .text)}'
	EOF
}

# summary_run TAG [OPTIONS...]: four messages from the peer, m1 to m3 and "skip"; the
# platform refuses the reply to m1 for good, "skip" gets no answer. Once the handler
# has seen all four and the other two replies are posted, the bridge is stopped:
# "skip" is kept for the next run. Sets IDS.
summary_run() {
	local tag=$1
	shift
	mapfile -t IDS < <(queue_msgs "$WS_ID" "{\"count\":3,\"from\":\"$PEER_ID\",\"text\":\"m{n}\"}")
	IDS+=("$(queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"text\":\"skip\"}")")
	fault '{"endpoint":"a2a","status":404,"body":{"error":"workspace not found"},"fail_next":1}'
	keep_one_handler
	tagged_coproc "$tag" --drain-timeout 1 "$@"
	wait_until 20 file_lines "$T/$tag.seen" 4
	wait_until 20 a2a_ok_posts 2
	stop_bridge TERM
	assert_eq "$BR_STATUS" 0 "exit status"
	assert_eq "$(posts a2a "$WS_ID" | jq -c '[.[].status]')" '[404,200,200]' "the posts"
	echo_handler
}

@test "-v: a line for each step of a message: received, handed out, replied, posted with status and ms" {
	local id
	id=$(queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"text\":\"hi\"}")
	fault '{"endpoint":"a2a","status":503,"fail_next":1}'
	tagged_once r1 -v
	assert_eq "$RUN_STATUS" 0 "exit status"
	local err=$T/r1.err
	assert_eq "$(count_lines "$err" "^molecule-connect: debug: received: message $id from peer $PEER_ID$")" 1 "received"
	assert_eq "$(count_lines "$err" "^molecule-connect: debug: handed out: message $id to handler sh \\(pid [0-9]+\\)$")" 1 \
		"handed out"
	assert_eq "$(count_lines "$err" "^molecule-connect: debug: replied: line 1 answers message $id \\(a text reply\\)$")" 1 \
		"replied"
	assert_eq "$(count_lines "$err" "^molecule-connect: debug: post failed, trying again: reply to message $id: HTTP 503.*, [0-9]+ ms, attempt 1$")" 1 \
		"the failed attempt"
	assert_eq "$(count_lines "$err" "^molecule-connect: debug: posted: reply to message $id: HTTP 200, [0-9]+ ms, attempt 2$")" 1 \
		"posted"
	assert_eq "$(count_lines "$err" "^molecule-connect: debug: saved: the cursor is at activity row $id, done up to seq [0-9]+$")" 1 \
		"the cursor saved"
	# In that order.
	assert_eq "$(grep -Eo '^molecule-connect: debug: (received|handed out|replied|post failed, trying again|posted|saved):' "$err" |
		sed 's/^molecule-connect: debug: //' | paste -sd' ' -)" \
		"received: handed out: replied: post failed, trying again: posted: saved:" "the steps in order"
	assert_eq "$(count_lines "$err" ': trace: ')" 0 "request lines at -v"
}

@test "default verbosity: no line per message, no request lines, only the summary" {
	local id
	id=$(queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"text\":\"hi\"}")
	tagged_once r1
	assert_eq "$RUN_STATUS" 0 "exit status"
	assert_eq "$(count_lines "$T/r1.err" ': (debug|trace): ')" 0 "debug and trace lines"
	assert_eq "$(count_lines "$T/r1.err" "$id")" 0 "lines naming the message"
	assert_eq "$(tail -n 1 "$T/r1.err")" \
		"molecule-connect: info: exiting: 1 handed out, 1 answered, 0 kept for the next run, 0 failed" "the summary"
}

@test "--quiet: no summary line" {
	queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"text\":\"hi\"}" >/dev/null
	tagged_once r1 --quiet
	assert_eq "$RUN_STATUS" 0 "exit status"
	a2a_ok_posts 1
	[ ! -s "$T/r1.err" ] || { cat "$T/r1.err"; return 1; }
}

@test "-vv, -v -v and --verbose --verbose: the same level" {
	local spelling
	for spelling in "-vv" "-v -v" "--verbose --verbose" "-v --verbose"; do
		# shellcheck disable=SC2086 # the spelling is two words on purpose
		run "$MC_BIN" --dry-run --api-url "$FAKE_URL" $spelling "$WS_ID"
		[ "$status" -eq 0 ] || { echo "$spelling: $output"; return 1; }
		assert_eq "$(grep '^verbosity: ' <<<"$output")" "verbosity: 2" "$spelling"
	done
}

@test "-vv: one line per request (heartbeat, poll, reply, ack) with status, ms and bytes; never the token" {
	local id err=$T/r1.err
	id=$(queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"text\":\"hi\"}")
	tagged_coproc r1 -v -v
	local tail=': HTTP 200, [0-9]+ ms, [0-9]+ bytes sent, [0-9]+ received$'
	wait_until 20 grep -Eq "^molecule-connect: trace: request: POST /registry/heartbeat$tail" "$err"
	wait_until 20 grep -Eq "^molecule-connect: trace: request: GET /workspaces/$WS_ID/activity\\?[^ ]*$tail" "$err"
	wait_until 20 grep -Eq "^molecule-connect: trace: request: POST /workspaces/$PEER_ID/a2a$tail" "$err"
	wait_until 20 grep -Eq "^molecule-connect: trace: request: POST /workspaces/$WS_ID/activity/ack$tail" "$err"
	stop_bridge TERM
	assert_eq "$BR_STATUS" 0 "exit status"
	assert_eq "$(count_lines "$err" "^molecule-connect: trace: request: POST /workspaces/$PEER_ID/a2a")" 1 "one line for the reply"
	# The per-message lines come too.
	assert_eq "$(count_lines "$err" "^molecule-connect: debug: posted: reply to message $id: HTTP 200")" 1 "posted"
	[ -n "$WS_TOKEN" ] && [ "$WS_TOKEN" != null ]
	assert_eq "$(grep -Fc -- "$WS_TOKEN" "$err")" 0 "lines with the token"
	assert_eq "$(count_lines "$err" 'Authorization|Bearer')" 0 "lines with the header"
}

@test "-vv: the event stream's opening is a request line too" {
	tagged_coproc r1 -vv
	wait_until 10 sse_streams "$WS_ID" 1
	wait_until 10 grep -Eq "^molecule-connect: trace: request: GET /workspaces/$WS_ID/[^ ]*: HTTP 200, stream open after [0-9]+ ms$" \
		"$T/r1.err"
	stop_bridge TERM
	assert_eq "$BR_STATUS" 0 "exit status"
}

@test "the summary counts: handed out, answered, kept for the next run, failed" {
	summary_run r1 -v
	local err=$T/r1.err
	assert_eq "$(tail -n 1 "$err")" \
		"molecule-connect: info: exiting: 4 handed out, 2 answered, 1 kept for the next run, 1 failed" "the summary"
	assert_eq "$(count_lines "$err" "^molecule-connect: debug: post refused: reply to message ${IDS[0]}: HTTP 404: workspace not found, [0-9]+ ms, attempt 1$")" 1 \
		"the refusal at -v"
	assert_eq "$(count_lines "$err" "^molecule-connect: error: reply to message ${IDS[0]} refused for good")" 1 "the error line"
	# The next run gets the one kept.
	tagged_once r2 -v
	assert_eq "$(jq -r .id "$T/r2.seen")" "${IDS[3]}" "handed out again"
	assert_eq "$(tail -n 1 "$T/r2.err")" \
		"molecule-connect: info: exiting: 1 handed out, 1 answered, 0 kept for the next run, 0 failed" "the next summary"
}

@test "--log-format json: the summary is one JSON line with the counts as numbers" {
	summary_run r1 --log-format json
	local last
	last=$(tail -n 1 "$T/r1.err")
	jq -e . <<<"$last" >/dev/null || { echo "not JSON: $last"; return 1; }
	assert_eq "$(jq -c '[.level, .handed_out, .answered, .kept, .failed]' <<<"$last")" '["info",4,2,1,1]' "the fields"
	assert_eq "$(jq -r '.msg' <<<"$last")" "exiting: 4 handed out, 2 answered, 1 kept for the next run, 1 failed" "msg"
	# Every line of the run is JSON.
	jq -e . "$T/r1.err" >/dev/null
}

@test "-v: a draining backlog says how far it is, at most once a second" {
	local start elapsed n
	queue_msgs "$WS_ID" '{"count":300,"text":"m{n}"}' >/dev/null
	# About 10 ms a message: the drain takes seconds.
	cat >"$T/slow.sh" <<-'EOF'
		#!/bin/sh
		while IFS= read -r line; do
			sleep 0.01
			printf '%s\n' "$line" | jq -c '{id, text: "ok"}'
		done
	EOF
	start=$(now_ms)
	tagged_once r1 -v --drain-timeout 120 -- sh "$T/slow.sh"
	elapsed=$((($(now_ms) - start + 999) / 1000))
	assert_eq "$RUN_STATUS" 0 "exit status"
	assert_eq "$(tail -n 1 "$T/r1.err")" \
		"molecule-connect: info: exiting: 300 handed out, 300 answered, 0 kept for the next run, 0 failed" "the summary"
	n=$(count_lines "$T/r1.err" '^molecule-connect: debug: draining: [0-9]+ handed out, [0-9]+ answered, [0-9]+ waiting$')
	[ "$n" -ge 1 ] || { echo "no progress line in a drain of $elapsed s"; return 1; }
	[ "$n" -le $((elapsed + 1)) ] || { echo "$n progress lines in $elapsed s"; return 1; }
	assert_eq "$(count_lines "$T/r1.err" 'draining:')" "$n" "progress lines in another form"
}
