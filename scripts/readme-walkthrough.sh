#!/usr/bin/env bash
# The README's "Your first hour", run as a reader would paste it: every ```sh
# block in order, in a temp directory, against the release binary on PATH, with
# the Python snippet run by the official SDK's venv (scripts/interop/venv.sh).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bin_dir="$root/target/release"
[ -x "$bin_dir/sms-audit" ] || cargo build --release --locked --quiet
# shellcheck source=interop/venv.sh
. "$root/scripts/interop/venv.sh"
if curl -s -o /dev/null http://127.0.0.1:8080/ 2>/dev/null; then
  echo "port 8080 is taken: the walkthrough serves on it" >&2
  exit 1
fi
work=$(mktemp -d)
tools="$work/tools"
mkdir -p "$tools"
printf '#!/bin/sh\nexec "%s" "$@"\n' "$SDK_PYTHON" > "$tools/python3"
chmod +x "$tools/python3"
python3 scripts/docs/walkthrough.py README.md > "$work/walkthrough.sh"
group=""
cleanup() {
  # The walkthrough ran in a process group of its own: whatever it left running goes.
  [ -n "$group" ] && kill -- "-$group" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
mkdir "$work/home"
(cd "$work/home" && PATH="$tools:$bin_dir:$PATH" exec setsid timeout 300 bash "$work/walkthrough.sh") &
group=$!
if ! wait "$group"; then
  echo "the README's walkthrough failed; the service's log:" >&2
  cat "$work/home/sms-audit-demo/serve.log" >&2 2>/dev/null || true
  exit 1
fi
echo "the README's walkthrough ran: $(grep -c '^echo .== walkthrough shell block' "$work/walkthrough.sh") shell blocks"
