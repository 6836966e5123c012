#!/usr/bin/env bash
# Installs what building and testing Hameau needs on Debian 12, only what is missing.
# Sourced by scripts/start.sh and scripts/test.sh.
set -euo pipefail

need_debs=()
for deb in build-essential libclang-dev pkg-config ca-certificates curl python3 python3-venv ${HAMEAU_EXTRA_DEBS:-}; do
    dpkg-query -W -f='${Status}' "$deb" 2>/dev/null | grep -q "install ok installed" || need_debs+=("$deb")
done
if [ ${#need_debs[@]} -gt 0 ]; then
    echo "setup: installing ${need_debs[*]}" >&2
    # Daemons from Debian packages must not start on install: tests start their own.
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need_debs[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
    if [ -x "$HOME/.cargo/bin/cargo" ]; then
        export PATH="$HOME/.cargo/bin:$PATH"
    else
        echo "setup: installing the Rust toolchain with rustup" >&2
        curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --component clippy,rustfmt
        export PATH="$HOME/.cargo/bin:$PATH"
    fi
fi

# Build products live outside the clone so that fresh clones (CI) reuse them.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/hameau-target}"
mkdir -p "$CARGO_TARGET_DIR"
