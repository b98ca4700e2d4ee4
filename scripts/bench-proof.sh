#!/usr/bin/env bash
# Inclusion proofs at scale: seeds UPLOADS uploads (`dev seed`, through the real
# writer, so the Merkle tree is built as in service), makes the first checkpoint,
# then asks for proofs of random uploads, one at a time and 8 at once.
# Needs wrk. Usage: scripts/bench-proof.sh [UPLOADS] [SECONDS]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
uploads=${1:-1000000}
duration=${2:-10}
command -v wrk >/dev/null || { echo "needs wrk: apt-get install wrk" >&2; exit 1; }
[ -n "${BENCH_BIN:-}" ] || cargo build --release --locked --quiet --features dev
bin=${BENCH_BIN:-$root/target/release/sms-audit}
work=${BENCH_WORK:-$(mktemp -d)}
pid=
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; [ -z "${BENCH_WORK:-}" ] && rm -rf "$work"' EXIT
# shellcheck source=bench/lib.sh
. "$root/scripts/bench/lib.sh"
db="$work/proof.db"
if [ ! -e "$db" ]; then
  start=$(date +%s.%N)
  "$bin" --db "$db" dev seed --uploads "$uploads" --tasks 10000 2>/dev/null
  python3 -c "import sys; s=float(sys.argv[2])-float(sys.argv[1]); print(f'seeded {int(sys.argv[3]):,} uploads (with the tree) in {s:.1f} s')" "$start" "$(date +%s.%N)" "$uploads"
fi
export SMS_AUDIT_BENCH_TOKEN=$("$bin" --db "$db" credentials add --name "auditor-$$" --role auditor --json |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
export SMS_AUDIT_BENCH_UPLOADS=$uploads
"$bin" --db "$db" serve --listen 127.0.0.1:0 --checkpoint-interval 1s 2>"$work/serve.log" &
pid=$!
address=$(address_of "$work/serve.log")
for _ in $(seq 1 100); do
  curl -sf -H "X-Auth-Token: $SMS_AUDIT_BENCH_TOKEN" "$address/api/v1/checkpoints/latest" >/dev/null && break
  sleep 0.1
done
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
for c in 1 8; do
  echo "proofs, $c at once: $(wrk -t1 -c$c -d"${duration}s" --latency -s scripts/bench/proof.lua "$address" | grep '^BENCH')"
done
