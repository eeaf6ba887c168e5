#!/bin/sh
# gen-completion.sh: writes a bash or zsh completion for molecule-connect, read from
# the program's own --help, so that a new option completes without editing anything.
#
#   gen-completion.sh bash|zsh PROGRAM > FILE
#
# From each option line of --help ("  -v, --verbose  text", "      --name=ARG  text")
# it takes the names and the argument, and guesses what the argument completes to:
# the choices when the help lists them ("MODE|OTHER" as the argument, "a|b|c" in the
# text, or "...: a, b or c" ending the text), files for FILE or PATH, directories
# for DIR, command names for CMD or COMMAND, nothing otherwise.
set -eu

usage() {
	echo "usage: $0 bash|zsh PROGRAM" >&2
	exit 2
}
[ $# -eq 2 ] || usage
shell=$1 program=$2
case $shell in bash | zsh) ;; *) usage ;; esac

help=$("$program" --help) || {
	echo "$0: '$program --help' failed" >&2
	exit 1
}

# One record an option, fields separated by US (\037, never in help text, and not
# white space, so that read keeps empty fields): short, long, argument, kind,
# choices, description. kind is one of: flag, choice, file, dir, command, value.
us=$(printf '\037')
options=$(printf '%s\n' "$help" | awk -v us="$us" '
function trim(s) { sub(/^[ \t]+/, "", s); sub(/[ \t]+$/, "", s); return s }
function emit(   desc, rest, kind, choices) {
	if (long == "")
		return
	desc = text
	# The environment and default notes are not part of the description.
	while (match(desc, / \[(env|default) [^]]*\]$/))
		desc = substr(desc, 1, RSTART - 1)
	choices = ""
	if (arg ~ /\|/) {
		choices = arg
	} else if (match(desc, /[a-z0-9][a-z0-9_-]*(\|[a-z0-9][a-z0-9_-]*)+/)) {
		choices = substr(desc, RSTART, RLENGTH)
	} else if (arg != "" && match(desc, /: [^:]*$/)) {
		# "...: text (the message text) or json (the message line)"
		rest = substr(desc, RSTART + 2)
		gsub(/ *\([^)]*\)/, "", rest)
		if (rest ~ /^[a-z0-9][a-z0-9_-]*(, [a-z0-9][a-z0-9_-]*)*,? or [a-z0-9][a-z0-9_-]*$/) {
			gsub(/,? or |, /, "|", rest)
			choices = rest
		}
	}
	gsub(/\|/, " ", choices)
	if (arg == "")
		kind = "flag"
	else if (choices != "")
		kind = "choice"
	else if (arg ~ /^(FILE|PATH)$/)
		kind = "file"
	else if (arg ~ /^DIR$/)
		kind = "dir"
	else if (arg ~ /^(CMD|COMMAND)$/)
		kind = "command"
	else
		kind = "value"
	print short us long us arg us kind us choices us desc
	long = ""
}
/^Options:/ { inopts = 1; next }
!inopts { next }
/^[ \t]*$/ { emit(); inopts = 0; next }
/^ +-/ {
	emit()
	line = trim($0)
	# The names and argument end where two spaces start the description.
	split_at = index(line, "  ")
	if (split_at == 0)
		split_at = length(line) + 1
	left = substr(line, 1, split_at - 1)
	text = trim(substr(line, split_at))
	short = ""; arg = ""
	if (match(left, /^-[A-Za-z0-9], /)) {
		short = substr(left, 1, 2)
		left = substr(left, RLENGTH + 1)
	}
	if (match(left, /[= ]/)) {
		arg = substr(left, RSTART + 1)
		left = substr(left, 1, RSTART - 1)
	}
	long = left
	next
}
/^ +[^ -]/ { text = text " " trim($0); next }
END { emit() }
')

[ -n "$options" ] || {
	echo "$0: no options found in '$program --help'" >&2
	exit 1
}

name=$(printf '%s\n' "$help" | awk '/^Usage:/ { print $2; exit }')
[ -n "$name" ] || name=$(basename "$program")
func=_$(printf '%s' "$name" | tr -c 'A-Za-z0-9_\n' '_')

join='function add(x) { out = out (out == "" ? "" : sep) x }'
# Names of the options of one kind, separated by "|" (a case pattern), or nothing.
names_of() { # kind
	printf '%s\n' "$options" | awk -F "$us" -v k="$1" -v sep='|' "$join"'
		$4 == k { if ($1 != "") add($1); add($2) }
		END { print out }'
}

gen_bash() {
	all=$(printf '%s\n' "$options" | awk -F "$us" -v sep=' ' "$join"'
		{ if ($1 != "") add($1); add($2) }
		END { print out }')
	cat <<EOF
# bash completion for $name                                  -*- shell-script -*-
# Generated from '$name --help' by gen-completion.sh: do not edit.

$func()
{
	local cur=\${COMP_WORDS[COMP_CWORD]} prev="" prefix="" i
	(( COMP_CWORD > 0 )) && prev=\${COMP_WORDS[COMP_CWORD-1]}
	COMPREPLY=()
	# After "--" come the co-process command and its own arguments.
	for (( i = 1; i < COMP_CWORD; i++ )); do
		[[ \${COMP_WORDS[i]} == -- ]] || continue
		if (( i + 1 == COMP_CWORD )); then
			mapfile -t COMPREPLY < <(compgen -c -- "\$cur")
		else
			compopt -o filenames 2>/dev/null
			mapfile -t COMPREPLY < <(compgen -f -- "\$cur")
		fi
		return 0
	done
	# --opt=value: one word, or three when "=" breaks words (the default).
	if [[ \$cur == = ]]; then
		cur=""
	elif [[ \$prev == = ]] && (( COMP_CWORD > 1 )); then
		prev=\${COMP_WORDS[COMP_CWORD-2]}
	elif [[ \$cur == --*=* ]]; then
		prev=\${cur%%=*} prefix=\${cur%%=*}=
		cur=\${cur#*=}
	fi
	case \$prev in
EOF
	printf '%s\n' "$options" | while IFS=$us read -r short long arg kind choices desc; do
		[ "$kind" = choice ] || continue
		pattern=$long
		[ -n "$short" ] && pattern="$short|$long"
		printf '\t%s)\n\t\tmapfile -t COMPREPLY < <(compgen -P "$prefix" -W %s -- "$cur")\n\t\treturn 0 ;;\n' \
			"$pattern" "'$choices'"
	done
	files=$(names_of file) dirs=$(names_of dir) commands=$(names_of command) values=$(names_of value)
	[ -n "$files" ] && printf '\t%s)\n\t\tcompopt -o filenames 2>/dev/null\n\t\tmapfile -t COMPREPLY < <(compgen -P "$prefix" -f -- "$cur")\n\t\treturn 0 ;;\n' "$files"
	[ -n "$dirs" ] && printf '\t%s)\n\t\tcompopt -o filenames 2>/dev/null\n\t\tmapfile -t COMPREPLY < <(compgen -P "$prefix" -d -- "$cur")\n\t\treturn 0 ;;\n' "$dirs"
	[ -n "$commands" ] && printf '\t%s)\n\t\tmapfile -t COMPREPLY < <(compgen -P "$prefix" -c -- "$cur")\n\t\treturn 0 ;;\n' "$commands"
	[ -n "$values" ] && printf '\t%s)\n\t\treturn 0 ;; # a value nothing here can guess\n' "$values"
	cat <<EOF
	esac
	if [[ \$cur == -* ]]; then
		mapfile -t COMPREPLY < <(compgen -W '$all' -- "\$cur")
	fi
	return 0
}
complete -F $func $name
EOF
}

# zsh: a description within [...] and single quotes.
zsh_quote() {
	printf '%s' "$1" | sed -e 's/\([]:[\\]\)/\\\1/g' -e "s/'/'\\\\''/g"
}

gen_zsh() {
	cat <<EOF
#compdef $name
# zsh completion for $name.
# Generated from '$name --help' by gen-completion.sh: do not edit.

_arguments -s -S \\
EOF
	printf '%s\n' "$options" | while IFS=$us read -r short long arg kind choices desc; do
		d=$(zsh_quote "$desc")
		case $kind in
		flag) action="" ;;
		choice) action=":$arg:($choices)" ;;
		file) action=":$arg:_files" ;;
		dir) action=":$arg:_files -/" ;;
		command) action=":$arg:_command_names -e" ;;
		*) action=":$arg: " ;;
		esac
		sopt=$short lopt=$long
		if [ "$kind" != flag ]; then
			[ -n "$short" ] && sopt="$short+"
			lopt="$long="
		fi
		# A repeatable option may come again; the two names of another, once.
		case $desc in *repeatable*) many="*" ;; *) many="" ;; esac
		if [ -n "$short" ]; then
			excl="'($short $long)'"
			[ -z "$many" ] || excl="'*'"
			printf "\t%s{%s,%s}'[%s]%s' \\\\\n" "$excl" "$sopt" "$lopt" "$d" "$action"
		else
			printf "\t'%s%s[%s]%s' \\\\\n" "$many" "$lopt" "$d" "$action"
		fi
	done
	cat <<EOF
	'1:workspace id: ' \\
	'*::command:_normal'
EOF
}

"gen_$shell"
