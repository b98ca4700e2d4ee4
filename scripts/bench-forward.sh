#!/usr/bin/env bash
# Forwarding: drains N pending deliveries to a local stand-in SMS endpoint that
# answers 200 (`sms-audit dev fake-upstream`), and measures ingest with forwarding
# on against forwarding off in the same run.
# Needs wrk. Usage: scripts/bench-forward.sh [PENDING] [INGEST_SECONDS]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
pending=${1:-100000}
duration=${2:-15}
command -v wrk >/dev/null || { echo "needs wrk: apt-get install wrk" >&2; exit 1; }
[ -n "${BENCH_BIN:-}" ] || cargo build --release --locked --quiet --features dev
bin=${BENCH_BIN:-$root/target/release/sms-audit}
work=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill $p 2>/dev/null; done; rm -rf "$work"' EXIT

# shellcheck source=bench/lib.sh
. "$root/scripts/bench/lib.sh"

"$bin" dev fake-upstream 2>"$work/fake.log" &
pids+=($!)
fake=$(address_of "$work/fake.log")
export HUAWEICLOUD_SDK_AK=BENCHAK000000000000 HUAWEICLOUD_SDK_SK=bench-secret HUAWEICLOUD_SDK_PROJECT_ID=0123456789abcdef0123456789abcdef
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"

# 1. Drain: PENDING uploads of distinct tasks, each with a queued delivery.
"$bin" --db "$work/drain.db" dev seed --uploads "$pending" --tasks "$pending" --forward-to "$fake" 2>/dev/null
start=$(date +%s.%N)
"$bin" --db "$work/drain.db" serve --listen 127.0.0.1:0 --forward --upstream-endpoint "$fake" --forward-concurrency 64 2>"$work/drain.log" &
pids+=($!)
drain_pid=$!
address_of "$work/drain.log" >/dev/null
while :; do
  left=$(python3 -c "import sqlite3,sys; c=sqlite3.connect('file:'+sys.argv[1]+'?mode=ro', uri=True); print(c.execute(\"select count(*) from deliveries where state='pending'\").fetchone()[0])" "$work/drain.db")
  [ "$left" = 0 ] && break
  sleep 0.2
done
end=$(date +%s.%N)
kill -TERM $drain_pid; wait $drain_pid || true
delivered=$(python3 -c "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); print(c.execute(\"select count(*) from deliveries where state='delivered'\").fetchone()[0])" "$work/drain.db")
python3 -c "import sys; s=float(sys.argv[2])-float(sys.argv[1]); n=int(sys.argv[3]); print(f'drain: {n} deliveries delivered in {s:.2f} s = {n/s:,.0f}/s (from service start, 64 at a time)')" "$start" "$end" "$delivered"

# 2. A replay of one task's uploads: sent one at a time, oldest first (per-task order).
"$bin" --db "$work/replay.db" dev seed --uploads 2000 --tasks 1 2>/dev/null
start=$(date +%s.%N)
"$bin" --db "$work/replay.db" replay --to "$fake" --replay-target "$fake" --yes >"$work/replay.log" 2>&1
end=$(date +%s.%N)
python3 -c "import sys; s=float(sys.argv[2])-float(sys.argv[1]); print(f'replay: 2000 uploads of one task in {s:.2f} s = {2000/s:,.0f}/s (in order, one at a time)')" "$start" "$end"

# 3. Ingest with and without forwarding (durable, --sync full), same body and load.
export SMS_AUDIT_BENCH_BODY="$root/tests/fixtures/example-upload.json"
ingest() { # name, extra flags
  local name=$1; shift
  local tag="$name-${SMS_AUDIT_BENCH_TASKS:-1}-tasks-${SMS_AUDIT_BENCH_ROUND:-1}"
  local db="$work/$tag.db"
  export SMS_AUDIT_BENCH_TOKEN=$("$bin" --db "$db" credentials add --name bench --role agent --json |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
  "$bin" --db "$db" serve --listen 127.0.0.1:0 "$@" 2>"$work/$tag.log" &
  local pid=$!
  local address
  address=$(address_of "$work/$tag.log")
  wrk -t2 -c64 -d2s -s scripts/bench/upload.lua "http://${address#http://}" >/dev/null
  local line
  line=$(wrk -t2 -c64 -d"${duration}s" --latency -s scripts/bench/upload.lua "http://${address#http://}" | grep '^BENCH')
  kill -TERM $pid; wait $pid || true
  case $line in *" errors=0") ;; *) echo "$name: requests failed: $line" >&2; exit 1 ;; esac
  if [ "$name" = forwarding-on ]; then
    line="$line $(python3 -c "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); print(' '.join(f'{s}={n}' for s,n in c.execute('select state, count(*) from deliveries group by 1')))" "$db")"
  fi
  echo "$name $line"
}
rps() { echo "$1" | grep -o 'rps=[0-9.]*' | cut -d= -f2; }
compare() { # label
  # off, on, off, on: the machine's drift between runs hits both sides alike.
  local off1 on1 off2 on2
  off1=$(ingest forwarding-off)
  on1=$(ingest forwarding-on --forward --upstream-endpoint "$fake" --forward-concurrency 16)
  off2=$(SMS_AUDIT_BENCH_ROUND=2 ingest forwarding-off)
  on2=$(SMS_AUDIT_BENCH_ROUND=2 ingest forwarding-on --forward --upstream-endpoint "$fake" --forward-concurrency 16)
  printf '%s\n' "$off1" "$on1" "$off2" "$on2"
  python3 -c "import sys; o1,n1,o2,n2=map(float,sys.argv[2:]); print(f'{sys.argv[1]}: ingest off {(o1+o2)/2:,.0f}/s, on {(n1+n2)/2:,.0f}/s, on / off = {(n1+n2)/(o1+o2):.1%}')" \
    "$1" "$(rps "$off1")" "$(rps "$on1")" "$(rps "$off2")" "$(rps "$on2")"
}
# The ingest benchmark's load: one task, so latest wins leaves few uploads to send.
compare "one task"
# Uploads spread over 1,000 tasks: most uploads are sent, each one a second HTTP
# exchange on the same two cores (the stand-in SMS runs here too).
SMS_AUDIT_BENCH_TASKS=1000 compare "1,000 tasks"
