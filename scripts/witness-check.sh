#!/usr/bin/env bash
# `sms-audit witness serve` driven by an independent C2SP tlog-witness client
# (tests/interop/witness_client.py: the specs written in Python with
# `cryptography`): cosignatures on consistent checkpoints, verified by that
# code; a stale old size (409), a bad proof (422), an unknown log (404), another
# key (403); the monitoring read.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bin="$root/target/release/sms-audit"
[ -x "$bin" ] || cargo build --release --locked --quiet
# shellcheck source=interop/venv.sh
. "$root/scripts/interop/venv.sh"
work=$(mktemp -d)
pid=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

origin=log.example/witness-check
log_vkey=$("$SDK_PYTHON" tests/interop/witness_client.py keygen "$origin" "$work/log.key")
witness_vkey=$("$bin" witness key --db "$work/witness.db" --name auditor.example/witness)
"$bin" witness serve --db "$work/witness.db" --log "$origin=$log_vkey" --listen 127.0.0.1:0 2>"$work/witness.log" &
pid=$!
for _ in $(seq 1 100); do
  grep -q "witness listening on http://" "$work/witness.log" && break
  sleep 0.1
done
url=$(grep -o "witness listening on http://[0-9.:]*" "$work/witness.log" | head -1 | sed 's/witness listening on //')
[ -n "$url" ] || { cat "$work/witness.log"; echo "the witness did not start" >&2; exit 1; }
"$SDK_PYTHON" tests/interop/witness_client.py run "$work/log.key" "$url" "$witness_vkey"
"$bin" witness status --db "$work/witness.db"
"$bin" witness status --db "$work/witness.db" | grep -q "^$origin  size 40 " || { echo "witness status does not show size 40" >&2; exit 1; }
echo "witness check passed"
