#!/usr/bin/env bash
# Full tiles (`/tile/0/<N>`, random over the whole tree) on a seeded ledger, one
# request at a time and 8 at once, for two prebuilt binaries in alternating
# rounds on the same database: A the baseline, B the change.
# Needs wrk. Usage: scripts/bench-tiles.sh A_BIN B_BIN [UPLOADS] [SECONDS] [ROUNDS]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
a=$1; b=$2; uploads=${3:-1000000}; duration=${4:-10}; rounds=${5:-2}
command -v wrk >/dev/null || { echo "needs wrk: apt-get install wrk" >&2; exit 1; }
work=${BENCH_WORK:-$(mktemp -d)}
pid=
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; [ -z "${BENCH_WORK:-}" ] && rm -rf "$work"' EXIT
# shellcheck source=bench/lib.sh
. "$root/scripts/bench/lib.sh"
# Seeded by A; B gets a copy of its own (B may migrate it to a newer schema).
db="$work/tiles.db"
if [ ! -e "$db" ]; then
  "$a" --db "$db" dev seed --uploads "$uploads" --tasks 10000 2>/dev/null
  export SMS_AUDIT_BENCH_TOKEN=$("$a" --db "$db" credentials add --name auditor --role auditor --json |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
  echo "$SMS_AUDIT_BENCH_TOKEN" >"$work/token"
  cp "$db" "$work/tiles-b.db"
fi
export SMS_AUDIT_BENCH_TOKEN=$(cat "$work/token")
export SMS_AUDIT_BENCH_TILES=$((uploads / 256))
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $uploads uploads, $SMS_AUDIT_BENCH_TILES full tiles at level 0"
for round in $(seq 1 "$rounds"); do
  for side in A B; do
    bin=$a; side_db=$db; [ $side = B ] && { bin=$b; side_db=$work/tiles-b.db; }
    "$bin" --db "$side_db" serve --listen 127.0.0.1:0 2>"$work/serve.log" &
    pid=$!
    address=$(address_of "$work/serve.log")
    for c in 1 8; do
      echo "$side round $round, $c at once: $(wrk -t1 -c$c -d"${duration}s" --latency -s scripts/bench/tile.lua "$address" | grep '^BENCH')"
    done
    kill -TERM $pid; wait $pid || true; pid=
  done
done
