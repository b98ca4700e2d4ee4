#!/usr/bin/env bash
# Cold fleet reads, two builds side by side: the dashboard as of a new random
# moment each request, and changes between two new random moments, on the
# ledgers `bench-scale.sh` seeded (target/bench/scale-*.db), the builds taking
# turns for ROUNDS rounds (`wrk -t1 -c4`, SECONDS each). Each `serve` first makes
# any fleet snapshots the ledger lacks and is measured only then. Each line also
# gives the service's CPU time (user + system, /proc) per request.
# An older build cannot open a ledger a newer one migrated: BENCH_UNDO_SQL, if
# set, runs on each ledger before each turn (for example, to take back the
# newer build's migration when it only adds an index).
# Needs wrk, curl, python3 and sqlite3.
# Usage: scripts/bench-cold.sh A_BIN B_BIN [ROUNDS] [SECONDS]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
a=$1 b=$2 rounds=${3:-3} seconds=${4:-8}
# shellcheck source=bench/lib.sh
. "$root/scripts/bench/lib.sh"
work=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; rm -rf "$work"' EXIT
ledgers=(target/bench/scale-*.db)
[ -f "${ledgers[0]}" ] || { echo "no ledgers: run scripts/bench-scale.sh first" >&2; exit 1; }
cpu_ticks() { # pid -> the process's user + system time so far, in clock ticks
  awk '{print $14 + $15}' "/proc/$1/stat"
}
seconds_of() { # upload id -> its received_at, seconds since the epoch
  curl -s -H "X-Auth-Token: $token" "$address/api/v1/uploads/$1" | python3 -c \
    'import json,sys,datetime; print(int(datetime.datetime.fromisoformat(json.load(sys.stdin)["received_at"].replace("Z","+00:00")).timestamp()))'
}
for round in $(seq 1 "$rounds"); do
  for bin in "$a" "$b"; do
    for db in "${ledgers[@]}"; do
      [ -z "${BENCH_UNDO_SQL:-}" ] || sqlite3 "$db" "$BENCH_UNDO_SQL"
      "$bin" --db "$db" serve --listen 127.0.0.1:0 2>"$work/serve.log" &
      pid=$!
      address=$(address_of "$work/serve.log")
      until grep -q "fleet snapshots up to date" "$work/serve.log"; do sleep 0.2; done
      token=$("$bin" --db "$db" credentials add --name "cold-$(date +%s%N)" --role auditor --json |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
      last=$(sqlite3 "file:$db?mode=ro" "SELECT max(id) FROM uploads")
      export SMS_AUDIT_BENCH_COOKIE=$(login_cookie "$address" "$token" "$work")
      export SMS_AUDIT_BENCH_FIRST=$(seconds_of 1) SMS_AUDIT_BENCH_LAST=$(seconds_of "$last")
      for kind in dashboard changes; do
        cpu_before=$(cpu_ticks $pid)
        line=$(SMS_AUDIT_BENCH_FLEET=$kind wrk -t1 -c4 -d"${seconds}s" --latency \
          -s scripts/bench/fleet.lua "$address" | grep '^BENCH')
        requests=$(echo "$line" | sed 's/.*requests=\([0-9]*\).*/\1/')
        cpu_ms=$(( ($(cpu_ticks $pid) - cpu_before) * 1000 / $(getconf CLK_TCK) ))
        echo "round $round $(basename "$bin") $(basename "$db" .db) $kind $line" \
          "cpu_ms_per_request=$(python3 -c "print(round($cpu_ms / max($requests, 1), 2))")"
      done
      kill -TERM $pid
      wait $pid || true
      pid=
    done
  done
done
