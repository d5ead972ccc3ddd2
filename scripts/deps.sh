#!/usr/bin/env bash
# Installs what is missing, and only that: Debian packages, cargo-pgrx, `cargo pgrx init`.
source "$(dirname "$0")/common.sh"

packages=(postgresql-$PG_MAJOR postgresql-server-dev-$PG_MAJOR postgresql-$PG_MAJOR-cron
          libclang-dev clang pkg-config libssl-dev openssl sudo
          # the end-to-end tests drive real clients: psql (with the server), psycopg 3, gzip and zstd
          python3 python3-psycopg gzip zstd)
install_packages "${packages[@]}"

if ! cargo pgrx --version 2>/dev/null | grep -q " $PGRX_VERSION\$"; then
    say "installing cargo-pgrx $PGRX_VERSION (takes about 5 minutes)"
    cargo install cargo-pgrx --version "$PGRX_VERSION" --locked
fi

pgrx_config=${PGRX_HOME:-$HOME/.pgrx}/config.toml
if ! grep -qs "pg$PG_MAJOR = \"$PG_CONFIG\"" "$pgrx_config"; then
    say "cargo pgrx init --pg$PG_MAJOR $PG_CONFIG"
    cargo pgrx init --pg$PG_MAJOR "$PG_CONFIG"
fi
say "dependencies are installed"
