#!/usr/bin/env bash
# Durable ingest with witnesses against ingest without, in alternating rounds
# (wrk -t2 -c64, the example body, 2 s warm-up): B asks two witnesses after each
# checkpoint (--checkpoint-interval 1s): one `witness serve` that cosigns, and one
# that is down (nothing listens at its address). A has none. The figure to watch
# is B's throughput and p99 against A's: witnesses must never slow ingest.
# Needs wrk. Usage: scripts/bench-witness.sh BIN [ROUNDS] [SECONDS]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bin=$1; rounds=${2:-3}; duration=${3:-10}
command -v wrk >/dev/null || { echo "needs wrk: apt-get install wrk" >&2; exit 1; }
export SMS_AUDIT_BENCH_BODY="$root/tests/fixtures/example-upload.json"
# shellcheck source=bench/lib.sh
. "$root/scripts/bench/lib.sh"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
for round in $(seq 1 "$rounds"); do
  for side in A B; do
    work=$(mktemp -d)
    export SMS_AUDIT_BENCH_TOKEN=$("$bin" --db "$work/d.db" credentials add --name bench --role agent --json |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
    flags=(--checkpoint-interval 1s --log-origin bench.example/log --signing-key "$work/log.key")
    wpid=""
    if [ $side = B ]; then
      # The log's key first (serve creates it), then the witness that trusts it.
      "$bin" --db "$work/d.db" serve --listen 127.0.0.1:0 "${flags[@]}" 2>"$work/first.log" &
      first=$!; address_of "$work/first.log" >/dev/null; kill -TERM $first; wait $first || true
      rm -f "$work/log.key.signed"
      log_vkey=$("$bin" --db "$work/d.db" evidence vkey --signing-key "$work/log.key" --log-origin bench.example/log)
      up=$(free_port); down=$(free_port)
      w_up=$("$bin" witness key --db "$work/w.db" --name up.example/w 2>/dev/null)
      w_down=$("$bin" witness key --db "$work/down.db" --name down.example/w 2>/dev/null)
      "$bin" witness serve --db "$work/w.db" --log "bench.example/log=$log_vkey" --listen "127.0.0.1:$up" 2>"$work/w.log" &
      wpid=$!
      flags+=(--witness "http://127.0.0.1:$up=$w_up" --witness "http://127.0.0.1:$down=$w_down" --witness-quorum 1)
    fi
    "$bin" --db "$work/d.db" serve --listen 127.0.0.1:0 "${flags[@]}" 2>"$work/log" &
    pid=$!
    address=$(address_of "$work/log")
    wrk -t2 -c64 -d2s -s scripts/bench/upload.lua "$address" >/dev/null
    echo "$side round $round $(wrk -t2 -c64 -d"${duration}s" --latency -s scripts/bench/upload.lua "$address" | grep '^BENCH')"
    if [ $side = B ]; then
      cosigned=$("$bin" witness status --db "$work/w.db" --json 2>/dev/null || echo '(witness busy)')
      echo "  witness up: $cosigned"
    fi
    kill -TERM $pid; wait $pid || true
    [ -n "$wpid" ] && { kill -TERM $wpid; wait $wpid || true; }
    rm -rf "$work"
  done
done
