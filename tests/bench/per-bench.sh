#!/usr/bin/env bash
# per-bench.sh: --per through the bridge, end to end against the fake platform.
#
#   tests/bench/per-bench.sh BUILDDIR SRCDIR      (or: make bench-per)
#
# Not part of make check. Two measurements, one table each:
#
# 1. Claude Code: BENCH_CONVERSATIONS (8) conversations of BENCH_MESSAGES (4) messages
#    (one peer and context each, queued round robin), answered through molecule-connect
#    by the real CLI (CLAUDE_BIN, where .ci/deps installs it) talking to the model API
#    stand-in, which takes BENCH_TURN_SECS (1) per turn:
#      serial  the handler that ran `claude -p` once per message (from git history, as
#              tests/bench/claude-bench.sh finds it), one co-process for all messages;
#      per     contrib/claude-handler with --per context: one long-lived claude per
#              conversation, all at once.
#    Wall time from the bridge's start to the last reply accepted, claude starts, and
#    starts per message. BENCH_SKIP_CLAUDE=1 leaves this part out.
# 2. A C echo handler (tests/bench/mcbench echo) with --per peer --max-procs
#    BENCH_MAX_PROCS (8) across BENCH_PEERS (100) conversations, one bridge run for
#    each of BENCH_ECHO_COUNTS ("1000 10000 20000") messages: the bridge's peak RSS
#    (VmHWM), and the most children and descriptors it had, sampled every 20 ms. The
#    same peak for 10,000 and 20,000 messages is what says nothing leaks.
#
# Both parts poll every 0.1 s with a 256-message window, so what is measured is the
# handlers, not the fetch schedule. BENCH_KEEP=1 keeps the work directory.
set -euo pipefail

build=${1:?usage: per-bench.sh BUILDDIR SRCDIR}
src=${2:?usage: per-bench.sh BUILDDIR SRCDIR}
mc=$build/molecule-connect
fake=$build/tests/fake-platform/fake-platform
tool=$build/tests/bench/mcbench
model=$build/tests/model-standin/model-standin
claude_bin=${CLAUDE_BIN:-${XDG_CACHE_HOME:-$HOME/.cache}/molecule-connect-test/claude/node_modules/.bin/claude}
convs=${BENCH_CONVERSATIONS:-8}
per_conv=${BENCH_MESSAGES:-4}
turn_secs=${BENCH_TURN_SECS:-1}
peers_n=${BENCH_PEERS:-100}
echo_counts=${BENCH_ECHO_COUNTS:-1000 10000 20000}
max_procs=${BENCH_MAX_PROCS:-8}
for f in "$mc" "$fake" "$tool"; do
	[ -x "$f" ] || { echo "no $f: make bench-per builds it" >&2; exit 1; }
done

work=$(mktemp -d "${TMPDIR:-/tmp}/per-bench.XXXXXX")
fake_pid="" model_pid="" bridge_pid="" sampler_pid=""
cleanup() {
	local p
	for p in "$sampler_pid" "$bridge_pid" "$model_pid" "$fake_pid"; do
		[ -z "$p" ] || kill "$p" 2>/dev/null || true
	done
	wait 2>/dev/null || true
	if [ -n "${BENCH_KEEP:-}" ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

die() { echo "per-bench: $*" >&2; exit 1; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }
secs() { printf '%d.%02d' $(($1 / 1000)) $(($1 % 1000 / 10)); }

fake_up() {
	rm -f "$work/port"
	"$fake" --port-file "$work/port" --rate-limit 0 </dev/null >/dev/null 2>>"$work/fake.log" &
	fake_pid=$!
	for _ in $(seq 500); do [ -s "$work/port" ] && break; sleep 0.01; done
	[ -s "$work/port" ] || die "the fake platform did not start"
	url="http://127.0.0.1:$(cat "$work/port")"
}

fake_down() {
	kill -TERM "$fake_pid" 2>/dev/null || true
	wait "$fake_pid" 2>/dev/null || true
	fake_pid=""
}

ctl() { curl -sSf -X "$1" -H 'Content-Type: application/json' ${3:+--data-binary "$3"} "$url$2"; }

# setup_ws NPEERS: a workspace (WS, TOKEN), NPEERS peers (PEERS, comma-separated) and a
# state file whose cursor is a seed message, so the bridge pages with since_id.
setup_ws() {
	local a i list=""
	a=$(ctl POST /_control/workspaces '{}')
	WS=$(jq -r .id <<<"$a")
	TOKEN=$(jq -r .token <<<"$a")
	for ((i = 0; i < $1; i++)); do
		list+=${list:+,}$(ctl POST /_control/workspaces '{}' | jq -r .id)
	done
	PEERS=$list
	local seed
	seed=$(ctl POST /_control/messages "{\"workspace_id\":\"$WS\",\"text\":\"seed\"}" | jq -r '.ids[0]')
	state=$work/state.$RANDOM
	mkdir -m 700 "$state"
	(umask 077 && printf '{"workspace_id":"%s","last_since_id":"%s"}\n' "$WS" "$seed" >"$state/$WS.json")
}

# bridge OPTIONS... -- HANDLER...: starts the bridge; bridge_pid, t0.
bridge() {
	t0=$(now_ms)
	MOLECULE_WORKSPACE_TOKEN=$TOKEN "$mc" --api-url "$url" --state-dir "$state" -q --interval 0.1 \
		--max-inflight 256 "$@" </dev/null >/dev/null 2>>"$work/bridge.log" &
	bridge_pid=$!
}

bridge_down() {
	kill -TERM "$bridge_pid" 2>/dev/null || true
	wait "$bridge_pid" 2>/dev/null || true
	bridge_pid=""
}

# accepted: reply posts the fake platform accepted so far.
accepted() {
	ctl GET '/_control/posts?kind=a2a' | jq '[.[] | select(.status == 200)] | length'
}

# wait_replies N SECS: waits until N replies are accepted; prints the ms from t0 to the
# last one (from the fake platform's request log).
wait_replies() {
	local deadline=$(($(now_ms) + $2 * 1000))
	while [ "$(accepted)" -lt "$1" ]; do
		[ "$(now_ms)" -lt "$deadline" ] || die "only $(accepted) of $1 replies after $2 s (see $work/bridge.log)"
		kill -0 "$bridge_pid" 2>/dev/null || die "the bridge exited (see $work/bridge.log)"
		sleep 0.1
	done
	ctl GET /_control/requests | jq --argjson t0 "$t0" \
		'[.[] | select(.method == "POST" and (.path | endswith("/a2a")) and .status == 200) | .t_ms] | max - $t0'
}

# ---------- 1. Claude Code ----------

claude_part() {
	[ -x "$model" ] || die "no $model: make check builds it"
	[ -x "$claude_bin" ] || die "no Claude Code at $claude_bin: run .ci/deps (or BENCH_SKIP_CLAUDE=1)"
	local old_ref
	for old_ref in ${BENCH_OLD_REF:-} \
		"$(git -C "$src" log -1 --format=%H -S'claude -p --output-format json' -- contrib/claude-handler)^"; do
		# shellcheck disable=SC2016 # the handler's text, not an expansion
		git -C "$src" show "$old_ref:contrib/claude-handler" 2>/dev/null >"$work/old-handler" &&
			grep -qF -- '"$claude" -p --output-format json' "$work/old-handler" && break
		old_ref=""
	done
	[ -n "$old_ref" ] || die "no per-message claude-handler in the history of $src"
	chmod +x "$work/old-handler"

	"$model" --port-file "$work/model.port" --log "$work/model.log" --delay "$turn_secs" </dev/null \
		>/dev/null 2>"$work/model.err" &
	model_pid=$!
	for _ in $(seq 200); do [ -s "$work/model.port" ] && break; sleep 0.05; done
	[ -s "$work/model.port" ] || die "the model stand-in did not start"
	export ANTHROPIC_BASE_URL="http://127.0.0.1:$(cat "$work/model.port")" ANTHROPIC_API_KEY=bench-key \
		DISABLE_TELEMETRY=1 CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 DISABLE_AUTOUPDATER=1
	unset ANTHROPIC_AUTH_TOKEN CLAUDE_CODE_OAUTH_TOKEN CLAUDE_CONFIG_DIR CLAUDE_ARGS
	cat >"$work/claude" <<-EOF
		#!/bin/sh
		echo \$\$ >>"\$BENCH_STARTS"
		exec "$claude_bin" "\$@"
	EOF
	chmod +x "$work/claude"
	export CLAUDE=$work/claude

	local total=$((convs * per_conv)) name ms starts first
	echo "Claude Code $("$claude_bin" --version | cut -d' ' -f1) through molecule-connect: $convs conversations" \
		"x $per_conv messages, ${turn_secs} s a turn, $(nproc) CPUs; serial handler from ${old_ref:0:12}"
	echo
	echo "| handler | bridge options | wall s | first model request s | claude starts | starts per message |"
	echo "|---|---|---|---|---|---|"
	for name in serial per; do
		mkdir -p "$work/$name/home" "$work/$name/cwd"
		export HOME=$work/$name/home BENCH_STARTS=$work/$name/starts MOLECULE_HANDLER_STATE=$work/$name/hstate
		: >"$BENCH_STARTS"
		fake_up
		setup_ws "$convs"
		local m c peer
		IFS=, read -ra peer <<<"$PEERS"
		for m in $(seq "$per_conv"); do
			for c in $(seq 0 $((convs - 1))); do
				ctl POST /_control/messages "{\"workspace_id\":\"$WS\",\"from\":\"${peer[$c]}\",\"text\":\"question $m of conversation $c\",\"context_id\":\"ctx-$c\"}" >/dev/null
			done
		done
		# Claude Code keeps sessions per working directory: the handlers' is the bridge's.
		cd "$work/$name/cwd"
		if [ "$name" = serial ]; then
			bridge "$WS" -- "$work/old-handler"
		else
			bridge --per context --max-procs "$convs" "$WS" -- "$src/contrib/claude-handler"
		fi
		cd "$work"
		ms=$(wait_replies "$total" 600)
		bridge_down
		fake_down
		starts=$(wc -l <"$BENCH_STARTS")
		# When the model API got its first turn (logged as answered, a turn later):
		# what starting the bridge, the handlers and claude cost.
		first=$(jq -s --argjson t0 "$t0" --argjson turn "$((turn_secs * 1000))" \
			'map(select(.t_ms >= $t0 and .turn != null) | .t_ms) | min - $t0 - $turn' "$work/model.log")
		printf '| %s | %s | %s | %s | %d | %d.%02d |\n' "$name" \
			"$([ "$name" = serial ] && echo "(none)" || echo "--per context --max-procs $convs")" \
			"$(secs "$ms")" "$(secs "$first")" "$starts" $((starts / total)) $((starts * 100 / total % 100))
	done
	kill "$model_pid" 2>/dev/null || true
	wait "$model_pid" 2>/dev/null || true
	model_pid=""
	echo
}

# ---------- 2. a C echo across many conversations ----------

# sample PID FILE: every 20 ms, "children descriptors" of PID into FILE, until it ends.
sample() {
	while kill -0 "$1" 2>/dev/null; do
		echo "$(pgrep -P "$1" | wc -l) $(ls "/proc/$1/fd" 2>/dev/null | wc -l)" >>"$2"
		sleep 0.02
	done
}

echo_part() {
	echo "mcbench echo through molecule-connect --per peer --max-procs $max_procs: $peers_n conversations" \
		"(peers), messages queued round robin in chunks of 10"
	echo
	# The handler through a shell that counts its starts: a conversation closed to make
	# room for another is started again for its next messages.
	cat >"$work/echo" <<-EOF
		#!/bin/sh
		echo >>"$work/echo.starts"
		exec "$tool" echo
	EOF
	chmod +x "$work/echo"
	echo "| messages | wall s | msg/s | handler starts | peak RSS kB | RSS at end kB | most children | most descriptors |"
	echo "|---|---|---|---|---|---|---|---|"
	local n
	for n in $echo_counts; do
		fake_up
		setup_ws "$peers_n"
		"$tool" queue --url "$url" --ws "$WS" --peers "$PEERS" --count "$n" --chunk 10 ||
			die "cannot queue $n messages"
		: >"$work/echo.starts"
		bridge --per peer --max-procs "$max_procs" "$WS" -- "$work/echo"
		: >"$work/samples"
		sample "$bridge_pid" "$work/samples" &
		sampler_pid=$!
		local out ms
		out=$("$tool" wait --url "$url" --peers "$PEERS" --target "$n" --pid "$bridge_pid" --timeout 600) ||
			die "$n messages: not all answered (see $work/bridge.log)"
		ms=$(ctl GET /_control/requests | jq --argjson t0 "$t0" \
			'[.[] | select(.method == "POST" and (.path | endswith("/a2a")) and .status == 200) | .t_ms] | max - $t0')
		bridge_down
		wait "$sampler_pid" 2>/dev/null || true
		sampler_pid=""
		fake_down
		printf '| %d | %s | %d | %d | %d | %d | %d | %d |\n' "$n" "$(secs "$ms")" $((n * 1000 / (ms > 0 ? ms : 1))) \
			"$(wc -l <"$work/echo.starts")" "$(jq .hwm_kb <<<"$out")" "$(jq .rss_kb <<<"$out")" \
			"$(awk '$1 > m { m = $1 } END { print m + 0 }' "$work/samples")" \
			"$(awk '$2 > m { m = $2 } END { print m + 0 }' "$work/samples")"
	done
}

[ -n "${BENCH_SKIP_CLAUDE:-}" ] || claude_part
echo_part
