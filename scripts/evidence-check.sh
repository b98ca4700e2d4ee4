#!/usr/bin/env bash
# Evidence checked offline, two ways: a task's bundle exported by `sms-audit
# evidence export` must pass `sms-audit evidence verify` and the independent
# contrib/verify_evidence.py (Python standard library plus `cryptography`), and
# each tampered copy must fail both: a changed count in a raw body, a changed
# hash, a dropped proof hash, a checkpoint signed by another key.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# shellcheck source=interop/venv.sh
. "$root/scripts/interop/venv.sh"
cargo build --locked --quiet
bin="$root/target/debug/sms-audit"
work=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; rm -rf "$work"' EXIT
export SMS_AUDIT_DB="$work/audit.db"
# shellcheck source=bench/lib.sh
. "$root/scripts/bench/lib.sh"

token=$("$bin" credentials add --name agent --role agent --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
RUST_LOG=info "$bin" serve --listen 127.0.0.1:0 --log-origin audit.example/sms 2>"$work/serve.log" &
pid=$!
address=$(address_of "$work/serve.log")
for i in 1 2 3 4 5 6 7; do
  task=task-$((i % 2))
  curl -sf -X POST -H "X-Auth-Token: $token" -H "Content-Type: application/json" \
    --data-binary @tests/fixtures/example-upload.json "$address/v3/tasks/$task/consistency-result" >/dev/null
done
kill -TERM $pid; wait $pid; pid=
vkey=$(grep -o 'verifier_key=[^ ]*' "$work/serve.log" | head -1 | cut -d= -f2-)
[ -n "$vkey" ] || { cat "$work/serve.log"; echo "no verifier key in the log" >&2; exit 1; }
echo "log's verifier key (from the service's log): $vkey"

"$bin" evidence export --task task-1 --out "$work/bundle.json"
"$bin" evidence verify "$work/bundle.json" --vkey "$vkey"
"$SDK_PYTHON" contrib/verify_evidence.py "$work/bundle.json" --vkey "$vkey"

"$SDK_PYTHON" - "$work" <<'PY'
import base64, copy, json, sys
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives import serialization
import hashlib
work = sys.argv[1]
bundle = json.load(open(f"{work}/bundle.json"))

def save(name, b):
    json.dump(b, open(f"{work}/{name}.json", "w"))

b = copy.deepcopy(bundle)
raw = base64.b64decode(b["entries"][1]["raw_body_base64"]).replace(b"1235", b"1236", 1)
b["entries"][1]["raw_body_base64"] = base64.b64encode(raw).decode()
save("changed-count", b)

b = copy.deepcopy(bundle)
h = b["entries"][0]["entry_hash"]
b["entries"][0]["entry_hash"] = h[:-1] + ("0" if h[-1] != "0" else "1")
save("changed-hash", b)

b = copy.deepcopy(bundle)
e = next(e for e in b["entries"] if e["inclusion_proof"])
e["inclusion_proof"].pop()
save("dropped-proof-hash", b)

# Entries duplicated or reordered (each entry still proves itself).
b = copy.deepcopy(bundle)
b["entries"].append(copy.deepcopy(b["entries"][0]))
save("duplicated-entry", b)

b = copy.deepcopy(bundle)
b["entries"].reverse()
save("reordered-entries", b)

# The same checkpoint text, signed by a key that is not the log's.
b = copy.deepcopy(bundle)
text = b["checkpoint"].split("\n\n")[0] + "\n"
origin = text.split("\n")[0]
other = Ed25519PrivateKey.generate()
pub = b"\x01" + other.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
key_id = hashlib.sha256(origin.encode() + b"\n" + pub).digest()[:4]
sig = base64.b64encode(key_id + other.sign(text.encode())).decode()
b["checkpoint"] = f"{text}\n\u2014 {origin} {sig}\n"
save("other-key", b)
b["vkey"] = f"{origin}+{key_id.hex()}+{base64.b64encode(pub).decode()}"
save("other-key-and-vkey", b)
PY

for case in changed-count changed-hash dropped-proof-hash duplicated-entry reordered-entries other-key other-key-and-vkey; do
  for checker in rust python; do
    if [ $checker = rust ]; then
      set +e; out=$("$bin" evidence verify "$work/$case.json" --vkey "$vkey"); code=$?; set -e
    else
      set +e; out=$("$SDK_PYTHON" contrib/verify_evidence.py "$work/$case.json" --vkey "$vkey"); code=$?; set -e
    fi
    [ $code = 1 ] || { echo "$case passed the $checker verifier: $out" >&2; exit 1; }
    echo "$case, $checker: $out"
  done
done
# After retention purged the older uploads' bodies, a new bundle still verifies
# with both (entry hashes and proofs), and a purged entry whose body_sha256 was
# changed fails both.
"$bin" purge --before "$("$SDK_PYTHON" -c 'import json,sys; b=json.load(open(sys.argv[1])); print(b["entries"][-1]["received_at"])' "$work/bundle.json")" --yes
"$bin" evidence export --task task-1 --out "$work/purged.json"
out=$("$bin" evidence verify "$work/purged.json" --vkey "$vkey"); echo "purged, rust: $out"
case "$out" in *"with their body purged"*) ;; *) echo "no purged entry in the bundle" >&2; exit 1 ;; esac
out=$("$SDK_PYTHON" contrib/verify_evidence.py "$work/purged.json" --vkey "$vkey"); echo "purged, python: $out"
"$SDK_PYTHON" - "$work" <<'PY'
import json, sys
work = sys.argv[1]
b = json.load(open(f"{work}/purged.json"))
e = next(e for e in b["entries"] if e.get("purged_at"))
e["body_sha256"] = "0" * 64
json.dump(b, open(f"{work}/purged-changed-hash.json", "w"))
PY
set +e; "$bin" evidence verify "$work/purged-changed-hash.json" --vkey "$vkey" >/dev/null; rust=$?
"$SDK_PYTHON" contrib/verify_evidence.py "$work/purged-changed-hash.json" --vkey "$vkey" >/dev/null; python=$?; set -e
[ $rust = 1 ] && [ $python = 1 ] || { echo "a purged entry with a changed body hash passed (rust $rust, python $python)" >&2; exit 1; }
# A reconciliation's signed summary, exported and checked by both verifiers, and
# a copy with a changed verdict failing both (the stand-in holds no results, so
# the tasks, never delivered from here, match).
"$SDK_PYTHON" tests/interop/capture_upstream.py "$work/sms.port" "$work/sms.jsonl" &
sms_pid=$!
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; kill $sms_pid 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 1 50); do [ -s "$work/sms.port" ] && break; sleep 0.1; done
HUAWEICLOUD_SDK_AK=CHECKAK HUAWEICLOUD_SDK_SK=check-secret \
  "$bin" reconcile --log-origin audit.example/sms --upstream-endpoint "http://127.0.0.1:$(cat "$work/sms.port")"
"$bin" reconcile export --log-origin audit.example/sms --run 1 --out "$work/reconciliation.json"
"$bin" evidence verify "$work/reconciliation.json" --vkey "$vkey"
"$SDK_PYTHON" contrib/verify_evidence.py "$work/reconciliation.json" --vkey "$vkey"
"$SDK_PYTHON" - "$work" <<'PY'
import json, sys
work = sys.argv[1]
r = json.load(open(f"{work}/reconciliation.json"))
r["tasks"][0]["verdict"] = "foreign"
json.dump(r, open(f"{work}/reconciliation-changed.json", "w"))
PY
set +e; "$bin" evidence verify "$work/reconciliation-changed.json" --vkey "$vkey"; rust=$?
"$SDK_PYTHON" contrib/verify_evidence.py "$work/reconciliation-changed.json" --vkey "$vkey"; python=$?; set -e
[ $rust = 1 ] && [ $python = 1 ] || { echo "a changed verdict passed (rust $rust, python $python)" >&2; exit 1; }
echo "evidence check OK: the bundle verifies with both verifiers, each tampered copy fails both, also after a purge; so does a reconciliation"
