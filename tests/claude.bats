#!/usr/bin/env bats
# contrib/claude-handler with the real Claude Code CLI (CLAUDE_BIN) against the model
# API stand-in (MODEL_BIN), offline: one claude per conversation, sessions kept and
# resumed, failures retried a bounded number of times, settings checked before any
# message is read. A stand-in claude script only where the real one cannot be made
# to fail (a crash mid-turn).

load helpers

setup() {
	T=$BATS_TEST_TMPDIR
	HANDLER=${TOP_SRCDIR:?TOP_SRCDIR must name the source tree}/contrib/claude-handler
	MODEL_PID=""
	BR_PID=""
	mkdir -p "$T/home" "$T/work" "$T/tmp" "$T/claude-tmp" "$T/bin"
	# A private home and nothing of whoever runs the tests: no credentials, no
	# settings, no sessions; claude talks only to the stand-in.
	unset CLAUDE CLAUDE_ARGS CLAUDE_WORKDIR CLAUDE_TRIES CLAUDE_CONFIG_DIR \
		ANTHROPIC_AUTH_TOKEN ANTHROPIC_MODEL ANTHROPIC_SMALL_FAST_MODEL CLAUDE_CODE_OAUTH_TOKEN \
		CLAUDE_CODE_USE_BEDROCK CLAUDE_CODE_USE_VERTEX MOLECULE_SESSION_ID MOLECULE_WORKSPACE_ID
	export HOME=$T/home TMPDIR=$T/tmp ANTHROPIC_API_KEY=test-key-not-real \
		DISABLE_TELEMETRY=1 CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 DISABLE_AUTOUPDATER=1
	# claude reports a failing API at once instead of backing off for seconds.
	export CLAUDE_CODE_MAX_RETRIES=0
	SESSION=$(cat /proc/sys/kernel/random/uuid)
	cd "$T/work"
}

teardown() {
	if [ -n "$BR_PID" ]; then
		stop_bridge TERM
	fi
	fake_stop
	model_stop
	# A sanitizer build reports on the bridge's stderr.
	! grep -E 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$T/bridge.err" 2>/dev/null
}

# need_claude: skips unless the real CLI is installed; $T/bin/claude is then a shim
# that counts its starts ($T/claude.starts, one pid a line) and keeps each start's
# arguments ($T/claude.argv, one start a line, each argument in <>), then runs it
# with a TMPDIR of its own ($T/claude-tmp), so that $T/tmp is the handler's alone.
need_claude() {
	[ -x "${CLAUDE_BIN:-}" ] ||
		skip "Claude Code is not installed at ${CLAUDE_BIN:-(CLAUDE_BIN unset)}: run .ci/deps"
	cat >"$T/bin/claude" <<-EOF
		#!/bin/sh
		echo \$\$ >>"$T/claude.starts"
		printf '<%s>' "\$@" >>"$T/claude.argv"
		echo >>"$T/claude.argv"
		TMPDIR="$T/claude-tmp" exec "$CLAUDE_BIN" "\$@"
	EOF
	chmod +x "$T/bin/claude"
	export CLAUDE=$T/bin/claude
}

# model_start [ARGS...]: starts the model API stand-in (request log $T/model.log)
# and points claude at it.
model_start() {
	local deadline=$(($(now_us) + 10000000))
	rm -f "$T/model.port"
	"$MODEL_BIN" --port-file "$T/model.port" --log "$T/model.log" "$@" \
		</dev/null >/dev/null 2>>"$T/model.err" 3>&- &
	MODEL_PID=$!
	while [ ! -s "$T/model.port" ]; do
		kill -0 "$MODEL_PID" 2>/dev/null || { cat "$T/model.err" >&2; return 1; }
		[ "$(now_us)" -lt "$deadline" ] || { echo "no port file within 10 s" >&2; return 1; }
		nap 0.005
	done
	export ANTHROPIC_BASE_URL="http://127.0.0.1:$(cat "$T/model.port")"
}

# model_stop: stops the stand-in; fails when it did not exit cleanly (a sanitizer
# report, say).
model_stop() {
	[ -n "$MODEL_PID" ] || return 0
	local rc=0
	kill -TERM "$MODEL_PID" 2>/dev/null || true
	wait "$MODEL_PID" 2>/dev/null || rc=$?
	MODEL_PID=""
	if [ "$rc" -ne 0 ] || grep -E 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$T/model.err"; then
		echo "the model stand-in exited with status $rc:" >&2
		tail -n 40 "$T/model.err" >&2
		return 1
	fi
}

# turns: the message requests the stand-in answered or failed, one JSON object a line.
turns() {
	jq -c 'select(.method == "POST" and (.path | test("^/v1/messages([?]|$)")))' "$T/model.log"
}

# msg ID TEXT [FIELDS]: one message line as the bridge writes it.
msg() {
	jq -cn --arg id "$1" --arg text "$2" "{id: \$id, source_id: null, origin: \"canvas\", text: \$text,
		parts: [{kind: \"text\", text: \$text}], context_id: null} + (${3:-"{}"})"
}

# handle [LINE...]: runs the handler (claude: $CLAUDE) on these lines as its whole
# input; stdout in $T/out, stderr in $T/err, exit status in HANDLER_RC (124: it
# did not finish within a minute).
handle() {
	HANDLER_RC=0
	printf '%s\n' "$@" | handler >"$T/out" 2>"$T/err" || HANDLER_RC=$?
}

# handler [ARG...]: the handler, stopped if it runs for more than a minute; without
# bats' descriptor 3, which would keep bats waiting for whatever it leaves behind.
handler() {
	timeout -k 5 60 "$HANDLER" "$@" 3>&-
}

# reply_field N FIELD: FIELD of the Nth reply line (jq -r).
reply_field() {
	sed -n "$1p" "$T/out" | jq -r ".$2"
}

# starts: how many times claude was started.
starts() {
	if [ -f "$T/claude.starts" ]; then wc -l <"$T/claude.starts"; else echo 0; fi
}

# untouched_by_handler STATUS [VAR=VALUE...]: runs the handler with these settings on
# a file of two messages and checks that it exits with STATUS and one line on stderr
# before reading any of it (what it did not read is still there for the next reader).
untouched_by_handler() {
	local want=$1 rc=0
	shift
	msg m1 hello >"$T/input"
	msg m2 again >>"$T/input"
	{ timeout 60 env "$@" "$HANDLER" >"$T/out" 2>"$T/err" 3>&- || rc=$?; cat >"$T/rest"; } <"$T/input"
	assert_eq "$rc" "$want" "exit status"
	assert_eq "$(wc -l <"$T/err")" 1 "lines on stderr"
	assert_eq "$(wc -c <"$T/out")" 0 "bytes on stdout"
	cmp -s "$T/input" "$T/rest" || { echo "the handler read its input" >&2; return 1; }
}

@test "one message, one reply: the stand-in's answer; quotes, newlines, tabs and unicode intact" {
	need_claude
	model_start
	local text=$'say "hi" \\ and \'bye\'\nsecond line\tafter a tab — ünïcødé ✓ 🚀'
	MOLECULE_SESSION_ID=$SESSION handle "$(msg m1 "$text")"
	assert_eq "$HANDLER_RC" 0 "exit status"
	assert_eq "$(wc -l <"$T/out")" 1 "reply lines"
	assert_eq "$(reply_field 1 id)" m1
	jq -e --arg t "$text" '.text | startswith("reply to: " + $t + " (turn 1, ")' "$T/out" >/dev/null ||
		{ cat "$T/out" >&2; false; }
	# The text reached the model API byte for byte, as the user's turn.
	turns | jq -e --arg t "$text" 'select(.status == 200) | .last_user_text == $t' >/dev/null
	assert_eq "$(starts)" 1 "claude starts"
	grep -q "<--session-id><$SESSION>" "$T/claude.argv"
}

@test "a conversation of four messages: one claude for all, each turn carries the earlier ones" {
	need_claude
	model_start
	MOLECULE_SESSION_ID=$SESSION handle "$(msg m1 q1)" "$(msg m2 q2)" "$(msg m3 q3)" "$(msg m4 q4)"
	assert_eq "$HANDLER_RC" 0 "exit status"
	assert_eq "$(starts)" 1 "claude starts"
	assert_eq "$(jq -r .id "$T/out" | paste -sd,)" m1,m2,m3,m4 "reply ids"
	local i
	for i in 1 2 3 4; do
		[[ "$(reply_field "$i" text)" == "reply to: q$i (turn $i, "* ]] ||
			{ echo "reply $i: $(sed -n "${i}p" "$T/out")" >&2; false; }
	done
	assert_eq "$(turns | tail -n 1 | jq -c .user_texts)" '["q1","q2","q3","q4"]' "history of turn 4"
}

@test "a restart with the same MOLECULE_SESSION_ID resumes the conversation" {
	need_claude
	model_start
	MOLECULE_SESSION_ID=$SESSION handle "$(msg m1 first)" "$(msg m2 second)"
	assert_eq "$HANDLER_RC" 0
	MOLECULE_SESSION_ID=$SESSION handle "$(msg m3 third)"
	assert_eq "$HANDLER_RC" 0
	[[ "$(reply_field 1 text)" == "reply to: third (turn 3, "* ]] || { cat "$T/out" >&2; false; }
	assert_eq "$(turns | tail -n 1 | jq -c .user_texts)" '["first","second","third"]' "history"
	assert_eq "$(starts)" 2 "claude starts"
	grep -q "<--resume><$SESSION>" <(sed -n 2p "$T/claude.argv")
}

@test "a session claude has but the handler cannot see: --session-id is refused, then resumed" {
	need_claude
	model_start
	# claude keeps its sessions where the handler does not look for them.
	cat >"$T/bin/hidden-claude" <<-EOF
		#!/bin/sh
		CLAUDE_CONFIG_DIR="$T/hidden" exec "$T/bin/claude" "\$@"
	EOF
	chmod +x "$T/bin/hidden-claude"
	MOLECULE_SESSION_ID=$SESSION CLAUDE=$T/bin/hidden-claude handle "$(msg m1 first)"
	MOLECULE_SESSION_ID=$SESSION CLAUDE=$T/bin/hidden-claude handle "$(msg m2 second)"
	assert_eq "$HANDLER_RC" 0
	[[ "$(reply_field 1 text)" == "reply to: second (turn 2, "* ]] || { cat "$T/out" >&2; false; }
	# The second run tried to create it, was refused, and resumed it.
	grep -q "already in use" "$T/err"
	assert_eq "$(starts)" 3 "claude starts"
	grep -q "<--session-id><$SESSION>" <(sed -n 2p "$T/claude.argv")
	grep -q "<--resume><$SESSION>" <(sed -n 3p "$T/claude.argv")
}

@test "CLAUDE_WORKDIR: a session claude cannot resume in this working directory starts afresh" {
	need_claude
	model_start
	mkdir "$T/work2"
	MOLECULE_SESSION_ID=$SESSION handle "$(msg m1 here)"
	MOLECULE_SESSION_ID=$SESSION CLAUDE_WORKDIR=$T/work2 handle "$(msg m2 there)"
	assert_eq "$HANDLER_RC" 0
	# The handler found the session (of the other directory), claude (2.1.197) does
	# not resume it from here: the handler starts it anew.
	[[ "$(reply_field 1 text)" == "reply to: there (turn 1, "* ]] || { cat "$T/out" >&2; false; }
	grep -q "<--resume><$SESSION>" <(sed -n 2p "$T/claude.argv")
	grep -q "<--session-id><$SESSION>" <(sed -n 3p "$T/claude.argv")
	local dir=$HOME/.claude/projects
	[ -f "$dir/${T//[^A-Za-z0-9]/-}-work/$SESSION.jsonl" ]
	[ -f "$dir/${T//[^A-Za-z0-9]/-}-work2/$SESSION.jsonl" ]
}

@test "API overloaded (529): retry, retry, then an error reply without local details; the failed turn leaves no trace" {
	need_claude
	model_start --overload 1000 --fault-match busy
	local busy
	busy=$(msg m2 "busy now?")
	MOLECULE_SESSION_ID=$SESSION handle "$(msg m1 hello)" "$busy" "$busy" "$busy" "$(msg m3 later)"
	assert_eq "$HANDLER_RC" 0 "exit status"
	assert_eq "$(sed -n 2,4p "$T/out" | paste -sd' ')" \
		'{"id":"m2","retry":true} {"id":"m2","retry":true} {"id":"m2","error":"the model API is overloaded (HTTP 529); gave up after 3 tries"}'
	local error
	error=$(reply_field 4 error)
	[[ "$error" != *"$HOME"* && "$error" != *"$T"* && "$error" != *127.0.0.1* && "$error" != */* ]]
	# The next message finds only the answered turns in the session.
	[[ "$(reply_field 5 text)" == "reply to: later (turn 2, "* ]] || { cat "$T/out" >&2; false; }
	assert_eq "$(turns | tail -n 1 | jq -c .user_texts)" '["hello","later"]' "history"
	assert_eq "$(turns | jq -s 'map(select(.status == 529)) | length')" 3 "overloaded requests"

	# CLAUDE_TRIES sets the bound.
	MOLECULE_SESSION_ID=$SESSION CLAUDE_TRIES=2 handle "$busy" "$busy"
	assert_eq "$(paste -sd' ' "$T/out")" \
		'{"id":"m2","retry":true} {"id":"m2","error":"the model API is overloaded (HTTP 529); gave up after 2 tries"}'
}

@test "API overloaded once: the retried message is answered, its question in the session once" {
	need_claude
	model_start --overload 1 --fault-match q2
	MOLECULE_SESSION_ID=$SESSION handle "$(msg m1 q1)" "$(msg m2 q2)" "$(msg m2 q2)" "$(msg m3 q3)"
	assert_eq "$HANDLER_RC" 0 "exit status"
	assert_eq "$(reply_field 2 retry)" true
	[[ "$(reply_field 3 text)" == "reply to: q2 (turn 2, "* ]] || { cat "$T/out" >&2; false; }
	[[ "$(reply_field 4 text)" == "reply to: q3 (turn 3, "* ]] || { cat "$T/out" >&2; false; }
	assert_eq "$(turns | tail -n 1 | jq -c .user_texts)" '["q1","q2","q3"]' "history"
}

@test "a request the API refuses: an error reply at once; the conversation goes on without it" {
	need_claude
	model_start --refuse 2 --fault-match huge
	# First turn of a new session, then a later turn.
	MOLECULE_SESSION_ID=$SESSION handle "$(msg m1 "huge one")" "$(msg m2 q2)" "$(msg m3 "huge two")" "$(msg m4 q4)"
	assert_eq "$HANDLER_RC" 0 "exit status"
	[[ "$(reply_field 1 error)" == "Prompt is too long"* ]] || { cat "$T/out" >&2; false; }
	[[ "$(reply_field 2 text)" == "reply to: q2 (turn 1, "* ]] || { cat "$T/out" >&2; false; }
	[[ "$(reply_field 3 error)" == "Prompt is too long"* ]] || { cat "$T/out" >&2; false; }
	[[ "$(reply_field 4 text)" == "reply to: q4 (turn 2, "* ]] || { cat "$T/out" >&2; false; }
	assert_eq "$(turns | tail -n 1 | jq -c .user_texts)" '["q2","q4"]' "history"
	run grep -c '"retry"' "$T/out"
	assert_eq "$output" 0 "retry replies"
}

@test "the stream cut after message_start: claude asks again without streaming; without that, retry" {
	need_claude
	model_start --cut 2 --fault-match cut
	MOLECULE_SESSION_ID=$SESSION handle "$(msg m1 "cut one")"
	[[ "$(reply_field 1 text)" == "reply to: cut one (turn 1, "* ]] || { cat "$T/out" >&2; false; }
	assert_eq "$(turns | jq -c '[.stream, .fault]' | paste -sd' ')" '[true,"cut"] [false,null]' "requests"

	export CLAUDE_CODE_DISABLE_NONSTREAMING_FALLBACK=1
	MOLECULE_SESSION_ID=$SESSION handle "$(msg m2 "cut two")" "$(msg m2 "cut two")"
	assert_eq "$(reply_field 1 retry)" true
	[[ "$(reply_field 2 text)" == "reply to: cut two (turn 2, "* ]] || { cat "$T/out" >&2; false; }
	assert_eq "$(turns | tail -n 1 | jq -c .user_texts)" '["cut one","cut two"]' "history"
}

# crashing_claude: $T/bin/claude is a stand-in claude (stream-json in and out) that
# dies with status 3 mid-turn while $T/crashes holds a number above 0 (counted down).
crashing_claude() {
	echo 0 >"$T/crashes"
	cat >"$T/bin/claude" <<-EOF
		#!/bin/bash
		echo \$\$ >>"$T/claude.starts"
		n=0
		while IFS= read -r line; do
			n=\$((n + 1))
			echo '{"type":"system","subtype":"init","session_id":"s"}'
			c=\$(cat "$T/crashes")
			if [ "\$c" -gt 0 ]; then
				echo \$((c - 1)) >"$T/crashes"
				echo "fatal: something broke at $T/somewhere" >&2
				exit 3
			fi
			printf '{"type":"assistant","uuid":"u-%d","message":{"content":[]}}\n' "\$n"
			printf '{"type":"result","subtype":"success","is_error":false,"result":"answer %d"}\n' "\$n"
		done
	EOF
	chmod +x "$T/bin/claude"
	export CLAUDE=$T/bin/claude
}

@test "claude dies mid-turn (stand-in claude): retry and a new claude; after the tries an error reply without local details" {
	crashing_claude
	echo 1 >"$T/crashes"
	MOLECULE_SESSION_ID=$SESSION handle "$(msg m1 one)" "$(msg m1 one)"
	assert_eq "$HANDLER_RC" 0
	assert_eq "$(paste -sd' ' "$T/out")" '{"id":"m1","retry":true} {"id":"m1","text":"answer 1"}'
	assert_eq "$(starts)" 2 "claude starts"
	grep -q "fatal: something broke" "$T/err"

	rm -f "$T/claude.starts"
	echo 3 >"$T/crashes"
	MOLECULE_SESSION_ID=$SESSION handle "$(msg m2 two)" "$(msg m2 two)" "$(msg m2 two)" "$(msg m3 three)"
	assert_eq "$(sed -n 1,3p "$T/out" | paste -sd' ')" \
		'{"id":"m2","retry":true} {"id":"m2","retry":true} {"id":"m2","error":"claude ended before it answered (exit status 3); gave up after 3 tries"}'
	assert_eq "$(sed -n 4p "$T/out")" '{"id":"m3","text":"answer 1"}'
	assert_eq "$(starts)" 4 "claude starts"
}

@test "claude missing (CLAUDE=/nonexistent, or not on PATH): exit 127 before reading any message" {
	untouched_by_handler 127 CLAUDE=/nonexistent/claude
	grep -qx "claude-handler: /nonexistent/claude not found (install Claude Code, or set CLAUDE to the claude program)" "$T/err"

	mkdir "$T/path"
	ln -s "$(command -v bash)" "$T/path/bash"
	ln -s "$(command -v jq)" "$T/path/jq"
	untouched_by_handler 127 PATH="$T/path"
	grep -q "^claude-handler: claude not found" "$T/err"
}

@test "jq missing: exit 127 before reading any message" {
	crashing_claude
	mkdir "$T/path"
	ln -s "$(command -v bash)" "$T/path/bash"
	untouched_by_handler 127 PATH="$T/path"
	grep -qx "claude-handler: jq not found on PATH (install jq)" "$T/err"
}

@test "bad settings: exit 2 before reading any message" {
	crashing_claude
	untouched_by_handler 2 MOLECULE_SESSION_ID=not-a-uuid
	grep -q "MOLECULE_SESSION_ID is not a UUID" "$T/err"
	untouched_by_handler 2 CLAUDE_ARGS="--model 'unclosed"
	grep -q "CLAUDE_ARGS has an unmatched quote" "$T/err"
	untouched_by_handler 2 CLAUDE_TRIES=0
	grep -q "CLAUDE_TRIES must be" "$T/err"
	untouched_by_handler 2 CLAUDE_WORKDIR="$T/no-such-dir"
	grep -q "cannot enter CLAUDE_WORKDIR" "$T/err"
}

@test "claude options: handler arguments first, then CLAUDE_ARGS, split like shell words, nothing expanded" {
	need_claude
	model_start
	# shellcheck disable=SC2016 # $HOME must reach claude as it is
	CLAUDE_ARGS='--model claude-standin-1 --append-system-prompt '\''be "brief"  $HOME *'\''' \
		MOLECULE_SESSION_ID=$SESSION handler --max-turns 3 <<<"$(msg m1 hi)" >"$T/out" 2>"$T/err"
	[[ "$(reply_field 1 text)" == "reply to: hi (turn 1, "* ]] || { cat "$T/out" "$T/err" >&2; false; }
	# shellcheck disable=SC2016
	grep -qF '<--max-turns><3><--model><claude-standin-1><--append-system-prompt><be "brief"  $HOME *>' "$T/claude.argv"
	assert_eq "$(turns | jq -r .model)" claude-standin-1 "model asked for"
}

# tool_msg ID TOOL INPUT [FIELDS]: a message that makes the stand-in ask claude to
# use TOOL with INPUT (a JSON object).
tool_msg() {
	jq -cn --arg id "$1" --arg tool "$2" --argjson input "$3" \
		"{id: \$id, text: (\"#tool \" + ({name: \$tool, input: \$input} | tojson))} + (${4:-"{}"})"
}

@test "permissions: by default claude reads in its working directory but writes nothing; acceptEdits writes; --add-dir for uploads" {
	need_claude
	model_start
	echo "the notes" >"$T/work/notes.txt"
	mkdir "$T/uploads"
	echo "uploaded words" >"$T/uploads/up.txt"
	local write read upload
	write=$(tool_msg m1 Write "{\"file_path\":\"$T/work/new.txt\",\"content\":\"x\"}")
	read=$(tool_msg m2 Read "{\"file_path\":\"$T/work/notes.txt\"}")
	upload=$(tool_msg m3 Read "{\"file_path\":\"$T/uploads/up.txt\"}" \
		"{files: [{name: \"up.txt\", mime_type: \"text/plain\", size: 15, path: \"$T/uploads/up.txt\"}]}")
	MOLECULE_SESSION_ID=$SESSION handle "$write" "$read" "$upload"
	assert_eq "$HANDLER_RC" 0
	[[ "$(reply_field 1 text)" == "tool result: "*"requested permissions to write"* ]] || { cat "$T/out" >&2; false; }
	[ ! -e "$T/work/new.txt" ]
	[[ "$(reply_field 2 text)" == *"the notes"* ]] || { cat "$T/out" >&2; false; }
	[[ "$(reply_field 3 text)" == "tool result: "*"requested permissions to read"* ]] || { cat "$T/out" >&2; false; }
	# The operator learns from the log what was refused.
	assert_eq "$(grep -c 'claude was not allowed to use Write (see --permission-mode, --allowedTools)' "$T/err")" 1
	assert_eq "$(grep -c 'claude was not allowed to use Read' "$T/err")" 1
	# The upload was described to claude, with where it was saved.
	turns | jq -e --arg p "$T/uploads/up.txt" 'select(.turn == 3) | .last_user_text
		| contains("[Uploaded file: up.txt (text/plain, 15 bytes), saved at " + $p + "]")' >/dev/null

	MOLECULE_SESSION_ID=$SESSION handler --permission-mode acceptEdits --add-dir "$T/uploads" \
		< <(printf '%s\n' "$(sed 's/"m1"/"m4"/' <<<"$write")" "$(sed 's/"m3"/"m5"/' <<<"$upload")") \
		>"$T/out" 2>"$T/err"
	[[ "$(reply_field 1 text)" == "tool result: File created successfully"* ]] || { cat "$T/out" >&2; false; }
	assert_eq "$(cat "$T/work/new.txt")" x
	[[ "$(reply_field 2 text)" == *"uploaded words"* ]] || { cat "$T/out" >&2; false; }
	assert_eq "$(wc -c <"$T/err")" 0 "bytes on stderr"
}

@test "--max-turns: a message that needs more turns gets an error reply, and leaves no trace" {
	need_claude
	model_start
	echo "the notes" >"$T/work/notes.txt"
	MOLECULE_SESSION_ID=$SESSION handler --max-turns 1 >"$T/out" 2>"$T/err" \
		< <(printf '%s\n' "$(msg m1 first)" "$(tool_msg m2 Read "{\"file_path\":\"$T/work/notes.txt\"}")" \
			"$(msg m3 third)")
	assert_eq "$(sed -n 2p "$T/out")" '{"id":"m2","error":"stopped at the limit of turns (--max-turns)"}'
	[[ "$(reply_field 3 text)" == "reply to: third (turn 2, "* ]] || { cat "$T/out" >&2; false; }
	assert_eq "$(turns | tail -n 1 | jq -c .user_texts)" '["first","third"]' "history"
}

@test "end of input during a turn: the turn is answered, claude has ended, exit 0, nothing left in TMPDIR" {
	need_claude
	model_start --delay 1
	MOLECULE_SESSION_ID=$SESSION handle "$(msg m1 "last words")"
	assert_eq "$HANDLER_RC" 0 "exit status"
	[[ "$(reply_field 1 text)" == "reply to: last words (turn 1, "* ]] || { cat "$T/out" >&2; false; }
	run proc_alive "$(cat "$T/claude.starts")"
	assert_eq "$status" 1 "claude still running"
	assert_eq "$(ls -A "$T/tmp")" "" "left in TMPDIR"
}

@test "SIGTERM mid-turn: the handler stops its claude and exits 143" {
	need_claude
	model_start --delay 30 --bodies "$T/bodies"
	mkdir "$T/bodies"
	mkfifo "$T/in"
	MOLECULE_SESSION_ID=$SESSION "$HANDLER" <"$T/in" >"$T/out" 2>"$T/err" 3>&- &
	local pid=$!
	exec {fd}>"$T/in"
	msg m1 "take your time" >&"$fd"
	# The turn is with the model API, which takes 30 s to answer.
	wait_until 20 eval '[ -n "$(ls "$T/bodies")" ]'
	kill -TERM "$pid"
	wait_until 20 eval '! proc_alive "$pid"' || kill -KILL "$pid"
	local rc=0
	wait "$pid" || rc=$?
	exec {fd}>&-
	assert_eq "$rc" 143 "exit status"
	run proc_alive "$(cat "$T/claude.starts")"
	assert_eq "$status" 1 "claude still running"
	assert_eq "$(wc -c <"$T/out")" 0 "bytes on stdout"
}

@test "a long message (256 KiB) and its reply go through whole" {
	need_claude
	model_start
	# Through files: the text is longer than one argument of a command may be.
	head -c 196608 /dev/urandom | base64 -w 0 >"$T/text"
	jq -cn --rawfile t "$T/text" '{id: "m1", text: $t}' >"$T/input"
	MOLECULE_SESSION_ID=$SESSION handler <"$T/input" >"$T/out" 2>"$T/err"
	assert_eq "$(wc -l <"$T/out")" 1 "reply lines"
	jq -e --rawfile t "$T/text" '.id == "m1" and (.text | startswith("reply to: " + $t + " (turn 1, "))' \
		"$T/out" >/dev/null
	turns | jq -e --rawfile t "$T/text" '.last_user_text == $t' >/dev/null
}

@test "a line that is not a message: one line on stderr, the rest answered; no id, a reply without id" {
	need_claude
	model_start
	MOLECULE_SESSION_ID=$SESSION handle 'not json' '' '[1,2]' '{"text":"no id here"}' "$(msg m2 fine)"
	assert_eq "$HANDLER_RC" 0
	assert_eq "$(grep -c 'skipped a line that is not a JSON message' "$T/err")" 2 "complaints"
	[[ "$(sed -n 1p "$T/out")" == '{"text":"reply to: no id here (turn 1, '* ]] || { cat "$T/out" >&2; false; }
	assert_eq "$(reply_field 2 id)" m2
}

@test "without --per: a session per conversation (context id, else sender), the same after a restart" {
	need_claude
	model_start
	export MOLECULE_WORKSPACE_ID=ws-1
	local a='{source_id: "peer-a", origin: "agent"}' b='{source_id: "peer-b", origin: "agent"}'
	local c='{source_id: "peer-a", origin: "agent", context_id: "ctx-1"}'
	handle "$(msg m1 a1 "$a")" "$(msg m2 a2 "$a")" "$(msg m3 b1 "$b")" "$(msg m4 c1 "$c")" "$(msg m5 a3 "$a")"
	assert_eq "$HANDLER_RC" 0
	assert_eq "$(jq -r .text "$T/out" | cut -d'(' -f2 | cut -d, -f1 | paste -sd,)" \
		"turn 1,turn 2,turn 1,turn 1,turn 3" "turns"
	assert_eq "$(turns | jq -r .session | uniq | wc -l)" 4 "sessions in a row"
	assert_eq "$(turns | jq -r .session | sort -u | wc -l)" 3 "sessions"
	assert_eq "$(starts)" 4 "claude starts (one per change of conversation)"
	# The same session for peer-a after a restart.
	handle "$(msg m6 a4 "$a")"
	assert_eq "$(turns | tail -n 1 | jq -c .user_texts)" '["a1","a2","a3","a4"]' "peer-a's history"
}

@test "through the bridge (one co-process for all): replies posted, one claude for one peer's messages" {
	need_claude
	bridge_setup
	model_start
	queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"text\":\"first\"}" >/dev/null
	queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"text\":\"second\"}" >/dev/null
	"$MC_BIN" --api-url "$FAKE_URL" --state-dir "$T/state" --interval 0.05 "$WS_ID" -- "$HANDLER" \
		</dev/null >"$T/bridge.out" 2>"$T/bridge.err" 3>&- &
	BR_PID=$!
	wait_until 20 a2a_ok_posts 2
	[[ "$(a2a_ok_texts | sed -n 1p)" == "reply to: first (turn 1, "* ]] || { a2a_ok_texts >&2; false; }
	[[ "$(a2a_ok_texts | sed -n 2p)" == "reply to: second (turn 2, "* ]] || { a2a_ok_texts >&2; false; }
	assert_eq "$(starts)" 1 "claude starts"
	stop_bridge TERM
	BR_PID=""
	assert_eq "$BR_STATUS" 0 "bridge exit status"
}

# per_texts PEER: the first text part of every accepted reply to PEER, in posting order.
per_texts() {
	posts a2a | jq -r --arg p "/workspaces/$1/a2a" '.[] | select(.path == $p and .status == 200) | .body.params.message.parts[0].text'
}

# per_replied PEER N: at least N replies to PEER were accepted.
per_replied() {
	[ "$(per_texts "$1" | wc -l)" -ge "$2" ]
}

@test "through the bridge with --per context: one claude per conversation, all answered, a restart resumes each session" {
	need_claude
	bridge_setup
	model_start
	local a=$PEER_ID b
	new_peer >/dev/null
	b=$PEER_ID
	queue_msgs "$WS_ID" "{\"from\":\"$a\",\"text\":\"a1\",\"context_id\":\"ctx-a\"}" >/dev/null
	queue_msgs "$WS_ID" "{\"from\":\"$b\",\"text\":\"b1\",\"context_id\":\"ctx-b\"}" >/dev/null
	queue_msgs "$WS_ID" "{\"from\":\"$a\",\"text\":\"a2\",\"context_id\":\"ctx-a\"}" >/dev/null
	queue_msgs "$WS_ID" "{\"from\":\"$b\",\"text\":\"b2\",\"context_id\":\"ctx-b\"}" >/dev/null
	queue_msgs "$WS_ID" "{\"from\":\"$a\",\"text\":\"other\",\"context_id\":\"ctx-c\"}" >/dev/null
	"$MC_BIN" --api-url "$FAKE_URL" --state-dir "$T/state" --interval 0.05 --per context "$WS_ID" -- "$HANDLER" \
		</dev/null >"$T/bridge.out" 2>"$T/bridge.err" 3>&- &
	BR_PID=$!
	wait_until 60 per_replied "$a" 3
	wait_until 60 per_replied "$b" 2
	# Each conversation its own claude, its own session, its turns in order.
	assert_eq "$(starts)" 3 "claude starts"
	[[ "$(per_texts "$b" | paste -sd'|')" == "reply to: b1 (turn 1, "*"|reply to: b2 (turn 2, "* ]] ||
		{ per_texts "$b" >&2; false; }
	per_texts "$a" | grep -q '^reply to: a2 (turn 2, ' || { per_texts "$a" >&2; false; }
	per_texts "$a" | grep -q '^reply to: other (turn 1, ' || { per_texts "$a" >&2; false; }
	assert_eq "$(turns | jq -r .session | sort -u | wc -l)" 3 "sessions"
	stop_bridge TERM
	BR_PID=""
	assert_eq "$BR_STATUS" 0 "bridge exit status"
	# Each claude ended with its handler: no claude is left running.
	local pid
	while read -r pid; do
		! proc_alive "$pid" || { echo "claude $pid still runs" >&2; false; }
	done <"$T/claude.starts"

	# A new bridge: ctx-a's next message resumes its session (MOLECULE_SESSION_ID is
	# the same), with the history of the first run.
	queue_msgs "$WS_ID" "{\"from\":\"$a\",\"text\":\"a3\",\"context_id\":\"ctx-a\"}" >/dev/null
	"$MC_BIN" --api-url "$FAKE_URL" --state-dir "$T/state" --interval 0.05 --per context "$WS_ID" -- "$HANDLER" \
		</dev/null >"$T/bridge.out" 2>>"$T/bridge.err" 3>&- &
	BR_PID=$!
	wait_until 60 per_replied "$a" 4
	[[ "$(per_texts "$a" | tail -n 1)" == "reply to: a3 (turn 3, "* ]] || { per_texts "$a" >&2; false; }
	assert_eq "$(turns | tail -n 1 | jq -c .user_texts)" '["a1","a2","a3"]' "ctx-a's history"
	assert_eq "$(starts)" 4 "claude starts"
	local session
	session=$(turns | jq -r 'select(.last_user_text == "a1") | .session' | head -n 1)
	grep -qF "<--resume><$session>" <(sed -n 4p "$T/claude.argv") || { cat "$T/claude.argv" >&2; false; }
	stop_bridge TERM
	BR_PID=""
	assert_eq "$BR_STATUS" 0 "bridge exit status"
}
