#!/usr/bin/env python3
"""python-handler.py: a molecule-connect co-process in Python (standard library only).

Usage: molecule-connect "$WS" -- contrib/examples/python-handler.py

Reads one JSON message per line on stdin and writes one JSON reply per line on
stdout, flushed after each: "stats" counts the messages seen from the sender,
anything else is answered with its words reversed. A handler exception becomes
an error reply, so the sender hears about it and the bridge counts it.
"""

import json
import sys
from collections import Counter

seen = Counter()


def answer(msg):
    sender = msg.get("source_id") or "canvas"
    seen[sender] += 1
    text = (msg.get("text") or "").strip()
    if text == "stats":
        return "%d messages from %s so far" % (seen[sender], sender)
    return " ".join(reversed(text.split()))


def main():
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            msg = json.loads(line)
        except ValueError as e:
            print("python-handler: not JSON: %s" % e, file=sys.stderr, flush=True)
            continue
        if not isinstance(msg, dict) or not isinstance(msg.get("id"), str):
            print("python-handler: not a message line", file=sys.stderr, flush=True)
            continue
        try:
            reply = {"id": msg["id"], "text": answer(msg)}
        except Exception as e:  # the sender gets an error reply, the loop goes on
            reply = {"id": msg["id"], "error": "%s: %s" % (type(e).__name__, e)}
        sys.stdout.write(json.dumps(reply, separators=(",", ":")) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    try:
        main()
    except (KeyboardInterrupt, BrokenPipeError):
        pass
