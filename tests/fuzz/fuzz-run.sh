#!/bin/sh
# fuzz-run.sh: runs the libFuzzer targets for make fuzz / fuzz-smoke / fuzz-regress.
#
#   fuzz-run.sh fuzz    SRCDIR WORKDIR SECONDS NAME...   fuzz each target SECONDS on a copy of its seeds
#   fuzz-run.sh regress SRCDIR WORKDIR -       NAME...   replay seeds and saved crashes once
#
# SRCDIR is tests/fuzz in the source tree (read only), WORKDIR tests/fuzz in the
# build tree: it holds the binaries fuzz_NAME, and WORKDIR/work/NAME/ gets the
# growing corpus, the log and any crash-* / leak-* / timeout-* / oom-* input.
# FUZZ_RUNS (environment), when above 0, also stops each target after that many
# executions. Exit status: 0 when no target reported anything, 1 otherwise.
set -u
runs=${FUZZ_RUNS:-0}

mode=$1 srcdir=$2 workdir=$3 seconds=$4
shift 4

# Inputs larger than this are not generated (the seeds may be larger).
max_len() {
	case $1 in
	rows | state) echo 65536 ;;
	*) echo 16384 ;;
	esac
}

# A bound on each run: a target that hangs (outside the per-input -timeout,
# at start or at exit) fails, loudly, instead of stalling CI.
bound=""
if command -v timeout >/dev/null 2>&1; then
	case $mode in
	fuzz) bound="timeout -k 10 $((seconds + 300))" ;;
	*) bound="timeout -k 10 600" ;;
	esac
fi

# run_target NAME: one run of fuzz_NAME; its status in rc, its output in $log.
run_target() {
	common="-rss_limit_mb=2048 -timeout=20 -max_len=$(max_len "$1") -dict=$srcdir/json.dict"
	# Findings of an earlier run move aside: what is left after this run is its own.
	for f in "$run"/crash-* "$run"/leak-* "$run"/timeout-* "$run"/oom-* "$run"/slow-unit-*; do
		[ -f "$f" ] || continue
		mkdir -p "$run/previous" && mv -f "$f" "$run/previous/"
	done
	case $mode in
	fuzz)
		# The corpus is a copy: the source tree is never written. It keeps
		# what earlier runs found, plus the seeds and the saved crashes.
		for d in "$srcdir/corpus/$1" "$srcdir/regressions/$1"; do
			[ -d "$d" ] && cp -f "$d"/* "$run/corpus/" 2>/dev/null
		done
		limit=""
		if [ "$runs" -gt 0 ] 2>/dev/null; then
			limit="-runs=$runs"
			echo "fuzz_$1: fuzzing for ${seconds} s or $runs executions (log: $log)"
		else
			echo "fuzz_$1: fuzzing for ${seconds} s (log: $log)"
		fi
		# -close_fd_mask=2: the library's own error lines (bad rows are
		# logged) would flood the log; sanitizer reports still show.
		# shellcheck disable=SC2086
		$bound "$bin" $common -max_total_time="$seconds" $limit -print_final_stats=1 \
			-close_fd_mask=2 -artifact_prefix="$run/" "$run/corpus" >"$log" 2>&1
		rc=$?
		;;
	regress)
		files=$(for d in "$srcdir/corpus/$1" "$srcdir/regressions/$1"; do
			[ -d "$d" ] && find "$d" -type f ! -name 'README*'
		done)
		n=$(printf '%s\n' "$files" | grep -c .)
		echo "fuzz_$1: replaying $n inputs (log: $log)"
		if [ "$n" -eq 0 ]; then
			: >"$log"
			rc=0
			return
		fi
		# Each file is run once; a crash, leak or sanitizer report fails.
		# Full stacks for leaks through libjq (built without frame pointers).
		# shellcheck disable=SC2086
		printf '%s\n' "$files" | tr '\n' '\0' |
			ASAN_OPTIONS=${ASAN_OPTIONS:-fast_unwind_on_malloc=0} \
			xargs -0 $bound "$bin" $common -runs=1 >"$log" 2>&1
		rc=$?
		;;
	*)
		echo "fuzz-run.sh: unknown mode $mode" >&2
		exit 2
		;;
	esac
}

status=0
for name in "$@"; do
	bin=$workdir/fuzz_$name
	run=$workdir/work/$name
	mkdir -p "$run/corpus" || exit 1
	log=$run/fuzz.log
	run_target "$name"
	if [ "$rc" -ne 0 ]; then
		status=1
		echo "FAIL: fuzz_$name exited with status $rc; the end of its log:" >&2
		tail -n 60 "$log" >&2
		for f in "$run"/crash-* "$run"/leak-* "$run"/timeout-* "$run"/oom-* "$run"/slow-unit-*; do
			[ -f "$f" ] && echo "  input: $f (keep it in $srcdir/regressions/$name/)" >&2
		done
	elif [ "$mode" = fuzz ]; then
		# The last status line: executions, coverage, features, corpus.
		grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1 | sed "s/^/  fuzz_$name: /"
		grep -E '^Done [0-9]+ runs' "$log" | tail -n 1 | sed "s/^/  fuzz_$name: /"
	else
		echo "  fuzz_$name: $(grep -c '^Executed ' "$log") inputs replayed, no report"
	fi
done
exit "$status"
