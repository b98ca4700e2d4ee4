#!/usr/bin/env bash
# Uploads through the official Huawei Cloud Python SDK (huaweicloudsdksms from PyPI)
# against the built sms-audit binary: accepted with the right AK/SK, 401 with a
# wrong one, and the stored record says so.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# shellcheck source=interop/venv.sh
. "$root/scripts/interop/venv.sh"

cargo build --locked --quiet
bin="$root/target/debug/sms-audit"

work=$(mktemp -d)
server_pid=
capture_pid=
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  [ -n "$capture_pid" ] && kill "$capture_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
export SMS_AUDIT_DB="$work/audit.db"

creds=$("$bin" credentials add --name sdk-agent --role agent --aksk --json)
reader=$("$bin" credentials add --name interop-auditor --role auditor --json)
field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }
ak=$(field "$creds" access_key)
sk=$(field "$creds" secret_key)
reader_token=$(field "$reader" token)

# A stand-in SMS endpoint that records what sms-audit forwards to it.
"$SDK_PYTHON" tests/interop/capture_upstream.py "$work/upstream.port" "$work/forwarded.jsonl" &
capture_pid=$!
for _ in $(seq 1 50); do [ -s "$work/upstream.port" ] && break; sleep 0.1; done
upstream_ak=UPSTREAMINTEROPAK01
upstream_sk=upstream-interop-secret
HUAWEICLOUD_SDK_AK=$upstream_ak HUAWEICLOUD_SDK_SK=$upstream_sk HUAWEICLOUD_SDK_PROJECT_ID=0123456789abcdef0123456789abcdef \
  "$bin" serve --listen 127.0.0.1:0 --forward --upstream-endpoint "http://127.0.0.1:$(cat "$work/upstream.port")" 2>"$work/serve.log" &
server_pid=$!
for _ in $(seq 1 100); do
  grep -q "listening on http://" "$work/serve.log" && break
  sleep 0.1
done
address=$(grep -o "listening on http://[0-9.:]*" "$work/serve.log" | head -1 | sed 's/listening on //')
[ -n "$address" ] || { cat "$work/serve.log"; echo "serve did not start" >&2; exit 1; }
echo "sms-audit at $address"

task=137224b7-8d7c-4919-b33e-ed1597780000
project=0123456789abcdef0123456789abcdef
"$SDK_PYTHON" tests/interop/sdk_upload.py "$address" "$task" "$ak" "$sk" "$project"
"$SDK_PYTHON" tests/interop/sdk_upload.py "$address" "$task" "$ak" "wrong-secret" "$project" --expect-status 401

record=$(curl -sf -H "X-Auth-Token: $reader_token" "$address/api/v1/uploads/1")
python3 - "$record" "$project" <<'PY'
import json, sys
record, project = json.loads(sys.argv[1]), sys.argv[2]
assert record["auth_method"] == "aksk", record
assert record["credential_name"] == "sdk-agent", record
assert record["project_id"] == project, record
assert [r["dir_check"] for r in record["results"]] == ["/root/data", "/var"], record
print("stored:", record["id"], record["entry_hash"])
PY
count=$(curl -sf -H "X-Auth-Token: $reader_token" "$address/api/v1/ledger" | python3 -c 'import json,sys; print(json.load(sys.stdin)["entries"])')
[ "$count" = 1 ] || { echo "expected exactly 1 stored upload, found $count" >&2; exit 1; }

# The upload was forwarded: check the outbound signature with the SDK's own signer.
for _ in $(seq 1 100); do [ -s "$work/forwarded.jsonl" ] && break; sleep 0.1; done
python3 -c 'import json,sys; sys.stdout.buffer.write(json.loads(sys.argv[1])["raw_body"].encode())' "$record" >"$work/raw_body"
"$SDK_PYTHON" tests/interop/verify_forwarded.py "$work/forwarded.jsonl" "$upstream_ak" "$upstream_sk" "$work/raw_body"

kill -TERM "$server_pid"
wait "$server_pid"
server_pid=
"$bin" verify
echo "interop OK: the official SDK uploads with the right key, gets 401 with a wrong one, and its signer accepts what sms-audit forwards"
