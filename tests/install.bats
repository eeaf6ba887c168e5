#!/usr/bin/env bats
# install.bats: make install and make uninstall as a packager runs them: every file
# in its place with its mode, the systemd unit naming the installed paths and
# passing systemd-analyze, shell completion offering every option of --help.
# Needs BUILDDIR (the configured build tree), MC_BIN and TOP_SRCDIR.

UNIT_NAME=molecule-connect@.service
WS=123e4567-e89b-42d3-a456-426614174000

# make in the build tree, outside any make that runs this test (whose job server
# this process does not hold).
build_make() {
	env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -s --no-print-directory -C "$BUILDDIR" "$@"
}

# The installation directories as the build tree's Makefile expands them, as
# shell assignments.
install_dirs() {
	build_make -f Makefile -f - print-install-dirs <<'EOF'
print-install-dirs:
	@echo "prefix='$(prefix)' bindir='$(bindir)' mandir='$(mandir)' docdir='$(docdir)'"
	@echo "pkglibexecdir='$(pkglibexecdir)' systemdsystemunitdir='$(systemdsystemunitdir)'"
	@echo "bashcompletiondir='$(bashcompletiondir)' zshcompletiondir='$(zshcompletiondir)'"
EOF
}

# make install or uninstall into a staging root, with the unit and completion
# directories setup_file settled.
stage() { # install|uninstall, root
	build_make "$1" DESTDIR="$2" systemdsystemunitdir="$systemdsystemunitdir" \
		bashcompletiondir="$bashcompletiondir" zshcompletiondir="$zshcompletiondir"
}

setup_file() {
	: "${BUILDDIR:?BUILDDIR must name the build tree}"
	: "${MC_BIN:?MC_BIN must name the built molecule-connect}"
	: "${TOP_SRCDIR:?TOP_SRCDIR must name the source tree}"
	# Modes as a package build makes them.
	umask 022
	local dirs
	dirs=$(install_dirs) || { echo "cannot read the directories from $BUILDDIR/Makefile" >&2; return 1; }
	eval "$dirs"
	# A directory configured away ("no", or no systemd on this machine) gets one
	# under the prefix, so that what would be installed there is checked too.
	: "${systemdsystemunitdir:=$prefix/lib/systemd/system}"
	: "${bashcompletiondir:=$prefix/share/bash-completion/completions}"
	: "${zshcompletiondir:=$prefix/share/zsh/site-functions}"
	export ROOT="$BATS_FILE_TMPDIR/root"
	stage install "$ROOT" >"$BATS_FILE_TMPDIR/install.out" 2>&1 ||
		{ cat "$BATS_FILE_TMPDIR/install.out" >&2; return 1; }
	export prefix bindir mandir docdir pkglibexecdir systemdsystemunitdir bashcompletiondir zshcompletiondir
	export UNIT="$ROOT$systemdsystemunitdir/$UNIT_NAME"
}

setup() {
	umask 022
	cd "$BATS_TEST_TMPDIR"
}

# "MODE PATH" a line for every file under a root, sorted.
listing() { # root
	(cd "$1" && find . ! -type d -printf '%m %P\n' | LC_ALL=C sort -k 2)
}

# The long and short options printed by --help, one a line, sorted.
help_options() { # program
	"$1" --help | grep -oE -- '^ +(-[a-zA-Z], )?--[a-z][a-z-]*' | grep -oE -- '-[a-zA-Z]|--[a-z-]+' |
		LC_ALL=C sort
}

# What a bash completion offers for a command line, one candidate a line, sorted.
# The words are given one an argument; the last is the word being completed.
bash_complete() { # completion file, word...
	local file=$1
	shift
	bash -c 'source "$1"; shift
		COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1))
		COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
		_molecule_connect molecule-connect "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
		printf "%s\n" "${COMPREPLY[@]}"' bash "$file" "$@" | LC_ALL=C sort
}

@test "make install puts every file in its place with its mode, and nothing else" {
	local expected="$BATS_TEST_TMPDIR/expected" f
	{
		echo "755 ${bindir#/}/molecule-connect"
		echo "644 ${mandir#/}/man1/molecule-connect.1"
		for f in claude-handler examples/echo.sh examples/shell-handler.sh examples/python-handler.py; do
			echo "755 ${pkglibexecdir#/}/${f##*/}"
		done
		# Every document and example of the source tree, so that a new one
		# missing from Makefile.am fails here.
		for f in README.md LICENSE contrib/README.md; do
			echo "644 ${docdir#/}/$f"
		done
		for f in "$TOP_SRCDIR"/docs/*.md; do
			echo "644 ${docdir#/}/docs/${f##*/}"
		done
		for f in "$TOP_SRCDIR"/contrib/examples/*; do
			echo "644 ${docdir#/}/examples/${f##*/}"
		done
		echo "644 ${systemdsystemunitdir#/}/$UNIT_NAME"
		echo "644 ${bashcompletiondir#/}/molecule-connect"
		echo "644 ${zshcompletiondir#/}/_molecule-connect"
	} | LC_ALL=C sort -k 2 >"$expected"
	diff -u "$expected" <(listing "$ROOT")
	# No directory others may write to.
	run find "$ROOT" -type d -perm /022
	[ -z "$output" ] || { echo "group or world writable: $output" >&2; false; }
	# The installed program runs and names its license.
	run "$ROOT$bindir/molecule-connect" --version
	[ "$status" -eq 0 ]
	[ "${lines[0]}" = "molecule-connect 0.1.0" ]
	[[ "$output" == *"License MIT"* ]] || { echo "$output" >&2; false; }
	# The handlers are the source tree's, the license the MIT one.
	cmp "$TOP_SRCDIR/contrib/claude-handler" "$ROOT$pkglibexecdir/claude-handler"
	grep -q '^MIT License$' "$ROOT$docdir/LICENSE"
}

@test "the installed man page ends with its authors and license" {
	local page="$ROOT$mandir/man1/molecule-connect.1"
	run grep '^\.SH ' "$page"
	[ "${lines[-2]}" = ".SH AUTHORS" ] || { echo "$output" >&2; false; }
	[ "${lines[-1]}" = ".SH LICENSE" ] || { echo "$output" >&2; false; }
	sed -n '/^\.SH LICENSE$/,$p' "$page" | grep -q '^MIT License'
}

@test "the unit runs the installed program and finds the installed handlers by name" {
	[ -f "$UNIT" ]
	grep -qxF "ExecStart=$bindir/molecule-connect --state-dir \${STATE_DIRECTORY} \$MOLECULE_CONNECT_ARGS %i -- \$HANDLER" "$UNIT"
	# The handler directory comes first on the PATH the bridge starts HANDLER from.
	local path
	path=$(sed -n 's/^Environment=PATH=//p' "$UNIT")
	[ "${path%%:*}" = "$pkglibexecdir" ] || { echo "PATH=$path" >&2; false; }
	[ -x "$ROOT${path%%:*}/claude-handler" ]
	# Every placeholder was substituted, in the comments too.
	run grep -nE '@[a-z_]+@' "$UNIT"
	[ "$status" -eq 1 ] || { echo "left: $output" >&2; false; }
	# The token never sits on the command line.
	run grep -c 'TOKEN' <(grep '^ExecStart=' "$UNIT")
	[ "$output" = 0 ]
}

@test "make install bindir=... pkglibexecdir=...: the unit names those" {
	local root="$BATS_TEST_TMPDIR/elsewhere"
	run build_make install DESTDIR="$root" bindir=/opt/mc/bin pkglibexecdir=/opt/mc/handlers \
		systemdsystemunitdir="$systemdsystemunitdir" bashcompletiondir="$bashcompletiondir" \
		zshcompletiondir="$zshcompletiondir"
	# The build tree's unit goes back to the configured directories, whatever happened.
	build_make "$UNIT_NAME"
	grep -q "^ExecStart=$bindir/molecule-connect " "$BUILDDIR/$UNIT_NAME"
	[ "$status" -eq 0 ] || { echo "$output" >&2; false; }
	local unit="$root$systemdsystemunitdir/$UNIT_NAME"
	grep -q '^ExecStart=/opt/mc/bin/molecule-connect ' "$unit"
	grep -q '^Environment=PATH=/opt/mc/handlers:' "$unit"
	[ -x "$root/opt/mc/bin/molecule-connect" ]
	[ -x "$root/opt/mc/handlers/claude-handler" ]
}

@test "the unit: one instance per workspace, its state, its environment file, restarts" {
	local setting
	for setting in 'StateDirectory=molecule-connect/%i' 'EnvironmentFile=/etc/molecule-connect/%i.env' \
		'ConfigurationDirectory=molecule-connect' 'Restart=on-failure' 'RestartSec=5' \
		'RestartPreventExitStatus=2 3 126 127' 'KillMode=mixed' 'DynamicUser=yes' 'UMask=0077'; do
		grep -qxF "$setting" "$UNIT" || { echo "missing: $setting" >&2; false; }
	done
	# The stop timeout leaves room for the bridge's own drain (10 s) and grace.
	local stop
	stop=$(sed -n 's/^TimeoutStopSec=//p' "$UNIT")
	[ "$stop" -ge 15 ]
}

@test "the unit's sandbox" {
	local setting
	for setting in 'CapabilityBoundingSet=' 'NoNewPrivileges=yes' 'ProtectSystem=strict' \
		'PrivateTmp=yes' 'PrivateDevices=yes' 'ProtectKernelTunables=yes' 'ProtectKernelModules=yes' \
		'ProtectKernelLogs=yes' 'ProtectClock=yes' 'ProtectHostname=yes' 'ProtectProc=invisible' \
		'LockPersonality=yes' 'MemoryDenyWriteExecute=yes' 'RestrictNamespaces=yes' \
		'RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX' 'SystemCallFilter=@system-service' \
		'SystemCallArchitectures=native'; do
		grep -qxF "$setting" "$UNIT" || { echo "missing: $setting" >&2; false; }
	done
}

# A copy of the installed unit whose ExecStart names the staged program (verify
# wants it to exist), named for one instance.
verifiable_unit() {
	mkdir -p "$BATS_TEST_TMPDIR/units"
	local copy="$BATS_TEST_TMPDIR/units/molecule-connect@$WS.service"
	sed "s|^ExecStart=$bindir/|ExecStart=$ROOT$bindir/|" "$UNIT" >"$copy"
	grep -q "^ExecStart=$ROOT$bindir/molecule-connect " "$copy"
	echo "$copy"
}

@test "the installed unit passes systemd-analyze verify" {
	command -v systemd-analyze >/dev/null ||
		skip "systemd-analyze is not installed (Debian: apt-get install systemd): the unit is not verified"
	local copy man=--man=no
	copy=$(verifiable_unit)
	# Documentation=man:molecule-connect(1) is looked up in the staged manual.
	command -v man >/dev/null && man=--man=yes
	MANPATH="$ROOT$mandir" run systemd-analyze verify "$man" "$copy"
	[ "$status" -eq 0 ] || { echo "$output" >&2; false; }
	# Unknown keys and bad values are only warnings: there must be none.
	[ -z "$output" ] || { echo "$output" >&2; false; }
}

@test "the installed unit's exposure is at most 3.0 (systemd-analyze security)" {
	command -v systemd-analyze >/dev/null ||
		skip "systemd-analyze is not installed (Debian: apt-get install systemd): the exposure is not measured"
	local copy
	copy=$(verifiable_unit)
	run systemd-analyze security --offline=yes --no-pager "$copy"
	[ "$status" -eq 0 ] || { echo "$output" >&2; false; }
	local score
	score=$(printf '%s\n' "$output" | sed -n 's/^→ Overall exposure level for .*: \([0-9.]*\) .*/\1/p')
	[ -n "$score" ] || { echo "no score in: $output" >&2; false; }
	awk -v s="$score" 'BEGIN { exit !(s <= 3.0) }' || { echo "exposure $score > 3.0" >&2; false; }
}

@test "bash completion offers every option of --help" {
	local comp="$ROOT$bashcompletiondir/molecule-connect"
	diff -u <(help_options "$MC_BIN") <(bash_complete "$comp" molecule-connect -)
	# The completion is for the program's name, through its function.
	grep -qx 'complete -F _molecule_connect molecule-connect' "$comp"
}

@test "bash completion: the values an option takes" {
	local comp="$ROOT$bashcompletiondir/molecule-connect"
	[ "$(bash_complete "$comp" molecule-connect --log-format '' | paste -sd ' ')" = "json text" ]
	[ "$(bash_complete "$comp" molecule-connect --exec-input '' | paste -sd ' ')" = "json text" ]
	# --opt=value arrives as three words ("=" breaks words), or one.
	[ "$(bash_complete "$comp" molecule-connect --log-format = j)" = json ]
	[ "$(bash_complete "$comp" molecule-connect --exec-input =)" = "$(printf 'json\ntext')" ]
	[ "$(bash_complete "$comp" molecule-connect --exec-input=t)" = "--exec-input=text" ]
	# Files for a file, directories for a directory, nothing for a number.
	mkdir somedir && touch somefile
	[ "$(bash_complete "$comp" molecule-connect --token-file some | paste -sd ' ')" = "somedir somefile" ]
	[ "$(bash_complete "$comp" molecule-connect --state-dir some)" = somedir ]
	[ -z "$(bash_complete "$comp" molecule-connect --interval '')" ]
	# After "--": a command, then its own arguments.
	bash_complete "$comp" molecule-connect "$WS" -- ech | grep -qx echo
	[ "$(bash_complete "$comp" molecule-connect "$WS" -- jq somef)" = somefile ]
}

@test "zsh completion names every option of --help" {
	local comp="$ROOT$zshcompletiondir/_molecule-connect" opt
	[ "$(head -n 1 "$comp")" = "#compdef molecule-connect" ]
	for opt in $(help_options "$MC_BIN"); do
		grep -qE -- "(['{,])$opt[=+,}[]" "$comp" || { echo "$opt missing" >&2; false; }
	done
	grep -qF "'--log-format=[stderr log lines\: text or json]:FORMAT:(text json)'" "$comp"
	grep -qF "'--state-dir=[" "$comp"
	! grep -q "state-dir=.*:DIR: '" "$comp"
	if command -v zsh >/dev/null; then
		zsh -n "$comp"
	fi
}

@test "completion follows --help: a new option completes without editing anything" {
	# A program whose --help has options the generator has never seen.
	cat >newhelp <<'EOF'
#!/bin/sh
cat <<'HELP'
Usage: molecule-connect [OPTIONS] WORKSPACE_ID

Options:
      --per=MODE         one co-process per conversation, keyed by peer|context
      --events=MODE      the platform's event stream: auto, on or off [default auto]
      --max-procs=N      co-processes alive at once: at most (1..1000) [default 8]
      --notes=FILE       a file: its name only
  -x, --example=PATH     a short option with an argument
      --wrapped=WHEN     an option whose help goes on
                         to a second line: now or later
  -v, --verbose          more log detail (repeatable)
      --trace            every request too (repeatable)

Exit status: 0 clean stop.
HELP
EOF
	chmod +x newhelp
	local gen="$TOP_SRCDIR/contrib/completion/gen-completion.sh"
	sh "$gen" bash ./newhelp >newhelp.bash
	[ "$(bash_complete newhelp.bash molecule-connect - | paste -sd ' ')" = \
		"--events --example --max-procs --notes --per --trace --verbose --wrapped -v -x" ]
	[ "$(bash_complete newhelp.bash molecule-connect --per '' | paste -sd ' ')" = "context peer" ]
	[ "$(bash_complete newhelp.bash molecule-connect --events '' | paste -sd ' ')" = "auto off on" ]
	[ "$(bash_complete newhelp.bash molecule-connect --wrapped '' | paste -sd ' ')" = "later now" ]
	[ -z "$(bash_complete newhelp.bash molecule-connect --max-procs '')" ]
	touch afile
	[ "$(bash_complete newhelp.bash molecule-connect -x af)" = afile ]
	[ "$(bash_complete newhelp.bash molecule-connect --notes af)" = afile ]
	sh "$gen" zsh ./newhelp >newhelp.zsh
	grep -qF "'--per=[one co-process per conversation, keyed by peer|context]:MODE:(peer context)'" newhelp.zsh
	grep -qF "'--events=[the platform'\\''s event stream\\: auto, on or off]:MODE:(auto on off)'" newhelp.zsh
	grep -qF "'(-x --example)'{-x+,--example=}'[a short option with an argument]:PATH:_files'" newhelp.zsh
	grep -qF "'*'{-v,--verbose}'[more log detail (repeatable)]'" newhelp.zsh
	grep -qF "'*--trace[every request too (repeatable)]'" newhelp.zsh
	if command -v zsh >/dev/null; then
		zsh -n newhelp.zsh
	fi
}

@test "completion generator: a program without options in --help is an error" {
	printf '#!/bin/sh\necho "Usage: x"\n' >nohelp
	chmod +x nohelp
	run sh "$TOP_SRCDIR/contrib/completion/gen-completion.sh" bash ./nohelp
	[ "$status" -eq 1 ]
	[[ "$output" == *"no options found"* ]] || { echo "$output" >&2; false; }
	run sh "$TOP_SRCDIR/contrib/completion/gen-completion.sh" fish ./nohelp
	[ "$status" -eq 2 ]
}

@test "make check without what the suite needs fails and says what is missing" {
	run build_make check-local TESTS_UNAVAILABLE='missing bats (Debian: apt-get install bats)'
	[ "$status" -ne 0 ]
	[[ "$output" == *"cannot run the tests: missing bats (Debian: apt-get install bats)"* ]] ||
		{ echo "$output" >&2; false; }
	# With everything there (this very run), it says nothing.
	run build_make check-local
	[ "$status" -eq 0 ]
	[ -z "$output" ]
}

@test "make uninstall leaves no file behind" {
	local root="$BATS_TEST_TMPDIR/root"
	stage install "$root" >/dev/null
	[ -n "$(listing "$root")" ]
	stage uninstall "$root" >/dev/null
	run listing "$root"
	[ -z "$output" ] || { echo "left behind: $output" >&2; false; }
}
