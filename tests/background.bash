# A bridge under test run in the background (BG_PID): started with fast settings,
# waited for, stopped. Loaded by the bats files that need it.
# shellcheck shell=bash

# bg_setup: bridge_setup (helpers.bash), with the state in $T/state (SD) and no
# bridge running yet.
bg_setup() {
	bridge_setup
	SD=$T/state
	BG_PID=""
}

# bg_start ARGS...: starts the bridge against the fake platform (stdout in $T/out,
# stderr appended to $T/err, state in $T/state); BG_PID.
bg_start() {
	"$MC_BIN" --api-url "$FAKE_URL" --state-dir "$T/state" --interval 0.05 --heartbeat 1 \
		"$@" </dev/null >"$T/out" 2>>"$T/err" 3>&- &
	BG_PID=$!
}

# bg_wait_exit SECS: waits for BG_PID to end; its exit status in BG_RC. Fails (after
# SIGKILL) when it still runs after SECS.
bg_wait_exit() {
	if ! wait_until "$1" eval '! proc_alive "$BG_PID"' >/dev/null; then
		echo "the bridge still runs after $1 s" >&2
		kill -KILL "$BG_PID" 2>/dev/null
		wait "$BG_PID" 2>/dev/null
		BG_PID=""
		return 1
	fi
	BG_RC=0
	wait "$BG_PID" || BG_RC=$?
	BG_PID=""
}

# bg_stop: SIGTERM to BG_PID (if it runs), then bg_wait_exit 20.
bg_stop() {
	[ -n "${BG_PID:-}" ] || return 0
	kill -TERM "$BG_PID" 2>/dev/null || true
	bg_wait_exit 20
}

# bg_stop_traced: BG_PID is strace: SIGTERM to the bridge it runs, then wait for both.
bg_stop_traced() {
	kill -TERM "$(pgrep -P "$BG_PID" | head -n 1)"
	bg_wait_exit 20
}
