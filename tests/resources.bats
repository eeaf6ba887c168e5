#!/usr/bin/env bats
# The state directory turning read-only or full during a run: one clear error, no
# flood, messages keep flowing, the old state file stays as it was (the cursor on disk
# simply does not move), the cursor catches up once the directory is writable again,
# and a kill -9 meanwhile loses nothing.

load helpers

setup() {
	bridge_setup
	SD=$T/state
	RES_PIDS=()
	RES_FIFO_OPEN=
	RUN_AS=()
	# The shim (tests/shim/fullfs.c) makes $SD full on demand and, in both kinds of
	# test, logs every failing call on a file in $SD to $T/fs.log: the count of save
	# attempts that failed.
	SHIM=${SHIM_FULLFS:-$(dirname "$MC_BIN")/tests/shim/fullfs.so}
	[ -f "$SHIM" ] || { echo "no LD_PRELOAD shim at $SHIM (build it with make check TESTS=, or set SHIM_FULLFS)" >&2; return 1; }
	mkdir -m 700 "$SD"
	: >"$T/fs.log"
}

teardown() {
	kill_pids "${RES_PIDS[@]}"
	[ -z "$RES_FIFO_OPEN" ] || exec 5>&-
	# bats removes $T: a read-only directory in it would stop that.
	chmod 700 "$SD" 2>/dev/null || true
	fake_stop
}

# res_reachable PATH: PATH, or a copy of it in $T/bin when the unprivileged user
# cannot reach it (a build tree under a 0700 home, say).
res_reachable() {
	if "${RUN_AS[@]}" test -r "$1" -a -x "$1"; then
		echo "$1"
		return 0
	fi
	mkdir -p "$T/bin"
	chmod 755 "$T/bin"
	cp "$1" "$T/bin/"
	chmod a+rx "$T/bin/${1##*/}"
	echo "$T/bin/${1##*/}"
}

# res_unprivileged: root ignores directory permissions, so when the suite runs as
# root the bridge runs as uid/gid 65534 (nobody) for the read-only tests. Sets
# RUN_AS, makes $T reachable and hands $SD and the shim's log to that user.
res_unprivileged() {
	[ "$(id -u)" -eq 0 ] || return 0
	command -v setpriv >/dev/null ||
		skip "running as root, and setpriv (util-linux) is missing to run the bridge as an unprivileged user"
	[ -n "${BATS_RUN_TMPDIR:-}" ] || skip "running as root, and this bats does not set BATS_RUN_TMPDIR"
	RUN_AS=(setpriv --reuid=65534 --regid=65534 --clear-groups)
	"${RUN_AS[@]}" true || skip "running as root, and setpriv cannot switch to uid 65534 here"
	# bats makes its run directory 0700: let the user through (not list) down to $T.
	local d=$T
	while ! "${RUN_AS[@]}" test -x "$T"; do
		case "$d" in
		"$BATS_RUN_TMPDIR" | "$BATS_RUN_TMPDIR"/*) chmod o+x "$d" ;;
		*) skip "running as root, and uid 65534 cannot reach $T (through $d)" ;;
		esac
		d=$(dirname "$d")
	done
	chmod o+x "$T"
	MC_BIN=$(res_reachable "$MC_BIN")
	SHIM=$(res_reachable "$SHIM")
	chown 65534:65534 "$SD" "$T/fs.log"
}

# res_start TAG: starts the bridge for WS_ID in filter mode (as RUN_AS), reading
# replies from the FIFO $T/TAG.in (held open on fd 5: write replies with res_reply),
# writing messages to $T/TAG.out and logs to $T/TAG.err. Sets BR_PID.
res_start() {
	local tag=$1
	mkfifo "$T/$tag.in"
	exec 5<>"$T/$tag.in"
	RES_FIFO_OPEN=1
	"${RUN_AS[@]}" env LD_PRELOAD="$SHIM" MC_FULLFS_DIR="$SD" MC_FULLFS_FLAG="$T/full.flag" \
		MC_FULLFS_LOG="$T/fs.log" ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0" \
		"$MC_BIN" --api-url "$FAKE_URL" --state-dir "$SD" --interval 0.05 --heartbeat 1 \
		--drain-timeout 5 "$WS_ID" <"$T/$tag.in" >"$T/$tag.out" 2>"$T/$tag.err" 3>&- 5>&- &
	BR_PID=$!
	RES_PIDS+=("$BR_PID")
}

# res_failures: how many calls on files in $SD have failed so far.
res_failures() {
	wc -l <"$T/fs.log"
}

# res_failed_more N [REGEX]: more than N calls have failed, and the last one matches
# REGEX ("<call> <errno>").
res_failed_more() {
	[ "$(res_failures)" -gt "$1" ] && [[ "$(tail -n 1 "$T/fs.log")" =~ ${2:-.} ]]
}

# res_dir_clean: nothing in $SD but the state file and the lock: no temporary file.
res_dir_clean() {
	assert_eq "$(ls -A "$SD" | sort | paste -sd' ' -)" "$WS_ID.json $WS_ID.lock" "files in the state directory"
}

# res_fault KIND on|off [WHAT]: KIND "readonly" takes write permission away from the
# state directory; "full" makes it full (WHAT: the calls that fail, see fullfs.c).
res_fault() {
	case "$1/$2" in
	readonly/on) chmod 500 "$SD" ;;
	readonly/off) chmod 700 "$SD" ;;
	full/on) printf '%s\n' "${3:-}" >"$T/full.flag.new" && mv -f "$T/full.flag.new" "$T/full.flag" ;;
	full/off) rm -f "$T/full.flag" ;;
	esac
}

# res_first_run KIND: starts the bridge (r1), gets one message done and its cursor
# saved, keeps a copy of that state file in $T/before.json, then turns the fault on.
# Sets IDS (the one message's id so far).
res_first_run() {
	res_start r1
	IDS=($(queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"text\":\"m0\"}"))
	wait_until 10 file_lines "$T/r1.out" 1
	res_reply "${IDS[0]}" r0
	wait_until 10 a2a_ok_posts 1
	wait_until 10 state_file_has '.last_since_id == $id and .replies == []' --arg id "${IDS[0]}"
	cp "$SD/$WS_ID.json" "$T/before.json"
	res_fault "$1" on
}

# res_reply ID TEXT: one reply line to the bridge.
res_reply() {
	printf '{"id":"%s","text":"%s"}\n' "$1" "$2" >&5
}

# res_round N [REGEX]: message mN in, its reply out and accepted, and a save attempt
# failed after it (the last failing call matching REGEX).
res_round() {
	local n=$1 failed id
	failed=$(res_failures)
	id=$(queue_msgs "$WS_ID" "{\"from\":\"$PEER_ID\",\"text\":\"m$n\"}")
	IDS+=("$id")
	wait_until 10 file_lines "$T/r1.out" $((n + 1)) >/dev/null
	res_reply "$id" "r$n"
	wait_until 10 a2a_ok_posts $((n + 1)) >/dev/null
	wait_until 10 res_failed_more "$failed" "${2:-.}"
}

# res_check_reported KIND: the bridge said, once or a few times (not once per failed
# save), which file it cannot save, why, and that the cursor is not moving on disk.
res_check_reported() {
	local why n line
	[ "$1" = readonly ] && why="Permission denied" || why="No space left on device"
	n=$(grep -c 'cannot save state file' "$T/r1.err" || true)
	[ "$n" -ge 1 ] && [ "$n" -le 3 ] || {
		echo "$n error lines after $(res_failures) failed calls (want 1 to 3):" >&2
		cat "$T/r1.err" >&2
		return 1
	}
	line=$(grep -m1 'cannot save state file' "$T/r1.err")
	[[ "$line" == "molecule-connect: error: "* ]] || { echo "not an error line: $line" >&2; return 1; }
	[[ "$line" == *"$SD/$WS_ID.json"* ]] || { echo "the file is not named: $line" >&2; return 1; }
	[[ "$line" == *"$why"* ]] || { echo "no '$why': $line" >&2; return 1; }
	[[ "$line" == *"cursor is not moving on disk"* ]] || { echo "no word on the cursor: $line" >&2; return 1; }
}

# res_while_running KIND ROUND...: the fault during a run, one message a round; then
# the fault ends. Each ROUND is "WHAT:REGEX": what a full directory refuses from that
# round on, added to what it refused before (see res_fault), and the failing call
# ("<call> <errno>") the round must see. Adding, never removing: a save that runs
# while the list changes still meets a call refused both before and after, so none
# can get through; listing the steps of a save from last to first makes each round
# fail one step earlier. The last round must be one in which no temporary file can be
# created (read-only, or "create"), so that a look at the directory never catches one
# mid-save.
res_while_running() {
	local kind=$1 n=0 what refused=
	shift
	res_first_run "$kind"
	for what in "$@"; do
		n=$((n + 1))
		if [ "$kind" = full ]; then
			refused+=" ${what%%:*}"
			res_fault full on "$refused"
		fi
		res_round "$n" "${what#*:}"
	done
	# The failed save is retried while the fault lasts: give it many tries, so that a
	# line per failure would show.
	wait_until 10 res_failed_more 14 >/dev/null
	res_check_reported "$kind"
	# Messages kept flowing: each one handed out in order, each reply accepted.
	assert_eq "$(line_ids "$T/r1.out")" "${IDS[*]}" "messages handed out"
	assert_eq "$(a2a_ok_texts | paste -sd' ' -)" "$(seq -f 'r%g' 0 "$n" | paste -sd' ' -)" "replies accepted"
	proc_alive "$BR_PID" || { echo "the bridge died:" >&2; cat "$T/r1.err" >&2; return 1; }
	# The old state file is there, whole and unchanged; no temporary file is left.
	cmp "$T/before.json" "$SD/$WS_ID.json"
	state_file_has '.last_since_id == $id' --arg id "${IDS[0]}"
	res_dir_clean
	if grep 'writable again' "$T/r1.err"; then
		echo "'writable again' while the fault is still on" >&2
		return 1
	fi

	res_fault "$kind" off
	wait_until 10 grep -q 'writable again' "$T/r1.err"
	wait_until 10 state_file_has '.last_since_id == $id and .done_ids == [] and .replies == []' \
		--arg id "${IDS[n]}"
	res_check_reported "$kind"
	stop_bridge TERM
	assert_eq "$BR_STATUS" 0 "exit status after SIGTERM"
	assert_eq "$(jq -r .last_since_id "$SD/$WS_ID.json")" "${IDS[n]}" "cursor at the end"
	res_dir_clean
}

# res_kill_restart KIND: three messages done while the fault is on, kill -9, the fault
# ends, a restart: those three are handed out again (they were not saved as done), in
# order, and nothing else.
res_kill_restart() {
	local kind=$1 n
	res_first_run "$kind"
	for n in 1 2 3; do
		res_round "$n"
	done
	res_check_reported "$kind"
	kill -KILL "$BR_PID"
	wait "$BR_PID" || true
	cmp "$T/before.json" "$SD/$WS_ID.json"
	res_fault "$kind" off

	res_start r2
	wait_until 10 file_lines "$T/r2.out" 3
	assert_eq "$(line_ids "$T/r2.out")" "${IDS[1]} ${IDS[2]} ${IDS[3]}" "handed out again after the restart"
	for n in 1 2 3; do
		res_reply "${IDS[n]}" "again$n"
	done
	wait_until 10 a2a_ok_posts 7
	wait_until 10 state_file_has '.last_since_id == $id and .done_ids == [] and .replies == []' \
		--arg id "${IDS[3]}"
	stop_bridge TERM
	assert_eq "$BR_STATUS" 0 "exit status after SIGTERM"
	assert_eq "$(wc -l <"$T/r2.out")" 3 "lines of the second run"
	assert_eq "$(a2a_ok_texts | paste -sd' ' -)" "r0 r1 r2 r3 again1 again2 again3" "replies accepted"
	if grep 'cannot save state file' "$T/r2.err"; then
		echo "the second run failed to save" >&2
		return 1
	fi
}

@test "read-only state directory: one clear error, messages keep flowing, the old file stays; writable again, the cursor catches up" {
	res_unprivileged
	res_while_running readonly :EACCES :EACCES :EACCES :EACCES
}

@test "read-only state directory: kill -9, then a restart hands out again what was not saved as done" {
	res_unprivileged
	res_kill_restart readonly
}

@test "full file system (ENOSPC), at any step of a save: one clear error, messages keep flowing, the old file stays; space again, the cursor catches up" {
	res_while_running full 'rename:^rename ENOSPC' 'fsync:^fsync ENOSPC' \
		'write:^write ENOSPC' 'create:^mkostemp(64)? ENOSPC'
}

@test "full file system (ENOSPC): kill -9, then a restart hands out again what was not saved as done" {
	res_kill_restart full
}

@test "full file system at SIGTERM: the last save failing is said, exit 0, the old file stays" {
	res_first_run full
	res_round 1
	stop_bridge TERM
	assert_eq "$BR_STATUS" 0 "exit status after SIGTERM"
	grep -q "^molecule-connect: error: .*$SD/$WS_ID.json.*the state is not saved at exit" "$T/r1.err" ||
		{ echo "no word on the last save:" >&2; cat "$T/r1.err" >&2; return 1; }
	cmp "$T/before.json" "$SD/$WS_ID.json"
	res_dir_clean
}
