#!/usr/bin/env bash
# Growth: the same reads and commands on ledgers of different sizes, in one run.
# For each SIZE (UPLOADS:TASKS; by default 1,000,000 over 10,000 tasks and
# 10,000,000 over 100,000), seeds the ledger once (`dev seed`, 90 days of
# history, kept in target/bench/), then measures: the database's size and the
# shares of its indexes, fleet snapshots and Merkle tree; start to ready; every
# fleet-history and task page and API read, warm (p50/p99, the same URL again)
# and cold (a new moment each request); inclusion and consistency proofs; full
# tiles (first reads and cached); one task's evidence bundle; one day's export;
# RSS after the page load; full `verify` and `verify --since-checkpoint`; `backup`.
# Prints a table of the sizes side by side with the ratio of the last to the first.
# BENCH_BIN picks the build and BENCH_LABEL names its results: to measure a
# baseline in the same run, run the older build first (a newer one may migrate
# the databases beyond what an older one opens).
# Needs wrk, curl and python3. Usage: scripts/bench-scale.sh [SECONDS] [SIZE...]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
duration=${1:-10}
shift || true
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(1000000:10000 10000000:100000)
command -v wrk >/dev/null || { echo "needs wrk: apt-get install wrk" >&2; exit 1; }
[ -n "${BENCH_BIN:-}" ] || cargo build --release --locked --quiet --features dev
bin=${BENCH_BIN:-$root/target/release/sms-audit}
work=$(mktemp -d -p "$root/target")
pid=
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; rm -rf "$work"' EXIT
# shellcheck source=bench/lib.sh
. "$root/scripts/bench/lib.sh"
mkdir -p target/bench
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)$(grep -qw sha_ni /proc/cpuinfo && echo ', SHA extensions')"

now() { date +%s.%N; }
ms_since() { python3 -c "import sys; print(f'{(float(sys.argv[2]) - float(sys.argv[1])) * 1000:.1f}')" "$1" "$(now)"; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# One figure: NAME VALUE (appended to this size's results).
put() { printf '%s\t%s\n' "$1" "$2" | tee -a "$results"; }
# wrk's BENCH line of one URL (or Lua script) -> NAME.p50 and NAME.p99 (and
# NAME.failed: requests that failed or took over wrk's 2 s, if any).
load() { # name wrk-args...
  local name=$1 line
  shift
  line=$(wrk -t1 -c4 -d"${duration}s" --latency "$@" | grep '^BENCH')
  put "$name.p50_ms" "$(sed 's/.*p50_ms=\([0-9.]*\).*/\1/' <<<"$line")"
  put "$name.p99_ms" "$(sed 's/.*p99_ms=\([0-9.]*\).*/\1/' <<<"$line")"
  case $line in *errors=0* | *non200=0*) ;; *) put "$name.failed" "$(sed 's/.*\(errors\|non200\)=//' <<<"$line")" ;; esac
}
start_serve() {
  "$bin" --db "$db" serve --listen 127.0.0.1:0 --checkpoint-interval 1s 2>"$work/serve.log" &
  pid=$!
  address=$(address_of "$work/serve.log")
}
stop_serve() { kill -TERM $pid; wait $pid || true; pid=; }

for size in "${sizes[@]}"; do
  uploads=${size%%:*}
  tasks=${size##*:}
  db="$root/target/bench/scale-$uploads-$tasks.db"
  results="$root/target/bench/scale-$uploads-$tasks.${BENCH_LABEL:-this}.results"
  : >"$results"
  echo "== $uploads uploads over $tasks tasks"
  if [ ! -f "$db" ]; then
    start=$(now)
    "$bin" --db "$db.tmp" dev seed --uploads "$uploads" --tasks "$tasks" --span 90d 2>/dev/null
    for f in "$db.tmp"*; do mv "$f" "${f/.tmp/}"; done
    echo "seeded in $(ms_since "$start") ms"
  fi
  token=$("$bin" --db "$db" credentials add --name "scale-$(date +%s%N)" --role auditor --json |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
  export SMS_AUDIT_BENCH_TOKEN=$token SMS_AUDIT_BENCH_UPLOADS=$uploads
  # The first start on this data makes its fleet snapshots and a checkpoint.
  start_serve
  until grep -q "fleet snapshots up to date" "$work/serve.log"; do sleep 0.2; done
  # (The checkpoint is a C2SP note: origin, tree size, root hash, ...)
  until [ "$(curl -s -H "X-Auth-Token: $token" "$address/api/v1/checkpoints/latest" | sed -n 2p)" = "$uploads" ]; do
    sleep 0.2
  done
  stop_serve

  python3 - "$db" <<'EOF' | while read -r k v; do put "$k" "$v"; done
import sqlite3, sys
c = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
indexes = {r[0] for r in c.execute("select name from sqlite_schema where type = 'index'")}
sizes = dict(c.execute("select name, sum(pgsize) from dbstat group by name"))
total = sum(sizes.values())
share = lambda names: sum(v for k, v in sizes.items() if k in names) / total * 100
print("db.bytes", total)
print("db.indexes_pct", f"{share(indexes):.1f}")
print("db.fleet_snapshots_pct", f"{share({'fleet_snapshots'}):.1f}")
print("db.tree_pct", f"{share({'tree_hashes'}):.1f}")
EOF

  for _ in 1 2 3; do
    start=$(now)
    "$bin" --db "$db" serve --listen 127.0.0.1:0 2>"$work/serve.log" &
    pid=$!
    address=$(address_of "$work/serve.log")
    until curl -sf "$address/readyz" >/dev/null; do sleep 0.005; done
    ms_since "$start"
    stop_serve
  done | median | { read -r v; put start_to_ready_ms "$v"; }

  start_serve
  SMS_AUDIT_BENCH_COOKIE=$(login_cookie "$address" "$token" "$work")
  export SMS_AUDIT_BENCH_COOKIE
  task=task-$(printf '%05d' $((tasks / 2)))
  api() { curl -sf -H "X-Auth-Token: $token" "$address$1"; }
  # The task's oldest and newest uploads, and moments inside the history.
  read -r oldest newest < <(api "/api/v1/tasks/$task/uploads?limit=1000" |
    python3 -c 'import json,sys; u=json.load(sys.stdin)["uploads"]; print(u[-1]["id"], u[0]["id"])')
  read -r mid week_before end first_s last_s < <(
    for id in 1 "$uploads"; do api "/api/v1/uploads/$id"; echo; done | python3 -c '
import json, sys, datetime
t = [datetime.datetime.fromisoformat(json.loads(l)["received_at"].replace("Z", "+00:00")) for l in sys.stdin if l.strip()]
f = lambda d: d.strftime("%Y-%m-%dT%H:%M:%SZ")
print(f(t[0] + (t[1] - t[0]) / 2), f(t[1] - datetime.timedelta(days=7)), f(t[1]), int(t[0].timestamp()), int(t[1].timestamp()))')
  deep=$((oldest + 1))
  for entry in \
    "page.dashboard /" "page.dashboard_problems /?sort=problems&dir=desc" "page.dashboard_as_of /?as_of=$mid" \
    "page.changes_week /changes?from=$week_before&to=$end" "page.directory /directories?path=/etc" \
    "page.task /tasks/$task" "page.task_deep /tasks/$task?before_id=$deep" "page.upload /uploads/$newest" \
    "page.compare /compare?a=$oldest&b=$newest" \
    "api.tasks /api/v1/tasks?limit=100" "api.tasks_as_of /api/v1/tasks?limit=100&as_of=$mid" \
    "api.changes_week /api/v1/changes?from=$week_before&to=$end" \
    "api.trend_90d /api/v1/fleet/trend?since=$(date -u -d "@$first_s" +%FT%TZ)&until=$end" \
    "api.directory /api/v1/directories?path=/etc" "api.task_uploads /api/v1/tasks/$task/uploads?limit=100" \
    "api.upload /api/v1/uploads/$newest" "api.compare /api/v1/compare?a=$oldest&b=$newest"; do
    name=${entry%% *}
    path=${entry#* }
    status=$(curl -s -o /dev/null -w '%{http_code}' -H "Cookie: $SMS_AUDIT_BENCH_COOKIE" "$address$path")
    [ "$status" = 200 ] || { echo "$path answered $status" >&2; exit 1; }
    load "$name" -s scripts/bench/get.lua "$address$path"
  done
  for kind in dashboard changes api-tasks api-changes; do
    SMS_AUDIT_BENCH_FIRST=$first_s SMS_AUDIT_BENCH_LAST=$last_s SMS_AUDIT_BENCH_FLEET=$kind \
      load "cold.$kind" -s scripts/bench/fleet.lua "$address"
  done
  SMS_AUDIT_BENCH_PROOF=inclusion load proof.inclusion -s scripts/bench/proof.lua "$address"
  SMS_AUDIT_BENCH_PROOF=consistency load proof.consistency -s scripts/bench/proof.lua "$address"
  # Full tiles: each read for the first time (at most once each, at any size),
  # then a few read again and again (from the cache).
  for mode in first cached; do
    SMS_AUDIT_BENCH_TILES=$((uploads / 256)) SMS_AUDIT_BENCH_TILE_MODE=$mode \
      load "tile.$mode" -s scripts/bench/tile.lua "$address"
  done
  # Peak resident memory counts the database's pages that SQLite maps (shared,
  # given back under pressure); the heap is what the process itself holds.
  put rss_peak_with_mapped_db_mib "$(awk '/VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/$pid/status")"
  put rss_heap_after_pages_mib "$(awk '/RssAnon/ {printf "%.0f", $2 / 1024}' "/proc/$pid/status")"
  for _ in 1 2 3; do
    start=$(now)
    api "/api/v1/evidence?task_id=$task" >/dev/null
    ms_since "$start"
  done | median | { read -r v; put evidence_bundle_ms "$v"; }
  day=$(date -u -d "@$((last_s - 86400))" +%F)
  start=$(now)
  exported=$(api "/api/v1/export?format=jsonl&since=$day&until=$(date -u -d "$day + 1 day" +%F)" | wc -l)
  put export_one_day_ms "$(ms_since "$start")"
  put export_one_day_uploads "$exported"
  stop_serve

  start=$(now)
  "$bin" --db "$db" verify >/dev/null 2>&1
  elapsed=$(ms_since "$start")
  put verify_full_ms "$elapsed"
  put verify_full_entries_per_s "$(python3 -c "print(round($uploads / ($elapsed / 1000)))")"
  start=$(now)
  "$bin" --db "$db" verify --since-checkpoint >/dev/null 2>&1
  put verify_since_checkpoint_ms "$(ms_since "$start")"
  rm -f "$work/backup.db"
  start=$(now)
  "$bin" --db "$db" backup --to "$work/backup.db" >/dev/null 2>&1
  elapsed=$(ms_since "$start")
  put backup_ms "$elapsed"
  put backup_mb_per_s "$(python3 -c "import os; print(round(os.path.getsize('$work/backup.db') / 1e6 / ($elapsed / 1000)))")"
  rm -f "$work/backup.db"*
done

# The sizes side by side, and the last over the first.
python3 - "${BENCH_LABEL:-this}" "${sizes[@]}" <<'EOF'
import sys
cols = []
for size in sys.argv[2:]:
    u, t = size.split(":")
    with open(f"target/bench/scale-{u}-{t}.{sys.argv[1]}.results") as f:
        cols.append((f"{int(u):,} / {int(t):,}", dict(l.rstrip("\n").split("\t") for l in f if "\t" in l)))
print("\n| figure | " + " | ".join(c[0] for c in cols) + " | ratio |")
print("|---|" + "---:|" * (len(cols) + 1))
for key in cols[0][1]:
    vals = [c[1].get(key, "") for c in cols]
    try:
        ratio = f"{float(vals[-1]) / float(vals[0]):.2f}"
    except (ValueError, ZeroDivisionError):
        ratio = ""
    print(f"| {key} | " + " | ".join(vals) + f" | {ratio} |")
EOF
