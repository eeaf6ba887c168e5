#!/usr/bin/env bats
# bridge.bats: the bridge end to end against the fake platform: message lines out,
# replies back to peers and to the canvas, heartbeats, the first-registration token,
# start-up refusals, --once and --max-messages, the org header, and the token kept
# out of every output. Needs MC_BIN and FAKE_BIN (set by make check).

load helpers

UUID_RE='^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
# The keys of a message line, in the order the man page gives them.
LINE_KEYS='["id","seq","workspace_id","source_id","origin","peer_name","peer_role","method","text","parts","files","message_id","context_id","delegation_id","created_at","request"]'
# A co-process that answers every message with "echo: <text>".
ECHO_JQ='{id, text: ("echo: " + .text)}'

setup() {
	: "${MC_BIN:?MC_BIN must name the built molecule-connect}"
	unset XDG_CONFIG_HOME MOLECULE_API_URL MOLECULE_ORG_ID MOLECULE_WORKSPACE_TOKEN
	T=$BATS_TEST_TMPDIR
	STATE_DIR=$T/state
	BRIDGE_PID=
	BRIDGE_FD=
	fake_start --rate-limit 0
	new_ws >/dev/null
	new_peer >/dev/null
}

teardown() {
	local rc=0
	bridge_kill
	if [ -n "${BRIDGE_FD:-}" ]; then
		exec 5>&-
		BRIDGE_FD=
	fi
	exec 6>&-
	bridge_no_sanitizer_report "$T/err" || rc=1
	fake_stop || rc=1
	return "$rc"
}

# bridge_no_sanitizer_report FILE: fails, showing it, when FILE (a bridge's stderr)
# holds an AddressSanitizer or UndefinedBehaviorSanitizer report.
bridge_no_sanitizer_report() {
	[ -f "$1" ] || return 0
	if grep -Eq 'Sanitizer|runtime error:' "$1"; then
		echo "sanitizer report in $1:" >&2
		head -n 40 "$1" >&2
		return 1
	fi
}

# bridge_kill: stops a background bridge started by bridge_start_filter, if running.
bridge_kill() {
	[ -n "${BRIDGE_PID:-}" ] || return 0
	local i
	kill -TERM "$BRIDGE_PID" 2>/dev/null || true
	for ((i = 0; i < 200; i++)); do
		kill -0 "$BRIDGE_PID" 2>/dev/null || break
		nap 0.025
	done
	kill -KILL "$BRIDGE_PID" 2>/dev/null || true
	wait "$BRIDGE_PID" 2>/dev/null || true
	BRIDGE_PID=
}

# bridge_start_filter [OPTIONS...]: starts the bridge in filter mode in the background
# for WS_ID against the fake: stdout to $T/out, stderr to $T/err, stdin the FIFO
# $T/in, which fd 5 of this shell keeps open (write replies with bridge_reply, close
# it with bridge_eof). The token comes from the environment.
bridge_start_filter() {
	mkfifo "$T/in"
	exec 5<>"$T/in"
	BRIDGE_FD=5
	: >"$T/out"
	"$MC_BIN" --api-url "$FAKE_URL" --state-dir "$STATE_DIR" --interval 0.05 --heartbeat 1 \
		"$@" "$WS_ID" <"$T/in" >"$T/out" 2>"$T/err" 3>&- 5>&- &
	BRIDGE_PID=$!
}

# bridge_reply LINE: one reply line to the filter-mode bridge.
bridge_reply() {
	printf '%s\n' "$1" >&5
}

# bridge_eof: closes the bridge's stdin.
bridge_eof() {
	exec 5>&-
	BRIDGE_FD=
}

# bridge_wait_exit: waits (up to 20 s) for the background bridge; sets BRIDGE_STATUS.
bridge_wait_exit() {
	wait_until 20 bridge_exited || return 1
	BRIDGE_STATUS=0
	wait "$BRIDGE_PID" || BRIDGE_STATUS=$?
	BRIDGE_PID=
}

bridge_exited() {
	! kill -0 "$BRIDGE_PID" 2>/dev/null
}

# bridge_out_lines N: succeeds once $T/out holds at least N lines.
bridge_out_lines() {
	[ "$(wc -l <"$T/out")" -ge "$1" ]
}

# bridge_line N: the Nth (1-based) line the bridge wrote on stdout.
bridge_line() {
	sed -n "${1}p" "$T/out"
}

# bridge_run [OPTIONS...] [-- COMMAND...]: runs the bridge in the foreground for
# WS_ID (bounded by timeout 30); stdout to $T/run.out, stderr to $T/run.err, and
# the exit status in RUN_STATUS. Stdin is a FIFO that never ends (fd 6 of this
# shell holds it open), so end of input never stops a filter-mode run.
bridge_run() {
	local args=() rest=()
	while [ $# -gt 0 ] && [ "$1" != -- ]; do
		args+=("$1")
		shift
	done
	rest=("$@")
	[ -p "$T/never" ] || mkfifo "$T/never"
	exec 6<>"$T/never"
	RUN_STATUS=0
	timeout 30 "$MC_BIN" --api-url "$FAKE_URL" --state-dir "$STATE_DIR" --interval 0.05 \
		--heartbeat 1 "${args[@]}" "$WS_ID" "${rest[@]}" \
		<"$T/never" >"$T/run.out" 2>"$T/run.err" 3>&- 6>&- || RUN_STATUS=$?
	exec 6>&-
	bridge_no_sanitizer_report "$T/run.err"
}

# bridge_state [JQ [JQ_ARGS...]]: the state file of WS_ID through jq (the whole file
# by default).
bridge_state() {
	jq -c "${1:-.}" "${@:2}" "$STATE_DIR/$WS_ID.json"
}

# bridge_cursor_is ID: succeeds once the saved cursor equals ID (no jq: it is polled).
bridge_cursor_is() {
	local s=""
	[ -f "$STATE_DIR/$WS_ID.json" ] || return 1
	IFS= read -r -d '' s <"$STATE_DIR/$WS_ID.json" || true
	[[ "$s" =~ \"last_since_id\":\"([^\"]*)\" ]] && [ "${BASH_REMATCH[1]}" = "$1" ]
}

# bridge_posts KIND [JQ [JQ_ARGS...]]: the posts of KIND made by WS_ID, through jq.
bridge_posts() {
	local out
	out=$(posts "$1" "$WS_ID") || return 1
	jq -c "${2:-.}" "${@:3}" <<<"$out"
}

# bridge_count KIND: prints how many posts of KIND WS_ID made (no jq: it is polled).
bridge_count() {
	local body marks
	posts "$1" "$WS_ID" >/dev/null || return 1
	body=$HTTP_BODY
	marks=${body//\"seq\":/$'\x01'}
	marks=${marks//[^$'\x01']/}
	echo "${#marks}"
}

# bridge_post_count KIND N: succeeds once WS_ID made at least N posts of KIND.
bridge_post_count() {
	local n
	n=$(bridge_count "$1") || return 1
	[ "$n" -ge "$2" ]
}

# bridge_absent STRING FILE...: fails, naming the file, when STRING occurs in one of them.
bridge_absent() {
	local needle="$1" f
	shift
	for f in "$@"; do
		if grep -qF -- "$needle" "$f"; then
			echo "found '$needle' in $f:" >&2
			grep -nF -- "$needle" "$f" | head -n 5 >&2
			return 1
		fi
	done
}

# bridge_hb_busy: succeeds once a heartbeat shows the open message.
bridge_hb_busy() {
	[ "$(bridge_posts heartbeat 'any(.[]; .body.active_tasks >= 1 and (.body.current_task // "" | contains("summarise the quarterly numbers")))')" = true ]
}

# bridge_hb_idle_after T_MS: succeeds once a heartbeat after T_MS shows nothing open.
bridge_hb_idle_after() {
	[ "$(bridge_posts heartbeat "any(.[]; .t_ms > $1 and .body.active_tasks == 0 and .body.current_task == \"\")")" = true ]
}

# jq definitions: "masked" replaces the UUIDs at .id and .params.message.messageId of a
# reply body with "UUID", so that a whole body can be compared with what it must be.
BRIDGE_JQ_DEFS='def uuidish: type == "string" and test("^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$");
def masked: if (.id | uuidish) then .id = "UUID" else . end
	| if (.params.message? | type) == "object" and (.params.message.messageId | uuidish)
	  then .params.message.messageId = "UUID" else . end
	| if (.params.message.metadata.in_reply_to? | uuidish)
	  then .params.message.metadata.in_reply_to = "UUID" else . end;'

@test "round trip with a peer: replies posted in arrival order, headers and A2A envelope" {
	local ids got want
	mapfile -t ids < <(queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"count\":3,\"text\":\"question {n}\",\"context_id\":\"ctx-77\",\"task_id\":\"task-42\"}")
	[ "${#ids[@]}" -eq 3 ]
	export MOLECULE_WORKSPACE_TOKEN=$WS_TOKEN
	bridge_start_filter
	wait_until 10 bridge_out_lines 3
	assert_eq "$(jq -r .id "$T/out" | tr '\n' ' ')" "${ids[0]} ${ids[1]} ${ids[2]} " "ids of the lines"
	# Answered newest first: the replies still go out in the order the messages came.
	bridge_reply "{\"id\":\"${ids[2]}\",\"text\":\"answer 3\"}"
	bridge_reply "{\"id\":\"${ids[1]}\",\"text\":\"answer 2\"}"
	nap 0.5
	assert_eq "$(bridge_count a2a)" 0 "a2a posts before the first message is answered"
	bridge_reply "{\"id\":\"${ids[0]}\",\"text\":\"answer 1\"}"
	wait_until 10 bridge_post_count a2a 3
	got=$(bridge_posts a2a "$BRIDGE_JQ_DEFS"'
		{n: length,
		 message_ids: (map(.body.params.message.messageId) | unique | length),
		 rpc_ids: (map(.body.id) | unique | length),
		 posts: map({path, status, authorization: .headers.authorization,
			     x_workspace_id: .headers["x-workspace-id"], body: (.body | masked)})}')
	want=$(jq -c -n --arg peer "$PEER_ID" --arg ws "$WS_ID" --arg tok "$WS_TOKEN" '
		{n: 3, message_ids: 3, rpc_ids: 3,
		 posts: [range(1; 4) | {path: "/workspaces/\($peer)/a2a", status: 200,
			authorization: "Bearer \($tok)", x_workspace_id: $ws,
			body: {jsonrpc: "2.0", id: "UUID", method: "message/send",
			       params: {message: {role: "agent", messageId: "UUID",
					parts: [{kind: "text", text: "answer \(.)"}],
					contextId: "ctx-77", metadata: {in_reply_to: "UUID"}}}}}]}')
	# Compared with keys sorted: the order of keys in a body is not part of the contract.
	assert_eq "$(jq -S -c . <<<"$got")" "$(jq -S -c . <<<"$want")" "a2a posts"
	# The peer received them as new inbound messages from this workspace, in that order.
	assert_eq "$(activity "$PEER_ID" | jq -c --arg ws "$WS_ID" \
		'[.[] | select(.source_id == $ws) | .request_body.params.message.parts[0].text]')" \
		'["answer 1","answer 2","answer 3"]' "rows in the peer's activity"
	wait_until 10 bridge_cursor_is "${ids[2]}"
	bridge_absent 'error:' "$T/err"
}

@test "message lines: every key in order, origins, peer info, text joined from parts, request kept whole" {
	local parts peer_id canvas_id nobody_id typed_id system_id act i
	local -a got want
	# The peer has a name and a role, which include=peer_info brings.
	ctl POST /_control/workspaces "{\"id\":\"$PEER_ID\",\"name\":\"Researcher\",\"role\":\"analyst\"}" >/dev/null
	parts='[{"kind":"text","text":"line one"},{"kind":"file","file":{"name":"a.txt","mimeType":"text/plain","uri":"https://files.example/a.txt","size":3}},{"kind":"text","text":"line two"},{"kind":"hologram","beam":{"x":1}}]'
	peer_id=$(queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"parts\":$parts,\"context_id\":\"ctx-1\",\"task_id\":\"task-1\",\"delegation\":true}")
	canvas_id=$(queue_msgs "$WS_ID" '{"from":null,"text":"typed in the canvas"}')
	nobody_id=$(queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"no_body\":true}")
	typed_id=$(queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"key\":\"type\",\"text\":\"old sender\"}")
	system_id=$(queue_msgs "$WS_ID" '{"source_type":"self-nudge","text":"check your inbox"}')
	export MOLECULE_WORKSPACE_TOKEN=$WS_TOKEN
	bridge_start_filter
	wait_until 10 bridge_out_lines 5
	act=$(activity "$WS_ID")
	# What each line must be, key for key and in the documented key order: the peer's
	# delegation (text parts joined with \n, every part kept, a file part's uri as it
	# came, the peer's name and role, the delegation id), the canvas (no source, its
	# whole envelope with metadata), a row without request_body (empty text and parts,
	# request null), parts written with "type" instead of "kind", and a turn the
	# platform started (origin system).
	mapfile -t want < <(jq -c -n --argjson rows "$act" --argjson parts "$parts" \
		--arg ws "$WS_ID" --arg peer "$PEER_ID" --arg p "$peer_id" --arg c "$canvas_id" \
		--arg n "$nobody_id" --arg t "$typed_id" --arg s "$system_id" '
		def row($id): first($rows[] | select(.id == $id));
		def line($id; $src; $origin; $who; $text; $parts; $ctx; $deleg):
			row($id) as $r
			| {id: $id, seq: $r.seq, workspace_id: $ws, source_id: $src, origin: $origin,
			   peer_name: $who[0], peer_role: $who[1], method: "message/send", text: $text,
			   parts: $parts, files: [], message_id: $r.request_body.params.message.messageId,
			   context_id: $ctx, delegation_id: $deleg, created_at: $r.created_at,
			   request: $r.request_body};
		if (row($n) | has("request_body")) then error("the no_body row has a body") else . end
		| line($p; $peer; "agent"; ["Researcher", "analyst"]; "line one\nline two"; $parts; "ctx-1";
		       row($p).request_body.params.message.messageId),
		  line($c; null; "canvas"; [null, null]; "typed in the canvas";
		       [{kind: "text", text: "typed in the canvas"}]; "canvas-" + $ws; null),
		  line($n; $peer; "agent"; ["Researcher", "analyst"]; ""; []; null; null),
		  line($t; $peer; "agent"; ["Researcher", "analyst"]; "old sender";
		       [{type: "text", text: "old sender"}]; null; null),
		  line($s; null; "system"; [null, null]; "check your inbox";
		       [{kind: "text", text: "check your inbox"}]; null; null)')
	[ "${#want[@]}" -eq 5 ]
	mapfile -t got < <(jq -c . "$T/out")
	assert_eq "${#got[@]}" 5 "lines out"
	for i in 0 1 2 3 4; do
		assert_eq "${got[$i]}" "${want[$i]}" "line $((i + 1))"
		assert_eq "$(jq -c keys_unsorted <<<"${got[$i]}")" "$LINE_KEYS" "keys of line $((i + 1))"
	done
	# Compact: the lines are exactly what jq -c makes of them.
	assert_eq "$(cat "$T/out")" "$(printf '%s\n' "${got[@]}")" "compact lines"
	assert_eq "$(jq -c '.request.params.metadata.source' <<<"${got[1]}")" '"canvas_user"' "canvas metadata"
	# The seqs the platform gave, in order; the delegation id is its messageId.
	assert_eq "$(jq -s -c 'map(.seq) | . == sort and all(type == "number")' "$T/out")" true "seqs"
	[ "$(jq -r .delegation_id <<<"${got[0]}")" != null ]

	# Every one of them can be acked, the body-less row included: the cursor passes them all.
	for id in "$peer_id" "$canvas_id" "$nobody_id" "$typed_id" "$system_id"; do
		bridge_reply "{\"id\":\"$id\"}"
	done
	wait_until 10 bridge_cursor_is "$system_id"
	assert_eq "$(bridge_state '.done_ids')" '[]' "done_ids once the cursor passed them"
	assert_eq "$(bridge_count a2a) $(bridge_count notify)" "0 0" "posts for acks"
	bridge_absent 'error:' "$T/err"
}

@test "a canvas message is answered through notify; the echo row is passed, not emitted" {
	local msg_id echo_id
	msg_id=$(queue_msgs "$WS_ID" '{"from":null,"text":"hello from the canvas"}')
	export MOLECULE_WORKSPACE_TOKEN=$WS_TOKEN
	bridge_start_filter
	wait_until 10 bridge_out_lines 1
	assert_eq "$(jq -r '.id + " " + .origin' "$T/out")" "$msg_id canvas" "emitted line"
	bridge_reply "{\"id\":\"$msg_id\",\"text\":\"hi, person\"}"
	wait_until 10 bridge_post_count notify 1
	assert_eq "$(bridge_posts notify 'map({path, status, authorization: .headers.authorization, body})')" \
		"[{\"path\":\"/workspaces/$WS_ID/notify\",\"status\":200,\"authorization\":\"Bearer $WS_TOKEN\",\"body\":{\"message\":\"hi, person\"}}]" \
		"notify posts"
	assert_eq "$(bridge_count a2a)" 0 "a2a posts"
	# The platform echoed the reply into this workspace's activity as a notify row.
	echo_id=$(activity "$WS_ID" | jq -r '.[] | select(.method == "notify") | .id')
	[[ "$echo_id" =~ $UUID_RE ]]
	# The cursor moves past the echo (so the bridge fetched it) ...
	wait_until 10 bridge_cursor_is "$echo_id"
	# ... and it never reached stdout, nor was it answered.
	nap 0.3
	assert_eq "$(wc -l <"$T/out")" 1 "lines out"
	assert_eq "$(bridge_count notify)" 1 "notify posts after the echo"
	kill -0 "$BRIDGE_PID"
}

@test "cold start: only the --since-secs window is emitted, oldest first" {
	local old new
	# Queued newest first, so the platform's own order is not the one to follow.
	mapfile -t new < <(queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"count\":3,\"text\":\"recent {n}\",\"age_secs\":5}")
	mapfile -t old < <(queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"count\":2,\"text\":\"stale {n}\",\"age_secs\":120}")
	export MOLECULE_WORKSPACE_TOKEN=$WS_TOKEN
	bridge_run --since-secs 30 --once -- \
		sh -c 'tee -a "$0" | jq -c --unbuffered "$1"' "$T/seen" "$ECHO_JQ"
	assert_eq "$RUN_STATUS" 0 "exit status"
	assert_eq "$(jq -r '.id + " " + .text' "$T/seen")" \
		"$(printf '%s recent %d\n' "${new[0]}" 1 "${new[1]}" 2 "${new[2]}" 3)" "handed out"
	assert_eq "$(bridge_posts a2a '[.[].body.params.message.parts[0].text]')" \
		'["echo: recent 1","echo: recent 2","echo: recent 3"]' "replies"
	assert_eq "$(bridge_state .last_since_id)" "\"${new[2]}\"" "cursor"
	# The first poll asked for the window, not for everything.
	assert_eq "$(ctl GET /_control/requests | jq -r --arg p "/workspaces/$WS_ID/activity" \
		'[.[] | select(.path | startswith($p))][0].path | test("since_secs=30") and (test("since_id") | not)')" \
		true "first poll"
}

@test "cold start: a backlog of 300 in the window is replayed whole, in order" {
	# The replay comes newest first: a short page would drop the oldest messages
	# of the window for good.
	queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"count\":300,\"text\":\"m {n}\",\"age_secs\":5}" >/dev/null
	export MOLECULE_WORKSPACE_TOKEN=$WS_TOKEN
	bridge_run --since-secs 30 --once -- \
		sh -c 'tee -a "$0" | jq -c --unbuffered "$1"' "$T/seen" "$ECHO_JQ"
	assert_eq "$RUN_STATUS" 0 "exit status"
	assert_eq "$(jq -s -c '[.[].text] == [range(1; 301) | "m \(.)"]' "$T/seen")" true "all 300, oldest first"
	assert_eq "$(bridge_posts a2a 'length')" 300 "replies"
}

@test "large messages narrow the window to about 4 MiB; every one is still answered, in order" {
	local big ids=() i n hbs
	big=$(head -c 700000 /dev/zero | tr '\0' x)
	for i in 1 2 3 4 5 6 7 8 9 10; do
		ids+=("$(queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"text\":\"$i:$big\"}")")
	done
	export MOLECULE_WORKSPACE_TOKEN=$WS_TOKEN
	bridge_start_filter
	# Heartbeats (every second) report how many are out: two more go by
	# without an answer, and the window stays as it was.
	wait_until 10 eval '[ "$(bridge_posts heartbeat "any(.[]; .body.active_tasks >= 1)")" = true ]'
	hbs=$(bridge_count heartbeat)
	wait_until 10 bridge_post_count heartbeat $((hbs + 2))
	n=$(wc -l <"$T/out")
	[ "$n" -ge 4 ] && [ "$n" -le 6 ] || { echo "handed out at once: $n of 10 (--max-inflight 16)"; return 1; }
	assert_eq "$(bridge_posts heartbeat '.[-1].body.active_tasks')" "$n" "active tasks in the last heartbeat"
	# Answering frees the window: all ten come, each answered once, in order.
	for ((i = 1; i <= 10; i++)); do
		wait_until 10 bridge_out_lines "$i"
		bridge_reply "{\"id\":\"$(bridge_line "$i" | jq -r .id)\",\"text\":\"ok $i\"}"
	done
	wait_until 15 bridge_post_count a2a 10
	assert_eq "$(jq -r .id "$T/out" | paste -sd' ' -)" "${ids[*]}" "handed out, in order"
	assert_eq "$(bridge_posts a2a '[.[] | select(.status == 200) | .body.params.message.parts[0].text] | join(",")' -r)" \
		"ok 1,ok 2,ok 3,ok 4,ok 5,ok 6,ok 7,ok 8,ok 9,ok 10" "replies"
}

@test "heartbeats: regular, well-typed, no runtime_state, and they show the open message" {
	local msg_id t_ms
	export MOLECULE_WORKSPACE_TOKEN=$WS_TOKEN
	bridge_start_filter --heartbeat 1
	wait_until 10 bridge_post_count heartbeat 3
	# Every beat: 200, own token, own id, integers where integers go, no runtime_state.
	assert_eq "$(bridge_posts heartbeat '
		map(select((.status == 200 and .headers.authorization == $auth
			and .body.workspace_id == $ws
			and (.body.uptime_seconds | type == "number" and . == floor and . >= 0)
			and (.body.active_tasks | type == "number" and . == floor and . >= 0)
			and (.body.error_rate | type == "number" and . >= 0 and . <= 1)
			and (.body | has("runtime_state") | not)) | not))' \
		--arg ws "$WS_ID" --arg auth "Bearer $WS_TOKEN")" \
		'[]' "heartbeats that break the rules"
	# Idle at first: nothing open.
	assert_eq "$(bridge_posts heartbeat '.[0].body | [.active_tasks, .current_task]')" '[0,""]' "idle heartbeat"
	# A message handed out and not answered is an active task, summarised in current_task.
	msg_id=$(queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"text\":\"please summarise the quarterly numbers\"}")
	wait_until 10 bridge_out_lines 1
	wait_until 10 bridge_hb_busy
	# Answered: back to idle.
	t_ms=$(now_ms)
	bridge_reply "{\"id\":\"$msg_id\",\"text\":\"done\"}"
	wait_until 10 bridge_post_count a2a 1
	wait_until 10 bridge_hb_idle_after "$t_ms"
	assert_eq "$(ctl GET "/_control/workspaces/$WS_ID" | jq -c '.last_heartbeat | has("runtime_state")')" false "last heartbeat runtime_state"
}

@test "first registration: the token handed out is adopted, saved 0600, used, and reused" {
	local token
	new_ws '{"no_token":true}' >/dev/null
	assert_eq "$WS_TOKEN" null "workspace token before the first register"
	queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"text\":\"first contact\"}" >/dev/null
	bridge_run --once -- jq -c --unbuffered "$ECHO_JQ"
	assert_eq "$RUN_STATUS" 0 "first run exit status"
	token=$(ctl GET "/_control/workspaces/$WS_ID" | jq -r .token)
	[ "${#token}" -eq 43 ]
	assert_eq "$(bridge_state .auth_token)" "\"$token\"" "saved auth_token"
	assert_eq "$(stat -c %a "$STATE_DIR/$WS_ID.json")" 600 "state file mode"
	assert_eq "$(stat -c %a "$STATE_DIR")" 700 "state directory mode"
	# The first register carried no token; everything after it carries the new one.
	assert_eq "$(posts "" "$WS_ID" | jq -c '[.[] | {kind, status, authorization: .headers.authorization}] | unique')" \
		"$(jq -c -n --arg a "Bearer $token" '[{kind: "a2a", status: 200, authorization: $a},
			{kind: "ack", status: 200, authorization: $a},
			{kind: "heartbeat", status: 200, authorization: $a},
			{kind: "register", status: 200, authorization: null}] | unique')" "posts of the first run"
	assert_eq "$(bridge_count a2a)" 1 "a2a posts"
	# A second run, still without a token in the environment, reuses the saved one.
	ctl DELETE /_control/posts >/dev/null
	bridge_run --once -- jq -c --unbuffered "$ECHO_JQ"
	assert_eq "$RUN_STATUS" 0 "second run exit status"
	assert_eq "$(bridge_posts register '[.[] | {status, authorization: .headers.authorization}]')" \
		"[{\"status\":200,\"authorization\":\"Bearer $token\"}]" "second run's register"
	assert_eq "$(ctl GET "/_control/workspaces/$WS_ID" | jq -r .token)" "$token" "the platform's token is unchanged"
	assert_eq "$(bridge_state '[.auth_token == $t, .workspace_id]' --arg t "$token")" "[true,\"$WS_ID\"]" "auth_token kept"
	assert_eq "$(stat -c %a "$STATE_DIR/$WS_ID.json")" 600 "state file mode after the second run"
	bridge_absent "$token" "$T/run.err" "$T/run.out"
}

@test "a refused token at start: exit 2 (a configuration error), one error line naming 401 and the token, no secret" {
	local secret=wrongTokenValue-Zq81xPLmN0vB7cY3kR5tW9eH2jD4fG6aS8uI1oE line
	export MOLECULE_WORKSPACE_TOKEN=$secret
	bridge_run
	assert_eq "$RUN_STATUS" 2 "exit status"
	assert_eq "$(grep -c 'molecule-connect: error:' "$T/run.err")" 1 "error lines"
	line=$(grep 'molecule-connect: error:' "$T/run.err")
	[[ "$line" == *401* ]] || { echo "no 401 in: $line"; return 1; }
	# It says what to check: the token.
	[[ "$line" == *MOLECULE_WORKSPACE_TOKEN* || "${line,,}" == *"check"*token* ]] ||
		{ echo "nothing to check in: $line"; return 1; }
	bridge_absent "$secret" "$T/run.err" "$T/run.out"
	[ ! -s "$T/run.out" ]
	# Nothing polled or posted after the refusal.
	# (A refused token could be a removed workspace's: its status is asked once.)
	assert_eq "$(ctl GET /_control/requests | jq -c 'map(.path | sub("\\?.*"; "") | sub("/workspaces/[^/]*"; "/workspaces/ID")) | unique')" \
		'["/registry/register","/workspaces/ID"]' "requests made"
}

@test "--once: handles what is queued, posts every reply, exits 0; with nothing queued too" {
	local ids
	mapfile -t ids < <(queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"count\":3,\"text\":\"batch {n}\"}")
	export MOLECULE_WORKSPACE_TOKEN=$WS_TOKEN
	bridge_run --once -- jq -c --unbuffered "$ECHO_JQ"
	assert_eq "$RUN_STATUS" 0 "exit status"
	assert_eq "$(bridge_posts a2a '[.[] | select(.status == 200) | .body.params.message.parts[0].text]')" \
		'["echo: batch 1","echo: batch 2","echo: batch 3"]' "replies posted"
	assert_eq "$(bridge_state '[.last_since_id, .replies]')" "[\"${ids[2]}\",[]]" "cursor and kept replies"
	# Nothing waiting: one poll and out, in filter mode with a stdin that never ends.
	bridge_run --once
	assert_eq "$RUN_STATUS" 0 "exit status with nothing queued"
	[ ! -s "$T/run.out" ]
	assert_eq "$(bridge_count a2a)" 3 "a2a posts after the idle run"
}

@test "--max-messages 2 with 5 queued: two handed out and answered, cursor at the second" {
	local ids
	mapfile -t ids < <(queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"count\":5,\"text\":\"item {n}\"}")
	[ "${#ids[@]}" -eq 5 ]
	export MOLECULE_WORKSPACE_TOKEN=$WS_TOKEN
	bridge_run --max-messages 2 -- \
		sh -c 'tee -a "$0" | jq -c --unbuffered "$1"' "$T/seen" "$ECHO_JQ"
	assert_eq "$RUN_STATUS" 0 "exit status"
	assert_eq "$(jq -r .id "$T/seen" | tr '\n' ' ')" "${ids[0]} ${ids[1]} " "handed out"
	assert_eq "$(bridge_posts a2a '[.[] | select(.status == 200) | .body.params.message.parts[0].text]')" \
		'["echo: item 1","echo: item 2"]' "replies posted"
	assert_eq "$(bridge_state '[.last_since_id, .done_ids]')" "[\"${ids[1]}\",[]]" "cursor and done_ids"
	# The rest waits on the platform for the next run.
	rm -f "$T/seen"
	bridge_run --once -- sh -c 'tee -a "$0" | jq -c --unbuffered "$1"' "$T/seen" "$ECHO_JQ"
	assert_eq "$RUN_STATUS" 0 "next run exit status"
	assert_eq "$(jq -r .id "$T/seen" | tr '\n' ' ')" "${ids[2]} ${ids[3]} ${ids[4]} " "handed out next"
}

@test "org id: sent as X-Molecule-Org-Id end to end; without it or with a wrong one, exit 2 naming the org id" {
	local org=org-7f3a
	fake_stop
	fake_start --rate-limit 0 --org-id "$org"
	new_ws >/dev/null
	new_peer >/dev/null
	export MOLECULE_WORKSPACE_TOKEN=$WS_TOKEN
	queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"text\":\"from a peer\"}" >/dev/null
	queue_msgs "$WS_ID" '{"from":null,"text":"from the canvas"}' >/dev/null
	bridge_run --org-id "$org" --once -- jq -c --unbuffered "$ECHO_JQ"
	assert_eq "$RUN_STATUS" 0 "exit status with --org-id"
	# (Replies to different destinations may go in parallel: sorted by kind.)
	assert_eq "$(posts "" "$WS_ID" | jq -c 'map(select(.kind == "a2a" or .kind == "notify")
			| {kind, status, org: .headers["x-molecule-org-id"], body: (.body.params.message.parts[0].text // .body)})
			| sort_by(.kind)')" \
		"[{\"kind\":\"a2a\",\"status\":200,\"org\":\"$org\",\"body\":\"echo: from a peer\"},{\"kind\":\"notify\",\"status\":200,\"org\":\"$org\",\"body\":{\"message\":\"echo: from the canvas\"}}]" \
		"posts with --org-id"
	# MOLECULE_ORG_ID does the same.
	ctl DELETE /_control/posts >/dev/null
	queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"text\":\"second\"}" >/dev/null
	MOLECULE_ORG_ID=$org bridge_run --once -- jq -c --unbuffered "$ECHO_JQ"
	assert_eq "$RUN_STATUS" 0 "exit status with MOLECULE_ORG_ID"
	assert_eq "$(bridge_posts a2a 'map({status, org: .headers["x-molecule-org-id"], text: .body.params.message.parts[0].text})')" \
		"[{\"status\":200,\"org\":\"$org\",\"text\":\"echo: second\"}]" "a2a post with MOLECULE_ORG_ID"
	# Without it the platform answers 400 TENANT_ORG_HEADER_REQUIRED, with a wrong
	# one a bare 404: configuration errors, not retried.
	STATE_DIR=$T/state-no-org
	bridge_run
	assert_eq "$RUN_STATUS" 2 "exit status without an org id"
	grep 'molecule-connect: error:' "$T/run.err" | grep -q 'MOLECULE_ORG_ID or --org-id' ||
		{ cat "$T/run.err"; return 1; }
	[ ! -s "$T/run.out" ]
	STATE_DIR=$T/state-wrong-org
	bridge_run --org-id org-wrong
	assert_eq "$RUN_STATUS" 2 "exit status with a wrong org id"
	grep 'molecule-connect: error:' "$T/run.err" | grep -q 'no org "org-wrong"' ||
		{ cat "$T/run.err"; return 1; }
	[ ! -s "$T/run.out" ]
}

@test "the token never shows: stdout, stderr with -v and JSON logs, state file, --dry-run" {
	local tok=$WS_TOKEN ids
	export MOLECULE_WORKSPACE_TOKEN=$tok
	# A co-process run, as verbose as it goes: a peer answered, the canvas
	# answered, a handler error, a bad reply line.
	queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"count\":2,\"text\":\"peer {n}\"}" >/dev/null
	queue_msgs "$WS_ID" '{"from":null,"text":"canvas"}' >/dev/null
	cat >"$T/handler" <<-'EOF'
		#!/bin/sh
		echo 'this is not json'
		exec jq -c --unbuffered 'if .text == "peer 2" then {id, error: "handler broke"} else {id, text: ("echo: " + .text)} end'
	EOF
	chmod +x "$T/handler"
	bridge_run -v -v --once -- "$T/handler"
	assert_eq "$RUN_STATUS" 0 "co-process run exit status"
	assert_eq "$(bridge_count a2a) $(bridge_count notify)" "2 1" "a2a and notify posts"
	grep -q 'molecule-connect: debug:' "$T/run.err"
	grep -q 'molecule-connect: error: reply line 1' "$T/run.err"
	bridge_absent "$tok" "$T/run.out" "$T/run.err" "$STATE_DIR/$WS_ID.json"
	assert_eq "$(bridge_state 'has("auth_token")')" false "auth_token saved for a given token"

	# Filter mode with JSON logs: message lines out, replies in, then end of input.
	mapfile -t ids < <(queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"count\":2,\"text\":\"json {n}\"}")
	bridge_start_filter -v --log-format json
	wait_until 10 bridge_out_lines 2
	bridge_reply '{"id":"not-a-known-id","text":"x"}'
	bridge_reply "{\"id\":\"${ids[0]}\",\"text\":\"one\"}"
	bridge_reply "{\"id\":\"${ids[1]}\",\"error\":\"failed\"}"
	wait_until 10 bridge_post_count a2a 4
	bridge_eof
	bridge_wait_exit
	assert_eq "$BRIDGE_STATUS" 0 "filter run exit status"
	[ -s "$T/err" ]
	jq -e . "$T/err" >/dev/null || { cat "$T/err"; return 1; }
	bridge_absent "$tok" "$T/out" "$T/err" "$STATE_DIR/$WS_ID.json"

	# --dry-run, with -v, the token from the environment and from a file.
	run "$MC_BIN" --dry-run -v --api-url "$FAKE_URL" --state-dir "$STATE_DIR" "$WS_ID"
	[ "$status" -eq 0 ]
	[[ "$output" == *"token: set"* ]]
	[[ "$output" != *"$tok"* ]]
	printf '%s\n' "$tok" >"$T/tokfile"
	chmod 600 "$T/tokfile"
	unset MOLECULE_WORKSPACE_TOKEN
	run "$MC_BIN" --dry-run -v --token-file "$T/tokfile" --log-format json "$WS_ID"
	[ "$status" -eq 0 ]
	[[ "$output" == *"token: set"* ]]
	[[ "$output" != *"$tok"* ]]
}

@test "plain http to a non-loopback host is refused with a token, allowed when asked" {
	export MOLECULE_WORKSPACE_TOKEN=$WS_TOKEN
	run timeout 10 "$MC_BIN" --api-url http://example.invalid --state-dir "$STATE_DIR" "$WS_ID"
	[ "$status" -eq 2 ]
	[ "${#lines[@]}" -eq 1 ]
	[[ "${lines[0]}" == "molecule-connect: "*"http://example.invalid"* ]]
	[[ "$output" == *--allow-insecure-http* ]]
	[[ "$output" != *"$WS_TOKEN"* ]]
	[ ! -e "$STATE_DIR" ]
	run timeout 10 "$MC_BIN" --api-url http://example.invalid --dry-run "$WS_ID"
	[ "$status" -eq 2 ]
	[[ "$output" == *--allow-insecure-http* ]]
	run timeout 10 "$MC_BIN" --api-url http://example.invalid --allow-insecure-http --dry-run "$WS_ID"
	[ "$status" -eq 0 ]
	[[ "$output" == *"api_url: http://example.invalid"* ]]
	[[ "$output" == *"allow_insecure_http: true"* ]]
	[[ "$output" != *"$WS_TOKEN"* ]]
	# https needs no permission.
	run timeout 10 "$MC_BIN" --api-url https://example.invalid --dry-run "$WS_ID"
	[ "$status" -eq 0 ]
}
