#!/usr/bin/env bash
# The checks CI runs before the tests: formatting, and clippy with warnings as errors on every
# crate and target (the extension's #[pg_test]s included).
source "$(dirname "$0")/common.sh"
cd "$REPO"
rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
say "cargo fmt --check"
cargo fmt --all -- --check
say "cargo clippy --all-targets -- -D warnings"
cargo clippy --locked --workspace --all-targets -- -D warnings
cargo clippy --locked -p pg_ingest --all-targets --features pg_test -- -D warnings
say "checks passed"
