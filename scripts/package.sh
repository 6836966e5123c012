#!/usr/bin/env bash
# Builds Hameau's Debian package: the `dist` profile (fat LTO, one codegen unit, stripped),
# the man pages and shell completions made by the binary itself, then cargo-deb, then
# lintian (no error allowed). Prints the package's path and sizes; the last line of output
# is the .deb's path.
#
#     scripts/package.sh [--deb-version VERSION] [--out-dir DIR] [--no-lintian]
#
# --deb-version packages the same build under another Debian version (the upgrade test);
# the build step is then a no-op.
set -euo pipefail
cd "$(dirname "$0")/.."
HAMEAU_EXTRA_DEBS="${HAMEAU_EXTRA_DEBS:-} lintian dpkg-dev" source scripts/setup.sh

deb_version=""
out_dir="$CARGO_TARGET_DIR/debian"
lint=1
while [ $# -gt 0 ]; do
    case "$1" in
        --deb-version) deb_version="$2"; shift 2 ;;
        --out-dir) out_dir="$2"; shift 2 ;;
        --no-lintian) lint=0; shift ;;
        *) echo "package.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

# cargo-deb 3.8.0 builds with this toolchain (rustc 1.95); newer ones may not.
cargo_deb_version="3.8.0"
if [ "$(cargo deb --version 2>/dev/null)" != "cargo-deb $cargo_deb_version" ]; then
    echo "setup: installing cargo-deb $cargo_deb_version" >&2
    cargo install cargo-deb --version "$cargo_deb_version" --locked
fi

started=$(date +%s)
cargo build -p hameau --profile dist
echo "package: dist build took $(( $(date +%s) - started )) s" >&2

# cargo-deb takes `target/release/packaging/...` in the manifest's assets from the dist
# profile's directory.
dist_dir="$CARGO_TARGET_DIR/dist"
rm -rf "$dist_dir/packaging"
"$dist_dir/hameau" generate man "$dist_dir/packaging/man"
# Debian policy 12.1: man pages gzipped at the highest level, without a timestamp (-n).
gzip -9n "$dist_dir"/packaging/man/*.8
"$dist_dir/hameau" generate completions "$dist_dir/packaging/completions"

mkdir -p "$out_dir"
deb_args=(-p hameau --no-build --output "$out_dir")
if [ -n "$deb_version" ]; then
    deb_args+=(--deb-version "$deb_version")
fi
# cargo-deb prints the path of the package it wrote, last.
deb=$(cargo deb "${deb_args[@]}" | tail -n 1)
[ -f "$deb" ] || { echo "package: cargo-deb wrote no package ($deb)" >&2; exit 1; }

if [ "$lint" = 1 ]; then
    # Errors fail the build; warnings are printed (and justified overrides, with their
    # reasons, are in packaging/lintian-overrides).
    echo "== lintian $deb" >&2
    lintian --fail-on error --tag-display-limit 0 "$deb" >&2
fi

installed_kib=$(dpkg-deb -f "$deb" Installed-Size)
echo "package: $(basename "$deb"): $(( $(stat -c %s "$deb") / 1024 )) KiB, installed $installed_kib KiB" >&2
echo "$deb"
