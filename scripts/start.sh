#!/usr/bin/env bash
# Builds Hameau and starts it on its embedded default: RocksDB in ./data, a self-signed
# certificate, HTTPS on 127.0.0.1:8443, the MX on 127.0.0.1:2525, IMAP on 127.0.0.1:1143
# (STARTTLS) and 127.0.0.1:1993 (TLS). Ctrl-C stops it cleanly.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

cargo build -p hameau
hameau="$CARGO_TARGET_DIR/debug/hameau"
data_dir="${HAMEAU_DATA_DIR:-$PWD/data}"
if [ ! -e "$data_dir/hameau.toml" ]; then
    "$hameau" init --data-dir "$data_dir" --demo
fi
exec "$hameau" serve --config "$data_dir/hameau.toml"
