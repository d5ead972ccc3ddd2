//! The SQL-callable functions. They stay thin: the work is in the modules they call.

use pgrx::prelude::*;
use pgrx::{JsonB, PgRelation};

use crate::ingest::{self, LoadOptions};

/// The version of the pg_ingest library loaded in this backend.
#[pg_extern(immutable, parallel_safe)]
fn pg_ingest_version() -> &'static str {
    pg_ingest_core::VERSION
}

/// Loads a JSON-lines file on the server into a table through COPY FROM, parsing it on
/// several threads. One result row per file.
#[pg_extern(volatile, parallel_unsafe)]
fn ingest_jsonl(
    path: &str,
    target: default!(Option<PgRelation>, "NULL"),
    columns: default!(Option<JsonB>, "NULL"),
    threads: default!(Option<i32>, "NULL"),
    rest: default!(Option<&str>, "NULL"),
    epoch_unit: default!(&str, "'s'"),
    on_error: default!(&str, "'stop'"),
    max_errors: default!(Option<i64>, "NULL"),
    force: default!(bool, false),
) -> TableIterator<
    'static,
    (
        name!(file, String),
        name!(target, String),
        name!(status, String),
        name!(lines, i64),
        name!(rows_inserted, i64),
        name!(rows_rejected, i64),
        name!(lines_skipped, i64),
        name!(bytes, i64),
        name!(seconds, f64),
    ),
> {
    let opts = LoadOptions {
        columns: columns.map(|j| j.0),
        rest: rest.map(str::to_owned),
        threads,
        epoch_unit: epoch_unit.to_owned(),
        on_error: on_error.to_owned(),
        max_errors,
        force,
    };
    let r = ingest::ingest_file(path, target.map(|t| t.oid()), &opts);
    TableIterator::once((
        r.file,
        r.target,
        r.status.to_owned(),
        r.lines,
        r.rows_inserted,
        r.rows_rejected,
        r.lines_skipped,
        r.bytes,
        r.seconds,
    ))
}
