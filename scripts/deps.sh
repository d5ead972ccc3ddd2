#!/usr/bin/env bash
# Installs what is missing, and only that: Debian packages, the PostgreSQL server of $PG (see
# server.sh), cargo-pgrx, `cargo pgrx init`.
source "$(dirname "$0")/common.sh"

packages=(libclang-dev clang pkg-config libssl-dev openssl sudo
          # the end-to-end tests drive real clients: psql (with the server), psycopg 3, gzip and zstd
          python3 python3-psycopg gzip zstd
          # make package
          dpkg-dev)
install_packages "${packages[@]}"
"$REPO/scripts/server.sh" install

if ! cargo pgrx --version 2>/dev/null | grep -q " $PGRX_VERSION\$"; then
    say "installing cargo-pgrx $PGRX_VERSION (takes about 5 minutes)"
    cargo install cargo-pgrx --version "$PGRX_VERSION" --locked
fi

# `cargo pgrx init` writes the whole configuration: keep the majors it already knows.
pgrx_config=${PGRX_HOME:-$HOME/.pgrx}/config.toml
if ! grep -qs "^pg$PG_MAJOR = \"$PG_CONFIG\"" "$pgrx_config"; then
    args=()
    for major in $SUPPORTED_MAJORS; do
        [ "$major" = "$PG_MAJOR" ] && continue
        known=$(sed -n "s/^pg$major = \"\(.*\)\"$/\1/p" "$pgrx_config" 2>/dev/null)
        [ -n "$known" ] && [ -x "$known" ] && args+=(--pg$major "$known")
    done
    say "cargo pgrx init --pg$PG_MAJOR $PG_CONFIG ${args[*]}"
    cargo pgrx init --pg$PG_MAJOR "$PG_CONFIG" "${args[@]}"
fi
say "dependencies are installed (PostgreSQL $PG_MAJOR)"
