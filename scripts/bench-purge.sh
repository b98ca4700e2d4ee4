#!/usr/bin/env bash
# What a purge costs ingest: seeds UPLOADS uploads spread over the last 90 days,
# then, each for SECONDS under wrk load (CONNECTIONS connections), measures
# uploads/s, p99 and the slowest upload: with no purge, with `serve --retention 45`
# purging the older half through the writer from the start, and with
# `sms-audit purge` doing the same from the command line next to the service.
# Each purge's steps are bounded by --purge-step (STEP_MS, milliseconds, default 50).
# Needs wrk. Usage: scripts/bench-purge.sh [UPLOADS] [SECONDS] [CONNECTIONS]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
uploads=${1:-1000000}
duration=${2:-30}
connections=${3:-16}
step_ms=${STEP_MS:-50}
command -v wrk >/dev/null || { echo "needs wrk: apt-get install wrk" >&2; exit 1; }
cargo build --release --locked --quiet --features dev
bin="$root/target/release/sms-audit"
work=${BENCH_WORK:-$(mktemp -d)}
pid=
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; [ -z "${BENCH_WORK:-}" ] && rm -rf "$work"' EXIT
# shellcheck source=bench/lib.sh
. "$root/scripts/bench/lib.sh"
export SMS_AUDIT_BENCH_BODY="$root/tests/fixtures/example-upload.json"
seeded="$work/seeded-$uploads.db"
if [ ! -e "$seeded" ]; then
  "$bin" --db "$seeded" dev seed --uploads "$uploads" --tasks 10000 --span 90d 2>/dev/null
fi
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "database: $(du -m "$seeded" | cut -f1) MB, $uploads uploads over 90 days; wrk -t2 -c$connections -d${duration}s; --purge-step ${step_ms}ms"

run() { # name, extra serve flags...
  local name=$1; shift
  local db="$work/$name.db"
  rm -f "$db" "$db"-wal "$db"-shm
  cp "$seeded" "$db"
  export SMS_AUDIT_BENCH_TOKEN=$("$bin" --db "$db" credentials add --name "bench-$name" --role agent --json |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
  RUST_LOG=info "$bin" --db "$db" serve --listen 127.0.0.1:0 --purge-step "${step_ms}ms" "$@" 2>"$work/$name.log" &
  pid=$!
  local address cli=
  address=$(address_of "$work/$name.log")
  if [ "$name" = command-line ]; then
    local before
    before=$(python3 -c 'import datetime; print((datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=45)).strftime("%Y-%m-%dT%H:%M:%SZ"))')
    ( start=$(date +%s.%N); "$bin" --db "$db" purge --before "$before" --yes --step "${step_ms}ms" >"$work/purge.out"
      echo "took $(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$start" "$(date +%s.%N)") s" >>"$work/purge.out" ) &
    cli=$!
  fi
  local line
  line=$(wrk -t2 -c"$connections" -d"${duration}s" --latency -s scripts/bench/upload.lua "$address" | grep '^BENCH')
  [ -n "$cli" ] && wait "$cli"
  kill -TERM $pid; wait $pid || true; pid=
  local purged=""
  case $name in
    retention) purged=$(grep -o 'retention: purged[^"]*' "$work/$name.log" | head -1; grep -o 'uploads=[0-9]*' "$work/$name.log" | head -1) ;;
    command-line) purged=$(head -1 "$work/purge.out" | cut -c1-60; tail -1 "$work/purge.out") ;;
  esac
  echo "$name $line ${purged:+| $(echo $purged)}"
  echo "  $("$bin" --db "$db" verify 2>/dev/null | head -2 | tr '\n' ' ')"
  echo "  database file $(du -m "$db" | cut -f1) MB"
  if [ "$name" = retention ]; then
    local start
    start=$(date +%s.%N)
    "$bin" --db "$db" backup --compact --to "$work/compact.db" >/dev/null
    echo "  backup --compact: $(du -m "$work/compact.db" | cut -f1) MB in $(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$start" "$(date +%s.%N)") s (with its ledger check)"
    rm -f "$work/compact.db"
  fi
}
run no-purge
run retention --retention 45
run command-line
