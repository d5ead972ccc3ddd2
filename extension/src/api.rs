//! The SQL-callable functions. They stay thin: the work is in the modules they call.

use pgrx::prelude::*;
use pgrx::JsonB;

use crate::regclass::Regclass;

use crate::ingest::{self, LoadOptions};

/// The version of the pg_ingest library loaded in this backend.
#[pg_extern(immutable, parallel_safe)]
fn pg_ingest_version() -> &'static str {
    pg_ingest_core::VERSION
}

/// Loads a JSON-lines file on the server into a table through COPY FROM, parsing it on
/// several threads. `path` may be a glob (`/data/in/*.jsonl`): each matching file is loaded,
/// in name order, in this transaction. One result row per file.
// The SQL signature: named arguments with defaults, and the result row spelled out for pgrx.
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
#[pg_extern(volatile, parallel_unsafe)]
fn ingest_jsonl(
    path: &str,
    target: default!(Option<Regclass>, "NULL"),
    columns: default!(Option<JsonB>, "NULL"),
    threads: default!(Option<i32>, "NULL"),
    rest: default!(Option<&str>, "NULL"),
    epoch_unit: default!(&str, "'s'"),
    on_error: default!(&str, "'stop'"),
    max_errors: default!(Option<i64>, "NULL"),
    force: default!(bool, false),
    writers: default!(i32, 1),
    format: default!(&str, "'auto'"),
    on_conflict: default!(Option<&str>, "NULL"),
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
        name!(load_id, i64),
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
        format: ingest::parse_format(format),
        on_conflict: on_conflict.map(ingest::upsert::OnConflict::parse),
    };
    // Listing a server directory is reading it: the same permission as reading its files.
    ingest::target::check_file_permission();
    opts.check();
    let writers = check_writers(writers);
    ingest::upsert::check_writers(opts.on_conflict, writers);
    let target = target.map(|t| t.0);
    let results: Vec<_> = ingest::paths::expand(path)
        .iter()
        .map(|file| {
            let r = ingest::ingest_file(file, target, &opts, writers);
            (
                r.file,
                r.target,
                r.status,
                r.lines,
                r.rows_inserted,
                r.rows_rejected,
                r.lines_skipped,
                r.bytes,
                r.seconds,
                r.load_id,
            )
        })
        .collect();
    TableIterator::new(results)
}

/// Runs each query in its own transaction in up to `workers` background workers, as the
/// calling role with its search_path; one row per query, in the order they complete.
#[allow(clippy::type_complexity)]
#[pg_extern(volatile, parallel_unsafe)]
fn run_batch(
    queries: Vec<Option<String>>,
    workers: default!(i32, 4),
    stop_on_error: default!(bool, false),
    timeout: default!(Option<pgrx::datum::Interval>, "NULL"),
    results: default!(bool, false),
) -> TableIterator<
    'static,
    (
        name!(query_no, i32),
        name!(status, String),
        name!(rows, i64),
        name!(seconds, f64),
        name!(error, Option<String>),
        name!(sqlstate, Option<String>),
        name!(result, Option<JsonB>),
        name!(truncated, Option<bool>),
    ),
> {
    use crate::error::IngestError;
    if workers < 1 {
        IngestError::new(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("workers must be at least 1, not {workers}"),
        )
        .raise();
    }
    let queries: Vec<String> = queries.into_iter().map(|q| q.unwrap_or_default()).collect();
    let timeout = timeout.map(|t| {
        let micros = t.as_micros();
        if micros <= 0 {
            IngestError::new(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, "timeout must be positive").raise();
        }
        std::time::Duration::from_micros(micros as u64)
    });
    if queries.is_empty() {
        return TableIterator::new(Vec::new());
    }
    let workers = (workers as usize).min(crate::gucs::max_batch_workers());
    TableIterator::new(crate::batch::Batch::start(queries, workers, stop_on_error, timeout, results, None))
}

/// `chunks` ranges (lo, hi, inclusive) of an integer column that split the table's rows
/// about evenly: one query per chunk for run_batch.
#[pg_extern(stable, parallel_safe)]
fn chunk_ranges(
    target: Regclass,
    column: &str,
    chunks: i32,
) -> TableIterator<'static, (name!(chunk, i32), name!(lo, i64), name!(hi, i64))> {
    TableIterator::new(crate::batch::chunk_ranges(target.0, column, chunks))
}

/// Starts `ingest_jsonl` with these arguments in a background worker, as the calling role,
/// once this transaction commits; returns the job id at once. `ingest.jobs` follows it.
#[pg_extern(volatile, parallel_unsafe)]
#[allow(clippy::too_many_arguments)]
fn ingest_jsonl_async(
    path: &str,
    target: default!(Option<Regclass>, "NULL"),
    columns: default!(Option<JsonB>, "NULL"),
    threads: default!(Option<i32>, "NULL"),
    rest: default!(Option<&str>, "NULL"),
    epoch_unit: default!(&str, "'s'"),
    on_error: default!(&str, "'stop'"),
    max_errors: default!(Option<i64>, "NULL"),
    force: default!(bool, false),
    writers: default!(i32, 1),
) -> i64 {
    let opts = LoadOptions {
        columns: columns.map(|j| j.0),
        rest: rest.map(str::to_owned),
        threads,
        epoch_unit: epoch_unit.to_owned(),
        on_error: on_error.to_owned(),
        max_errors,
        force,
        format: pg_ingest_core::input::Format::Auto,
        on_conflict: None,
    };
    opts.check();
    let writers = check_writers(writers);
    let target = target.map(|t| {
        crate::identity::with_safe_search_path(|| {
            Spi::get_one_with_args::<String>("SELECT $1::pg_catalog.regclass::pg_catalog.text", &[t.0.into()])
        })
        .ok()
        .flatten()
        .unwrap_or_default()
    });
    crate::jobs::submit(path, target, &opts, writers)
}

/// Stops a background load: a queued job never starts, a running one is cancelled and its
/// rows roll back. False if the job had already ended.
#[pg_extern(volatile, parallel_unsafe)]
fn cancel_job(job_id: i64) -> bool {
    crate::jobs::cancel(job_id)
}

/// Waits until a background load ends (at most `timeout`), and returns its result rows, as
/// `ingest_jsonl` would have; a failed or cancelled job raises its error.
#[allow(clippy::type_complexity)]
#[pg_extern(volatile, parallel_unsafe)]
fn wait_job(
    job_id: i64,
    timeout: default!(Option<pgrx::datum::Interval>, "NULL"),
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
        name!(load_id, i64),
    ),
> {
    let timeout = timeout.map(|t| std::time::Duration::from_micros(t.as_micros().max(0) as u64));
    TableIterator::new(crate::jobs::wait(job_id, timeout))
}

/// `writers` within 1 and pg_ingest.max_batch_workers.
fn check_writers(writers: i32) -> usize {
    let max = crate::gucs::max_batch_workers();
    if writers < 1 || writers as usize > max {
        crate::error::IngestError::new(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("writers must be between 1 and {max} (pg_ingest.max_batch_workers), not {writers}"),
        )
        .raise();
    }
    writers as usize
}
