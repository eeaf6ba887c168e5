#!/usr/bin/env bash
# run.sh BUILDDIR SRCDIR: the molecule-connect benchmark against the fake platform.
# Run through `make bench` (see tests/bench/README.md); knobs come from the environment.
set -uo pipefail

BUILD=${1:?usage: run.sh BUILDDIR SRCDIR}
SRC=${2:?usage: run.sh BUILDDIR SRCDIR}
MC=$BUILD/molecule-connect
FAKE=$BUILD/tests/fake-platform/fake-platform
TOOL=$BUILD/tests/bench/mcbench
JQ_ECHO='{id, text: ("echo: " + .text)}'

die() {
	echo "bench: $*" >&2
	exit 1
}

for bin in "$MC" "$FAKE" "$TOOL"; do
	[ -x "$bin" ] || die "$bin is missing: run it through 'make bench'"
done
for cmd in jq curl awk; do
	command -v "$cmd" >/dev/null || die "$cmd is needed"
done

QUICK=${BENCH_QUICK:-}
[ "$QUICK" = 0 ] && QUICK=
if [ -n "$QUICK" ]; then
	RUNS=${BENCH_RUNS:-1}
	IDLE_SECS=${BENCH_IDLE_SECS:-10}
	LAT_COUNT=${BENCH_LAT_COUNT:-40}
	DRAIN_N=2000
	SCALE_COUNTS="500 2000 10000"
	SIZES="1024:200 65536:50 1047552:10"
	STRACE_SECS=3
	DOC=${BENCH_DOC:-$BUILD/bench-quick.md}
else
	RUNS=${BENCH_RUNS:-3}
	IDLE_SECS=${BENCH_IDLE_SECS:-60}
	LAT_COUNT=${BENCH_LAT_COUNT:-200}
	DRAIN_N=10000
	SCALE_COUNTS="1000 10000 100000"
	# 1 MiB less 1 KiB: the queueing request and the echoed reply must both fit the
	# platform's 1 MiB body cap.
	SIZES="1024:2000 65536:500 1047552:50"
	STRACE_SECS=5
	DOC=${BENCH_DOC:-$SRC/docs/benchmarks.md}
fi
DRAIN_TIMEOUT=${BENCH_DRAIN_TIMEOUT:-240}
PEERS_MANY=8
INTERVAL=1      # the bridge's default --interval, for the inbound-latency target

WORK=$(mktemp -d "${TMPDIR:-/tmp}/mc-bench.XXXXXX") || die "cannot make a work directory"
# A tmpfs for one comparison drain (state saves without the cost of fsync), if any.
SHM=
if [ -d /dev/shm ] && [ -w /dev/shm ] && [ "$(stat -f -c %T /dev/shm 2>/dev/null)" = tmpfs ]; then
	SHM=$(mktemp -d /dev/shm/mc-bench.XXXXXX 2>/dev/null) || SHM=
fi
RESULTS=$WORK/results.jsonl
: >"$RESULTS"
FAKE_PID=
BRIDGE_PID=
NS_FAKE_PID=
NS_BRIDGE_PID=
WRAP=()
CEIL=null       # the ceiling (msg/s) measured last: drains are compared with it

cleanup() {
	[ -z "$BRIDGE_PID" ] || kill -KILL "$BRIDGE_PID" 2>/dev/null
	[ -z "$FAKE_PID" ] || kill -TERM "$FAKE_PID" 2>/dev/null
	[ -z "$NS_BRIDGE_PID" ] || kill -KILL "$NS_BRIDGE_PID" 2>/dev/null
	[ -z "$NS_FAKE_PID" ] || kill -TERM "$NS_FAKE_PID" 2>/dev/null
	wait 2>/dev/null
	if [ -n "${BENCH_KEEP:-}" ]; then
		echo "bench: work files kept in $WORK" >&2
	else
		rm -rf "$WORK"
	fi
	[ -z "$SHM" ] || rm -rf "$SHM"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now_ms() {
	local t=${EPOCHREALTIME/[.,]/}
	echo $((10#$t / 1000))
}

say() {
	printf '[%s] %s\n' "$(date +%T)" "$*" >&2
}

# ---------- the fake platform ----------

# fake_up [FAKE OPTIONS...]: a fresh fake platform; sets FAKE_PID and URL.
fake_up() {
	local port_file=$WORK/port i
	rm -f "$port_file"
	"$FAKE" --port-file "$port_file" --rate-limit 0 "$@" </dev/null >/dev/null 2>>"$WORK/fake.log" &
	FAKE_PID=$!
	for ((i = 0; i < 500; i++)); do
		[ -s "$port_file" ] && break
		kill -0 "$FAKE_PID" 2>/dev/null || die "the fake platform did not start: $(tail -3 "$WORK/fake.log")"
		sleep 0.01
	done
	[ -s "$port_file" ] || die "the fake platform wrote no port file"
	URL="http://127.0.0.1:$(cat "$port_file")"
}

fake_down() {
	[ -n "$FAKE_PID" ] || return 0
	kill -TERM "$FAKE_PID" 2>/dev/null
	wait "$FAKE_PID" 2>/dev/null
	FAKE_PID=
}

# ctl METHOD PATH [BODY]: a control call; prints the answer, fails on non-2xx.
ctl() {
	curl -sSf -X "$1" -H 'Content-Type: application/json' ${3:+--data-binary "$3"} "$URL$2"
}

# new_ws: creates the bridge's workspace; sets WS and TOKEN.
new_ws() {
	local a
	a=$(ctl POST /_control/workspaces '{}') || die "cannot create a workspace"
	WS=$(jq -r .id <<<"$a")
	TOKEN=$(jq -r .token <<<"$a")
}

# new_peers N: creates N peer workspaces; sets PEERS (comma-separated).
new_peers() {
	local i a list=
	for ((i = 0; i < $1; i++)); do
		a=$(ctl POST /_control/workspaces '{}') || die "cannot create a peer"
		list+=${list:+,}$(jq -r .id <<<"$a")
	done
	PEERS=$list
}

# seed_state PEER: queues one message and points the bridge's saved cursor at it, so
# the run pages with since_id instead of replaying the last 100 rows by time.
seed_state() {
	local id
	id=$(ctl POST /_control/messages "{\"workspace_id\":\"$WS\",\"from\":\"$1\",\"text\":\"seed\"}" |
		jq -r '.ids[0]') || die "cannot queue the seed message"
	STATE=${STATE_BASE:-$WORK}/state
	rm -rf "$STATE"
	mkdir -m 700 "$STATE"
	(umask 077 && printf '{"workspace_id":"%s","last_since_id":"%s"}\n' "$WS" "$id" >"$STATE/$WS.json")
}

# bridge_start [OPTIONS...] -- HANDLER...: starts the bridge on WS as a co-process
# bridge; sets BRIDGE_PID and T0_MS (the wall clock just before it starts).
bridge_start() {
	T0_MS=$(now_ms)
	MOLECULE_WORKSPACE_TOKEN=$TOKEN "${WRAP[@]}" "$MC" --api-url "$URL" --state-dir "$STATE" -q "$@" \
		</dev/null >/dev/null 2>>"$WORK/bridge.log" &
	BRIDGE_PID=$!
}

bridge_stop() {
	local rc=0 target=$BRIDGE_PID
	[ -n "$BRIDGE_PID" ] || return 0
	# Under strace or perf the bridge is the wrapper's child; valgrind runs it in place.
	if [ ${#WRAP[@]} -gt 0 ] && [ "${WRAP[0]}" != valgrind ]; then
		target=$(cat "/proc/$BRIDGE_PID/task/$BRIDGE_PID/children" 2>/dev/null)
		target=${target%% *}
		[ -n "$target" ] || target=$BRIDGE_PID
	fi
	kill -TERM "$target" 2>/dev/null
	wait "$BRIDGE_PID" || rc=$?
	BRIDGE_PID=
	[ "$rc" -eq 0 ] || say "warning: the bridge exited with status $rc (see $WORK/bridge.log)"
}

# record JSON: one result line, tagged with the run number.
record() {
	jq -c --argjson run "$RUN" '. + {run: $run}' <<<"$1" >>"$RESULTS"
}

handler_cmd() {
	case $1 in
	jq) HANDLER=(jq -c --unbuffered "$JQ_ECHO") ;;
	c) HANDLER=("$TOOL" echo) ;;
	esac
}

# ---------- 1. the ceiling: the fake platform alone, one client ----------

# ceiling CASE COUNT TEXT_SIZE
ceiling() {
	local out
	fake_up
	new_ws
	new_peers 1
	# Pages of 8: the bridge's mix (it asks again once half of its 16-message window is free).
	out=$("$TOOL" ceiling --url "$URL" --ws "$WS" --token "$TOKEN" --peer "$PEERS" \
		--count "$2" --page 8 --text-size "$3") || die "ceiling client failed"
	fake_down
	record "$(jq -c --arg case "$1" --argjson size "$3" '{case: $case, size: $size} + .' <<<"$out")"
	CEIL=$(jq .msg_per_s <<<"$out")
	say "$1: $(jq -r '"\(.msg_per_s) msg/s, \(.req_per_s) req/s"' <<<"$out")"
}

# ---------- 2. and 5. backlog drains ----------

# drain CASE PEERS COUNT TEXT_SIZE HANDLER(jq|c) [STATE_BASE]: STATE_BASE is where the
# state directory goes (default: the work directory).
drain() {
	local case=$1 npeers=$2 count=$3 size=$4 out
	local STATE_BASE=${6:-$WORK}
	fake_up
	new_ws
	new_peers "$npeers"
	seed_state "${PEERS%%,*}"
	"$TOOL" queue --url "$URL" --ws "$WS" --peers "$PEERS" --count "$count" --text-size "$size" ||
		die "cannot queue $count messages"
	handler_cmd "$5"
	bridge_start "$WS" -- "${HANDLER[@]}"
	out=$("$TOOL" wait --url "$URL" --peers "$PEERS" --target "$count" --pid "$BRIDGE_PID" \
		--fake-pid "$FAKE_PID" --timeout "$DRAIN_TIMEOUT")
	bridge_stop
	fake_down
	[ -n "$out" ] || die "$case: no result from the waiter"
	out=$(jq -c --arg case "$case" --argjson peers "$npeers" --argjson count "$count" \
		--argjson size "$size" --arg handler "$5" --argjson t0 "$T0_MS" --argjson ceil "$CEIL" '
		{case: $case, peers: $peers, count: $count, size: $size, handler: $handler} + . +
		{secs: ((.last_post_ms - $t0) / 1000)} |
		.rate = (if .secs > 0 then .posts_ok / .secs else 0 end) |
		.vs_ceiling = (if $ceil then .rate / $ceil else null end) |
		.cpu_us_per_msg = (if .posts_ok > 0 then .cpu_s * 1e6 / .posts_ok else null end) |
		.ctx_per_msg = (if .posts_ok > 0 then (.vctx + .nvctx) / .posts_ok else null end) |
		.rows_per_get = (if .gets > 0 then .posts_ok / .gets else null end)' <<<"$out")
	record "$out"
	say "$case: $(jq -r '"\(.rate | floor) msg/s, \(.secs) s, peak RSS \(.hwm_kb) kB, bridge CPU \(.cpu_s) s, handler \(.handler_cpu_s) s, fake \(.fake_cpu_s) s\(if .timed_out then " (TIMED OUT)" else "" end)"' <<<"$out")"
}

# ---------- 3. latency at light load ----------

# latency CASE [FAULT]: default options, so the event stream is up; FAULT (a fault of
# the fake platform's control API) can make it lose every event.
latency() {
	local case=$1 fault=${2:-} log=$WORK/stamp.log out
	fake_up
	new_ws
	new_peers 1
	seed_state "$PEERS"
	[ -z "$fault" ] || ctl POST /_control/faults "$fault" >/dev/null || die "cannot add the fault $fault"
	: >"$log"
	bridge_start "$WS" -- "$TOOL" stamp "$log"
	# Registered, and past its first poll, before the first message goes in.
	for ((i = 0; i < 500; i++)); do
		ctl GET "/_control/workspaces/$WS" | jq -e .registered >/dev/null 2>&1 && break
		sleep 0.01
	done
	sleep 1.5
	"$TOOL" trickle --url "$URL" --ws "$WS" --peer "$PEERS" --count "$LAT_COUNT" \
		--min-gap-ms 30 --max-gap-ms 370 || die "trickle failed"
	"$TOOL" wait --url "$URL" --peers "$PEERS" --target "$LAT_COUNT" --pid "$BRIDGE_PID" \
		--timeout 60 >/dev/null
	ctl GET "/_control/activity?workspace_id=$PEERS" >"$WORK/replies.json" || die "cannot read the replies"
	ctl GET /_control/requests >"$WORK/requests.json" || die "cannot read the request log"
	bridge_stop
	fake_down
	# Inbound: created_at of the message -> its arrival on the handler's stdin, split
	# at the poll that fetched it (the last GET that started before the arrival): the
	# wait for that poll (uniform over the interval by design) and what the bridge adds.
	# Reply: the handler's write -> created_at of the reply row that its post made.
	out=$(jq -sc --arg case "$case" --slurpfile rows "$WORK/replies.json" --slurpfile reqs "$WORK/requests.json" '
		# RFC 3339 with 0 to 9 fraction digits (trailing zeros trimmed): microseconds.
		def us: capture("^(?<s>[^.Z]+)(\\.(?<f>[0-9]+))?Z$") as $c |
			(($c.s + "Z") | fromdateiso8601) * 1000000 + ((($c.f // "") + "000000")[0:6] | tonumber);
		def pct(p): sort | .[((length * p) | ceil) - 1];
		def ms: . / 1000 | . * 100 | round / 100;
		($rows[0] | map({key: (.request_body.params.message.parts[0].text // ""),
				 value: (.created_at | us)}) | from_entries) as $posted |
		([$reqs[0][] | select(.method == "GET" and (.path | contains("/activity"))) | .t_ms * 1000] | sort) as $gets |
		map(select(.text | startswith("lat-"))) |
		map(.in_us as $in | ([$gets[] | select(. <= $in)] | last) as $g |
		    {inb: (.in_us - (.created_at | us)),
		     wait: (if $g then $g - (.created_at | us) else null end),
		     deliver: (if $g then .in_us - $g else null end),
		     rep: ($posted["echo: " + .text] as $t | if $t then $t - .out_us else null end)}) |
		{case: $case, n: length,
		 inbound_median_ms: (map(.inb) | pct(0.5) | ms), inbound_p99_ms: (map(.inb) | pct(0.99) | ms),
		 inbound_mean_ms: (map(.inb) | add / length | ms),
		 poll_wait_median_ms: (map(.wait | select(. != null)) | pct(0.5) | ms),
		 deliver_median_ms: (map(.deliver | select(. != null)) | pct(0.5) | ms),
		 deliver_p99_ms: (map(.deliver | select(. != null)) | pct(0.99) | ms),
		 poll_period_ms: ([range(1; $gets | length) as $i | $gets[$i] - $gets[$i - 1]] | pct(0.5) | ms),
		 reply_n: (map(select(.rep != null)) | length),
		 reply_median_ms: (map(.rep | select(. != null)) | pct(0.5) | ms),
		 reply_p99_ms: (map(.rep | select(. != null)) | pct(0.99) | ms)}' "$log") ||
		die "cannot compute latencies"
	record "$out"
	say "$case: $(jq -r '"inbound median \(.inbound_median_ms) ms p99 \(.inbound_p99_ms) ms (poll -> handler median \(.deliver_median_ms) ms, poll period \(.poll_period_ms) ms); reply median \(.reply_median_ms) ms p99 \(.reply_p99_ms) ms (n=\(.n))"' <<<"$out")"
}

# ---------- 4. footprint at idle ----------

proc_field() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
# CPU time in ms: from schedstat (nanoseconds) when the kernel has it, else from the
# clock ticks of stat (10 ms steps: too coarse for a short idle window).
proc_cpu_ms() {
	if [ -r "/proc/$1/schedstat" ]; then
		awk '{ printf "%.3f\n", $1 / 1e6 }' "/proc/$1/schedstat"
	else
		awk '{ sub(/^.*\) /, ""); print ($12 + $13) * 1000 / '"$(getconf CLK_TCK)"' }' "/proc/$1/stat"
	fi
}

# mem_kb PID: "PSS USS" in kB from smaps_rollup (USS: the pages only this process
# maps, clean and dirty: what one more bridge costs the machine).
mem_kb() {
	awk '$1 == "Pss:" { p = $2 } $1 == "Private_Clean:" || $1 == "Private_Dirty:" { u += $2 }
		END { print p + 0, u + 0 }' "/proc/$1/smaps_rollup" 2>/dev/null
}

# requests_between FROM_MS TO_MS: platform requests the fake at URL logged in that time.
requests_between() {
	ctl GET /_control/requests | jq --argjson a "$1" --argjson b "$2" '[.[] | select(.t_ms >= $a and .t_ms < $b)] | length'
}

# The bridge without an event stream (the fake platform has none) polls at
# --idle-interval once it has been quiet for twelve of them: its idle minute is
# counted after that.
QUIET_SECS=65

# idle_nostream_start: a bridge with default options against a fake platform
# without the event stream, left idle while the rest of idle() runs.
idle_nostream_start() {
	fake_up --no-events
	new_ws
	new_peers 1
	STATE_BASE=$WORK/nostream
	mkdir -p "$STATE_BASE"
	seed_state "$PEERS"
	STATE_BASE=
	handler_cmd jq
	bridge_start "$WS" -- "${HANDLER[@]}"
	NS_FAKE_PID=$FAKE_PID NS_URL=$URL NS_BRIDGE_PID=$BRIDGE_PID NS_T0=$T0_MS
	FAKE_PID= BRIDGE_PID=
}

# idle_nostream_finish: its requests over IDLE_SECS once quiet, per minute.
idle_nostream_finish() {
	local from=$((NS_T0 + QUIET_SECS * 1000)) to n
	to=$((from + IDLE_SECS * 1000))
	while [ "$(now_ms)" -lt "$to" ]; do sleep 1; done
	n=$(URL=$NS_URL requests_between "$from" "$to")
	kill -TERM "$NS_BRIDGE_PID" 2>/dev/null
	wait "$NS_BRIDGE_PID" 2>/dev/null
	kill -TERM "$NS_FAKE_PID" 2>/dev/null
	wait "$NS_FAKE_PID" 2>/dev/null
	NS_BRIDGE_PID= NS_FAKE_PID=
	NOSTREAM_REQ_PER_MIN=$(jq -n --argjson n "$n" --argjson secs "$IDLE_SECS" '$n * 60 / $secs')
}

idle() {
	local rss hwm anon pss uss cpu0 cpu1 v0 v1 n0 n1 w0 w1 reqs straced=null
	idle_nostream_start
	fake_up
	new_ws
	new_peers 1
	seed_state "$PEERS"
	handler_cmd jq
	bridge_start "$WS" -- "${HANDLER[@]}"
	sleep 5
	rss=$(proc_field "$BRIDGE_PID" VmRSS)
	hwm=$(proc_field "$BRIDGE_PID" VmHWM)
	anon=$(proc_field "$BRIDGE_PID" RssAnon)
	read -r pss uss <<<"$(mem_kb "$BRIDGE_PID")"
	cpu0=$(proc_cpu_ms "$BRIDGE_PID")
	v0=$(proc_field "$BRIDGE_PID" voluntary_ctxt_switches)
	n0=$(proc_field "$BRIDGE_PID" nonvoluntary_ctxt_switches)
	w0=$(now_ms)
	sleep "$IDLE_SECS"
	w1=$(now_ms)
	cpu1=$(proc_cpu_ms "$BRIDGE_PID")
	v1=$(proc_field "$BRIDGE_PID" voluntary_ctxt_switches)
	n1=$(proc_field "$BRIDGE_PID" nonvoluntary_ctxt_switches)
	reqs=$(requests_between "$w0" "$w1")
	# Then, separately (tracing costs CPU), what the wake-ups are: every system call
	# for a few seconds; a poll with a zero timeout does not sleep.
	if command -v strace >/dev/null &&
		timeout -s INT "$STRACE_SECS" strace -f -qq -o "$WORK/idle.strace" -p "$BRIDGE_PID" 2>/dev/null; [ -s "$WORK/idle.strace" ]; then
		straced=$(awk -v secs="$STRACE_SECS" '
			{ sub(/^[0-9]+ +/, "") }
			/^<\.\.\./ { next }
			match($0, /^[a-z_0-9]+\(/) {
				name = substr($0, 1, RLENGTH - 1); n[name]++; total++
				if (name == "poll" && $0 !~ /, 0\) +=/) sleeping++
				if (name == "ppoll" && $0 !~ /\{tv_sec=0, tv_nsec=0\}/) sleeping++
				if (name ~ /^epoll_p?wait$/ && $0 !~ /, 0\) +=/) sleeping++
			}
			END {
				top = ""
				for (k in n) top = top sprintf("%s%s %.1f", top == "" ? "" : ", ", k, n[k] / secs)
				printf "{\"syscalls_per_s\":%.1f,\"sleeping_polls_per_s\":%.2f,\"by_call\":\"%s\"}", total / secs, sleeping / secs, top
			}' "$WORK/idle.strace")
	fi
	bridge_stop
	# The floor: a process that loads the same libcurl and libjq and makes one
	# request resides in this much before doing anything of its own.
	local floor_pid floor_rss=null floor_anon=null floor_pss=null floor_uss=null
	"$TOOL" floor --url "$URL/_control/workspaces" >"$WORK/floor.out" 2>&1 &
	floor_pid=$!
	for ((i = 0; i < 200; i++)); do grep -q ready "$WORK/floor.out" && break; sleep 0.05; done
	if grep -q ready "$WORK/floor.out"; then
		sleep 1
		floor_rss=$(proc_field "$floor_pid" VmRSS)
		floor_anon=$(proc_field "$floor_pid" RssAnon)
		read -r floor_pss floor_uss <<<"$(mem_kb "$floor_pid")"
	fi
	kill "$floor_pid" 2>/dev/null
	wait "$floor_pid" 2>/dev/null
	fake_down
	idle_nostream_finish
	local out
	out=$(jq -nc --argjson rss "$rss" --argjson hwm "$hwm" --argjson anon "${anon:-null}" \
		--argjson frss "${floor_rss:-null}" --argjson fanon "${floor_anon:-null}" --argjson fpss "${floor_pss:-null}" \
		--argjson fuss "${floor_uss:-null}" --argjson pss "${pss:-null}" --argjson uss "${uss:-null}" \
		--argjson cpu0 "$cpu0" --argjson cpu1 "$cpu1" \
		--argjson v "$((v1 - v0))" --argjson n "$((n1 - n0))" --argjson secs "$IDLE_SECS" \
		--argjson wsecs "$(((w1 - w0) / 1000))" --argjson reqs "$reqs" --argjson nsreqs "$NOSTREAM_REQ_PER_MIN" \
		--argjson strace "$straced" '
		{case: "idle", idle_secs: $secs, rss_kb: $rss, hwm_kb: $hwm, anon_kb: $anon, pss_kb: $pss, uss_kb: $uss,
		 floor_rss_kb: $frss, floor_anon_kb: $fanon, floor_pss_kb: $fpss, floor_uss_kb: $fuss,
		 cpu_ms_per_60s: (($cpu1 - $cpu0) * 60 / $secs),
		 requests_per_min: ($reqs * 60 / (if $wsecs > 0 then $wsecs else $secs end)),
		 requests_per_min_nostream: $nsreqs,
		 wakeups_per_s: ($v / $secs), involuntary_per_s: ($n / $secs), strace: $strace}')
	record "$out"
	say "idle: $(jq -r '"RSS \(.rss_kb) kB (PSS \(.pss_kb) kB, USS \(.uss_kb) kB; libcurl+libjq floor \(.floor_rss_kb) kB), CPU \(.cpu_ms_per_60s) ms per 60 s, \(.wakeups_per_s) wake-ups/s, \(.requests_per_min) requests/min (\(.requests_per_min_nostream) without the stream)"' <<<"$out")"
}

# ---------- profiling one drain: BENCH_PROFILE=strace|perf|callgrind ----------

profile() {
	local mode=$1 n=${BENCH_PROFILE_N:-} dir=$BUILD/bench-profile
	mkdir -p "$dir"
	case $mode in
	# No -f: the bridge is one thread; its handler is not counted.
	strace) n=${n:-10000}; WRAP=(strace -c -o "$dir/strace.txt") ;;
	perf) n=${n:-10000}; WRAP=(perf record -q -F 2000 --call-graph dwarf,16384 -o "$dir/perf.data" --) ;;
	callgrind) n=${n:-2000}; WRAP=(valgrind --tool=callgrind "--callgrind-out-file=$dir/callgrind.out") ;;
	*) die "BENCH_PROFILE must be strace, perf or callgrind" ;;
	esac
	command -v "${WRAP[0]}" >/dev/null || die "${WRAP[0]} is not installed"
	RUN=1
	say "profiling a drain of $n messages from one peer (C echo) under $mode; output in $dir"
	drain "profile-$mode" 1 "$n" 0 c
	case $mode in
	strace)
		awk -v n="$n" 'NR <= 2 { print; next } /^-/ { next } $NF != "total" && NF >= 5 {
			printf "%s   %.2f per message\n", $0, $4 / n }' "$dir/strace.txt" | head -30 ;;
	perf)
		perf report -i "$dir/perf.data" --comm molecule-connec --children --stdio --sort symbol -g none 2>/dev/null |
			grep -v '^#' | grep -v '^$' | head -60 ;;
	callgrind)
		callgrind_annotate --inclusive=yes "$dir/callgrind.out" 2>/dev/null | head -80 ;;
	esac
}

if [ -n "${BENCH_PROFILE:-}" ]; then
	profile "$BENCH_PROFILE"
	exit 0
fi

# ---------- the runs ----------

# What was built: the commit (and whether src/ had changes on top) when the run starts.
COMMIT=$(git -C "$SRC" rev-parse --short HEAD 2>/dev/null || echo "?")
[ -z "$(git -C "$SRC" status --porcelain -- src 2>/dev/null)" ] || COMMIT+=" (src/ modified)"
START=$(date +%s)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
say "molecule-connect benchmark: $([ -n "$QUICK" ] && echo quick || echo full), $RUNS run(s), work dir $WORK"
for ((RUN = 1; RUN <= RUNS; RUN++)); do
	say "run $RUN of $RUNS"
	ceiling ceiling "$DRAIN_N" 0
	drain drain-1peer-jq 1 "$DRAIN_N" 0 jq
	drain drain-1peer-c 1 "$DRAIN_N" 0 c
	drain drain-${PEERS_MANY}peers-jq "$PEERS_MANY" "$DRAIN_N" 0 jq
	drain drain-${PEERS_MANY}peers-c "$PEERS_MANY" "$DRAIN_N" 0 c
	# The same drain with the state file on tmpfs: what the fsyncs of state saves cost.
	[ -z "$SHM" ] || drain drain-1peer-c-tmpfs 1 "$DRAIN_N" 0 c "$SHM"
	latency latency
	# Every event lost on the way: the timer alone delivers.
	latency latency-drop '{"endpoint":"events","drop_ratio":1}'
	idle
done
# Scaling: once (the largest drains dominate the run time); the 10,000 row is the
# 1-peer C-echo drain above.
RUN=1
for n in $SCALE_COUNTS; do
	[ "$n" = "$DRAIN_N" ] && continue
	drain "scale-$n" 1 "$n" 0 c
done
for spec in $SIZES; do
	size=${spec%%:*}
	n=${spec#*:}
	ceiling "ceiling-$size" "$n" "$size"
	drain "size-$size" 1 "$n" "$size" c
done
ELAPSED=$(($(date +%s) - START))
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
say "done in $ELAPSED s"

# ---------- the report ----------

SUMMARY=$WORK/summary.json
jq -s '
	def median: sort | if length == 0 then null
		elif length % 2 == 1 then .[length / 2 | floor]
		else (.[length / 2 - 1] + .[length / 2]) / 2 end;
	group_by(.case) | map({key: .[0].case, value: (
		. as $runs | (.[0] | keys) | map(. as $k |
			{key: $k, value: ([$runs[] | .[$k]] | if all(type == "number") then median else .[0] end)})
		| from_entries + {runs: ($runs | length)})}) | from_entries' "$RESULTS" >"$SUMMARY" ||
	die "cannot summarise $RESULTS"

MODEL=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)
NPROC=$(nproc)
KERNEL=$(uname -r)
CURLV=$(curl-config --version 2>/dev/null || echo "libcurl ?")
CMD="make bench${QUICK:+ BENCH_QUICK=1}${BENCH_RUNS:+ BENCH_RUNS=$BENCH_RUNS}${BENCH_IDLE_SECS:+ BENCH_IDLE_SECS=$BENCH_IDLE_SECS}"
VERSION=$("$MC" --version 2>/dev/null | head -1)

TABLE=$(jq -r --argjson interval "$INTERVAL" --argjson n "$DRAIN_N" --argjson peers "$PEERS_MANY" \
	--arg sizes "$SIZES" --arg counts "$SCALE_COUNTS" '
	. as $s |
	def r0: if . == null then "?" else (. + 0.5 | floor | tostring) end;
	def r1: if . == null then "?" else (. * 10 | round / 10 | tostring) end;
	def r2: if . == null then "?" else (. * 100 | round / 100 | tostring) end;
	def mib: if . == null then "?" else (. / 1024 * 10 | round / 10 | tostring) + " MiB" end;
	def pc: if . == null then "" else (. * 100 | round | tostring) + " %" end;
	def ok(c): if c then "yes" else "**no**" end;
	def size_name: if . == 1024 then "1 KiB" elif . == 65536 then "64 KiB" elif . == 1047552 then "1 MiB - 1 KiB" else tostring + " B" end;
	def count_name: tostring | if length > 3 then .[:-3] + "," + .[-3:] else . end;
	$s.ceiling.msg_per_s as $ceil |
	def drainrow($case; $what; $target; pass):
		$s[$case] as $d |
		if $d == null then empty else
		"| \($what) | \($d.rate | r0) msg/s\(if $d.timed_out then " (timed out)" else "" end) | \($d.vs_ceiling | pc) | \($target) | \($d | pass) |"
		end;
	"| Figure | Value | vs ceiling | Target | Met |",
	"|---|---|---|---|---|",
	"| Ceiling: fake platform, one keep-alive client, GET page of 8 + 8 POSTs | \($ceil | r0) msg/s (\($s.ceiling.req_per_s | r0) req/s) | | | |",
	drainrow("drain-1peer-jq"; "Drain \($n | count_name), 1 peer, jq echo"; "≥ 80 %"; ok(.vs_ceiling >= 0.8)),
	drainrow("drain-1peer-c"; "Drain \($n | count_name), 1 peer, C echo"; "≥ 80 %"; ok(.vs_ceiling >= 0.8)),
	drainrow("drain-1peer-c-tmpfs"; "Drain \($n | count_name), 1 peer, C echo, state file on tmpfs (fsync costs nothing)"; "≥ 80 %"; ok(.vs_ceiling >= 0.8)),
	drainrow("drain-\($peers)peers-jq"; "Drain \($n | count_name), \($peers) peers, jq echo"; "≥ 50 %"; ok(.vs_ceiling >= 0.5)),
	drainrow("drain-\($peers)peers-c"; "Drain \($n | count_name), \($peers) peers, C echo"; "≥ 50 %"; ok(.vs_ceiling >= 0.5)),
	$s.latency as $l | $s["latency-drop"] as $d |
	"| Inbound latency (queued → handler stdin), default options, event stream up, \($l.n) messages | median \($l.inbound_median_ms | r1) ms, p99 \($l.inbound_p99_ms | r1) ms, mean \($l.inbound_mean_ms | r1) ms | | median ≤ 20 ms | \(ok($l.inbound_median_ms <= 20)) |",
	"| … of which poll → handler stdin (what the bridge adds after the poll) | median \($l.deliver_median_ms | r2) ms, p99 \($l.deliver_p99_ms | r2) ms | | median ≤ 5 ms | \(ok($l.deliver_median_ms <= 5)) |",
	"| Inbound latency, the stream losing every event, \($d.n) messages (median gap between polls \($d.poll_period_ms | r1) ms) | median \($d.inbound_median_ms | r1) ms, p99 \($d.inbound_p99_ms | r1) ms | | median ≤ the poll period | \(ok($d.inbound_median_ms <= $d.poll_period_ms)) |",
	"| Reply latency (handler write → platform) | median \($l.reply_median_ms | r2) ms, p99 \($l.reply_p99_ms | r2) ms | | median < 2 ms | \(ok($l.reply_median_ms < 2)) |",
	"| Platform requests per idle minute, default options, event stream up | \($s.idle.requests_per_min | r1) | | ≤ 8 | \(ok($s.idle.requests_per_min <= 8)) |",
	"| … the platform without the stream (counted after the quiet minute) | \($s.idle.requests_per_min_nostream | r1) | | ≤ 14 | \(ok($s.idle.requests_per_min_nostream <= 14)) |",
	"| Memory idle (after 5 s): VmRSS / PSS / USS (private) | \($s.idle.rss_kb | mib) / \($s.idle.pss_kb | mib) / \($s.idle.uss_kb | mib) | | USS ≤ 2 MiB | \(ok($s.idle.uss_kb <= 2048)) |",
	"| … floor: a process that only loads libcurl and libjq and makes one request: VmRSS / PSS / USS | \($s.idle.floor_rss_kb | mib) / \($s.idle.floor_pss_kb | mib) / \($s.idle.floor_uss_kb | mib) | | | |",
	(if $s.idle.floor_uss_kb == null then null else $s.idle.uss_kb - $s.idle.floor_uss_kb end) as $own |
	"| … what the bridge adds: idle USS above that floor (medians; a few kB either way is noise) | \(if $own == null then "?" else "\($own) kB" end) | | | |",
	"| RSS at the end of the \($n | count_name) drain, 1 peer, jq: VmRSS / VmHWM (anonymous) | \($s["drain-1peer-jq"].rss_kb | mib) / \($s["drain-1peer-jq"].hwm_kb | mib) (\($s["drain-1peer-jq"].anon_kb | mib)) | | ≤ 16 MiB | \(ok($s["drain-1peer-jq"].hwm_kb <= 16384)) |",
	"| CPU idle, per 60 s | \($s.idle.cpu_ms_per_60s | r1) ms | | ≤ 5 ms | \(ok($s.idle.cpu_ms_per_60s <= 5)) |",
	"| Wake-ups idle (voluntary context switches) | \($s.idle.wakeups_per_s | r2) /s | | | |",
	"| Bridge CPU per message, \($n | count_name) drain, 1 peer, jq echo | \($s["drain-1peer-jq"].cpu_us_per_msg | r0) µs | | ≤ 50 µs | \(ok($s["drain-1peer-jq"].cpu_us_per_msg <= 50)) |",
	"| Bridge CPU per message, \($n | count_name) drain, 1 peer, C echo | \($s["drain-1peer-c"].cpu_us_per_msg | r0) µs | | ≤ 50 µs | \(ok($s["drain-1peer-c"].cpu_us_per_msg <= 50)) |",
	"| Activity rows per GET in the jq drain | \($s["drain-1peer-jq"].rows_per_get | r1) | | | |",
	($counts | split(" ") | map(tonumber)[] as $c |
		(if $c == $n then "drain-1peer-c" else "scale-\($c)" end) as $case | $s[$case] as $d |
		if $d == null then empty else
		"| Scaling: \($c | count_name) messages, 1 peer, C echo | \($d.rate | r0) msg/s, peak RSS \($d.hwm_kb | mib)\(if $d.timed_out then " (timed out)" else "" end) | \($d.vs_ceiling | pc) | ≤ 16 MiB | \(ok($d.hwm_kb <= 16384)) |" end),
	($sizes | split(" ")[] | split(":") | map(tonumber) as [$sz, $c] | $s["size-\($sz)"] as $d |
		$s["ceiling-\($sz)"].msg_per_s as $cs |
		if $d == null then empty else
		"| Size: \($c | count_name) × \($sz | size_name), 1 peer, C echo | \($d.rate | r1) msg/s, peak RSS \($d.hwm_kb | mib)\(if $d.timed_out then " (timed out)" else "" end) | \($d.vs_ceiling | pc) of \($cs | r1) msg/s | ≤ 16 MiB | \(ok($d.hwm_kb <= 16384)) |" end)
	' "$SUMMARY") || die "cannot format the table"

echo
echo "$TABLE"
echo

DETAILS=$(jq -r '
	def r(n): if . == null then "?" else (. * n | round / n | tostring) end;
	to_entries | map(select(.key | test("^(drain|scale|size)"))) | sort_by(.value.count, .key)[] | .value |
	"| \(.case) | \(.count) | \(.rate | r(10)) | \(.secs | r(100)) | \(.cpu_s | r(100)) | \(.handler_cpu_s | r(100)) | \(.fake_cpu_s | r(100)) | \(.cpu_us_per_msg | r(1)) | \(.ctx_per_msg | r(100)) | \(.rows_per_get | r(10)) | \(.hwm_kb) |"' "$SUMMARY")
PER_RUN=$(jq -rs --argjson peers "$PEERS_MANY" '
	def r0: if . == null then "?" else (. + 0.5 | floor | tostring) end;
	def r1: if . == null then "?" else (. * 10 | round / 10 | tostring) end;
	map(select(.run != null)) | group_by(.run)[] | map({key: .case, value: .}) | from_entries as $r |
	select($r.ceiling != null) |
	"| \($r.ceiling.run) | \($r.ceiling.msg_per_s | r0) | \($r["drain-1peer-jq"].rate | r0) | \($r["drain-1peer-c"].rate | r0) | \($r["drain-1peer-c-tmpfs"].rate | r0) | \($r["drain-\($peers)peers-jq"].rate | r0) | \($r["drain-\($peers)peers-c"].rate | r0) | \($r.latency.reply_median_ms | r1) | \($r.latency.inbound_median_ms | r1) | \($r["latency-drop"].inbound_median_ms | r0) | \($r.idle.requests_per_min | r1) | \($r.idle.requests_per_min_nostream | r1) | \($r.idle.uss_kb / 1024 | r1) | \($r.idle.cpu_ms_per_60s | r1) |"' "$RESULTS")
IDLE_STRACE=$(jq -r '.idle.strace | if . == null then "not measured (strace unavailable)" else "\(.syscalls_per_s) system calls/s (\(.by_call))" end' "$SUMMARY")

# The fleet's figures come from make bench-fleet (tests/bench/fleet.sh), those of one
# co-process per conversation from make bench-per (tests/bench/per-bench.sh): each
# writes its section between markers, and a run of make bench keeps them.
kept_section() { # NAME: the section between <!-- NAME --> and <!-- /NAME --> of $DOC
	[ -f "$DOC" ] && grep -q "^<!-- $1 -->\$" "$DOC" &&
		sed -n "/^<!-- $1 -->\$/,/^<!-- \/$1 -->\$/p" "$DOC"
}
FLEET_SECTION=$(kept_section fleet)
PER_SECTION=$(kept_section per)
mkdir -p "$(dirname "$DOC")"
cat >"$DOC" <<EOF
# Benchmarks

Measured by \`$CMD\` (tests/bench/run.sh; how each figure is taken is in
tests/bench/README.md) against the fake platform (\`--rate-limit 0\`) on loopback.

- Machine: $NPROC × $MODEL, Linux $KERNEL, $CURLV
- Date: $(date -u '+%Y-%m-%d %H:%M UTC')
- Program: $VERSION, commit $COMMIT
- Figures: median of $RUNS run(s) (scaling and size rows: one run); bench wall time $ELAPSED s

$TABLE

"vs ceiling" is the drain rate as a share of what the fake platform itself serves one
sequential keep-alive client sending the bridge's request mix, measured in the same run
just before (the size rows: with messages of that size), then the median over the runs.
The ceiling is a property of this machine and the fake platform, not of the bridge: a
drain from one peer cannot beat it, since replies to one peer are posted one after the
other. Everything shares $NPROC cores with whatever else the machine runs (load average
$LOAD_START at the start, $LOAD_END at the end); the per-run figures below show how much
that moves the numbers.

## Drain details (medians)

| case | messages | msg/s | seconds | bridge CPU s | handler CPU s | fake CPU s | bridge CPU µs/msg | context switches/msg | rows/GET | peak RSS kB |
|---|---|---|---|---|---|---|---|---|---|---|
$DETAILS

Idle system calls (strace, ${STRACE_SECS} s after the idle window): $IDLE_STRACE.

## Each run

| run | ceiling msg/s | 1 peer jq | 1 peer C | 1 peer C, tmpfs | $PEERS_MANY peers jq | $PEERS_MANY peers C | reply median ms | inbound median ms | inbound, events lost, ms | idle requests/min | the same, no stream | idle USS MiB | idle CPU ms/60 s |
|---|---|---|---|---|---|---|---|---|---|---|---|---|---|
$PER_RUN

$(cat "$SRC/tests/bench/budget.md")

$(cat "$SRC/tests/bench/notes.md")
$FLEET_SECTION

$PER_SECTION
EOF
say "report written to $DOC"
cp "$RESULTS" "$BUILD/bench-results.jsonl" 2>/dev/null || true
