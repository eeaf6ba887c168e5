#!/usr/bin/env bats
# outbound.bats: what happens to a reply on its way out: the same messageId on every
# retry, restart and second answer; what each answer of the platform means; order per
# peer across a restart; one peer that cannot be reached starving nobody; tenancy and
# rate-limit answers on posts; the token the platform mints and refuses; a removed or
# paused workspace; is_busy; new messages ({"to":...} lines); floods of bad lines and
# of --filter outputs. Needs MC_BIN and FAKE_BIN (set by make check).

load helpers

setup() {
	bridge_setup
	SD=$T/state
	OB_PIDS=()
	OB_FIFO_OPEN=
	echo_handler
}

teardown() {
	kill_pids "${OB_PIDS[@]}"
	[ -z "$OB_FIFO_OPEN" ] || exec 5>&-
	fake_stop
}

# ob_filter TAG [OPTIONS...]: starts the bridge for WS_ID in filter mode, reading
# replies from the FIFO $T/TAG.in (held open on fd 5: write with ob_reply), writing
# messages to $T/TAG.out and logs to $T/TAG.err. Sets BR_PID. OB_ENV (an array of
# NAME=VALUE) goes into its environment.
ob_filter() {
	local tag=$1
	shift
	rm -f "$T/$tag.in"
	mkfifo "$T/$tag.in"
	exec 5<>"$T/$tag.in"
	OB_FIFO_OPEN=1
	env "${OB_ENV[@]}" "$MC_BIN" --api-url "$FAKE_URL" --state-dir "$SD" --interval 0.05 --heartbeat 1 "$@" \
		"$WS_ID" <"$T/$tag.in" >"$T/$tag.out" 2>"$T/$tag.err" 3>&- 5>&- &
	BR_PID=$!
	OB_PIDS+=("$BR_PID")
}

# ob_coproc TAG [OPTIONS...]: the same with the echo handler as co-process (it answers
# "h:<text>" and logs the message lines to $T/TAG.seen).
ob_coproc() {
	local tag=$1
	shift
	: >"$T/$tag.seen"
	env "${OB_ENV[@]}" "$MC_BIN" --api-url "$FAKE_URL" --state-dir "$SD" --interval 0.05 --heartbeat 1 "$@" \
		"$WS_ID" -- sh "$T/echo.sh" "$T/$tag.seen" </dev/null >"$T/$tag.out" 2>"$T/$tag.err" 3>&- 5>&- &
	BR_PID=$!
	OB_PIDS+=("$BR_PID")
}

ob_reply() {
	printf '%s\n' "$@" >&5
}

# ob_id FILE TEXT: the id of the message line in FILE whose text is TEXT.
ob_id() {
	jq -r --arg t "$2" 'select(.text == $t) | .id' "$1" | head -n 1
}

# ob_count KIND [JQ_FILTER]: how many posts of KIND by WS_ID (that JQ_FILTER selects).
ob_count() {
	posts "$1" "$WS_ID" | jq "[.[] | select(${2:-true})] | length"
}

# ob_at_least N KIND [JQ_FILTER]: at least N such posts.
ob_at_least() {
	[ "$(ob_count "$2" "${3:-}")" -ge "$1" ]
}

# ob_grep_count FILE REGEX: lines of FILE matching REGEX.
ob_grep_count() {
	grep -cE -- "$2" "$1" || true
}

# ob_lines_match N FILE REGEX: at least N lines of FILE match REGEX.
ob_lines_match() {
	[ "$(ob_grep_count "$2" "$3")" -ge "$1" ]
}

# ob_cursor_is ID: the saved cursor is ID.
ob_cursor_is() {
	[ -f "$SD/$WS_ID.json" ] && [ "$(jq -r .last_since_id "$SD/$WS_ID.json")" = "$1" ]
}

# ob_exited: BR_PID has ended.
ob_exited() {
	! proc_alive "$BR_PID"
}

# ob_wait_exit: waits for BR_PID to exit on its own; sets BR_STATUS.
ob_wait_exit() {
	wait_until 20 ob_exited
	BR_STATUS=0
	wait "$BR_PID" || BR_STATUS=$?
}

# ob_token: the workspace's live token on the platform.
ob_token() {
	ctl GET "/_control/workspaces/$WS_ID" | jq -r .token
}

# ob_sha1 TEXT: its SHA-1, hex.
ob_sha1() {
	printf '%s' "$1" | sha1sum | cut -d' ' -f1
}

# ob_peer_rows PEER: the message/send rows WS_ID left in PEER's activity, as a JSON array.
ob_peer_rows() {
	activity "$1" | jq -c --arg ws "$WS_ID" '[.[] | select(.source_id == $ws and .method == "message/send")]'
}

# ---- one message id per reply -------------------------------------------------

@test "a message answered twice after a kill -9 lands once: the same messageId, the platform keeps one" {
	local shim id first
	shim=${SHIM_FULLFS:-$(dirname "$MC_BIN")/tests/shim/fullfs.so}
	[ -f "$shim" ] || { echo "no LD_PRELOAD shim at $shim" >&2; return 1; }
	mkdir -m 700 "$SD"
	id=$(queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"text\":\"once only\",\"context_id\":\"ctx-1\"}")
	# The state directory is full: the reply never reaches the state file, so a
	# crash leaves the message not done. The platform holds the first post.
	: >"$T/full.flag"
	fault '{"endpoint":"a2a","delay_ms":1500,"next":1}'
	OB_ENV=(LD_PRELOAD="$shim" MC_FULLFS_DIR="$SD" MC_FULLFS_FLAG="$T/full.flag"
		ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0")
	ob_filter r1
	wait_until 10 file_lines "$T/r1.out" 1
	ob_reply "{\"id\":\"$id\",\"text\":\"the answer\"}"
	wait_until 10 eval '[ "$(ctl GET /_control/requests | jq "[.[] | select(.method == \"POST\" and (.path | endswith(\"/a2a\")))] | length")" -ge 1 ]'
	kill -KILL "$BR_PID"
	wait "$BR_PID" 2>/dev/null || true
	rm -f "$T/full.flag"

	OB_ENV=()
	ob_filter r2
	wait_until 10 file_lines "$T/r2.out" 1
	assert_eq "$(jq -r .id "$T/r2.out")" "$id" "the message is handed out again"
	ob_reply "{\"id\":\"$id\",\"text\":\"the answer\"}"
	wait_until 10 ob_at_least 2 a2a
	wait_until 10 ob_cursor_is "$id"
	first=$(posts a2a "$WS_ID" | jq -r '.[0].body.params.message.messageId')
	assert_eq "$(posts a2a "$WS_ID" | jq -c '[.[].body.params.message.messageId] | unique | length')" 1 \
		"both posts carry the same messageId"
	assert_eq "$(posts a2a "$WS_ID" | jq -c '[.[].body.id] | unique | length')" 2 "the JSON-RPC ids may differ"
	# The platform may still be holding the first post: its copy lands, or is dropped, later.
	wait_until 10 eval '[ "$(posts a2a "$WS_ID" | jq "[.[] | select(.status == 200)] | length")" -eq 2 ]'
	assert_eq "$(ob_peer_rows "$PEER_ID" | jq -c '[length, .[0].request_body.params.message.messageId]')" \
		"[1,\"$first\"]" "one message stored on the peer's side"
	assert_eq "$(ob_peer_rows "$PEER_ID" | jq -c --arg in "$(jq -r .message_id "$T/r2.out")" \
		'.[0].request_body.params.message | [has("taskId"), .contextId, .metadata.in_reply_to == $in]')" \
		'[false,"ctx-1",true]' "no taskId, the context carried, in_reply_to the message answered"
}

@test "a post the peer holds past --post-timeout is posted again with the same messageId" {
	local id
	id=$(queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"text\":\"slow peer\"}")
	fault '{"endpoint":"a2a","delay_ms":1500,"next":1}'
	ob_coproc r1 --post-timeout 0.3
	wait_until 10 ob_cursor_is "$id"
	wait_until 10 ob_at_least 2 a2a
	assert_eq "$(posts a2a "$WS_ID" | jq -c '[.[].body.params.message.messageId] | unique | length')" 1 "one messageId"
	wait_until 10 eval '[ "$(posts a2a "$WS_ID" | jq "[.[] | select(.status == 200)] | length")" -eq 2 ]'
	assert_eq "$(ob_peer_rows "$PEER_ID" | jq length)" 1 "stored once"
	grep -q 'timed out' "$T/r1.err" || { cat "$T/r1.err"; return 1; }
}

# ---- what the platform's answers mean -----------------------------------------

@test "every queued shape is success: 202 queued, 200 queued:true, a push-mode peer's own answer" {
	local mode peer ids=()
	for mode in accepted queued sync; do
		peer=$(new_peer "{\"delivery_mode\":\"push\",\"push_answer\":\"$mode\",\"push_delay_ms\":200}" | cut -d' ' -f1)
		ids+=($(queue_msgs "$WS_ID" "{\"from\":\"$peer\",\"text\":\"to $mode\"}"))
	done
	ob_coproc r1
	wait_until 10 ob_cursor_is "${ids[2]}"
	assert_eq "$(posts a2a "$WS_ID" | jq -c '[.[] | .status] | sort')" '[200,200,202]' "one post each, all accepted"
	[ "$(ob_grep_count "$T/r1.err" 'error|warning')" -eq 0 ] || { cat "$T/r1.err"; return 1; }
}

@test "413, 402, 403, 400 and 404 with the platform's error body: one error line naming the message and status, done" {
	local ids=() i status body
	local -a cases=('413:{"truncated":true,"max_bytes":16777216}' '402:{"error":"budget exhausted"}'
		'403:{"error":"delegation disabled"}' '400:{"error":"invalid JSON"}' '404:{"error":"workspace not found"}')
	mapfile -t ids < <(queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"count\":6,\"text\":\"m{n}\"}")
	for i in 0 1 2 3 4; do
		fault "{\"endpoint\":\"a2a\",\"status\":${cases[i]%%:*},\"body\":${cases[i]#*:},\"fail_next\":1}"
	done
	ob_coproc r1
	wait_until 10 ob_cursor_is "${ids[5]}"
	assert_eq "$(posts a2a "$WS_ID" | jq -c '[.[].status]')" '[413,402,403,400,404,200]' "one attempt each"
	for i in 0 1 2 3 4; do
		status=${cases[i]%%:*}
		assert_eq "$(ob_grep_count "$T/r1.err" "error: reply to message ${ids[i]} refused for good \\(HTTP $status.*\\): dropped")" 1 \
			"the error line of ${ids[i]} ($status)"
	done
	assert_eq "$(ob_grep_count "$T/r1.err" 'error:')" 5 "one error line each"
}

@test "a 4xx without the platform's error body (a proxy's page) and a 503 without Retry-After are retried" {
	local a=$PEER_ID b ids
	b=$(new_peer | cut -d' ' -f1)
	mapfile -t ids < <(queue_msgs "$WS_ID" "{\"from\":\"$a\",\"text\":\"through the proxy\"}"
		queue_msgs "$WS_ID" "{\"from\":\"$b\",\"text\":\"through another\"}")
	fault "{\"endpoint\":\"a2a\",\"workspace_id\":\"$a\",\"status\":400,\"raw\":\"<html><body>400 Bad Request</body></html>\",\"next\":1}"
	fault "{\"endpoint\":\"a2a\",\"workspace_id\":\"$a\",\"status\":404,\"raw\":\"Not Found\",\"next\":1}"
	fault "{\"endpoint\":\"a2a\",\"workspace_id\":\"$b\",\"status\":403,\"body\":\"\",\"fail_next\":1}"
	fault "{\"endpoint\":\"a2a\",\"workspace_id\":\"$b\",\"status\":503,\"fail_next\":1}"
	ob_coproc r1
	wait_until 15 ob_cursor_is "${ids[1]}"
	assert_eq "$(posts a2a "$WS_ID" | jq -c --arg p "/workspaces/$a/a2a" '[.[] | select(.path == $p) | .status]')" '[400,404,200]' \
		"a proxy's 400 and 404 pages: retried until accepted"
	assert_eq "$(posts a2a "$WS_ID" | jq -c --arg p "/workspaces/$b/a2a" '[.[] | select(.path == $p) | .status]')" '[403,503,200]' \
		"an empty 403 and a 503 without Retry-After: the same"
	assert_eq "$(ob_peer_rows "$a" | jq -c '[.[].request_body.params.message.parts[0].text]')" \
		'["h:through the proxy"]' "the reply arrived"
	[ "$(ob_grep_count "$T/r1.err" 'error:')" -eq 0 ] || { cat "$T/r1.err"; return 1; }
}

@test "canvas replies turned off: one error line while it lasts, messages done; a later 200 resets it" {
	local ids
	ctl POST /_control/workspaces "{\"id\":\"$WS_ID\",\"talk_to_user\":false}" >/dev/null
	mapfile -t ids < <(queue_msgs "$WS_ID" '{"count":3,"text":"c{n}"}')
	ob_coproc r1
	wait_until 10 ob_cursor_is "${ids[2]}"
	assert_eq "$(ob_count notify)" 3 "each reply posted once, none retried"
	assert_eq "$(ob_grep_count "$T/r1.err" 'error:.*talk_to_user_disabled')" 1 "reported once"
	ctl POST /_control/workspaces "{\"id\":\"$WS_ID\",\"talk_to_user\":true}" >/dev/null
	queue_msgs "$WS_ID" '{"text":"c4"}' >/dev/null
	wait_until 10 ob_at_least 4 notify
	assert_eq "$(posts notify "$WS_ID" | jq -c '[.[].status]')" '[403,403,403,200]' "accepted again"
	grep -q 'replies to the canvas are accepted again' "$T/r1.err"
	ctl POST /_control/workspaces "{\"id\":\"$WS_ID\",\"talk_to_user\":false}" >/dev/null
	mapfile -t ids < <(queue_msgs "$WS_ID" '{"text":"c5"}')
	wait_until 10 ob_cursor_is "${ids[0]}" # refused: no echo row comes after it
	assert_eq "$(ob_grep_count "$T/r1.err" 'error:.*talk_to_user_disabled')" 2 "turned off again: said again"
}

# ---- order and fairness -------------------------------------------------------

@test "a reply kept across a restart waits for the reply to the peer's earlier message handed out again" {
	local ids
	mapfile -t ids < <(queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"count\":2,\"text\":\"m{n}\"}")
	ob_filter r1 --drain-timeout 0.2
	wait_until 10 file_lines "$T/r1.out" 2
	# Only the second is answered: its reply waits for the first, and is kept.
	ob_reply "{\"id\":\"${ids[1]}\",\"text\":\"second\"}"
	wait_until 10 state_file_has '.replies | length == 1'
	stop_bridge TERM
	assert_eq "$(ob_count a2a)" 0 "nothing posted in the first run"

	ob_filter r2
	wait_until 10 file_lines "$T/r2.out" 1
	assert_eq "$(line_ids "$T/r2.out")" "${ids[0]}" "the first is handed out again, the second not"
	ob_reply "{\"id\":\"${ids[0]}\",\"text\":\"first\"}"
	wait_until 10 ob_at_least 2 a2a
	wait_until 10 ob_cursor_is "${ids[1]}"
	assert_eq "$(a2a_ok_texts | paste -sd' ' -)" "first second" "posted in the order the messages came"
}

@test "one peer that cannot be reached starves nobody: the canvas and other peers are answered, the warning repeats" {
	local slow=$PEER_ID other canvas ids
	other=$(new_peer | cut -d' ' -f1)
	fault "{\"endpoint\":\"a2a\",\"workspace_id\":\"$slow\",\"status\":503}"
	mapfile -t ids < <(queue_msgs "$WS_ID" "{\"from\":\"$slow\",\"count\":24,\"text\":\"slow {n}\"}")
	ob_coproc r1 --stall-report 0.3 --drain-timeout 0.3
	wait_until 15 file_lines "$T/r1.seen" 24
	canvas=$(queue_msgs "$WS_ID" '{"text":"from a person"}')
	queue_msgs "$WS_ID" "{\"from\":\"$other\",\"text\":\"from another peer\"}" >/dev/null
	wait_until 15 ob_at_least 1 notify '.status == 200'
	wait_until 15 ob_at_least 1 a2a "(.path | contains(\"$other\")) and .status == 200"
	assert_eq "$(ob_count a2a "(.path | contains(\"$slow\")) and .status == 200")" 0 "the slow peer still fails"
	wait_until 10 ob_lines_match 2 "$T/r1.err" "warning: posts to peer $slow are not getting through .*: [0-9]+ waiting"
	grep -qE "warning: posts to peer $slow are not getting through \(HTTP 503.*: 24 waiting" "$T/r1.err" ||
		{ cat "$T/r1.err"; return 1; }
	# Stopped while it lasts: the stalled replies are kept, and posted in order by
	# the next run once the peer is back.
	stop_bridge TERM
	wait_until 10 state_file_has '.replies | length == 24'
	ctl DELETE /_control/faults >/dev/null
	ob_coproc r2
	wait_until 15 ob_at_least 24 a2a "(.path | contains(\"$slow\")) and .status == 200"
	wait_until 10 state_file_has '.replies | length == 0'
	assert_eq "$(posts a2a "$WS_ID" | jq -r --arg p "/workspaces/$slow/a2a" \
		'[.[] | select(.path == $p and .status == 200) | .body.params.message.parts[0].text]
		 == [range(1; 25) | "h:slow \(.)"]')" true "every stalled reply posted once, in order"
	assert_eq "$(wc -l <"$T/r2.seen")" 0 "none handed out again"
}

# ---- tenancy and the request budget -------------------------------------------

@test "an org refusal on a post stops the bridge with exit 2 naming MOLECULE_ORG_ID and --org-id; the reply is kept" {
	local id
	id=$(queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"text\":\"q\"}")
	fault '{"endpoint":"a2a","status":400,"body":{"error":"missing tenant routing header","code":"TENANT_ORG_HEADER_REQUIRED","required_header":"X-Molecule-Org-Id"}}'
	ob_coproc r1
	ob_wait_exit
	assert_eq "$BR_STATUS" 2 "exit status"
	grep -E 'error: POST /workspaces/[0-9a-f-]+/a2a refused: .*MOLECULE_ORG_ID.*--org-id' "$T/r1.err" || { cat "$T/r1.err"; return 1; }
	assert_eq "$(ob_count a2a)" 1 "not retried"
	state_file_has '.replies | length == 1'

	# A bare 404 (an org the platform does not know) on the canvas: the same.
	ctl DELETE /_control/faults >/dev/null
	fault '{"endpoint":"notify","status":404,"body":""}'
	queue_msgs "$WS_ID" '{"text":"from the canvas"}' >/dev/null
	ob_coproc r2 --org-id org-x
	ob_wait_exit
	assert_eq "$BR_STATUS" 2 "exit status on a bare 404"
	grep -E 'error: POST /workspaces/[0-9a-f-]+/notify refused: .*org "org-x".*MOLECULE_ORG_ID' "$T/r2.err" || { cat "$T/r2.err"; return 1; }
}

@test "X-RateLimit-Limit: unlimited is no warning; Retry-After: 0 on a post waits at least a second" {
	local id t
	fake_restart --rate-limit unlimited
	new_ws >/dev/null
	new_peer >/dev/null
	export MOLECULE_WORKSPACE_TOKEN=$WS_TOKEN
	api GET /health "" "" -D "$T/headers" >/dev/null
	grep -qi '^x-ratelimit-limit: unlimited' "$T/headers"
	id=$(queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"text\":\"q\"}")
	queue_msgs "$WS_ID" '{"text":"from the canvas"}' >/dev/null
	ob_coproc r1
	wait_until 10 ob_at_least 1 notify '.status == 200'
	wait_until 10 ob_at_least 1 a2a '.status == 200'
	[ "$(ob_grep_count "$T/r1.err" 'error|warning')" -eq 0 ] || { cat "$T/r1.err"; return 1; }

	fault '{"endpoint":"a2a","status":429,"retry_after":0,"body":{"error":"rate limit exceeded","retry_after":0},"fail_next":1}'
	ctl DELETE /_control/posts >/dev/null
	id=$(queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"text\":\"q2\"}")
	wait_until 10 ob_cursor_is "$id"
	assert_eq "$(posts a2a "$WS_ID" | jq -c '[.[].status]')" '[429,200]' "refused, then accepted"
	t=$(posts a2a "$WS_ID" | jq -c '[.[].t_ms] | .[1] - .[0]')
	[ "$t" -ge 1000 ] || { echo "second attempt after $t ms"; return 1; }
}

# ---- the token ----------------------------------------------------------------

@test "a revoked token: registered again, the minted token adopted (0600, atomically) and used; a restart with the old one uses it" {
	local old=$WS_TOKEN new id rotated
	ob_coproc r1
	wait_until 10 ob_at_least 1 heartbeat
	ctl POST "/_control/workspaces/$WS_ID/revoke" >/dev/null
	wait_until 15 state_file_has 'has("auth_token")'
	new=$(ob_token)
	[ -n "$new" ] && [ "$new" != null ] && [ "$new" != "$old" ]
	state_file_has '.auth_token == $t and .auth_token_replaced == $h' --arg t "$new" --arg h "$(ob_sha1 "$old")"
	assert_eq "$(stat -c %a "$SD/$WS_ID.json")" 600 "state file mode"
	! grep -qF "$old" "$SD/$WS_ID.json"
	id=$(queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"text\":\"after the revocation\"}")
	wait_until 10 ob_cursor_is "$id"
	assert_eq "$(posts a2a "$WS_ID" | jq -r '.[-1].headers.authorization')" "Bearer $new" "posts use the minted token"
	grep -q 'registering again' "$T/r1.err"
	grep -q 'adopted the workspace token' "$T/r1.err"
	stop_bridge TERM
	! grep -qF -e "$old" -e "$new" "$T/r1.err"

	# The old token still configured: the minted one replaced it, and wins.
	ctl DELETE /_control/posts >/dev/null
	ob_coproc r2
	wait_until 10 ob_at_least 1 heartbeat
	assert_eq "$(posts register "$WS_ID" | jq -r '.[0].headers.authorization')" "Bearer $new" "registered with the minted token"
	assert_eq "$(ob_grep_count "$T/r2.err" 'info: the configured token \(MOLECULE_WORKSPACE_TOKEN\) was replaced by one the platform minted')" 1 "said once"
	! grep -qF -e "$old" -e "$new" "$T/r2.err"
	stop_bridge TERM

	# A token rotated by hand (neither the kept one nor the one it replaced) wins.
	rotated=$(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n' | head -c 43)
	ctl POST /_control/workspaces "{\"id\":\"$WS_ID\",\"token\":\"$rotated\"}" >/dev/null
	ctl DELETE /_control/posts >/dev/null
	export MOLECULE_WORKSPACE_TOKEN=$rotated
	ob_coproc r3
	wait_until 10 ob_at_least 1 heartbeat
	assert_eq "$(posts register "$WS_ID" | jq -r '.[0].headers.authorization')" "Bearer $rotated" "the configured token"
	assert_eq "$(ob_grep_count "$T/r3.err" 'error|warning')" 0 "no complaint"
	! grep -q 'was replaced' "$T/r3.err"
}

@test "a removed workspace: registered again once, its status asked once, exit 3 with a clear message" {
	ob_coproc r1
	wait_until 10 ob_at_least 1 heartbeat
	ctl POST "/_control/workspaces/$WS_ID/remove" >/dev/null
	ob_wait_exit
	assert_eq "$BR_STATUS" 3 "exit status"
	grep -E "error: workspace $WS_ID was removed on the platform \(at [0-9T:.Z-]+\).*stopping" "$T/r1.err" ||
		{ cat "$T/r1.err"; return 1; }
	assert_eq "$(ob_count register)" 2 "registered at start and once again"
	assert_eq "$(ctl GET /_control/requests | jq --arg p "/workspaces/$WS_ID" '[.[] | select(.method == "GET" and .path == $p)] | length')" 1 \
		"its status asked once"
}

@test "a removed workspace at start: exit 3, not a complaint about the token" {
	ctl POST "/_control/workspaces/$WS_ID/remove" >/dev/null
	ob_coproc r1
	ob_wait_exit
	assert_eq "$BR_STATUS" 3 "exit status"
	assert_eq "$(ob_grep_count "$T/r1.err" 'error:')" 1 "one error line"
	grep -q "workspace $WS_ID was removed" "$T/r1.err"
}

@test "a paused workspace whose calls are refused: said once, no loop, the bridge carries on" {
	local err='{"error":"invalid workspace auth token"}' n ep
	ctl POST "/_control/workspaces/$WS_ID/pause" >/dev/null
	ob_coproc r1
	wait_until 10 ob_at_least 1 heartbeat
	for ep in activity heartbeat register; do
		fault "{\"endpoint\":\"$ep\",\"status\":401,\"body\":$err}"
	done
	wait_until 15 grep -q "warning: workspace $WS_ID is paused" "$T/r1.err"
	# Two more heartbeats refused after it: nothing more is registered or asked.
	n=$(ob_count heartbeat)
	wait_until 15 ob_at_least $((n + 2)) heartbeat
	proc_alive "$BR_PID"
	assert_eq "$(ob_grep_count "$T/r1.err" 'is paused')" 1 "said once"
	assert_eq "$(ob_count register)" 2 "registered again once"
	assert_eq "$(ctl GET /_control/requests | jq --arg p "/workspaces/$WS_ID" '[.[] | select(.path == $p)] | length')" 1 \
		"its status asked once"
}

@test "heartbeat: is_busy while a message is handed out and not answered" {
	local id
	ob_filter r1
	wait_until 10 ob_at_least 1 heartbeat
	assert_eq "$(posts heartbeat "$WS_ID" | jq -c '.[0].body.is_busy')" false "idle"
	id=$(queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"text\":\"think\"}")
	wait_until 10 file_lines "$T/r1.out" 1
	ctl DELETE /_control/posts >/dev/null
	wait_until 10 ob_at_least 1 heartbeat
	assert_eq "$(posts heartbeat "$WS_ID" | jq -c '.[0].body | [.is_busy, .active_tasks]')" '[true,1]' "busy"
	ob_reply "{\"id\":\"$id\",\"text\":\"done thinking\"}"
	wait_until 10 ob_cursor_is "$id"
	ctl DELETE /_control/posts >/dev/null
	wait_until 10 ob_at_least 1 heartbeat
	assert_eq "$(posts heartbeat "$WS_ID" | jq -c '.[0].body | [.is_busy, .active_tasks]')" '[false,0]' "idle again"
}

# ---- new messages -------------------------------------------------------------

@test "{\"to\":...} lines start conversations: to a peer with a fresh messageId, to the canvas; bad ones get an error line" {
	ob_filter r1
	wait_until 10 ob_at_least 1 heartbeat
	ob_reply "{\"to\":\"$PEER_ID\",\"text\":\"hello peer\",\"context_id\":\"ctx-new\"}" \
		"{\"to\":\"$PEER_ID\",\"parts\":[{\"kind\":\"text\",\"text\":\"second\"}]}" \
		'{"to":"canvas","text":"hello person"}' \
		'{"to":"not-a-uuid","text":"x"}' \
		"{\"to\":\"$WS_ID\",\"text\":\"to myself\"}" \
		"{\"to\":\"$PEER_ID\"}" \
		"{\"to\":\"$PEER_ID\",\"id\":\"$PEER_ID\",\"text\":\"x\"}"
	wait_until 10 ob_at_least 2 a2a '.status == 200'
	wait_until 10 ob_at_least 1 notify '.status == 200'
	assert_eq "$(posts a2a "$WS_ID" | jq -c '[.[].body.params.message | [.parts[0].text, .contextId, has("metadata"), has("taskId"), .role]]')" \
		'[["hello peer","ctx-new",false,false,"agent"],["second",null,false,false,"agent"]]' "to the peer, in order"
	assert_eq "$(posts a2a "$WS_ID" | jq '[.[].body.params.message.messageId] | unique | length')" 2 "a fresh id each"
	assert_eq "$(posts notify "$WS_ID" | jq -r '.[0].body.message')" "hello person" "to the canvas"
	assert_eq "$(ob_grep_count "$T/r1.err" 'error: reply line [4-7]: ')" 4 "one error line per bad line"
	grep -q 'reply line 5: "to" is this workspace.s own id' "$T/r1.err"
	proc_alive "$BR_PID"
}

@test "a new message that cannot be posted is kept across a restart with its messageId, after the replies before it" {
	local id mid
	id=$(queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"text\":\"q\"}")
	fault "{\"endpoint\":\"a2a\",\"workspace_id\":\"$PEER_ID\",\"status\":503}"
	ob_filter r1 --drain-timeout 0.2
	wait_until 10 file_lines "$T/r1.out" 1
	ob_reply "{\"id\":\"$id\",\"text\":\"the reply\"}" "{\"to\":\"$PEER_ID\",\"text\":\"news\"}"
	wait_until 10 state_file_has '.replies | length == 2 and .[1].outbound == true'
	mid=$(jq -r '.replies[1].body.params.message.messageId' "$SD/$WS_ID.json")
	assert_eq "$(ob_count a2a '.body.params.message.parts[0].text == "news"')" 0 "the new message waits for the reply read before it"
	kill -KILL "$BR_PID"
	wait "$BR_PID" 2>/dev/null || true
	ctl DELETE /_control/faults >/dev/null
	ob_filter r2
	wait_until 10 ob_at_least 2 a2a '.status == 200'
	assert_eq "$(a2a_ok_texts | paste -sd, -)" "the reply,news" "in the order read"
	assert_eq "$(posts a2a "$WS_ID" | jq -r '[.[] | select(.status == 200)][1].body.params.message.messageId')" "$mid" "the same messageId"
	wait_until 10 state_file_has '.replies | length == 0'
}

# ---- floods -------------------------------------------------------------------

@test "a handler printing junk: ten error lines, then a summary now and again, and a count at exit" {
	local id n=100000
	id=$(queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"text\":\"q\"}")
	ob_filter r1
	wait_until 10 file_lines "$T/r1.out" 1
	yes 'junk junk junk' | head -n "$n" >&5
	ob_reply "{\"id\":\"$id\",\"text\":\"still answered\"}"
	wait_until 20 ob_cursor_is "$id"
	exec 5>&-
	OB_FIFO_OPEN=
	ob_wait_exit
	assert_eq "$BR_STATUS" 0 "exit status"
	assert_eq "$(ob_grep_count "$T/r1.err" '^molecule-connect: error: reply line [0-9]+: not JSON')" 10 "the first ten, one each"
	[ "$(wc -l <"$T/r1.err")" -lt 60 ] || { echo "$(wc -l <"$T/r1.err") lines of stderr"; return 1; }
	grep -qE "error: $n bad reply lines in all, $((n - 10)) of them not reported one by one" "$T/r1.err" ||
		{ tail -n 5 "$T/r1.err"; return 1; }
}

@test "--filter with unbounded output: one error line naming the message, 1000 lines handed out, the bridge goes on" {
	local ids
	mapfile -t ids < <(queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"count\":2,\"text\":\"m{n}\"}")
	ob_filter r1 --filter 'if .text == "m1" then range(1e9) | {n: .} else . end'
	wait_until 20 file_lines "$T/r1.out" 1001
	assert_eq "$(head -n 1000 "$T/r1.out" | jq -s -c '[.[0].n, .[-1].n]')" '[0,999]' "the first 1000 outputs"
	assert_eq "$(sed -n 1001p "$T/r1.out" | jq -r .id)" "${ids[1]}" "then the next message"
	assert_eq "$(ob_grep_count "$T/r1.err" "error: --filter gave more than 1000 outputs for message ${ids[0]}")" 1 "said once"
	ob_reply "{\"id\":\"${ids[0]}\",\"text\":\"a\"}" "{\"id\":\"${ids[1]}\",\"text\":\"b\"}"
	wait_until 10 ob_cursor_is "${ids[1]}"
}
