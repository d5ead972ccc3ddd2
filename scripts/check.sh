#!/usr/bin/env bash
# The checks CI runs before the tests: formatting, and clippy with warnings as errors on every
# crate and target (the extension's #[pg_test]s included). `PG=17 make check` lints the
# extension as built for 17.
source "$(dirname "$0")/common.sh"
cd "$REPO"
rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
say "cargo fmt --check"
cargo fmt --all -- --check
if [ "$PG_MAJOR" = 15 ]; then
    say "cargo clippy --all-targets -- -D warnings"
    cargo clippy --locked --workspace --all-targets -- -D warnings
    cargo clippy --locked -p pg_ingest --all-targets --features pg_test -- -D warnings
else
    # the other crates do not depend on the major; the extension's code for it (pg_compat.rs)
    say "cargo clippy -p pg_ingest --features pg$PG_MAJOR -- -D warnings"
    cargo clippy --locked -p pg_ingest --all-targets --no-default-features --features "pg$PG_MAJOR pg_test" -- -D warnings
fi
say "checks passed"
