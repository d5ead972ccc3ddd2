#!/usr/bin/env bash
# Debian packages in target/packages/: the extension for PostgreSQL $PG
# (postgresql-NN-pg-ingest: the library, control and SQL files where Debian's postgresql-NN looks
# for them) and the pg-ingest client (pg-ingest: /usr/bin/pg-ingest). Prints their paths.
source "$(dirname "$0")/common.sh"
OUT=$REPO/target/packages
VERSION=$(workspace_version)
ARCH=$(dpkg --print-architecture)
MAINTAINER="pg_ingest developers <pg-ingest@users.noreply.invalid>"
mkdir -p "$OUT"

# The Depends of the shared libraries a binary needs (as dpkg-shlibdeps would say it, simply):
# the package owning each, and for glibc the newest symbol version used.
library_depends() {
    local bin=$1 lib path pkg deps=() glibc
    for lib in $(readelf -d "$bin" | sed -n 's/.*NEEDED.*\[\(.*\)\]/\1/p'); do
        path=$(ldconfig -p | awk -v l="$lib" '$1 == l {print $NF; exit}')
        [ -n "$path" ] || continue
        pkg=$(dpkg -S "$(readlink -f "$path")" 2>/dev/null | head -1 | cut -d: -f1) || true
        [ -z "$pkg" ] && pkg=$(dpkg -S "$path" 2>/dev/null | head -1 | cut -d: -f1)
        [ -n "$pkg" ] || continue
        if [ "$pkg" = libc6 ]; then
            glibc=$(objdump -T "$bin" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -1)
            pkg="libc6 (>= $glibc)"
        fi
        [[ " ${deps[*]} " == *" $pkg "* ]] || deps+=("$pkg")
    done
    local IFS=,; echo "${deps[*]}" | sed 's/,/, /g'
}

# build_deb NAME DIR DEPENDS DESCRIPTION: DIR holds the files at their installed paths.
build_deb() {
    local name=$1 dir=$2 depends=$3 description=$4 deb
    mkdir -p "$dir/DEBIAN"
    cat > "$dir/DEBIAN/control" <<CONTROL
Package: $name
Version: $VERSION-1
Architecture: $ARCH
Maintainer: $MAINTAINER
Section: database
Priority: optional
Depends: $depends
Installed-Size: $(du -sk --exclude=DEBIAN "$dir" | cut -f1)
Description: $description
CONTROL
    deb=$OUT/${name}_$VERSION-1_$ARCH.deb
    dpkg-deb --root-owner-group -Zxz --build "$dir" "$deb" >/dev/null
    echo "$deb"
}

staging=$(mktemp -d)
trap 'rm -rf "$staging"' EXIT

say "building the extension for PostgreSQL $PG_MAJOR (release)"
staged=$(build_extension)
ext=$staging/ext
libdir=usr/lib/postgresql/$PG_MAJOR/lib
extdir=usr/share/postgresql/$PG_MAJOR/extension
mkdir -p "$ext/$libdir" "$ext/$extdir" "$ext/usr/share/doc/postgresql-$PG_MAJOR-pg-ingest"
install -m 0644 "$staged$("$PG_CONFIG" --pkglibdir)/pg_ingest.so" "$ext/$libdir/pg_ingest.so"
install -m 0644 "$staged$("$PG_CONFIG" --sharedir)"/extension/pg_ingest* "$ext/$extdir/"
install -m 0644 "$REPO/README.md" "$ext/usr/share/doc/postgresql-$PG_MAJOR-pg-ingest/README.md"
depends="postgresql-$PG_MAJOR, $(library_depends "$ext/$libdir/pg_ingest.so")"
build_deb "postgresql-$PG_MAJOR-pg-ingest" "$ext" "${depends%, }" \
    "parallel JSON-lines ingest for PostgreSQL $PG_MAJOR
 pg_ingest parses newline-delimited JSON files on many threads inside the server and writes
 the rows through PostgreSQL's own COPY machinery; it also runs query batches in background
 workers. Add pg_ingest to shared_preload_libraries, then CREATE EXTENSION pg_ingest."

say "building pg-ingest (release)"
(cd "$REPO" && cargo build --release --locked -p pg_ingest_client >/dev/null 2>&1)
cli=$staging/cli
mkdir -p "$cli/usr/bin" "$cli/usr/share/doc/pg-ingest"
install -m 0755 "$REPO/target/release/pg-ingest" "$cli/usr/bin/pg-ingest"
install -m 0644 "$REPO/README.md" "$cli/usr/share/doc/pg-ingest/README.md"
build_deb pg-ingest "$cli" "$(library_depends "$cli/usr/bin/pg-ingest")" \
    "command-line client for pg_ingest
 pg-ingest triggers JSON-lines loads and query batches on a PostgreSQL server with the
 pg_ingest extension, streams local files to it, and reports live progress."
