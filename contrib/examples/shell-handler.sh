#!/bin/sh
# shell-handler.sh: a molecule-connect co-process in plain sh (+ jq): answers
# "date" with the date, "uptime" with the uptime, and echoes anything else.
# Usage: molecule-connect "$WS" -- contrib/examples/shell-handler.sh
#
# Each message is one JSON line on stdin; each reply is one JSON line on stdout,
# naming the message's id. jq writes each reply whole and exits, so every
# line is flushed at once (a reply stuck in a buffer is a reply never sent).

while IFS= read -r line || [ -n "$line" ]; do
	id=$(printf '%s\n' "$line" | jq -r '.id') || continue
	text=$(printf '%s\n' "$line" | jq -r '.text // ""')
	case $text in
	date) answer=$(date -u '+%Y-%m-%dT%H:%M:%SZ') ;;
	uptime) answer=$(uptime) ;;
	*) answer="you said: $text" ;;
	esac
	jq -cn --arg id "$id" --arg text "$answer" '{id: $id, text: $text}'
done
