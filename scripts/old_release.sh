#!/usr/bin/env bash
# The files of an earlier release of the extension, built from its commit, for the upgrade test:
#   old_release.sh VERSION   prints a directory holding them at Debian's paths
#                            (usr/lib/postgresql/15/lib, usr/share/postgresql/15/extension)
# 0.1.0 was released for PostgreSQL 15 only. The build (a debug build: its speed does not matter
# here) is kept in $PG_INGEST_CACHE/releases, outside the clone; a commit always builds the same.
source "$(dirname "$0")/common.sh"
VERSION=${1:?usage: old_release.sh VERSION}
[ "$PG_MAJOR" = 15 ] || { echo "release $VERSION was built for PostgreSQL 15 only" >&2; exit 3; }
# A release is its commit, pinned here: a clone of main alone (a push does not carry tags) still has
# the history, not always the tag. Where the tag is present it must name the same commit.
case $VERSION in
    0.1.0) commit=009ecc086a75a62b9209b39476cafb8038a34fb8 ;;
    *) echo "no release $VERSION is pinned in $0" >&2; exit 2 ;;
esac
git -C "$REPO" cat-file -e "$commit^{commit}" 2>/dev/null \
    || { echo "release $VERSION's commit $commit is not in this clone's history (a shallow clone?)" >&2; exit 1; }
if tagged=$(git -C "$REPO" rev-parse --verify -q "v$VERSION^{commit}"); then
    [ "$tagged" = "$commit" ] || { echo "git tag v$VERSION is $tagged, not release $VERSION's $commit" >&2; exit 1; }
fi
out=$PG_CACHE/releases/pg_ingest-$VERSION-pg$PG_MAJOR-${commit:0:12}
if [ ! -f "$out/usr/lib/postgresql/$PG_MAJOR/lib/pg_ingest.so" ]; then
    as_root mkdir -p "$PG_CACHE/releases"
    src=$(mktemp -d)
    say "building pg_ingest $VERSION (commit ${commit:0:12}) for the upgrade test"
    git -C "$REPO" archive "$commit" | tar -x -C "$src"
    # its own target directory: the release's dependencies are its own
    (cd "$src/extension" && CARGO_TARGET_DIR="$src/target" cargo pgrx package --debug --pg-config "$PG_CONFIG" >/dev/null)
    rm -rf "$out.tmp" && mkdir -p "$out.tmp"
    cp -a "$src/target/debug/pg_ingest-pg$PG_MAJOR/." "$out.tmp/"
    [ -f "$out.tmp/usr/lib/postgresql/$PG_MAJOR/lib/pg_ingest.so" ] \
        || { echo "the build of $VERSION is not at Debian's paths: $(find "$out.tmp" -name pg_ingest.so)" >&2; exit 1; }
    mv "$out.tmp" "$out"
    rm -rf "$src"
fi
echo "$out"
