#!/usr/bin/env bats
# options.bats: the command line, environment and defaults, as --help, --dry-run
# and exit statuses show them. Needs MC_BIN (set by make check).

ID=123e4567-e89b-42d3-a456-426614174000
TRY="Try 'molecule-connect --help' for more information."

setup() {
	: "${MC_BIN:?MC_BIN must name the built molecule-connect}"
	# Nothing from the caller's environment may leak into what is checked.
	unset XDG_CONFIG_HOME MOLECULE_API_URL MOLECULE_ORG_ID MOLECULE_WORKSPACE_TOKEN
	export HOME="$BATS_TEST_TMPDIR/home"
	mkdir -p "$HOME"
	cd "$BATS_TEST_TMPDIR"
}

# A usage error: exit 2, the named problem on the first line, the --help hint
# on the second, nothing else.
assert_usage_error() { # expected substring of the first line
	[ "$status" -eq 2 ] || { echo "status $status, output: $output"; return 1; }
	[ "${#lines[@]}" -eq 2 ] || { echo "want 2 lines, got: $output"; return 1; }
	[[ "${lines[0]}" == "molecule-connect: "*"$1"* ]] || { echo "line 1: ${lines[0]}"; return 1; }
	[ "${lines[1]}" = "$TRY" ] || { echo "line 2: ${lines[1]}"; return 1; }
}

# A configuration error: exit 2 and exactly one line naming the problem.
assert_config_error() {
	[ "$status" -eq 2 ] || { echo "status $status, output: $output"; return 1; }
	[ "${#lines[@]}" -eq 1 ] || { echo "want 1 line, got: $output"; return 1; }
	[[ "${lines[0]}" == "molecule-connect: "*"$1"* ]] || { echo "line 1: ${lines[0]}"; return 1; }
}

# The value of one "key: value" line of --dry-run output.
dry() { # key
	printf '%s\n' "$output" | sed -n "s/^$1: //p"
}

@test "--help lists the three forms and every option, with env and defaults, on stdout" {
	run "$MC_BIN" --help
	[ "$status" -eq 0 ]
	[ "${lines[0]}" = "Usage: molecule-connect [OPTIONS] WORKSPACE_ID" ]
	[[ "$output" == *"molecule-connect [OPTIONS] WORKSPACE_ID -- COMMAND [ARG...]"* ]]
	[[ "$output" == *"molecule-connect [OPTIONS] --exec 'SHELL COMMAND' WORKSPACE_ID"* ]]
	for opt in api-url token-file token org-id state-dir interval heartbeat since-secs \
		max-inflight name agent-card filter reply-filter exec exec-input exec-timeout \
		concurrency restart-limit once max-messages drain-timeout dry-run \
		allow-insecure-http log-format verbose quiet help version; do
		printf '%s\n' "$output" | grep -Eq -- "--$opt([ =]|\$)" || { echo "missing --$opt"; return 1; }
	done
	printf '%s\n' "$output" | grep -q -- '-v, --verbose'
	printf '%s\n' "$output" | grep -q -- '-q, --quiet'
	printf '%s\n' "$output" | grep -Eq -- '--api-url=URL .*\[env MOLECULE_API_URL\] \[default http://localhost:8080\]'
	printf '%s\n' "$output" | grep -Eq -- '--token=TOKEN .*\[env MOLECULE_WORKSPACE_TOKEN\]'
	printf '%s\n' "$output" | grep -Eq -- '--org-id=ID .*\[env MOLECULE_ORG_ID\]'
	printf '%s\n' "$output" | grep -Eq -- '--interval=SECS .*\[default 1\]'
	printf '%s\n' "$output" | grep -Eq -- '--heartbeat=SECS .*\[default 30\]'
	printf '%s\n' "$output" | grep -Eq -- '--max-inflight=N .*\[default 16\]'
	printf '%s\n' "$output" | grep -Eq -- '--drain-timeout=SECS .*\[default 10\]'
	# stdout only: nothing on stderr.
	run sh -c '"$MC_BIN" --help 2>&1 >/dev/null'
	[ "$status" -eq 0 ]
	[ -z "$output" ]
}

@test "-h prints the same help as --help" {
	run "$MC_BIN" --help
	local long=$output
	run "$MC_BIN" -h
	[ "$status" -eq 0 ]
	[ "$output" = "$long" ]
}

@test "--help wins over a missing workspace id" {
	run "$MC_BIN" --interval 5 --help
	[ "$status" -eq 0 ]
	[[ "${lines[0]}" == "Usage: molecule-connect"* ]]
}

@test "--version and -V print the program and libcurl versions" {
	run "$MC_BIN" --version
	[ "$status" -eq 0 ]
	[ "${lines[0]}" = "molecule-connect 0.1.0" ]
	[[ "${lines[1]}" == libcurl/* ]]
	run "$MC_BIN" -V
	[ "$status" -eq 0 ]
	[ "${lines[0]}" = "molecule-connect 0.1.0" ]
}

@test "no workspace id: usage error pointing at --help" {
	run "$MC_BIN"
	assert_usage_error "missing WORKSPACE_ID"
	run "$MC_BIN" --once
	assert_usage_error "missing WORKSPACE_ID"
}

@test "a workspace id that is not a UUID is rejected, saying what form is expected" {
	for bad in not-a-uuid 123e4567e89b42d3a456426614174000 "{$ID}" "${ID}0" "${ID:1}" \
		123e4567-e89b-42d3-a456-42661417400g ""; do
		run "$MC_BIN" --dry-run "$bad"
		assert_usage_error "is not a workspace id: expected a lower-case UUID"
	done
}

@test "an upper-case workspace id is rejected" {
	run "$MC_BIN" --dry-run 123E4567-E89B-42D3-A456-426614174000
	assert_usage_error "'123E4567-E89B-42D3-A456-426614174000' is not a workspace id: expected a lower-case UUID"
}

@test "unknown, ambiguous and malformed options exit 2 with one line" {
	run "$MC_BIN" --bogus "$ID"
	assert_usage_error "unknown option '--bogus'"
	run "$MC_BIN" --bogus=1 "$ID"
	assert_usage_error "unknown option '--bogus'"
	run "$MC_BIN" -x "$ID"
	assert_usage_error "unknown option '-x'"
	run "$MC_BIN" -vx "$ID"
	assert_usage_error "unknown option '-x'"
	run "$MC_BIN" --e 1 "$ID"
	assert_usage_error "ambiguous option '--e'"
	run "$MC_BIN" "$ID" --interval
	assert_usage_error "option '--interval' needs an argument"
	run "$MC_BIN" --once=yes "$ID"
	assert_usage_error "option '--once' does not take an argument"
}

@test "a second argument without '--' is an error that shows where a command goes" {
	run "$MC_BIN" "$ID" cat
	assert_usage_error "unexpected argument 'cat' (a co-process COMMAND goes after '--')"
}

@test "'--' without a command is an error" {
	run "$MC_BIN" "$ID" --
	assert_usage_error "no COMMAND after '--'"
}

@test "every numeric option rejects out-of-range and junk values, naming the option" {
	while read -r opt values; do
		for v in $values junk 12x ""; do
			run "$MC_BIN" --dry-run "--$opt" "$v" "$ID"
			assert_usage_error "--$opt: '$v' is not a" || { echo "--$opt $v"; return 1; }
		done
	done <<-'EOF'
	interval 0.04 3601 -1 nan inf
	heartbeat 0 0.5 3601
	since-secs -1 2592001 1.5
	max-inflight 0 10001
	max-messages 0 2147483649 -3
	drain-timeout -1 3601
	exec-timeout 0.09 0 86401
	concurrency 0 1025
	restart-limit -1 1001
	EOF
}

@test "numeric options accept the ends of their ranges" {
	run "$MC_BIN" --dry-run --interval 0.05 --heartbeat 3600 --since-secs 2592000 \
		--max-inflight 10000 --max-messages 2147483648 --drain-timeout 0 \
		--exec 'cat' --exec-timeout 86400 --concurrency 1024 "$ID"
	[ "$status" -eq 0 ]
	[ "$(dry interval)" = 0.05 ]
	[ "$(dry heartbeat)" = 3600 ]
	[ "$(dry since_secs)" = 2592000 ]
	[ "$(dry max_inflight)" = 10000 ]
	[ "$(dry max_messages)" = 2147483648 ]
	[ "$(dry drain_timeout)" = 0 ]
	[ "$(dry exec_timeout)" = 86400 ]
	[ "$(dry concurrency)" = 1024 ]
	run "$MC_BIN" --dry-run --restart-limit 0 --since-secs 0 --max-messages 1 "$ID" -- cat
	[ "$status" -eq 0 ]
	[ "$(dry restart_limit)" = 0 ]
	[ "$(dry since_secs)" = 0 ]
	[ "$(dry max_messages)" = 1 ]
}

@test "--opt=value and --opt value mean the same" {
	run "$MC_BIN" --dry-run --interval=2.5 --org-id=org-a --name=alpha "$ID"
	[ "$status" -eq 0 ]
	local joined=$output
	run "$MC_BIN" --dry-run --interval 2.5 --org-id org-a --name alpha "$ID"
	[ "$status" -eq 0 ]
	[ "$output" = "$joined" ]
	[ "$(dry interval)" = 2.5 ]
	[ "$(dry org_id)" = org-a ]
	[ "$(dry name)" = '"alpha"' ]
}

@test "the workspace id may come before, between or after options" {
	run "$MC_BIN" "$ID" --dry-run --interval 3
	[ "$status" -eq 0 ]
	[ "$(dry workspace_id)" = "$ID" ]
	[ "$(dry interval)" = 3 ]
	run "$MC_BIN" --dry-run "$ID" --interval 4
	[ "$status" -eq 0 ]
	[ "$(dry interval)" = 4 ]
}

@test "--dry-run shows the defaults" {
	run "$MC_BIN" --dry-run "$ID"
	[ "$status" -eq 0 ]
	[ "$(dry workspace_id)" = "$ID" ]
	[ "$(dry api_url)" = http://localhost:8080 ]
	[ "$(dry token)" = unset ]
	[ "$(dry token_source)" = "(none)" ]
	[ "$(dry org_id)" = "(none)" ]
	[ "$(dry interval)" = 1 ]
	[ "$(dry heartbeat)" = 30 ]
	[ "$(dry since_secs)" = 30 ]
	[ "$(dry max_inflight)" = 16 ]
	[ "$(dry drain_timeout)" = 10 ]
	[ "$(dry once)" = false ]
	[ "$(dry max_messages)" = "(no limit)" ]
	[ "$(dry filter)" = "(none)" ]
	[ "$(dry reply_filter)" = "(none)" ]
	[ "$(dry log_format)" = text ]
	[ "$(dry verbosity)" = 0 ]
	[ "$(dry mode)" = filter ]
	[ "$(dry agent_card)" = '{"name":"molecule-connect","description":"External workspace bridged by molecule-connect","version":"0.1.0"}' ]
}

@test "environment fallbacks: MOLECULE_API_URL, MOLECULE_ORG_ID, MOLECULE_WORKSPACE_TOKEN" {
	MOLECULE_API_URL=https://platform.example/// MOLECULE_ORG_ID=org-env \
	MOLECULE_WORKSPACE_TOKEN=env-token-4f9c2a run "$MC_BIN" --dry-run "$ID"
	[ "$status" -eq 0 ]
	[ "$(dry api_url)" = https://platform.example ]
	[ "$(dry org_id)" = org-env ]
	[ "$(dry token)" = set ]
	[ "$(dry token_source)" = environment ]
	[[ "$output" != *env-token-4f9c2a* ]]
}

@test "an empty environment variable counts as unset" {
	MOLECULE_API_URL= MOLECULE_ORG_ID= MOLECULE_WORKSPACE_TOKEN= run "$MC_BIN" --dry-run "$ID"
	[ "$status" -eq 0 ]
	[ "$(dry api_url)" = http://localhost:8080 ]
	[ "$(dry org_id)" = "(none)" ]
	[ "$(dry token)" = unset ]
}

@test "options take precedence over the environment" {
	printf 'file-token-77ab\n' >tok
	chmod 600 tok
	MOLECULE_API_URL=https://env.example MOLECULE_ORG_ID=org-env \
	MOLECULE_WORKSPACE_TOKEN=env-token-4f9c2a \
		run "$MC_BIN" --dry-run --api-url https://opt.example/ --org-id org-opt --token-file tok "$ID"
	[ "$status" -eq 0 ]
	[ "$(dry api_url)" = https://opt.example ]
	[ "$(dry org_id)" = org-opt ]
	[ "$(dry token_source)" = file ]
	MOLECULE_WORKSPACE_TOKEN=env-token-4f9c2a run "$MC_BIN" --dry-run --token opt-token-91dd "$ID"
	[ "$status" -eq 0 ]
	[ "$(dry token_source)" = option ]
}

@test "an org id that would break the HTTP header is refused" {
	run "$MC_BIN" --dry-run --org-id $'org\r\nX-Evil: 1' "$ID"
	assert_config_error "the org id contains a space or control character"
	MOLECULE_ORG_ID='org one' run "$MC_BIN" --dry-run "$ID"
	assert_config_error "the org id contains a space or control character"
}

@test "a bad MOLECULE_API_URL is a one-line configuration error naming the variable" {
	MOLECULE_API_URL=localhost:8080 run "$MC_BIN" --dry-run "$ID"
	assert_config_error "MOLECULE_API_URL: 'localhost:8080' is not a URL: it must start with http:// or https://"
}

@test "--api-url must be http(s), with a host; trailing slashes are stripped" {
	run "$MC_BIN" --dry-run --api-url ftp://platform.example "$ID"
	assert_usage_error "--api-url: 'ftp://platform.example' is not a URL: it must start with http:// or https://"
	run "$MC_BIN" --dry-run --api-url https:// "$ID"
	assert_usage_error "--api-url: 'https://' has no host"
	run "$MC_BIN" --dry-run --api-url 'https://platform.example/base//' "$ID"
	[ "$status" -eq 0 ]
	[ "$(dry api_url)" = https://platform.example/base ]
}

@test "plain http is refused to a non-loopback host unless --allow-insecure-http" {
	run "$MC_BIN" --dry-run --api-url http://platform.example "$ID"
	assert_config_error "refusing plain http to 'http://platform.example'"
	[[ "$output" == *"--allow-insecure-http"* ]]
	run "$MC_BIN" --dry-run --api-url http://platform.example --allow-insecure-http "$ID"
	[ "$status" -eq 0 ]
	[ "$(dry allow_insecure_http)" = true ]
	for url in http://localhost:9 http://127.0.0.1:9 http://127.8.9.10 'http://[::1]:8080' http://user@localhost; do
		run "$MC_BIN" --dry-run --api-url "$url" "$ID"
		[ "$status" -eq 0 ] || { echo "$url: $output"; return 1; }
	done
	# A loopback name in the user part does not make the host loopback.
	run "$MC_BIN" --dry-run --api-url http://localhost@platform.example "$ID"
	[ "$status" -eq 2 ]
}

@test "--dry-run never shows the token, from any source" {
	local secret=tok-s3cr3t-NEVER-PRINTED
	MOLECULE_WORKSPACE_TOKEN=$secret run "$MC_BIN" --dry-run -v "$ID"
	[ "$status" -eq 0 ]
	[ "$(dry token)" = set ]
	[[ "$output" != *"$secret"* ]]
	run "$MC_BIN" --dry-run --token "$secret" "$ID"
	[ "$status" -eq 0 ]
	[[ "$output" != *"$secret"* ]]
	printf '%s\n' "$secret" >tok
	chmod 600 tok
	run "$MC_BIN" --dry-run --token-file tok "$ID"
	[ "$status" -eq 0 ]
	[[ "$output" != *"$secret"* ]]
}

@test "--dry-run makes no connection and leaves the state directory alone" {
	# Port 1 on loopback: nothing listens, so any attempt would show as an error.
	run timeout 10 "$MC_BIN" --dry-run --api-url http://127.0.0.1:1 "$ID"
	[ "$status" -eq 0 ]
	[ "$(dry api_url)" = http://127.0.0.1:1 ]
	[ "$(dry state_dir)" = "$HOME/.config/molecule/state" ]
	[ ! -e "$HOME/.config" ]
	# Only the configuration is printed: every line is "key: value".
	[ -z "$(printf '%s\n' "$output" | grep -Ev '^[a-z_]+: ')" ]
}

@test "--token warns that argv is visible, and never shows the token" {
	run "$MC_BIN" --dry-run --token tok-on-argv-55e1 "$ID"
	[ "$status" -eq 0 ]
	[[ "$output" == *"molecule-connect: warning: --token is visible to other users"* ]]
	[[ "$output" != *tok-on-argv-55e1* ]]
	[ "$(dry token_source)" = option ]
	# The warning is a diagnostic: stdout stays data only.
	run sh -c '"$MC_BIN" --dry-run --token tok-on-argv-55e1 "$0" 2>/dev/null' "$ID"
	[[ "$output" != *warning* ]]
}

@test "--token is overwritten in the process's command line" {
	[ -r /proc/self/cmdline ] || skip "no /proc"
	mkfifo in
	exec 5<>in # keeps stdin open: no end of input, the bridge keeps running
	"$MC_BIN" --token tok-hidden-0c3f --api-url http://127.0.0.1:1 \
		--state-dir "$BATS_TEST_TMPDIR/st" "$ID" <in >/dev/null 2>err 3>&- &
	local pid=$! cmdline="" i stars='***************' # as long as the token
	for i in $(seq 50); do
		cmdline=$(tr '\0' ' ' </proc/$pid/cmdline 2>/dev/null) || break
		[[ "$cmdline" == *"$stars"* ]] && break
		sleep 0.1
	done
	kill "$pid" 2>/dev/null || true
	wait "$pid" || true
	exec 5>&-
	echo "cmdline: $cmdline"
	[[ "$cmdline" == *" --token $stars --api-url "* ]]
	[[ "$cmdline" != *tok-hidden-0c3f* ]]
	run cat err
	[[ "$output" != *tok-hidden-0c3f* ]]
}

@test "a token file readable by others is refused; mode 600 is accepted" {
	printf 'file-token-abc123\n' >tok
	chmod 644 tok
	run "$MC_BIN" --dry-run --token-file tok "$ID"
	assert_config_error "token file 'tok' is accessible by other users (mode 0644); run 'chmod 600 tok'"
	[[ "$output" != *file-token-abc123* ]]
	chmod 620 tok
	run "$MC_BIN" --dry-run --token-file tok "$ID"
	assert_config_error "token file 'tok' is accessible by other users (mode 0620)"
	chmod 600 tok
	run "$MC_BIN" --dry-run --token-file tok "$ID"
	[ "$status" -eq 0 ]
	[ "$(dry token)" = set ]
	[ "$(dry token_source)" = file ]
	chmod 400 tok
	run "$MC_BIN" --dry-run --token-file tok "$ID"
	[ "$status" -eq 0 ]
}

@test "an empty, blank, missing or directory token file is an error naming it" {
	: >empty
	printf '  \t\r\nsecond-line-token\n' >blank
	chmod 600 empty blank
	run "$MC_BIN" --dry-run --token-file empty "$ID"
	assert_config_error "token file 'empty' is empty"
	run "$MC_BIN" --dry-run --token-file blank "$ID"
	assert_config_error "token file 'blank' is empty"
	run "$MC_BIN" --dry-run --token-file nowhere "$ID"
	assert_config_error "cannot open token file 'nowhere': No such file or directory"
	mkdir -m 700 dir
	run "$MC_BIN" --dry-run --token-file dir "$ID"
	assert_config_error "cannot read token file 'dir': Is a directory"
}

@test "a token with spaces inside is refused; surrounding white space is trimmed" {
	printf 'two words\n' >tok
	chmod 600 tok
	run "$MC_BIN" --dry-run --token-file tok "$ID"
	assert_config_error "token file 'tok': the token contains a space or control character"
	printf '  padded-token-1234 \r\n' >tok
	run "$MC_BIN" --dry-run --token-file tok "$ID"
	[ "$status" -eq 0 ]
	[ "$(dry token)" = set ]
}

@test "--token and --token-file together are refused" {
	printf 'file-token-abc123\n' >tok
	chmod 600 tok
	run "$MC_BIN" --dry-run --token x-token-1234 --token-file tok "$ID"
	assert_usage_error "--token and --token-file are exclusive"
}

@test "--agent-card: invalid JSON and non-objects are configuration errors" {
	printf '{"name": ' >bad.json
	run "$MC_BIN" --dry-run --agent-card bad.json "$ID"
	assert_config_error "agent card 'bad.json' is not valid JSON"
	printf '["a"]\n' >array.json
	run "$MC_BIN" --dry-run --agent-card array.json "$ID"
	assert_config_error "agent card 'array.json' must be a JSON object (found array)"
	printf '{} {}\n' >two.json
	run "$MC_BIN" --dry-run --agent-card two.json "$ID"
	assert_config_error "agent card 'two.json' is not valid JSON"
	printf '{"name": 7}\n' >name.json
	run "$MC_BIN" --dry-run --agent-card name.json "$ID"
	assert_config_error "agent card 'name.json': \"name\" must be a string"
	run "$MC_BIN" --dry-run --agent-card missing.json "$ID"
	assert_config_error "cannot read agent card 'missing.json': No such file or directory"
}

@test "--agent-card is kept whole and completed; --name overrides its name" {
	printf '{"name":"card-name","skills":[{"id":"echo"}],"version":"9"}\n' >card.json
	run "$MC_BIN" --dry-run --agent-card card.json "$ID"
	[ "$status" -eq 0 ]
	[ "$(dry name)" = '"card-name"' ]
	[ "$(dry agent_card)" = '{"name":"card-name","skills":[{"id":"echo"}],"version":"9","description":"External workspace bridged by molecule-connect"}' ]
	run "$MC_BIN" --dry-run --agent-card card.json --name over "$ID"
	[ "$status" -eq 0 ]
	[ "$(dry agent_card)" = '{"name":"over","skills":[{"id":"echo"}],"version":"9","description":"External workspace bridged by molecule-connect"}' ]
	run "$MC_BIN" --dry-run --name solo "$ID"
	[ "$(dry agent_card)" = '{"name":"solo","description":"External workspace bridged by molecule-connect","version":"0.1.0"}' ]
}

@test "state directory: XDG_CONFIG_HOME, else HOME, else an error; --state-dir wins" {
	XDG_CONFIG_HOME="$BATS_TEST_TMPDIR/xdg" run "$MC_BIN" --dry-run "$ID"
	[ "$status" -eq 0 ]
	[ "$(dry state_dir)" = "$BATS_TEST_TMPDIR/xdg/molecule/state" ]
	[ "$(dry state_file)" = "$BATS_TEST_TMPDIR/xdg/molecule/state/$ID.json" ]
	run "$MC_BIN" --dry-run "$ID"
	[ "$status" -eq 0 ]
	[ "$(dry state_dir)" = "$HOME/.config/molecule/state" ]
	[ "$(dry state_file)" = "$HOME/.config/molecule/state/$ID.json" ]
	run env -u HOME -u XDG_CONFIG_HOME "$MC_BIN" --dry-run "$ID"
	assert_config_error "no state directory: set --state-dir, XDG_CONFIG_HOME or HOME"
	XDG_CONFIG_HOME="$BATS_TEST_TMPDIR/xdg" run "$MC_BIN" --dry-run --state-dir /srv/mc/ "$ID"
	[ "$status" -eq 0 ]
	[ "$(dry state_dir)" = /srv/mc ]
	[ "$(dry state_file)" = "/srv/mc/$ID.json" ]
	run env -u HOME "$MC_BIN" --dry-run --state-dir /srv/mc "$ID"
	[ "$status" -eq 0 ]
}

@test "-- COMMAND: the co-process mode; its arguments are not ours" {
	run "$MC_BIN" --dry-run "$ID" -- jq -c --unbuffered '{id, text: ("echo: " + .text)}' -x --help
	[ "$status" -eq 0 ]
	[ "$(dry mode)" = coprocess ]
	[ "$(dry command)" = '["jq","-c","--unbuffered","{id, text: (\"echo: \" + .text)}","-x","--help"]' ]
	[ "$(dry restart_limit)" = 5 ]
}

@test "--exec: the one-process-per-message mode, with its settings" {
	run "$MC_BIN" --dry-run --exec 'claude -p' --exec-input json --concurrency 3 "$ID"
	[ "$status" -eq 0 ]
	[ "$(dry mode)" = exec ]
	[ "$(dry exec)" = '"claude -p"' ]
	[ "$(dry exec_input)" = json ]
	[ "$(dry exec_timeout)" = 60 ]
	[ "$(dry concurrency)" = 3 ]
	run "$MC_BIN" --dry-run --exec 'cat' --exec-input yaml "$ID"
	assert_usage_error "--exec-input: 'yaml' is not an input mode: use text or json"
	run "$MC_BIN" --dry-run --exec '' "$ID"
	assert_usage_error "--exec: the command is empty"
}

@test "--exec and -- COMMAND are exclusive" {
	run "$MC_BIN" --dry-run --exec 'claude -p' "$ID" -- cat
	assert_usage_error "--exec and '-- COMMAND' are exclusive"
}

@test "-v is repeatable, -q is quiet, and the two are exclusive" {
	run "$MC_BIN" --dry-run -vv --verbose "$ID"
	[ "$(dry verbosity)" = 3 ]
	run "$MC_BIN" --dry-run -q "$ID"
	[ "$(dry verbosity)" = -1 ]
	run "$MC_BIN" --dry-run -v -q "$ID"
	assert_usage_error "--verbose and --quiet are exclusive"
}

@test "-q silences the --token warning" {
	run "$MC_BIN" --dry-run -q --token quiet-token-8a8a "$ID"
	[ "$status" -eq 0 ]
	[[ "$output" != *warning* ]]
}

@test "--log-format takes text or json" {
	run "$MC_BIN" --dry-run --log-format json "$ID"
	[ "$status" -eq 0 ]
	[ "$(dry log_format)" = json ]
	run "$MC_BIN" --dry-run --log-format xml "$ID"
	assert_usage_error "--log-format: 'xml' is not a log format: use text or json"
}

@test "--filter, --reply-filter, --once and flags show in --dry-run, one line each" {
	run "$MC_BIN" --dry-run --once --filter 'select(.origin == "canvas")
| .' --reply-filter '{text: .}' "$ID"
	[ "$status" -eq 0 ]
	[ "$(dry filter)" = '"select(.origin == \"canvas\")\n| ."' ]
	[ "$(dry reply_filter)" = '"{text: .}"' ]
	[ "$(dry once)" = true ]
}

@test "--help or --dry-run into a full device fails with a message" {
	[ -w /dev/full ] || skip "no /dev/full"
	run sh -c '"$MC_BIN" --help >/dev/full'
	[ "$status" -eq 1 ]
	[ "$output" = "molecule-connect: cannot write to standard output: No space left on device" ]
	run sh -c '"$MC_BIN" --dry-run "$0" >/dev/full' "$ID"
	[ "$status" -eq 1 ]
	[[ "$output" == "molecule-connect: cannot write to standard output"* ]]
}

@test "closed standard descriptors are replaced, so --dry-run still succeeds" {
	run sh -c '"$MC_BIN" --dry-run "$0" >&- <&-' "$ID"
	[ "$status" -eq 0 ]
	[ -z "$output" ]
}
