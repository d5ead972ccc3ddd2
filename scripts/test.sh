#!/usr/bin/env bash
# Every test suite: core and client unit tests, the extension's #[pg_test]s (in pgrx's own
# temporary cluster), then the end-to-end tests against the private cluster.
source "$(dirname "$0")/common.sh"
PGRX_TEST_DATA=$PG_DIR/pgrx-test-data

on_failure() {
    say "a test suite failed; the server logs follow"
    if [ -f "$PG_LOG" ]; then echo "--- private cluster ($PG_LOG), last 80 lines"; tail -n 80 "$PG_LOG"; fi
    for f in "$PGRX_TEST_DATA"/*.log "$REPO"/target/test-pgdata/*.log; do
        [ -f "$f" ] && { echo "--- pgrx test cluster ($f), last 80 lines"; tail -n 80 "$f"; }
    done
    exit 1
}
trap on_failure ERR

cd "$REPO"
say "unit tests: core and client"
cargo test --locked -p pg_ingest_core -p pg_ingest_client

say "extension tests: #[pg_test] in a temporary cluster"
mkdir -p "$PG_DIR" "$PGRX_TEST_DATA"
chown "$PG_OS_USER" "$PG_DIR" "$PGRX_TEST_DATA"
# `cargo pgrx test` writes its test build over the installed library in place: the private
# cluster (make demo's) maps that file, so it gets a file of its own first
detach_installed_library
(cd extension && cargo pgrx test pg$PG_MAJOR --runas "$PG_OS_USER" --pgdata "$PGRX_TEST_DATA")

# put the release build back; the private cluster restarts if its library changed
"$REPO/scripts/install.sh"
"$REPO/scripts/cluster.sh" start

# Citus: a coordinator and two workers, when Citus is installed or its source is at hand
if "$REPO/scripts/citus.sh" available; then
    "$REPO/scripts/citus.sh" start
    export PG_INGEST_CITUS_PORT=$CITUS_BASE_PORT
else
    say "the Citus tests will be skipped (see above)"
fi

# the packages, installed by tests/tests/packages.rs onto a server that never saw a build of this
# tree; on 15, the only major it was released for, the last release too, for the upgrade test
say "Debian packages (make package) for the package and upgrade tests"
"$REPO/scripts/package.sh"
export PG_INGEST_PACKAGES=$REPO/target/packages PG_INGEST_PRISTINE=$("$REPO/scripts/server.sh" pristine)
if [ "$PG_MAJOR" = 15 ]; then
    PG_INGEST_OLD_RELEASE=$("$REPO/scripts/old_release.sh" 0.1.0)
    export PG_INGEST_OLD_RELEASE
fi

# where the tests find this major's cluster and programs
export PG_INGEST_PG_MAJOR=$PG_MAJOR PG_INGEST_PG_BIN=$PG_BIN PG_INGEST_PG_DIR=$PG_DIR
say "end-to-end tests against the private cluster of PostgreSQL $PG_MAJOR ($PGHOST:$PGPORT)"
cargo test --locked -p pg_ingest_tests -- --test-threads 2
say "all test suites passed"
