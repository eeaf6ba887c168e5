#!/usr/bin/env bats
# A hostile or broken platform: activity rows whose ids are paths, escapes, NUL bytes or
# 10 kB of text; answers nested 100,000 deep, 100 MiB large, not UTF-8, or dribbled a
# byte a second; redirects to another server on every endpoint. Each one gets a short
# diagnostic line, no crash, no file outside the state directory, no request anywhere
# but the platform's own paths, and the next message still goes through.

load helpers

setup() {
	bridge_setup
	# Deep enough that an id like "../../x" taken as a file name would land in $T.
	SD=$T/a/b/state
	HOSTILE_PIDS=()
	OTHER_PID=
	mkdir -p "$T/cwd" "$T/a/b"
	echo_handler
	# Made now, so that a snapshot of $T taken before the bridge starts still holds.
	: >"$T/seen"
	: >"$T/out"
	: >"$T/err"
}

teardown() {
	local main
	kill_pids "${HOSTILE_PIDS[@]}"
	if [ -n "$OTHER_PID" ]; then
		main=${FAKE_PID:-}
		FAKE_PID=$OTHER_PID
		fake_stop || true
		FAKE_PID=$main
	fi
	fake_stop
}

# hostile_sanitized: true when MC_BIN carries AddressSanitizer (it needs more memory).
hostile_sanitized() {
	nm -an "$MC_BIN" 2>/dev/null | grep -q '__asan_init' && return 0
	ldd "$MC_BIN" 2>/dev/null | grep -q 'libasan\.so'
}

# hostile_bridge [OPTIONS...]: starts the bridge for WS_ID in the empty directory $T/cwd
# with the echo handler as co-process (it answers "h:<text>" and logs message lines to
# $T/seen); logs go to $T/err. Sets BR_PID.
hostile_bridge() {
	(cd "$T/cwd" && exec "$MC_BIN" --api-url "$FAKE_URL" --state-dir "$SD" --interval 0.05 \
		--heartbeat 1 "$@" "$WS_ID" -- sh "$T/echo.sh" "$T/seen") \
		</dev/null >"$T/out" 2>"$T/err" 3>&- &
	BR_PID=$!
	HOSTILE_PIDS+=("$BR_PID")
}

# hostile_other_start: a second fake platform, the target of redirects; sets OTHER_URL,
# OTHER_PORT and OTHER_PID and leaves FAKE_* naming the first one.
hostile_other_start() {
	local url=$FAKE_URL port=$FAKE_PORT pid=$FAKE_PID
	fake_start --rate-limit 0 || return 1
	OTHER_URL=$FAKE_URL OTHER_PORT=$FAKE_PORT OTHER_PID=$FAKE_PID
	FAKE_URL=$url FAKE_PORT=$port FAKE_PID=$pid
	export FAKE_URL FAKE_PORT FAKE_PID
}

# hostile_other_requests: the request log of the second fake platform.
hostile_other_requests() {
	local port=$FAKE_PORT rc=0
	FAKE_PORT=$OTHER_PORT
	ctl GET /_control/requests || rc=$?
	FAKE_PORT=$port
	return "$rc"
}

# hostile_diag [ERE]: the bridge's warning and error lines (those matching ERE too).
hostile_diag() {
	grep -E '^molecule-connect: (warning|error): ' "$T/err" | grep -E -- "${1:-.}" || true
}

# hostile_diag_count [ERE]: how many of them there are.
hostile_diag_count() {
	hostile_diag "$@" | grep -c . || true
}

# hostile_diag_more N [ERE]: there are more than N of them.
hostile_diag_more() {
	[ "$(hostile_diag_count "${2:-.}")" -gt "$1" ]
}

# hostile_row ID: the row of WS_ID with this id, as the platform answers it.
hostile_row() {
	activity "$WS_ID" | jq -c --arg id "$1" '.[] | select(.id == $id)'
}

# hostile_then_after FIRST_TEXT FIRST_ID: a message queued now ("after") is handed
# out and answered after the first one: both replies accepted, in that order, and only
# those two messages handed out. Its id in AFTER_ID.
hostile_then_after() {
	AFTER_ID=$(queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"text\":\"after\"}")
	wait_until 10 a2a_ok_posts 2
	assert_eq "$(a2a_ok_texts | paste -sd' ' -)" "h:$1 h:after" "replies"
	assert_eq "$(jq -r .id "$T/seen" | paste -sd' ' -)" "$2 $AFTER_ID" "messages handed out"
}

# hostile_snapshot: every path under $T but the state directory, sorted.
hostile_snapshot() {
	(cd "$T" && find . -path ./a/b/state -prune -o -print | sort)
}

# hostile_unexpected_requests: the requests the bridge made that are none of the
# platform's own (register, heartbeat, a2a to the peer, activity of WS_ID after a cursor
# the platform handed out or a time window, its acknowledgement, WS_ID's event stream), one "METHOD PATH" a line.
hostile_unexpected_requests() {
	local ids
	ids=$(activity "$WS_ID" | jq -c '[.[].id]') || return 1
	hostile_requests --argjson ids "$ids" '.[] | (.path | [match("since_id=(.*)$").captures[0].string] | first) as $c |
		select((
			(.method == "POST" and (.path == "/registry/register" or .path == "/registry/heartbeat"
				or .path == "/workspaces/'"$PEER_ID"'/a2a" or .path == "/workspaces/'"$WS_ID"'/activity/ack"))
			or (.method == "GET"
				and (.path | test("^/workspaces/'"$WS_ID"'/activity[?]type=a2a_receive&include=peer_info&limit=[0-9]+&(since_secs=[0-9]+(&before_ts=[0-9T:.Z-]+)?|since_id=[0-9a-f-]{36})$"))
				and ($c == null or ($ids | index($c)) != null))
			or (.method == "GET" and .path == "/workspaces/'"$WS_ID"'/events/stream")
		) | not) | "\(.method) \(.path)"' 2>&1
}

# hostile_requests [--argjson NAME JSON] JQ_FILTER: the fake's request log run through a
# jq filter (-r).
hostile_requests() {
	if [ "$1" = --argjson ]; then
		ctl GET /_control/requests | jq -r --argjson "$2" "$3" "$4"
	else
		ctl GET /_control/requests | jq -r "$1"
	fi
}

# hostile_checks BEFORE_SNAPSHOT: what holds after every hostile answer: the bridge runs,
# asked the platform nothing unexpected, wrote nothing outside its state directory,
# logged short valid UTF-8 lines and no sanitizer report; then it stops cleanly.
hostile_checks() {
	proc_alive "$BR_PID" || { echo "the bridge died:"; cat "$T/err"; return 1; }
	assert_eq "$(hostile_unexpected_requests)" "" "unexpected requests"
	assert_eq "$(hostile_snapshot)" "$1" "files outside the state dir"
	assert_eq "$(awk 'length > 1000 { print NR ": " length " bytes" }' "$T/err")" "" "overlong log lines"
	iconv -f UTF-8 -t UTF-8 "$T/err" >/dev/null || { echo "log is not UTF-8"; return 1; }
	iconv -f UTF-8 -t UTF-8 "$T/seen" >/dev/null || { echo "message lines are not UTF-8"; return 1; }
	if grep -E 'Sanitizer|runtime error:' "$T/err"; then
		return 1
	fi
	stop_bridge TERM
	assert_eq "$BR_STATUS" 0 "exit status"
	assert_eq "$(ls -A "$SD" | grep -vxF -e "$WS_ID.json" -e "$WS_ID.lock" | paste -sd' ' -)" "" \
		"other files in the state dir"
}

# hostile_rows_case BAD_ID BAD_SOURCE_ID: a cold start whose first activity answer holds a
# genuine message G, a row with id BAD_ID (the newest), and a real row H with its
# source_id turned into BAD_SOURCE_ID. Both bad rows are skipped with one error line
# each; G is answered; the cursor only ever names rows the platform has; a later message
# is answered. BAD_ID and BAD_SOURCE_ID are jq expressions ($peer and $g name the peer
# and G's id).
hostile_rows_case() {
	local g h raw before
	g=$(queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"text\":\"genuine\"}")
	h=$(queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"text\":\"shadow\"}")
	raw=$(activity "$WS_ID" | jq -c --arg g "$g" --arg h "$h" --arg peer "$PEER_ID" "
		(map(select(.id == \$g))[0]) as \$G | (map(select(.id == \$h))[0]) as \$H |
		[\$G, (\$G | .id = ($1) | .request_body.params.message.parts[0].text = \"bad id\"
			| .created_at = \"2999-01-01T00:00:00.000000Z\"),
		 (\$H | .source_id = ($2))]")
	fault "$(jq -nc --arg raw "$raw" '{endpoint: "activity", raw: $raw, fail_next: 1}')"
	before=$(hostile_snapshot)
	hostile_bridge
	wait_until 10 a2a_ok_posts 1
	wait_until 10 hostile_diag_more 1
	hostile_then_after genuine "$g"
	hostile_diag
	assert_eq "$(hostile_diag_count)" 2 "diagnostic lines"
	assert_eq "$(hostile_diag_count '^molecule-connect: error: skipping an activity row without a valid id$')" 1 \
		"error line for the bad id"
	assert_eq "$(hostile_diag_count "^molecule-connect: error: skipping activity row $h: .*source_id is neither a UUID nor null")" 1 \
		"error line for the bad source_id"
	assert_eq "$(posts a2a | jq -r '[.[].path] | unique | join(" ")')" "/workspaces/$PEER_ID/a2a" "post paths"
	hostile_checks "$before"
	# The cursor is the last real row.
	jq -e --arg f "$AFTER_ID" '.last_since_id == $f' "$SD/$WS_ID.json" >/dev/null
}

@test "rows with %2F in id and source_id: skipped with an error line each" {
	hostile_rows_case '"..%2F..%2F..%2Fetc%2Fpasswd"' \
		'$peer + "%2F..%2F..%2Fregistry%2Fheartbeat"'
}

@test "rows with ../ in id and source_id: skipped, nothing leaves the state dir or the platform's paths" {
	local passwd
	passwd=$(md5sum /etc/passwd)
	# A UUID first does not make a path an id; "?" would make the rest a query string.
	hostile_rows_case '$g + "/../../../x"' '"../../_control/shutdown?"'
	assert_eq "$(md5sum /etc/passwd)" "$passwd" "/etc/passwd"
	# The fake platform is still up: nothing reached /_control/shutdown.
	ctl GET /_control/requests >/dev/null
}

@test "rows with a NUL in id and source_id: skipped, the UUID before the NUL is never taken for the id" {
	# The bad id is a made-up UUID then a NUL: the cursor must not become that UUID
	# (the platform would answer 410 and the backlog would be replayed).
	hostile_rows_case '"0e0b1c1e-5d4f-4a3b-9c2d-1e2f3a4b5c6d\u0000/../../x"' '$peer + "\u0000/../x"'
	assert_eq "$(hostile_requests '[.[] | select(.status == 410)] | length')" 0 "410 answers"
}

@test "a row whose id is G's id, a NUL and more does not shadow G" {
	local g raw before
	g=$(queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"text\":\"genuine\"}")
	# The bad row comes first: taken for G, it would mark G done before G is seen.
	raw=$(hostile_row "$g" | jq -c '[(.id += "\u0000" | .created_at = "2000-01-01T00:00:00.000000Z"), .]')
	fault "$(jq -nc --arg raw "$raw" '{endpoint: "activity", raw: $raw, fail_next: 1}')"
	before=$(hostile_snapshot)
	hostile_bridge
	wait_until 10 a2a_ok_posts 1
	assert_eq "$(a2a_ok_texts)" "h:genuine" "replies"
	assert_eq "$(jq -r .id "$T/seen")" "$g" "messages handed out"
	assert_eq "$(hostile_diag)" "molecule-connect: error: skipping an activity row without a valid id" \
		"diagnostic lines"
	hostile_checks "$before"
}

@test "rows with 10 kB of text in id and source_id: one short error line each" {
	# Multi-byte characters: a cut error line must still be UTF-8.
	hostile_rows_case '"../" * 3414' '"é" * 5120'
	! grep -q 'éééééééééééééééééééééééééééééééééééééééééééééé' "$T/err"
	# Cut between characters, not inside one (which would show as U+FFFD).
	grep -q 'source_id is neither a UUID nor null: "ééé*[.][.][.]$' "$T/err"
	! grep -q '�' "$T/err"
}

@test "an activity answer nested 100,000 deep: an error line, then the next poll works" {
	local before n g
	{
		printf '{"endpoint":"activity","fail_next":1,"raw":"'
		printf '%100000s' '' | tr ' ' '['
		printf '%100000s' '' | tr ' ' ']'
		printf '"}'
	} >"$T/deep.json"
	g=$(queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"text\":\"first\"}")
	hostile_bridge
	wait_until 10 a2a_ok_posts 1
	before=$(hostile_snapshot)
	n=$(hostile_diag_count)
	ctl POST /_control/faults "$(cat "$T/deep.json")" >/dev/null
	wait_until 10 hostile_diag_more "$n"
	hostile_then_after first "$g"
	assert_eq "$(hostile_diag_count)" $((n + 1)) "diagnostic lines"
	hostile_diag | grep -q '^molecule-connect: error: activity answer is not JSON (.*depth'
	hostile_checks "$before"
}

# hostile_big_answer CHUNKED: a 100 MiB activity answer; the bridge refuses it with one
# line, its peak memory stays far below 100 MiB, and it carries on.
hostile_big_answer() {
	local before g hwm limit_kb gets
	g=$(queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"text\":\"first\"}")
	hostile_bridge
	wait_until 10 a2a_ok_posts 1
	before=$(hostile_snapshot)
	assert_eq "$(hostile_diag_count)" 0 "diagnostic lines before"
	gets=$(hostile_requests '[.[] | select(.method == "GET" and (.path | contains("/activity")))] | length')
	fault "{\"endpoint\":\"activity\",\"body_bytes\":104857600,\"chunked\":$1,\"fail_next\":1}"
	wait_until 20 hostile_diag_more 0
	hostile_then_after first "$g"
	hostile_diag
	assert_eq "$(hostile_diag_count)" 1 "diagnostic lines"
	assert_eq "$(hostile_diag_count '^molecule-connect: warning: a page of [0-9]+ activity rows is larger than 64 MiB: asking for [0-9]+ at a time$')" 1 \
		"the line says what happened"
	# After it, a page asks for no more rows than the line said.
	local fewer
	fewer=$(hostile_diag 'larger than 64 MiB' | sed 's/.*asking for \([0-9]*\) at a time$/\1/')
	assert_eq "$(hostile_requests --argjson n "$gets" '[.[] | select(.method == "GET" and (.path | contains("/activity")))][$n:]
		| map(.path | capture("limit=(?<l>[0-9]+)") | .l | tonumber) | any(. <= '"$fewer"')')" true \
		"a smaller page asked for after the fault"
	! grep -q aaaaaaaaaaaaaaaa "$T/err"
	hwm=$(awk '/^VmHWM:/ { print $2 }' "/proc/$BR_PID/status")
	limit_kb=$((96 * 1024))
	if hostile_sanitized; then
		# AddressSanitizer keeps freed blocks in quarantine and adds shadow memory.
		limit_kb=$((256 * 1024))
	fi
	echo "peak RSS: $hwm kB (limit $limit_kb kB)"
	[ "$hwm" -lt "$limit_kb" ]
	hostile_checks "$before"
	HOSTILE_HWM_KB=$hwm
}

@test "a 100 MiB activity answer with Content-Length: refused before its body is read" {
	hostile_big_answer false
	# Nothing of the body was kept: the peak stays near an idle bridge's.
	hostile_sanitized || [ "$HOSTILE_HWM_KB" -lt $((32 * 1024)) ]
}

@test "a 100 MiB activity answer without Content-Length: cut off at 64 MiB, peak RSS < 96 MiB" {
	hostile_big_answer true
}

@test "a first start whose replay is larger than 64 MiB asks again for half as many rows, and carries on" {
	local g before limits
	g=$(queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"text\":\"first\"}")
	fault '{"endpoint":"activity","body_bytes":104857600,"chunked":true,"fail_next":1}'
	before=$(hostile_snapshot)
	hostile_bridge
	wait_until 20 a2a_ok_posts 1
	assert_eq "$(a2a_ok_texts)" "h:first" "reply"
	assert_eq "$(jq -r .id "$T/seen")" "$g" "message handed out"
	# A replay by time, no cursor yet: 500 rows, then 250, newest first as always.
	limits=$(hostile_requests '[.[] | select(.method == "GET" and (.path | contains("/activity")))][0:2]
		| map(.path | capture("limit=(?<l>[0-9]+)&since_secs=") | .l) | join(" ")')
	assert_eq "$limits" "500 250" "rows asked for by the first two replays"
	assert_eq "$(hostile_diag_count)" 1 "diagnostic lines"
	assert_eq "$(hostile_diag_count '^molecule-connect: warning: a page of 500 activity rows is larger than 64 MiB: asking for 250 at a time$')" 1 \
		"the line says what happened"
	hostile_checks "$before"
}

@test "invalid UTF-8 in an activity answer: replaced in text, an error line for ids and for bytes outside strings" {
	local g h raw before n f
	g=$(queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"text\":\"genuine\"}")
	h=$(queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"text\":\"shadow\"}")
	# Placeholders, then swapped for bytes: BADTEXT for a lone continuation byte and a
	# truncated sequence, BADID for 0xff 0xfe, BADSRC for an overlong "/" (0xc0 0xaf).
	raw=$(activity "$WS_ID" | jq -c --arg g "$g" --arg h "$h" --arg peer "$PEER_ID" '
		(map(select(.id == $g))[0]) as $G | (map(select(.id == $h))[0]) as $H |
		[($G | .request_body.params.message.parts[0].text = "ok BADTEXT ok"),
		 ($G | .id = "BADID../x"), ($H | .source_id = ($peer + "BADSRC..BADSRCx"))]')
	raw=${raw//BADTEXT/$'\x80\xe2\x82'}
	raw=${raw//BADID/$'\xff\xfe'}
	raw=${raw//BADSRC/$'\xc0\xaf'}
	fault "{\"endpoint\":\"activity\",\"fail_next\":1,\"raw_base64\":\"$(printf '%s' "$raw" | base64 -w0)\"}"
	before=$(hostile_snapshot)
	hostile_bridge
	wait_until 10 a2a_ok_posts 1
	wait_until 10 hostile_diag_more 1
	# The text reaches the handler as valid UTF-8, the bad bytes replaced.
	assert_eq "$(jq -r .text "$T/seen")" "ok �� ok" "text handed out"
	assert_eq "$(a2a_ok_texts)" "h:ok �� ok" "reply"
	hostile_diag
	assert_eq "$(hostile_diag_count)" 2 "diagnostic lines"
	assert_eq "$(hostile_diag_count '^molecule-connect: error: skipping an activity row without a valid id$')" 1 \
		"error line for the bad id"
	assert_eq "$(hostile_diag_count "^molecule-connect: error: skipping activity row $h: .*source_id is neither")" 1 \
		"error line for the bad source_id"

	# Bytes that are no JSON at all, and a raw NUL byte: the whole answer is refused.
	n=$(hostile_diag_count)
	fault "{\"endpoint\":\"activity\",\"fail_next\":1,\"raw_base64\":\"$(printf '[\xff\xfe\x00]' | base64 -w0)\"}"
	wait_until 10 hostile_diag_more "$n"
	f=$(queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"text\":\"after\"}")
	wait_until 10 a2a_ok_posts 2
	assert_eq "$(hostile_diag_count)" $((n + 1)) "diagnostic lines"
	hostile_diag | grep -q '^molecule-connect: error: activity answer is not JSON'
	assert_eq "$(jq -r .id "$T/seen" | paste -sd' ' -)" "$g $f" "messages handed out"
	hostile_checks "$before"
}

@test "an activity answer dribbled a byte a second: abandoned after 15 s, heartbeats go on meanwhile" {
	local before g f t0 elapsed gaps gap
	g=$(queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"text\":\"first\"}")
	hostile_bridge
	wait_until 10 a2a_ok_posts 1
	before=$(hostile_snapshot)
	assert_eq "$(hostile_diag_count)" 0 "diagnostic lines before"
	t0=$(now_ms)
	fault '{"endpoint":"activity","body_bytes":100000,"dribble_ms":1000,"fail_next":1}'
	# Queued while the poll hangs: it comes with the first poll after the cut-off.
	f=$(queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"text\":\"after\"}")
	wait_until 24 hostile_diag_more 0
	elapsed=$(($(now_ms) - t0))
	hostile_diag
	assert_eq "$(hostile_diag_count '^molecule-connect: warning: GET [^ ]*/activity[?][^ ]*: .*too slow.*, attempt 1, retrying in [0-9]+ ms$')" 1 \
		"the line says what happened"
	# Cut off by the low-speed limit (16 B/s over 15 s), not by the 60 s transfer timeout.
	[ "$elapsed" -ge 14500 ] && [ "$elapsed" -lt 22000 ] || { echo "abandoned after $elapsed ms"; return 1; }
	wait_until 10 a2a_ok_posts 2
	assert_eq "$(a2a_ok_texts | paste -sd' ' -)" "h:first h:after" "replies"
	assert_eq "$(jq -r .id "$T/seen" | paste -sd' ' -)" "$g $f" "messages handed out"
	# Heartbeats every second all along.
	gaps=$(posts heartbeat | jq -r --argjson t0 "$t0" \
		'[.[] | select(.t_ms >= $t0 - 1000) | .t_ms] | [range(1; length) as $i | .[$i] - .[$i - 1]] | map(tostring) | join(" ")')
	[ "$(wc -w <<<"$gaps")" -ge 13 ] || { echo "heartbeat gaps (ms): $gaps"; return 1; }
	for gap in $gaps; do
		[ "$gap" -lt 2000 ] || { echo "heartbeat gaps (ms): $gaps"; return 1; }
	done
	assert_eq "$(hostile_diag_count)" 1 "diagnostic lines"
	hostile_checks "$before"
}

# hostile_redirect_fault ENDPOINT STATUS PATH: the next request to ENDPOINT is answered
# STATUS with Location: the second fake platform's PATH, and a body not to be logged.
hostile_redirect_fault() {
	fault "{\"endpoint\":\"$1\",\"status\":$2,\"redirect\":\"$OTHER_URL$3\",\"fail_next\":1,\"body\":\"<html>moved: body-marker</html>\"}"
}

# hostile_redirect_checks: nothing reached the second fake platform, the redirect's body
# was not logged, the token nowhere in the log.
hostile_redirect_checks() {
	assert_eq "$(hostile_other_requests)" "[]" "requests to the redirect's target"
	! grep -q body-marker "$T/err"
	! grep -qF -- "$WS_TOKEN" "$T/err"
}

@test "a redirect on activity: not followed, one warning, the next poll works" {
	local before g loc
	hostile_other_start
	g=$(queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"text\":\"first\"}")
	hostile_bridge
	wait_until 10 a2a_ok_posts 1
	before=$(hostile_snapshot)
	# A long target: the log shows a cut version of it.
	loc="/steal?$(printf '%5000s' '' | tr ' ' x)"
	hostile_redirect_fault activity 302 "$loc"
	wait_until 10 hostile_diag_more 0
	hostile_then_after first "$g"
	hostile_diag
	assert_eq "$(hostile_diag_count)" 1 "diagnostic lines"
	assert_eq "$(hostile_diag_count "^molecule-connect: warning: GET [^ ]*/activity[?][^ ]*: HTTP 302, redirect to $OTHER_URL/steal[?]x+[.][.][.] \\(not followed\\), attempt 1, retrying in [0-9]+ ms\$")" 1 \
		"the line names the redirect"
	assert_eq "$(hostile_requests '[.[] | select(.status == 302)] | length')" 1 "redirects answered"
	hostile_redirect_checks
	hostile_checks "$before"
}

@test "a redirect on register: not followed, one warning, registered on the next attempt" {
	local before g
	hostile_other_start
	g=$(queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"text\":\"first\"}")
	hostile_redirect_fault register 308 /registry/register
	before=$(hostile_snapshot)
	hostile_bridge
	wait_until 10 a2a_ok_posts 1
	assert_eq "$(posts register | jq -r 'map(.status) | join(" ")')" "308 200" "register statuses"
	hostile_diag
	assert_eq "$(hostile_diag_count)" 1 "diagnostic lines"
	assert_eq "$(hostile_diag_count "^molecule-connect: warning: POST [^ ]*/registry/register: HTTP 308, redirect to $OTHER_URL/registry/register \\(not followed\\), attempt 1, retrying in [0-9]+ ms\$")" 1 \
		"the line names the redirect"
	hostile_redirect_checks
	# And the bridge carries on: a later message is answered too.
	queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"text\":\"after\"}" >/dev/null
	wait_until 10 a2a_ok_posts 2
	assert_eq "$(a2a_ok_texts | paste -sd' ' -)" "h:first h:after" "replies"
	hostile_checks "$before"
}

@test "a redirect on heartbeat: not followed, one warning, the next heartbeat goes to the platform" {
	local before t1
	hostile_other_start
	hostile_bridge
	wait_until 10 eval '[ "$(posts heartbeat | jq length)" -ge 1 ]'
	before=$(hostile_snapshot)
	hostile_redirect_fault heartbeat 301 /registry/heartbeat
	wait_until 10 hostile_diag_more 0
	t1=$(now_ms)
	wait_until 10 eval '[ "$(posts heartbeat | jq "[.[] | select(.status == 200 and .t_ms > $t1)] | length")" -ge 1 ]'
	queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"text\":\"after\"}" >/dev/null
	wait_until 10 a2a_ok_posts 1
	assert_eq "$(a2a_ok_texts)" "h:after" "replies"
	hostile_diag
	assert_eq "$(hostile_diag_count)" 1 "diagnostic lines"
	assert_eq "$(hostile_diag_count "^molecule-connect: warning: heartbeat failed \\(HTTP 301: redirect to $OTHER_URL/registry/heartbeat \\(not followed\\)\\)\$")" 1 \
		"the line names the redirect"
	assert_eq "$(posts heartbeat | jq '[.[] | select(.status == 301)] | length')" 1 "redirected heartbeats"
	hostile_redirect_checks
	hostile_checks "$before"
}

@test "a redirect on a2a: not followed, one warning, the reply is posted again and not lost" {
	local before g f
	hostile_other_start
	hostile_bridge
	wait_until 10 eval '[ "$(posts heartbeat | jq length)" -ge 1 ]'
	before=$(hostile_snapshot)
	hostile_redirect_fault a2a 307 "/workspaces/$PEER_ID/a2a"
	g=$(queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"text\":\"first\"}")
	wait_until 10 a2a_ok_posts 1
	f=$(queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"text\":\"after\"}")
	wait_until 10 a2a_ok_posts 2
	assert_eq "$(posts a2a | jq -r 'map("\(.status) \(.body.params.message.parts[0].text)") | join(", ")')" \
		"307 h:first, 200 h:first, 200 h:after" "a2a posts"
	# The same reply both times, not a new one.
	assert_eq "$(posts a2a | jq -r '[.[0:2][].body.params.message.messageId] | unique | length')" 1 "message ids"
	assert_eq "$(jq -r .id "$T/seen" | paste -sd' ' -)" "$g $f" "messages handed out"
	hostile_diag
	assert_eq "$(hostile_diag_count)" 1 "diagnostic lines"
	assert_eq "$(hostile_diag_count "^molecule-connect: warning: POST [^ ]*/workspaces/$PEER_ID/a2a: HTTP 307, redirect to $OTHER_URL/workspaces/$PEER_ID/a2a \\(not followed\\), attempt 1, retrying in [0-9]+ ms\$")" 1 \
		"the line names the redirect"
	hostile_redirect_checks
	hostile_checks "$before"
}
