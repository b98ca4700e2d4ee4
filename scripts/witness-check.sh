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
echo "== a service with two witnesses (two instances of witness serve), end to end"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
p1=$(free_port); p2=$(free_port)
w1=$("$bin" witness key --db "$work/w1.db" --name one.example/witness 2>/dev/null)
w2=$("$bin" witness key --db "$work/w2.db" --name two.example/witness 2>/dev/null)
service_origin=audit.example/witness-check
"$bin" serve --db "$work/s.db" --listen 127.0.0.1:0 --log-origin "$service_origin" --checkpoint-interval 200ms \
  --witness "http://127.0.0.1:$p1=$w1" --witness "http://127.0.0.1:$p2=$w2" 2>"$work/s.log" &
spid=$!
for _ in $(seq 1 100); do grep -q "listening on http://" "$work/s.log" && break; sleep 0.1; done
address=$(grep -o "listening on http://[0-9.:]*" "$work/s.log" | head -1 | sed 's/listening on //')
[ -n "$address" ] || { cat "$work/s.log"; exit 1; }
token=$(cat "$work/s.db.admin-token")
log_vkey=$("$bin" evidence vkey --db "$work/s.db" --log-origin "$service_origin")
"$bin" witness serve --db "$work/w1.db" --log "$service_origin=$log_vkey" --listen "127.0.0.1:$p1" 2>"$work/w1.log" &
wp1=$!
"$bin" witness serve --db "$work/w2.db" --log "$service_origin=$log_vkey" --listen "127.0.0.1:$p2" 2>"$work/w2.log" &
wp2=$!
trap 'kill $spid $wp1 $wp2 2>/dev/null || true; cleanup' EXIT
task=137224b7-8d7c-4919-b33e-ed1597780000
for _ in 1 2 3; do
  curl -sf -X POST "$address/v3/tasks/$task/consistency-result" -H "X-Auth-Token: $token" \
    -H "Content-Type: application/json" -d @tests/fixtures/example-upload.json >/dev/null
done
for _ in $(seq 1 60); do
  note=$(curl -s -H "X-Auth-Token: $token" "$address/api/v1/checkpoints/latest?witnessed=1" || true)
  [ "$(printf '%s' "$note" | grep -c $'^\u2014')" -ge 3 ] && printf '%s' "$note" | sed -n 2p | grep -qx 3 && break
  sleep 0.5
done
printf '%s\n' "$note"
[ "$(printf '%s' "$note" | grep -c $'^\u2014')" -eq 3 ] || { cat "$work/s.log"; echo "not cosigned by both witnesses" >&2; exit 1; }
curl -sf -H "X-Auth-Token: $token" "$address/api/v1/evidence?task_id=$task" -o "$work/bundle.json"
curl -sf -H "X-Auth-Token: $token" "$address/api/v1/uploads/2/tlog-proof" -o "$work/upload-2.tlog-proof"
stranger=$("$bin" witness key --db "$work/stranger.db" --name stranger.example/witness 2>/dev/null)
printf 'log %s\nwitness one %s\nwitness two %s\ngroup both all one two\nquorum both\n' "$log_vkey" "$w1" "$w2" > "$work/policy"
"$SDK_PYTHON" contrib/verify_evidence.py "$work/bundle.json" --vkey "$log_vkey" --witness "$w1" --witness "$w2"
"$SDK_PYTHON" contrib/verify_evidence.py "$work/bundle.json" --policy "$work/policy"
"$bin" evidence verify "$work/bundle.json" --policy "$work/policy"
"$bin" evidence verify "$work/upload-2.tlog-proof" --policy "$work/policy"
if "$SDK_PYTHON" contrib/verify_evidence.py "$work/bundle.json" --vkey "$log_vkey" --witness "$stranger"; then
  echo "the independent verifier accepted a quorum the bundle does not meet" >&2; exit 1
fi
if "$bin" evidence verify "$work/bundle.json" --vkey "$log_vkey" --witness "$stranger"; then
  echo "evidence verify accepted a quorum the bundle does not meet" >&2; exit 1
fi
echo "witness check passed"
