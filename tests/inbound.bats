#!/usr/bin/env bats
# inbound.bats: the inbound side of the platform version 2: what each row is (own
# traffic, calls that cannot be served, system turns), peer info, a replay larger than
# one page read back with before_ts, acknowledgements.

load helpers

setup() {
	bridge_setup
	SD=$T/state
	IN_PIDS=()
	echo_handler
}

teardown() {
	kill_pids "${IN_PIDS[@]}"
	local rc=0
	if grep -Eqs 'Sanitizer|runtime error:' "$T"/*.err; then
		grep -Es 'Sanitizer|runtime error:' "$T"/*.err | head -n 20 >&2
		rc=1
	fi
	fake_stop || rc=1
	return "$rc"
}

# in_coproc TAG [OPTIONS...]: the bridge for WS_ID in the background with the echo
# handler as co-process (it answers "h:<text>" and logs message lines to $T/TAG.seen);
# logs to $T/TAG.err. Sets BR_PID.
in_coproc() {
	local tag=$1
	shift
	: >"$T/$tag.seen"
	"$MC_BIN" --api-url "$FAKE_URL" --state-dir "$SD" --interval 0.05 --heartbeat 1 "$@" \
		"$WS_ID" -- sh "$T/echo.sh" "$T/$tag.seen" </dev/null >"$T/$tag.out" 2>"$T/$tag.err" 3>&- &
	BR_PID=$!
	IN_PIDS+=("$BR_PID")
}

# in_once TAG [OPTIONS...] -- COMMAND...: a --once run in the foreground (timeout 60);
# logs to $T/TAG.err, status in RUN_STATUS.
in_once() {
	local tag=$1 args=()
	shift
	while [ $# -gt 0 ] && [ "$1" != -- ]; do
		args+=("$1")
		shift
	done
	shift
	RUN_STATUS=0
	timeout 60 "$MC_BIN" --api-url "$FAKE_URL" --state-dir "$SD" --interval 0.05 --heartbeat 1 \
		--once "${args[@]}" "$WS_ID" -- "$@" </dev/null >"$T/$tag.out" 2>"$T/$tag.err" 3>&- ||
		RUN_STATUS=$?
}

# in_notified N: WS_ID made at least N notify posts.
in_notified() {
	[ "$(posts notify "$WS_ID" | jq length)" -ge "$1" ]
}

# in_acked: the platform's last_acked_seq for WS_ID.
in_acked() {
	ctl GET "/_control/workspaces/$WS_ID" | jq -r .last_acked_seq
}

# in_acked_is N: the platform has N as WS_ID's last acknowledged seq.
in_acked_is() {
	[ "$(in_acked)" = "$1" ]
}

# in_ack_requests: the statuses of every acknowledgement WS_ID sent, as a JSON array.
in_ack_requests() {
	ctl GET /_control/requests | jq -c --arg p "/workspaces/$WS_ID/activity/ack" \
		'[.[] | select(.path == $p) | .status]'
}

# in_seq ID: the seq of WS_ID's row ID.
in_seq() {
	activity "$WS_ID" | jq -r --arg id "$1" '.[] | select(.id == $id) | .seq'
}

@test "rows: own traffic is never handed out nor answered; calls that cannot be served are skipped with one line each" {
	local a b own dr tg tc ms other
	a=$(queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"text\":\"first\"}")
	dr=$(queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"method\":\"delegate_result\",\"text\":\"result\"}")
	own=$(queue_msgs "$WS_ID" "{\"from\":\"$WS_ID\",\"text\":\"sent by myself\"}")
	tg=$(queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"method\":\"tasks/get\"}")
	tc=$(queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"method\":\"tasks/cancel\"}")
	ms=$(queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"method\":\"message/stream\",\"text\":\"streamed\"}")
	other=$(queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"method\":\"agent/card\"}")
	b=$(queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"text\":\"last\"}")
	in_coproc r1
	wait_until 10 a2a_ok_posts 2
	wait_until 10 state_file_has '.last_since_id == $id' --arg id "$b"
	assert_eq "$(line_ids "$T/r1.seen")" "$a $b" "handed out"
	# Nothing went to this workspace itself: a reply to its own row would come back
	# as a new message, for ever.
	assert_eq "$(posts a2a | jq -c '[.[].path] | unique')" "[\"/workspaces/$PEER_ID/a2a\"]" "a2a paths"
	assert_eq "$(a2a_ok_texts | paste -sd' ' -)" "h:first h:last" "replies"
	assert_eq "$(posts notify "$WS_ID" | jq length)" 0 "notify posts"
	# One informational line for each call that cannot be served, none for own traffic.
	for id in "$tg" "$tc" "$ms" "$other"; do
		assert_eq "$(grep -c "^molecule-connect: info: skipping activity row $id: method \"[a-z/]*\" is not a message a poll-mode workspace can serve$" "$T/r1.err")" 1 "line for $id"
	done
	assert_eq "$(grep -c -e "$dr" -e "$own" "$T/r1.err")" 0 "lines about own traffic"
	assert_eq "$(grep -Ec '^molecule-connect: (warning|error): ' "$T/r1.err")" 0 "warnings and errors"
	stop_bridge TERM
	assert_eq "$BR_STATUS" 0 "exit status"
}

@test "rows: a turn the platform started is handed out as origin system and answered on the canvas" {
	local id
	id=$(queue_msgs "$WS_ID" '{"source_type":"self-nudge","text":"check your inbox"}')
	in_coproc r1
	wait_until 10 in_notified 1
	assert_eq "$(jq -c '{id, source_id, origin, text}' "$T/r1.seen")" \
		"{\"id\":\"$id\",\"source_id\":null,\"origin\":\"system\",\"text\":\"check your inbox\"}" "the line"
	assert_eq "$(posts notify "$WS_ID" | jq -c '[.[].body]')" '[{"message":"h:check your inbox"}]' "canvas reply"
	assert_eq "$(posts a2a | jq length)" 0 "a2a posts"
	# Every poll asks for the peer info.
	assert_eq "$(ctl GET /_control/requests | jq --arg p "/workspaces/$WS_ID/activity?" \
		'[.[] | select(.method == "GET" and (.path | startswith($p))) | .path | test("[?&]include=peer_info(&|$)")]
		 | length > 0 and all')" true "polls"
	stop_bridge TERM
}

@test "a first start with a backlog of three pages reads back with before_ts and hands out every one, oldest first" {
	queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"count\":1100,\"text\":\"m{n}\",\"age_secs\":5}" >/dev/null
	in_once r1 --since-secs 30 --drain-timeout 50 -- sh -c 'tee -a "$0" | jq -c --unbuffered "{id}"' "$T/seen"
	assert_eq "$RUN_STATUS" 0 "exit status"
	assert_eq "$(jq -s -c '[.[].text] == [range(1; 1101) | "m\(.)"]' "$T/seen")" true "all 1100, oldest first, once"
	# It read back page by page (500 rows each), then forward from the oldest page.
	assert_eq "$(ctl GET /_control/requests | jq --arg p "/workspaces/$WS_ID/activity" \
		'[.[] | select(.path | startswith($p)) | .path | select(test("before_ts="))] | length')" 2 "pages read back"
	state_file_has '.last_since_id == $id' --arg id "$(activity "$WS_ID" | jq -r '.[-1].id')"
	! grep -Eq '^molecule-connect: (warning|error): ' "$T/r1.err"
}

@test "a replay page boundary inside a run of equal timestamps cuts none of them" {
	local at ids same
	# Ten rows share one time (seq tells them apart), older than 495 others: the
	# first page (500 rows, newest first) ends in the middle of the ten.
	at=$(date -u -d '-20 seconds' +%Y-%m-%dT%H:%M:%S.123456Z)
	mapfile -t same < <(queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"count\":10,\"text\":\"s{n}\",\"created_at\":\"$at\"}")
	queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"count\":495,\"text\":\"m{n}\",\"age_secs\":5}" >/dev/null
	in_once r1 --since-secs 60 --drain-timeout 50 -- sh -c 'tee -a "$0" | jq -c --unbuffered "{id}"' "$T/seen"
	assert_eq "$RUN_STATUS" 0 "exit status"
	assert_eq "$(jq -r .id "$T/seen" | head -n 10 | paste -sd' ' -)" "${same[*]}" "the ten, in seq order, first"
	assert_eq "$(jq -s -c '[.[].text] == ([range(1; 11) | "s\(.)"] + [range(1; 496) | "m\(.)"])' "$T/seen")" true \
		"then the rest, each once"
}

@test "acknowledgements: the done seq after each save; a failure is retried at the next save" {
	local ids more
	fault '{"endpoint":"ack","status":503,"fail_next":1}'
	mapfile -t ids < <(queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"count\":3,\"text\":\"m{n}\"}")
	in_coproc r1
	wait_until 10 state_file_has '.last_since_id == $id' --arg id "${ids[2]}"
	state_file_has '.done_seq == ($s | tonumber)' --arg s "$(in_seq "${ids[2]}")"
	# The first ack failed; the next save (the next message done) sends the latest.
	wait_until 10 eval '[ "$(posts ack "$WS_ID" | jq "[.[] | select(.status == 503)] | length")" -ge 1 ]'
	more=$(queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"text\":\"more\"}")
	wait_until 10 in_acked_is "$(in_seq "$more")"
	# Every ack names a seq that is done, in increasing order, with the auth token.
	assert_eq "$(posts ack "$WS_ID" | jq -c --arg a "Bearer $WS_TOKEN" \
		'map(.body.acked_seq) as $s | [($s == ($s | sort)), all(.[]; .headers.authorization == $a)]')" \
		'[true,true]' "ack posts"
	assert_eq "$(posts ack "$WS_ID" | jq -r '.[0].path')" "/workspaces/$WS_ID/activity/ack" "path"
	assert_eq "$(grep -Ec '^molecule-connect: (warning|error): .*ack' "$T/r1.err")" 0 "said nothing about acks"
	stop_bridge TERM
	assert_eq "$BR_STATUS" 0
}

@test "acknowledgements: a platform without them (404) is asked once, silently" {
	fake_stop
	fake_start --rate-limit 0 --no-ack
	new_ws >/dev/null
	new_peer >/dev/null
	export MOLECULE_WORKSPACE_TOKEN=$WS_TOKEN
	local ids more
	mapfile -t ids < <(queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"count\":2,\"text\":\"m{n}\"}")
	in_coproc r1
	wait_until 10 state_file_has '.last_since_id == $id' --arg id "${ids[1]}"
	wait_until 10 eval '[ "$(in_ack_requests)" != "[]" ]'
	more=$(queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"text\":\"more\"}")
	wait_until 10 state_file_has '.last_since_id == $id' --arg id "$more"
	stop_bridge TERM
	assert_eq "$BR_STATUS" 0
	assert_eq "$(in_ack_requests)" '[404]' "ack requests"
	assert_eq "$(grep -Ec '^molecule-connect: (warning|error): ' "$T/r1.err")" 0 "warnings and errors"
}
