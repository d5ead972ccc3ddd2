//! A job's worker: waits for the submission to commit, marks the job running, runs
//! `ingest_jsonl` with the job's arguments as the submitting role, and records the outcome.

use pgrx::pg_sys::panic::CaughtError;
use pgrx::pg_sys::{self, PgTryBuilder};
use pgrx::prelude::*;

use super::{JobStart, BACKEND_TYPE};
use crate::batch::shared::{backend_signals, copy_name};
use crate::error::{sqlstate_text, IngestError};
use crate::identity::{run_as_owner, set_guc_local, with_safe_search_path};

/// Registers the job's worker, waits until it runs (it then waits for the submitting
/// transaction), and returns its pid. It belongs to no session: it outlives the submitting one.
pub fn launch(start: &JobStart) -> i32 {
    unsafe {
        let mut w: pg_sys::BackgroundWorker = std::mem::zeroed();
        copy_name(&mut w.bgw_name, &format!("pg_ingest job {}", start.job_id));
        copy_name(&mut w.bgw_type, BACKEND_TYPE);
        copy_name(&mut w.bgw_library_name, "pg_ingest");
        copy_name(&mut w.bgw_function_name, "pg_ingest_job_worker");
        w.bgw_flags = (pg_sys::BGWORKER_SHMEM_ACCESS | pg_sys::BGWORKER_BACKEND_DATABASE_CONNECTION) as i32;
        w.bgw_start_time = pg_sys::BgWorkerStartTime::BgWorkerStart_RecoveryFinished;
        w.bgw_restart_time = pg_sys::BGW_NEVER_RESTART;
        // told when it starts and when it exits (the worker goes on if this session ends)
        w.bgw_notify_pid = pg_sys::MyProcPid;
        std::ptr::copy_nonoverlapping(
            (start as *const JobStart).cast::<u8>(),
            w.bgw_extra.as_mut_ptr().cast::<u8>(),
            std::mem::size_of::<JobStart>(),
        );
        let mut handle: *mut pg_sys::BackgroundWorkerHandle = std::ptr::null_mut();
        if !pg_sys::RegisterDynamicBackgroundWorker(&mut w, &mut handle) {
            IngestError::new(
                PgSqlErrorCode::ERRCODE_CONFIGURATION_LIMIT_EXCEEDED,
                "no background worker slot is free for the job",
            )
            .detail(format!("max_worker_processes is {} and every slot is taken.", { pg_sys::max_worker_processes }))
            .hint("Raise max_worker_processes (needs a restart), or run fewer jobs or batches at once.")
            .raise();
        }
        wait_until_running(handle, start.job_id)
    }
}

/// Waits until the postmaster has started the worker (it then waits for the submitting
/// transaction); its pid. Raises if it could not start.
fn wait_until_running(handle: *mut pg_sys::BackgroundWorkerHandle, job_id: i64) -> i32 {
    let mut pid = 0;
    let status = unsafe { pg_sys::WaitForBackgroundWorkerStartup(handle, &mut pid) };
    if status != pg_sys::BgwHandleStatus::BGWH_STARTED {
        IngestError::new(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("job {job_id} could not start: its background worker did not start"),
        )
        .hint("The server log says why.")
        .raise()
    }
    pid
}

/// Whether `pid` is a live job worker (from the postmaster's worker slots).
pub fn is_job_worker(pid: i32) -> bool {
    let kind = unsafe { pg_sys::GetBackgroundWorkerTypeByPid(pid) };
    !kind.is_null() && unsafe { std::ffi::CStr::from_ptr(kind) }.to_bytes() == BACKEND_TYPE.as_bytes()
}

fn in_transaction<R>(f: impl FnOnce() -> R) -> R {
    unsafe {
        pg_sys::SetCurrentStatementStartTimestamp();
        pg_sys::StartTransactionCommand();
        pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
    }
    let r = f();
    unsafe {
        pg_sys::PopActiveSnapshot();
        pg_sys::CommitTransactionCommand();
    }
    r
}

/// The job's arguments, once it is taken (state queued → running).
struct Job {
    search_path: String,
    path: String,
    target: Option<String>,
    columns: Option<pgrx::JsonB>,
    threads: Option<i32>,
    rest: Option<String>,
    epoch_unit: String,
    on_error: String,
    max_errors: Option<i64>,
    force: bool,
    writers: i32,
    /// The submitter's input settings (none for a job queued before 0.3.0).
    settings: Option<pgrx::JsonB>,
}

fn take(job_id: i64) -> Option<Job> {
    run_as_owner(|| {
        Spi::connect_mut(|c| {
            let rows = c.update(
                "UPDATE ingest.job_records SET state = 'running', started_at = clock_timestamp(), \
                        pid = pg_backend_pid(), server_started = pg_postmaster_start_time() \
                  WHERE job_id = $1 AND state = 'queued' \
                 RETURNING search_path, path, target, columns, threads, rest, epoch_unit, \
                           on_error, max_errors, force, writers, settings",
                None,
                &[job_id.into()],
            )?;
            let mut job = None;
            for r in rows {
                job = Some(Job {
                    search_path: r.get(1)?.unwrap_or_default(),
                    path: r.get(2)?.unwrap_or_default(),
                    target: r.get(3)?,
                    columns: r.get(4)?,
                    threads: r.get(5)?,
                    rest: r.get(6)?,
                    epoch_unit: r.get(7)?.unwrap_or_default(),
                    on_error: r.get(8)?.unwrap_or_default(),
                    max_errors: r.get(9)?,
                    force: r.get(10)?.unwrap_or(false),
                    writers: r.get(11)?.unwrap_or(1),
                    settings: r.get(12)?,
                });
            }
            Ok::<_, pgrx::spi::Error>(job)
        })
    })
    .unwrap_or_else(|e| crate::ledger::spi_error(e))
}

/// Runs the load as the job's role, and records it done in the same transaction.
fn run(job_id: i64, job: &Job) {
    let schema = with_safe_search_path(|| {
        Spi::get_one::<String>(
            "SELECT pg_catalog.quote_ident(n.nspname) FROM pg_catalog.pg_extension e \
               JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) e.extnamespace \
              WHERE e.extname OPERATOR(pg_catalog.=) 'pg_ingest'",
        )
    })
    .ok()
    .flatten()
    .unwrap_or_else(|| "public".to_owned());
    // the submitter's search_path (the target's name is resolved through it); the identity
    // is the worker's since it started
    set_guc_local("search_path", &job.search_path);
    if let Some(settings) = &job.settings {
        crate::ingest::writers::take_input_settings(&settings.0);
    }
    let results = Spi::get_one_with_args::<String>(
        &format!(
            "SELECT COALESCE(pg_catalog.jsonb_agg(pg_catalog.to_jsonb(r)), '[]')::pg_catalog.text \
               FROM {schema}.ingest_jsonl($1, \
               target => $2::pg_catalog.regclass, columns => $3, threads => $4, rest => $5, epoch_unit => $6, \
               on_error => $7, max_errors => $8, force => $9, writers => $10) r"
        ),
        &[
            job.path.as_str().into(),
            job.target.clone().into(),
            job.columns.as_ref().map(|j| pgrx::JsonB(j.0.clone())).into(),
            job.threads.into(),
            job.rest.clone().into(),
            job.epoch_unit.as_str().into(),
            job.on_error.as_str().into(),
            job.max_errors.into(),
            job.force.into(),
            job.writers.into(),
        ],
    )
    .unwrap_or_else(|e| crate::ledger::spi_error(e))
    .unwrap_or_else(|| "[]".to_owned());
    run_as_owner(|| {
        Spi::run_with_args(
            "UPDATE ingest.job_records SET state = 'done', finished_at = clock_timestamp(), results = $2::jsonb \
              WHERE job_id = $1",
            &[job_id.into(), results.as_str().into()],
        )
    })
    .unwrap_or_else(|e| crate::ledger::spi_error(e));
}

fn record_failure(job_id: i64, code: &str, message: &str) {
    let state = if code == "57014" { "cancelled" } else { "failed" };
    in_transaction(|| {
        run_as_owner(|| {
            Spi::run_with_args(
                "UPDATE ingest.job_records SET state = $2, finished_at = clock_timestamp(), error = $3, sqlstate = $4 \
                  WHERE job_id = $1",
                &[job_id.into(), state.into(), message.into(), code.into()],
            )
        })
        .unwrap_or_else(|e| crate::ledger::spi_error(e));
    });
}

/// The job worker's entry point (bgw_function_name); its JobStart is in bgw_extra.
#[pgrx::pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pg_ingest_job_worker(_arg: pg_sys::Datum) {
    backend_signals();
    let start = unsafe { ((*pg_sys::MyBgworkerEntry).bgw_extra.as_ptr() as *const JobStart).read_unaligned() };
    start.caller.become_in_worker();
    let job_id = start.job_id;
    let outcome = PgTryBuilder::new(|| {
        // the submission's transaction must end first: then the job row is there (commit) or
        // not (rollback)
        in_transaction(|| unsafe {
            pg_sys::XactLockTableWait(
                start.submitter_xid,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                pg_sys::XLTW_Oper::XLTW_None,
            )
        });
        let Some(job) = in_transaction(|| take(job_id)) else { return Ok(()) };
        in_transaction(|| run(job_id, &job));
        Ok(())
    })
    .catch_others(|e| {
        let (code, message) = match &e {
            CaughtError::PostgresError(r) | CaughtError::ErrorReport(r) => {
                (sqlstate_text(r.sql_error_code()), r.message().to_owned())
            }
            CaughtError::RustPanic { ereport, .. } => ("XX000".to_owned(), ereport.message().to_owned()),
        };
        unsafe {
            pg_sys::AbortCurrentTransaction();
            pg_sys::MemoryContextSwitchTo(pg_sys::TopMemoryContext);
            // a cancel that arrived while aborting must not cancel the bookkeeping too
            pg_sys::QueryCancelPending = 0;
        }
        Err((code, message))
    })
    .execute();
    if let Err((code, message)) = outcome {
        record_failure(job_id, &code, &message);
    }
}
