#!/usr/bin/env bash
# Soak under faults: messages from several peers and the canvas while the fake
# platform fails, resets, rate-limits and delays requests, the handler dies at
# random and the bridge itself is kill -9'd and restarted on the same state.
# Prints a table and exits non-zero when a delivery bound is broken.
#
#   soak.sh MC_BIN FAKE_BIN [MESSAGES] [KILLS]
#
# Bounds: lost = 0; answered twice <= kills x max-inflight; no message done (in
# the saved state) before a kill is answered again after it; replies to each
# peer in message order (first replies); descriptors, children and memory of a
# long-running bridge do not grow.
set -u
mc=$1 fake=$2 total=${3:-2000} kills=${4:-5}
inflight=${SOAK_INFLIGHT:-8}
work=$(mktemp -d "${TMPDIR:-/tmp}/soak.XXXXXX")
fake_pid="" bridge_pid=""
cleanup() {
	[ -n "$bridge_pid" ] && kill -9 "$bridge_pid" 2>/dev/null
	[ -n "$fake_pid" ] && kill "$fake_pid" 2>/dev/null
	wait 2>/dev/null
	[ -n "${SOAK_KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT
die() { echo "soak: $*" >&2; exit 1; }

"$fake" --port-file "$work/port" --rate-limit 0 </dev/null >/dev/null 2>"$work/fake.log" &
fake_pid=$!
for _ in $(seq 200); do [ -s "$work/port" ] && break; sleep 0.05; done
[ -s "$work/port" ] || die "fake platform did not start"
url="http://127.0.0.1:$(cat "$work/port")"
ctl() { curl -sS --fail -X "$1" -H 'Content-Type: application/json' ${3:+--data-binary "$3"} "$url$2"; }

ws=$(ctl POST /_control/workspaces '{}') || die "control API"
ws_id=$(jq -r .id <<<"$ws")
export MOLECULE_WORKSPACE_TOKEN
MOLECULE_WORKSPACE_TOKEN=$(jq -r .token <<<"$ws")
peers=()
for _ in 1 2 3; do peers+=("$(ctl POST /_control/workspaces '{}' | jq -r .id)"); done

# The handler: answers "re: <text>" and, now and then, dies before answering.
cat >"$work/handler" <<'H'
#!/usr/bin/env bash
while IFS= read -r line; do
	[ $((RANDOM % 40)) -eq 0 ] && exit 3
	jq -c '{id, text: ("re: " + .text)}' <<<"$line"
done
H
chmod +x "$work/handler"

faults() {
	ctl DELETE /_control/faults >/dev/null
	ctl POST /_control/faults '{"endpoint":"*","status":503,"fail_ratio":0.10}' >/dev/null
	ctl POST /_control/faults '{"endpoint":"*","reset_ratio":0.02}' >/dev/null
	ctl POST /_control/faults '{"endpoint":"activity","every_429":97,"retry_after":1}' >/dev/null
	ctl POST /_control/faults '{"endpoint":"heartbeat","delay_ms":300}' >/dev/null
}

start_bridge() {
	"$mc" --api-url "$url" --state-dir "$work/state" --interval 0.05 --heartbeat 1 \
		--max-inflight "$inflight" --restart-limit 1000 --drain-timeout 5 \
		"$ws_id" -- "$work/handler" </dev/null >/dev/null 2>>"$work/bridge.log" &
	bridge_pid=$!
}

# Queues the messages in batches while the bridge runs, killing it now and then.
faults
start_bridge
sent=0 batch=$(( (total + 19) / 20 )) killed=0 n=0
kill_every=$(( 20 / (kills + 1) )); [ "$kill_every" -ge 1 ] || kill_every=1
: >"$work/kills"
fd_start="" rss_start="" children_start=""
# Descriptors other than sockets (files, pipes, the signalfd), and sockets apart:
# the HTTP connections kept for reuse come and go with the traffic.
files_of() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 -printf '%l\n' 2>/dev/null | grep -vc '^socket:'; }
sockets_of() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 -printf '%l\n' 2>/dev/null | grep -c '^socket:'; }
for round in $(seq 20); do
	left=$((total - sent)); [ "$left" -gt 0 ] || break
	count=$batch; [ "$count" -le "$left" ] || count=$left
	src_i=$((round % 4))
	if [ "$src_i" -eq 3 ]; then from=null; else from="\"${peers[$src_i]}\""; fi
	ctl POST /_control/messages "{\"workspace_id\":\"$ws_id\",\"from\":$from,\"count\":$count,\"text\":\"soak $round {n}\"}" >/dev/null ||
		die "queueing failed"
	sent=$((sent + count))
	sleep 0.$((RANDOM % 5 + 3))
	# The first sample of a bridge's resources, taken while its handler runs (between
	# a handler's death and its restart it holds two pipes and a child fewer).
	if [ -z "$fd_start" ] && kill -0 "$bridge_pid" 2>/dev/null && pgrep -P "$bridge_pid" >/dev/null; then
		fd_start=$(files_of "$bridge_pid")
		rss_start=$(awk '/VmRSS/ {print $2}' /proc/$bridge_pid/status)
		children_start=$(pgrep -P "$bridge_pid" | wc -l)
	fi
	if [ "$killed" -lt "$kills" ] && [ $((round % kill_every)) -eq 0 ]; then
		# What the state file says is done at the moment of the kill.
		kill -9 "$bridge_pid" 2>/dev/null
		wait "$bridge_pid" 2>/dev/null
		pkill -9 -f "$work/handler" 2>/dev/null
		cp "$work/state/$ws_id.json" "$work/killed.$killed.json" 2>/dev/null || echo '{}' >"$work/killed.$killed.json"
		echo "$killed $(date +%s%3N)" >>"$work/kills"
		killed=$((killed + 1))
		fd_start="" 
		start_bridge
	fi
done

# Let the last bridge finish everything, then stop the faults and drain.
answered_all() {
	ctl GET "/_control/posts" | jq -e --argjson n "$sent" \
		'[.[] | select(.status == 200 and (.kind == "a2a" or .kind == "notify")) | (.body.params.message.parts[0].text // .body.message)] | unique | length >= $n' >/dev/null
}
# Under these faults the bridge answers some ten messages a second: allow for it.
deadline=$(( $(date +%s) + ${SOAK_TIMEOUT:-$((total / 4 + 120))} ))
while ! answered_all && [ "$(date +%s)" -lt "$deadline" ]; do sleep 1; done
# The last sample, too, while the handler runs (it may be between a death and a restart).
for _ in $(seq 100); do pgrep -P "$bridge_pid" >/dev/null && break; sleep 0.1; done
fd_end=$(files_of "$bridge_pid")
sockets_end=$(sockets_of "$bridge_pid")
rss_end=$(awk '/VmRSS/ {print $2}' /proc/$bridge_pid/status 2>/dev/null)
children_end=$(pgrep -P "$bridge_pid" | wc -l)
ctl DELETE /_control/faults >/dev/null
kill -TERM "$bridge_pid"; wait "$bridge_pid"; bridge_pid=""

# The table.
ctl GET /_control/activity?workspace_id="$ws_id" >"$work/activity.json"
ctl GET /_control/posts >"$work/posts.json"
jq -r --argjson kills "$(jq -R -s 'split("\n") | map(select(length > 0) | split(" ") | {n: (.[0]|tonumber), t: (.[1]|tonumber)})' "$work/kills")" \
      --slurpfile states <(for f in "$work"/killed.*.json; do cat "$f"; echo; done) \
      --argjson sent "$sent" --argjson inflight "$inflight" '
	# messages in platform order (notify echoes aside)
	($activity[0] | map(select(.method != "notify"))) as $msgs
	| ($msgs | map({key: .request_body.params.message.parts[0].text, value: .}) | from_entries) as $by_text
	| ($msgs | to_entries | map({key: .value.id, value: .key}) | from_entries) as $pos
	| [ .[] | select(.status == 200 and (.kind == "a2a" or .kind == "notify"))
	    | {t: .t_ms, to: (if .kind == "a2a" then (.path | split("/")[2]) else "canvas" end),
	       text: ((.body.params.message.parts[0].text // .body.message) | ltrimstr("re: "))} ] as $replies
	| ($replies | group_by(.text) | map({text: .[0].text, n: length, first: (map(.t) | min), all: map(.t)})) as $per
	| ($per | map(select(.n > 1)) | length) as $twice
	| ([$msgs[] | .request_body.params.message.parts[0].text] - [$per[].text] | length) as $lost
	# done at a kill: up to the saved cursor, plus done_ids
	| [ range(0; $states | length) as $k
	     | $states[$k] as $st
	     | ($pos[$st.last_since_id // ""] // -1) as $c
	     | {k: $k, done: ([$msgs[0:($c + 1)][] .id] + ($st.done_ids // []))} ] as $done_at
	| ([ $done_at[] | .k as $k | .done[] | . as $id
	     # (done_ids also holds rows that are no message, such as notify echoes)
	     | select($pos[$id] != null) | $msgs[$pos[$id]] as $m
	     | $m.request_body.params.message.parts[0].text as $tx
	     | ($per[] | select(.text == $tx) | .all[] | select(. > $kills[$k].t)) ] | length) as $redone
	| ([ $replies | group_by(.to)[] | map(.text) | reduce .[] as $t ({seen: {}, order: []};
	       if .seen[$t] then . else .seen[$t] = true | .order += [$t] end) | .order
	     | map($by_text[.] | $pos[.id]) as $o
	     | [range(1; $o | length) | select($o[.] < $o[. - 1])] | length ] | add // 0) as $disorder
	| "messages sent\t\($sent)",
	  "answered\t\($per | length)",
	  "lost\t\($lost)",
	  "answered twice\t\($twice)\t(bound \($kills | length) kills x \($inflight) = \(($kills | length) * $inflight))",
	  "done before a kill, answered again\t\($redone)\t(of \([$done_at[].done | length] | add // 0) done at the kills)",
	  "replies out of order per peer\t\($disorder)",
	  "RESULT \(if $lost == 0 and $twice <= (($kills | length) * $inflight) and $redone == 0 and $disorder == 0 then "ok" else "FAILED" end)"
' --slurpfile activity "$work/activity.json" "$work/posts.json" | tee "$work/table"
printf 'descriptors (not sockets)\t%s -> %s\nsockets at the end\t%s\nchildren\t%s -> %s\nRSS KiB\t%s -> %s\nhandler deaths\t%s\n' \
	"${fd_start:-?}" "$fd_end" "$sockets_end" "${children_start:-?}" "$children_end" "${rss_start:-?}" "$rss_end" \
	"$(grep -c 'handler .* ended' "$work/bridge.log")"
res=0
grep -q '^RESULT ok' "$work/table" || res=1
# Resources: a long-running bridge keeps its descriptor and child counts, and memory stays bounded.
# (+2: a sample may catch a state save with its temporary file and directory open.)
if [ -n "$fd_start" ] && [ "$fd_end" -gt $((fd_start + 2)) ]; then echo "descriptors grew"; res=1; fi
# One connection each for polls, heartbeats, and replies to each of 3 peers and the canvas, and a few spare.
if [ "${sockets_end:-0}" -gt 12 ]; then echo "too many sockets"; res=1; fi
if [ -n "$children_start" ] && [ "$children_end" -gt "$children_start" ]; then echo "children grew"; res=1; fi
if [ -n "$rss_end" ] && [ "$rss_end" -gt 65536 ]; then echo "RSS above 64 MiB"; res=1; fi
grep -iE 'AddressSanitizer|runtime error|LeakSanitizer' "$work/bridge.log" && res=1
exit $res
