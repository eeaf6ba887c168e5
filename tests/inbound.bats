#!/usr/bin/env bats
# inbound.bats: the inbound side of the platform version 2: what each row is (own
# traffic, calls that cannot be served, system turns), peer info, a replay larger than
# one page read back with before_ts, acknowledgements, and canvas uploads fetched into
# the state directory.

load helpers

setup() {
	tagged_setup
}

teardown() {
	tagged_teardown
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

# in_upload JSON_FIELDS: a canvas upload for WS_ID (POST /_control/uploads); prints its
# answer {file_id, uri, row_id}.
in_upload() {
	ctl POST /_control/uploads "{\"workspace_id\":\"$WS_ID\",${1#\{}"
}

# in_uploads: the platform's record of WS_ID's uploads.
in_uploads() {
	ctl GET "/_control/uploads?workspace_id=$WS_ID"
}

# in_sanitized: MC_BIN carries AddressSanitizer (it needs more memory).
in_sanitized() {
	nm -an "$MC_BIN" 2>/dev/null | grep -q '__asan_init' && return 0
	ldd "$MC_BIN" 2>/dev/null | grep -q 'libasan\.so'
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
	tagged_coproc r1
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
	tagged_coproc r1
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
	tagged_once r1 --since-secs 30 --drain-timeout 50 -- sh -c 'tee -a "$0" | jq -c --unbuffered "{id}"' "$T/seen"
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
	tagged_once r1 --since-secs 60 --drain-timeout 50 -- sh -c 'tee -a "$0" | jq -c --unbuffered "{id}"' "$T/seen"
	assert_eq "$RUN_STATUS" 0 "exit status"
	assert_eq "$(jq -r .id "$T/seen" | head -n 10 | paste -sd' ' -)" "${same[*]}" "the ten, in seq order, first"
	assert_eq "$(jq -s -c '[.[].text] == ([range(1; 11) | "s\(.)"] + [range(1; 496) | "m\(.)"])' "$T/seen")" true \
		"then the rest, each once"
}

@test "acknowledgements: the done seq after each save; a failure is retried at the next save" {
	local ids more
	fault '{"endpoint":"ack","status":503,"fail_next":1}'
	mapfile -t ids < <(queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"count\":3,\"text\":\"m{n}\"}")
	tagged_coproc r1
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
	tagged_coproc r1
	wait_until 10 state_file_has '.last_since_id == $id' --arg id "${ids[1]}"
	wait_until 10 eval '[ "$(in_ack_requests)" != "[]" ]'
	more=$(queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"text\":\"more\"}")
	wait_until 10 state_file_has '.last_since_id == $id' --arg id "$more"
	stop_bridge TERM
	assert_eq "$BR_STATUS" 0
	assert_eq "$(in_ack_requests)" '[404]' "ack requests"
	assert_eq "$(grep -Ec '^molecule-connect: (warning|error): ' "$T/r1.err")" 0 "warnings and errors"
}

@test "an upload: fetched into files/ (0700, 0600), acknowledged, handed out with files, answered on the canvas" {
	local up fid row line path
	up=$(in_upload '{"content":"hello, file\n","name":"notes.txt","mime_type":"text/plain"}')
	fid=$(jq -r .file_id <<<"$up")
	row=$(jq -r .row_id <<<"$up")
	tagged_coproc r1
	wait_until 10 in_notified 1
	line=$(cat "$T/r1.seen")
	path=$(realpath "$SD")/$WS_ID/files/$fid-notes.txt
	assert_eq "$(jq -c '{id, source_id, origin, method, text, parts, files}' <<<"$line")" \
		"$(jq -c -n --arg id "$row" --arg p "$path" '{id: $id, source_id: null, origin: "canvas",
			method: "chat_upload_receive", text: "", parts: [],
			files: [{name: "notes.txt", mime_type: "text/plain", size: 12, path: $p}]}')" "the line"
	assert_eq "$(cat "$path")" "hello, file" "the file"
	assert_eq "$(stat -c %a "$path") $(stat -c %a "$SD/$WS_ID/files") $(stat -c %a "$SD/$WS_ID")" "600 700 700" "modes"
	assert_eq "$(ls -A "$SD/$WS_ID/files")" "$fid-notes.txt" "nothing else in files/"
	wait_until 10 eval '[ "$(in_uploads | jq -c ".[0] | [.fetched, .acked]")" = "[1,true]" ]'
	assert_eq "$(posts upload_ack "$WS_ID" | jq -r '.[0].path')" "/workspaces/$WS_ID/pending-uploads/$fid/ack" "ack path"
	assert_eq "$(posts notify "$WS_ID" | jq -r '.[0].body.message')" "h:" "the reply"
	stop_bridge TERM
}

@test "an upload's name is made safe: no way out of files/, no hidden file, no control character" {
	local fid
	fid=$(in_upload '{"content":"x","name":"../../.profile\u0001\nend"}' | jq -r .file_id)
	tagged_coproc r1
	wait_until 10 in_notified 1
	wait_until 10 state_file_has '.last_since_id != ""'
	assert_eq "$(ls -A "$SD/$WS_ID/files")" "$fid-_._.._.profile__end" "stored as"
	assert_eq "$(ls -A "$SD" | sort | paste -sd' ' -)" "$WS_ID $WS_ID.json $WS_ID.lock" "the state directory"
	assert_eq "$(jq -r '.files[0].name' "$T/r1.seen")" "$(printf '../../.profile\001\nend')" "the name as given"
	stop_bridge TERM
}

@test "an upload over --max-file-size is not fetched: a warning, files [], a note in the text" {
	local fid
	fid=$(in_upload '{"size":1000,"name":"big.bin"}' | jq -r .file_id)
	tagged_coproc r1 --max-file-size 999
	wait_until 10 in_notified 1
	assert_eq "$(jq -c '.files' "$T/r1.seen")" '[]' "files"
	assert_eq "$(jq -r '.text' "$T/r1.seen")" \
		'(the uploaded file "big.bin" was not fetched: 1000 bytes, larger than --max-file-size (999 bytes))' "text"
	assert_eq "$(grep -c "^molecule-connect: warning: upload big.bin ($fid) not fetched: 1000 bytes, larger than --max-file-size" "$T/r1.err")" 1 "warning"
	assert_eq "$(in_uploads | jq -c '.[0] | [.fetched, .acked]')" '[0,false]' "on the platform"
	[ ! -e "$SD/$WS_ID/files/$fid-big.bin" ]
	stop_bridge TERM
}

@test "an upload larger than its row says is cut off at --max-file-size while it comes in, and not kept" {
	local fid row
	# The row says 10 bytes; 7000 come. The bytes are counted as they come in.
	fid=$(in_upload '{"size":7000,"name":"big.bin","no_row":true}' | jq -r .file_id)
	row=$(queue_msgs "$WS_ID" "{\"from\":null,\"method\":\"chat_upload_receive\",\"request_body\":{\"file_id\":\"$fid\",
		\"name\":\"big.bin\",\"mimeType\":\"application/octet-stream\",\"size\":10,\"uri\":\"platform-pending:$WS_ID/$fid\"}}")
	tagged_coproc r1 --max-file-size 6000
	wait_until 10 in_notified 1
	assert_eq "$(jq -c '{id, files}' "$T/r1.seen")" "{\"id\":\"$row\",\"files\":[]}" "handed out without it"
	grep -q "^molecule-connect: warning: upload big.bin ($fid) not fetched: larger than --max-file-size (6000 bytes)" "$T/r1.err"
	assert_eq "$(ls -A "$SD/$WS_ID/files")" "" "nothing kept, no temporary file"
	assert_eq "$(in_uploads | jq -c '.[0] | [.fetched, .acked]')" '[1,false]' "fetched, not acknowledged"
	stop_bridge TERM
}

@test "an expired upload: a warning naming it, handed out with files [] and a note" {
	local fid
	fid=$(in_upload '{"content":"late","name":"late.txt"}' | jq -r .file_id)
	ctl POST "/_control/uploads/$fid/expire" >/dev/null
	tagged_coproc r1
	wait_until 10 in_notified 1
	assert_eq "$(jq -c '.files' "$T/r1.seen")" '[]' "files"
	assert_eq "$(jq -r '.text' "$T/r1.seen")" \
		'(the uploaded file "late.txt" was not fetched: it expired on the platform (HTTP 404))' "text"
	assert_eq "$(grep -c "^molecule-connect: warning: upload late.txt ($fid) not fetched: it expired" "$T/r1.err")" 1 "warning"
	stop_bridge TERM
}

@test "a failing upload fetch is retried with backoff, and the messages after it are not held" {
	local fid peer
	fault '{"endpoint":"upload","status":503,"fail_next":2}'
	fid=$(in_upload '{"content":"data","name":"a.txt"}' | jq -r .file_id)
	peer=$(queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"text\":\"meanwhile\"}")
	tagged_coproc r1
	wait_until 15 in_notified 1
	assert_eq "$(jq -r .method "$T/r1.seen" | paste -sd' ' -)" "message/send chat_upload_receive" "handed out"
	assert_eq "$(jq -r '.[0].body.params.message.parts[0].text' <<<"$(posts a2a)")" "h:meanwhile" "the peer's reply"
	assert_eq "$(jq -r 'select(.files != []) | .files[0].size' "$T/r1.seen")" 4 "the file came"
	assert_eq "$(ctl GET /_control/requests | jq --arg p "/workspaces/$WS_ID/pending-uploads/$fid/content" \
		-c '[.[] | select(.path == $p) | .status]')" '[503,503,200]' "fetches"
	assert_eq "$(grep -c "^molecule-connect: warning: fetching upload a.txt ($fid) failed (HTTP 503" "$T/r1.err")" 1 "warnings"
	stop_bridge TERM
}

@test "an upload is never fetched twice: a restart hands it out again from the file already there" {
	local fid path
	fid=$(in_upload '{"content":"once","name":"once.txt"}' | jq -r .file_id)
	tagged_filter r1 --drain-timeout 0.5
	wait_until 10 file_lines "$T/r1.out" 1
	path=$(jq -r '.files[0].path' "$T/r1.out")
	stop_bridge TERM
	tagged_close
	tagged_filter r1 --drain-timeout 0.5
	wait_until 10 file_lines "$T/r1.out" 1
	assert_eq "$(jq -r '.files[0].path' "$T/r1.out")" "$path" "the same file"
	assert_eq "$(in_uploads | jq '.[0].fetched')" 1 "fetched once"
	tagged_reply "{\"id\":\"$(jq -r .id "$T/r1.out")\"}"
	wait_until 10 state_file_has '.last_since_id != ""'
	stop_bridge TERM
	tagged_close
}

@test "a large upload is streamed to disk, not held in memory" {
	local fid path hwm
	fid=$(in_upload '{"size":100000000,"name":"large.bin"}' | jq -r .file_id)
	tagged_filter r1
	wait_until 60 file_lines "$T/r1.out" 1
	path=$(jq -r '.files[0].path' "$T/r1.out")
	assert_eq "$(stat -c %s "$path")" 100000000 "size on disk"
	assert_eq "$(head -c 26 "$path")" abcdefghijklmnopqrstuvwxyz "its bytes"
	hwm=$(awk '/^VmHWM:/ { print $2 }' "/proc/$BR_PID/status")
	echo "peak RSS: $hwm kB"
	in_sanitized || [ "$hwm" -lt $((32 * 1024)) ]
	stop_bridge TERM
	tagged_close
}
