#!/usr/bin/env bash
# deploy/sms-audit.service checked by systemd itself: `systemd-analyze verify`
# (syntax, directives, the binary) and `systemd-analyze security` (its exposure
# score must stay at 2.0 or below, "OK"). Skipped where systemd-analyze is missing.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
command -v systemd-analyze >/dev/null || { echo "systemd-analyze not available: skipped"; exit 0; }
cargo build --locked --quiet
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The unit as shipped, pointing at the binary just built.
sed "s|^ExecStart=/usr/local/bin/sms-audit|ExecStart=$root/target/debug/sms-audit|" \
  deploy/sms-audit.service >"$work/sms-audit.service"
systemd-analyze verify --man=no "$work/sms-audit.service"
systemd-analyze security --offline=true --threshold=20 "$work/sms-audit.service" | tail -1
echo "systemd check OK"
