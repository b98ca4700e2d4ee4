#!/usr/bin/env bash
# Durable ingest (--sync full, wrk -t2 -c64, the example body, 2 s warm-up) of two
# prebuilt binaries in alternating rounds, so that both see the same machine
# state: A is the baseline, B the change (A_FLAGS and B_FLAGS are extra `serve`
# flags for each; A and B may be the same binary).
# Needs wrk. Usage: [A_FLAGS=…] B_FLAGS="--checkpoint-interval 1s" scripts/bench-ingest-ab.sh A_BIN B_BIN [ROUNDS] [SECONDS]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
a=$1; b=$2; rounds=${3:-5}; duration=${4:-10}
command -v wrk >/dev/null || { echo "needs wrk: apt-get install wrk" >&2; exit 1; }
export SMS_AUDIT_BENCH_BODY="$root/tests/fixtures/example-upload.json"
# shellcheck source=bench/lib.sh
. "$root/scripts/bench/lib.sh"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
for round in $(seq 1 "$rounds"); do
  for side in A B; do
    bin=$a; read -r -a flags <<<"${A_FLAGS:-}"
    [ $side = B ] && { bin=$b; read -r -a flags <<<"${B_FLAGS:-}"; }
    work=$(mktemp -d)
    export SMS_AUDIT_BENCH_TOKEN=$("$bin" --db "$work/d.db" credentials add --name bench --role agent --json |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
    "$bin" --db "$work/d.db" serve --listen 127.0.0.1:0 "${flags[@]}" 2>"$work/log" &
    pid=$!
    address=$(address_of "$work/log")
    wrk -t2 -c64 -d2s -s scripts/bench/upload.lua "$address" >/dev/null
    echo "$side round $round $(wrk -t2 -c64 -d"${duration}s" --latency -s scripts/bench/upload.lua "$address" | grep '^BENCH')"
    kill -TERM $pid; wait $pid || true
    rm -rf "$work"
  done
done
