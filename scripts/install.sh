#!/usr/bin/env bash
# Builds in release mode; installs the extension into the system PostgreSQL and the
# pg-ingest binary into /usr/local/bin (or $BINDIR).
source "$(dirname "$0")/common.sh"
BINDIR=${BINDIR:-/usr/local/bin}

say "building and installing the pg_ingest extension (release)"
# cargo pgrx package builds into target/; the files are then put in place by renaming (see
# install_atomically): the private cluster may be running with the old library mapped
staged=$(build_extension)
libdir=$("$PG_CONFIG" --pkglibdir)
extdir=$("$PG_CONFIG" --sharedir)/extension
install_atomically "$staged$libdir/pg_ingest.so" "$libdir/pg_ingest.so" 0755
for f in "$staged$extdir"/pg_ingest*; do
    install_atomically "$f" "$extdir/$(basename "$f")" 0644
done

say "building pg-ingest (release)"
(cd "$REPO" && cargo build --release --locked -p pg_ingest_client)
as_root install -m 0755 "$REPO/target/release/pg-ingest" "$BINDIR/pg-ingest"
say "installed: $("$BINDIR/pg-ingest" --version) in $BINDIR"
