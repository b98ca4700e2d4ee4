#!/usr/bin/env bash
# History pages on a large ledger: seeds UPLOADS uploads over TASKS tasks through
# the real writer (`sms-audit dev seed`, times spread over the 90 days before the
# seeding), then measures p50/p99 of the dashboard (with the fleet's trend), the
# dashboard as of a moment, the changes page between two moments, a directory
# across tasks, a task page (first and a deep page), an upload page, and the
# export rate.
# Needs wrk and curl. Usage: scripts/bench-pages.sh [UPLOADS] [TASKS] [SECONDS]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
uploads=${1:-1000000}
tasks=${2:-10000}
duration=${3:-10}
command -v wrk >/dev/null || { echo "needs wrk: apt-get install wrk" >&2; exit 1; }
[ -n "${BENCH_BIN:-}" ] || cargo build --release --locked --quiet --features dev
bin=${BENCH_BIN:-$root/target/release/sms-audit}
db="$root/target/bench/pages-$uploads-$tasks-90d.db"
mkdir -p "$(dirname "$db")"
if [ ! -f "$db" ]; then
  echo "seeding $uploads uploads over $tasks tasks..."
  start=$(date +%s.%N)
  "$bin" --db "$db.tmp" dev seed --uploads "$uploads" --tasks "$tasks" --span 90d 2>/dev/null
  for f in "$db.tmp"*; do mv "$f" "${f/.tmp/}"; done
  echo "seeded in $(python3 -c "import sys; print(round(float(sys.argv[2]) - float(sys.argv[1]), 1))" "$start" "$(date +%s.%N)") s"
fi
work=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; rm -rf "$work"' EXIT

token=$("$bin" --db "$db" credentials add --name "bench-$(date +%s%N)" --role auditor --json |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
"$bin" --db "$db" serve --listen 127.0.0.1:0 2>"$work/serve.log" &
pid=$!
address=
for _ in $(seq 1 100); do
  address=$(grep -o "listening on http://[0-9.:]*" "$work/serve.log" | head -1 | sed 's/listening on //') || true
  [ -n "$address" ] && break
  sleep 0.1
done
[ -n "$address" ] || { cat "$work/serve.log" >&2; exit 1; }
# The fleet's snapshots are made at the first start on this data (a few seconds).
for _ in $(seq 1 600); do
  grep -q "fleet snapshots up to date" "$work/serve.log" && break
  sleep 0.1
done

# shellcheck source=bench/lib.sh
. "$root/scripts/bench/lib.sh"
SMS_AUDIT_BENCH_COOKIE=$(login_cookie "$address" "$token" "$work")
export SMS_AUDIT_BENCH_COOKIE

task=task-$(printf '%05d' $((tasks / 2)))
# A deep page of that task: its oldest uploads.
deep=$(curl -s -H "Cookie: $SMS_AUDIT_BENCH_COOKIE" "$address/api/v1/tasks/$task/uploads?limit=1000" |
  python3 -c 'import json,sys; u=json.load(sys.stdin)["uploads"]; print(u[-1]["id"] + 1 if u else 1)')
# Moments inside the seeded history: its middle, and 7 and 30 days before its end.
read -r mid week_before month_before end first_s last_s < <(
  for id in 1 "$uploads"; do
    curl -s -H "Cookie: $SMS_AUDIT_BENCH_COOKIE" "$address/api/v1/uploads/$id"
  done | python3 -c '
import json, sys, datetime
docs = [json.loads(l) for l in sys.stdin.read().replace("}{", "}\n{").splitlines()]
t = [datetime.datetime.fromisoformat(d["received_at"].replace("Z", "+00:00")) for d in docs]
f = lambda d: d.strftime("%Y-%m-%dT%H:%M:%SZ")
day = datetime.timedelta(days=1)
print(f(t[0] + (t[1] - t[0]) / 2), f(t[1] - 7 * day), f(t[1] - 30 * day), f(t[1]), int(t[0].timestamp()), int(t[1].timestamp()))')
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); ledger: $uploads uploads, $tasks tasks"
echo "wrk -t1 -c4 -d${duration}s per page"
for page in "/" "/?sort=problems&dir=desc" "/?as_of=$mid" "/?as_of=$mid&sort=problems&dir=desc" \
  "/changes?from=$week_before&to=$end" "/changes?from=$mid&to=$month_before" "/directories?path=/etc" \
  "/api/v1/fleet/trend?since=$month_before&until=$end" "/tasks/$task" "/tasks/$task?before_id=$deep" "/uploads/$((uploads / 2))" "/compare?a=1&b=$uploads"; do
  status=$(curl -s -o /dev/null -w '%{http_code}' -H "Cookie: $SMS_AUDIT_BENCH_COOKIE" "$address$page")
  [ "$status" = 200 ] || { echo "$page answered $status" >&2; exit 1; }
  line=$(wrk -t1 -c4 -d"${duration}s" --latency -s scripts/bench/get.lua "$address$page" | grep '^BENCH')
  echo "page $page $line"
done
# The same pages at a new moment each request: nothing reused from a cache.
for kind in dashboard changes; do
  line=$(SMS_AUDIT_BENCH_FIRST=$first_s SMS_AUDIT_BENCH_LAST=$last_s SMS_AUDIT_BENCH_FLEET=$kind \
    wrk -t1 -c4 -d"${duration}s" --latency -s scripts/bench/fleet.lua "$address" | grep '^BENCH')
  echo "fleet $kind at random moments $line"
done
for format in csv jsonl; do
  start=$(date +%s.%N)
  bytes=$(curl -s -H "Cookie: $SMS_AUDIT_BENCH_COOKIE" "$address/api/v1/export?format=$format" | wc -c)
  end=$(date +%s.%N)
  python3 -c "import sys; s=float(sys.argv[2])-float(sys.argv[1]); n=int(sys.argv[3]); print(f'export {sys.argv[4]}: {n} uploads in {s:.2f} s = {n/s:,.0f} uploads/s ({int(sys.argv[5])/s/1e6:.0f} MB/s)')" "$start" "$end" "$uploads" "$format" "$bytes"
done
