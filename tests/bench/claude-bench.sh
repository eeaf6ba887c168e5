#!/usr/bin/env bash
# claude-bench.sh: wall time and claude starts for conversations answered by Claude Code,
# the per-message claude-handler against the one-claude-per-conversation one.
#
#   tests/bench/claude-bench.sh BUILDDIR SRCDIR
#
# Not part of make check. The real CLI (CLAUDE_BIN, default where .ci/deps installs
# it) talks to the model API stand-in (BUILDDIR/tests/model-standin/model-standin),
# which takes BENCH_TURN_SECS (1) per turn. BENCH_CONVERSATIONS (8) conversations of
# BENCH_MESSAGES (4) messages each are answered twice:
#   old  the handler that runs `claude -p` once per message (from git, BENCH_OLD_REF,
#        default: the last commit that had it), one process reading all messages in
#        the order they arrive, one at a time, as the bridge ran it without --per;
#   new  contrib/claude-handler, one process per conversation, all at once, as the
#        bridge runs it with --per (MOLECULE_SESSION_ID per conversation).
# Prints one table: wall time, when the model API got its first request (what
# starting claude costs), claude starts, starts per message, replies answered.
# BENCH_KEEP=1 keeps the work directory (logs, replies).
set -euo pipefail

build=${1:?usage: claude-bench.sh BUILDDIR SRCDIR}
src=${2:?usage: claude-bench.sh BUILDDIR SRCDIR}
model=$build/tests/model-standin/model-standin
claude_bin=${CLAUDE_BIN:-${XDG_CACHE_HOME:-$HOME/.cache}/molecule-connect-test/claude/node_modules/.bin/claude}
convs=${BENCH_CONVERSATIONS:-8}
per=${BENCH_MESSAGES:-4}
turn_secs=${BENCH_TURN_SECS:-1}
[ -x "$model" ] || { echo "no $model: make check builds it" >&2; exit 1; }
[ -x "$claude_bin" ] || { echo "no Claude Code at $claude_bin: run .ci/deps" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/claude-bench.XXXXXX")
model_pid=""
cleanup() {
	[ -z "$model_pid" ] || kill "$model_pid" 2>/dev/null || true
	if [ -n "${BENCH_KEEP:-}" ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

# The old handler: the one that asked claude once per message.
old_handler() {
	local ref
	for ref in ${BENCH_OLD_REF:-} main \
		"$(git -C "$src" log -1 --format=%H -S'claude -p --output-format json' -- contrib/claude-handler)^"; do
		# shellcheck disable=SC2016 # the handler's text, not an expansion
		if git -C "$src" show "$ref:contrib/claude-handler" 2>/dev/null >"$work/old-handler" &&
			grep -qF -- '"$claude" -p --output-format json' "$work/old-handler"; then
			chmod +x "$work/old-handler"
			echo "$ref"
			return
		fi
	done
	echo "no per-message claude-handler in the history of $src" >&2
	exit 1
}
old_ref=$(old_handler)

"$model" --port-file "$work/port" --log "$work/model.log" --delay "$turn_secs" </dev/null \
	>/dev/null 2>"$work/model.err" &
model_pid=$!
for _ in $(seq 200); do [ -s "$work/port" ] && break; sleep 0.05; done
[ -s "$work/port" ] || { echo "the model stand-in did not start" >&2; exit 1; }

ANTHROPIC_BASE_URL="http://127.0.0.1:$(cat "$work/port")"
export ANTHROPIC_BASE_URL ANTHROPIC_API_KEY=bench-key DISABLE_TELEMETRY=1 CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 DISABLE_AUTOUPDATER=1
unset ANTHROPIC_AUTH_TOKEN CLAUDE_CODE_OAUTH_TOKEN CLAUDE_CONFIG_DIR CLAUDE_ARGS MOLECULE_SESSION_ID
# claude through a shim that counts its starts.
cat >"$work/claude" <<EOF
#!/bin/sh
echo \$\$ >>"\$BENCH_STARTS"
exec "$claude_bin" "\$@"
EOF
chmod +x "$work/claude"
export CLAUDE=$work/claude

# message C M: message M of conversation C, as the bridge writes it.
message() {
	printf '{"id":"c%d-m%d","workspace_id":"bench-ws","source_id":"peer-%d","origin":"agent","text":"question %d of conversation %d","context_id":"ctx-%d"}\n' \
		"$1" "$2" "$1" "$2" "$1" "$1"
}

now_ms() { echo $(($(date +%s%N) / 1000000)); }

# fresh NAME: a fresh home (no sessions) and working directory for variant NAME.
fresh() {
	mkdir -p "$work/$1/home" "$work/$1/cwd"
	export HOME=$work/$1/home BENCH_STARTS=$work/$1/starts
	: >"$BENCH_STARTS"
	cd "$work/$1/cwd"
}

# secs MS: milliseconds as seconds with two decimals.
secs() { printf '%d.%02d' $(($1 / 1000)) $(($1 % 1000 / 10)); }

# report NAME START_MS: one table row; the model API's answers since START_MS are this
# variant's.
report() {
	local ms=$(($(now_ms) - $2)) starts replies first total=$((convs * per))
	starts=$(wc -l <"$work/$1/starts")
	replies=$(cat "$work/$1"/out* | jq -s --arg p "reply to: question" \
		'map(select(.text | strings | startswith($p))) | length')
	first=$(jq -s --argjson t0 "$2" 'map(select(.t_ms >= $t0 and .turn != null) | .t_ms)
		| min - $t0 - '"$((turn_secs * 1000))" "$work/model.log")
	printf '| %s | %s | %s | %d | %d.%02d | %d/%d |\n' "$1" "$(secs "$ms")" "$(secs "$first")" \
		"$starts" $((starts / total)) $((starts * 100 / total % 100)) "$replies" "$total"
}

echo "Claude Code $("$claude_bin" --version | cut -d' ' -f1), $convs conversations x $per messages," \
	"${turn_secs} s a turn, $(nproc) CPUs; old handler from $old_ref"
echo
echo "| handler | wall s | first request s | claude starts | starts per message | replies |"
echo "|---|---|---|---|---|---|"

# old: one process, the messages in the order they arrive (round robin over conversations).
fresh old
for m in $(seq "$per"); do
	for c in $(seq "$convs"); do message "$c" "$m"; done
done >"$work/old/in"
t0=$(now_ms)
MOLECULE_HANDLER_STATE=$work/old/state "$work/old-handler" <"$work/old/in" >"$work/old/out" 2>"$work/old/err"
report old "$t0"

# new: one handler per conversation, all at once.
fresh new
for c in $(seq "$convs"); do
	for m in $(seq "$per"); do message "$c" "$m"; done >"$work/new/in.$c"
done
t0=$(now_ms)
pids=()
for c in $(seq "$convs"); do
	MOLECULE_SESSION_ID=$(cat /proc/sys/kernel/random/uuid) MOLECULE_WORKSPACE_ID=bench-ws \
		"$src/contrib/claude-handler" <"$work/new/in.$c" >"$work/new/out.$c" 2>"$work/new/err.$c" &
	pids+=($!)
done
wait "${pids[@]}"
report new "$t0"
