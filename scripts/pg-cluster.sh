#!/usr/bin/env bash
# A private PostgreSQL cluster for the tests: never the system's, never port 5432.
#
#   scripts/pg-cluster.sh start DIR   creates and starts a cluster in DIR (an empty or
#                                     missing directory) on a free loopback port, and
#                                     prints its URL (postgresql://hameau:...@127.0.0.1:PORT/hameau)
#   scripts/pg-cluster.sh stop DIR    stops it (the files stay: remove DIR)
#   scripts/pg-cluster.sh standby PRIMARY DIR
#                                     makes DIR a streaming standby of the cluster in
#                                     PRIMARY (pg_basebackup), starts it on a free port,
#                                     makes it the primary's synchronous standby (a commit
#                                     returns once the standby has it), and prints its port
#   scripts/pg-cluster.sh kill DIR    stops it at once, as a crash would (immediate mode)
#   scripts/pg-cluster.sh promote DIR makes a standby the primary
#
# PostgreSQL refuses to run as root: run as root, the cluster belongs to the `postgres`
# user (made by Debian's package). The binaries are PostgreSQL 15's from Debian unless
# HAMEAU_PG_BIN names another directory (PostgreSQL 18 from npm, say).
set -euo pipefail
action=${1:?usage: pg-cluster.sh start|stop|standby|kill|promote DIR}
dir=${2:?usage: pg-cluster.sh start|stop|standby|kill|promote DIR}
bin=${HAMEAU_PG_BIN:-/usr/lib/postgresql/15/bin}
if [ ! -x "$bin/postgres" ]; then
    echo "pg-cluster: no PostgreSQL in $bin (apt-get install postgresql-15, or set HAMEAU_PG_BIN)" >&2
    exit 1
fi
as_owner() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
case "$action" in
start)
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    [ "$(id -u)" = 0 ] && chown postgres: "$dir"
    password=$(head -c 18 /dev/urandom | base64 | tr '+/' '-_')
    printf '%s\n' "$password" > "$dir/password"
    [ "$(id -u)" = 0 ] && chown postgres: "$dir/password"
    chmod 600 "$dir/password"
    as_owner "$bin/initdb" -D "$dir/data" -U hameau --pwfile="$dir/password" -A scram-sha-256 \
        -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
    # A free port: the kernel's choice for a socket bound to port 0.
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    # Many test processes at once, each with its pool and sessions: 500 connections.
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 start \
        -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=500 -c shared_buffers=128MB" \
        >/dev/null || { cat "$dir/postgres.log" >&2; exit 1; }
    # The npm package of PostgreSQL 18 has no psql: Debian's client then (any version).
    psql="$bin/psql"; [ -x "$psql" ] || psql=psql
    PGPASSWORD=$password "$psql" -q -h 127.0.0.1 -p "$port" -U hameau -d postgres -c "CREATE DATABASE hameau"
    echo "postgresql://hameau:$password@127.0.0.1:$port/hameau"
    ;;
stop)
    if [ -f "$dir/data/postmaster.pid" ]; then
        as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
    fi
    ;;
standby)
    primary=$(cd "$dir" && pwd)
    standby=${3:?usage: pg-cluster.sh standby PRIMARY DIR}
    mkdir -p "$standby"
    standby=$(cd "$standby" && pwd)
    [ "$(id -u)" = 0 ] && chown postgres: "$standby"
    password=$(cat "$primary/password")
    primary_port=$(sed -n 4p "$primary/data/postmaster.pid")
    cp -p "$primary/password" "$standby/password"
    as_owner env PGPASSWORD="$password" "$bin/pg_basebackup" -h 127.0.0.1 -p "$primary_port" \
        -U hameau -D "$standby/data" -R -X stream -c fast >"$standby/basebackup.log" 2>&1 \
        || { cat "$standby/basebackup.log" >&2; exit 1; }
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    as_owner "$bin/pg_ctl" -D "$standby/data" -l "$standby/postgres.log" -w -t 60 start \
        -o "-p $port -k $standby -c listen_addresses=127.0.0.1 -c max_connections=500 -c shared_buffers=128MB -c cluster_name=standby" \
        >/dev/null || { cat "$standby/postgres.log" >&2; exit 1; }
    psql="$bin/psql"; [ -x "$psql" ] || psql=psql
    # Set on the primary only, after the base backup: the standby, once promoted, has no
    # standby of its own to wait for.
    PGPASSWORD=$password "$psql" -q -h 127.0.0.1 -p "$primary_port" -U hameau -d postgres \
        -c "ALTER SYSTEM SET synchronous_standby_names = '*'" -c "SELECT pg_reload_conf()" >/dev/null
    for _ in $(seq 1 100); do
        state=$(PGPASSWORD=$password "$psql" -Atq -h 127.0.0.1 -p "$primary_port" -U hameau -d postgres \
            -c "SELECT sync_state FROM pg_stat_replication")
        [ "$state" = sync ] && break
        sleep 0.1
    done
    [ "$state" = sync ] || { echo "pg-cluster: the standby is not synchronous ($state)" >&2; exit 1; }
    echo "$port"
    ;;
kill)
    if [ -f "$dir/data/postmaster.pid" ]; then
        as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null
    fi
    ;;
promote)
    as_owner "$bin/pg_ctl" -D "$dir/data" -w promote >/dev/null
    ;;
*)
    echo "usage: pg-cluster.sh start|stop|standby|kill|promote DIR" >&2
    exit 2
    ;;
esac
