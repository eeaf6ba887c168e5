#!/usr/bin/env bash
# fleet.sh BUILDDIR SRCDIR: many bridges of one org sharing one request budget, against one
# fake platform; run through `make bench-fleet` (see tests/bench/README.md).
set -uo pipefail

BUILD=${1:?usage: fleet.sh BUILDDIR SRCDIR}
SRC=${2:?usage: fleet.sh BUILDDIR SRCDIR}
MC=$BUILD/molecule-connect
FAKE=$BUILD/tests/fake-platform/fake-platform
TOOL=$BUILD/tests/bench/mcbench

N=${FLEET_BRIDGES:-100}             # bridges, one workspace each, all of one org
STAGGER=${FLEET_STAGGER_SECS:-60}   # their starts are spread over this long
SETTLE=${FLEET_SETTLE_SECS:-60}     # then nothing happens for this long
IDLE=${FLEET_IDLE_SECS:-60}         # then CPU is measured over this long, still idle
SECS=${FLEET_SECS:-600}             # then messages for this long, each to a bridge picked at random,
GAP=${FLEET_GAP_MS:-1000}           # one every this many ms
COUNT=$((SECS * 1000 / GAP))
LIMIT=${FLEET_RATE_LIMIT:-600}      # the org's budget a minute
DOC=${FLEET_DOC:-$SRC/docs/benchmarks.md}
ORG=0b5c3a52-6f0e-4c1b-9a57-3e2f1d0c9b8a

die() {
	echo "fleet: $*" >&2
	exit 1
}
say() {
	printf '[%s] %s\n' "$(date +%T)" "$*" >&2
}
now_ms() {
	local t=${EPOCHREALTIME/[.,]/}
	echo $((10#$t / 1000))
}

for bin in "$MC" "$FAKE" "$TOOL"; do
	[ -x "$bin" ] || die "$bin is missing: run it through 'make bench-fleet'"
done
for cmd in jq curl awk; do
	command -v "$cmd" >/dev/null || die "$cmd is needed"
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/mc-fleet.XXXXXX") || die "cannot make a work directory"
FAKE_PID=
PIDS=()
cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
	[ -z "$FAKE_PID" ] || kill -TERM "$FAKE_PID" 2>/dev/null
	wait 2>/dev/null
	if [ -n "${BENCH_KEEP:-}" ]; then
		echo "fleet: work files kept in $WORK" >&2
	else
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------- the platform: one org, one budget ----------

"$FAKE" --port-file "$WORK/port" --org-id "$ORG" --rate-limit "$LIMIT" --rate-window-ms 60000 \
	</dev/null >/dev/null 2>"$WORK/fake.log" &
FAKE_PID=$!
for ((i = 0; i < 500; i++)); do
	[ -s "$WORK/port" ] && break
	sleep 0.01
done
[ -s "$WORK/port" ] || die "the fake platform did not start: $(tail -3 "$WORK/fake.log")"
URL="http://127.0.0.1:$(cat "$WORK/port")"

ctl() {
	curl -sSf -X "$1" -H 'Content-Type: application/json' ${3:+--data-binary "$3"} "$URL$2"
}

PEER=$(ctl POST /_control/workspaces '{}' | jq -r .id) || die "cannot create the peer"
WSS=()
TOKENS=()
for ((i = 0; i < N; i++)); do
	a=$(ctl POST /_control/workspaces '{}') || die "cannot create workspace $i"
	WSS+=("$(jq -r .id <<<"$a")")
	TOKENS+=("$(jq -r .token <<<"$a")")
done

# ---------- the supervisor: one bridge a workspace, started one after the other ----------

mkdir -m 700 "$WORK/state"
T_START=$(now_ms)
say "starting $N bridges over $STAGGER s (org budget $LIMIT a minute)"
for ((i = 0; i < N; i++)); do
	: >"$WORK/stamp.$i"
	MOLECULE_WORKSPACE_TOKEN=${TOKENS[i]} "$MC" --api-url "$URL" --org-id "$ORG" \
		--state-dir "$WORK/state" -q "${WSS[i]}" -- "$TOOL" stamp "$WORK/stamp.$i" \
		</dev/null >/dev/null 2>"$WORK/bridge.$i.log" &
	PIDS+=($!)
	sleep "$(awk -v s="$STAGGER" -v n="$N" 'BEGIN { printf "%.3f", s / n }')"
done
say "settling for $SETTLE s"
sleep "$SETTLE"
for p in "${PIDS[@]}"; do
	kill -0 "$p" 2>/dev/null || die "bridge $p died: $(cat "$WORK"/bridge.*.log | tail -5)"
done

# ---------- idle: memory and CPU per bridge ----------

cpu_ms() { awk '{ printf "%.3f\n", $1 / 1e6 }' "/proc/$1/schedstat" 2>/dev/null || echo 0; }
mem_line() { # PID: "VmRSS PSS USS" in kB
	local rss
	rss=$(awk '$1 == "VmRSS:" { print $2 }' "/proc/$1/status")
	awk -v rss="$rss" '$1 == "Pss:" { p = $2 } $1 == "Private_Clean:" || $1 == "Private_Dirty:" { u += $2 }
		END { print rss, p + 0, u + 0 }' "/proc/$1/smaps_rollup"
}
: >"$WORK/mem"
: >"$WORK/cpu0"
for p in "${PIDS[@]}"; do
	mem_line "$p" >>"$WORK/mem"
	cpu_ms "$p" >>"$WORK/cpu0"
done
I0=$(now_ms)
say "idle for $IDLE s: CPU and requests"
sleep "$IDLE"
I1=$(now_ms)
: >"$WORK/cpu1"
for p in "${PIDS[@]}"; do cpu_ms "$p" >>"$WORK/cpu1"; done

# ---------- messages: one a second, each to a bridge picked at random ----------

say "messages: one every $GAP ms for $SECS s"
M0=$(now_ms)
: >"$WORK/cpu2"
for p in "${PIDS[@]}"; do cpu_ms "$p" >>"$WORK/cpu2"; done
LIST=$(IFS=,; echo "${WSS[*]}")
"$TOOL" trickle --url "$URL" --ws "$LIST" --peer "$PEER" --count "$COUNT" --min-gap-ms "$GAP" --max-gap-ms "$GAP" ||
	die "trickle failed"
# Every reply in: the peer's activity holds one row a reply.
for ((i = 0; i < 120; i++)); do
	[ "$(ctl GET "/_control/workspaces/$PEER" | jq .rows)" -ge "$COUNT" ] && break
	sleep 1
done
M1=$(now_ms)
: >"$WORK/cpu3"
for p in "${PIDS[@]}"; do cpu_ms "$p" >>"$WORK/cpu3"; done
ctl GET /_control/requests >"$WORK/requests.json" || die "cannot read the request log"
ctl GET "/_control/activity?workspace_id=$PEER" >"$WORK/replies.json" || die "cannot read the replies"
alive=0
for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=$((alive + 1)); done
cat "$WORK"/stamp.* >"$WORK/stamps"

# ---------- the figures ----------

RESULT=$(jq -n --slurpfile reqs "$WORK/requests.json" --slurpfile replies "$WORK/replies.json" \
	--rawfile stamps "$WORK/stamps" --rawfile mem "$WORK/mem" \
	--rawfile cpu0 "$WORK/cpu0" --rawfile cpu1 "$WORK/cpu1" --rawfile cpu2 "$WORK/cpu2" --rawfile cpu3 "$WORK/cpu3" \
	--argjson n "$N" --argjson secs "$COUNT" --argjson idle "$IDLE" --argjson alive "$alive" \
	--argjson t0 "$T_START" --argjson i0 "$I0" --argjson i1 "$I1" --argjson m0 "$M0" --argjson m1 "$M1" '
	def us: capture("^(?<s>[^.Z]+)(\\.(?<f>[0-9]+))?Z$") as $c |
		(($c.s + "Z") | fromdateiso8601) * 1000000 + ((($c.f // "") + "000000")[0:6] | tonumber);
	def median: sort | if length == 0 then null else .[length / 2 | floor] end;
	def pct(p): sort | if length == 0 then null else .[((length * p) | ceil) - 1] end;
	def nums: split("\n") | map(select(length > 0) | tonumber);
	def lines: split("\n") | map(select(length > 0) | split(" ") | map(tonumber));
	($stamps | split("\n") | map(select(length > 0) | fromjson) | map(select(.text | startswith("lat-")))) as $got |
	($got | map((.in_us - (.created_at | us)) / 1000)) as $lat |
	($replies[0] | map(.request_body.params.message.parts[0].text // "" | select(startswith("echo: lat-"))) | unique) as $answered |
	($reqs[0]) as $r |
	($mem | lines) as $m |
	([$cpu0, $cpu1] | map(nums) | transpose | map(.[1] - .[0])) as $idle_cpu |
	([$cpu2, $cpu3] | map(nums) | transpose | map(.[1] - .[0])) as $busy_cpu |
	{bridges: $n, alive: $alive, messages: $secs,
	 handed_out: ($got | map(.text) | unique | length),
	 answered: ($answered | length),
	 lost: ($secs - ($answered | length)),
	 requests: ($r | length),
	 status_429: ([$r[] | select(.status == 429)] | length),
	 status_429_idle: ([$r[] | select(.status == 429 and .t_ms >= $i0 and .t_ms < $m0)] | length),
	 busiest_window: ([$r[].t_ms] | .[0] as $first | map((. - $first) / 60000 | floor) | group_by(.) | map(length) | max),
	 req_per_min_idle: (([$r[] | select(.t_ms >= $i0 and .t_ms < $i1)] | length) * 60000 / ($i1 - $i0)),
	 req_per_min_busy: (([$r[] | select(.t_ms >= $m0 and .t_ms < $m1)] | length) * 60000 / ($m1 - $m0)),
	 lat_median_ms: ($lat | median), lat_p90_ms: ($lat | pct(0.9)), lat_p99_ms: ($lat | pct(0.99)),
	 lat_max_ms: ($lat | max),
	 rss_kb_median: ($m | map(.[0]) | median), pss_kb_median: ($m | map(.[1]) | median),
	 uss_kb_median: ($m | map(.[2]) | median),
	 rss_kb_total: ($m | map(.[0]) | add), pss_kb_total: ($m | map(.[1]) | add), uss_kb_total: ($m | map(.[2]) | add),
	 idle_cpu_ms_per_min: ($idle_cpu | median * 60000 / ($i1 - $i0)),
	 busy_cpu_ms_per_min: ($busy_cpu | median * 60000 / ($m1 - $m0))}') || die "cannot compute the figures"
echo "$RESULT" >"$BUILD/bench-fleet.json"

TABLE=$(jq -r --argjson limit "$LIMIT" '
	def r1: if . == null then "?" else (. * 10 | round / 10 | tostring) end;
	def mib: if . == null then "?" else (. / 1024 * 10 | round / 10 | tostring) + " MiB" end;
	def ok(c): if c then "yes" else "**no**" end;
	"| Figure | Value | Target | Met |",
	"|---|---|---|---|",
	"| Messages lost (queued, never answered) | \(.lost) of \(.messages) (\(.handed_out) handed out, \(.answered) answered; \(.alive) of \(.bridges) bridges alive at the end) | 0 | \(ok(.lost == 0)) |",
	"| 429 answers | \(.status_429) (\(.status_429_idle) while idle) of \(.requests) requests | 0 | \(ok(.status_429 == 0)) |",
	"| Inbound latency, queued → handler stdin | median \(.lat_median_ms | r1) ms, p90 \(.lat_p90_ms | r1) ms, p99 \(.lat_p99_ms | r1) ms, max \(.lat_max_ms | r1) ms | median ≤ 50 ms | \(ok(.lat_median_ms != null and .lat_median_ms <= 50)) |",
	"| Requests in the busiest of the platform’s one-minute windows (fixed, from the first request) | \(.busiest_window) | ≤ \($limit) | \(ok(.busiest_window <= $limit)) |",
	"| Requests a minute, the whole fleet, averaged: idle / with the messages | \(.req_per_min_idle | r1) / \(.req_per_min_busy | r1) | | |",
	"| Memory per bridge (median): VmRSS / PSS / USS | \(.rss_kb_median | mib) / \(.pss_kb_median | mib) / \(.uss_kb_median | mib) | USS ≤ 2 MiB | \(ok(.uss_kb_median <= 2048)) |",
	"| Memory, all \(.bridges) bridges: VmRSS / PSS / USS | \(.rss_kb_total | mib) / \(.pss_kb_total | mib) / \(.uss_kb_total | mib) | | |",
	"| CPU per bridge (median), per minute: idle / with the messages | \(.idle_cpu_ms_per_min | r1) ms / \(.busy_cpu_ms_per_min | r1) ms | idle ≤ 5 ms | \(ok(.idle_cpu_ms_per_min <= 5)) |"
	' <<<"$RESULT")
echo
echo "$TABLE"
echo

CMD="make bench-fleet"
for v in FLEET_BRIDGES FLEET_SECS FLEET_GAP_MS FLEET_STAGGER_SECS FLEET_SETTLE_SECS FLEET_IDLE_SECS FLEET_RATE_LIMIT; do
	[ -z "${!v:-}" ] || CMD+=" $v=${!v}"
done
SECTION=$(cat <<EOF
<!-- fleet -->
## A fleet of one org

Measured by \`$CMD\` (tests/bench/fleet.sh) on $(date -u '+%Y-%m-%d %H:%M UTC'), commit
$(git -C "$SRC" rev-parse --short HEAD 2>/dev/null || echo "?"): $N bridges with default
options, one workspace each, all of one org (\`--org-id\`), against one fake platform
with the org-keyed limit of $LIMIT requests a minute; started one after the other
over $STAGGER s by one supervisor script, left idle for $SETTLE s, CPU measured over
$IDLE s still idle, then one message every $GAP ms for $SECS s, each to a bridge picked
at random, each answered by \`mcbench stamp\`.

$TABLE

USS is the memory only that process maps: what each more bridge costs the machine;
the shared libraries (libcurl and its TLS and Kerberos dependencies, libjq) are paid
once per host, which is why VmRSS is so much larger than USS.
<!-- /fleet -->
EOF
)
if [ -f "$DOC" ] && grep -q '^<!-- fleet -->$' "$DOC"; then
	SECTION=$SECTION awk '
		/^<!-- fleet -->$/ { print ENVIRON["SECTION"]; skip = 1; next }
		/^<!-- \/fleet -->$/ { skip = 0; next }
		!skip' "$DOC" >"$DOC.tmp" && mv "$DOC.tmp" "$DOC"
else
	printf '\n%s\n' "$SECTION" >>"$DOC"
fi
say "fleet figures written to $DOC"
