#!/usr/bin/env bash
# Runs every check and test of Hameau: formatting, lints, unit, property, crash and
# end-to-end tests. Installs what they need if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
# Test tools from Debian: knotd, an authoritative DNS server for `hameau dns check`; swaks,
# an SMTP client.
export HAMEAU_EXTRA_DEBS="knot swaks"
source scripts/setup.sh
# Test tools from PyPI, in a virtual environment of their own: schemathesis.
venv="$HOME/.cache/hameau-venv"
if [ ! -x "$venv/bin/schemathesis" ]; then
    echo "setup: installing schemathesis in $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q schemathesis
fi
export PATH="$venv/bin:$PATH"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo test"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace 2>&1 | tee "$log"
# One closing line for the whole run: cargo prints one result line per test binary.
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "tests: %d passed, %d failed\n", passed, failed }' "$log"
