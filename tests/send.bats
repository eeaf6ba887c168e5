#!/usr/bin/env bats
# send.bats: --send WORKSPACE_ID: the {"to":...} lines of standard input posted as new
# messages, then exit: 0 all posted, 1 some not (each named), 2 bad lines (each named,
# the rest still go); beside a running bridge for the same workspace (no lock needed).
# Needs MC_BIN and FAKE_BIN (set by make check).

load helpers

setup() {
	bridge_setup
	SD=$T/state
	SEND_PIDS=()
}

teardown() {
	kill_pids "${SEND_PIDS[@]}"
	fake_stop
}

# send_run [OPTIONS...]: runs --send with standard input from $T/in; sets SEND_STATUS,
# and its stderr in $T/err.
send_run() {
	SEND_STATUS=0
	"$MC_BIN" --api-url "$FAKE_URL" --state-dir "$SD" --send "$@" "$WS_ID" <"$T/in" >"$T/out" 2>"$T/err" 3>&- ||
		SEND_STATUS=$?
}

@test "--send posts each line to its peer or the canvas, in order, and exits 0" {
	cat >"$T/in" <<-EOF
		{"to":"$PEER_ID","text":"one","context_id":"ctx-s"}

		{"to":"canvas","text":"to the person"}
		{"to":"$PEER_ID","parts":[{"kind":"text","text":"two"}]}
	EOF
	send_run
	assert_eq "$SEND_STATUS" 0 "exit status"
	[ ! -s "$T/out" ] && [ ! -s "$T/err" ] || { cat "$T/err"; return 1; }
	assert_eq "$(posts a2a "$WS_ID" | jq -c '[.[] | [.status, .path, .body.params.message.parts[0].text, .body.params.message.contextId]]')" \
		"[[200,\"/workspaces/$PEER_ID/a2a\",\"one\",\"ctx-s\"],[200,\"/workspaces/$PEER_ID/a2a\",\"two\",null]]" "to the peer"
	assert_eq "$(posts notify "$WS_ID" | jq -c '[.[] | [.status, .body.message]]')" '[[200,"to the person"]]' "to the canvas"
	assert_eq "$(posts a2a "$WS_ID" | jq '[.[].body.params.message.messageId] | unique | length')" 2 "a messageId each"
	assert_eq "$(posts register | jq length)" 0 "no registration"
	[ ! -e "$SD/$WS_ID.lock" ] || { echo "took the lock"; return 1; }
}

@test "--send: bad lines get one error line each, the rest still go, exit 2" {
	cat >"$T/in" <<-EOF
		not json
		{"id":"$PEER_ID","text":"a reply is not a new message"}
		{"to":"nobody","text":"x"}
		{"to":"$WS_ID","text":"to myself"}
		{"to":"$PEER_ID","text":"good"}
	EOF
	send_run
	assert_eq "$SEND_STATUS" 2 "exit status"
	assert_eq "$(grep -c 'error:' "$T/err")" 4 "one error line per bad line"
	for n in 1 2 3 4; do
		grep -q "error: line $n: .*: skipped" "$T/err" || { cat "$T/err"; return 1; }
	done
	assert_eq "$(posts a2a "$WS_ID" | jq -c '[.[].body.params.message.parts[0].text]')" '["good"]' "the good line went"
}

@test "--send: a line that cannot be posted within --drain-timeout is named, exit 1; one refused for good too" {
	local gone
	gone=$(new_peer | cut -d' ' -f1)
	fault "{\"endpoint\":\"a2a\",\"workspace_id\":\"$PEER_ID\",\"status\":503}"
	fault "{\"endpoint\":\"a2a\",\"workspace_id\":\"$gone\",\"status\":404,\"body\":{\"error\":\"workspace not found\"}}"
	cat >"$T/in" <<-EOF
		{"to":"$PEER_ID","text":"stuck"}
		{"to":"$gone","text":"refused"}
		{"to":"canvas","text":"fine"}
	EOF
	send_run --drain-timeout 1
	assert_eq "$SEND_STATUS" 1 "exit status"
	grep -q "error: line 1: the message to $PEER_ID was not posted (still failing at --drain-timeout)" "$T/err" || { cat "$T/err"; return 1; }
	grep -q "error: line 2: the message to $gone was not posted (HTTP 404: workspace not found)" "$T/err" || { cat "$T/err"; return 1; }
	! grep -q 'line 3' "$T/err"
	assert_eq "$(posts notify "$WS_ID" | jq -c '[.[].status]')" '[200]' "the canvas line went"
	[ "$(posts a2a "$WS_ID" | jq --arg p "/workspaces/$PEER_ID/a2a" '[.[] | select(.path == $p)] | length')" -ge 2 ] ||
		{ echo "not retried"; return 1; }
}

@test "--send beside a running bridge for the same workspace: both go on, the bridge keeps its lock" {
	local br id
	echo_handler
	"$MC_BIN" --api-url "$FAKE_URL" --state-dir "$SD" --interval 0.05 --heartbeat 1 "$WS_ID" \
		-- sh "$T/echo.sh" "$T/seen" </dev/null >/dev/null 2>"$T/bridge.err" 3>&- &
	br=$!
	SEND_PIDS+=("$br")
	wait_until 10 eval '[ "$(posts heartbeat "$WS_ID" | jq length)" -ge 1 ]'
	printf '{"to":"%s","text":"from cron"}\n' "$PEER_ID" >"$T/in"
	send_run
	assert_eq "$SEND_STATUS" 0 "exit status"
	id=$(queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"text\":\"still there?\"}")
	wait_until 10 a2a_ok_posts 2
	assert_eq "$(a2a_ok_texts | paste -sd, -)" "from cron,h:still there?" "both posted"
	proc_alive "$br"
	[ -n "$id" ]
}

@test "--send uses the token the platform minted and a bridge kept, when nothing is configured" {
	local minted
	echo_handler
	new_ws '{"no_token":true}' >/dev/null
	unset MOLECULE_WORKSPACE_TOKEN
	"$MC_BIN" --api-url "$FAKE_URL" --state-dir "$SD" --once "$WS_ID" -- sh "$T/echo.sh" "$T/seen" \
		</dev/null >/dev/null 2>"$T/bridge.err" 3>&-
	minted=$(jq -r .auth_token "$SD/$WS_ID.json")
	[ -n "$minted" ] && [ "$minted" != null ]
	printf '{"to":"canvas","text":"with the kept token"}\n' >"$T/in"
	send_run
	assert_eq "$SEND_STATUS" 0 "exit status"
	assert_eq "$(posts notify "$WS_ID" | jq -r '.[0].headers.authorization')" "Bearer $minted" "the kept token"
	! grep -qF "$minted" "$T/err"
}

@test "--send without any token, or with a handler: exit 2 with one line" {
	unset MOLECULE_WORKSPACE_TOKEN
	: >"$T/in"
	send_run
	assert_eq "$SEND_STATUS" 2 "exit status without a token"
	grep -q 'no workspace token' "$T/err"
	export MOLECULE_WORKSPACE_TOKEN=$WS_TOKEN
	run "$MC_BIN" --send "$WS_ID" -- cat
	[ "$status" -eq 2 ]
	[[ "${lines[0]}" == *"--send"*"takes no handler"* ]]
}
