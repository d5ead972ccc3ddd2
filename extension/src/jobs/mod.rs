//! Background loads: `ingest_jsonl_async` records a job and starts a dynamic background worker
//! that runs the load as the caller; `cancel_job` stops one; `wait_job` waits for one.
//!
//! The job row is written in the caller's transaction, and the worker first waits for that
//! transaction to end: a job starts when its submission commits, and a rolled-back submission
//! never runs. The worker records the outcome in the same transaction as the load (done), or
//! right after its rollback (failed, cancelled). `ingest.jobs` turns jobs a restart or a killed
//! worker ended into `failed`.

pub mod worker;

use std::time::{Duration, Instant};

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::batch::shared::{kill, SIGINT};
use crate::error::{sqlstate, IngestError};
use crate::identity::{current_search_path, has_privs_of_role, run_as_owner, with_safe_search_path, Caller};
use crate::ingest::LoadOptions;
use crate::ledger::spi_error;

/// The worker's `bgw_type`, as `pg_stat_activity.backend_type` shows it.
pub const BACKEND_TYPE: &str = "pg_ingest job";

/// What the worker needs before it can read the job row: in `bgw_extra`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct JobStart {
    pub job_id: i64,
    pub submitter_xid: pg_sys::TransactionId,
    /// Who the job runs as: the submitting role, in the submitter's security context.
    pub caller: Caller,
}

/// Records a job for `path` and starts its worker; the job id. The worker is running (it
/// waits for this transaction to commit) when this returns, and its pid is in the job row.
pub fn submit(path: &str, target: Option<String>, opts: &LoadOptions, writers: usize) -> i64 {
    crate::ingest::target::check_file_permission();
    let caller = Caller::current();
    let search_path = current_search_path();
    let job_id = run_as_owner(|| {
        Spi::get_one_with_args::<i64>(
            "INSERT INTO ingest.job_records (submitted_by, search_path, path, target, columns, threads, rest, \
                                             epoch_unit, on_error, max_errors, force, writers, settings) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING job_id",
            &[
                caller.user.into(),
                search_path.as_str().into(),
                path.into(),
                target.into(),
                opts.columns.clone().map(pgrx::JsonB).into(),
                opts.threads.into(),
                opts.rest.clone().into(),
                opts.epoch_unit.as_str().into(),
                opts.on_error.as_str().into(),
                opts.max_errors.into(),
                opts.force.into(),
                (writers as i32).into(),
                // the settings the submitter's input functions read: the job reads values as they would
                pgrx::JsonB(crate::ingest::writers::caller_input_settings()).into(),
            ],
        )
    })
    .unwrap_or_else(|e| spi_error(e))
    .expect("INSERT … RETURNING returns a row");
    let start = JobStart { job_id, submitter_xid: unsafe { pg_sys::GetTopTransactionId() }, caller };
    let pid = worker::launch(&start);
    run_as_owner(|| {
        Spi::run_with_args("UPDATE ingest.job_records SET pid = $2 WHERE job_id = $1", &[job_id.into(), pid.into()])
    })
    .unwrap_or_else(|e| spi_error(e));
    job_id
}

/// Stops a job: a queued one is marked cancelled, a running one's load is cancelled (its rows
/// roll back). False when the job had ended already. Who may cancel is checked first (the
/// record is looked up as the owner: row-level security hides others' jobs from the caller,
/// and as pg_cancel_backend does, a job that exists is told from one that does not); only then
/// is the job record changed.
pub fn cancel(job_id: i64) -> bool {
    let row = run_as_owner(|| {
        Spi::connect(|c| {
            let rows = c.select(
                "SELECT state, pid, submitted_by::pg_catalog.oid FROM ingest.job_records \
                  WHERE job_id OPERATOR(pg_catalog.=) $1",
                None,
                &[job_id.into()],
            )?;
            let mut found = None;
            for r in rows {
                found = Some((r.get::<String>(1)?.unwrap_or_default(), r.get::<i32>(2)?, r.get::<pg_sys::Oid>(3)?));
            }
            Ok::<_, pgrx::spi::Error>(found)
        })
    })
    .unwrap_or_else(|e| spi_error(e));
    let Some((_, pid, owner)) = row else {
        IngestError::new(PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT, format!("job {job_id} does not exist")).raise()
    };
    if !has_privs_of_role(owner.unwrap_or_default()) {
        IngestError::new(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("permission denied to cancel job {job_id}"),
        )
        .detail("Only roles with the privileges of the role that submitted it may cancel it.")
        .raise()
    }
    // a queued job is cancelled in the record (its worker then finds nothing to take)
    let cancelled_queued = run_as_owner(|| {
        Spi::connect_mut(|c| {
            c.update(
                "UPDATE ingest.job_records SET state = 'cancelled', finished_at = clock_timestamp(), \
                        error = 'cancelled before it started', sqlstate = '57014' \
                  WHERE job_id = $1 AND state = 'queued'",
                None,
                &[job_id.into()],
            )
            .map(|t| !t.is_empty())
        })
    })
    .unwrap_or_else(|e| spi_error(e));
    if cancelled_queued {
        return true;
    }
    let state = run_as_owner(|| {
        Spi::get_one_with_args::<String>("SELECT state FROM ingest.job_records WHERE job_id = $1", &[job_id.into()])
    })
    .unwrap_or_else(|e| spi_error(e))
    .unwrap_or_default();
    if state != "running" {
        return false;
    }
    let pid = pid.unwrap_or(0);
    let is_worker = worker::is_job_worker(pid);
    is_worker && unsafe { kill(pid, SIGINT) } == 0
}

/// Sleeps on the latch, waking for interrupts.
pub fn nap(d: Duration) {
    crate::batch::shared::wait_latch(d.as_millis() as i64);
    pgrx::check_for_interrupts!();
}

/// One result row of a job (the columns of `ingest_jsonl`).
pub type ResultRow = (String, String, String, i64, i64, i64, i64, i64, f64, i64);

/// Waits for a job to end; its result rows. A failed or cancelled job raises its error.
pub fn wait(job_id: i64, timeout: Option<Duration>) -> Vec<ResultRow> {
    // IsolationUsesXactSnapshot(), a macro in C
    if unsafe { pg_sys::XactIsoLevel } >= pg_sys::XACT_REPEATABLE_READ as i32 {
        IngestError::new(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            "wait_job needs READ COMMITTED: a REPEATABLE READ or SERIALIZABLE transaction never sees the job end",
        )
        .raise()
    }
    refuse_own_queued_job(job_id);
    let started = Instant::now();
    loop {
        // each query in a volatile function under READ COMMITTED takes a new snapshot; the
        // activity of other backends (is the worker alive?) is cached until cleared
        unsafe { pg_sys::pgstat_clear_snapshot() };
        let row = with_safe_search_path(|| {
            Spi::connect_mut(|c| {
                let rows = c.update(
                    "SELECT state, error, sqlstate, results::pg_catalog.text FROM ingest.jobs \
                  WHERE job_id OPERATOR(pg_catalog.=) $1",
                    None,
                    &[job_id.into()],
                )?;
                let mut found = None;
                for r in rows {
                    found = Some((
                        r.get::<String>(1)?.unwrap_or_default(),
                        r.get::<String>(2)?,
                        r.get::<String>(3)?,
                        r.get::<String>(4)?,
                    ));
                }
                Ok::<_, pgrx::spi::Error>(found)
            })
        })
        .unwrap_or_else(|e| spi_error(e));
        let Some((state, error, code, results)) = row else {
            IngestError::new(PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT, format!("job {job_id} does not exist"))
                .hint("A job submitted in a transaction that has not committed is not visible to others.")
                .raise()
        };
        match state.as_str() {
            "done" => return parse_results(results.as_deref().unwrap_or("[]")),
            "failed" | "cancelled" => {
                let code = match (state.as_str(), code.as_deref()) {
                    ("cancelled", _) => PgSqlErrorCode::ERRCODE_QUERY_CANCELED,
                    (_, Some(c)) => sqlstate(c),
                    _ => PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
                };
                IngestError::new(code, format!("job {job_id} {state}: {}", error.unwrap_or_default())).raise()
            }
            _ => {}
        }
        if let Some(t) = timeout {
            if started.elapsed() >= t {
                IngestError::new(
                    PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                    format!("job {job_id} is still {state} after {:.1} s", t.as_secs_f64()),
                )
                .hint("ingest.jobs shows its progress; wait_job again, or cancel_job.")
                .raise()
            }
        }
        nap(Duration::from_millis(100));
    }
}

/// A job submitted in this very transaction starts when it commits: waiting for it here
/// would wait forever.
fn refuse_own_queued_job(job_id: i64) {
    let xmin = with_safe_search_path(|| {
        Spi::get_one_with_args::<String>(
            "SELECT xmin::pg_catalog.text FROM ingest.job_records \
              WHERE job_id OPERATOR(pg_catalog.=) $1 AND state OPERATOR(pg_catalog.=) 'queued'",
            &[job_id.into()],
        )
    })
    .ok()
    .flatten()
    .and_then(|x| x.parse::<u32>().ok());
    if xmin.is_some_and(|x| unsafe { pg_sys::TransactionIdIsCurrentTransactionId(x.into()) }) {
        IngestError::new(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("job {job_id} was submitted in this transaction: it starts only when the transaction commits"),
        )
        .hint("COMMIT, then call wait_job.")
        .raise()
    }
}

fn parse_results(json: &str) -> Vec<ResultRow> {
    let rows: Vec<serde_json::Value> = serde_json::from_str(json).unwrap_or_default();
    rows.iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap_or_default().to_owned();
            let n = |k: &str| r[k].as_i64().unwrap_or(0);
            (
                s("file"),
                s("target"),
                s("status"),
                n("lines"),
                n("rows_inserted"),
                n("rows_rejected"),
                n("lines_skipped"),
                n("bytes"),
                r["seconds"].as_f64().unwrap_or(0.0),
                n("load_id"),
            )
        })
        .collect()
}
