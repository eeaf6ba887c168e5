#!/bin/sh
# echo.sh: the smallest molecule-connect co-process: answers every message with
# "echo: <its text>". Usage: molecule-connect "$WS" -- contrib/examples/echo.sh
exec jq -c --unbuffered '{id, text: ("echo: " + .text)}'
