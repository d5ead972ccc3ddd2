#!/usr/bin/env bash
# Citus for the tests: a coordinator and two workers on private ports (data in .pg/citus/).
#   citus.sh available | install | start | stop
# Citus is built from its source tarball, looked up in $CITUS_TARBALL, then ../shared/citus/ next to
# the repository, then /work/shared/citus/. `available` exits 3 (and says how to get Citus) without it.
source "$(dirname "$0")/common.sh"

CITUS_VERSION=13.2.2
CITUS_DIR=$PG_DIR/citus
CITUS_PORTS=($CITUS_BASE_PORT $((CITUS_BASE_PORT + 1)) $((CITUS_BASE_PORT + 2)))   # coordinator, worker 1, worker 2
CITUS_MAJORS="15 16 17"   # the PostgreSQL majors Citus 13 supports
CITUS_NAMES=(coordinator worker1 worker2)

tarball() {
    local c
    for c in "${CITUS_TARBALL:-}" "$REPO/../shared/citus/citus-$CITUS_VERSION.tar.gz" \
             "/work/shared/citus/citus-$CITUS_VERSION.tar.gz"; do
        [ -n "$c" ] && [ -f "$c" ] && { echo "$c"; return 0; }
    done
    return 1
}

installed() {
    [ -f "$("$PG_CONFIG" --pkglibdir)/citus.so" ] \
        && grep -qs "default_version = '${CITUS_VERSION%.*}" "$("$PG_CONFIG" --sharedir)/extension/citus.control"
}

available() {
    if [[ " $CITUS_MAJORS " != *" $PG_MAJOR "* ]]; then
        echo "Citus $CITUS_VERSION does not support PostgreSQL $PG_MAJOR (only $CITUS_MAJORS)" >&2
        return 3
    fi
    if installed || tarball >/dev/null; then return 0; fi
    echo "Citus $CITUS_VERSION is not installed and its source tarball was not found: set CITUS_TARBALL to" \
         "citus-$CITUS_VERSION.tar.gz (https://github.com/citusdata/citus/archive/refs/tags/v$CITUS_VERSION.tar.gz)" >&2
    return 3
}

install() {
    if installed; then say "Citus $CITUS_VERSION is installed"; return; fi
    local src; src=$(tarball) || { available; exit 3; }
    # what Citus's configure and build need
    install_packages liblz4-dev libzstd-dev libcurl4-openssl-dev libkrb5-dev make gcc
    local build; build=$(mktemp -d)
    say "building Citus $CITUS_VERSION from $src (about 3 minutes)"
    tar -xzf "$src" -C "$build"
    local tree; tree=$(find "$build" -maxdepth 1 -mindepth 1 -type d | head -1)
    local patch; patch=$(dirname "$src")/pg15.20-have_createdb_privilege.patch
    # PostgreSQL 15.20 exports have_createdb_privilege, which Citus 13.2.2 also defines for < 16.
    if [ -f "$patch" ] && grep -q "have_createdb_privilege" "$("$PG_CONFIG" --includedir-server)/commands/dbcommands.h"; then
        (cd "$tree" && patch -p1 -s < "$patch")
    fi
    (cd "$tree" && fresh_make_env ./configure -q --without-libcurl PG_CONFIG="$PG_CONFIG" >/dev/null \
        && fresh_make_env make -s -j"$(nproc)" >/dev/null && as_root env -u MAKELEVEL -u MAKEFLAGS -u MFLAGS -u MAKEOVERRIDES make -s install >/dev/null)
    # a PostgreSQL built by server.sh: Citus uses that PostgreSQL's libpq, next to it
    [ -n "$PG_ROOT" ] && patchelf --set-rpath '$ORIGIN' "$("$PG_CONFIG" --pkglibdir)/citus.so"
    rm -rf "$build"
    installed || { echo "Citus did not install" >&2; exit 1; }
    say "Citus $CITUS_VERSION installed"
}

node_running() { [ -f "$1/PG_VERSION" ] && as_pg "$PG_BIN/pg_ctl" -D "$1" status >/dev/null 2>&1; }

start() {
    install
    mkdir -p "$CITUS_DIR"
    chown "$PG_OS_USER" "$PG_DIR" "$CITUS_DIR"
    local i data port fresh=0
    for i in 0 1 2; do
        data=$CITUS_DIR/${CITUS_NAMES[$i]} port=${CITUS_PORTS[$i]}
        if [ ! -f "$data/PG_VERSION" ]; then
            fresh=1
            as_pg "$PG_BIN/initdb" -D "$data" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 >/dev/null
            cat >> "$data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = ''
shared_preload_libraries = 'citus, pg_ingest'
max_worker_processes = 32
max_connections = 100
shared_buffers = 128MB
logging_collector = off
log_min_messages = warning
lc_messages = 'C'
timezone = 'UTC'
CONF
            echo "host all all 127.0.0.1/32 trust" > "$data/pg_hba.conf"
        fi
        if node_running "$data" && [ "$(cat "$data/pg_ingest.so.md5" 2>/dev/null)" != "$(library_stamp)" ]; then
            say "the installed pg_ingest library changed since Citus node ${CITUS_NAMES[$i]} started: restarting it"
            as_pg "$PG_BIN/pg_ctl" -D "$data" -m fast -w stop >/dev/null
        fi
        node_running "$data" && continue
        library_stamp | as_pg tee "$data/pg_ingest.so.md5" >/dev/null
        as_pg env -u RUST_BACKTRACE "$PG_BIN/pg_ctl" -D "$data" -l "$CITUS_DIR/${CITUS_NAMES[$i]}.log" -w -t 60 start >/dev/null \
            || { tail -n 40 "$CITUS_DIR/${CITUS_NAMES[$i]}.log" >&2; exit 1; }
    done
    local q=("$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -U postgres -d postgres)
    for i in 0 1 2; do
        PGOPTIONS="-c client_min_messages=warning" "${q[@]}" -p "${CITUS_PORTS[$i]}" -c "CREATE EXTENSION IF NOT EXISTS citus"
    done
    if [ "$fresh" = 1 ] || ! "${q[@]}" -p "${CITUS_PORTS[0]}" -tAc "SELECT count(*) FROM pg_dist_node" | grep -q '^3$'; then
        "${q[@]}" -p "${CITUS_PORTS[0]}" -c "SELECT citus_set_coordinator_host('127.0.0.1', ${CITUS_PORTS[0]})" >/dev/null
        for i in 1 2; do
            "${q[@]}" -p "${CITUS_PORTS[0]}" -c "SELECT citus_add_node('127.0.0.1', ${CITUS_PORTS[$i]})" >/dev/null
        done
    fi
    # Created on the coordinator after the workers joined: Citus creates it on the workers too.
    # A rebuilt pg_ingest (new SQL) is created anew.
    PGOPTIONS="-c client_min_messages=warning" "${q[@]}" -p "${CITUS_PORTS[0]}" \
        -c "DROP EXTENSION IF EXISTS pg_ingest CASCADE" -c "CREATE EXTENSION pg_ingest"
    say "Citus ready: coordinator 127.0.0.1:${CITUS_PORTS[0]}, workers ${CITUS_PORTS[1]} ${CITUS_PORTS[2]}"
}

stop() {
    local i data
    for i in 0 1 2; do
        data=$CITUS_DIR/${CITUS_NAMES[$i]}
        node_running "$data" && as_pg "$PG_BIN/pg_ctl" -D "$data" -m fast -w stop >/dev/null
    done
    say "Citus nodes stopped"
}

case "${1:-}" in
    available) available ;;
    install) install ;;
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 available|install|start|stop" >&2; exit 2 ;;
esac
