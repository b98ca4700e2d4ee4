#!/usr/bin/env bash
# CPU per upload at saturation (issue 29, part 3): the process's CPU time (user +
# system, all threads, from /proc/PID/stat) spent while wrk -t2 -cCONNECTIONS
# posts the example upload for SECONDS, divided by the requests answered. The same
# for `dev bare-endpoint` (actix-web parsing the same body and answering {}), the
# service with --null-store, and durable (--sync full), in alternating rounds, so
# each ratio to the bare endpoint is of the same machine state. wrk's own CPU is
# not counted: the 2 cores it shares bound throughput, not this cost.
# With BASE_BIN set (a build of another commit), each round also runs that build's
# --null-store and durable ("base-null", "base-durable") against the same bare
# endpoint, the two builds taking turns going first. BENCH_KINDS="null" (or
# "durable") measures only that one (default "null durable"). BENCH_WARMUP sets
# the seconds of load before the measured ones (default 2; 30 takes a durable
# run's WAL past 1 GiB, where an older build started it over for the first time).
# Needs wrk. Usage: [BASE_BIN=old/sms-audit] [BENCH_KINDS=...] [BENCH_WARMUP=...] scripts/bench-ingest-cpu.sh [SECONDS] [ROUNDS] [CONNECTIONS]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
duration=${1:-10}
rounds=${2:-3}
connections=${3:-64}
command -v wrk >/dev/null || { echo "needs wrk: apt-get install wrk" >&2; exit 1; }
[ -n "${BENCH_BIN:-}" ] || cargo build --release --locked --quiet --features dev
bin=${BENCH_BIN:-$root/target/release/sms-audit}
work=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; rm -rf "$work"' EXIT
export SMS_AUDIT_BENCH_BODY="$root/tests/fixtures/example-upload.json"
# shellcheck source=bench/lib.sh
. "$root/scripts/bench/lib.sh"
ticks=$(getconf CLK_TCK)

cpu_ticks() { # pid: utime + stime of the whole process (fields 14 and 15)
  awk '{print $14 + $15}' "/proc/$1/stat"
}

run() { # name, extra serve flags...
  local name=$1; shift
  local db="$work/$name.db" bin=$bin
  [ "${name#base-}" != "$name" ] && bin=$BASE_BIN
  rm -f "$db"*
  export SMS_AUDIT_BENCH_TOKEN=$("$bin" --db "$db" credentials add --name bench --role agent --json |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
  if [ "$name" = bare ]; then
    "$bin" dev bare-endpoint --listen 127.0.0.1:0 2>"$work/$name.log" &
  else
    "$bin" --db "$db" serve --listen 127.0.0.1:0 "$@" 2>"$work/$name.log" &
  fi
  pid=$!
  local address
  address=$(address_of "$work/$name.log")
  wrk -t2 -c"$connections" -d"${BENCH_WARMUP:-2}s" -s scripts/bench/upload.lua "$address" >/dev/null # warm-up
  local before after line requests
  before=$(cpu_ticks $pid)
  line=$(wrk -t2 -c"$connections" -d"${duration}s" --latency -s scripts/bench/upload.lua "$address" | grep '^BENCH')
  after=$(cpu_ticks $pid)
  kill -TERM $pid; wait $pid || true; pid=
  requests=$(echo "$line" | grep -o 'requests=[0-9]*' | cut -d= -f2)
  python3 -c "import sys; t,r,hz=map(float,sys.argv[1:4]); print(f'{sys.argv[4]} cpu_us_per_request={t/hz*1e6/r:.1f} cpu_s={t/hz:.2f} ' + sys.argv[5])" \
    "$((after - before))" "$requests" "$ticks" "$name" "$line"
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(uname -r)"
echo "wrk -t2 -c$connections -d${duration}s after ${BENCH_WARMUP:-2} s of warm-up, body $(wc -c <"$SMS_AUDIT_BENCH_BODY") bytes, $rounds rounds"
kinds=${BENCH_KINDS:-null durable}
echo "kinds: $kinds"
flags_of() { # kind: its serve flags
  case $1 in null) echo --null-store ;; durable) echo --sync full ;; *) echo "unknown kind $1" >&2; exit 1 ;; esac
}
for round in $(seq 1 "$rounds"); do
  run bare
  for kind in $kinds; do
    # shellcheck disable=SC2046 # the flags are words
    if [ -z "${BASE_BIN:-}" ]; then
      run "$kind" $(flags_of "$kind")
    elif [ $((round % 2)) = 1 ]; then # the two builds take turns going first
      run "$kind" $(flags_of "$kind"); run "base-$kind" $(flags_of "$kind")
    else
      run "base-$kind" $(flags_of "$kind"); run "$kind" $(flags_of "$kind")
    fi
  done
done | tee "$work/results.txt"
python3 - "$work/results.txt" <<'PY'
import re, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    m = re.match(r"([\w-]+) cpu_us_per_request=([\d.]+) .*rps=([\d.]+) p50_ms=([\d.]+) p99_ms=([\d.]+).* errors=(\d+)", line)
    if m:
        name, cpu, rps, p50, p99, errors = m.groups()
        assert errors == "0", line
        rows.setdefault(name, []).append((float(cpu), float(rps), float(p99)))
bare = statistics.median(c for c, _, _ in rows["bare"])
for name in [n for n in ("bare", "base-null", "null", "base-durable", "durable") if n in rows]:
    cpu = statistics.median(c for c, _, _ in rows[name])
    rps = statistics.median(r for _, r, _ in rows[name])
    p99 = statistics.median(p for _, _, p in rows[name])
    # Each round's ratio is of one machine state: its median drifts less than
    # the ratio of the medians when the machine's speed drifts between rounds.
    per_round = statistics.median(c / b for (c, _, _), (b, _, _) in zip(rows[name], rows["bare"]))
    print(f"{name:8} median CPU {cpu:5.1f} µs/upload = {cpu / bare:.2f}× the bare endpoint "
          f"(median of each round's ratio {per_round:.2f}×); {rps:,.0f} uploads/s, p99 {p99:.1f} ms")
PY
