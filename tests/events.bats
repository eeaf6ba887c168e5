#!/usr/bin/env bats
# events.bats: when the bridge polls: the event stream as a wake-up (lost events, a dying
# stream, a platform without one, another replica, --events off), adaptive polling
# without it, the requests an idle bridge makes, and the rate limit's budget.

load helpers

setup() {
	bridge_setup
	SD=$T/state
	EV_PIDS=()
	echo_handler
}

teardown() {
	kill_pids "${EV_PIDS[@]}"
	fake_stop
}

# ev_fake [FAKE OPTIONS...]: a fresh fake platform with these options (same port), and
# the workspace and peer of bridge_setup made again in it.
ev_fake() {
	fake_restart "$@"
	new_ws >/dev/null
	new_peer >/dev/null
	export MOLECULE_WORKSPACE_TOKEN=$WS_TOKEN
}

# ev_bridge [OPTIONS...]: starts the bridge on WS_ID with the echo handler as
# co-process (it answers "h:<text>" and logs message lines to $T/seen); stderr goes
# to $T/err. Sets BR_PID.
ev_bridge() {
	: >"$T/seen"
	"$MC_BIN" --api-url "$FAKE_URL" --state-dir "$SD" "$@" \
		"$WS_ID" -- sh "$T/echo.sh" "$T/seen" </dev/null >"$T/out" 2>"$T/err" 3>&- &
	BR_PID=$!
	EV_PIDS+=("$BR_PID")
}

# ev_requests JQ_FILTER [jq args...]: the fake's request log through a jq filter (-r).
ev_requests() {
	local filter=$1
	shift
	ctl GET /_control/requests | jq -r "$@" "$filter"
}

# The times (t_ms) of the activity polls, and of the stream's requests, one a line.
ev_poll_times() {
	ev_requests '.[] | select(.method == "GET" and (.path | contains("/activity?"))) | .t_ms'
}
ev_stream_times() {
	ev_requests '.[] | select(.path | endswith("/events/stream")) | .t_ms'
}

# ev_count CMD N: CMD prints at least N lines.
ev_count() {
	[ "$("$1" | wc -l)" -ge "$2" ]
}

# ev_polls_since T_MS N: at least N polls arrived at T_MS or later.
ev_polls_since() {
	[ "$(ev_poll_times | awk -v t="$1" '$1 >= t' | wc -l)" -ge "$2" ]
}

# ev_gaps FIRST N: the gaps in ms between polls FIRST .. FIRST+N (1-based), one a line.
ev_gaps() {
	ev_poll_times | awk -v a="$1" -v n="$2" 'NR >= a && NR <= a + n { if (NR > a) print $1 - last; last = $1 }'
}

# ev_heartbeats N: the platform has had at least N heartbeats.
ev_heartbeats() {
	[ "$(posts heartbeat | jq length)" -ge "$1" ]
}

# ev_up: the bridge has its stream open and has made its first poll.
ev_up() {
	sse_streams "$WS_ID" 1 && ev_count ev_poll_times 1
}

@test "--events and --idle-interval: checked values, defaults and --dry-run" {
	local id=123e4567-e89b-42d3-a456-426614174000
	run "$MC_BIN" --dry-run "$id"
	[ "$status" -eq 0 ]
	grep -qx 'events: auto' <<<"$output"
	grep -qx 'idle_interval: 5' <<<"$output"
	run "$MC_BIN" --dry-run --events off --idle-interval 0.5 "$id"
	[ "$status" -eq 0 ]
	grep -qx 'events: off' <<<"$output"
	grep -qx 'idle_interval: 0.5' <<<"$output"
	run "$MC_BIN" --dry-run --events sometimes "$id"
	[ "$status" -eq 2 ]
	grep -q "^molecule-connect: --events: 'sometimes' is not an events mode: use auto, on or off$" <<<"$output"
	run "$MC_BIN" --dry-run --idle-interval 0.01 "$id"
	[ "$status" -eq 2 ]
	grep -q "^molecule-connect: --idle-interval: '0.01' is not a number of seconds" <<<"$output"
}

@test "an event makes the bridge poll at once, not at the next timer poll" {
	ev_bridge --interval 60
	wait_until 10 ev_up
	local polls t0
	polls=$(ev_poll_times | wc -l)
	t0=$(now_ms)
	queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"text\":\"ping\"}" >/dev/null
	# With --interval 60 the timer's next poll is ten minutes away: only the event
	# can explain a poll now.
	wait_until 10 a2a_ok_posts 1
	assert_eq "$(a2a_ok_texts)" "h:ping" "the reply"
	assert_eq "$(ev_poll_times | wc -l)" "$((polls + 1))" "polls: one more, for the event"
	[ "$(ev_poll_times | tail -1)" -ge "$t0" ]
	assert_eq "$(ctl GET "/_control/events?workspace_id=$WS_ID" | jq '.[0].sent')" 1 "events sent"
}

@test "events lost on the way: the safety-net poll still delivers" {
	fault '{"endpoint":"events","drop_ratio":1}'
	ev_bridge --interval 0.2
	wait_until 10 ev_up
	queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"text\":\"lost\"}" >/dev/null
	wait_until 10 a2a_ok_posts 1
	assert_eq "$(a2a_ok_texts)" "h:lost" "the reply"
	local report
	report=$(ctl GET "/_control/events?workspace_id=$WS_ID")
	assert_eq "$(jq '.[0].dropped' <<<"$report")" 1 "events dropped"
	assert_eq "$(jq '.[0].sent' <<<"$report")" 0 "events sent"
	# The next one is found by a poll too: after a miss the timer polls at --interval.
	queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"text\":\"lost again\"}" >/dev/null
	wait_until 10 a2a_ok_posts 2
}

@test "a stream that ends is opened again, and its events wake the bridge" {
	fault '{"endpoint":"events","end_after_events":1,"next":1}'
	ev_bridge --interval 60
	wait_until 10 ev_up
	queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"text\":\"one\"}" >/dev/null
	wait_until 10 a2a_ok_posts 1
	# The first stream ended after its event; the second is open and has had its
	# catch-up poll (rows logged while no stream was open).
	wait_until 10 ev_count ev_stream_times 2
	wait_until 10 sse_streams "$WS_ID" 1
	wait_until 10 ev_count ev_poll_times 3
	local polls
	polls=$(ev_poll_times | wc -l)
	queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"text\":\"two\"}" >/dev/null
	wait_until 10 a2a_ok_posts 2
	assert_eq "$(a2a_ok_texts | paste -sd' ' -)" "h:one h:two" "replies"
	assert_eq "$(ev_poll_times | wc -l)" "$((polls + 1))" "polls: one for the event"
}

@test "a stream that keeps failing is opened again with a growing backoff" {
	# Two streams end 100 ms after they open, before any event: failures.
	fault '{"endpoint":"events","end_after_ms":100,"next":2}'
	ev_bridge --interval 60 --events on
	wait_until 20 ev_count ev_stream_times 3
	local gaps
	gaps=($(ev_stream_times | awk 'NR > 1 { print $1 - last } { last = $1 }'))
	# Backoff 1 s, then 2 s, each +-25 %, after the 100 ms each stream lived.
	[ "${gaps[0]}" -ge 800 ] || { echo "first gap ${gaps[0]} ms"; return 1; }
	[ "${gaps[1]}" -ge 1500 ] || { echo "second gap ${gaps[1]} ms"; return 1; }
	[ "${gaps[1]}" -gt "${gaps[0]}" ]
	# The third stream stays: events work again.
	wait_until 10 sse_streams "$WS_ID" 1
	queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"text\":\"back\"}" >/dev/null
	wait_until 10 a2a_ok_posts 1
	# --events on reports the failures, but not every one.
	assert_eq "$(grep -c 'warning: event stream' "$T/err")" 1 "warnings"
}

@test "no event stream (404): auto falls back to polling at --interval and says so once" {
	ev_fake --rate-limit 0 --no-events
	ev_bridge --interval 0.2
	wait_until 10 ev_count ev_poll_times 8
	assert_eq "$(grep -c 'info: the platform has no event stream (HTTP 404): polling every 0.2 s' "$T/err")" 1 "the notice"
	assert_eq "$(ev_stream_times | wc -l)" 1 "attempts to open the stream"
	# Polls follow --interval, not the safety net's ten times that.
	local gap
	for gap in $(ev_gaps 3 5); do
		[ "$gap" -ge 150 ] && [ "$gap" -lt 1500 ] || { echo "gap $gap ms"; return 1; }
	done
	queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"text\":\"polled\"}" >/dev/null
	wait_until 10 a2a_ok_posts 1
}

@test "no event stream with --events on: it keeps trying, and warns once" {
	ev_fake --rate-limit 0 --no-events
	ev_bridge --interval 0.2 --events on
	wait_until 15 ev_count ev_stream_times 3
	assert_eq "$(grep -c 'warning: event stream: HTTP 404' "$T/err")" 1 "warnings"
	! grep -q 'polling every' "$T/err"
}

@test "another replica's stream (no events reach it): the timer poll delivers" {
	fault '{"endpoint":"events","other_replica":true}'
	ev_bridge --interval 0.2
	wait_until 10 ev_up
	queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"text\":\"elsewhere\"}" >/dev/null
	wait_until 10 a2a_ok_posts 1
	assert_eq "$(a2a_ok_texts)" "h:elsewhere" "the reply"
	assert_eq "$(ctl GET "/_control/events?workspace_id=$WS_ID" | jq '[.[].sent] | add')" 0 "events sent"
	# Polls that keep finding what no event announced make the bridge try another connection.
	local i
	for i in 2 3 4; do
		queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"text\":\"elsewhere $i\"}" >/dev/null
		wait_until 10 a2a_ok_posts "$i"
	done
	wait_until 10 ev_count ev_stream_times 2
}

@test "--events off never opens the stream" {
	ev_bridge --interval 0.1 --events off
	wait_until 10 ev_count ev_poll_times 5
	queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"text\":\"plain\"}" >/dev/null
	wait_until 10 a2a_ok_posts 1
	assert_eq "$(ev_stream_times | wc -l)" 0 "stream requests"
	assert_eq "$(ctl GET "/_control/workspaces/$WS_ID" | jq .event_streams)" 0 "streams open"
}

@test "without the stream, polling stretches to --idle-interval when quiet and snaps back on a message" {
	# Quiet: twelve idle intervals (3 s) without a message.
	ev_bridge --interval 0.05 --idle-interval 0.25 --events off
	wait_until 10 ev_count ev_poll_times 10
	# The first polls came at --interval: ten within much less than ten idle intervals.
	local first tenth
	first=$(ev_poll_times | sed -n 1p)
	tenth=$(ev_poll_times | sed -n 10p)
	[ $((tenth - first)) -lt 2000 ] || { echo "ten polls took $((tenth - first)) ms"; return 1; }
	# Then the period grows to --idle-interval: over two seconds once quiet, at most a
	# dozen polls where --interval would make forty.
	local t0=$(now_ms) ta n
	ta=$((t0 + 3000))
	wait_until 15 ev_polls_since $((ta + 2000)) 1
	n=$(ev_poll_times | awk -v a="$ta" -v b="$((ta + 2000))" '$1 >= a && $1 < b' | wc -l)
	[ "$n" -ge 3 ] && [ "$n" -le 12 ] || { echo "$n polls in the two seconds once quiet"; return 1; }
	# A message: back to --interval at once.
	queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"text\":\"wake\"}" >/dev/null
	wait_until 10 a2a_ok_posts 1
	local t1=$(now_ms)
	wait_until 10 ev_polls_since "$t1" 12 || { ev_poll_times | tail -20; cat "$T/err"; return 1; }
	local times
	times=($(ev_poll_times | awk -v t="$t1" '$1 >= t'))
	[ $((times[11] - times[0])) -lt 2500 ] || { echo "twelve polls after the message took $((times[11] - times[0])) ms"; return 1; }
}

@test "an idle bridge with the stream: the timer poll is a safety net" {
	ev_bridge --interval 0.1 --heartbeat 1
	wait_until 10 ev_up
	local hb0 t0 t1 polls requests
	hb0=$(posts heartbeat | jq length)
	t0=$(now_ms)
	# Four heartbeats: about four seconds.
	wait_until 20 ev_heartbeats $((hb0 + 4))
	t1=$(now_ms)
	polls=$(ev_poll_times | awk -v a="$t0" -v b="$t1" '$1 >= a && $1 < b' | wc -l)
	requests=$(ev_requests '[.[] | select(.t_ms >= $a and .t_ms < $b)] | length' --argjson a "$t0" --argjson b "$t1")
	# --interval 0.1 alone would be 40 polls; the safety net is every second.
	[ "$polls" -ge 2 ] && [ "$polls" -le $(((t1 - t0) / 1000 + 2)) ] || { echo "$polls polls in $((t1 - t0)) ms"; return 1; }
	[ "$requests" -le $((2 * (t1 - t0) / 1000 + 4)) ] || { echo "$requests requests in $((t1 - t0)) ms"; return 1; }
}

@test "a small rate limit: the bridge keeps under it, idle and with a trickle of messages" {
	# 20 requests every 2 s; the bridge alone would poll 20 times a second.
	ev_fake --rate-limit 20 --rate-window-ms 2000
	ev_bridge --interval 0.05 --heartbeat 1 --events off
	wait_until 10 ev_count ev_poll_times 1
	local t0=$(now_ms) hb0
	hb0=$(posts heartbeat | jq length)
	wait_until 20 ev_heartbeats $((hb0 + 4))
	local i
	for i in 1 2 3 4 5; do
		queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"text\":\"t$i\"}" >/dev/null
		wait_until 15 a2a_ok_posts "$i"
	done
	assert_eq "$(a2a_ok_texts | paste -sd' ' -)" "h:t1 h:t2 h:t3 h:t4 h:t5" "replies"
	assert_eq "$(ev_requests '[.[] | select(.status == 429)] | length')" 0 "429 answers"
	# It did poll: at least a few times in each window.
	local t1=$(now_ms)
	[ "$(ev_poll_times | awk -v a="$t0" '$1 >= a' | wc -l)" -ge $(((t1 - t0) / 1000)) ]
}

# ev_ahead: how many messages the handler has seen beyond the replies the platform took.
ev_ahead() {
	echo $(($(wc -l <"$T/seen") - $(posts a2a | jq '[.[] | select(.status == 200)] | length')))
}

@test "a handler faster than the platform: replies queued for a prompt peer hold the fetch window" {
	# Each reply takes the platform 40 ms; the handler answers at once.
	fault '{"endpoint":"a2a","delay_ms":40}'
	ev_bridge --interval 0.05 --max-inflight 4
	# A first message gives the bridge a cursor: the backlog is paged, not replayed by time.
	queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"text\":\"m0\"}" >/dev/null
	wait_until 10 a2a_ok_posts 1
	queue_msgs "$WS_ID" "{\"count\":40,\"from\":\"$PEER_ID\",\"text\":\"m{n}\"}" >/dev/null
	local most=0 ahead
	while ! a2a_ok_posts 41; do
		ahead=$(ev_ahead)
		[ "$ahead" -le "$most" ] || most=$ahead
		proc_alive "$BR_PID" || { cat "$T/err"; return 1; }
		nap 0.02
	done
	# The window (4) and the page that filled it: never the whole backlog.
	[ "$most" -le 8 ] || { echo "the handler was $most messages ahead of the platform"; return 1; }
	assert_eq "$(a2a_ok_texts | paste -sd' ' -)" "$(seq -f 'h:m%g' 0 40 | paste -sd' ' -)" "replies, in order"
}

@test "a slow peer's replies stop holding the fetch window: another peer is answered meanwhile" {
	local slow=$PEER_ID other
	new_peer >/dev/null
	other=$PEER_ID
	# Each reply to the slow peer takes the platform 3 s.
	fault "{\"endpoint\":\"a2a\",\"workspace_id\":\"$slow\",\"delay_ms\":3000}"
	ev_bridge --interval 0.05 --max-inflight 4
	queue_msgs "$WS_ID" "{\"from\":\"$other\",\"text\":\"first\"}" >/dev/null
	wait_until 10 a2a_ok_posts 1
	queue_msgs "$WS_ID" "{\"count\":6,\"from\":\"$slow\",\"text\":\"s{n}\"}" >/dev/null
	wait_until 10 file_lines "$T/seen" 5
	queue_msgs "$WS_ID" "{\"from\":\"$other\",\"text\":\"other\"}" >/dev/null
	# Its reply goes while the slow peer's second one is still on its way (6 s), not
	# after all six (18 s).
	wait_until 15 eval 'a2a_ok_texts | grep -qx h:other'
	[ "$(a2a_ok_texts | grep -c '^h:s')" -le 1 ] || { a2a_ok_texts; return 1; }
}
