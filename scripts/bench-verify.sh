#!/usr/bin/env bash
# Full `verify` at scale: seeds UPLOADS uploads over 10,000 tasks (`dev seed`,
# through the real writer, so the tree is built as in service), lets `serve`
# make a checkpoint of them, then times `verify` ROUNDS times. With BASE_BIN set
# (a build of another commit), the two alternate, each run timing both against
# the same machine state. Prints each run and the median entries/s.
# Usage: [BASE_BIN=old/sms-audit] scripts/bench-verify.sh [UPLOADS] [ROUNDS]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
uploads=${1:-1000000}
rounds=${2:-5}
[ -n "${BENCH_BIN:-}" ] || cargo build --release --locked --quiet --features dev
bin=${BENCH_BIN:-$root/target/release/sms-audit}
work=${BENCH_WORK:-$(mktemp -d)}
pid=
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; [ -z "${BENCH_WORK:-}" ] && rm -rf "$work"' EXIT
# shellcheck source=bench/lib.sh
. "$root/scripts/bench/lib.sh"
db="$work/verify.db"
if [ ! -e "$db" ]; then
  "$bin" --db "$db" dev seed --uploads "$uploads" --tasks 10000 2>/dev/null
  "$bin" --db "$db" serve --listen 127.0.0.1:0 --checkpoint-interval 1s 2>"$work/serve.log" &
  pid=$!
  address_of "$work/serve.log" >/dev/null
  kill -TERM $pid; wait $pid || true; pid= # the stop makes the checkpoint
fi
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "database: $(du -h "$db" | cut -f1), $uploads uploads"
run() { # label binary
  local start end
  start=$(date +%s.%N)
  "$2" --db "$db" verify >"$work/out" 2>/dev/null || { cat "$work/out" >&2; exit 1; }
  end=$(date +%s.%N)
  python3 -c "import sys; s=float(sys.argv[2])-float(sys.argv[1]); print(f'{sys.argv[3]} {s:.2f} s {int(sys.argv[4])/s:,.0f} entries/s')" \
    "$start" "$end" "$1" "$uploads" | tee -a "$work/times"
}
: >"$work/times"
for _ in $(seq 1 "$rounds"); do
  [ -n "${BASE_BIN:-}" ] && run base "$BASE_BIN"
  run this "$bin"
done
for label in base this; do
  grep "^$label " "$work/times" | sort -k2n | awk -v l="$label" '{a[NR]=$0} END {if (NR) print "median " a[int((NR+1)/2)]}'
done
