#!/usr/bin/env bash
# Builds in release mode; installs the extension into the system PostgreSQL and the
# pg-ingest binary into /usr/local/bin (or $BINDIR).
source "$(dirname "$0")/common.sh"
BINDIR=${BINDIR:-/usr/local/bin}

say "building and installing the pg_ingest extension (release)"
(cd "$REPO/extension" && as_root env "PATH=$PATH" "HOME=$HOME" cargo pgrx install --release --pg-config "$PG_CONFIG")

say "building pg-ingest (release)"
(cd "$REPO" && cargo build --release --locked -p pg_ingest_client)
as_root install -m 0755 "$REPO/target/release/pg-ingest" "$BINDIR/pg-ingest"
say "installed: $("$BINDIR/pg-ingest" --version) in $BINDIR"
