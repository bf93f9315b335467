#!/usr/bin/env bash
# The cost of --reconnect when nothing fails (issue 19): one musclefs
# (TLS listener, store on disk), two `muscle relay` processes, one plain and
# one with --reconnect (resumable stream + restore book), `muscle bench`
# through each relay's unix socket, same settings, rounds alternating which
# goes first. A measurement, never a gate.
#
# usage: tools/bench/relay_reconnect.sh BUILD_DIR [ROUNDS] [SIZE]
set -euo pipefail
build=$(cd "$1" && pwd)
rounds=${2:-3}
size=${3:-268435456}
work=$(mktemp -d /tmp/relay-bench-XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
key=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
echo "bench:$key" > "$work/keys"; chmod 600 "$work/keys"
"$build/musclefs" serve --base "$work/srv" --store "$work/store.db" --keys "$work/keys" \
  --listen "tls://127.0.0.1:$port" 2>"$work/server.log" &
for i in $(seq 100); do grep -q listening "$work/server.log" && break; sleep 0.1; done
"$build/muscle" relay --connect "127.0.0.1:$port" --identity bench --keys "$work/keys" \
  --listen "unix:$work/plain.sock" --base "$work/rp" 2>"$work/plain.log" &
"$build/muscle" relay --connect "127.0.0.1:$port" --identity bench --keys "$work/keys" \
  --listen "unix:$work/reconnect.sock" --reconnect --base "$work/rr" 2>"$work/reconnect.log" &
for s in plain reconnect; do
  for i in $(seq 100); do [ -S "$work/$s.sock" ] && break; sleep 0.1; done
done
run() {  # relay round
  "$build/muscle" bench --target "unix:$work/$1.sock" --workload getattr,smallfiles,seqwrite,seqread \
    --seconds 3 --size "$size" --msize 524288 --inflight 4 --dir "b-$1-$2" --json --quiet
}
for r in $(seq "$rounds"); do
  if [ $((r % 2)) = 1 ]; then order="plain reconnect"; else order="reconnect plain"; fi
  for s in $order; do run "$s" "$r" | sed "s/^/$s $r /"; done
done | python3 -c '
import sys, json, statistics
res = {}
for line in sys.stdin:
    relay, rnd, js = line.split(" ", 2)
    o = json.loads(js)
    w = o["workload"] + " " + o["metric"]; v = o["value"]
    res.setdefault(w, {}).setdefault(relay, []).append(v)
print("| workload | plain | --reconnect | median ratio |")
print("|---|---|---|---|")
for w, d in res.items():
    p, r = d.get("plain", []), d.get("reconnect", [])
    ratio = statistics.median(r) / statistics.median(p) if p and r else float("nan")
    f = lambda xs: ", ".join("%.0f" % x for x in xs)
    print("| %s | %s | %s | %.2f |" % (w, f(p), f(r), ratio))
'
