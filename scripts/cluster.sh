#!/usr/bin/env bash
# The private cluster of PostgreSQL $PG: data in .pg/ of the repo (.pg17/, .pg18/ for 17 and 18),
# owned by the postgres OS user, on 127.0.0.1:$PGPORT (54329; 54317, 54318 for 17 and 18), trust
# auth (but for two test roles), TLS on, pg_cron preloaded.
#   cluster.sh start | stop | status | log
source "$(dirname "$0")/common.sh"

running() { [ -f "$PG_DATA/PG_VERSION" ] && as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; }

# postgres must be able to reach .pg/: every directory above it needs the search (x) bit.
make_reachable() {
    local d=$PG_DIR
    while d=$(dirname "$d") && [ "$d" != / ]; do
        if ! as_pg test -x "$d"; then
            say "letting the postgres user traverse $d (chmod o+x) to reach the cluster's data"
            chmod o+x "$d"
        fi
    done
}

# A self-signed certificate for TLS (CN localhost, also valid for 127.0.0.1), made once.
make_certificate() {
    local dir=$PG_DIR/tls
    [ -f "$dir/server.crt" ] && [ -f "$dir/server.key" ] && return
    mkdir -p "$dir"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj /CN=localhost \
        -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
        -keyout "$dir/server.key" -out "$dir/server.crt" 2>/dev/null
    chown -R "$PG_OS_USER" "$dir"
    chmod 600 "$dir/server.key"
    chmod 644 "$dir/server.crt"
}

write_config() {
    make_certificate
    cat > "$PG_DATA/pg_hba.conf" <<HBA
# Written by scripts/cluster.sh at every start: edit there, not here.
# The end-to-end tests check the client's TLS and password handling with two roles:
hostnossl all pgi_tls_only 127.0.0.1/32 reject
host      all pgi_password 127.0.0.1/32 scram-sha-256
host      all all          127.0.0.1/32 trust
HBA
    chown "$PG_OS_USER" "$PG_DATA/pg_hba.conf"
    cat > "$PG_DATA/pg_ingest_cluster.conf" <<CONF
# Written by scripts/cluster.sh at every start: edit there, not here.
listen_addresses = '127.0.0.1'
port = $PGPORT
unix_socket_directories = ''
# pg_ingest is preloaded so that its COPY hook (FORMAT jsonl) is there from a session's first statement
shared_preload_libraries = 'pg_cron, pg_ingest'
cron.database_name = 'postgres'
cron.host = '$PGHOST'
max_worker_processes = 64
max_parallel_workers = 8
max_connections = 200
shared_buffers = 512MB
max_wal_size = 4GB
fsync = on
logging_collector = off
log_line_prefix = '%m [%p] %q%u@%d '
log_min_messages = warning
lc_messages = 'C'
timezone = 'UTC'
ssl = on
ssl_cert_file = '$PG_DIR/tls/server.crt'
ssl_key_file = '$PG_DIR/tls/server.key'
CONF
    grep -q "^include 'pg_ingest_cluster.conf'" "$PG_DATA/postgresql.conf" \
        || echo "include 'pg_ingest_cluster.conf'" >> "$PG_DATA/postgresql.conf"
    chown "$PG_OS_USER" "$PG_DATA/pg_ingest_cluster.conf"
}

psql_q() { PGOPTIONS="-c client_min_messages=warning" "$PG_BIN/psql" -X -v ON_ERROR_STOP=1 -q "$@"; }

# Creates the extensions in database postgres. When the installed pg_ingest SQL has changed
# since it was created (a rebuild without a version bump), it is created anew.
ensure_extensions() {
    psql_q -d postgres -c "CREATE EXTENSION IF NOT EXISTS pg_cron"
    local script stamp
    script=$("$PG_CONFIG" --sharedir)/extension/pg_ingest--$(sed -n 's/^version = "\(.*\)"/\1/p' "$REPO/Cargo.toml" | head -1).sql
    stamp=$(md5sum < "$script" | cut -d' ' -f1)
    if [ "$(cat "$PG_DIR/pg_ingest.sql.md5" 2>/dev/null)" != "$stamp" ]; then
        psql_q -d postgres -c "DROP EXTENSION IF EXISTS pg_ingest" \
            || say "warning: pg_ingest has dependent objects in database postgres; keeping the old definition"
    fi
    psql_q -d postgres -c "CREATE EXTENSION IF NOT EXISTS pg_ingest"
    echo "$stamp" > "$PG_DIR/pg_ingest.sql.md5"
}

start() {
    mkdir -p "$PG_DIR"
    chown "$PG_OS_USER" "$PG_DIR"
    make_reachable
    if [ ! -f "$PG_DATA/PG_VERSION" ]; then
        say "initdb $PG_DATA"
        as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 >/dev/null
    fi
    if running && [ "$(cat "$PG_DIR/pg_ingest.so.md5" 2>/dev/null)" != "$(library_stamp)" ]; then
        say "the installed pg_ingest library changed since the private cluster started: restarting it"
        stop
    fi
    if running; then
        say "private cluster already running on $PGHOST:$PGPORT"
    else
        write_config
        say "starting the private cluster on $PGHOST:$PGPORT (log: $PG_LOG)"
        # Rust backtraces in the server environment would end up in every error's DETAIL.
        # the library it preloads, as it was when it started
        library_stamp > "$PG_DIR/pg_ingest.so.md5"
        if ! as_pg env -u RUST_BACKTRACE -u RUST_LIB_BACKTRACE "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t 60 start >/dev/null; then
            tail -n 40 "$PG_LOG" >&2
            exit 1
        fi
    fi
    ensure_extensions
    say "ready: psql -h $PGHOST -p $PGPORT -U $PGUSER postgres"
}

stop() {
    if running; then
        as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w stop >/dev/null
        say "private cluster stopped"
    else
        say "private cluster is not running"
    fi
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) if running; then echo running; else echo stopped; exit 3; fi ;;
    log) tail -n "${2:-80}" "$PG_LOG" ;;
    *) echo "usage: $0 start|stop|status|log [lines]" >&2; exit 2 ;;
esac
