#!/usr/bin/env bats
# faults.bats: the bridge against a failing platform: 410 on the cursor, 5xx, connection
# resets, 429 with Retry-After, register failures, a peer gone for good, hostile
# activity answers, slow answers.

load helpers

setup() {
	bridge_setup
	SD=$T/state
	FAULTS_PIDS=()
	echo_handler
}

teardown() {
	kill_pids "${FAULTS_PIDS[@]}"
	fake_stop
}

# faults_bridge [OPTIONS...]: starts the bridge for WS_ID with the echo handler as
# co-process (it answers "h:<text>" and logs message lines to $T/seen); logs go to
# $T/err. Sets BR_PID.
faults_bridge() {
	: >"$T/seen"
	"$MC_BIN" --api-url "$FAKE_URL" --state-dir "$SD" --interval 0.05 --heartbeat 1 "$@" \
		"$WS_ID" -- sh "$T/echo.sh" "$T/seen" </dev/null >"$T/out" 2>"$T/err" 3>&- &
	BR_PID=$!
	FAULTS_PIDS+=("$BR_PID")
}

# faults_requests JQ_FILTER: the fake's request log run through a jq filter (-r).
faults_requests() {
	ctl GET /_control/requests | jq -r "$1"
}

# faults_grep_err ERE: the bridge's stderr has a line matching ERE.
faults_grep_err() {
	grep -Eq -- "$1" "$T/err"
}

# faults_count_err ERE: how many stderr lines match ERE.
faults_count_err() {
	grep -Ec -- "$1" "$T/err" || true
}

# faults_requests_since T_MS: the fake has logged a request that arrived at T_MS or later.
faults_requests_since() {
	faults_requests "[.[] | select(.t_ms >= $1)] | length > 0" | grep -qx true
}

# faults_row ID SOURCE_ID: an activity row of WS_ID with these (raw) id and source_id.
faults_row() {
	printf '{"id":"%s","workspace_id":"%s","activity_type":"a2a_receive","source_id":"%s",' "$1" "$WS_ID" "$2"
	printf '"target_id":"%s","method":"message/send","summary":null,"duration_ms":null,' "$WS_ID"
	# Microseconds, as the platform writes them: a row stamped in the same second as
	# the last done message but without its fraction would sort before it, and the
	# bridge passes over rows below the last done one without a word.
	printf '"status":"ok","error_detail":null,"created_at":"%s",' "$(date -u +%Y-%m-%dT%H:%M:%S.%6NZ)"
	printf '"request_body":{"jsonrpc":"2.0","id":"1","method":"message/send","params":{"message":'
	printf '{"role":"user","messageId":"m","parts":[{"kind":"text","text":"evil"}]}}}}'
}

# faults_state_has JQ_EXPR [jq args...]: the state file exists and JQ_EXPR holds on it.
faults_state_has() {
	local expr=$1
	shift
	[ -f "$SD/$WS_ID.json" ] && jq -e "$@" "$expr" "$SD/$WS_ID.json" >/dev/null
}

@test "410 on the cursor: a warning, a re-seed, and new messages still come" {
	local ids more
	ids=($(queue_msgs "$WS_ID" "{\"count\":2,\"from\":\"$PEER_ID\",\"text\":\"a{n}\"}"))
	faults_bridge
	wait_until 10 a2a_ok_posts 2
	wait_until 10 faults_state_has '.last_since_id == $c' --arg c "${ids[1]}"
	# The cursor row (and everything older) goes.
	ctl POST /_control/prune "{\"workspace_id\":\"$WS_ID\",\"before_id\":\"${ids[1]}\"}" >/dev/null
	wait_until 10 faults_grep_err '^molecule-connect: warning: .*410.*cursor|^molecule-connect: warning: .*cursor.*410'
	more=($(queue_msgs "$WS_ID" "{\"count\":2,\"from\":\"$PEER_ID\",\"text\":\"b{n}\"}"))
	wait_until 10 a2a_ok_posts 4
	assert_eq "$(a2a_ok_texts | paste -sd' ' -)" "h:a1 h:a2 h:b1 h:b2" "replies"
	assert_eq "$(jq -r .id "$T/seen" | paste -sd' ' -)" "${ids[*]} ${more[*]}" "messages handed out"
	# The 410 was answered, and the bridge went back to a time-based replay.
	faults_requests '[.[] | select(.status == 410)] | length' | grep -qvx 0
	faults_requests '[.[] | select(.status == 410)][0].seq as $s |
		[.[] | select(.seq > $s and (.path | test("since_secs=")))] | length' | grep -qvx 0
	proc_alive "$BR_PID"
	stop_bridge TERM
	assert_eq "$BR_STATUS" 0
	assert_eq "$(faults_count_err '^molecule-connect: error: ')" 0 "error lines"
}

@test "5xx on activity: retried, the messages are still delivered once each" {
	fault '{"endpoint":"activity","status":500,"fail_next":3}'
	queue_msgs "$WS_ID" "{\"count\":3,\"from\":\"$PEER_ID\",\"text\":\"m{n}\"}" >/dev/null
	faults_bridge
	wait_until 20 a2a_ok_posts 3
	assert_eq "$(a2a_ok_texts | paste -sd' ' -)" "h:m1 h:m2 h:m3" "replies"
	assert_eq "$(faults_requests '[.[] | select(.path | contains("/activity"))][0:4] | map(.status) | join(" ")')" \
		"500 500 500 200" "statuses of the first polls"
	proc_alive "$BR_PID"
	stop_bridge TERM
	assert_eq "$BR_STATUS" 0
}

@test "connection resets on a2a: every reply is posted exactly once" {
	fault '{"endpoint":"a2a","reset_next":2}'
	queue_msgs "$WS_ID" "{\"count\":3,\"from\":\"$PEER_ID\",\"text\":\"m{n}\"}" >/dev/null
	faults_bridge
	wait_until 20 a2a_ok_posts 3
	# A straggler would show up within this time.
	nap 0.5
	assert_eq "$(a2a_ok_texts | paste -sd' ' -)" "h:m1 h:m2 h:m3" "accepted replies"
	assert_eq "$(posts a2a | jq '[.[] | select(.status == 0)] | length')" 2 "reset posts"
	proc_alive "$BR_PID"
}

@test "429 with Retry-After: no request at all for that long, then traffic resumes" {
	faults_bridge
	wait_until 10 eval '[ "$(faults_requests "[.[] | select(.status == 200 and (.path | contains(\"/activity\")))] | length")" -ge 3 ]'
	fault '{"endpoint":"activity","status":429,"retry_after":2,"fail_next":1}'
	wait_until 10 eval '[ "$(faults_requests "[.[] | select(.status == 429)] | length")" -eq 1 ]'
	local t429
	t429=$(faults_requests '.[] | select(.status == 429) | .t_ms')
	# Traffic resumes: a request 2 s after the 429 or later.
	wait_until 10 faults_requests_since $((t429 + 1900))
	local early
	early=$(faults_requests "[.[] | select(.t_ms >= $t429 + 100 and .t_ms < $t429 + 1900) | \"\(.t_ms - $t429) ms: \(.method) \(.path)\"] | join(\"; \")")
	assert_eq "$early" "" "requests during the Retry-After pause"
	# And the bridge works again.
	queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"text\":\"after\"}" >/dev/null
	wait_until 10 a2a_ok_posts 1
	assert_eq "$(a2a_ok_texts)" "h:after"
	proc_alive "$BR_PID"
}

@test "503 on register: retried, registered on the third attempt" {
	fault '{"endpoint":"register","status":503,"fail_next":2}'
	faults_bridge
	wait_until 20 eval '[ "$(posts heartbeat | jq length)" -ge 1 ]'
	assert_eq "$(posts register | jq -r 'map(.status) | join(" ")')" "503 503 200" "register statuses"
	proc_alive "$BR_PID"
	stop_bridge TERM
	assert_eq "$BR_STATUS" 0
}

@test "400 on register: exit 2 (a configuration error) with an error line" {
	fault '{"endpoint":"register","status":400,"body":{"error":"invalid request body"}}'
	run timeout 20 "$MC_BIN" --api-url "$FAKE_URL" --state-dir "$SD" --interval 0.05 \
		--heartbeat 1 "$WS_ID" -- jq -c --unbuffered '{id}'
	[ "$status" -eq 2 ] || { echo "status $status: $output"; return 1; }
	[[ "$output" == *"molecule-connect: error: "*400* ]] || { echo "$output"; return 1; }
	assert_eq "$(posts register | jq -r 'map(.status) | join(" ")')" "400" "one register attempt"
	assert_eq "$(posts heartbeat | jq length)" 0 "heartbeats"
}

@test "a2a 404 (peer gone): refused for good, the message is done, the next one goes" {
	local ids
	ids=($(queue_msgs "$WS_ID" "{\"count\":2,\"from\":\"$PEER_ID\",\"text\":\"m{n}\"}"))
	fault '{"endpoint":"a2a","status":404,"body":{"error":"workspace not found"},"fail_next":1}'
	faults_bridge
	wait_until 10 a2a_ok_posts 1
	wait_until 10 faults_grep_err "^molecule-connect: error: .*${ids[0]}.*refused for good"
	assert_eq "$(posts a2a | jq -r 'map("\(.status) \(.body.params.message.parts[0].text)") | join(", ")')" \
		"404 h:m1, 200 h:m2" "a2a posts"
	wait_until 10 faults_state_has '.last_since_id == $c and (.replies | length) == 0' --arg c "${ids[1]}"
	assert_eq "$(jq -r .id "$T/seen" | paste -sd' ' -)" "${ids[*]}" "each message handed out once"
	proc_alive "$BR_PID"
	stop_bridge TERM
	assert_eq "$BR_STATUS" 0
	faults_state_has '.last_since_id == $c' --arg c "${ids[1]}"
}

@test "hostile activity answers: an error line each, no crash, nothing written outside the state dir" {
	local ids deep="" i n body before after passwd
	SD=$T/a/b/state
	ids=($(queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"text\":\"first\"}"))
	faults_bridge
	wait_until 10 a2a_ok_posts 1
	before=$(cd "$T" && find . -path ./a/b/state -prune -o -print | sort)
	passwd=$(md5sum /etc/passwd)

	for ((i = 0; i < 1000; i++)); do deep+="["; done
	for ((i = 0; i < 1000; i++)); do deep+="]"; done
	local bodies=(
		'{"x":1}'
		'[{"id":"0e0b1c1e-5d4f-4a3b-9c2d-1e2f3a4b5c6d","workspace_'
		"[$(faults_row ../../etc/passwd "$PEER_ID")]"
		"[$(faults_row 3b0c8e5a-9d7f-4c1e-8a2b-6f5e4d3c2b1a a/../b)]"
		"$deep"
	)
	for body in "${bodies[@]}"; do
		n=$(faults_count_err '^molecule-connect: error: ')
		fault "$(jq -nc --arg raw "$body" '{endpoint: "activity", raw: $raw, fail_next: 1}')"
		wait_until 10 eval '[ "$(faults_count_err "^molecule-connect: error: ")" -gt "$n" ]' \
			|| { echo "no error line for: ${body:0:80}"; return 1; }
		proc_alive "$BR_PID" || { echo "died on: ${body:0:80}"; cat "$T/err"; return 1; }
	done
	ctl DELETE /_control/faults >/dev/null

	ids+=($(queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"text\":\"after\"}"))
	wait_until 10 a2a_ok_posts 2
	assert_eq "$(a2a_ok_texts | paste -sd' ' -)" "h:first h:after" "replies"
	assert_eq "$(jq -r .id "$T/seen" | paste -sd' ' -)" "${ids[*]}" "only real messages handed out"
	assert_eq "$(posts a2a | jq -r '[.[].path] | unique | join(" ")')" "/workspaces/$PEER_ID/a2a" "post paths"
	proc_alive "$BR_PID"
	after=$(cd "$T" && find . -path ./a/b/state -prune -o -print | sort)
	assert_eq "$after" "$before" "files outside the state dir"
	assert_eq "$(md5sum /etc/passwd)" "$passwd" "/etc/passwd"
	# Error lines, not dumps of what the platform sent.
	assert_eq "$(awk 'length > 1000 { print NR ": " length " bytes" }' "$T/err")" "" "overlong log lines"
	assert_eq "$(ls -A "$SD" | grep -vxF -e "$WS_ID.json" -e "$WS_ID.lock" | paste -sd' ' -)" "" \
		"other files in the state dir"
}

@test "slow activity answers do not delay heartbeats" {
	# Each poll takes 2.5 s; heartbeats are due every second.
	fault '{"endpoint":"activity","delay_ms":2500}'
	faults_bridge --heartbeat 1
	wait_until 15 eval '[ "$(posts heartbeat | jq length)" -ge 5 ]'
	local gaps
	gaps=$(posts heartbeat | jq -r '[.[].t_ms] | [range(1; length) as $i | .[$i] - .[$i - 1]] | map(tostring) | join(" ")')
	local g
	for g in $gaps; do
		[ "$g" -lt 2000 ] || { echo "heartbeat gaps (ms): $gaps"; return 1; }
	done
	proc_alive "$BR_PID"
}
