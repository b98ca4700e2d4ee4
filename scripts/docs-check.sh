#!/usr/bin/env bash
# The manual as a book: mdbook (from crates.io) builds docs/ into target/book/,
# then every relative link and #anchor of the built pages must resolve.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
MDBOOK_VERSION=${MDBOOK_VERSION:-0.5.4}
mdbook="$root/target/tools/bin/mdbook"
if ! "$mdbook" --version 2>/dev/null | grep -q "v$MDBOOK_VERSION"; then
  cargo install --quiet --locked mdbook --version "$MDBOOK_VERSION" \
    --no-default-features --features search --root "$root/target/tools"
fi
rm -rf target/book
"$mdbook" build > target/mdbook.log 2>&1 || { cat target/mdbook.log >&2; exit 1; }
if grep -E 'WARN|ERROR' target/mdbook.log >&2; then echo "mdbook warned: fix the book" >&2; exit 1; fi
python3 scripts/docs/check_links.py target/book
