#!/usr/bin/env bats
# replies.bats: the reply lines a handler writes (every shape, bad lines, a second
# answer, order per peer, --reply-filter) and what --filter does to message lines.
# Needs MC_BIN and FAKE_BIN (set by make check).

load helpers

setup() {
	: "${MC_BIN:?MC_BIN must name the built molecule-connect}"
	unset MOLECULE_API_URL MOLECULE_ORG_ID XDG_CONFIG_HOME
	T=$BATS_TEST_TMPDIR
	REPLIES_STATE=$T/state
	REPLIES_PID=
	fake_start --rate-limit 0
	new_ws >/dev/null
	new_peer >/dev/null
	export MOLECULE_WORKSPACE_TOKEN=$WS_TOKEN
}

teardown() {
	replies_kill
	exec 5>&-
	fake_stop
}

# replies_start [OPTIONS...]: starts a filter-mode bridge in the background. Its
# stdin is the FIFO $T/in, kept open for writing on fd 5 (replies_send writes
# there, replies_eof closes it); its stdout goes to $T/out, its stderr is appended
# to $T/err.
replies_start() {
	rm -f "$T/in"
	mkfifo "$T/in"
	exec 5<>"$T/in"
	: >"$T/out"
	"$MC_BIN" --api-url "$FAKE_URL" --state-dir "$REPLIES_STATE" --interval 0.05 \
		--heartbeat 1 "$@" "$WS_ID" <"$T/in" >"$T/out" 2>>"$T/err" 3>&- 5>&- &
	REPLIES_PID=$!
}

# replies_send LINE...: writes each LINE, newline-terminated, to the bridge's stdin.
replies_send() {
	printf '%s\n' "$@" >&5
}

# replies_gone: true once the bridge has exited.
replies_gone() {
	! kill -0 "$REPLIES_PID" 2>/dev/null
}

# replies_wait_exit: waits (10 s at most) for the bridge to exit on its own; sets
# REPLIES_RC to its exit status.
replies_wait_exit() {
	wait_until 10 replies_gone || return 1
	REPLIES_RC=0
	wait "$REPLIES_PID" || REPLIES_RC=$?
	REPLIES_PID=
}

# replies_eof: closes the bridge's stdin and waits for it to exit (REPLIES_RC).
replies_eof() {
	exec 5>&-
	replies_wait_exit
}

# replies_kill: stops the bridge if it still runs (SIGTERM twice, then SIGKILL).
replies_kill() {
	[ -n "${REPLIES_PID:-}" ] || return 0
	kill -TERM "$REPLIES_PID" 2>/dev/null || true
	nap 0.1
	kill -TERM "$REPLIES_PID" 2>/dev/null || true
	wait_until 5 replies_gone >/dev/null || kill -KILL "$REPLIES_PID" 2>/dev/null || true
	wait "$REPLIES_PID" 2>/dev/null || true
	REPLIES_PID=
}

# replies_lines N: true when the bridge has written at least N message lines.
replies_lines() {
	[ "$(grep -c '' "$T/out")" -ge "$1" ]
}

# replies_id TEXT: the id of the (first) message line whose text is TEXT.
replies_id() {
	jq -r --arg t "$1" 'select(.text == $t) | .id' "$T/out" | head -n 1
}

# replies_a2a_texts [PEER]: the first text part of every a2a post, in order (to PEER
# only when given), as a compact JSON array.
replies_a2a_texts() {
	posts a2a "$WS_ID" | jq -c --arg p "${1:-}" \
		'[.[] | select($p == "" or .path == "/workspaces/\($p)/a2a") | .body.params.message.parts[0].text]'
}

# replies_a2a_count N: true when exactly N a2a posts were recorded.
replies_a2a_count() {
	[ "$(posts a2a "$WS_ID" | jq length)" -eq "$1" ]
}

# replies_posted TEXT: true once an a2a post whose first text part is TEXT exists.
replies_posted() {
	posts a2a "$WS_ID" | jq -e --arg t "$1" 'any(.[]; .body.params.message.parts[0].text == $t)' >/dev/null
}

# replies_state JQ: runs JQ on the state file.
replies_state() {
	jq -r "$1" "$REPLIES_STATE/$WS_ID.json"
}

# replies_cursor_is ID: true once the saved cursor (last_since_id) is ID.
replies_cursor_is() {
	[ -f "$REPLIES_STATE/$WS_ID.json" ] && [ "$(replies_state .last_since_id)" = "$1" ]
}

# replies_errors: how many "reply line" errors the bridge has logged.
replies_errors() {
	grep -c 'reply line' "$T/err" || true
}

# replies_errors_are N: true when exactly N "reply line" errors were logged.
replies_errors_are() {
	[ "$(replies_errors)" -eq "$1" ]
}

# replies_posts_at_least KIND N: true when at least N posts of KIND were recorded.
replies_posts_at_least() {
	[ "$(posts "$1" "$WS_ID" | jq length)" -ge "$2" ]
}

# replies_error_rate_shown: true once a heartbeat reported a non-zero error rate.
replies_error_rate_shown() {
	posts heartbeat "$WS_ID" | jq -e 'any(.[]; .body.error_rate > 0)' >/dev/null
}

# replies_done_above ID: true once the state file lists ID among the messages done
# above the cursor.
replies_done_above() {
	[ -f "$REPLIES_STATE/$WS_ID.json" ] &&
		jq -e --arg id "$1" 'any(.done_ids[]?; . == $id)' "$REPLIES_STATE/$WS_ID.json" >/dev/null
}

@test "a {id, text} reply is posted to the sending peer as one text part, with its context, no task, and what it answers" {
	local id post
	queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"text\":\"question\",\"context_id\":\"ctx-7\",\"task_id\":\"task-7\"}" >/dev/null
	replies_start
	wait_until 10 replies_lines 1
	id=$(replies_id question)
	[ -n "$id" ]
	replies_send "{\"id\":\"$id\",\"text\":\"the answer\"}"
	wait_until 10 replies_posted "the answer"
	post=$(posts a2a "$WS_ID" | jq -c '.[0]')
	assert_eq "$(jq -r .path <<<"$post")" "/workspaces/$PEER_ID/a2a" path
	assert_eq "$(jq -r '.headers.authorization' <<<"$post")" "Bearer $WS_TOKEN" authorization
	assert_eq "$(jq -r '.headers["x-workspace-id"]' <<<"$post")" "$WS_ID" x-workspace-id
	# No taskId: the peer may not know the task. The inbound messageId goes in in_reply_to.
	assert_eq "$(jq -c '.body | [.jsonrpc, .method, .params.message.role, .params.message.parts, .params.message.contextId, (.params.message | has("taskId"))]' <<<"$post")" \
		'["2.0","message/send","agent",[{"kind":"text","text":"the answer"}],"ctx-7",false]' body
	assert_eq "$(jq -r '.body.params.message.metadata.in_reply_to' <<<"$post")" \
		"$(jq -r --arg id "$id" 'select(.id == $id) | .message_id' "$T/out")" in_reply_to
	wait_until 10 replies_cursor_is "$id"
	replies_a2a_count 1
}

@test "a {id, parts} reply posts those parts exactly as given" {
	local id parts='[{"kind":"text","text":"see the data"},{"kind":"data","data":{"n":1,"list":[1,"two",null],"nested":{"ok":true}}}]'
	queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"text\":\"want data\"}" >/dev/null
	replies_start
	wait_until 10 replies_lines 1
	id=$(replies_id "want data")
	replies_send "{\"id\":\"$id\",\"parts\":$parts}"
	wait_until 10 replies_posted "see the data"
	assert_eq "$(posts a2a "$WS_ID" | jq -c '[.[].body.params.message.parts]')" "[$parts]" parts
	wait_until 10 replies_cursor_is "$id"
}

@test "an {id} ack posts nothing and the message is done" {
	local id1 id2
	queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"count\":2,\"text\":\"m{n}\"}" >/dev/null
	replies_start
	wait_until 10 replies_lines 2
	id1=$(replies_id m1)
	id2=$(replies_id m2)
	replies_send "{\"id\":\"$id1\"}"
	# Done: the saved cursor moves past the acknowledged message.
	wait_until 10 replies_cursor_is "$id1"
	# Replies to one peer go in order: had the ack posted anything, it would come
	# before the reply to the second message.
	replies_send "{\"id\":\"$id2\",\"text\":\"second\"}"
	wait_until 10 replies_posted second
	assert_eq "$(replies_a2a_texts)" '["second"]' "a2a posts"
	assert_eq "$(posts notify "$WS_ID" | jq length)" 0 "notify posts"
	wait_until 10 replies_cursor_is "$id2"
}

@test "an {id, error} reply sends the sender the error and shows in the heartbeat's error rate" {
	local id
	queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"text\":\"fail please\"}" >/dev/null
	replies_start
	wait_until 10 replies_lines 1
	id=$(replies_id "fail please")
	# Before any error: a zero error rate and no sample error.
	wait_until 10 replies_posts_at_least heartbeat 1
	assert_eq "$(posts heartbeat "$WS_ID" | jq -c '.[0].body | [(.error_rate // 0), has("sample_error")]')" '[0,false]' "first heartbeat"
	ctl DELETE /_control/posts >/dev/null
	replies_send "{\"id\":\"$id\",\"error\":\"boom\"}"
	wait_until 10 replies_posts_at_least a2a 1
	[[ "$(replies_a2a_texts)" == '["'*boom*'"]' ]]
	wait_until 10 replies_error_rate_shown
	assert_eq "$(posts heartbeat "$WS_ID" | jq -c '[.[] | select(.body.error_rate > 0)][0].body | [(.sample_error | contains("boom")), (.error_rate <= 1)]')" \
		'[true,true]' "heartbeat after the error"
	# The error reply was delivered: the message is done.
	wait_until 10 replies_cursor_is "$id"
}

@test "an {id, retry: true} reply hands the same message out again, and it can then be answered" {
	local id
	queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"text\":\"later\"}" >/dev/null
	replies_start
	wait_until 10 replies_lines 1
	id=$(replies_id later)
	replies_send "{\"id\":\"$id\",\"retry\":true}"
	wait_until 10 replies_lines 2
	assert_eq "$(jq -r .id "$T/out" | sort -u)" "$id" "both lines carry the same id"
	assert_eq "$(jq -r .text "$T/out" | sort -u)" later text
	assert_eq "$(replies_a2a_texts)" '[]' "nothing posted for the retry"
	[ "$(replies_state '.last_since_id')" != "$id" ]
	replies_send "{\"id\":\"$id\",\"text\":\"now\"}"
	wait_until 10 replies_posted now
	wait_until 10 replies_cursor_is "$id"
	assert_eq "$(replies_a2a_texts)" '["now"]' "a2a posts"
}

@test "a {text} reply without id answers the oldest open message" {
	local id1 id2
	queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"text\":\"first q\",\"context_id\":\"ctx-1\"}" >/dev/null
	queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"text\":\"second q\",\"context_id\":\"ctx-2\"}" >/dev/null
	replies_start
	wait_until 10 replies_lines 2
	id1=$(replies_id "first q")
	id2=$(replies_id "second q")
	replies_send '{"text":"first a"}'
	wait_until 10 replies_posted "first a"
	replies_send '{"text":"second a"}'
	wait_until 10 replies_posted "second a"
	assert_eq "$(posts a2a "$WS_ID" | jq -c '[.[].body.params.message | [.parts[0].text, .contextId]]')" \
		'[["first a","ctx-1"],["second a","ctx-2"]]' "replies and their contexts"
	wait_until 10 replies_cursor_is "$id2"
	assert_eq "$(replies_errors)" 0 "reply line errors"
}

@test "each bad reply line gets one error line and the bridge carries on" {
	local ids=() i n=10 big bad expect
	queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"count\":$n,\"text\":\"q{n}\"}" >/dev/null
	replies_start
	wait_until 10 replies_lines "$n"
	for ((i = 1; i <= n; i++)); do
		ids[i]=$(replies_id "q$i")
		[ -n "${ids[i]}" ]
	done
	big=$T/big
	{
		printf '{"id":"%s","text":"' "${ids[9]}"
		head -c $((4 * 1024 * 1024 + 100)) /dev/zero | tr '\0' a
		printf '"}\n'
	} >"$big"
	# Each bad line is followed by a good reply to message i; the bad lines that
	# name a real message do not answer it.
	for ((i = 1; i <= n; i++)); do
		case $i in
		1) replies_send 'this is not JSON' ;;
		2) replies_send '[1,2,3]' ;;
		3) replies_send '"just a string"' ;;
		4) replies_send '{"id":123}' ;;
		5) replies_send '{"id":"0b6a8c1e-1f0e-4c5d-9a1b-2c3d4e5f6a7b","text":"x"}' ;;
		6) replies_send "{\"id\":\"${ids[6]}\",\"text\":5}" ;;
		7) replies_send "{\"id\":\"${ids[7]}\",\"parts\":\"x\"}" ;;
		8) replies_send "{\"id\":\"${ids[8]}\",\"text\":\"t\",\"parts\":[{\"kind\":\"text\",\"text\":\"p\"}]}" ;;
		9) timeout 20 cat "$big" >&5 ;;
		10) printf '{"id":"%s","text":"nul\0inside"}\n' "${ids[10]}" >&5 ;;
		esac
		replies_send "{\"id\":\"${ids[i]}\",\"text\":\"good $i\"}"
		wait_until 10 replies_posted "good $i"
		assert_eq "$(replies_errors)" "$i" "reply line errors after bad line $i"
		bad=$(grep 'reply line' "$T/err" | sed -n "${i}p")
		[[ "$bad" =~ ^molecule-connect:\ error:\ reply\ line\ $((2 * i - 1)):\ .+:\ skipped$ ]] ||
			{ echo "error line $i: $bad"; return 1; }
	done
	# Blank lines are ignored, not errors.
	replies_send '' '   '
	nap 0.3
	assert_eq "$(replies_errors)" "$n" "reply line errors after blank lines"
	expect=$(seq 1 "$n" | jq -Rsc 'split("\n")[:-1] | map("good " + .)')
	assert_eq "$(replies_a2a_texts)" "$expect" "only the good replies were posted, in order"
	wait_until 10 replies_cursor_is "${ids[n]}"
	kill -0 "$REPLIES_PID"
}

@test "a final reply line without a newline at end of input is posted" {
	local id
	queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"text\":\"last one\"}" >/dev/null
	replies_start
	wait_until 10 replies_lines 1
	id=$(replies_id "last one")
	printf '{"id":"%s","text":"no newline"}' "$id" >&5
	replies_eof
	assert_eq "$REPLIES_RC" 0 "exit status"
	assert_eq "$(replies_a2a_texts)" '["no newline"]' "a2a posts"
	assert_eq "$(replies_state .last_since_id)" "$id" cursor
	assert_eq "$(replies_errors)" 0 "reply line errors"
}

@test "a canvas reply with file and data parts: attachments and JSON text, a data part without data too" {
	local id
	queue_msgs "$WS_ID" '{"text":"from a person"}' >/dev/null
	replies_start
	wait_until 10 replies_lines 1
	id=$(replies_id "from a person")
	printf '{"id":"%s","parts":[{"kind":"text","text":"see"},{"kind":"data","data":{"a":1}},{"kind":"data"},{"kind":"file","file":{"name":"r.txt","uri":"https://x/r.txt","mimeType":"text/plain"}}]}\n' "$id" >&5
	wait_until 10 replies_posts_at_least notify 1
	kill -0 "$REPLIES_PID"  # still running: no abort on the odd part
	assert_eq "$(posts notify | jq -c '[.[].body]')" \
		'[{"message":"see\n{\"a\":1}\nnull","attachments":[{"uri":"https://x/r.txt","name":"r.txt","mimeType":"text/plain"}]}]' "notify body"
	assert_eq "$(replies_errors)" 0 "reply line errors"
}

@test "a second reply to the same id is an error and posts nothing" {
	local id1 id2
	queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"count\":2,\"text\":\"m{n}\"}" >/dev/null
	replies_start
	wait_until 10 replies_lines 2
	id1=$(replies_id m1)
	id2=$(replies_id m2)
	# Slow posts: the first reply is surely still being posted when the second is read.
	fault '{"endpoint":"a2a","delay_ms":500}'
	replies_send "{\"id\":\"$id1\",\"text\":\"one\"}" "{\"id\":\"$id1\",\"text\":\"again\"}" \
		"{\"id\":\"$id2\",\"text\":\"two\"}"
	wait_until 10 replies_posted two
	assert_eq "$(replies_errors)" 1 "reply line errors"
	grep -q "^molecule-connect: error: reply line 2: .*already answered.*: skipped$" "$T/err" || { cat "$T/err"; return 1; }
	# Once the reply is posted and the message done, another answer is still refused.
	wait_until 10 replies_cursor_is "$id2"
	replies_send "{\"id\":\"$id1\",\"text\":\"late\"}" "{\"id\":\"$id1\"}"
	wait_until 10 replies_errors_are 3
	nap 0.3
	assert_eq "$(replies_a2a_texts)" '["one","two"]' "a2a posts"
	assert_eq "$(replies_state .last_since_id)" "$id2" cursor
}

@test "replies to one peer are posted in arrival order; another peer does not wait for them" {
	local peer_a=$PEER_ID peer_b a1 a2 a3 b1 seq_b seq_a1
	new_peer >/dev/null
	peer_b=$PEER_ID
	queue_msgs "$WS_ID" "{\"from\":\"$peer_a\",\"count\":3,\"text\":\"A{n}\"}" >/dev/null
	queue_msgs "$WS_ID" "{\"from\":\"$peer_b\",\"text\":\"B1\"}" >/dev/null
	replies_start
	wait_until 10 replies_lines 4
	assert_eq "$(jq -r .text "$T/out" | paste -sd,)" "A1,A2,A3,B1" "message order"
	a1=$(replies_id A1)
	a2=$(replies_id A2)
	a3=$(replies_id A3)
	b1=$(replies_id B1)
	replies_send "{\"id\":\"$a3\",\"text\":\"reply A3\"}" "{\"id\":\"$b1\",\"text\":\"reply B1\"}"
	wait_until 10 replies_posted "reply B1"
	replies_send "{\"id\":\"$a2\",\"text\":\"reply A2\"}"
	# A2 and A3 wait for A1: nothing goes to peer A yet.
	nap 0.5
	assert_eq "$(replies_a2a_texts "$peer_a")" '[]' "posts to A before A1 is answered"
	replies_send "{\"id\":\"$a1\",\"text\":\"reply A1\"}"
	wait_until 10 replies_posted "reply A3"
	assert_eq "$(replies_a2a_texts "$peer_a")" '["reply A1","reply A2","reply A3"]' "posts to A"
	assert_eq "$(replies_a2a_texts "$peer_b")" '["reply B1"]' "posts to B"
	seq_b=$(posts a2a "$WS_ID" | jq --arg p "/workspaces/$peer_b/a2a" '[.[] | select(.path == $p)][0].seq')
	seq_a1=$(posts a2a "$WS_ID" | jq '[.[] | select(.body.params.message.parts[0].text == "reply A1")][0].seq')
	[ "$seq_b" -lt "$seq_a1" ] || { echo "B1 posted at seq $seq_b, A1 at $seq_a1"; return 1; }
	wait_until 10 replies_cursor_is "$b1"
}

@test "--reply-filter maps what the handler prints into replies" {
	local ids
	ids=$(queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"text\":\"hi\"}")
	"$MC_BIN" --api-url "$FAKE_URL" --state-dir "$REPLIES_STATE" --interval 0.05 --heartbeat 1 \
		--reply-filter '{id: .ref, text: .answer}' "$WS_ID" -- \
		jq -c --unbuffered '{answer: ("x:" + .text), ref: .id}' \
		</dev/null >"$T/out" 2>>"$T/err" 3>&- &
	REPLIES_PID=$!
	wait_until 10 replies_posted "x:hi"
	assert_eq "$(replies_a2a_texts)" '["x:hi"]' "a2a posts"
	wait_until 10 replies_cursor_is "$ids"
	assert_eq "$(replies_errors)" 0 "reply line errors"
}

@test "a --reply-filter that does not compile is a configuration error at start" {
	run "$MC_BIN" --api-url "$FAKE_URL" --state-dir "$REPLIES_STATE" \
		--reply-filter '{id: .ref' "$WS_ID" </dev/null
	[ "$status" -eq 2 ] || { echo "status $status: $output"; return 1; }
	[[ "$output" == *reply-filter* ]]
	assert_eq "$(posts register | jq length)" 0 "register posts"
}

@test "--filter rewrites each message line" {
	local id
	id=$(queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"text\":\"shout this\"}")
	replies_start --filter '.text |= ascii_upcase'
	wait_until 10 replies_lines 1
	assert_eq "$(jq -c '[.id, .text, .source_id, .parts]' "$T/out")" \
		"[\"$id\",\"SHOUT THIS\",\"$PEER_ID\",[{\"kind\":\"text\",\"text\":\"shout this\"}]]" "filtered line"
	replies_send "{\"id\":\"$id\",\"text\":\"ok\"}"
	wait_until 10 replies_posted ok
	wait_until 10 replies_cursor_is "$id"
}

@test "--filter without output skips a message: no line, no post, and it counts as done" {
	local skip keep
	skip=$(queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"text\":\"skip me\"}")
	keep=$(queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"text\":\"keep me\"}")
	replies_start --filter 'select(.text != "skip me")'
	wait_until 10 replies_lines 1
	# The skipped message is done: the cursor passes it before anything is answered.
	wait_until 10 replies_cursor_is "$skip"
	assert_eq "$(jq -r .text "$T/out")" "keep me" "lines written"
	replies_send "{\"id\":\"$keep\"}"
	wait_until 10 replies_cursor_is "$keep"
	assert_eq "$(posts a2a "$WS_ID" | jq length)" 0 "a2a posts"
	assert_eq "$(posts notify "$WS_ID" | jq length)" 0 "notify posts"
	assert_eq "$(grep -c '' "$T/out")" 1 "lines written"
}

@test "a --filter runtime error keeps the message: not written, not done, handed out after a restart" {
	local ids a bad c
	ids=$(queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"count\":3,\"text\":\"m{n}\"}")
	a=$(sed -n 1p <<<"$ids")
	bad=$(sed -n 2p <<<"$ids")
	c=$(sed -n 3p <<<"$ids")
	replies_start --filter 'if .text == "m2" then error("nope") else . end'
	wait_until 10 replies_lines 2
	wait_until 10 grep -q nope "$T/err"
	assert_eq "$(jq -r .text "$T/out" | paste -sd,)" "m1,m3" "lines written"
	replies_send "{\"id\":\"$a\"}" "{\"id\":\"$c\"}"
	wait_until 10 replies_cursor_is "$a"
	wait_until 10 replies_done_above "$c"
	replies_eof
	assert_eq "$REPLIES_RC" 0 "exit status"
	assert_eq "$(replies_state .last_since_id)" "$a" "cursor stops before the failed message"
	assert_eq "$(grep -c '' "$T/out")" 2 "lines written"
	# Without the filter the kept message comes out, and only it.
	replies_start
	wait_until 10 replies_lines 1
	assert_eq "$(jq -c '[.id, .text]' "$T/out")" "[\"$bad\",\"m2\"]" "handed out again"
	replies_send "{\"id\":\"$bad\"}"
	wait_until 10 replies_cursor_is "$c"
	assert_eq "$(grep -c '' "$T/out")" 1 "lines written after the restart"
}

@test "a --filter that does not compile is a configuration error" {
	run "$MC_BIN" --api-url "$FAKE_URL" --state-dir "$REPLIES_STATE" \
		--filter '.text |=' "$WS_ID" </dev/null
	[ "$status" -eq 2 ] || { echo "status $status: $output"; return 1; }
	[[ "$output" == *filter* ]]
	assert_eq "$(posts register | jq length)" 0 "register posts"
}
