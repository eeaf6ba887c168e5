#!/usr/bin/env bash
# Builds molecule-connect and runs it end to end on this machine: the fake
# platform on loopback with a few queued messages (from a peer agent and from
# the canvas), molecule-connect bridging them to a small echo handler.
# Shows each message as the handler saw it, the line it writes at the end of its
# input (it is given time to finish), and each reply as the platform got it.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$top/build-demo}

if [ ! -x "$build/molecule-connect" ] || [ ! -x "$build/tests/fake-platform/fake-platform" ]; then
	"$top/.ci/deps"
	[ -x "$top/configure" ] || (cd "$top" && autoreconf -fi >/dev/null)
	mkdir -p "$build"
	(cd "$build" && "$top/configure" >/dev/null && make -j2 molecule-connect tests/fake-platform/fake-platform >/dev/null)
fi

work=$(mktemp -d)
fake_pid=""
cleanup() { [ -n "$fake_pid" ] && kill "$fake_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

"$build/tests/fake-platform/fake-platform" --port-file "$work/port" --rate-limit 0 </dev/null >/dev/null 2>"$work/fake.log" &
fake_pid=$!
for _ in $(seq 100); do [ -s "$work/port" ] && break; sleep 0.05; done
url="http://127.0.0.1:$(cat "$work/port")"
ctl() { curl -sS --fail -X POST -H 'Content-Type: application/json' --data-binary "$2" "$url$1"; }

ws=$(ctl /_control/workspaces '{}')
ws_id=$(jq -r .id <<<"$ws")
peer_id=$(jq -r .id <<<"$(ctl /_control/workspaces '{}')")
ctl /_control/messages "{\"workspace_id\":\"$ws_id\",\"from\":\"$peer_id\",\"count\":3,\"text\":\"question {n} from a peer agent\",\"context_id\":\"demo-context\"}" >/dev/null
ctl /_control/messages "{\"workspace_id\":\"$ws_id\",\"text\":\"hello from a person in the canvas\"}" >/dev/null

echo "== platform $url, workspace $ws_id; 4 messages queued"
echo "== molecule-connect --once $ws_id -- (echo handler); messages as the handler sees them:"
# The handler: a co-process that shows each message it reads on the terminal
# (its stderr), then answers it with its text echoed back; at the end of its
# input it says how many it answered. --once ends its input once every reply
# is posted and waits for it to exit, so that last line shows too.
handler='n=0
while IFS= read -r line; do
	printf "%s\n" "$line" | jq -c "{id, origin, source_id, context_id, text}" >&2
	printf "%s\n" "$line" | jq -c "{id, text: (\"echo: \" + .text)}"
	n=$((n + 1))
done
echo "handler: end of input at $(date +%T) after $n messages, exiting" >&2'
MOLECULE_WORKSPACE_TOKEN=$(jq -r .token <<<"$ws") \
	"$build/molecule-connect" --api-url "$url" --state-dir "$work/state" --once \
	"$ws_id" -- bash -c "$handler"

echo "== replies the platform received:"
curl -sS "$url/_control/posts?kind=a2a" | jq -r '.[] | "  to peer \(.path | split("/")[2]): \(.body.params.message.parts[0].text)  (context \(.body.params.message.contextId))"'
curl -sS "$url/_control/posts?kind=notify" | jq -r '.[] | "  to the canvas: \(.body.message)"'
echo "== saved cursor: $(jq -c '{last_since_id, done_ids, replies}' "$work/state/$ws_id.json")"
