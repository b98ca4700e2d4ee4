#!/usr/bin/env bash
# An agent's whole run through sms-audit in front of SMS (docs/agents.md, "Putting
# sms-audit in front of SMS"): sms-audit serves HTTPS with a certificate from
# `tls self-signed`, runs with --proxy --forward in front of a stand-in SMS that
# checks every signature with the official SDK's signer. The official Python SDK
# (certificate verification on) and then plain `curl --cacert` make a migration's
# calls; every answer must be the stand-in's, the upload stored and forwarded,
# and every proxied call in the proxy log. The agents' read-backs are reconciled
# passively; then every operation of the SDK's SmsClient goes through --proxy.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# shellcheck source=interop/venv.sh
. "$root/scripts/interop/venv.sh"
cargo build --locked --quiet
bin="$root/target/debug/sms-audit"

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
export SMS_AUDIT_DB="$work/audit.db"
field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }

agent=$("$bin" credentials add --name sdk-agent --role agent --aksk --json)
curl_agent=$("$bin" credentials add --name curl-agent --role agent --json)
auditor=$("$bin" credentials add --name auditor --role auditor --json)
ak=$(field "$agent" access_key); sk=$(field "$agent" secret_key)
curl_token=$(field "$curl_agent" token); auditor_token=$(field "$auditor" token)
"$bin" tls self-signed --host localhost --host 127.0.0.1 --out "$work/tls" >/dev/null

upstream_ak=UPSTREAMAGENTRUNAK01
upstream_sk=upstream-agent-run-secret
project=0123456789abcdef0123456789abcdef
(cd tests/interop && exec "$SDK_PYTHON" standin_sms.py "$work/standin.port" "$work/standin.jsonl" "$upstream_ak" "$upstream_sk") &
pids+=($!)
for _ in $(seq 1 50); do [ -s "$work/standin.port" ] && break; sleep 0.1; done
HUAWEICLOUD_SDK_AK=$upstream_ak HUAWEICLOUD_SDK_SK=$upstream_sk HUAWEICLOUD_SDK_PROJECT_ID=$project \
  "$bin" serve --listen 127.0.0.1:0 --proxy --forward \
  --upstream-endpoint "http://127.0.0.1:$(cat "$work/standin.port")" \
  --tls-cert "$work/tls/cert.pem" --tls-key "$work/tls/key.pem" 2>"$work/serve.log" &
pids+=($!)
server_pid=$!
for _ in $(seq 1 100); do grep -q "listening on https://" "$work/serve.log" && break; sleep 0.1; done
port=$(grep -o "listening on https://[0-9.:]*" "$work/serve.log" | head -1 | sed 's/.*://')
[ -n "$port" ] || { cat "$work/serve.log"; echo "serve did not start" >&2; exit 1; }
endpoint="https://localhost:$port"
echo "sms-audit at $endpoint, in front of the stand-in SMS"

# 1. The SDK's run, verifying the certificate against cert.pem.
(cd tests/interop && "$SDK_PYTHON" agent_run.py "$endpoint" "$work/tls/cert.pem" "$ak" "$sk" "$project" "$work/sdk-calls.json" "$work/standin.jsonl")

# 2. The same with curl: a proxied call, the upload, and reading it back.
cacurl() { curl -sS --fail-with-body --cacert "$work/tls/cert.pem" "$@"; }
config=$(cacurl -H "X-Auth-Token: $curl_token" "$endpoint/v3/config")
expected_config=$(cd tests/interop && python3 -c 'import json; from standin_answers import answer_for; print(json.dumps(answer_for("GET", "/v3/config")))')
python3 -c 'import json,sys; assert json.loads(sys.argv[1]) == json.loads(sys.argv[2]), sys.argv' "$config" "$expected_config"
task=$(cd tests/interop && python3 -c 'from standin_answers import TASK; print(TASK)')
cacurl -X POST -H "X-Auth-Token: $curl_token" -H "Content-Type: application/json" \
  --data-binary @tests/fixtures/example-upload.json "$endpoint/v3/tasks/$task/consistency-result" >/dev/null
cacurl -H "X-Auth-Token: $curl_token" "$endpoint/v3/tasks/$task/consistency-result" >/dev/null
# Plain HTTP on the HTTPS port is refused, and a certificate curl does not trust fails.
if curl -s --max-time 5 "http://localhost:$port/healthz" >/dev/null 2>&1; then echo "plain HTTP was served" >&2; exit 1; fi
if curl -s --max-time 5 "$endpoint/healthz" >/dev/null 2>&1; then echo "an untrusted certificate was accepted" >&2; exit 1; fi
echo "curl --cacert: proxied call, upload and read-back OK"

# 3. What sms-audit recorded, and what the stand-in received.
for _ in $(seq 1 100); do
  [ "$(grep -c '"method": "POST", "path": "/v3/tasks/'"$task"'/consistency-result"' "$work/standin.jsonl" || true)" -ge 2 ] && break
  sleep 0.1
done
# Proxy-log rows are stored with the writer's next commit (within 0.2 s): wait for
# all 11 (9 SDK calls and 2 curl calls passed on).
for _ in $(seq 1 100); do
  cacurl -H "X-Auth-Token: $auditor_token" "$endpoint/api/v1/proxy-log?limit=100" >"$work/proxy-log.json"
  [ "$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["calls"]))' "$work/proxy-log.json")" -ge 11 ] && break
  sleep 0.1
done
cacurl -H "X-Auth-Token: $auditor_token" "$endpoint/api/v1/tasks/$task/uploads" >"$work/uploads.json"
for id in $(python3 -c 'import json,sys; print(" ".join(str(u["id"]) for u in json.load(open(sys.argv[1]))["uploads"]))' "$work/uploads.json"); do
  cacurl -H "X-Auth-Token: $auditor_token" "$endpoint/api/v1/uploads/$id" >"$work/upload-$id.json"
done
python3 - "$work" "$task" <<'PY'
import base64, json, sys
work, task = sys.argv[1], sys.argv[2]
sdk_calls = json.load(open(f"{work}/sdk-calls.json"))
received = [json.loads(line) for line in open(f"{work}/standin.jsonl")]
calls = json.load(open(f"{work}/proxy-log.json"))["calls"]
uploads = [json.load(open(f"{work}/upload-{u['id']}.json"))
           for u in json.load(open(f"{work}/uploads.json"))["uploads"]]
upload_path = f"/v3/tasks/{task}/consistency-result"

bad = [r for r in received if not r["signature_ok"] or r["status"] != 200]
assert not bad, f"the stand-in refused: {bad}"
for r in received:
    lower = {k.lower(): v for k, v in r["headers"].items()}
    assert "x-auth-token" not in lower, f"an agent token went on: {r['path']}"
    assert "UPSTREAMAGENTRUNAK01" in lower["authorization"], f"not signed by the upstream key: {r['path']}"

proxied = [c for c in sdk_calls if not (c["method"] == "POST" and c["path"] == upload_path)]
proxied += [{"method": "GET", "path": "/v3/config"}, {"method": "GET", "path": upload_path}]
logged = [(c["method"], c["path"]) for c in reversed(calls)]
assert logged == [(c["method"], c["path"]) for c in proxied], f"proxy log {logged}"
by_id = {r["request_id"]: r for r in received}
for c in calls:
    assert c["status"] == 200 and c["outcome"] == "answered", c
    r = by_id.get(c["upstream_request_id"])
    assert r and (r["method"], r["path"]) == (c["method"], c["path"]), f"no stand-in request for {c}"
assert {c["credential_name"] for c in calls} == {"sdk-agent", "curl-agent"}, calls

assert len(uploads) == 2, uploads
assert {u["credential_name"] for u in uploads} == {"sdk-agent", "curl-agent"}, uploads
forwarded = [r for r in received if r["method"] == "POST" and r["path"] == upload_path]
assert len(forwarded) >= 1, "no upload was forwarded"
stored_bodies = {u["raw_body"].encode() for u in uploads}
assert all(base64.b64decode(r["body_b64"]) in stored_bodies for r in forwarded), "a forwarded body differs"
list_query = next(r["query"] for r in received if r["path"] == "/v3/tasks")
assert "limit=10" in list_query and "state=READY" in list_query, list_query
print(f"proxy log: {len(calls)} calls, each answered by the stand-in with a good signature; "
      f"{len(uploads)} uploads stored, {len(forwarded)} forwarded")
PY

# 4. Reconciliation: SMS holds both uploads, read back with signatures the SDK's
# own signer checks.
HUAWEICLOUD_SDK_AK=$upstream_ak HUAWEICLOUD_SDK_SK=$upstream_sk HUAWEICLOUD_SDK_PROJECT_ID=$project \
  "$bin" reconcile --task "$task" --upstream-endpoint "http://127.0.0.1:$(cat "$work/standin.port")" | tee "$work/reconcile.out"
grep -q "1 task: 1 match" "$work/reconcile.out"
tail -1 "$work/standin.jsonl" | python3 -c 'import json,sys; r=json.loads(sys.stdin.read()); assert r["method"] == "GET" and r["signature_ok"] and r["status"] == 200, r'

# The SDK's and curl's reads through --proxy were reconciled passively: today's
# passive run has the task, matching.
for _ in $(seq 1 100); do
  cacurl -H "X-Auth-Token: $auditor_token" "$endpoint/api/v1/reconciliation" >"$work/runs.json"
  python3 -c 'import json,sys; runs=json.load(open(sys.argv[1]))["runs"]; sys.exit(0 if any(r["kind"] == "passive" and r["counts"]["match"] == 1 for r in runs) else 1)' "$work/runs.json" && break
  sleep 0.1
done
python3 -c 'import json,sys; runs=json.load(open(sys.argv[1]))["runs"]; assert any(r["kind"] == "passive" and r["counts"]["match"] == 1 for r in runs), runs' "$work/runs.json"
echo "passive reconciliation: the agents' own read-backs match"

# 5. Every operation of the SDK's SmsClient through --proxy, each re-signed at the
# stand-in and in the proxy log.
(cd tests/interop && "$SDK_PYTHON" all_operations.py "$endpoint" "$work/tls/cert.pem" "$ak" "$sk" "$project" "$work/standin.jsonl" "$auditor_token" "$upstream_ak")

kill -TERM "$server_pid"; wait "$server_pid" || true
"$bin" verify
echo "agent run OK: the SDK over HTTPS and curl --cacert, through sms-audit --proxy --forward; reconciled"
