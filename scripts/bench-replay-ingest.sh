#!/usr/bin/env bash
# Ingest while the service creates a web replay of REPLAY uploads: two wrk runs
# of SECONDS against a database seeded with REPLAY uploads, the second with
# `POST /api/v1/replays` (every upload) sent 3 s in. Prints both runs' p50/p99
# and how long creating the replay took. A stand-in SMS (dev fake-upstream)
# receives the replay.
# Needs wrk and curl. Usage: scripts/bench-replay-ingest.sh [REPLAY] [SECONDS]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
replay=${1:-100000}
duration=${2:-15}
command -v wrk >/dev/null || { echo "needs wrk: apt-get install wrk" >&2; exit 1; }
if [ -z "${SMS_AUDIT_BENCH_BIN:-}" ]; then
  cargo build --release --locked --quiet --features dev
fi
bin=${SMS_AUDIT_BENCH_BIN:-$root/target/release/sms-audit}
work=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill $p 2>/dev/null; done; rm -rf "$work"' EXIT

# shellcheck source=bench/lib.sh
. "$root/scripts/bench/lib.sh"

"$bin" dev fake-upstream 2>"$work/fake.log" &
pids+=($!)
fake=$(address_of "$work/fake.log")
export SMS_AUDIT_UPSTREAM_TOKEN=bench SMS_AUDIT_BENCH_BODY="$root/tests/fixtures/example-upload.json"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "wrk -t2 -c64 -d${duration}s; web replay of $replay uploads over 1,000 tasks"

run() { # name, with replay (yes/no)
  local db="$work/$1.db"
  "$bin" --db "$db" dev seed --uploads "$replay" --tasks 1000 2>/dev/null
  local token
  token=$("$bin" --db "$db" credentials add --name bench --role operator --json |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
  export SMS_AUDIT_BENCH_TOKEN=$token
  "$bin" --db "$db" serve --listen 127.0.0.1:0 --upstream-endpoint "$fake" 2>"$work/$1.log" &
  local pid=$!
  local address
  address=$(address_of "$work/$1.log")
  wrk -t2 -c64 -d"${duration}s" --latency -s scripts/bench/upload.lua "$address" >"$work/$1.wrk" &
  local wrk_pid=$!
  local created=""
  if [ "$2" = yes ]; then
    sleep 3
    local start end
    start=$(date +%s.%N)
    curl -s -o "$work/replay.json" -H "X-Auth-Token: $token" -H "Content-Type: application/json" \
      -d '{}' "$address/api/v1/replays"
    end=$(date +%s.%N)
    created=$(python3 -c "import json,sys; c=json.load(open(sys.argv[3]))['count']; print(f'| replay of {c} created in {float(sys.argv[2])-float(sys.argv[1]):.2f} s')" "$start" "$end" "$work/replay.json")
  fi
  wait $wrk_pid
  kill -TERM $pid; wait $pid || true
  echo "$1 $(grep '^BENCH' "$work/$1.wrk") $created"
}
run without-replay no
run with-replay yes
