# Shared bats helpers: start/stop the fake platform, drive its control API, act as a platform client.
# shellcheck shell=bash

# now_us: the wall clock in microseconds.
now_us() {
	local t="${EPOCHREALTIME/[.,]/}"
	echo "$((10#$t))"
}

# now_ms: the wall clock in milliseconds.
now_ms() {
	echo "$(($(now_us) / 1000))"
}

# assert_eq ACTUAL EXPECTED [WHAT]: fails, showing both, unless they are equal.
assert_eq() {
	[ "$1" = "$2" ] && return 0
	printf '%s\n  expected: %s\n  actual:   %s\n' "${3:-assert_eq}" "$2" "$1" >&2
	return 1
}

# nap SECONDS: sleeps without starting a process (a read that times out on a pipe
# nobody writes to).
nap() {
	if [ -z "${_NAP_FD:-}" ]; then
		exec {_NAP_FD}<> <(:)
	fi
	read -rt "$1" -u "$_NAP_FD" _ || true
}

# fake_start [extra fake-platform args...]: starts the fake platform on a kernel-chosen
# loopback port and exports FAKE_URL, FAKE_PORT and FAKE_PID.
fake_start() {
	local port_file="$BATS_TEST_TMPDIR/port" deadline
	: "${FAKE_BIN:?FAKE_BIN must name the fake-platform binary}"
	rm -f "$port_file"
	# fd 3 is bats' own: a background child holding it would make bats wait for it.
	"$FAKE_BIN" --port-file "$port_file" "$@" </dev/null >/dev/null \
		2>>"$BATS_TEST_TMPDIR/fake.log" 3>&- &
	FAKE_PID=$!
	export FAKE_PID
	deadline=$(($(now_us) + 10000000))
	while [ ! -s "$port_file" ]; do
		if ! kill -0 "$FAKE_PID" 2>/dev/null; then
			echo "fake platform exited at start:" >&2
			cat "$BATS_TEST_TMPDIR/fake.log" >&2
			unset FAKE_PID
			return 1
		fi
		if [ "$(now_us)" -gt "$deadline" ]; then
			echo "fake platform did not write its port file within 10 s" >&2
			return 1
		fi
		nap 0.005
	done
	read -r FAKE_PORT <"$port_file"
	FAKE_URL="http://127.0.0.1:$FAKE_PORT"
	export FAKE_PORT FAKE_URL
}

# fake_stop: stops the fake platform started by fake_start; safe to call twice. Fails
# when the fake platform exited with an error of its own (a sanitizer report, say);
# death by a signal a test sent is not its fault, and 127 is "not a child of this
# shell" (started in setup_file, say).
fake_stop() {
	[ -n "${FAKE_PID:-}" ] || return 0
	local i rc=0
	kill -TERM "$FAKE_PID" 2>/dev/null || true
	for ((i = 0; i < 1000; i++)); do
		kill -0 "$FAKE_PID" 2>/dev/null || break
		nap 0.005
	done
	if kill -KILL "$FAKE_PID" 2>/dev/null; then
		echo "fake platform did not stop within 5 s of SIGTERM" >&2
	fi
	wait "$FAKE_PID" 2>/dev/null || rc=$?
	unset FAKE_PID
	if [ "$rc" -gt 0 ] && [ "$rc" -lt 127 ]; then
		echo "fake platform exited with status $rc:" >&2
		tail -n 40 "$BATS_TEST_TMPDIR/fake.log" >&2
		return 1
	fi
}

# fake_restart [extra args...]: stops the fake platform and starts a fresh one (empty
# state) on the same port, so a client keeps its URL.
fake_restart() {
	local port="$FAKE_PORT"
	fake_stop
	fake_start --port "$port" "$@"
}

_byte_length() {
	local LC_ALL=C
	_BYTE_LENGTH=${#1}
}

# fake_http METHOD PATH [BODY [HEADER...]]: one HTTP/1.0 exchange with the fake
# platform through bash's /dev/tcp (no process to start: the suite makes thousands of
# these). HEADERs are "Name: value" lines to add. Sets HTTP_CODE, HTTP_BODY and
# HTTP_HEADERS (the answer's header lines, names lower-cased).
fake_http() {
	local method="$1" path="$2" body="${3-}" fd line name length=0 extra=""
	shift 2
	[ $# -eq 0 ] || shift
	for line in "$@"; do
		extra+="$line"$'\r\n'
	done
	exec {fd}<>"/dev/tcp/127.0.0.1/$FAKE_PORT" || return 1
	_byte_length "$body"
	printf '%s %s HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n%s' \
		"$method" "$path" "$_BYTE_LENGTH" "$extra" "$body" >&"$fd"
	HTTP_CODE=000
	HTTP_BODY=
	HTTP_HEADERS=
	if IFS= read -r line <&"$fd"; then
		HTTP_CODE=${line#* }
		HTTP_CODE=${HTTP_CODE%% *}
	fi
	while IFS= read -r line <&"$fd"; do
		line=${line%$'\r'}
		[ -n "$line" ] || break
		name=${line%%:*}
		HTTP_HEADERS+="${name,,}:${line#*:}"$'\n'
		[ "${name,,}" != content-length ] || length=${line#*: }
	done
	# bash reads a socket a byte at a time: leave long bodies to cat.
	if [ "$length" -gt 16384 ]; then
		HTTP_BODY=$(cat <&"$fd")
	else
		IFS= read -r -d '' HTTP_BODY <&"$fd" || true
	fi
	exec {fd}>&-
	[ "$HTTP_CODE" != 000 ]
}

# http_header NAME: a header of the last fake_http answer ("" when absent).
http_header() {
	local line name="${1,,}"
	while IFS= read -r line; do
		if [ "${line%%:*}" = "$name" ]; then
			line=${line#*:}
			echo "${line# }"
			return 0
		fi
	done <<<"$HTTP_HEADERS"
	echo ""
}

# ctl METHOD PATH [JSON]: calls the control API; prints the answer; fails on non-2xx.
ctl() {
	fake_http "$@" || return 1
	printf '%s\n' "$HTTP_BODY"
	[[ "$HTTP_CODE" == 2?? ]]
}

# _ws_from_answer: "ID TOKEN" of a POST /_control/workspaces answer in HTTP_BODY.
_ws_from_answer() {
	[[ "$HTTP_BODY" =~ \"id\":\"([^\"]*)\" ]] || return 1
	_WS_ID=${BASH_REMATCH[1]}
	_WS_TOKEN=null
	if [[ "$HTTP_BODY" =~ \"token\":\"([^\"]*)\" ]]; then
		_WS_TOKEN=${BASH_REMATCH[1]}
	fi
}

# new_ws [JSON]: creates a workspace (see POST /_control/workspaces); sets WS_ID and
# WS_TOKEN and prints "ID TOKEN" (TOKEN is "null" for a workspace without one).
new_ws() {
	ctl POST /_control/workspaces "${1:-"{}"}" >/dev/null && _ws_from_answer || return 1
	WS_ID=$_WS_ID
	WS_TOKEN=$_WS_TOKEN
	echo "$WS_ID $WS_TOKEN"
}

# new_peer [JSON]: the same for a second workspace; sets PEER_ID and PEER_TOKEN.
new_peer() {
	ctl POST /_control/workspaces "${1:-"{}"}" >/dev/null && _ws_from_answer || return 1
	PEER_ID=$_WS_ID
	PEER_TOKEN=$_WS_TOKEN
	echo "$PEER_ID $PEER_TOKEN"
}

# queue_msgs WS [JSON_FIELDS]: queues inbound messages for WS (fields of
# POST /_control/messages, a JSON object); prints the new row ids, one per line,
# oldest first.
queue_msgs() {
	local fields="${2:-"{}"}" body ids list
	fields="${fields#"${fields%%[![:space:]]*}"}"
	fields="${fields%"${fields##*[![:space:]]}"}"
	body="{\"workspace_id\":\"$1\""
	[[ "$fields" =~ ^\{[[:space:]]*\}[[:space:]]*$ ]] || body+=",${fields#\{}"
	[[ "$body" == *\} ]] || body+="}"
	ctl POST /_control/messages "$body" >/dev/null || { echo "$HTTP_BODY" >&2; return 1; }
	ids=${HTTP_BODY#*[}
	ids=${ids%]*}
	ids=${ids//\"/}
	IFS=, read -ra list <<<"$ids"
	[ ${#list[@]} -eq 0 ] || printf '%s\n' "${list[@]}"
}

# posts [KIND [WORKSPACE_ID]]: the JSON array of recorded posts (all kinds when KIND is empty).
posts() {
	local q=""
	[ -n "${1:-}" ] && q="kind=$1"
	[ -n "${2:-}" ] && q="${q:+$q&}workspace_id=$2"
	ctl GET "/_control/posts${q:+?$q}"
}

# activity WS: every row of WS, oldest first (from the control API, no auth, no limit).
activity() {
	ctl GET "/_control/activity?workspace_id=$1"
}

# fault JSON: adds an injected fault (POST /_control/faults).
fault() {
	ctl POST /_control/faults "$1" >/dev/null
}

# wait_until TIMEOUT_SECS CMD...: runs CMD every 50 ms until it succeeds (prints its
# output, returns 0) or TIMEOUT_SECS pass (prints its last output, returns 1).
wait_until() {
	local timeout="$1" out deadline whole fraction=0
	shift
	whole=${timeout%%.*}
	[[ "$timeout" != *.* ]] || fraction=${timeout#*.}000000
	deadline=$(($(now_us) + ${whole:-0} * 1000000 + 10#${fraction:0:6}))
	while :; do
		if out=$("$@" 2>&1); then
			[ -z "$out" ] || printf '%s\n' "$out"
			return 0
		fi
		if [ "$(now_us)" -ge "$deadline" ]; then
			printf 'wait_until: timed out after %ss: %s\n' "$timeout" "$*" >&2
			[ -z "$out" ] || printf '%s\n' "$out"
			return 1
		fi
		nap 0.05
	done
}

# api METHOD PATH TOKEN [JSON [CURL_ARGS...]]: one request as a client of the platform.
# Prints the status code on the first line and the body on the second. An empty TOKEN
# sends no Authorization header; an empty JSON sends no body. CURL_ARGS can add headers
# (-H 'X-Workspace-ID: ...') or dump the answer's headers (-D FILE).
api() {
	local method="$1" path="$2" token="$3" json="${4:-}"
	local body_file="$BATS_TEST_TMPDIR/api.$BASHPID.body"
	local args=(-sS -X "$method" -o "$body_file" -w '%{http_code}')
	shift 3
	[ $# -gt 0 ] && shift
	[ -n "$token" ] && args+=(-H "Authorization: Bearer $token")
	[ -n "$json" ] && args+=(-H 'Content-Type: application/json' --data-binary "$json")
	local code
	code=$(curl "${args[@]}" "$@" "$FAKE_URL$path") || return 1
	printf '%s\n' "$code"
	cat "$body_file"
	rm -f "$body_file"
	echo
}

# ---- a bridge under test: BR_PID, its state in $SD ----

# proc_alive PID: true while PID runs (a zombie does not count).
proc_alive() {
	local st
	st=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null) || return 1
	[ -n "$st" ] && [ "${st:0:1}" != Z ]
}

# stop_bridge SIGNAL: signals BR_PID and waits for it (at most 15 s, then SIGKILL);
# sets BR_STATUS.
stop_bridge() {
	kill "-$1" "$BR_PID"
	if ! wait_until 15 eval '! proc_alive "$BR_PID"' >/dev/null; then
		kill -KILL "$BR_PID"
	fi
	BR_STATUS=0
	wait "$BR_PID" || BR_STATUS=$?
}

# file_lines FILE N: FILE has at least N lines.
file_lines() {
	[ -f "$1" ] && [ "$(wc -l <"$1")" -ge "$2" ]
}

# a2a_ok_texts: the first text part of every a2a post the platform accepted, one a
# line, in posting order.
a2a_ok_texts() {
	posts a2a | jq -r '.[] | select(.status == 200) | .body.params.message.parts[0].text'
}

# a2a_ok_posts N: at least N a2a posts were accepted.
a2a_ok_posts() {
	[ "$(a2a_ok_texts | wc -l)" -ge "$1" ]
}

# state_file_has JQ_EXPR [jq args...]: $SD/$WS_ID.json exists and JQ_EXPR holds on it.
state_file_has() {
	local expr=$1
	shift
	[ -f "$SD/$WS_ID.json" ] && jq -e "$@" "$expr" "$SD/$WS_ID.json" >/dev/null
}

# line_ids FILE: the ids of the message lines in FILE, space-separated.
line_ids() {
	jq -r .id "$1" | paste -sd' ' -
}

# bridge_setup: what a test of a running bridge starts from: T (the test's own
# directory), the fake platform, a workspace (WS_ID, its token exported as
# MOLECULE_WORKSPACE_TOKEN) and a peer (PEER_ID); no stray configuration.
bridge_setup() {
	: "${MC_BIN:?MC_BIN must name the built molecule-connect}"
	unset XDG_CONFIG_HOME MOLECULE_API_URL MOLECULE_ORG_ID
	T=$BATS_TEST_TMPDIR
	fake_start --rate-limit 0
	new_ws >/dev/null
	new_peer >/dev/null
	export MOLECULE_WORKSPACE_TOKEN=$WS_TOKEN
}

# echo_handler: writes $T/echo.sh, a handler that answers "h:<text>" and logs every
# message line it gets to the file named by its first argument.
echo_handler() {
	cat >"$T/echo.sh" <<-'EOF'
		#!/bin/sh
		tee -a "$1" | jq -c --unbuffered '{id, text: ("h:" + .text)}'
	EOF
}

# kill_pids PID...: SIGKILL and reap each (for teardown).
kill_pids() {
	local pid
	for pid in "$@"; do
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
}

# ---- bridges by tag: $T/TAG.out, $T/TAG.err, $T/TAG.seen ----

# tagged_setup: bridge_setup, the state in $SD, the echo handler; tagged_teardown
# ends what the tagged_* functions started and fails on a sanitizer report in any
# $T/*.err.
tagged_setup() {
	bridge_setup
	SD=$T/state
	TAGGED_PIDS=()
	TAGGED_FIFO_OPEN=
	echo_handler
}

tagged_teardown() {
	local rc=0
	kill_pids "${TAGGED_PIDS[@]}"
	[ -z "$TAGGED_FIFO_OPEN" ] || exec 5>&-
	if grep -Eqs 'Sanitizer|runtime error:' "$T"/*.err; then
		grep -Es 'Sanitizer|runtime error:' "$T"/*.err | head -n 20 >&2
		rc=1
	fi
	fake_stop || rc=1
	return "$rc"
}

# tagged_filter TAG [OPTIONS...]: the bridge for WS_ID in filter mode in the
# background: messages to $T/TAG.out, replies read from the FIFO $T/TAG.in (fd 5
# holds it open: write them with tagged_reply, close it with tagged_close), logs to
# $T/TAG.err. Sets BR_PID.
tagged_filter() {
	local tag=$1
	shift
	rm -f "$T/$tag.in"
	mkfifo "$T/$tag.in"
	exec 5<>"$T/$tag.in"
	TAGGED_FIFO_OPEN=1
	"$MC_BIN" --api-url "$FAKE_URL" --state-dir "$SD" --interval 0.05 --heartbeat 1 "$@" \
		"$WS_ID" <"$T/$tag.in" >"$T/$tag.out" 2>"$T/$tag.err" 3>&- 5>&- &
	BR_PID=$!
	TAGGED_PIDS+=("$BR_PID")
}

tagged_reply() {
	printf '%s\n' "$1" >&5
}

tagged_close() {
	exec 5>&-
	TAGGED_FIFO_OPEN=
}

# tagged_coproc TAG [OPTIONS...]: the bridge in the background with the echo handler
# as co-process (it answers "h:<text>" and logs message lines to $T/TAG.seen). Sets
# BR_PID.
tagged_coproc() {
	local tag=$1
	shift
	: >"$T/$tag.seen"
	"$MC_BIN" --api-url "$FAKE_URL" --state-dir "$SD" --interval 0.05 --heartbeat 1 "$@" \
		"$WS_ID" -- sh "$T/echo.sh" "$T/$tag.seen" </dev/null >"$T/$tag.out" 2>"$T/$tag.err" 3>&- &
	BR_PID=$!
	TAGGED_PIDS+=("$BR_PID")
}

# tagged_once TAG [OPTIONS...] [-- COMMAND...]: a --once run in the foreground (bounded
# by timeout 60), the echo handler as co-process unless a command is given. Status
# in RUN_STATUS.
tagged_once() {
	local tag=$1 args=() cmd=()
	shift
	while [ $# -gt 0 ] && [ "$1" != -- ]; do
		args+=("$1")
		shift
	done
	if [ $# -gt 0 ]; then
		shift
		cmd=("$@")
	else
		cmd=(sh "$T/echo.sh" "$T/$tag.seen")
	fi
	: >"$T/$tag.seen"
	RUN_STATUS=0
	timeout 60 "$MC_BIN" --api-url "$FAKE_URL" --state-dir "$SD" --interval 0.05 --heartbeat 1 \
		--once "${args[@]}" "$WS_ID" -- "${cmd[@]}" </dev/null >"$T/$tag.out" 2>"$T/$tag.err" 3>&- ||
		RUN_STATUS=$?
}

# ---- the fake platform's event stream ----

# sse_streams WS N: the fake platform has N event streams of WS open.
sse_streams() {
	[ "$(ctl GET "/_control/workspaces/$1" | jq .event_streams)" -eq "$2" ]
}

# sse_open WS TOKEN FILE [CURL_ARGS...]: reads WS's event stream into FILE in the
# background (SSE_PID) and returns once the fake platform has it open.
sse_open() {
	local ws=$1 token=$2 file=$3 open
	shift 3
	open=$(ctl GET "/_control/workspaces/$ws" | jq .event_streams) || return 1
	curl -sN -H "Authorization: Bearer $token" "$@" "$FAKE_URL/workspaces/$ws/events/stream" \
		>"$file" 2>/dev/null 3>&- &
	SSE_PID=$!
	wait_until 5 sse_streams "$ws" $((open + 1)) >/dev/null
}

# sse_data FILE: the JSON of each "data:" line of an event stream, one a line.
sse_data() {
	sed -n 's/^data: //p' "$1"
}

# sse_events FILE N: FILE holds at least N events.
sse_events() {
	[ "$(sse_data "$1" | wc -l)" -ge "$2" ]
}
