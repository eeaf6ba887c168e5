#!/usr/bin/env bats
# The fake platform: its platform API, and the control API the tests drive it with.

load helpers

UUID_RE='^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$'

setup() {
	fake_start
	new_ws >/dev/null
}

teardown() {
	fake_stop
}

# call METHOD PATH TOKEN [JSON [HEADER...]]: one platform request (an empty TOKEN sends
# no Authorization); the answer lands in CODE, BODY and HTTP_HEADERS.
call() {
	local method="$1" path="$2" token="$3" body="${4-}"
	shift 3
	[ $# -eq 0 ] || shift
	[ -z "$token" ] || set -- "Authorization: Bearer $token" "$@"
	fake_http "$method" "$path" "$body" "$@" || return 1
	CODE=$HTTP_CODE
	BODY=$HTTP_BODY
}

# api_call: the same through curl's api helper (for what needs a real HTTP/1.1 client).
api_call() {
	local out
	out=$(api "$@") || return 1
	CODE=${out%%$'\n'*}
	BODY=""
	[[ "$out" != *$'\n'* ]] || BODY=${out#*$'\n'}
}

hdr() {
	http_header "$1"
}

# logged_requests N: true when the fake platform has logged N requests.
logged_requests() {
	fake_http GET /_control/requests || return 1
	local opening=${HTTP_BODY//[^\{]/}
	[ "${#opening}" -eq "$1" ]
}

activity_url() {
	echo "/workspaces/$1/activity?type=a2a_receive${2:+&$2}"
}

register_body() {
	printf '{"id":"%s","agent_card":{"name":"t","description":"d","version":"1"},"delivery_mode":"poll"}' "$1"
}

@test "start-up: port file holds the port, unknown paths are 404" {
	[[ "$(cat "$BATS_TEST_TMPDIR/port")" =~ ^[0-9]+$ ]]
	assert_eq "$(tail -c 1 "$BATS_TEST_TMPDIR/port" | od -An -c | tr -d ' ')" '\n'
	call GET /nope "$WS_TOKEN"
	assert_eq "$CODE" 404
	assert_eq "$BODY" '{"error":"not found"}'
	call GET "/registry/register" ""
	assert_eq "$CODE" 404
}

@test "register: first register hands out a token once, then the bearer must match" {
	new_ws '{"no_token": true}'
	assert_eq "$WS_TOKEN" null
	call POST /registry/register "" "$(register_body "$WS_ID")"
	assert_eq "$CODE" 200
	assert_eq "$(jq -r .status <<<"$BODY")" registered
	token=$(jq -r .auth_token <<<"$BODY")
	[[ "$token" =~ ^[A-Za-z0-9_-]{43}$ ]]

	call POST /registry/register "" "$(register_body "$WS_ID")"
	assert_eq "$CODE" 401
	assert_eq "$BODY" '{"error":"missing workspace auth token"}'
	call POST /registry/register "wrong" "$(register_body "$WS_ID")"
	assert_eq "$CODE" 401
	assert_eq "$BODY" '{"error":"invalid workspace auth token"}'
	call POST /registry/register "" "$(register_body "$WS_ID")" "Authorization: bearer $token"
	assert_eq "$CODE" 401
	call POST /registry/register "$token" "$(register_body "$WS_ID")"
	assert_eq "$CODE" 200
	assert_eq "$BODY" '{"status":"registered","delivery_mode":"poll"}'

	ws=$(ctl GET "/_control/workspaces/$WS_ID")
	assert_eq "$(jq -r .token <<<"$ws")" "$token"
	assert_eq "$(jq -c '[.registered, .delivery_mode, .agent_card.name]' <<<"$ws")" '[true,"poll","t"]'
}

@test "register: delivery_mode poll on every register, else push wanting a url; unknown workspaces are created" {
	call POST /registry/register "$WS_TOKEN" "$(register_body "$WS_ID")"
	assert_eq "$CODE" 200
	assert_eq "$BODY" '{"status":"registered","delivery_mode":"poll"}'
	for body in "{\"id\":\"$WS_ID\",\"agent_card\":{\"name\":\"x\"}}" \
		"{\"id\":\"$WS_ID\",\"agent_card\":{},\"delivery_mode\":null}" \
		"{\"id\":\"$WS_ID\",\"agent_card\":{},\"delivery_mode\":\"push\"}"; do
		call POST /registry/register "$WS_TOKEN" "$body"
		assert_eq "$CODE" 400 "$body"
		assert_eq "$BODY" '{"error":"url is required for push-mode workspaces"}' "$body"
	done
	call POST /registry/register "$WS_TOKEN" "{\"id\":\"$WS_ID\",\"agent_card\":{},\"delivery_mode\":\"pull\"}"
	assert_eq "$CODE" 400
	assert_eq "$BODY" "{\"error\":\"delivery_mode must be 'push' or 'poll'\"}"
	assert_eq "$(ctl GET "/_control/workspaces/$WS_ID" | jq -r .delivery_mode)" poll
	call POST /registry/register "$WS_TOKEN" "{\"id\":\"$WS_ID\",\"agent_card\":{},\"delivery_mode\":\"push\",\"url\":\"http://agent.example/a2a\"}"
	assert_eq "$BODY" '{"status":"registered","delivery_mode":"push"}'
	assert_eq "$(ctl GET "/_control/workspaces/$WS_ID" | jq -r .delivery_mode)" push

	id=0b9c1a52-3f4e-4d6a-9b7c-2e1f0a9d8c7b
	call POST /registry/register "" "$(register_body "$id")"
	assert_eq "$CODE" 200
	[ "$(jq -r '.auth_token | length' <<<"$BODY")" = 43 ]
	assert_eq "$(ctl GET "/_control/workspaces/$id" | jq -r .token)" "$(jq -r .auth_token <<<"$BODY")"
}

@test "register: bad bodies are 400 invalid request body" {
	for body in 'not json' '[]' '{"agent_card":{}}' "{\"id\":\"$WS_ID\"}" \
		"{\"id\":\"$WS_ID\",\"agent_card\":\"card\"}" "{\"id\":7,\"agent_card\":{}}" \
		"{\"id\":\"$WS_ID\",\"agent_card\":{},\"delivery_mode\":1}"; do
		call POST /registry/register "$WS_TOKEN" "$body"
		assert_eq "$CODE" 400 "$body"
		assert_eq "$BODY" '{"error":"invalid request body"}' "$body"
	done
	assert_eq "$(ctl GET "/_control/workspaces/$WS_ID" | jq .registered)" false
}

@test "heartbeat: types are checked, the body and time are recorded" {
	ok=(
		"{\"workspace_id\":\"$WS_ID\"}"
		"{\"workspace_id\":\"$WS_ID\",\"uptime_seconds\":3,\"active_tasks\":0,\"error_rate\":0.25,\"sample_error\":\"boom\",\"current_task\":\"x\",\"runtime_state\":\"\",\"is_busy\":true}"
		"{\"workspace_id\":\"$WS_ID\",\"error_rate\":0,\"is_busy\":false}"
	)
	bad=(
		"{\"workspace_id\":\"$WS_ID\",\"uptime_seconds\":1.5}"
		"{\"workspace_id\":\"$WS_ID\",\"uptime_seconds\":\"3\"}"
		"{\"workspace_id\":\"$WS_ID\",\"active_tasks\":null}"
		"{\"workspace_id\":\"$WS_ID\",\"error_rate\":1.5}"
		"{\"workspace_id\":\"$WS_ID\",\"error_rate\":-0.1}"
		"{\"workspace_id\":\"$WS_ID\",\"runtime_state\":5}"
		"{\"workspace_id\":\"$WS_ID\",\"current_task\":{}}"
		"{\"workspace_id\":\"$WS_ID\",\"is_busy\":\"yes\"}"
		"{\"workspace_id\":\"$WS_ID\",\"is_busy\":1}"
		'{"uptime_seconds":1}'
		'nope'
	)
	for body in "${ok[@]}"; do
		call POST /registry/heartbeat "$WS_TOKEN" "$body"
		assert_eq "$CODE" 200 "$body"
		assert_eq "$BODY" '{"status":"ok","generation":0}'
	done
	for body in "${bad[@]}"; do
		call POST /registry/heartbeat "$WS_TOKEN" "$body"
		assert_eq "$CODE" 400 "$body"
		assert_eq "$BODY" '{"error":"invalid request body"}' "$body"
	done
	call POST /registry/heartbeat "" "${ok[0]}"
	assert_eq "$CODE" 401
	new_peer >/dev/null
	call POST /registry/heartbeat "$PEER_TOKEN" "${ok[0]}"
	assert_eq "$CODE" 401
	assert_eq "$BODY" '{"error":"invalid workspace auth token"}'

	hb=$(posts heartbeat "$WS_ID")
	assert_eq "$(jq -c '[.[].status]' <<<"$hb")" '[200,200,200,400,400,400,400,400,400,400,400,400,401,401]'
	assert_eq "$(jq -c '.[1].body.runtime_state' <<<"$hb")" '""'
	ws=$(ctl GET "/_control/workspaces/$WS_ID")
	[ "$(jq '.last_heartbeat_ms' <<<"$ws")" -ge "$(jq '.[2].t_ms' <<<"$hb")" ]
	[ "$(jq '.last_heartbeat_ms' <<<"$ws")" -le "$(now_ms)" ]
	assert_eq "$(jq -c .last_heartbeat <<<"$ws")" "${ok[2]}"
}

@test "activity: auth is the path workspace's bearer token" {
	new_peer >/dev/null
	call GET "$(activity_url "$WS_ID")" ""
	assert_eq "$CODE" 401
	assert_eq "$BODY" '{"error":"missing workspace auth token"}'
	call GET "$(activity_url "$WS_ID")" "$PEER_TOKEN"
	assert_eq "$CODE" 401
	assert_eq "$BODY" '{"error":"invalid workspace auth token"}'
	call GET "$(activity_url 5d1e0c3b-0000-4000-8000-000000000000)" "$WS_TOKEN"
	assert_eq "$CODE" 401
	call GET "$(activity_url "$WS_ID")" "$WS_TOKEN"
	assert_eq "$CODE" 200
	assert_eq "$BODY" '[]'
}

@test "activity: rows have the platform's shape, ids are v4 uuids, seq and created_at increase" {
	new_peer >/dev/null
	queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"count\":3}" >/dev/null
	queue_msgs "$WS_ID" '{"no_body":true}' >/dev/null
	rows=$(activity "$WS_ID")
	assert_eq "$(jq -c '.[0] | keys_unsorted' <<<"$rows")" \
		'["id","seq","workspace_id","activity_type","source_id","target_id","method","summary","duration_ms","status","error_detail","created_at","request_body"]'
	assert_eq "$(jq -c '.[0] | [.workspace_id, .target_id, .activity_type, .source_id, .method, .summary, .duration_ms, .status, .error_detail]' <<<"$rows")" \
		"[\"$WS_ID\",\"$WS_ID\",\"a2a_receive\",\"$PEER_ID\",\"message/send\",null,null,\"ok\",null]"
	assert_eq "$(jq '.[3] | has("request_body"), has("response_body")' <<<"$rows" | tr -d '\n')" falsefalse
	assert_eq "$(jq '.[0] | has("response_body")' <<<"$rows")" false
	for id in $(jq -r '.[].id' <<<"$rows"); do
		[[ "$id" =~ $UUID_RE ]]
	done
	# Microseconds at most, trailing zeros trimmed.
	for t in $(jq -r '.[].created_at' <<<"$rows"); do
		[[ "$t" =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{0,5}[1-9])?Z$ ]]
	done
	assert_eq "$(jq '[.[].seq] | . == (sort | unique) and all(type == "number" and . > 0)' <<<"$rows")" true
	# The same rows through the platform API, newest first.
	call GET "$(activity_url "$WS_ID")" "$WS_TOKEN"
	assert_eq "$(jq -c 'reverse' <<<"$BODY")" "$(jq -c . <<<"$rows")"
}

@test "activity: since_id answers rows strictly after the cursor, oldest first, at most limit" {
	mapfile -t ids < <(queue_msgs "$WS_ID" '{"count":5,"text":"m{n}"}')
	call GET "$(activity_url "$WS_ID" "since_id=${ids[1]}")" "$WS_TOKEN"
	assert_eq "$CODE" 200
	assert_eq "$(jq -c '[.[].id]' <<<"$BODY")" "[\"${ids[2]}\",\"${ids[3]}\",\"${ids[4]}\"]"
	assert_eq "$(jq -c '[.[].request_body.params.message.parts[0].text]' <<<"$BODY")" '["m3","m4","m5"]'
	call GET "$(activity_url "$WS_ID" "since_id=${ids[0]}&limit=2")" "$WS_TOKEN"
	assert_eq "$(jq -c '[.[].id]' <<<"$BODY")" "[\"${ids[1]}\",\"${ids[2]}\"]"
	call GET "$(activity_url "$WS_ID" "since_id=${ids[4]}")" "$WS_TOKEN"
	assert_eq "$CODE" 200
	assert_eq "$BODY" '[]'
	call GET "/workspaces/$WS_ID/activity?type=a2a_send&since_id=${ids[0]}" "$WS_TOKEN"
	assert_eq "$BODY" '[]'
}

@test "activity: without since_id newest first; limit defaults to 100, caps at 500, junk is 100" {
	mapfile -t ids < <(queue_msgs "$WS_ID" '{"count":520}')
	call GET "$(activity_url "$WS_ID")" "$WS_TOKEN"
	assert_eq "$(jq -c '[length, .[0].id, .[99].id]' <<<"$BODY")" "[100,\"${ids[519]}\",\"${ids[420]}\"]"
	for q in limit=abc limit=0 limit=-3 limit=; do
		call GET "$(activity_url "$WS_ID" "$q")" "$WS_TOKEN"
		assert_eq "$CODE" 200 "$q"
		assert_eq "$(jq length <<<"$BODY")" 100 "$q"
	done
	call GET "$(activity_url "$WS_ID" limit=3)" "$WS_TOKEN"
	assert_eq "$(jq -c '[.[].id]' <<<"$BODY")" "[\"${ids[519]}\",\"${ids[518]}\",\"${ids[517]}\"]"
	call GET "$(activity_url "$WS_ID" limit=1000)" "$WS_TOKEN"
	assert_eq "$(jq length <<<"$BODY")" 500
	call GET "$(activity_url "$WS_ID" "since_id=${ids[0]}&limit=9999")" "$WS_TOKEN"
	assert_eq "$(jq -c '[length, .[0].id]' <<<"$BODY")" "[500,\"${ids[1]}\"]"
}

@test "activity: since_secs keeps recent rows; junk is 400; age_secs rows sort into place" {
	mapfile -t old < <(queue_msgs "$WS_ID" '{"count":2,"age_secs":100}')
	mapfile -t new < <(queue_msgs "$WS_ID" '{"count":1}')
	mapfile -t older < <(queue_msgs "$WS_ID" '{"count":1,"age_secs":1000}')
	call GET "$(activity_url "$WS_ID" since_secs=50)" "$WS_TOKEN"
	assert_eq "$(jq -c '[.[].id]' <<<"$BODY")" "[\"${new[0]}\"]"
	call GET "$(activity_url "$WS_ID" since_secs=200)" "$WS_TOKEN"
	assert_eq "$(jq -c '[.[].id]' <<<"$BODY")" "[\"${new[0]}\",\"${old[1]}\",\"${old[0]}\"]"
	call GET "$(activity_url "$WS_ID" since_secs=99999999)" "$WS_TOKEN"
	assert_eq "$(jq length <<<"$BODY")" 4
	# At most 30 days back, however many seconds are asked for.
	queue_msgs "$WS_ID" '{"age_secs":2592100}' >/dev/null
	call GET "$(activity_url "$WS_ID" since_secs=99999999)" "$WS_TOKEN"
	assert_eq "$(jq length <<<"$BODY")" 4
	call GET "$(activity_url "$WS_ID")" "$WS_TOKEN"
	assert_eq "$(jq length <<<"$BODY")" 5
	call GET "$(activity_url "$WS_ID" "since_id=${older[0]}")" "$WS_TOKEN"
	assert_eq "$(jq -c '[.[].id]' <<<"$BODY")" "[\"${old[0]}\",\"${old[1]}\",\"${new[0]}\"]"
	age=$(jq -r '.[0].created_at' <<<"$BODY")
	now=$(date -u +%s)
	then=$(date -u -d "${age%.*}Z" +%s)
	[ $((now - then)) -ge 99 ]
	[ $((now - then)) -le 102 ]
	# since_secs and since_id together: both apply.
	call GET "$(activity_url "$WS_ID" "since_id=${older[0]}&since_secs=50")" "$WS_TOKEN"
	assert_eq "$(jq -c '[.[].id]' <<<"$BODY")" "[\"${new[0]}\"]"
	for q in since_secs=abc since_secs=1.5 since_secs=-1 since_secs=0; do
		call GET "$(activity_url "$WS_ID" "$q")" "$WS_TOKEN"
		assert_eq "$CODE" 400 "$q"
		assert_eq "$BODY" '{"error":"since_secs must be a positive integer"}'
	done
}

@test "activity: 410 for a made-up, foreign or pruned cursor; 500 for one that is no UUID" {
	new_peer >/dev/null
	mapfile -t ids < <(queue_msgs "$WS_ID" '{"count":3}')
	foreign=$(queue_msgs "$PEER_ID" '{}')
	gone='{"error":"since_id cursor not found (row may have been pruned or belongs to a different workspace); omit since_id to reset"}'
	for cursor in 6f0e3a9c-1111-4222-8333-444455556666 "$foreign"; do
		call GET "$(activity_url "$WS_ID" "since_id=$cursor")" "$WS_TOKEN"
		assert_eq "$CODE" 410 "$cursor"
		assert_eq "$BODY" "$gone"
	done
	for cursor in junk 6F0E3A9C-1111-4222-8333-444455556666 "${ids[0]}x"; do
		call GET "$(activity_url "$WS_ID" "since_id=$cursor")" "$WS_TOKEN"
		assert_eq "$CODE" 500 "$cursor"
		assert_eq "$BODY" '{"error":"cursor lookup failed"}'
	done
	assert_eq "$(ctl POST /_control/prune "{\"workspace_id\":\"$WS_ID\",\"before_id\":\"${ids[0]}\"}")" '{"pruned":1}'
	call GET "$(activity_url "$WS_ID" "since_id=${ids[0]}")" "$WS_TOKEN"
	assert_eq "$CODE" 410
	call GET "$(activity_url "$WS_ID" "since_id=${ids[1]}")" "$WS_TOKEN"
	assert_eq "$CODE" 200
	assert_eq "$(jq -c '[.[].id]' <<<"$BODY")" "[\"${ids[2]}\"]"
}

@test "control messages: envelope, canvas metadata, context, kind vs type, verbatim parts and bodies" {
	new_peer >/dev/null
	queue_msgs "$WS_ID" '{"text":"hi {n}/{n}","context_id":"ctx","task_id":"tsk"}' >/dev/null
	queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"key\":\"type\",\"method\":\"message/stream\"}" >/dev/null
	queue_msgs "$WS_ID" '{"parts":[{"kind":"data","data":{"a":1}}]}' >/dev/null
	queue_msgs "$WS_ID" '{"request_body":{"weird":[1,2]}}' >/dev/null
	stranger=3c2b1a09-8f7e-4d6c-9b5a-0f1e2d3c4b5a
	queue_msgs "$WS_ID" "{\"from\":\"$stranger\",\"task_id\":\"tsk\"}" >/dev/null
	rows=$(activity "$WS_ID")

	# Random ids aside, each request_body is exactly what the platform stores: a canvas
	# turn has the person in params.metadata and no taskId.
	assert_eq "$(jq -c --arg re "$UUID_RE" '[.[0:2][].request_body | .id, .params.message.messageId | test($re)] | all' <<<"$rows")" true
	assert_eq "$(jq -c '.[0] | [.source_id, (.request_body | del(.id, .params.message.messageId))]' <<<"$rows")" \
		'[null,{"jsonrpc":"2.0","method":"message/send","params":{"message":{"role":"user","contextId":"ctx","parts":[{"kind":"text","text":"hi 1/1"}]},"metadata":{"source":"canvas_user","user_identity_status":"AUTHENTICATED","user_id":"canvas-user-1","email":"person@example.com"}}}]'
	assert_eq "$(jq -c '.[1] | [.source_id, .method, (.request_body | del(.id, .params.message.messageId))]' <<<"$rows")" \
		"[\"$PEER_ID\",\"message/stream\",{\"jsonrpc\":\"2.0\",\"method\":\"message/stream\",\"params\":{\"message\":{\"role\":\"user\",\"parts\":[{\"type\":\"text\",\"text\":\"hello\"}]}}}]"
	assert_eq "$(jq -c '[.[2].request_body.params.message.parts, .[3].request_body, .[4].source_id, .[4].request_body.params.message.taskId]' <<<"$rows")" \
		"[[{\"kind\":\"data\",\"data\":{\"a\":1}}],{\"weird\":[1,2]},\"$stranger\",\"tsk\"]"
	[[ "$(ctl GET "/_control/workspaces/$stranger" | jq -r .token)" =~ ^[A-Za-z0-9_-]{43}$ ]]

	run ctl POST /_control/messages '{"workspace_id":"00000000-0000-4000-8000-000000000000"}'
	[ "$status" -ne 0 ]
	run ctl POST /_control/messages '{"count":1}'
	[ "$status" -ne 0 ]
}

@test "notify: 200 sent, an echo row with method notify; message is required" {
	call POST "/workspaces/$WS_ID/notify" "$WS_TOKEN" '{"message":"done","attachments":[{"uri":"u","name":"n"}]}'
	assert_eq "$CODE" 200
	assert_eq "$BODY" '{"status":"sent"}'
	rows=$(activity "$WS_ID")
	assert_eq "$(jq -c '.[0] | [.method, .source_id, .request_body]' <<<"$rows")" \
		'["notify",null,{"message":"done","attachments":[{"uri":"u","name":"n"}]}]'
	for body in '{}' '{"message":""}' '{"message":7}' 'junk' '{"message":"m","attachments":{}}'; do
		call POST "/workspaces/$WS_ID/notify" "$WS_TOKEN" "$body"
		assert_eq "$CODE" 400 "$body"
		assert_eq "$BODY" '{"error":"message is required"}'
	done
	call POST "/workspaces/$WS_ID/notify" "" '{"message":"x"}'
	assert_eq "$CODE" 401
	p=$(posts notify "$WS_ID")
	assert_eq "$(jq -c '[.[].status]' <<<"$p")" '[200,400,400,400,400,400,401]'
	assert_eq "$(jq -c '.[0].body.attachments[0].name' <<<"$p")" '"n"'
	assert_eq "$(jq -c '.[4].body' <<<"$p")" '"junk"'
	assert_eq "$(activity "$WS_ID" | jq length)" 1
}

@test "a2a: the caller is the token's workspace, 404 unknown peer, the row lands in the peer's activity" {
	new_peer >/dev/null
	msg='{"jsonrpc":"2.0","id":"r1","method":"message/send","params":{"message":{"role":"agent","messageId":"m1","parts":[{"kind":"text","text":"yo"}],"contextId":"c"}}}'
	call POST "/workspaces/$PEER_ID/a2a" "" "$msg" "X-Workspace-ID: $WS_ID"
	assert_eq "$CODE" 401
	assert_eq "$BODY" '{"error":"missing workspace auth token"}'
	call POST "/workspaces/$PEER_ID/a2a" "not-a-token" "$msg" "X-Workspace-ID: $WS_ID"
	assert_eq "$CODE" 401
	assert_eq "$BODY" '{"error":"invalid workspace auth token"}'
	call POST "/workspaces/$PEER_ID/a2a" "$WS_TOKEN" '{"jsonrpc":' "X-Workspace-ID: $WS_ID"
	assert_eq "$CODE" 400
	assert_eq "$BODY" '{"error":"invalid JSON"}'
	call POST "/workspaces/7e6d5c4b-3a29-4817-8615-141312111009/a2a" "$WS_TOKEN" "$msg" "X-Workspace-ID: $WS_ID"
	assert_eq "$CODE" 404
	assert_eq "$BODY" '{"error":"workspace not found"}'
	assert_eq "$(activity "$PEER_ID")" '[]'

	call POST "/workspaces/$PEER_ID/a2a" "$WS_TOKEN" "$msg" "X-Workspace-ID: $WS_ID"
	assert_eq "$CODE" 200
	assert_eq "$BODY" '{"status":"queued","delivery_mode":"poll","method":"message/send"}'
	# Without X-Workspace-ID the caller is still the token's workspace.
	call POST "/workspaces/$PEER_ID/a2a" "$WS_TOKEN" "${msg/\"m1\"/\"m2\"}"
	assert_eq "$CODE" 200
	rows=$(activity "$PEER_ID")
	assert_eq "$(jq length <<<"$rows")" 2
	assert_eq "$(jq -c '[.[] | [.source_id, .target_id, .method]]' <<<"$rows")" \
		"[[\"$WS_ID\",\"$PEER_ID\",\"message/send\"],[\"$WS_ID\",\"$PEER_ID\",\"message/send\"]]"
	assert_eq "$(jq -c '.[0].request_body' <<<"$rows")" "$msg"
	assert_eq "$(activity "$WS_ID")" '[]'

	p=$(posts a2a "$WS_ID")
	assert_eq "$(jq -c '[.[].status]' <<<"$p")" '[401,401,400,404,200,200]'
	assert_eq "$(jq -r '.[4].headers["x-workspace-id"]' <<<"$p")" "$WS_ID"
	assert_eq "$(jq -r '.[4].headers.authorization' <<<"$p")" "Bearer $WS_TOKEN"
	assert_eq "$(jq -r '.[4].headers["content-type"]' <<<"$p")" application/json
	assert_eq "$(jq -r '.[4].path' <<<"$p")" "/workspaces/$PEER_ID/a2a"
	assert_eq "$(jq -c '.[4].body' <<<"$p")" "$msg"
	assert_eq "$(jq -r '.[5].headers | has("x-workspace-id")' <<<"$p")" false
	assert_eq "$(posts a2a | jq length)" 6
}

@test "bodies over 1 MiB fail with 400 invalid request body" {
	# {"message":"xxx...x"} of exactly 1048576 bytes passes; one byte more fails.
	fill=$((1048576 - 14))
	{ printf '{"message":"'; head -c "$fill" /dev/zero | tr '\0' x; printf '"}'; } >"$BATS_TEST_TMPDIR/max.json"
	sed 's/}$/ }/' "$BATS_TEST_TMPDIR/max.json" >"$BATS_TEST_TMPDIR/over.json"
	assert_eq "$(stat -c %s "$BATS_TEST_TMPDIR/max.json")" 1048576
	api_call POST "/workspaces/$WS_ID/notify" "$WS_TOKEN" "@$BATS_TEST_TMPDIR/max.json"
	assert_eq "$CODE" 200
	api_call POST "/workspaces/$WS_ID/notify" "$WS_TOKEN" "@$BATS_TEST_TMPDIR/over.json"
	assert_eq "$CODE" 400
	assert_eq "$BODY" '{"error":"invalid request body"}'
	# The failed body is kept truncated to the cap, as a string since it no longer parses.
	assert_eq "$(posts notify | jq -c '[.[].status, (.[1].body | type, length)]')" '[200,400,"string",1048576]'
	assert_eq "$(activity "$WS_ID" | jq -c '[length, (.[0].request_body.message | length)]')" "[1,$fill]"
}

@test "org id: every path but register, heartbeat and health needs X-Molecule-Org-Id: missing 400, wrong a bare 404" {
	fake_stop
	fake_start --org-id org-7
	new_ws >/dev/null
	missing='{"error":"missing tenant routing header","code":"TENANT_ORG_HEADER_REQUIRED","required_header":"X-Molecule-Org-Id"}'
	call GET "$(activity_url "$WS_ID")" "$WS_TOKEN" ""
	assert_eq "$CODE" 400
	assert_eq "$BODY" "$missing"
	call GET "$(activity_url "$WS_ID")" "$WS_TOKEN" "" 'X-Molecule-Org-Id: org-8'
	assert_eq "$CODE" 404
	assert_eq "$BODY" ''
	assert_eq "$(hdr Content-Length)" 0
	assert_eq "$(hdr Content-Type)" ''
	call GET "$(activity_url "$WS_ID")" "$WS_TOKEN" "" 'X-Molecule-Org-Id: org-7'
	assert_eq "$CODE" 200
	assert_eq "$BODY" '[]'
	call POST "/workspaces/$WS_ID/notify" "$WS_TOKEN" '{"message":"m"}'
	assert_eq "$CODE" 400
	assert_eq "$BODY" "$missing"
	call GET /elsewhere "$WS_TOKEN"
	assert_eq "$CODE" 400
	call GET "/workspaces/$WS_ID" ""
	assert_eq "$CODE" 400
	call POST /registry/register "$WS_TOKEN" "$(register_body "$WS_ID")"
	assert_eq "$CODE" 200
	call POST /registry/heartbeat "$WS_TOKEN" "{\"workspace_id\":\"$WS_ID\"}"
	assert_eq "$CODE" 200
	call GET /health ""
	assert_eq "$CODE" 200
	assert_eq "$BODY" '{"status":"ok"}'
	assert_eq "$(posts notify | jq -c '[.[].status]')" '[400]'
}

@test "rate limit: a fixed window; X-RateLimit-* on every answer, then 429 with Retry-After to the window's end" {
	fake_stop
	fake_start --rate-limit 5
	new_ws >/dev/null
	for i in 1 2 3 4 5; do
		call GET "$(activity_url "$WS_ID")" "$WS_TOKEN" ""
		assert_eq "$CODE" 200
		assert_eq "$(hdr X-RateLimit-Limit)" 5
		assert_eq "$(hdr X-RateLimit-Remaining)" $((5 - i))
		reset=$(hdr X-RateLimit-Reset)
		[ "$reset" -ge 50 ] && [ "$reset" -le 60 ]
	done
	call POST /registry/heartbeat "$WS_TOKEN" "{\"workspace_id\":\"$WS_ID\"}"
	assert_eq "$CODE" 429
	retry=$(hdr Retry-After)
	[ "$retry" -ge 50 ] && [ "$retry" -le 60 ]
	assert_eq "$BODY" "{\"error\":\"rate limit exceeded\",\"retry_after\":$retry}"
	assert_eq "$(hdr X-RateLimit-Remaining)" 0
	call GET /nowhere "$WS_TOKEN" ""
	assert_eq "$CODE" 429
	# The control API is neither limited nor labelled.
	fake_http GET /_control/requests
	assert_eq "$(hdr X-RateLimit-Limit)" ''
	assert_eq "$(posts heartbeat | jq -c '[.[].status]')" '[429]'
	assert_eq "$(ctl GET /_control/requests | jq -c '[.[].status]')" '[200,200,200,200,200,429,429]'
}

@test "rate limit 0 is off: no headers, no 429; --log writes one line a request" {
	fake_stop
	fake_start --rate-limit 0 --log "$BATS_TEST_TMPDIR/requests.log"
	new_ws >/dev/null
	for i in $(seq 12); do
		call GET "$(activity_url "$WS_ID")" "$WS_TOKEN"
		assert_eq "$CODE" 200
	done
	assert_eq "$(hdr X-RateLimit-Limit)" ''
	mapfile -t log <"$BATS_TEST_TMPDIR/requests.log"
	assert_eq "${#log[@]}" 12
	[[ "${log[11]}" =~ ^[0-9]{13}\ GET\ /workspaces/$WS_ID/activity\?type=a2a_receive\ 200$ ]]
}

@test "faults: fail_next answers status, body and Retry-After N times, and is recorded" {
	fault '{"endpoint":"heartbeat","status":503,"fail_next":2,"retry_after":3,"body":{"error":"platform datastore unavailable — retry shortly","code":"platform_unavailable"}}'
	hb="{\"workspace_id\":\"$WS_ID\"}"
	call POST /registry/heartbeat "$WS_TOKEN" "$hb"
	assert_eq "$CODE" 503
	assert_eq "$(hdr Retry-After)" 3
	assert_eq "$(jq -r .code <<<"$BODY")" platform_unavailable
	call GET "$(activity_url "$WS_ID")" "$WS_TOKEN"
	assert_eq "$CODE" 200
	call POST /registry/heartbeat "$WS_TOKEN" "$hb"
	assert_eq "$CODE" 503
	call POST /registry/heartbeat "$WS_TOKEN" "$hb"
	assert_eq "$CODE" 200
	assert_eq "$(hdr Retry-After)" ''
	assert_eq "$(posts heartbeat | jq -c '[.[].status]')" '[503,503,200]'
	assert_eq "$(ctl GET "/_control/workspaces/$WS_ID" | jq -c '.last_heartbeat_ms > 0')" true

	fault '{"endpoint":"*","status":500}'
	call GET "$(activity_url "$WS_ID")" "$WS_TOKEN"
	assert_eq "$CODE" 500
	assert_eq "$BODY" '{"error":"injected"}'
	call POST "/workspaces/$WS_ID/notify" "$WS_TOKEN" '{"message":"x"}'
	assert_eq "$CODE" 500
	assert_eq "$(activity "$WS_ID")" '[]'
	ctl DELETE /_control/faults >/dev/null
	call GET "$(activity_url "$WS_ID")" "$WS_TOKEN"
	assert_eq "$CODE" 200
}

@test "faults: fail_ratio 0 never hits, 1 always; a string body is answered verbatim" {
	fault '{"endpoint":"activity","fail_ratio":0}'
	call GET "$(activity_url "$WS_ID")" "$WS_TOKEN"
	assert_eq "$CODE" 200
	ctl DELETE /_control/faults >/dev/null
	fault '{"endpoint":"activity","fail_ratio":1,"status":502,"body":"<html>bad gateway</html>"}'
	for i in 1 2 3; do
		call GET "$(activity_url "$WS_ID")" "$WS_TOKEN"
		assert_eq "$CODE" 502
		assert_eq "$BODY" '<html>bad gateway</html>'
	done
	for bad in '{"endpoint":"bogus"}' '{"status":500}' '{"endpoint":"*","every_429":0.5}' \
		'{"endpoint":"*","fail_ratio":2}' '{"endpoint":"*","fail_next":-1}' '{"endpoint":"*","raw":{}}'; do
		run ctl POST /_control/faults "$bad"
		assert_eq "$status" 1 "$bad"
		assert_eq "$output" '{"error":"invalid fault"}' "$bad"
	done
	ctl DELETE /_control/faults >/dev/null
	fault '{"endpoint":"activity","fail_next":0}'
	call GET "$(activity_url "$WS_ID")" "$WS_TOKEN"
	assert_eq "$CODE" 200
}

@test "faults: reset_next closes the connection without an answer" {
	fault '{"endpoint":"notify","reset_next":1}'
	run curl -sS -X POST -H "Authorization: Bearer $WS_TOKEN" --data-binary '{"message":"x"}' \
		"$FAKE_URL/workspaces/$WS_ID/notify"
	[ "$status" -eq 52 ] || [ "$status" -eq 56 ]
	call POST "/workspaces/$WS_ID/notify" "$WS_TOKEN" '{"message":"x"}'
	assert_eq "$CODE" 200
	assert_eq "$(posts notify | jq -c '[.[].status]')" '[0,200]'
	assert_eq "$(ctl GET /_control/requests | jq -c '[.[].status]')" '[0,200]'
}

@test "faults: delay_ms holds one answer while other connections are served" {
	fault '{"endpoint":"activity","delay_ms":600}'
	start=$(now_ms)
	curl -sS -o "$BATS_TEST_TMPDIR/slow" -H "Authorization: Bearer $WS_TOKEN" \
		"$FAKE_URL$(activity_url "$WS_ID")" &
	slow=$!
	wait_until 5 logged_requests 1
	call POST /registry/heartbeat "$WS_TOKEN" "{\"workspace_id\":\"$WS_ID\"}"
	assert_eq "$CODE" 200
	kill -0 "$slow"
	wait "$slow"
	[ $(($(now_ms) - start)) -ge 600 ]
	assert_eq "$(cat "$BATS_TEST_TMPDIR/slow")" '[]'
	assert_eq "$(ctl GET /_control/requests | jq -c '[.[] | [.method, .status]]')" '[["GET",200],["POST",200]]'
}

@test "faults: every_429 answers every Nth request with 429 and Retry-After" {
	fault '{"endpoint":"activity","every_429":3,"retry_after":2}'
	codes=()
	for i in 1 2 3 4 5 6; do
		call GET "$(activity_url "$WS_ID")" "$WS_TOKEN" ""
		codes+=("$CODE")
		if [ "$CODE" = 429 ]; then
			assert_eq "$(hdr Retry-After)" 2
			assert_eq "$BODY" '{"error":"rate limit exceeded","retry_after":2}'
		fi
	done
	assert_eq "${codes[*]}" '200 200 429 200 200 429'
}

@test "faults: raw answers exactly that body with 200" {
	fault '{"endpoint":"activity","raw":"[{\"id\":1,\"created_at\":null}, trailing","fail_next":1}'
	call GET "$(activity_url "$WS_ID")" "$WS_TOKEN" ""
	assert_eq "$CODE" 200
	assert_eq "$BODY" '[{"id":1,"created_at":null}, trailing'
	assert_eq "$(hdr Content-Type)" application/json
	call GET "$(activity_url "$WS_ID")" "$WS_TOKEN"
	assert_eq "$BODY" '[]'
}

@test "control: posts filter by kind and workspace, keep arrival order and raw bodies; DELETE clears" {
	new_peer >/dev/null
	t0=$(now_ms)
	call POST /registry/register "$WS_TOKEN" "$(register_body "$WS_ID")"
	call POST /registry/heartbeat "$PEER_TOKEN" "{\"workspace_id\":\"$PEER_ID\"}"
	call POST /registry/heartbeat "$WS_TOKEN" 'not json'
	call POST "/workspaces/$WS_ID/notify" "$WS_TOKEN" '{"message":"n"}'
	call GET "$(activity_url "$WS_ID")" "$WS_TOKEN"
	all=$(posts)
	assert_eq "$(jq -c '[.[].kind]' <<<"$all")" '["register","heartbeat","heartbeat","notify"]'
	assert_eq "$(jq -c '[.[].seq] | . == sort' <<<"$all")" true
	assert_eq "$(jq -c '.[0] | keys_unsorted' <<<"$all")" '["seq","kind","path","t_ms","status","headers","body"]'
	[ "$(jq '.[0].t_ms' <<<"$all")" -ge "$t0" ]
	[ "$(jq '.[3].t_ms' <<<"$all")" -le "$(now_ms)" ]
	assert_eq "$(jq -c '.[2] | [.status, .body]' <<<"$all")" '[400,"not json"]'
	assert_eq "$(posts heartbeat "$PEER_ID" | jq -c '[.[].body.workspace_id]')" "[\"$PEER_ID\"]"
	assert_eq "$(posts register "$WS_ID" | jq -r '.[0].body.agent_card.name')" t
	assert_eq "$(posts "" "$WS_ID" | jq -c '[.[].kind]')" '["register","notify"]'
	run ctl GET '/_control/posts?kind=activity'
	[ "$status" -ne 0 ]
	assert_eq "$(ctl DELETE /_control/posts)" '{"ok":true}'
	assert_eq "$(posts)" '[]'
}

@test "control: requests logs every platform request with method, path and query, status" {
	call GET "$(activity_url "$WS_ID" limit=2)" "$WS_TOKEN"
	call GET "$(activity_url "$WS_ID")" ""
	call POST /nope "" '{}'
	ctl GET /_control/posts >/dev/null
	r=$(ctl GET /_control/requests)
	assert_eq "$(jq -c '[.[] | [.method, .path, .status]]' <<<"$r")" \
		"[[\"GET\",\"/workspaces/$WS_ID/activity?type=a2a_receive&limit=2\",200],[\"GET\",\"/workspaces/$WS_ID/activity?type=a2a_receive\",401],[\"POST\",\"/nope\",404]]"
	assert_eq "$(jq -c '[.[].seq] | . == sort' <<<"$r")" true
	assert_eq "$(jq -c '[.[].t_ms] | . == sort' <<<"$r")" true
	ctl DELETE /_control/requests >/dev/null
	assert_eq "$(ctl GET /_control/requests)" '[]'
}

@test "control: prune by ids, before_id and all" {
	mapfile -t ids < <(queue_msgs "$WS_ID" '{"count":6}')
	assert_eq "$(ctl POST /_control/prune "{\"workspace_id\":\"$WS_ID\",\"ids\":[\"${ids[4]}\",\"nope\"]}")" '{"pruned":1}'
	assert_eq "$(ctl POST /_control/prune "{\"workspace_id\":\"$WS_ID\",\"before_id\":\"${ids[1]}\"}")" '{"pruned":2}'
	assert_eq "$(activity "$WS_ID" | jq -c '[.[].id]')" "[\"${ids[2]}\",\"${ids[3]}\",\"${ids[5]}\"]"
	assert_eq "$(ctl POST /_control/prune "{\"workspace_id\":\"$WS_ID\",\"all\":true}")" '{"pruned":3}'
	assert_eq "$(activity "$WS_ID")" '[]'
}

@test "control: workspaces with a given token, without one, and their details" {
	id=1a2b3c4d-5e6f-4a0b-8c1d-2e3f4a5b6c7d
	assert_eq "$(ctl POST /_control/workspaces "{\"id\":\"$id\",\"token\":\"secret\"}")" "{\"id\":\"$id\",\"token\":\"secret\"}"
	ws=$(ctl GET "/_control/workspaces/$id")
	assert_eq "$ws" "{\"id\":\"$id\",\"token\":\"secret\",\"name\":null,\"role\":null,\"delivery_mode\":null,\"registered\":false,\"status\":\"awaiting_agent\",\"removed_at\":null,\"talk_to_user\":true,\"agent_card\":null,\"last_heartbeat_ms\":null,\"last_heartbeat\":null,\"last_acked_seq\":null,\"event_streams\":0,\"rows\":0}"
	[[ "$WS_ID" =~ $UUID_RE ]]
	[[ "$WS_TOKEN" =~ ^[A-Za-z0-9_-]{43}$ ]]
	read -r id2 tok2 < <(new_ws '{"no_token":true}')
	assert_eq "$tok2" null
	[[ "$id2" =~ $UUID_RE ]]
	run ctl GET /_control/workspaces/0f0f0f0f-0000-4000-8000-000000000000
	[ "$status" -ne 0 ]
	# The same call changes a workspace that exists; its token stays.
	ctl POST /_control/workspaces "{\"id\":\"$id\",\"name\":\"Ada\",\"role\":\"researcher\",\"talk_to_user\":false}" >/dev/null
	assert_eq "$(ctl GET "/_control/workspaces/$id" | jq -c '[.token, .name, .role, .talk_to_user]')" '["secret","Ada","researcher",false]'
	for bad in '{"name":7}' '{"delivery_mode":"pull"}' '{"push_answer":"later"}' '{"push_delay_ms":-1}' '{"talk_to_user":"no"}'; do
		run ctl POST /_control/workspaces "$bad"
		[ "$status" -ne 0 ]
		assert_eq "$output" '{"error":"invalid workspace settings"}' "$bad"
	done
}

@test "fake_restart: same port, fresh state" {
	port=$FAKE_PORT
	fake_restart
	assert_eq "$FAKE_PORT" "$port"
	run ctl GET "/_control/workspaces/$WS_ID"
	[ "$status" -ne 0 ]
	assert_eq "$(ctl GET /_control/requests)" '[]'
}

@test "shutdown: POST /_control/shutdown and SIGTERM both exit 0" {
	assert_eq "$(ctl POST /_control/shutdown)" '{"ok":true}'
	wait_until 5 sh -c "! kill -0 $FAKE_PID 2>/dev/null"
	wait "$FAKE_PID"
	unset FAKE_PID
	fake_start
	kill -TERM "$FAKE_PID"
	wait "$FAKE_PID"
	unset FAKE_PID
}

@test "faults: raw_base64 answers exactly those bytes; bad base64 and two answers are refused" {
	fault "{\"endpoint\":\"activity\",\"raw_base64\":\"$(printf '[\x00\xff"\xc0\xaf"]' | base64 -w0)\",\"fail_next\":1}"
	curl -sS -o "$BATS_TEST_TMPDIR/bytes" -D "$BATS_TEST_TMPDIR/headers" \
		-H "Authorization: Bearer $WS_TOKEN" "$FAKE_URL$(activity_url "$WS_ID")"
	printf '[\x00\xff"\xc0\xaf"]' | cmp - "$BATS_TEST_TMPDIR/bytes"
	grep -q '^HTTP/1.1 200 ' "$BATS_TEST_TMPDIR/headers"
	call GET "$(activity_url "$WS_ID")" "$WS_TOKEN"
	assert_eq "$BODY" '[]'
	for bad in '{"endpoint":"*","raw_base64":"@@@@"}' '{"endpoint":"*","raw_base64":1}' \
		'{"endpoint":"*","raw":"x","raw_base64":"eA=="}' '{"endpoint":"*","raw":"x","redirect":"http://x/"}' \
		'{"endpoint":"*","body_bytes":3}' '{"endpoint":"*","body_bytes":10,"chunked":1}' \
		'{"endpoint":"*","redirect":""}' '{"endpoint":"*","dribble_ms":-1}'; do
		run ctl POST /_control/faults "$bad"
		assert_eq "$status" 1 "$bad"
		assert_eq "$output" '{"error":"invalid fault"}' "$bad"
	done
}

@test "faults: body_bytes makes up a JSON array of that size, with Content-Length or chunked, never held whole" {
	local hwm
	fault '{"endpoint":"activity","body_bytes":1000,"fail_next":1}'
	curl -sS -o "$BATS_TEST_TMPDIR/body" -D "$BATS_TEST_TMPDIR/headers" \
		-H "Authorization: Bearer $WS_TOKEN" "$FAKE_URL$(activity_url "$WS_ID")"
	assert_eq "$(wc -c <"$BATS_TEST_TMPDIR/body")" 1000
	assert_eq "$(jq -c 'map(length)' "$BATS_TEST_TMPDIR/body")" '[996]'
	grep -qi '^content-length: 1000' "$BATS_TEST_TMPDIR/headers"
	fault '{"endpoint":"activity","body_bytes":10,"chunked":true,"fail_next":1}'
	curl -sS -o "$BATS_TEST_TMPDIR/body" -D "$BATS_TEST_TMPDIR/headers" \
		-H "Authorization: Bearer $WS_TOKEN" "$FAKE_URL$(activity_url "$WS_ID")"
	assert_eq "$(cat "$BATS_TEST_TMPDIR/body")" '["aaaaaa"]'
	grep -qi '^transfer-encoding: chunked' "$BATS_TEST_TMPDIR/headers"
	! grep -qi '^content-length' "$BATS_TEST_TMPDIR/headers"
	# 200 MiB go out while the fake platform stays small.
	fault '{"endpoint":"activity","body_bytes":209715200,"fail_next":1}'
	assert_eq "$(curl -sS -H "Authorization: Bearer $WS_TOKEN" "$FAKE_URL$(activity_url "$WS_ID")" | wc -c)" 209715200
	hwm=$(awk '/^VmHWM:/ { print $2 }' "/proc/$FAKE_PID/status")
	[ "$hwm" -lt $((100 * 1024)) ] || { echo "fake platform peak RSS: $hwm kB"; return 1; }
	assert_eq "$(ctl GET /_control/requests | jq -c '[.[].status]')" '[200,200,200]'
	call GET "$(activity_url "$WS_ID")" "$WS_TOKEN"
	assert_eq "$BODY" '[]'
}

@test "faults: dribble_ms sends the answer's body one byte every N ms, after the headers" {
	local times start
	fault '{"endpoint":"activity","raw":"abcdef","dribble_ms":100,"fail_next":1}'
	times=$(curl -sS -o "$BATS_TEST_TMPDIR/body" -w '%{time_starttransfer} %{time_total}' \
		-H "Authorization: Bearer $WS_TOKEN" "$FAKE_URL$(activity_url "$WS_ID")")
	assert_eq "$(cat "$BATS_TEST_TMPDIR/body")" abcdef
	# The headers at once, the six bytes 100 ms apart.
	awk -v t="$times" 'BEGIN { split(t, a, " "); exit !(a[1] < 0.35 && a[2] >= 0.55) }' ||
		{ echo "first byte, total (s): $times"; return 1; }
	# Alone, it dribbles the real answer.
	queue_msgs "$WS_ID" '{"text":"slow"}' >/dev/null
	fault '{"endpoint":"activity","dribble_ms":2,"next":1}'
	times=$(curl -sS -o "$BATS_TEST_TMPDIR/body" -w '%{time_total}' \
		-H "Authorization: Bearer $WS_TOKEN" "$FAKE_URL$(activity_url "$WS_ID")")
	assert_eq "$(jq -r '.[0].request_body.params.message.parts[0].text' "$BATS_TEST_TMPDIR/body")" slow
	awk -v t="$times" -v n="$(wc -c <"$BATS_TEST_TMPDIR/body")" 'BEGIN { exit !(t >= n * 0.0018) }' ||
		{ echo "total $times s for $(wc -c <"$BATS_TEST_TMPDIR/body") bytes"; return 1; }
	start=$(now_ms)
	call GET "$(activity_url "$WS_ID")" "$WS_TOKEN"
	assert_eq "$CODE" 200
	[ $(($(now_ms) - start)) -lt 1000 ]
}

@test "faults: redirect answers 302 with Location and no body; status and body can be given" {
	fault '{"endpoint":"heartbeat","redirect":"http://127.0.0.1:1/elsewhere","fail_next":1}'
	api_call POST /registry/heartbeat "$WS_TOKEN" "{\"workspace_id\":\"$WS_ID\"}" -D "$BATS_TEST_TMPDIR/headers"
	assert_eq "$CODE" 302
	assert_eq "$BODY" ''
	grep -q '^Location: http://127.0.0.1:1/elsewhere' "$BATS_TEST_TMPDIR/headers"
	! grep -qi '^content-type' "$BATS_TEST_TMPDIR/headers"
	fault '{"endpoint":"a2a","redirect":"/moved","status":308,"body":"<html>moved</html>","fail_next":1}'
	call POST "/workspaces/$WS_ID/a2a" "$WS_TOKEN" '{}' "X-Workspace-ID: $WS_ID"
	assert_eq "$CODE" 308
	assert_eq "$BODY" '<html>moved</html>'
	assert_eq "$(hdr Location)" /moved
	assert_eq "$(posts | jq -c '[.[] | [.kind, .status]]')" '[["heartbeat",302],["a2a",308]]'
	call POST /registry/heartbeat "$WS_TOKEN" "{\"workspace_id\":\"$WS_ID\"}"
	assert_eq "$CODE" 200
	assert_eq "$(hdr Location)" ''
}

# ---- identity and tenancy ----

@test "X-Workspace-ID is optional; when sent it must be the token's workspace, on every authenticated path" {
	new_peer >/dev/null
	mismatch='{"error":"caller ID does not match workspace auth token"}'
	hb="{\"workspace_id\":\"$WS_ID\"}"
	call POST /registry/register "$WS_TOKEN" "$(register_body "$WS_ID")" "X-Workspace-ID: $PEER_ID"
	assert_eq "$CODE $BODY" "401 $mismatch"
	call POST /registry/heartbeat "$WS_TOKEN" "$hb" "X-Workspace-ID: $PEER_ID"
	assert_eq "$CODE $BODY" "401 $mismatch"
	call GET "$(activity_url "$WS_ID")" "$WS_TOKEN" "" "X-Workspace-ID: $PEER_ID"
	assert_eq "$CODE $BODY" "401 $mismatch"
	call POST "/workspaces/$WS_ID/notify" "$WS_TOKEN" '{"message":"m"}' "X-Workspace-ID: $PEER_ID"
	assert_eq "$CODE $BODY" "401 $mismatch"
	call POST "/workspaces/$WS_ID/activity/ack" "$WS_TOKEN" '{"acked_seq":0}' "X-Workspace-ID: $PEER_ID"
	assert_eq "$CODE $BODY" "401 $mismatch"
	call POST "/workspaces/$PEER_ID/a2a" "$WS_TOKEN" '{"params":{"message":{"parts":[{"kind":"text","text":"x"}]}}}' "X-Workspace-ID: $PEER_ID"
	assert_eq "$CODE $BODY" "401 $mismatch"
	assert_eq "$(activity "$WS_ID") $(activity "$PEER_ID")" '[] []'
	# Without the header, or with the own id, all of them pass.
	for h in "" "X-Workspace-ID: $WS_ID"; do
		call POST /registry/heartbeat "$WS_TOKEN" "$hb" ${h:+"$h"}
		assert_eq "$CODE" 200 "heartbeat $h"
		call GET "$(activity_url "$WS_ID")" "$WS_TOKEN" "" ${h:+"$h"}
		assert_eq "$CODE" 200 "activity $h"
	done
}

@test "org id: --missing-org-404 answers a missing header like a wrong one" {
	fake_stop
	fake_start --org-id org-7 --missing-org-404
	new_ws >/dev/null
	call GET "$(activity_url "$WS_ID")" "$WS_TOKEN" ""
	assert_eq "$CODE" 404
	assert_eq "$BODY" ''
	call GET "$(activity_url "$WS_ID")" "$WS_TOKEN" "" 'X-Molecule-Org-Id: org-7'
	assert_eq "$CODE" 200
}

@test "org id: the event stream needs the header too" {
	fake_stop
	fake_start --org-id org-7
	new_ws >/dev/null
	call GET "/workspaces/$WS_ID/events/stream" "$WS_TOKEN"
	assert_eq "$CODE" 400
	assert_eq "$(jq -r .code <<<"$BODY")" TENANT_ORG_HEADER_REQUIRED
	sse_open "$WS_ID" "$WS_TOKEN" "$BATS_TEST_TMPDIR/sse" -H 'X-Molecule-Org-Id: org-7'
	kill_pids "$SSE_PID"
}

# ---- the rate limit ----

@test "rate limit: keyed by the org header, else the token, else the address; an org shares one budget" {
	fake_stop
	fake_start --rate-limit 2
	new_ws >/dev/null
	new_peer >/dev/null
	org='X-Molecule-Org-Id: org-1'
	# Two workspaces of one org: one budget of 2 between them.
	call GET "$(activity_url "$WS_ID")" "$WS_TOKEN" "" "$org"
	assert_eq "$CODE" 200
	call GET "$(activity_url "$PEER_ID")" "$PEER_TOKEN" "" "$org"
	assert_eq "$CODE $(hdr X-RateLimit-Remaining)" "200 0"
	call GET "$(activity_url "$PEER_ID")" "$PEER_TOKEN" "" "$org"
	assert_eq "$CODE" 429
	# Another org, and the tokens on their own, have budgets of their own.
	call GET "$(activity_url "$PEER_ID")" "$PEER_TOKEN" "" 'X-Molecule-Org-Id: org-2'
	assert_eq "$CODE $(hdr X-RateLimit-Remaining)" "200 1"
	call GET "$(activity_url "$WS_ID")" "$WS_TOKEN"
	assert_eq "$CODE $(hdr X-RateLimit-Remaining)" "200 1"
	call GET "$(activity_url "$WS_ID")" "$WS_TOKEN"
	assert_eq "$CODE" 200
	call GET "$(activity_url "$WS_ID")" "$WS_TOKEN"
	assert_eq "$CODE" 429
	call GET "$(activity_url "$PEER_ID")" "$PEER_TOKEN"
	assert_eq "$CODE" 200
	# No token and no org: the client address (both of these come from 127.0.0.1).
	call GET /health ""
	assert_eq "$CODE $(hdr X-RateLimit-Remaining)" "200 1"
	call GET /nowhere ""
	assert_eq "$CODE" 404
	call GET /health ""
	assert_eq "$CODE" 429
}

@test "rate limit: Retry-After is the whole seconds left in the window, 0 in its last second" {
	fake_stop
	fake_start --rate-limit 1 --rate-window-ms 900
	new_ws >/dev/null
	# Two requests in one window (tried again should a slow machine split them).
	limited() {
		call GET "$(activity_url "$WS_ID")" "$WS_TOKEN"
		[ "$CODE" = 429 ] || [ "$(hdr X-RateLimit-Reset)" = 0 ] || return 1
		call GET "$(activity_url "$WS_ID")" "$WS_TOKEN"
		[ "$CODE" = 429 ] && echo "$(hdr Retry-After) $(hdr X-RateLimit-Reset) $BODY"
	}
	assert_eq "$(wait_until 10 limited)" '0 0 {"error":"rate limit exceeded","retry_after":0}'
	# The next window has the whole budget again.
	wait_until 5 eval 'call GET "$(activity_url "$WS_ID")" "$WS_TOKEN"; [ "$CODE" = 200 ]'
}

@test "rate limit unlimited: X-RateLimit-Limit: unlimited and no other rate header, never 429" {
	fake_stop
	fake_start --rate-limit unlimited
	new_ws >/dev/null
	for i in 1 2 3; do
		call GET "$(activity_url "$WS_ID")" "$WS_TOKEN"
		assert_eq "$CODE" 200
	done
	assert_eq "$(hdr X-RateLimit-Limit)" unlimited
	assert_eq "$(hdr X-RateLimit-Remaining)$(hdr X-RateLimit-Reset)$(hdr Retry-After)" ''
}

@test "faults: a 503 without a body is the platform's platform_unavailable; workspace_id narrows a fault" {
	new_peer >/dev/null
	fault "{\"endpoint\":\"a2a\",\"workspace_id\":\"$PEER_ID\",\"fail_next\":1}"
	msg='{"params":{"message":{"parts":[{"kind":"text","text":"x"}]}}}'
	call POST "/workspaces/$WS_ID/a2a" "$PEER_TOKEN" "$msg"
	assert_eq "$CODE" 200
	call POST "/workspaces/$PEER_ID/a2a" "$WS_TOKEN" "$msg"
	assert_eq "$CODE" 503
	assert_eq "$(jq -c '[.code, (.error | length > 0)]' <<<"$BODY")" '["platform_unavailable",true]'
	call POST "/workspaces/$PEER_ID/a2a" "$WS_TOKEN" "$msg"
	assert_eq "$CODE" 200
	# The answers of a push-mode peer's trouble, one each.
	for spec in '"status":503,"retry_after":7' '"status":503' '"status":502' '"status":402' '"status":403'; do
		fault "{\"endpoint\":\"a2a\",\"workspace_id\":\"$PEER_ID\",\"next\":1,$spec}"
		call POST "/workspaces/$PEER_ID/a2a" "$WS_TOKEN" "$msg"
		assert_eq "$CODE" "$(sed 's/.*"status":\([0-9]*\).*/\1/' <<<"$spec")" "$spec"
		if [[ "$spec" == *retry_after* ]]; then
			assert_eq "$(hdr Retry-After)" 7
		else
			assert_eq "$(hdr Retry-After)" '' "$spec"
		fi
	done
	for bad in '{"endpoint":"a2a","workspace_id":""}' '{"endpoint":"a2a","workspace_id":7}'; do
		run ctl POST /_control/faults "$bad"
		assert_eq "$output" '{"error":"invalid fault"}' "$bad"
	done
}

# ---- register, tokens, status ----

@test "register: after a revoke every call is 401 until a register mints a new token" {
	call POST /registry/register "$WS_TOKEN" "$(register_body "$WS_ID")"
	assert_eq "$BODY" '{"status":"registered","delivery_mode":"poll"}'
	assert_eq "$(ctl POST "/_control/workspaces/$WS_ID/revoke")" '{"ok":true}'
	call GET "$(activity_url "$WS_ID")" "$WS_TOKEN"
	assert_eq "$CODE $BODY" '401 {"error":"invalid workspace auth token"}'
	call POST /registry/heartbeat "$WS_TOKEN" "{\"workspace_id\":\"$WS_ID\"}"
	assert_eq "$CODE" 401
	assert_eq "$(ctl GET "/_control/workspaces/$WS_ID" | jq .token)" null
	call POST /registry/register "$WS_TOKEN" "$(register_body "$WS_ID")"
	assert_eq "$CODE" 200
	new=$(jq -r .auth_token <<<"$BODY")
	[[ "$new" =~ ^[A-Za-z0-9_-]{43}$ ]] && [ "$new" != "$WS_TOKEN" ]
	call GET "$(activity_url "$WS_ID")" "$WS_TOKEN"
	assert_eq "$CODE" 401
	call GET "$(activity_url "$WS_ID")" "$new"
	assert_eq "$CODE" 200
	# A token is minted once: the next register shows none.
	call POST /registry/register "$new" "$(register_body "$WS_ID")"
	assert_eq "$BODY" '{"status":"registered","delivery_mode":"poll"}'
}

@test "register: a failed register degrades the workspace for --degraded-ms; 401 does not" {
	fake_stop
	fake_start --degraded-ms 1500
	new_ws >/dev/null
	status() { ctl GET "/_control/workspaces/$WS_ID" | jq -r .status; }
	call POST /registry/register "$WS_TOKEN" "$(register_body "$WS_ID")"
	assert_eq "$(status)" online
	call POST /registry/register "wrong" "$(register_body "$WS_ID")"
	assert_eq "$CODE" 401
	assert_eq "$(status)" online
	call POST /registry/register "$WS_TOKEN" "{\"id\":\"$WS_ID\",\"agent_card\":{}}"
	assert_eq "$CODE" 400
	assert_eq "$(status)" degraded
	call GET "/workspaces/$WS_ID" ""
	assert_eq "$(jq -r .status <<<"$BODY")" degraded
	wait_until 5 eval '[ "$(status)" = online ]'
	# An injected failure counts as well.
	fault '{"endpoint":"register","status":500,"fail_next":1}'
	call POST /registry/register "$WS_TOKEN" "$(register_body "$WS_ID")"
	assert_eq "$CODE $(status)" "500 degraded"
}

@test "heartbeat: is_busy is recorded; error_rate 0.5 or more degrades, under 0.1 recovers" {
	status() { ctl GET "/_control/workspaces/$WS_ID" | jq -r .status; }
	call POST /registry/register "$WS_TOKEN" "$(register_body "$WS_ID")"
	call POST /registry/heartbeat "$WS_TOKEN" "{\"workspace_id\":\"$WS_ID\",\"is_busy\":true,\"current_task\":\"thinking\"}"
	call GET "/workspaces/$WS_ID" ""
	assert_eq "$(jq -c '[.status, .is_busy, .current_task]' <<<"$BODY")" '["online",true,"thinking"]'
	assert_eq "$(ctl GET "/_control/workspaces/$WS_ID" | jq .last_heartbeat.is_busy)" true
	for step in '0.5 degraded' '0.2 degraded' '0.09 online'; do
		read -r rate want <<<"$step"
		call POST /registry/heartbeat "$WS_TOKEN" "{\"workspace_id\":\"$WS_ID\",\"error_rate\":$rate}"
		assert_eq "$(status)" "$want" "error_rate $rate"
	done
	call GET "/workspaces/$WS_ID" ""
	assert_eq "$(jq .is_busy <<<"$BODY")" false
}

@test "status: awaiting_agent after --awaiting-after-ms without a heartbeat; polling is no heartbeat, a heartbeat alone brings it back" {
	fake_stop
	fake_start --awaiting-after-ms 200 --sweep-ms 0
	new_ws >/dev/null
	status() { ctl GET "/_control/workspaces/$WS_ID" | jq -r .status; }
	assert_eq "$(status)" awaiting_agent
	call POST /registry/register "$WS_TOKEN" "$(register_body "$WS_ID")"
	assert_eq "$(status)" online
	# The sweep runs on request here; polling all the while does not keep it online.
	swept_away() {
		call GET "$(activity_url "$WS_ID")" "$WS_TOKEN"
		ctl POST /_control/sweep >/dev/null
		[ "$(status)" = awaiting_agent ]
	}
	wait_until 10 swept_away
	call GET "$(activity_url "$WS_ID")" "$WS_TOKEN"
	assert_eq "$(ctl POST /_control/sweep)" '{"marked":0}'
	assert_eq "$(status)" awaiting_agent
	call POST /registry/heartbeat "$WS_TOKEN" "{\"workspace_id\":\"$WS_ID\"}"
	assert_eq "$(status)" online
	call GET "/workspaces/$WS_ID" ""
	assert_eq "$(jq -r .status <<<"$BODY")" online
}

@test "status: the sweeper runs every --sweep-ms on its own" {
	fake_stop
	fake_start --awaiting-after-ms 100 --sweep-ms 20
	new_ws >/dev/null
	call POST /registry/heartbeat "$WS_TOKEN" "{\"workspace_id\":\"$WS_ID\"}"
	wait_until 10 eval '[ "$(ctl GET "/_control/workspaces/$WS_ID" | jq -r .status)" = awaiting_agent ]'
}

@test "GET /workspaces/<id>: status open to read; paused; removed is 410 with removed_at and its token dies" {
	call GET "/workspaces/$WS_ID" ""
	assert_eq "$CODE" 200
	assert_eq "$(jq -c '[.id, .status, .delivery_mode]' <<<"$BODY")" "[\"$WS_ID\",\"awaiting_agent\",null]"
	call GET /workspaces/0a0a0a0a-0000-4000-8000-000000000000 ""
	assert_eq "$CODE $BODY" '404 {"error":"workspace not found"}'
	call POST /registry/register "$WS_TOKEN" "$(register_body "$WS_ID")"
	assert_eq "$(ctl POST "/_control/workspaces/$WS_ID/pause")" '{"ok":true}'
	call GET "/workspaces/$WS_ID" "$WS_TOKEN"
	assert_eq "$CODE $(jq -r .status <<<"$BODY")" "200 paused"
	ctl POST "/_control/workspaces/$WS_ID/pause" '{"paused":false}' >/dev/null
	call GET "/workspaces/$WS_ID" "$WS_TOKEN"
	assert_eq "$(jq -r .status <<<"$BODY")" online

	before=$(date -u +%s)
	assert_eq "$(ctl POST "/_control/workspaces/$WS_ID/remove")" '{"ok":true}'
	call GET "/workspaces/$WS_ID" "$WS_TOKEN"
	assert_eq "$CODE" 410
	assert_eq "$(jq -c '[.error, .id]' <<<"$BODY")" "[\"workspace removed\",\"$WS_ID\"]"
	removed=$(jq -r .removed_at <<<"$BODY")
	[ "$(date -u -d "$removed" +%s)" -ge "$before" ]
	assert_eq "$(ctl GET "/_control/workspaces/$WS_ID" | jq -r .removed_at)" "$removed"
	call GET "$(activity_url "$WS_ID")" "$WS_TOKEN"
	assert_eq "$CODE" 401
	call POST /registry/heartbeat "$WS_TOKEN" "{\"workspace_id\":\"$WS_ID\"}"
	assert_eq "$CODE" 401
	# A register cannot bring a removed workspace back.
	call POST /registry/register "" "$(register_body "$WS_ID")"
	assert_eq "$CODE" 401
	run ctl POST "/_control/workspaces/$WS_ID/pause" '{"paused":"yes"}'
	[ "$status" -ne 0 ]
	run ctl POST "/_control/workspaces/$WS_ID/explode"
	[ "$status" -ne 0 ]
}

# ---- activity ----

@test "activity: equal timestamps and late commits follow (created_at, seq), both ways and behind a cursor" {
	t=2026-01-02T03:04:05.1Z
	mapfile -t eq < <(queue_msgs "$WS_ID" "{\"count\":3,\"created_at\":\"$t\",\"text\":\"eq{n}\"}")
	rows=$(activity "$WS_ID")
	assert_eq "$(jq -c '[.[].created_at] | unique' <<<"$rows")" "[\"$t\"]"
	assert_eq "$(jq -c '[.[].id]' <<<"$rows")" "[\"${eq[0]}\",\"${eq[1]}\",\"${eq[2]}\"]"
	assert_eq "$(jq '[.[].seq] | . == (sort | unique)' <<<"$rows")" true
	# No row that shares the cursor's timestamp is lost.
	call GET "$(activity_url "$WS_ID" "since_id=${eq[0]}")" "$WS_TOKEN"
	assert_eq "$(jq -c '[.[].id]' <<<"$BODY")" "[\"${eq[1]}\",\"${eq[2]}\"]"
	# A row that commits late, with an earlier time: it sorts before them, so a cursor
	# already past its place does not see it; one more with the same time sorts last.
	late=$(queue_msgs "$WS_ID" '{"created_at":"2026-01-02T03:04:05.099999999Z","text":"late"}')
	last=$(queue_msgs "$WS_ID" "{\"created_at\":\"$t\",\"text\":\"last\"}")
	assert_eq "$(activity "$WS_ID" | jq -c '[.[].id]')" "[\"$late\",\"${eq[0]}\",\"${eq[1]}\",\"${eq[2]}\",\"$last\"]"
	assert_eq "$(activity "$WS_ID" | jq '.[0].seq > .[3].seq')" true
	call GET "$(activity_url "$WS_ID")" "$WS_TOKEN"
	assert_eq "$(jq -c '[.[].id]' <<<"$BODY")" "[\"$last\",\"${eq[2]}\",\"${eq[1]}\",\"${eq[0]}\",\"$late\"]"
	call GET "$(activity_url "$WS_ID" "since_id=${eq[0]}")" "$WS_TOKEN"
	assert_eq "$(jq -c '[.[].id]' <<<"$BODY")" "[\"${eq[1]}\",\"${eq[2]}\",\"$last\"]"
	call GET "$(activity_url "$WS_ID" "since_id=$late")" "$WS_TOKEN"
	assert_eq "$(jq -c '[.[].id]' <<<"$BODY")" "[\"${eq[0]}\",\"${eq[1]}\",\"${eq[2]}\",\"$last\"]"
}

@test "activity: created_at has up to 9 fraction digits, trailing zeros trimmed; a bad one is refused" {
	for pair in '2026-01-02T03:04:05.123456789Z 2026-01-02T03:04:05.123456789Z' \
		'2026-01-02T03:04:05.120Z 2026-01-02T03:04:05.12Z' \
		'2026-01-02T03:04:05.000Z 2026-01-02T03:04:05Z' \
		'2026-01-02T04:04:06.5+01:00 2026-01-02T03:04:06.5Z'; do
		read -r given want <<<"$pair"
		queue_msgs "$WS_ID" "{\"created_at\":\"$given\"}" >/dev/null
		assert_eq "$(activity "$WS_ID" | jq -r 'max_by(.seq).created_at')" "$want" "$given"
	done
	for bad in '"2026-01-02 03:04:05Z"' '"2026-01-02T03:04:05.1234567891Z"' '"2026-01-02T03:04:05"' '5'; do
		run ctl POST /_control/messages "{\"workspace_id\":\"$WS_ID\",\"created_at\":$bad}"
		[ "$status" -ne 0 ]
	done
	run ctl POST /_control/messages "{\"workspace_id\":\"$WS_ID\",\"created_at\":\"2026-01-02T03:04:05Z\",\"age_secs\":3}"
	[ "$status" -ne 0 ]
}

@test "activity: before_ts answers only rows strictly older, newest first, for paging back; junk is 400" {
	for s in 1 2 3 4 5; do
		queue_msgs "$WS_ID" "{\"created_at\":\"2026-03-01T00:00:0${s}Z\",\"text\":\"r$s\"}" >/dev/null
	done
	texts() { jq -c '[.[].request_body.params.message.parts[0].text]' <<<"$BODY"; }
	call GET "$(activity_url "$WS_ID" "before_ts=2026-03-01T00:00:04Z")" "$WS_TOKEN"
	assert_eq "$(texts)" '["r3","r2","r1"]'
	call GET "$(activity_url "$WS_ID" "before_ts=2026-03-01T00:00:04Z&limit=2")" "$WS_TOKEN"
	assert_eq "$(texts)" '["r3","r2"]'
	call GET "$(activity_url "$WS_ID" "before_ts=$(jq -r '.[-1].created_at' <<<"$BODY")&limit=2")" "$WS_TOKEN"
	assert_eq "$(texts)" '["r1"]'
	call GET "$(activity_url "$WS_ID" "before_ts=2026-03-01T00:00:03.5Z")" "$WS_TOKEN"
	assert_eq "$(texts)" '["r3","r2","r1"]'
	first=$(activity "$WS_ID" | jq -r '.[0].id')
	call GET "$(activity_url "$WS_ID" "since_id=$first&before_ts=2026-03-01T00:00:04Z")" "$WS_TOKEN"
	assert_eq "$(texts)" '["r2","r3"]'
	for q in before_ts=yesterday before_ts=2026-03-01 'before_ts=2026-03-01T00:00:04'; do
		call GET "$(activity_url "$WS_ID" "$q")" "$WS_TOKEN"
		assert_eq "$CODE" 400 "$q"
		assert_eq "$BODY" '{"error":"before_ts must be an RFC3339 timestamp (e.g. 2026-05-01T00:00:00Z)"}'
	done
}

@test "activity: include=peer_info adds peer_name, peer_role, agent_card_url and attachments where known" {
	new_peer '{"name":"Ada","role":"researcher"}' >/dev/null
	parts='[{"kind":"text","text":"see"},{"kind":"file","file":{"name":"a.txt","mimeType":"text/plain","uri":"https://x/a.txt"}},{"type":"image","file":{"uri":"u2","mime_type":"image/png"}},{"kind":"file","file":{}}]'
	queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"parts\":$parts}" >/dev/null
	queue_msgs "$WS_ID" '{"text":"from the canvas"}' >/dev/null
	api_call GET "$(activity_url "$WS_ID" "include=peer_info")" "$WS_TOKEN"
	assert_eq "$CODE" 200
	assert_eq "$(jq -c '.[1] | [.peer_name, .peer_role, .agent_card_url, .attachments]' <<<"$BODY")" \
		"[\"Ada\",\"researcher\",\"$FAKE_URL/registry/discover/$PEER_ID\",[{\"kind\":\"file\",\"uri\":\"https://x/a.txt\",\"mime_type\":\"text/plain\",\"name\":\"a.txt\"},{\"kind\":\"image\",\"uri\":\"u2\",\"mime_type\":\"image/png\"}]]"
	# The rest of the row is as without it; a canvas row has no peer to tell of.
	assert_eq "$(jq -c '.[1] | del(.peer_name, .peer_role, .agent_card_url, .attachments)' <<<"$BODY")" \
		"$(activity "$WS_ID" | jq -c '.[0]')"
	assert_eq "$(jq -c '.[0] | [has("peer_name"), has("peer_role"), has("agent_card_url"), has("attachments")]' <<<"$BODY")" \
		'[false,false,false,false]'
	api_call GET "$(activity_url "$WS_ID" "include=%20peer_info%20,other")" "$WS_TOKEN"
	assert_eq "$(jq -r '.[1].peer_name' <<<"$BODY")" Ada
	api_call GET "$(activity_url "$WS_ID")" "$WS_TOKEN"
	assert_eq "$(jq '[.[] | has("peer_name") or has("attachments")] | any' <<<"$BODY")" false
}

@test "activity: source=canvas|agent and peer_id filters; bad values are 400" {
	new_peer >/dev/null
	other=$(new_ws | cut -d' ' -f1)
	new_ws >/dev/null
	p1=$(queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\"}")
	c1=$(queue_msgs "$WS_ID" '{}')
	q1=$(queue_msgs "$WS_ID" "{\"from\":\"$other\"}")
	ids() { jq -c '[.[].id]' <<<"$BODY"; }
	call GET "$(activity_url "$WS_ID" source=canvas)" "$WS_TOKEN"
	assert_eq "$(ids)" "[\"$c1\"]"
	call GET "$(activity_url "$WS_ID" source=agent)" "$WS_TOKEN"
	assert_eq "$(ids)" "[\"$q1\",\"$p1\"]"
	call GET "$(activity_url "$WS_ID" "peer_id=$PEER_ID")" "$WS_TOKEN"
	assert_eq "$(ids)" "[\"$p1\"]"
	# A peer matches as sender or as target: the own id is the target of every row.
	call GET "$(activity_url "$WS_ID" "peer_id=$WS_ID")" "$WS_TOKEN"
	assert_eq "$(ids)" "[\"$q1\",\"$c1\",\"$p1\"]"
	call GET "$(activity_url "$WS_ID" "since_id=$p1&source=agent")" "$WS_TOKEN"
	assert_eq "$(ids)" "[\"$q1\"]"
	call GET "$(activity_url "$WS_ID" source=people)" "$WS_TOKEN"
	assert_eq "$CODE $BODY" "400 {\"error\":\"source must be 'canvas' or 'agent'\"}"
	call GET "$(activity_url "$WS_ID" peer_id=nobody)" "$WS_TOKEN"
	assert_eq "$CODE $BODY" '400 {"error":"peer_id must be a UUID"}'
}

@test "ack: acked_seq only moves forward and shows in the control API; bad values are 400" {
	queue_msgs "$WS_ID" '{"count":3}' >/dev/null
	assert_eq "$(ctl GET "/_control/workspaces/$WS_ID" | jq .last_acked_seq)" null
	for step in '5 5' '3 5' '0 5' '9 9'; do
		read -r n want <<<"$step"
		call POST "/workspaces/$WS_ID/activity/ack" "$WS_TOKEN" "{\"acked_seq\":$n}"
		assert_eq "$CODE $BODY" "200 {\"last_acked_seq\":$want}" "ack $n"
	done
	assert_eq "$(ctl GET "/_control/workspaces/$WS_ID" | jq .last_acked_seq)" 9
	for body in '{}' '{"acked_seq":"5"}' '{"acked_seq":1.5}' '{"acked_seq":null}' 'junk'; do
		call POST "/workspaces/$WS_ID/activity/ack" "$WS_TOKEN" "$body"
		assert_eq "$CODE $BODY" '400 {"error":"acked_seq is required"}' "$body"
	done
	call POST "/workspaces/$WS_ID/activity/ack" "$WS_TOKEN" '{"acked_seq":-1}'
	assert_eq "$CODE $BODY" '400 {"error":"acked_seq must be >= 0"}'
	call POST "/workspaces/$WS_ID/activity/ack" "" '{"acked_seq":10}'
	assert_eq "$CODE" 401
	# Acked rows stay readable.
	assert_eq "$(activity "$WS_ID" | jq length)" 3
	assert_eq "$(posts ack "$WS_ID" | jq -c '[.[].status]')" '[200,200,200,200,400,400,400,400,400,400,401]'
}

@test "ack: --no-ack is an older platform that answers 404" {
	fake_stop
	fake_start --no-ack
	new_ws >/dev/null
	call POST "/workspaces/$WS_ID/activity/ack" "$WS_TOKEN" '{"acked_seq":1}'
	assert_eq "$CODE $BODY" '404 {"error":"not found"}'
	assert_eq "$(ctl GET "/_control/workspaces/$WS_ID" | jq .last_acked_seq)" null
}

# ---- /a2a ----

@test "a2a: the platform normalises what it stores: envelope, messageId, role, kind; content becomes parts" {
	new_peer >/dev/null
	stored() { activity "$PEER_ID" | jq -c '.[-1].request_body'; }
	call POST "/workspaces/$PEER_ID/a2a" "$WS_TOKEN" '{"method":"message/send","params":{"message":{"parts":[{"type":"text","text":"hi"},{"kind":"data","type":"x","data":{}}]}}}'
	assert_eq "$CODE" 200
	assert_eq "$(stored | jq -c --arg re "$UUID_RE" '[(.id | test($re)), (.params.message.messageId | test($re))]')" '[true,true]'
	assert_eq "$(stored | jq -cS 'del(.id, .params.message.messageId)')" \
		'{"jsonrpc":"2.0","method":"message/send","params":{"message":{"parts":[{"kind":"text","text":"hi"},{"data":{},"kind":"data","type":"x"}],"role":"user"}}}'
	call POST "/workspaces/$PEER_ID/a2a" "$WS_TOKEN" '{"jsonrpc":"2.0","id":"1","method":"message/send","params":{"message":{"role":"agent","messageId":"c1","content":"hello"}}}'
	assert_eq "$(stored | jq -c .params.message)" '{"role":"agent","messageId":"c1","parts":[{"kind":"text","text":"hello"}]}'
	# A call with no message (tasks/get) is stored as sent.
	call POST "/workspaces/$PEER_ID/a2a" "$WS_TOKEN" '{"jsonrpc":"2.0","id":"2","method":"tasks/get","params":{"id":"t1"}}'
	assert_eq "$CODE $(stored)" '200 {"jsonrpc":"2.0","id":"2","method":"tasks/get","params":{"id":"t1"}}'
	assert_eq "$(activity "$PEER_ID" | jq -r '.[-1].method')" tasks/get
	no_parts='{"error":"params.message must contain either '"'"'parts'"'"' (v0.3) or '"'"'content'"'"' (v0.2 compat)"}'
	for body in '{"params":{"message":{"role":"user"}}}' '{"params":{"message":{"parts":[]}}}' '{"params":{"message":{"parts":"x"}}}'; do
		call POST "/workspaces/$PEER_ID/a2a" "$WS_TOKEN" "$body"
		assert_eq "$CODE $BODY" "400 $no_parts" "$body"
	done
	call POST "/workspaces/$PEER_ID/a2a" "$WS_TOKEN" '{"params":{"message":{"content":7}}}'
	assert_eq "$CODE $BODY" '400 {"error":"invalid params.message.content type"}'
	call POST "/workspaces/$PEER_ID/a2a" "$WS_TOKEN" '[1]'
	assert_eq "$CODE $BODY" '400 {"error":"invalid JSON"}'
	assert_eq "$(activity "$PEER_ID" | jq length)" 3
}

@test "a2a: a messageId lands once per target; a resend gets the same answer and is still recorded" {
	new_peer >/dev/null
	msg='{"jsonrpc":"2.0","id":"r1","method":"message/send","params":{"message":{"role":"agent","messageId":"5b1c9d2e-0000-4000-8000-00000000abcd","parts":[{"kind":"text","text":"once"}]}}}'
	call POST "/workspaces/$PEER_ID/a2a" "$WS_TOKEN" "$msg"
	first="$CODE $BODY"
	call POST "/workspaces/$PEER_ID/a2a" "$WS_TOKEN" "$msg"
	assert_eq "$CODE $BODY" "$first"
	assert_eq "$first" '200 {"status":"queued","delivery_mode":"poll","method":"message/send"}'
	assert_eq "$(activity "$PEER_ID" | jq length)" 1
	assert_eq "$(posts a2a "$WS_ID" | jq -c '[.[] | [.status, .body.params.message.messageId]] | length')" 2
	# Per target: the same id to another workspace is another message.
	call POST "/workspaces/$WS_ID/a2a" "$PEER_TOKEN" "$msg"
	assert_eq "$(activity "$WS_ID" | jq length)" 1
	# Rows queued through the control API count too.
	queue_msgs "$PEER_ID" '{"message_id":"0d0d0d0d-0000-4000-8000-000000000001"}' >/dev/null
	call POST "/workspaces/$PEER_ID/a2a" "$WS_TOKEN" "${msg/5b1c9d2e-0000-4000-8000-00000000abcd/0d0d0d0d-0000-4000-8000-000000000001}"
	assert_eq "$CODE" 200
	assert_eq "$(activity "$PEER_ID" | jq length)" 2
}

@test "a2a: a push-mode target answers 202 queued, 200 queued, or synchronously after its delay" {
	new_peer >/dev/null
	msg='{"jsonrpc":"2.0","id":"rpc-9","method":"message/send","params":{"message":{"role":"agent","parts":[{"kind":"text","text":"hi"}]}}}'
	ctl POST /_control/workspaces "{\"id\":\"$PEER_ID\",\"delivery_mode\":\"push\",\"push_answer\":\"accepted\"}" >/dev/null
	call POST "/workspaces/$PEER_ID/a2a" "$WS_TOKEN" "$msg"
	assert_eq "$CODE $(jq -c 'del(.queue_id)' <<<"$BODY")" '202 {"queued":true}'
	[[ "$(jq -r .queue_id <<<"$BODY")" =~ $UUID_RE ]]
	ctl POST /_control/workspaces "{\"id\":\"$PEER_ID\",\"push_answer\":\"queued\"}" >/dev/null
	call POST "/workspaces/$PEER_ID/a2a" "$WS_TOKEN" "$msg"
	assert_eq "$CODE $BODY" '200 {"status":"queued","queued":true}'
	ctl POST /_control/workspaces "{\"id\":\"$PEER_ID\",\"push_answer\":\"sync\"}" >/dev/null
	call POST "/workspaces/$PEER_ID/a2a" "$WS_TOKEN" "$msg"
	assert_eq "$CODE $(jq -c '[.jsonrpc, .id, .result.kind, .result.role, .result.parts]' <<<"$BODY")" \
		'200 ["2.0","rpc-9","message","agent",[{"kind":"text","text":"received"}]]'
	# A peer that holds the request: the caller's own timeout ends the wait, and the
	# message is in the peer's activity all the same.
	ctl POST /_control/workspaces "{\"id\":\"$PEER_ID\",\"push_delay_ms\":60000}" >/dev/null
	run curl -sS --max-time 1 -H "Authorization: Bearer $WS_TOKEN" --data-binary "$msg" "$FAKE_URL/workspaces/$PEER_ID/a2a"
	assert_eq "$status" 28
	assert_eq "$(activity "$PEER_ID" | jq length)" 4
}

@test "a2a: bodies up to 16 MiB are taken; over it 413 truncated with max_bytes" {
	new_peer >/dev/null
	big="$BATS_TEST_TMPDIR/big.json"
	{ printf '{"params":{"message":{"parts":[{"kind":"text","text":"'; head -c $((2 * 1024 * 1024)) /dev/zero | tr '\0' x; printf '"}]}}}'; } >"$big"
	api_call POST "/workspaces/$PEER_ID/a2a" "$WS_TOKEN" "@$big"
	assert_eq "$CODE" 200
	head -c $((16 * 1024 * 1024 + 1)) /dev/zero | tr '\0' x >"$big"
	api_call POST "/workspaces/$PEER_ID/a2a" "$WS_TOKEN" "@$big"
	assert_eq "$CODE" 413
	assert_eq "$(jq -c '[.truncated, .max_bytes, (.error | length > 0)]' <<<"$BODY")" '[true,16777216,true]'
	assert_eq "$(activity "$PEER_ID" | jq length)" 1
	assert_eq "$(posts a2a | jq -c '[.[].status]')" '[200,413]'
}

@test "control messages: every kind of row: system turn, notify echo, delegate_result, own id, tasks/*, stream, delegation" {
	new_peer >/dev/null
	queue_msgs "$WS_ID" '{"source_type":"self-delegation-result-wake","text":"wake"}' >/dev/null
	queue_msgs "$WS_ID" '{"method":"notify","text":"echoed"}' >/dev/null
	queue_msgs "$WS_ID" '{"method":"delegate_result","text":"done"}' >/dev/null
	queue_msgs "$WS_ID" "{\"from\":\"$WS_ID\",\"text\":\"mine\"}" >/dev/null
	queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"method\":\"tasks/get\",\"task_id\":\"t-1\"}" >/dev/null
	queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"method\":\"tasks/cancel\"}" >/dev/null
	queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"method\":\"message/stream\",\"text\":\"s\"}" >/dev/null
	queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"delegation\":true,\"message_id\":\"7f7f7f7f-0000-4000-8000-000000000007\"}" >/dev/null
	queue_msgs "$WS_ID" '{"user_id":"u-42","email":"ada@example.com"}' >/dev/null
	queue_msgs "$WS_ID" '{"legacy":true,"task_id":"t-9"}' >/dev/null
	rows=$(activity "$WS_ID")
	row() { jq -c ".[$1]" <<<"$rows"; }
	assert_eq "$(row 0 | jq -c '[.source_id, .request_body.params.metadata, .request_body.params.message.contextId]')" \
		'[null,{"source_type":"self-delegation-result-wake"},null]'
	assert_eq "$(row 1 | jq -c '[.method, .source_id, .request_body]')" '["notify",null,{"message":"echoed"}]'
	assert_eq "$(row 2 | jq -c --arg re "$UUID_RE" '[.method, (.request_body.delegation_id | test($re)), .request_body.response_text]')" \
		'["delegate_result",true,"done"]'
	assert_eq "$(row 3 | jq -r .source_id)" "$WS_ID"
	assert_eq "$(row 4 | jq -c '[.method, .source_id, .request_body.method, .request_body.params]')" \
		"[\"tasks/get\",\"$PEER_ID\",\"tasks/get\",{\"id\":\"t-1\"}]"
	assert_eq "$(row 5 | jq -c --arg re "$UUID_RE" '[.method, (.request_body.params.id | test($re))]')" '["tasks/cancel",true]'
	assert_eq "$(row 6 | jq -c '[.method, .request_body.method, .request_body.params.message.parts[0].text]')" \
		'["message/stream","message/stream","s"]'
	assert_eq "$(row 7 | jq -c '.request_body.params.message | [.messageId, .metadata]')" \
		'["7f7f7f7f-0000-4000-8000-000000000007",{"delegation_id":"7f7f7f7f-0000-4000-8000-000000000007"}]'
	assert_eq "$(row 8 | jq -c '.request_body.params | [.message.contextId, .metadata.source, .metadata.user_id, .metadata.email, (.message | has("taskId"))]')" \
		"[\"canvas-$WS_ID\",\"canvas_user\",\"u-42\",\"ada@example.com\",false]"
	# An older row, from before the platform normalised: history, taskId, no context.
	assert_eq "$(row 9 | jq -c '.request_body.params | [.metadata, .message.taskId, (.message | has("contextId"))]')" \
		'[{"history":[]},"t-9",false]'
	for bad in "{\"source_type\":\"self-x\",\"from\":\"$PEER_ID\"}" '{"source_type":5}' '{"message_id":5}'; do
		run ctl POST /_control/messages "{\"workspace_id\":\"$WS_ID\",${bad#\{}"
		[ "$status" -ne 0 ]
	done
}

# ---- /notify ----

@test "notify: an attachment without uri or name is 400; canvas replies turned off is 403 talk_to_user_disabled" {
	for pair in '0 [{"name":"n"}]' '1 [{"uri":"u","name":"n"},{"uri":"u"}]' '0 [{"uri":"","name":"n"}]' '0 [7]'; do
		read -r at list <<<"$pair"
		call POST "/workspaces/$WS_ID/notify" "$WS_TOKEN" "{\"message\":\"m\",\"attachments\":$list}"
		assert_eq "$CODE $BODY" "400 {\"error\":\"attachment[$at]: uri and name are required\"}" "$list"
	done
	ctl POST /_control/workspaces "{\"id\":\"$WS_ID\",\"talk_to_user\":false}" >/dev/null
	call POST "/workspaces/$WS_ID/notify" "$WS_TOKEN" '{"message":"hello?"}'
	assert_eq "$CODE $BODY" '403 {"error":"talk_to_user_disabled"}'
	assert_eq "$(activity "$WS_ID")" '[]'
	ctl POST /_control/workspaces "{\"id\":\"$WS_ID\",\"talk_to_user\":true}" >/dev/null
	call POST "/workspaces/$WS_ID/notify" "$WS_TOKEN" '{"message":"hello?"}'
	assert_eq "$CODE" 200
}

# ---- pending uploads ----

@test "uploads: a canvas upload is a chat_upload_receive row; its bytes and type; ack is idempotent and keeps it readable" {
	up=$(ctl POST /_control/uploads "{\"workspace_id\":\"$WS_ID\",\"name\":\"notes \\\"v2\\\".txt\",\"mime_type\":\"text/plain\",\"content\":\"hello file\"}")
	fid=$(jq -r .file_id <<<"$up")
	[[ "$fid" =~ $UUID_RE ]]
	assert_eq "$(jq -r .uri <<<"$up")" "platform-pending:$WS_ID/$fid"
	row=$(activity "$WS_ID" | jq -c '.[0]')
	assert_eq "$(jq -r .id <<<"$row")" "$(jq -r .row_id <<<"$up")"
	assert_eq "$(jq -c '[.method, .source_id, .request_body]' <<<"$row")" \
		"[\"chat_upload_receive\",null,{\"file_id\":\"$fid\",\"name\":\"notes \\\"v2\\\".txt\",\"mimeType\":\"text/plain\",\"size\":10,\"uri\":\"platform-pending:$WS_ID/$fid\"}]"
	content="/workspaces/$WS_ID/pending-uploads/$fid/content"
	api_call GET "$content" "$WS_TOKEN" "" -D "$BATS_TEST_TMPDIR/h"
	assert_eq "$CODE $BODY" '200 hello file'
	grep -qi '^content-type: text/plain' "$BATS_TEST_TMPDIR/h"
	grep -qi '^content-disposition: attachment; filename="notes _v2_.txt"' "$BATS_TEST_TMPDIR/h"
	for i in 1 2; do
		call POST "/workspaces/$WS_ID/pending-uploads/$fid/ack" "$WS_TOKEN" ''
		assert_eq "$CODE $BODY" '200 {"acked":true}' "ack $i"
	done
	api_call GET "$content" "$WS_TOKEN"
	assert_eq "$CODE $BODY" '200 hello file'
	assert_eq "$(ctl GET "/_control/uploads?workspace_id=$WS_ID" | jq -c '[.[] | [.fetched, .acked, .expired, .size]]')" '[[2,true,false,10]]'
	assert_eq "$(posts upload_ack "$WS_ID" | jq -c '[.[].status]')" '[200,200]'
	# Bytes as given (NULs too), and made up: the alphabet over and over, never held whole.
	b64=$(printf 'a\0b\377' | base64 -w0)
	fid2=$(ctl POST /_control/uploads "{\"workspace_id\":\"$WS_ID\",\"content_base64\":\"$b64\",\"no_row\":true}" | jq -r .file_id)
	curl -sS -o "$BATS_TEST_TMPDIR/bin" -D "$BATS_TEST_TMPDIR/h" -H "Authorization: Bearer $WS_TOKEN" \
		"$FAKE_URL/workspaces/$WS_ID/pending-uploads/$fid2/content"
	printf 'a\0b\377' | cmp - "$BATS_TEST_TMPDIR/bin"
	grep -qi '^content-type: application/octet-stream' "$BATS_TEST_TMPDIR/h"
	assert_eq "$(activity "$WS_ID" | jq length)" 1
	fid3=$(ctl POST /_control/uploads "{\"workspace_id\":\"$WS_ID\",\"size\":3000000,\"mime_type\":\"image/png\",\"name\":\"big.png\"}" | jq -r .file_id)
	curl -sS -o "$BATS_TEST_TMPDIR/big" -H "Authorization: Bearer $WS_TOKEN" \
		"$FAKE_URL/workspaces/$WS_ID/pending-uploads/$fid3/content"
	yes abcdefghijklmnopqrstuvwxyz | tr -d '\n' | head -c 3000000 | cmp - "$BATS_TEST_TMPDIR/big"
	api_call GET "$(activity_url "$WS_ID" include=peer_info)" "$WS_TOKEN"
	assert_eq "$(jq -c '.[0].attachments' <<<"$BODY")" \
		"[{\"kind\":\"image\",\"uri\":\"platform-pending:$WS_ID/$fid3\",\"mime_type\":\"image/png\",\"name\":\"big.png\"}]"
}

@test "uploads: 404 when expired or not yours, 400 for a file id that is no UUID; a fault on the fetch" {
	new_peer >/dev/null
	fid=$(ctl POST /_control/uploads "{\"workspace_id\":\"$WS_ID\",\"content\":\"x\"}" | jq -r .file_id)
	call GET "/workspaces/$PEER_ID/pending-uploads/$fid/content" "$PEER_TOKEN"
	assert_eq "$CODE $BODY" '404 {"error":"pending upload not found"}'
	call POST "/workspaces/$PEER_ID/pending-uploads/$fid/ack" "$PEER_TOKEN"
	assert_eq "$CODE" 404
	call GET "/workspaces/$WS_ID/pending-uploads/$fid/content" "$PEER_TOKEN"
	assert_eq "$CODE" 401
	call GET "/workspaces/$WS_ID/pending-uploads/0e0e0e0e-0000-4000-8000-000000000000/content" "$WS_TOKEN"
	assert_eq "$CODE $BODY" '404 {"error":"pending upload not found or expired"}'
	call GET "/workspaces/$WS_ID/pending-uploads/nope/content" "$WS_TOKEN"
	assert_eq "$CODE $BODY" '400 {"error":"invalid file_id"}'
	fault '{"endpoint":"upload","status":503,"fail_next":1}'
	call GET "/workspaces/$WS_ID/pending-uploads/$fid/content" "$WS_TOKEN"
	assert_eq "$CODE" 503
	call GET "/workspaces/$WS_ID/pending-uploads/$fid/content" "$WS_TOKEN"
	assert_eq "$CODE $BODY" '200 x'
	assert_eq "$(ctl POST "/_control/uploads/$fid/expire")" '{"ok":true}'
	call GET "/workspaces/$WS_ID/pending-uploads/$fid/content" "$WS_TOKEN"
	assert_eq "$CODE $BODY" '404 {"error":"pending upload not found or expired"}'
	call POST "/workspaces/$WS_ID/pending-uploads/$fid/ack" "$WS_TOKEN"
	assert_eq "$CODE $BODY" '404 {"error":"pending upload not found, expired, or already acked"}'
	for bad in '{"content":"a","size":1}' '{}' '{"size":100000001}' '{"size":-1}' '{"content_base64":"@@"}' '{"file_id":"x","content":"a"}' "{\"file_id\":\"$fid\",\"content\":\"a\"}"; do
		run ctl POST /_control/uploads "{\"workspace_id\":\"$WS_ID\",${bad#\{}"
		[ "$status" -ne 0 ]
	done
	run ctl POST /_control/uploads '{"workspace_id":"0e0e0e0e-0000-4000-8000-000000000000","content":"a"}'
	assert_eq "$output" '{"error":"workspace not found"}'
	run ctl POST /_control/uploads/0e0e0e0e-0000-4000-8000-000000000000/expire
	[ "$status" -ne 0 ]
}

@test "uploads: an unacked upload expires after --upload-ttl-ms; an acked one does not" {
	kept=$(ctl POST /_control/uploads "{\"workspace_id\":\"$WS_ID\",\"content\":\"k\"}" | jq -r .file_id)
	lapsed=$(ctl POST /_control/uploads "{\"workspace_id\":\"$WS_ID\",\"content\":\"l\"}" | jq -r .file_id)
	call POST "/workspaces/$WS_ID/pending-uploads/$kept/ack" "$WS_TOKEN"
	assert_eq "$CODE" 200
	# Time is up for both: only the one never acknowledged is gone.
	ctl POST "/_control/uploads/$kept/expire" >/dev/null
	ctl POST "/_control/uploads/$lapsed/expire" >/dev/null
	call GET "/workspaces/$WS_ID/pending-uploads/$kept/content" "$WS_TOKEN"
	assert_eq "$CODE $BODY" '200 k'
	call GET "/workspaces/$WS_ID/pending-uploads/$lapsed/content" "$WS_TOKEN"
	assert_eq "$CODE" 404
	fake_stop
	fake_start --upload-ttl-ms 300
	new_ws >/dev/null
	lapsed=$(ctl POST /_control/uploads "{\"workspace_id\":\"$WS_ID\",\"content\":\"l\"}" | jq -r .file_id)
	wait_until 5 eval 'call GET "/workspaces/$WS_ID/pending-uploads/$lapsed/content" "$WS_TOKEN"; [ "$CODE" = 404 ]'
	assert_eq "$(ctl GET "/_control/uploads?workspace_id=$WS_ID" | jq -c '[.[].expired]')" '[true]'
}

# ---- the event stream ----

@test "events: a ping, then ACTIVITY_LOGGED for each row logged (no id, no seq), none for notify and delegate_result" {
	new_peer >/dev/null
	out=$BATS_TEST_TMPDIR/sse
	sse_open "$WS_ID" "$WS_TOKEN" "$out"
	wait_until 5 grep -qx ': ping' "$out"
	assert_eq "$(head -c 8 "$out" | od -An -c | tr -s ' ')" ' : p i n g \n \n'
	queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"text\":\"p1\"}" >/dev/null
	queue_msgs "$WS_ID" '{"text":"c1"}' >/dev/null
	call POST "/workspaces/$WS_ID/notify" "$WS_TOKEN" '{"message":"n1"}'
	queue_msgs "$WS_ID" '{"method":"delegate_result","text":"d1"}' >/dev/null
	call POST "/workspaces/$WS_ID/a2a" "$PEER_TOKEN" '{"method":"message/stream","params":{"message":{"parts":[{"kind":"text","text":"s1"}]}}}'
	queue_msgs "$PEER_ID" '{"text":"for the peer"}' >/dev/null
	queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"text\":\"last\"}" >/dev/null
	wait_until 5 sse_events "$out" 4
	kill_pids "$SSE_PID"
	assert_eq "$(sse_data "$out" | jq -c '[.type, .data.activity_type, .data.method, .data.source_id, .data.request_body.params.message.parts[0].text]' | paste -sd' ')" \
		"[\"ACTIVITY_LOGGED\",\"a2a_receive\",\"message/send\",\"$PEER_ID\",\"p1\"] [\"ACTIVITY_LOGGED\",\"a2a_receive\",\"message/send\",null,\"c1\"] [\"ACTIVITY_LOGGED\",\"a2a_receive\",\"message/stream\",\"$PEER_ID\",\"s1\"] [\"ACTIVITY_LOGGED\",\"a2a_receive\",\"message/send\",\"$PEER_ID\",\"last\"]"
	assert_eq "$(sse_data "$out" | jq -c '[has("id"), has("seq"), (.data | has("id") or has("seq")), (.timestamp | type)]' | sort -u)" \
		'[false,false,false,"number"]'
	# Each event is one "data:" line and a blank line; nothing else (no keepalive).
	assert_eq "$(grep -vc '^data: \|^$\|^: ping$' "$out")" 0
	# The fake platform notices that the client went away.
	wait_until 5 sse_streams "$WS_ID" 0
}

@test "events: the stream needs the bearer token; its answer is text/event-stream" {
	call GET "/workspaces/$WS_ID/events/stream" ""
	assert_eq "$CODE" 401
	new_peer >/dev/null
	call GET "/workspaces/$WS_ID/events/stream" "$PEER_TOKEN"
	assert_eq "$CODE" 401
	run curl -sN --max-time 1 -D "$BATS_TEST_TMPDIR/h" -o /dev/null -H "Authorization: Bearer $WS_TOKEN" \
		"$FAKE_URL/workspaces/$WS_ID/events/stream"
	assert_eq "$status" 28
	grep -q '^HTTP/1.1 200 ' "$BATS_TEST_TMPDIR/h"
	grep -qi '^content-type: text/event-stream' "$BATS_TEST_TMPDIR/h"
}

@test "events: a subscriber buffers 64 events and drops what comes while it is full" {
	out=$BATS_TEST_TMPDIR/sse
	sse_open "$WS_ID" "$WS_TOKEN" "$out"
	# One control call logs all 100 rows before the stream can take any.
	queue_msgs "$WS_ID" '{"count":100,"text":"m{n}"}' >/dev/null
	wait_until 5 sse_events "$out" 64
	assert_eq "$(ctl GET "/_control/events?workspace_id=$WS_ID" | jq -c '[.[] | [.sent, .dropped, .buffered]]')" '[[64,36,0]]'
	queue_msgs "$WS_ID" '{"text":"after"}' >/dev/null
	wait_until 5 sse_events "$out" 65
	kill_pids "$SSE_PID"
	assert_eq "$(sse_data "$out" | jq -r '.data.request_body.params.message.parts[0].text' | paste -sd' ')" \
		"$(printf 'm%s ' $(seq 64))after"
}

@test "events: --no-events and an injected 404 are an older platform without the stream" {
	fault '{"endpoint":"events","status":404,"body":{"error":"not found"},"next":1}'
	call GET "/workspaces/$WS_ID/events/stream" "$WS_TOKEN"
	assert_eq "$CODE $BODY" '404 {"error":"not found"}'
	fake_stop
	fake_start --no-events
	new_ws >/dev/null
	call GET "/workspaces/$WS_ID/events/stream" "$WS_TOKEN"
	assert_eq "$CODE $BODY" '404 {"error":"not found"}'
}

@test "events: faults end a stream after N events or T ms" {
	out=$BATS_TEST_TMPDIR/sse
	fault '{"endpoint":"events","end_after_events":2,"next":1}'
	sse_open "$WS_ID" "$WS_TOKEN" "$out"
	queue_msgs "$WS_ID" '{"count":3}' >/dev/null
	wait_until 5 eval '! proc_alive "$SSE_PID"'
	wait "$SSE_PID"
	assert_eq "$(sse_data "$out" | wc -l)" 2
	# This one ends on its own, cleanly, well before curl would give up.
	fault '{"endpoint":"events","end_after_ms":200,"next":1}'
	run curl -sN --max-time 10 -H "Authorization: Bearer $WS_TOKEN" "$FAKE_URL/workspaces/$WS_ID/events/stream"
	assert_eq "$status $output" '0 : ping'
	# The faults were used up: the next stream stays open.
	sse_open "$WS_ID" "$WS_TOKEN" "$out"
	queue_msgs "$WS_ID" '{"count":3}' >/dev/null
	wait_until 5 sse_events "$out" 3
	proc_alive "$SSE_PID"
	kill_pids "$SSE_PID"
	for bad in '{"endpoint":"a2a","end_after_events":1}' '{"endpoint":"events","end_after_events":-1}' \
		'{"endpoint":"events","drop_ratio":2}' '{"endpoint":"events","other_replica":1}' \
		'{"endpoint":"events","drop_ratio":1,"status":500}'; do
		run ctl POST /_control/faults "$bad"
		assert_eq "$output" '{"error":"invalid fault"}' "$bad"
	done
}

@test "events: faults drop every event, some of them, or serve the stream from another replica" {
	ref=$BATS_TEST_TMPDIR/ref out=$BATS_TEST_TMPDIR/out
	for spec in '"drop_ratio":1' '"other_replica":true' '"drop_ratio":0.5'; do
		fault "{\"endpoint\":\"events\",\"next\":1,$spec}"
		sse_open "$WS_ID" "$WS_TOKEN" "$out"
		pid=$SSE_PID
		sse_open "$WS_ID" "$WS_TOKEN" "$ref"
		queue_msgs "$WS_ID" '{"count":40}' >/dev/null
		wait_until 5 sse_events "$ref" 40
		# What the stream kept is taken from its buffer, then written out.
		wait_until 5 eval '[ "$(ctl GET "/_control/events?workspace_id=$WS_ID" | jq ".[0].buffered")" = 0 ]'
		report=$(ctl GET "/_control/events?workspace_id=$WS_ID" | jq -c '.[0]')
		wait_until 5 sse_events "$out" "$(jq .sent <<<"$report")"
		case $spec in
		*'":1') assert_eq "$(jq -c '[.sent, .dropped]' <<<"$report")" '[0,40]' ;;
		*replica*) assert_eq "$(jq -c '[.sent, .dropped, .other_replica]' <<<"$report")" '[0,0,true]' ;;
		*) [ "$(jq .sent <<<"$report")" -gt 0 ] && [ "$(jq .dropped <<<"$report")" -gt 0 ] &&
			assert_eq "$(jq '.sent + .dropped' <<<"$report")" 40 ;;
		esac
		assert_eq "$(sse_data "$out" | wc -l)" "$(jq .sent <<<"$report")" "$spec"
		kill_pids "$pid" "$SSE_PID"
		wait_until 5 sse_streams "$WS_ID" 0
	done
}
