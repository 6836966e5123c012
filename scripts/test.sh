#!/usr/bin/env bash
# Runs every check and test of Hameau: formatting, lints, unit, property, crash and
# end-to-end tests. Installs what they need if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo test"
cargo test --workspace
