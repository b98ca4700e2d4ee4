#!/usr/bin/env bash
# The OpenAPI description served at /api/v1/openapi.json, validated by
# openapi-spec-validator (PyPI) as an OpenAPI 3.1 document.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
venv="$root/target/openapi-venv"
if [ ! -x "$venv/bin/openapi-spec-validator" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check openapi-spec-validator
fi
cargo build --locked --quiet
bin="$root/target/debug/sms-audit"
work=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; rm -rf "$work"' EXIT
# shellcheck source=bench/lib.sh
. "$root/scripts/bench/lib.sh"
"$bin" --db "$work/audit.db" serve --listen 127.0.0.1:0 2>"$work/serve.log" &
pid=$!
address=$(address_of "$work/serve.log")
curl -sf "$address/api/v1/openapi.json" -o "$work/openapi.json"
"$venv/bin/openapi-spec-validator" "$work/openapi.json"
python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(f\"openapi {d['openapi']}: {len(d['paths'])} paths\")" "$work/openapi.json"
