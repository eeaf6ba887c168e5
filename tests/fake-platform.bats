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
	assert_eq "$BODY" '{"status":"registered"}'

	ws=$(ctl GET "/_control/workspaces/$WS_ID")
	assert_eq "$(jq -r .token <<<"$ws")" "$token"
	assert_eq "$(jq -c '[.registered, .delivery_mode, .agent_card.name]' <<<"$ws")" '[true,"poll","t"]'
}

@test "register: delivery_mode is sticky, an unknown workspace is created with a token" {
	call POST /registry/register "$WS_TOKEN" "$(register_body "$WS_ID")"
	assert_eq "$CODE" 200
	call POST /registry/register "$WS_TOKEN" "{\"id\":\"$WS_ID\",\"agent_card\":{\"name\":\"x\"}}"
	assert_eq "$CODE" 200
	assert_eq "$(ctl GET "/_control/workspaces/$WS_ID" | jq -r .delivery_mode)" poll

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
		"{\"workspace_id\":\"$WS_ID\",\"uptime_seconds\":3,\"active_tasks\":0,\"error_rate\":0.25,\"sample_error\":\"boom\",\"current_task\":\"x\",\"runtime_state\":\"\"}"
		"{\"workspace_id\":\"$WS_ID\",\"error_rate\":1}"
	)
	bad=(
		"{\"workspace_id\":\"$WS_ID\",\"uptime_seconds\":1.5}"
		"{\"workspace_id\":\"$WS_ID\",\"uptime_seconds\":\"3\"}"
		"{\"workspace_id\":\"$WS_ID\",\"active_tasks\":null}"
		"{\"workspace_id\":\"$WS_ID\",\"error_rate\":1.5}"
		"{\"workspace_id\":\"$WS_ID\",\"error_rate\":-0.1}"
		"{\"workspace_id\":\"$WS_ID\",\"runtime_state\":5}"
		"{\"workspace_id\":\"$WS_ID\",\"current_task\":{}}"
		'{"uptime_seconds":1}'
		'nope'
	)
	for body in "${ok[@]}"; do
		call POST /registry/heartbeat "$WS_TOKEN" "$body"
		assert_eq "$CODE" 200 "$body"
		assert_eq "$BODY" '{"status":"ok"}'
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
	assert_eq "$(jq -c '[.[].status]' <<<"$hb")" '[200,200,200,400,400,400,400,400,400,400,401,401]'
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

@test "activity: rows have the contract's shape, ids are v4 uuids, created_at strictly increases" {
	new_peer >/dev/null
	queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"count\":3}" >/dev/null
	queue_msgs "$WS_ID" '{"no_body":true}' >/dev/null
	rows=$(activity "$WS_ID")
	assert_eq "$(jq -c '.[0] | keys_unsorted' <<<"$rows")" \
		'["id","workspace_id","activity_type","source_id","target_id","method","summary","duration_ms","status","error_detail","created_at","request_body"]'
	assert_eq "$(jq -c '.[0] | [.workspace_id, .target_id, .activity_type, .source_id, .method, .summary, .duration_ms, .status, .error_detail]' <<<"$rows")" \
		"[\"$WS_ID\",\"$WS_ID\",\"a2a_receive\",\"$PEER_ID\",\"message/send\",null,null,\"ok\",null]"
	assert_eq "$(jq '.[3] | has("request_body"), has("response_body")' <<<"$rows" | tr -d '\n')" falsefalse
	assert_eq "$(jq '.[0] | has("response_body")' <<<"$rows")" false
	for id in $(jq -r '.[].id' <<<"$rows"); do
		[[ "$id" =~ $UUID_RE ]]
	done
	for t in $(jq -r '.[].created_at' <<<"$rows"); do
		[[ "$t" =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z$ ]]
	done
	assert_eq "$(jq '[.[].created_at] | . == (sort | unique)' <<<"$rows")" true
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
	call GET "$(activity_url "$WS_ID" "since_id=${older[0]}")" "$WS_TOKEN"
	assert_eq "$(jq -c '[.[].id]' <<<"$BODY")" "[\"${old[0]}\",\"${old[1]}\",\"${new[0]}\"]"
	age=$(jq -r '.[0].created_at' <<<"$BODY")
	now=$(date -u +%s)
	then=$(date -u -d "${age%.*}Z" +%s)
	[ $((now - then)) -ge 99 ]
	[ $((now - then)) -le 102 ]
	for q in since_secs=abc since_secs=1.5 since_secs=-1; do
		call GET "$(activity_url "$WS_ID" "$q")" "$WS_TOKEN"
		assert_eq "$CODE" 400 "$q"
		assert_eq "$BODY" '{"error":"invalid since_secs"}'
	done
}

@test "activity: 410 for a made-up, foreign or pruned cursor" {
	new_peer >/dev/null
	mapfile -t ids < <(queue_msgs "$WS_ID" '{"count":3}')
	foreign=$(queue_msgs "$PEER_ID" '{}')
	for cursor in 6f0e3a9c-1111-4222-8333-444455556666 "$foreign" junk; do
		call GET "$(activity_url "$WS_ID" "since_id=$cursor")" "$WS_TOKEN"
		assert_eq "$CODE" 410 "$cursor"
		assert_eq "$BODY" '{"error":"cursor not found"}'
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
	queue_msgs "$WS_ID" "{\"from\":\"$stranger\"}" >/dev/null
	rows=$(activity "$WS_ID")

	# Random ids aside, each request_body is exactly what the platform stores.
	assert_eq "$(jq -c --arg re "$UUID_RE" '[.[0:2][].request_body | .id, .params.message.messageId | test($re)] | all' <<<"$rows")" true
	assert_eq "$(jq -c '.[0] | [.source_id, (.request_body | del(.id, .params.message.messageId))]' <<<"$rows")" \
		'[null,{"jsonrpc":"2.0","method":"message/send","params":{"message":{"role":"user","contextId":"ctx","taskId":"tsk","parts":[{"kind":"text","text":"hi 1/1"}]},"metadata":{"history":[]}}}]'
	assert_eq "$(jq -c '.[1] | [.source_id, .method, (.request_body | del(.id, .params.message.messageId))]' <<<"$rows")" \
		"[\"$PEER_ID\",\"message/stream\",{\"jsonrpc\":\"2.0\",\"method\":\"message/stream\",\"params\":{\"message\":{\"role\":\"user\",\"parts\":[{\"type\":\"text\",\"text\":\"hello\"}]}}}]"
	assert_eq "$(jq -c '[.[2].request_body.params.message.parts, .[3].request_body, .[4].source_id]' <<<"$rows")" \
		"[[{\"kind\":\"data\",\"data\":{\"a\":1}}],{\"weird\":[1,2]},\"$stranger\"]"
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
	assert_eq "$(jq -c '.[0] | [.method, .source_id, .request_body]' <<<"$rows")" '["notify",null,{"message":"done"}]'
	for body in '{}' '{"message":""}' '{"message":7}' 'junk'; do
		call POST "/workspaces/$WS_ID/notify" "$WS_TOKEN" "$body"
		assert_eq "$CODE" 400 "$body"
		assert_eq "$BODY" '{"error":"message is required"}'
	done
	call POST "/workspaces/$WS_ID/notify" "" '{"message":"x"}'
	assert_eq "$CODE" 401
	p=$(posts notify "$WS_ID")
	assert_eq "$(jq -c '[.[].status]' <<<"$p")" '[200,400,400,400,400,401]'
	assert_eq "$(jq -c '.[0].body.attachments[0].name' <<<"$p")" '"n"'
	assert_eq "$(jq -c '.[4].body' <<<"$p")" '"junk"'
	assert_eq "$(activity "$WS_ID" | jq length)" 1
}

@test "a2a: caller auth via X-Workspace-ID, 404 unknown peer, the row lands in the peer's activity" {
	new_peer >/dev/null
	msg='{"jsonrpc":"2.0","id":"r1","method":"message/send","params":{"message":{"role":"agent","messageId":"m1","parts":[{"kind":"text","text":"yo"}],"contextId":"c"}}}'
	call POST "/workspaces/$PEER_ID/a2a" "$WS_TOKEN" "$msg"
	assert_eq "$CODE" 400
	assert_eq "$BODY" '{"error":"missing X-Workspace-ID"}'
	call POST "/workspaces/$PEER_ID/a2a" "" "$msg" "X-Workspace-ID: $WS_ID"
	assert_eq "$CODE" 401
	assert_eq "$BODY" '{"error":"missing workspace auth token"}'
	call POST "/workspaces/$PEER_ID/a2a" "$PEER_TOKEN" "$msg" "X-Workspace-ID: $WS_ID"
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
	rows=$(activity "$PEER_ID")
	assert_eq "$(jq length <<<"$rows")" 1
	assert_eq "$(jq -c '.[0] | [.source_id, .target_id, .method]' <<<"$rows")" "[\"$WS_ID\",\"$PEER_ID\",\"message/send\"]"
	assert_eq "$(jq -c '.[0].request_body' <<<"$rows")" "$msg"
	assert_eq "$(activity "$WS_ID")" '[]'

	p=$(posts a2a "$WS_ID")
	assert_eq "$(jq -c '[.[].status]' <<<"$p")" '[401,401,400,404,200]'
	assert_eq "$(jq -r '.[4].headers["x-workspace-id"]' <<<"$p")" "$WS_ID"
	assert_eq "$(jq -r '.[4].headers.authorization' <<<"$p")" "Bearer $WS_TOKEN"
	assert_eq "$(jq -r '.[4].headers["content-type"]' <<<"$p")" application/json
	assert_eq "$(jq -r '.[4].path' <<<"$p")" "/workspaces/$PEER_ID/a2a"
	assert_eq "$(jq -c '.[4].body' <<<"$p")" "$msg"
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

@test "org id: every path but register and heartbeat needs X-Molecule-Org-Id, else a bare 404" {
	fake_stop
	fake_start --org-id org-7
	new_ws >/dev/null
	call GET "$(activity_url "$WS_ID")" "$WS_TOKEN" ""
	assert_eq "$CODE" 404
	assert_eq "$BODY" ''
	assert_eq "$(hdr Content-Length)" 0
	call GET "$(activity_url "$WS_ID")" "$WS_TOKEN" "" 'X-Molecule-Org-Id: org-8'
	assert_eq "$CODE" 404
	assert_eq "$BODY" ''
	call GET "$(activity_url "$WS_ID")" "$WS_TOKEN" "" 'X-Molecule-Org-Id: org-7'
	assert_eq "$CODE" 200
	assert_eq "$BODY" '[]'
	call POST "/workspaces/$WS_ID/notify" "$WS_TOKEN" '{"message":"m"}'
	assert_eq "$CODE" 404
	assert_eq "$BODY" ''
	call GET /elsewhere "$WS_TOKEN"
	assert_eq "$CODE" 404
	assert_eq "$BODY" ''
	call POST /registry/register "$WS_TOKEN" "$(register_body "$WS_ID")"
	assert_eq "$CODE" 200
	call POST /registry/heartbeat "$WS_TOKEN" "{\"workspace_id\":\"$WS_ID\"}"
	assert_eq "$CODE" 200
	assert_eq "$(posts notify | jq -c '[.[].status]')" '[404]'
}

@test "rate limit: X-RateLimit-* on every answer, then 429 with Retry-After" {
	fake_stop
	fake_start --rate-limit 5
	new_ws >/dev/null
	for i in 1 2 3 4 5; do
		call GET "$(activity_url "$WS_ID")" "$WS_TOKEN" ""
		assert_eq "$CODE" 200
		assert_eq "$(hdr X-RateLimit-Limit)" 5
		assert_eq "$(hdr X-RateLimit-Remaining)" $((5 - i))
		reset=$(hdr X-RateLimit-Reset)
		[ "$reset" -ge $((12 * i - 1)) ]
		[ "$reset" -le $((12 * i)) ]
	done
	call POST /registry/heartbeat "$WS_TOKEN" "{\"workspace_id\":\"$WS_ID\"}"
	assert_eq "$CODE" 429
	retry=$(hdr Retry-After)
	[ "$retry" -ge 11 ]
	[ "$retry" -le 12 ]
	assert_eq "$BODY" "{\"error\":\"rate limit exceeded\",\"retry_after\":$retry}"
	assert_eq "$(hdr X-RateLimit-Remaining)" 0
	call GET /nowhere "" ""
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
	assert_eq "$ws" "{\"id\":\"$id\",\"token\":\"secret\",\"delivery_mode\":null,\"registered\":false,\"agent_card\":null,\"last_heartbeat_ms\":null,\"last_heartbeat\":null,\"rows\":0}"
	[[ "$WS_ID" =~ $UUID_RE ]]
	[[ "$WS_TOKEN" =~ ^[A-Za-z0-9_-]{43}$ ]]
	read -r id2 tok2 < <(new_ws '{"no_token":true}')
	assert_eq "$tok2" null
	[[ "$id2" =~ $UUID_RE ]]
	run ctl GET /_control/workspaces/0f0f0f0f-0000-4000-8000-000000000000
	[ "$status" -ne 0 ]
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
