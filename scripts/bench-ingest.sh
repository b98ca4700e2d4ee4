#!/usr/bin/env bash
# Durable uploads/s and p50/p99 at concurrency 64 with the example body, and in the
# same run: the ceiling (a bare actix-web endpoint that parses the same body and
# answers {}, `dev bare-endpoint`), the service with storage switched off (serve
# --null-store), and --sync normal; each as a share of the ceiling.
# Needs wrk (Debian package). Usage: scripts/bench-ingest.sh [SECONDS] [CONNECTIONS]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
duration=${1:-20}
connections=${2:-64}
command -v wrk >/dev/null || { echo "needs wrk: apt-get install wrk" >&2; exit 1; }
[ -n "${BENCH_BIN:-}" ] || cargo build --release --locked --quiet --features dev
bin=${BENCH_BIN:-$root/target/release/sms-audit}
work=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; rm -rf "$work"' EXIT
export SMS_AUDIT_BENCH_BODY="$root/tests/fixtures/example-upload.json"

run() { # name, extra serve flags...
  local name=$1; shift
  local db="$work/$name.db"
  export SMS_AUDIT_BENCH_TOKEN=$("$bin" --db "$db" credentials add --name bench --role agent --json |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
  if [ "$name" = ceiling ]; then
    # actix-web alone: the upload path, the body parsed as JSON, `{}` answered.
    "$bin" dev bare-endpoint --listen 127.0.0.1:0 2>"$work/$name.log" &
  else
    "$bin" --db "$db" serve --listen 127.0.0.1:0 "$@" 2>"$work/$name.log" &
  fi
  pid=$!
  local address=
  for _ in $(seq 1 100); do
    address=$(grep -o "listening on http://[0-9.:]*" "$work/$name.log" | head -1 | sed 's/listening on //') || true
    [ -n "$address" ] && break
    sleep 0.1
  done
  [ -n "$address" ] || { cat "$work/$name.log" >&2; exit 1; }
  wrk -t2 -c"$connections" -d2s -s scripts/bench/upload.lua "$address" >/dev/null # warm-up
  local line
  line=$(wrk -t2 -c"$connections" -d"${duration}s" --latency -s scripts/bench/upload.lua "$address" | grep '^BENCH')
  kill -TERM $pid; wait $pid || true; pid=
  local stored=
  [ "$name" = durable ] && stored=$("$bin" --db "$db" verify | head -1)
  echo "$name $line ${stored:+| $stored}"
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(uname -r)"
echo "wrk -t2 -c$connections -d${duration}s, body $(wc -c <"$SMS_AUDIT_BENCH_BODY") bytes"
ceiling=$(run ceiling)
null=$(run null --null-store)
durable=$(run durable --sync full)
normal=$(run durable-normal --sync normal)
echo "$ceiling"; echo "$null"; echo "$durable"; echo "$normal"
rps() { echo "$1" | grep -o 'rps=[0-9.]*' | cut -d= -f2; }
python3 -c "import sys; c,z,d,n=map(float,sys.argv[1:]); print(f'of the bare actix-web endpoint: --null-store {z/c:.1%}, durable (sync full) {d/c:.1%}, sync normal {n/c:.1%}')" \
  "$(rps "$ceiling")" "$(rps "$null")" "$(rps "$durable")" "$(rps "$normal")"
