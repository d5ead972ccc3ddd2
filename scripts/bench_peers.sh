#!/usr/bin/env bash
# The client-side peers `make bench` runs beside pg_ingest (bench/peers.py: DuckDB read_json and
# polars scan_ndjson, written with ADBC's PostgreSQL driver) in a virtual environment of the
# bench's own, bench/.venv, with pinned versions from PyPI. Prints its python; exits 3 when it
# cannot be made (no PyPI): the bench then runs without the peers and says so.
source "$(dirname "$0")/common.sh"
venv=$REPO/bench/.venv
PEERS=(duckdb==2.0.1 polars==2.1.0 adbc-driver-postgresql==1.13.0 pyarrow==26.0.1)
ready() { "$venv/bin/python" -c 'import duckdb, polars, adbc_driver_postgresql, pyarrow' 2>/dev/null; }
if ! ready || [ "$(cat "$venv/.pinned" 2>/dev/null)" != "${PEERS[*]}" ]; then
    install_packages python3-venv python3-pip
    say "the bench's peers (${PEERS[*]}) into $venv"
    rm -rf "$venv"
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install -q --disable-pip-version-check "${PEERS[@]}" >&2 || { rm -rf "$venv"; exit 3; }
    echo "${PEERS[*]}" > "$venv/.pinned"
fi
ready || exit 3
echo "$venv/bin/python"
