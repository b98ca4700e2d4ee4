#!/usr/bin/env bash
# Reconciliation at scale: TASKS tasks with ROUNDS uploads each, seeded through the
# real writer and delivered to an instant stand-in SMS that holds exactly them
# (`sms-audit dev standin-sms`); then `reconcile --rate 100000` reads every task back:
# wall time, tasks per second, peak memory (/usr/bin/time). Then durable ingest
# (`wrk -t2 -c64`, the example upload) against `serve` alone and while a
# reconciliation of the same ledger runs beside it, in alternating rounds.
# Needs wrk. Usage: scripts/bench-reconcile.sh [TASKS] [ROUNDS] [SECONDS] [PAIRS]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
tasks=${1:-10000}
rounds=${2:-10}
seconds=${3:-10}
pairs=${4:-3}
command -v wrk >/dev/null || { echo "needs wrk: apt-get install wrk" >&2; exit 1; }
[ -n "${BENCH_BIN:-}" ] || cargo build --release --locked --quiet --features dev
bin=${BENCH_BIN:-$root/target/release/sms-audit}
# shellcheck source=bench/lib.sh
. "$root/scripts/bench/lib.sh"
work=$(mktemp -d)
pids=()
trap 'pkill -f "reconcile --rate 100000" 2>/dev/null; for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; sleep 0.5; rm -rf "$work"' EXIT
export HUAWEICLOUD_SDK_AK=BENCHAK HUAWEICLOUD_SDK_SK=bench-secret
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"

# The stand-in's address is known before it starts: the deliveries are queued to it.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
sms="http://127.0.0.1:$port"
db="$work/audit.db"
echo "seeding $((tasks * rounds)) uploads over $tasks tasks, each queued for $sms"
"$bin" --db "$db" dev seed --uploads $((tasks * rounds)) --tasks "$tasks" --forward-to "$sms" 2>/dev/null
"$bin" --db "$db" dev standin-sms --listen "127.0.0.1:$port" 2>"$work/sms.log" &
pids+=($!)
address_of "$work/sms.log" >/dev/null
"$bin" --db "$db" serve --listen 127.0.0.1:0 --forward --upstream-endpoint "$sms" 2>"$work/drain.log" &
drain=$!
pending() { python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute(\"SELECT COUNT(*) FROM deliveries WHERE state = 'pending'\").fetchone()[0])" "$db"; }
while [ "$(pending)" != 0 ]; do sleep 1; done
kill -TERM $drain; wait $drain || true
echo "every upload delivered to the stand-in"

reconcile() { # extra args
  /usr/bin/time -f "wall %e s, peak RSS %M KiB" "$bin" --db "$db" reconcile --rate 100000 \
    --upstream-endpoint "$sms" "$@" 2>"$work/time.log" >"$work/reconcile.out" || true
}
reconcile
tail -1 "$work/reconcile.out"
wall=$(grep -o 'wall [0-9.]*' "$work/time.log" | cut -d' ' -f2)
echo "reconcile: $(cat "$work/time.log" | tail -1); $(python3 -c "import sys; print(round(int(sys.argv[1]) / float(sys.argv[2])))" "$tasks" "$wall") tasks/s"

# Ingest beside a reconciliation: the same service, alone and with `reconcile`
# reading the whole ledger again, alternating.
export SMS_AUDIT_BENCH_BODY="$root/tests/fixtures/example-upload.json"
export SMS_AUDIT_BENCH_TOKEN
SMS_AUDIT_BENCH_TOKEN=$("$bin" --db "$db" credentials add --name "bench-$(date +%s%N)" --role agent --json |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
"$bin" --db "$db" serve --listen 127.0.0.1:0 2>"$work/serve.log" &
pids+=($!)
address=$(address_of "$work/serve.log")
wrk -t2 -c64 -d2s -s scripts/bench/upload.lua "$address" >/dev/null
checked() { python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('SELECT COUNT(*) FROM reconciliation_tasks').fetchone()[0])" "$db"; }
alone() {
  echo "alone $1 $(wrk -t2 -c64 -d"${seconds}s" --latency -s scripts/bench/upload.lua "$address" | grep '^BENCH')"
}
beside() {
  ( while :; do reconcile; done ) &
  local loop=$! before
  before=$(checked)
  sleep 1
  local result
  result=$(wrk -t2 -c64 -d"${seconds}s" --latency -s scripts/bench/upload.lua "$address" | grep '^BENCH')
  echo "beside $1 $result tasks_reconciled=$(( $(checked) - before ))"
  kill $loop 2>/dev/null || true; wait $loop 2>/dev/null || true
  pkill -f "reconcile --rate 100000 --upstream-endpoint $sms" 2>/dev/null || true
  sleep 1
}
# The machine warms up round by round: the order alternates within the pairs.
for pair in $(seq 1 "$pairs"); do
  if [ $((pair % 2)) = 1 ]; then alone "$pair"; beside "$pair"; else beside "$pair"; alone "$pair"; fi
done
