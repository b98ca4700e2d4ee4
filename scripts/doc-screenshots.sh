#!/usr/bin/env bash
# Takes the manual's pictures again (docs/images/*.png): the browser survey, on
# its seeded data, at 1280x800, writes them as it checks each page still shows
# what its picture does. Needs chromium, chromium-driver and axe-core, as the
# browser check in .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f target/axe/node_modules/axe-core/axe.min.js ] ||
  npm install --prefix target/axe axe-core@4.14.1 --no-audit --no-fund --loglevel=error
SMS_AUDIT_DOC_IMAGES=write cargo test --locked --test browser -- --ignored --exact \
  every_page_reads_at_a_glance_at_two_widths_and_passes_axe
ls -l docs/images/*.png
