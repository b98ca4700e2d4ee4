#!/usr/bin/env bash
# The hostile-input properties, deeper than `cargo test` runs them: CASES cases a
# property (default 1,000,000) in a release build. Takes a while; prints each
# property's result. Usage: scripts/deep-proptest.sh [CASES]
set -euo pipefail
cd "$(dirname "$0")/.."
export PROPTEST_CASES=${1:-1000000}
echo "PROPTEST_CASES=$PROPTEST_CASES"
cargo test --release --locked --test hostile_input --test body_properties -- --test-threads 2
