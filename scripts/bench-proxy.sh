#!/usr/bin/env bash
# The pass-through's cost: a GET (a task's results) and a PUT (a progress report) sent straight to a
# stand-in SMS on loopback (`sms-audit dev fake-upstream`, answering at once, then
# after 2 ms), and the same through
# `sms-audit serve --proxy` (agent token checked, re-signed with AK/SK, every call
# in the proxy log, --sync full), in alternating rounds of the same run.
# Latency: one connection, one request at a time (p50 added by sms-audit).
# Throughput: CONNECTIONS connections. Needs wrk.
# Usage: scripts/bench-proxy.sh [SECONDS] [CONNECTIONS] [ROUNDS]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
duration=${1:-10}
connections=${2:-32}
rounds=${3:-2}
command -v wrk >/dev/null || { echo "needs wrk: apt-get install wrk" >&2; exit 1; }
[ -n "${BENCH_BIN:-}" ] || cargo build --release --locked --quiet --features dev
bin=${BENCH_BIN:-$root/target/release/sms-audit}
work=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill $p 2>/dev/null; done; rm -rf "$work"' EXIT
# shellcheck source=bench/lib.sh
. "$root/scripts/bench/lib.sh"

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(uname -r)"
echo "wrk ${duration}s per measurement; latency with -c1, throughput with -t2 -c$connections; $rounds rounds"
task=137224b7-8d7c-4919-b33e-ed1597780000
measure() { # target method connections
  # GET reads the task's results (ShowConsistencyResult: hashed, and matched by
  # the passive reconciliation, the task having an upload); PUT reports progress.
  path=/v3/tasks/$task/progress; [ "$2" = GET ] && path=/v3/tasks/$task/consistency-result
  PROXY_METHOD=$2 PROXY_PATH=$path \
    wrk -t"$([ "$3" = 1 ] && echo 1 || echo 2)" -c"$3" -d"${duration}s" --latency -s scripts/bench/proxy.lua "$1" | grep '^BENCH'
}
# Two stand-ins: one that answers at once (every request costs only CPU, the
# worst case for a proxy on a machine it shares with the load and the stand-in),
# and one that answers after 2 ms (SMS across a network).
for delay in 0 2; do
  "$bin" dev fake-upstream --delay-ms "$delay" 2>"$work/fake-$delay.log" &
  pids+=($!)
  fake=$(address_of "$work/fake-$delay.log")
  db="$work/proxy-$delay.db"
  export SMS_AUDIT_BENCH_TOKEN=$("$bin" --db "$db" credentials add --name bench --role agent --json |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
  HUAWEICLOUD_SDK_AK=BENCHAK000000000000 HUAWEICLOUD_SDK_SK=bench-secret HUAWEICLOUD_SDK_PROJECT_ID=0123456789abcdef0123456789abcdef \
    "$bin" --db "$db" serve --listen 127.0.0.1:0 --proxy --upstream-endpoint "$fake" 2>"$work/proxy-$delay.log" &
  pids+=($!)
  proxy=$(address_of "$work/proxy-$delay.log")
  curl -sf -X POST -H "X-Auth-Token: $SMS_AUDIT_BENCH_TOKEN" -H "Content-Type: application/json" \
    --data-binary @tests/fixtures/example-upload.json "$proxy/v3/tasks/$task/consistency-result" >/dev/null
  echo "== stand-in answering after ${delay} ms"
  for method in GET PUT; do
    measure "$fake" $method 4 >/dev/null; measure "$proxy" $method 4 >/dev/null # warm-up
    for round in $(seq 1 "$rounds"); do
      for side in direct proxied; do
        target=$fake; [ $side = proxied ] && target=$proxy
        echo "$method $side round $round latency    $(measure "$target" $method 1)"
        echo "$method $side round $round throughput $(measure "$target" $method "$connections")"
      done
    done
  done | tee "$work/results-$delay.txt"
  python3 - "$work/results-$delay.txt" "$delay" <<'PY'
import re, sys, statistics
rows = {}
for line in open(sys.argv[1]):
    m = re.match(r"(\w+) (\w+) round \d+ (\w+) +BENCH rps=([\d.]+) p50_ms=([\d.]+) p99_ms=([\d.]+) errors=(\d+)", line)
    if m:
        method, side, kind, rps, p50, p99, errors = m.groups()
        assert errors == "0", line
        rows.setdefault((method, kind, side), []).append((float(rps), float(p50)))
for method in ("GET", "PUT"):
    d = statistics.median(p for _, p in rows[(method, "latency", "direct")])
    p = statistics.median(p for _, p in rows[(method, "latency", "proxied")])
    dr = statistics.median(r for r, _ in rows[(method, "throughput", "direct")])
    pr = statistics.median(r for r, _ in rows[(method, "throughput", "proxied")])
    print(f"stand-in +{sys.argv[2]} ms, {method}: p50 direct {d:.3f} ms, proxied {p:.3f} ms, added {p - d:.3f} ms; "
          f"throughput direct {dr:,.0f}/s, proxied {pr:,.0f}/s = {pr / dr:.0%} of direct")
PY
  calls=$(python3 -c "import sqlite3,sys; print(sqlite3.connect('file:'+sys.argv[1]+'?mode=ro', uri=True).execute('select count(*) from proxy_calls').fetchone()[0])" "$db")
  echo "proxy log: $calls calls recorded so far"
done
