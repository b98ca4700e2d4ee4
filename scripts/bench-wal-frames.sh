#!/usr/bin/env bash
# What a durable commit writes (issue 29, part 3): `serve --sync full
# --checkpoint-mode off` takes uploads from wrk -t2 -c64 for SECONDS, spread over
# TASKS tasks (each of which has uploaded once before, in a warm-up run), and is
# then SIGKILLed, so that every frame its commits wrote is still in the WAL. The
# WAL's frames are read back and each is named by the b-tree its page belongs
# to (SQLite's dbstat), per commit and per upload.
# Needs wrk. Usage: [BENCH_BIN=sms-audit] scripts/bench-wal-frames.sh [SECONDS] [TASKS]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
duration=${1:-3}
tasks=${2:-1}
command -v wrk >/dev/null || { echo "needs wrk: apt-get install wrk" >&2; exit 1; }
[ -n "${BENCH_BIN:-}" ] || cargo build --release --locked --quiet --features dev
bin=${BENCH_BIN:-$root/target/release/sms-audit}
work=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill -9 $pid 2>/dev/null; rm -rf "$work"' EXIT
# shellcheck source=bench/lib.sh
. "$root/scripts/bench/lib.sh"
export SMS_AUDIT_BENCH_BODY="$root/tests/fixtures/example-upload.json" SMS_AUDIT_BENCH_TASKS=$tasks
db="$work/frames.db"
export SMS_AUDIT_BENCH_TOKEN=$("$bin" --db "$db" credentials add --name bench --role agent --json |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')

# Every task uploads once first: the measured commits update tasks that exist.
"$bin" --db "$db" serve --listen 127.0.0.1:0 --sync full 2>"$work/warm.log" &
pid=$!
address=$(address_of "$work/warm.log")
wrk -t2 -c64 -d"$((tasks / 5000 + 2))s" -s scripts/bench/upload.lua "$address" >/dev/null
kill -TERM $pid; wait $pid || true; pid=
# Uploads so far, and whether every task has one (else the warm-up was too short).
before=$(python3 - "$db" "$tasks" <<'PY'
import sqlite3, sys
con = sqlite3.connect(sys.argv[1])
if con.execute("SELECT count(*) FROM tasks").fetchone()[0] < int(sys.argv[2]):
    sys.exit("the warm-up did not reach every task: run it longer")
print(con.execute("SELECT count(*) FROM uploads").fetchone()[0])
PY
)

"$bin" --db "$db" serve --listen 127.0.0.1:0 --sync full --checkpoint-mode off 2>"$work/serve.log" &
pid=$!
address=$(address_of "$work/serve.log")
wrk -t2 -c64 -d"${duration}s" -s scripts/bench/upload.lua "$address" | grep '^BENCH'
kill -9 $pid; wait $pid 2>/dev/null || true; pid=
# A copy to open (opening replays the WAL into it); the original WAL is read as written.
cp "$db" "$work/copy.db"; cp "$db-wal" "$work/copy.db-wal"
python3 - "$db-wal" "$work/copy.db" "$before" "$tasks" <<'PY'
import collections, sqlite3, struct, sys
wal, copy, before, tasks = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
data = open(wal, "rb").read()
page_size, salt = struct.unpack(">I", data[8:12])[0], data[16:24]
commits, frames, at = [], [], 32
while at + 24 + page_size <= len(data):
    page, size_after = struct.unpack(">II", data[at:at + 8])
    if data[at + 8:at + 16] != salt:
        break  # frames of an earlier WAL generation
    frames.append(page)
    if size_after:  # a commit frame ends its transaction
        commits.append(frames)
        frames = []
    at += 24 + page_size
con = sqlite3.connect(copy)
btree = {page: name for name, page in con.execute("SELECT name, pageno FROM dbstat")}
uploads = con.execute("SELECT count(*) FROM uploads").fetchone()[0] - before
written = sum(len(c) for c in commits)
if not commits or uploads <= 0:
    sys.exit("no commit in the WAL")
print(f"{tasks} task(s): {len(commits)} commits, {uploads} uploads ({uploads / len(commits):.1f} a commit), "
      f"{written} frames of {page_size} bytes: {written / len(commits):.1f} a commit, {written / uploads:.2f} an upload")
by_btree = collections.Counter(btree.get(p, "(other: freelist, new pages)") for c in commits for p in c)
for name, n in by_btree.most_common():
    print(f"  {n / len(commits):6.2f} a commit  {n / uploads:5.2f} an upload  {name}")
PY
