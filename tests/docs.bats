#!/usr/bin/env bats
# docs.bats: the man page against the program: every option of --help documented,
# the message and reply formats present, and mandoc's lint clean; docs/architecture.md
# against src/. Needs MC_BIN, MANPAGE, TOP_SRCDIR.

setup() {
	: "${MC_BIN:?MC_BIN must name the built molecule-connect}"
	: "${MANPAGE:?MANPAGE must name man/molecule-connect.1}"
	[ -r "$MANPAGE" ]
}

# True when the man page source names the option, as roff writes it (\-\-api\-url)
# or plainly (--api-url).
man_has_option() { # option with its dashes
	local escaped=${1//-/\\-}
	grep -qF -- "$escaped" "$MANPAGE" || grep -qF -- "$1" "$MANPAGE"
}

# The source lines of one section (.SH NAME up to the next .SH).
man_section() { # title
	awk -v t="$1" '/^\.SH / { s = ($0 == ".SH " t || $0 == ".SH \"" t "\"") ; next } s' "$MANPAGE"
}

@test "every long option printed by --help is in the man page" {
	run "$MC_BIN" --help
	[ "$status" -eq 0 ]
	local opts
	opts=$(printf '%s\n' "$output" | grep -oE -- '--[a-z][a-z-]*' | sort -u)
	# Guard against a help parser that finds nothing to check.
	[ "$(printf '%s\n' "$opts" | wc -l)" -ge 25 ]
	local missing=""
	for opt in $opts; do
		man_has_option "$opt" || missing="$missing $opt"
	done
	[ -z "$missing" ] || { echo "not in $MANPAGE:$missing"; return 1; }
}

@test "every short option printed by --help is in the man page" {
	run "$MC_BIN" --help
	local opts
	opts=$(printf '%s\n' "$output" | grep -oE -- '^  -[a-zA-Z],' | tr -d ' ,')
	[ -n "$opts" ]
	for opt in $opts; do
		man_has_option "$opt" || { echo "$opt not documented"; return 1; }
	done
}

@test "every option is described in the OPTIONS section" {
	run "$MC_BIN" --help
	local section
	section=$(man_section OPTIONS)
	for opt in $(printf '%s\n' "$output" | grep -oE -- '^ +(-[a-zA-Z], )?--[a-z][a-z-]*' | grep -oE -- '--[a-z-]+'); do
		local escaped=${opt//-/\\-}
		printf '%s\n' "$section" | grep -qE -- "^\.(B|BI|BR) .*${escaped//\\/\\\\}([= \"]|\$)" ||
			{ echo "$opt has no entry in OPTIONS"; return 1; }
	done
}

@test "every environment variable of --help is in ENVIRONMENT" {
	run "$MC_BIN" --help
	local section vars
	section=$(man_section ENVIRONMENT)
	vars=$(printf '%s\n' "$output" | grep -oE '\[env [A-Z_]+\]' | sed 's/\[env //; s/\]//')
	[ "$(printf '%s\n' "$vars" | wc -l)" -eq 3 ]
	for v in $vars; do
		printf '%s\n' "$section" | grep -qx ".B $v" || { echo "$v not in ENVIRONMENT"; return 1; }
	done
}

@test "mandoc -Tlint -W warning finds nothing" {
	command -v mandoc >/dev/null || skip "mandoc is not installed"
	run mandoc -Tlint -W warning "$MANPAGE"
	[ "$status" -eq 0 ] || { echo "$output"; return 1; }
	[ -z "$output" ]
}

@test "the man page has the sections a user looks for" {
	for s in NAME SYNOPSIS DESCRIPTION OPTIONS OUTPUT INPUT "DELIVERY GUARANTEES" \
		"ERRORS AND SIGNALS" SECURITY ENVIRONMENT FILES "EXIT STATUS" EXAMPLES "SEE ALSO"; do
		grep -qx "\.SH $s" "$MANPAGE" || grep -qx "\.SH \"$s\"" "$MANPAGE" ||
			{ echo "no section $s"; return 1; }
	done
}

@test "INPUT documents every reply shape" {
	local section
	section=$(man_section INPUT)
	for field in id text parts error retry; do
		printf '%s\n' "$section" | grep -qF "\\(dq$field\\(dq" ||
			printf '%s\n' "$section" | grep -qF "\"$field\"" ||
			{ echo "reply field $field missing"; return 1; }
	done
	# The id-less form answers the oldest unanswered message.
	printf '%s\n' "$section" | grep -q 'oldest unanswered'
}

@test "OUTPUT documents every field of a message line" {
	local section
	section=$(man_section OUTPUT)
	for field in id seq workspace_id source_id origin peer_name peer_role method text parts \
		files message_id context_id delegation_id created_at request; do
		printf '%s\n' "$section" | grep -qF "\"$field\"" || { echo "field $field missing"; return 1; }
	done
}

@test "the man page shows the same version as --version" {
	run "$MC_BIN" --version
	local version=${lines[0]#molecule-connect }
	grep -q "^\.TH MOLECULE-CONNECT 1 .*\"molecule-connect $version\"" "$MANPAGE"
}

@test "EXIT STATUS lists 0, 1 and 2" {
	local section
	section=$(man_section "EXIT STATUS")
	for code in 0 1 2; do
		printf '%s\n' "$section" | grep -qx "\.B $code" || { echo "status $code missing"; return 1; }
	done
}

# The source files docs/architecture.md names: NAME.c or NAME.h, bare or as src/NAME.c,
# but not a path elsewhere (tests/unit/x.c) nor a system header (<jv.h>).
architecture_names() {
	grep -oE '(^|[^/<A-Za-z0-9_.-])(src/)?[A-Za-z0-9_]+\.[ch]\b' "$1" |
		sed -E 's/^[^A-Za-z0-9_]*//; s#^src/##' | sort -u
}

@test "docs/architecture.md names every file of src/, and no file src/ does not have" {
	local doc=$TOP_SRCDIR/docs/architecture.md names f missing="" stale=""
	[ -r "$doc" ]
	names=$(architecture_names "$doc")
	# Guard against a pattern that finds nothing to check.
	[ "$(printf '%s\n' "$names" | wc -l)" -ge 20 ]
	for f in "$TOP_SRCDIR"/src/*.c "$TOP_SRCDIR"/src/*.h; do
		f=${f##*/}
		printf '%s\n' "$names" | grep -qxF "$f" || missing="$missing $f"
	done
	for f in $names; do
		[ -e "$TOP_SRCDIR/src/$f" ] || stale="$stale $f"
	done
	[ -z "$missing" ] || { echo "not in docs/architecture.md:$missing"; return 1; }
	[ -z "$stale" ] || { echo "named in docs/architecture.md but not in src/:$stale"; return 1; }
}
