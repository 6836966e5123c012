#!/usr/bin/env bash
# The Debian package's life on this machine, end to end (issue 12): build the .deb
# (scripts/package.sh: dist profile, lintian without errors), score the systemd unit
# (`systemd-analyze security --offline=true` at most 2.0), install it, `hameau setup`, run
# the installed binary with the installed configuration as the `hameau` user exactly as the
# unit's ExecStart does, deliver a message on 25 with swaks and read it over IMAPS with the
# installed certificate, send one through submission (587, STARTTLS, AUTH) and read it back,
# upgrade to a rebuilt package (data kept), then purge (data and user gone).
#
# The server runs in a network and mount namespace of its own (`unshare --net --mount`):
# loopback plus the test host's TEST-NET address (RFC 5737) and a private /etc/hosts naming
# it, so this machine's ports, /etc/hosts and services are untouched. Everything started is
# stopped by PID, and the package is purged, even on failure. Refuses to run where a
# `hameau` package or user already exists: it would remove them.
#
# Prints the package's size, the idle server's resident memory (target: at most 20 MiB)
# and the time from `dpkg -i` to the first delivered message; the last line counts the
# checks ("deb-test: N passed, M failed").
set -euo pipefail
self=$(realpath "$0")
cd "$(dirname "$self")/.."

# The test's host and commune, on a documentation address (RFC 5737 TEST-NET-1).
readonly HOST=mail.commune-test.fr
readonly HOST_ADDR=192.0.2.10
readonly DOMAIN=commune-test.fr
readonly ADMIN=secretariat@commune-test.fr
# How long the server may take to open its ports after start.
readonly START_TIMEOUT_S=30
# How long the idle server runs before its memory is read: past the 3 s after "ready" at
# which it pages out its start-up code (server.release_start_code, crates/hameau's
# code_pages).
readonly IDLE_S=8
# The idle resident memory target, in KiB (issue 12).
readonly IDLE_RSS_TARGET_KIB=$((20 * 1024))
# The highest exposure `systemd-analyze security` may give the unit (issue 12).
readonly EXPOSURE_MAX=2.0

n_passed=0
n_failed=0

# One check passed: say what.
pass() {
    n_passed=$((n_passed + 1))
    echo "ok: $*"
}

# One check failed: say what, and stop (the EXIT trap cleans up and counts).
fail() {
    n_failed=$((n_failed + 1))
    echo "FAILED: $*" >&2
    exit 1
}

summary() {
    echo "deb-test: $n_passed passed, $n_failed failed"
}

main() {
    HAMEAU_EXTRA_DEBS="${HAMEAU_EXTRA_DEBS:-} swaks lintian dpkg-dev adduser iproute2 util-linux man-db" \
        source scripts/setup.sh
    if dpkg-query -W -f='${Status}' hameau 2>/dev/null | grep -q "installed"; then
        echo "deb-test: the hameau package is installed on this machine; this test would purge it: refusing" >&2
        exit 1
    fi
    if getent passwd hameau >/dev/null || getent group hameau >/dev/null; then
        echo "deb-test: a hameau user or group exists on this machine; this test would delete it: refusing" >&2
        exit 1
    fi
    echo "== Debian package: build, lintian, unit score, install, setup, mail, upgrade, purge"
    work=$(mktemp -d /tmp/hameau-deb-test.XXXXXX)
    export work
    trap cleanup EXIT

    echo "== building the packages"
    local deb version upgrade_deb upgrade_version
    deb=$(scripts/package.sh --out-dir "$work/v1" | tail -n 1)
    pass "package built, lintian without errors: $(basename "$deb")"
    version=$(dpkg-deb -f "$deb" Version)
    # The same build under the next Debian revision: the upgrade.
    upgrade_version="${version%-*}-$((${version##*-} + 1))"
    upgrade_deb=$(scripts/package.sh --out-dir "$work/v2" --deb-version "$upgrade_version" --no-lintian | tail -n 1)
    echo "package: $(basename "$deb"): $(( $(stat -c %s "$deb") / 1024 )) KiB, installed size $(dpkg-deb -f "$deb" Installed-Size) KiB"

    local exposure unit
    for unit in hameau.service hameau-backup.service; do
        echo "== systemd-analyze security --offline=true packaging/$unit"
        exposure=$(systemd-analyze security --offline=true "packaging/$unit" 2>&1 \
            | sed -n "s/.*Overall exposure level for $unit: \([0-9.]*\).*/\1/p")
        [ -n "$exposure" ] || fail "systemd-analyze gave no exposure level for $unit"
        awk -v e="$exposure" -v max="$EXPOSURE_MAX" 'BEGIN { exit !(e <= max) }' \
            || fail "$unit's exposure is $exposure, above $EXPOSURE_MAX"
        pass "$unit's exposure level is $exposure (at most $EXPOSURE_MAX)"
    done

    # The rest runs in a namespace of its own; the namespace's processes are this script's
    # children, and their PIDs are written under $work for the trap.
    echo "== in a network and mount namespace of its own"
    unshare --net --mount --fork -- bash "$self" --inside "$deb" "$upgrade_deb" "$upgrade_version" 2>&1 \
        | tee "$work/inside.out" || fail "the test inside the namespace failed (above)"
    # The inside run counted its checks in its last line.
    local inside_passed
    inside_passed=$(sed -n 's/^deb-test: \([0-9]*\) passed, 0 failed$/\1/p' "$work/inside.out" | tail -n 1)
    [ -n "$inside_passed" ] || fail "the test inside the namespace did not finish"
    n_passed=$((n_passed + inside_passed))
}

# Runs on any exit of the outer script: stops what the inner one may have left running,
# purges the package, deletes the work directory, prints the count.
cleanup() {
    local status=$?
    stop_server_pid_file "$work/server.pid"
    if dpkg-query -W -f='${Status}' hameau 2>/dev/null | grep -q "installed\|config-files\|half"; then
        echo "deb-test: purging the hameau package left behind" >&2
        dpkg --purge hameau >/dev/null 2>&1 || true
    fi
    rm -rf "$work"
    if [ $status -ne 0 ] && [ $n_failed -eq 0 ]; then
        n_failed=1
    fi
    summary
    exit $status
}

# Stops the server whose PID the file holds, if it still runs: SIGTERM, then SIGKILL after
# the configured grace and some.
stop_server_pid_file() {
    local pid_file=$1 pid
    [ -f "$pid_file" ] || return 0
    pid=$(cat "$pid_file")
    rm -f "$pid_file"
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 400); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    echo "deb-test: the server (PID $pid) ignored SIGTERM for 40 s: killing it" >&2
    kill -KILL "$pid" 2>/dev/null || true
}

# ---- Inside the namespace -------------------------------------------------------------

inside() {
    local deb=$1 upgrade_deb=$2 upgrade_version=$3
    trap inside_cleanup EXIT
    isolate_network

    echo "== dpkg -i $(basename "$deb")"
    local installed_at
    installed_at=$(date +%s.%N)
    dpkg -i "$deb" 2> "$work/dpkg-install.err" || { cat "$work/dpkg-install.err" >&2; fail "dpkg -i"; }
    cat "$work/dpkg-install.err" >&2
    grep -q "hameau setup" "$work/dpkg-install.err" || fail "postinst did not say to run hameau setup"
    check_installed_files
    check_unit_verifies

    echo "== hameau setup --non-interactive"
    local password
    password="Mot-de-passe-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    umask 077
    printf '%s\n' "$password" > "$work/admin-password"
    umask 022
    hameau setup --non-interactive --hostname "$HOST" --commune-name "Commune de Test" --insee 99001 \
        --domain "$DOMAIN" --admin "$ADMIN" --admin-password-file "$work/admin-password" --json \
        > "$work/setup.json" 2> "$work/setup.err" || { cat "$work/setup.err" >&2; fail "hameau setup"; }
    python3 - "$work/setup.json" "$ADMIN" <<'EOF' || fail "hameau setup --json did not give operator_api_key and admin_address"
import json, sys
answer = json.load(open(sys.argv[1]))
assert answer["operator_api_key"], answer
assert answer["admin_address"] == sys.argv[2], answer
EOF
    pass "hameau setup configured $HOST for $DOMAIN"
    [ "$(stat -c %U:%a /var/lib/hameau)" = "hameau:700" ] || fail "/var/lib/hameau is $(stat -c %U:%a /var/lib/hameau)"
    [ -z "$(find /var/lib/hameau ! -user hameau | head -n 1)" ] \
        || fail "files under /var/lib/hameau not owned by hameau: $(find /var/lib/hameau ! -user hameau | head -n 3)"
    pass "/var/lib/hameau is the hameau user's alone (0700)"
    # The service reads the configuration through its group: setup must keep it so.
    [ "$(stat -c %U:%G:%a /etc/hameau/hameau.toml)" = "root:hameau:640" ] \
        || fail "after setup /etc/hameau/hameau.toml is $(stat -c %U:%G:%a /etc/hameau/hameau.toml), not root:hameau:640"
    pass "after setup the configuration is still root:hameau 0640"

    start_server
    measure_idle_memory

    echo "== delivery on 25, read over IMAPS"
    swaks --server "$HOST:25" --from "mairie-voisine@exemple.test" --to "$ADMIN" \
        --header "Subject: deb-test livraison" --body "Bonjour, livraison par le port 25." \
        > "$work/swaks-25.out" 2>&1 || { cat "$work/swaks-25.out" >&2; fail "swaks to port 25"; }
    local delivered_at
    delivered_at=$(date +%s.%N)
    pass "swaks delivered a message on port 25"
    echo "time from dpkg -i to the first delivered message: $(awk -v a="$installed_at" -v b="$delivered_at" 'BEGIN { printf "%.1f", b - a }') s"
    imap_expect "deb-test livraison" "$password"
    pass "the message was read over IMAPS (993), certificate checked against /var/lib/hameau/tls/cert.pem for $HOST"

    echo "== submission on 587 (STARTTLS, AUTH), read back over IMAPS"
    swaks --server "$HOST:587" --tls --tls-verify --tls-ca-path /var/lib/hameau/tls/cert.pem \
        --auth PLAIN --auth-user "$ADMIN" --auth-password "$password" \
        --from "$ADMIN" --to "$ADMIN" --header "Subject: deb-test soumission" \
        --body "Bonjour, envoi par la soumission." \
        > "$work/swaks-587.out" 2>&1 || { cat "$work/swaks-587.out" >&2; fail "swaks to port 587"; }
    pass "swaks submitted a message on 587 with STARTTLS and AUTH PLAIN"
    imap_expect "deb-test soumission" "$password"
    pass "the submitted message was read back over IMAPS"

    echo "== upgrade to $upgrade_version"
    stop_server_pid_file "$work/server.pid"
    local config_sum
    config_sum=$(sha256sum /etc/hameau/hameau.toml)
    dpkg -i --force-confold "$upgrade_deb" 2>&1 | tail -n 5
    [ "$(dpkg-query -W -f='${Version}' hameau)" = "$upgrade_version" ] || fail "the upgrade did not install $upgrade_version"
    [ "$(sha256sum /etc/hameau/hameau.toml)" = "$config_sum" ] || fail "the upgrade changed /etc/hameau/hameau.toml"
    [ "$(stat -c %G:%a /etc/hameau/hameau.toml)" = "hameau:640" ] \
        || fail "after the upgrade /etc/hameau/hameau.toml is $(stat -c %G:%a /etc/hameau/hameau.toml)"
    pass "upgraded to $upgrade_version, configuration kept"
    start_server
    imap_expect "deb-test livraison" "$password"
    pass "after the upgrade and a restart, the first message is still there"
    stop_server_pid_file "$work/server.pid"

    echo "== dpkg --purge hameau"
    dpkg --purge hameau > "$work/purge.out" 2>&1 || { cat "$work/purge.out" >&2; fail "dpkg --purge"; }
    cat "$work/purge.out"
    grep -q "suppression de /var/lib/hameau" "$work/purge.out" || fail "purge did not say it deletes the data (French)"
    grep -q "deleting /var/lib/hameau" "$work/purge.out" || fail "purge did not say it deletes the data (English)"
    [ ! -e /var/lib/hameau ] || fail "/var/lib/hameau is still there after purge"
    [ ! -e /etc/hameau ] || fail "/etc/hameau is still there after purge"
    ! getent passwd hameau >/dev/null || fail "the hameau user is still there after purge"
    ! getent group hameau >/dev/null || fail "the hameau group is still there after purge"
    pass "purge said so, then removed the data, the configuration and the user"
    summary
}

# Loopback up and the test host's address: on a dummy interface where the kernel has one,
# otherwise on loopback itself (gVisor has no dummy interfaces). Then an /etc/hosts of this
# namespace's own naming the test host.
isolate_network() {
    ip link set lo up
    if ip link add hameau0 type dummy 2>/dev/null; then
        ip addr add "$HOST_ADDR/24" dev hameau0
        ip link set hameau0 up
    else
        ip addr add "$HOST_ADDR/32" dev lo
    fi
    # unshare --mount makes mounts private: the bind mount is seen in this namespace only.
    cp /etc/hosts "$work/hosts"
    printf '%s %s\n' "$HOST_ADDR" "$HOST" >> "$work/hosts"
    mount --bind "$work/hosts" /etc/hosts
    [ "$(getent hosts "$HOST" | awk '{ print $1 }')" = "$HOST_ADDR" ] || fail "$HOST does not resolve to $HOST_ADDR"
}

# What the package put where, with the owners and modes docs/install.md promises.
check_installed_files() {
    local path expect
    for path in /usr/bin/hameau "$(unit_path)" /usr/share/man/man8/hameau.8.gz /usr/share/man/man8/hameau-serve.8.gz \
        /usr/share/bash-completion/completions/hameau /usr/share/zsh/vendor-completions/_hameau \
        /usr/share/fish/vendor_completions.d/hameau.fish; do
        [ -e "$path" ] || fail "$path is missing"
    done
    getent passwd hameau >/dev/null || fail "postinst made no hameau user"
    [ "$(getent passwd hameau | cut -d: -f7)" = "/usr/sbin/nologin" ] || fail "the hameau user has a login shell"
    expect="hameau:hameau:700"
    [ "$(stat -c %U:%G:%a /var/lib/hameau)" = "$expect" ] || fail "/var/lib/hameau is $(stat -c %U:%G:%a /var/lib/hameau), not $expect"
    expect="root:hameau:640"
    [ "$(stat -c %U:%G:%a /etc/hameau/hameau.toml)" = "$expect" ] \
        || fail "/etc/hameau/hameau.toml is $(stat -c %U:%G:%a /etc/hameau/hameau.toml), not $expect"
    grep -qx /etc/hameau/hameau.toml /var/lib/dpkg/info/hameau.conffiles || fail "hameau.toml is not a conffile"
    man -w hameau >/dev/null 2>&1 || fail "man hameau finds no page"
    pass "installed: binary, unit, man pages, completions, user, /var/lib/hameau 0700, configuration root:hameau 0640 (conffile)"
}

# The installed unit file, wherever the package put it.
unit_path() {
    dpkg -L hameau | grep '/systemd/system/hameau\.service$'
}

# `systemd-analyze verify` exits 0 on some errors: its stderr must be empty too.
check_unit_verifies() {
    if ! systemd-analyze verify "$(unit_path)" > "$work/verify.out" 2>&1 || [ -s "$work/verify.out" ]; then
        cat "$work/verify.out" >&2
        fail "systemd-analyze verify on the installed unit"
    fi
    pass "systemd-analyze verify: the installed unit has no error"
}

# Starts the installed binary as the installed unit says: its ExecStart, as its User= with
# its Group=, with only the ambient capability it grants (bounding set included), no new
# privileges, its UMask and LimitNOFILE, from /. Waits for IMAPS to answer.
start_server() {
    local unit exec_start user group umask_value nofile
    unit=$(unit_path)
    exec_start=$(sed -n 's/^ExecStart=//p' "$unit")
    user=$(sed -n 's/^User=//p' "$unit")
    group=$(sed -n 's/^Group=//p' "$unit")
    umask_value=$(sed -n 's/^UMask=//p' "$unit")
    nofile=$(sed -n 's/^LimitNOFILE=//p' "$unit")
    [ -n "$exec_start" ] && [ -n "$user" ] && [ -n "$group" ] || fail "the unit lacks ExecStart, User or Group"
    echo "== starting, as $user: $exec_start"
    # shellcheck disable=SC2086 # ExecStart is split into words as systemd does (no quotes in it).
    (
        cd /
        umask "${umask_value:-0022}"
        # systemd raises the hard limit too; here a hard limit below LimitNOFILE caps it.
        ulimit -n "${nofile:-1024}" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
        exec setpriv --reuid="$user" --regid="$group" --init-groups \
            --bounding-set=-all,+net_bind_service --inh-caps=-all,+net_bind_service \
            --ambient-caps=-all,+net_bind_service --no-new-privs \
            -- env -i PATH=/usr/bin:/bin HOME=/var/lib/hameau $exec_start
    ) >> "$work/server.log" 2>&1 &
    echo $! > "$work/server.pid"
    local deadline=$((SECONDS + START_TIMEOUT_S))
    until (exec 3<>"/dev/tcp/$HOST_ADDR/993") 2>/dev/null; do
        if ! kill -0 "$(cat "$work/server.pid")" 2>/dev/null; then
            tail -n 20 "$work/server.log" >&2
            fail "the server stopped at start"
        fi
        [ $SECONDS -lt $deadline ] || { tail -n 20 "$work/server.log" >&2; fail "the server did not open 993 in $START_TIMEOUT_S s"; }
        sleep 0.2
    done
    [ "$(stat -c %U "/proc/$(cat "$work/server.pid")")" = "$user" ] || fail "the server does not run as $user"
    pass "the installed server runs as $user and answers on $HOST:993"
}

# The idle server's resident memory, a few seconds after start and before any mail: VmRSS,
# RssAnon (heap, stacks, the RocksDB cache as it fills) and RssFile (the binary's and the
# libraries' pages mapped), each printed; VmRSS must stay under the target. On kernels that
# map a file's page cache in large folios (this one: up to 2 MiB per fault), the start would
# leave nearly the whole binary mapped; once settled the server unmaps its start-up code
# and drops it from the page cache (server.release_start_code: MADV_DONTNEED and
# POSIX_FADV_DONTNEED, which the hameau user may do on the root-owned binary, where
# MADV_PAGEOUT does nothing for it), so RssFile is the code it runs since.
measure_idle_memory() {
    sleep "$IDLE_S"
    local status="/proc/$(cat "$work/server.pid")/status" rss_kib anon_kib file_kib
    rss_kib=$(awk '/^VmRSS:/ { print $2 }' "$status")
    anon_kib=$(awk '/^RssAnon:/ { print $2 }' "$status")
    file_kib=$(awk '/^RssFile:/ { print $2 }' "$status")
    echo "idle resident memory ${IDLE_S} s after start: VmRSS $rss_kib KiB ($((rss_kib / 1024)) MiB) = RssAnon $anon_kib KiB + RssFile $file_kib KiB (+ shmem); target $((IDLE_RSS_TARGET_KIB / 1024)) MiB"
    [ "$rss_kib" -le "$IDLE_RSS_TARGET_KIB" ] || fail "idle VmRSS $rss_kib KiB is above $IDLE_RSS_TARGET_KIB KiB"
    pass "idle VmRSS $rss_kib KiB, at most $IDLE_RSS_TARGET_KIB KiB"
}

# Logs in over IMAPS as the admin, trusting only the installed certificate and checking the
# host name, and waits (a few seconds at most) for a message whose subject holds SUBJECT.
imap_expect() {
    python3 - "$HOST" /var/lib/hameau/tls/cert.pem "$ADMIN" "$2" "$1" <<'EOF' || fail "IMAPS: no message \"$1\""
import imaplib, ssl, sys, time
host, ca, user, password, subject = sys.argv[1:]
context = ssl.create_default_context(cafile=ca)
assert context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED
deadline = time.monotonic() + 10
while True:
    with imaplib.IMAP4_SSL(host, 993, ssl_context=context, timeout=10) as imap:
        imap.login(user, password)
        imap.select("INBOX", readonly=True)
        status, found = imap.search(None, "SUBJECT", '"%s"' % subject)
        assert status == "OK", (status, found)
        if found[0].split():
            break
    if time.monotonic() > deadline:
        sys.exit("no message with subject %r in INBOX" % subject)
    time.sleep(0.2)
EOF
}

inside_cleanup() {
    local status=$?
    stop_server_pid_file "$work/server.pid"
    if [ $status -ne 0 ]; then
        [ -f "$work/server.log" ] && { echo "--- server log (last lines)" >&2; tail -n 30 "$work/server.log" >&2; }
        summary
    fi
    exit $status
}

if [ "${1:-}" = "--inside" ]; then
    shift
    inside "$@"
else
    main
fi
