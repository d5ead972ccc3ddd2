//! `run_batch`: queries run concurrently in dynamic background workers, results streamed back
//! as each query completes.
//!
//! The leader (the caller's backend) puts the queries in a dynamic shared memory segment and
//! starts up to `workers` workers; each takes the next query, runs it in its own transaction
//! as the caller's role, and writes the result to the query's slot. The leader waits on its
//! latch, returns results in completion order, enforces per-query timeouts (by cancelling the
//! worker's query), and on `stop_on_error` starts no more and cancels what runs. Workers are
//! terminated on every exit path: when the batch ends, and when the caller's transaction
//! ends for any reason (cancel, error), through a reset callback on its memory context.

pub mod shared;
pub mod worker;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use pgrx::pg_sys;
use pgrx::PgSqlErrorCode;

use crate::error::IngestError;
use crate::identity::Caller;
use shared::{
    copy_name, kill, process_exists, Segment, Status, DONE, INTERRUPT_CANCEL, INTERRUPT_DEADLOCK, INTERRUPT_TIMEOUT,
    PENDING, RUNNING, SIGINT,
};

/// Worker handles, in the transaction's memory, for the end-of-transaction callback.
#[repr(C)]
struct Handles {
    n: usize,
    handles: [*mut pg_sys::BackgroundWorkerHandle; 64],
}

unsafe extern "C-unwind" fn terminate_workers(arg: *mut std::ffi::c_void) {
    let h = unsafe { &*(arg as *const Handles) };
    for &handle in &h.handles[..h.n] {
        unsafe { pg_sys::TerminateBackgroundWorker(handle) };
    }
}

/// A worker blocked by the caller's own transaction waits forever (the caller waits for it,
/// and PostgreSQL's deadlock detector does not see that wait): queries that have run this long
/// are checked this often, and such a query is cancelled with 40P01.
const LOCK_CHECK_AFTER: Duration = Duration::from_millis(500);
const LOCK_CHECK_EVERY: Duration = Duration::from_millis(500);

/// A worker's wait on a Citus node is seen only by asking every node (Citus's wait graph),
/// less often: queries that have run this long, checked this often.
const CITUS_LOCK_CHECK_AFTER: Duration = Duration::from_secs(2);
const CITUS_LOCK_CHECK_EVERY: Duration = Duration::from_secs(2);

/// Whether backend `pid` waits for a lock this backend holds: here, or (`citus`) on a Citus
/// node, where a worker's statement waits for rows this backend's transaction wrote there.
/// `warned`: whether Citus's wait graph was found unreadable already (said once per batch).
fn blocked_by_me(pid: i32, citus: bool, warned: &mut bool) -> bool {
    use pgrx::prelude::*;
    let here = crate::identity::with_safe_search_path(|| {
        Spi::get_one_with_args::<bool>(
            "SELECT pg_catalog.pg_backend_pid() OPERATOR(pg_catalog.=) ANY (pg_catalog.pg_blocking_pids($1))",
            &[pid.into()],
        )
    })
    .ok()
    .flatten()
    .unwrap_or(false);
    if here || !citus {
        return here;
    }
    match blocked_on_citus_nodes(pid) {
        Ok(blocked) => blocked,
        Err(why) => {
            if !std::mem::replace(warned, true) {
                pgrx::warning!(
                    "could not read Citus's wait graph: {why}; a worker waiting on a Citus node for rows this \
                     transaction wrote there waits until its statement_timeout"
                );
            }
            false
        }
    }
}

/// Whether Citus's wait graph has backend `pid` (of this node) waiting for this backend's
/// distributed transaction on some node; an error when it cannot be read. It is read as the
/// extension's owner (a REVOKE of Citus's function from PUBLIC must not make a blocked worker
/// wait forever; what comes out is only whether this backend's own worker waits for it), in a
/// subtransaction of its own; only a cancel goes on.
fn blocked_on_citus_nodes(pid: i32) -> Result<bool, String> {
    use pgrx::prelude::*;
    let present = crate::identity::with_safe_search_path(|| {
        Spi::get_one::<bool>(
            "SELECT pg_catalog.to_regprocedure('citus_internal.global_blocked_processes()') IS NOT NULL \
               AND pg_catalog.to_regprocedure('pg_catalog.citus_calculate_gpid(integer, integer)') IS NOT NULL",
        )
    });
    if present.ok().flatten() != Some(true) {
        return Ok(false);
    }
    crate::ingest::skip::in_subtransaction(|| {
        pgrx::pg_sys::PgTryBuilder::new(|| {
            crate::identity::run_as_owner(|| {
                Spi::get_one_with_args::<bool>(
                    "SELECT EXISTS (SELECT FROM citus_internal.global_blocked_processes() b \
                      WHERE b.blocking_global_pid OPERATOR(pg_catalog.=) pg_catalog.citus_backend_gpid() \
                        AND b.waiting_global_pid OPERATOR(pg_catalog.=) pg_catalog.citus_calculate_gpid( \
                            pg_catalog.citus_nodeid_for_gpid(pg_catalog.citus_backend_gpid()), $1))",
                    &[pid.into()],
                )
            })
            .map(|found| found.unwrap_or(false))
            .map_err(|e| e.to_string())
        })
        .catch_others(|e| match &e {
            pgrx::pg_sys::panic::CaughtError::PostgresError(r) | pgrx::pg_sys::panic::CaughtError::ErrorReport(r) => {
                if r.sql_error_code() == pgrx::PgSqlErrorCode::ERRCODE_QUERY_CANCELED {
                    e.rethrow()
                }
                Err(r.message().to_owned())
            }
            _ => Err("a panic".to_owned()),
        })
        .execute()
    })
}

/// The most workers one batch may start.
pub const MAX_WORKERS: usize = 64;

pub struct Batch {
    dsm: *mut pg_sys::dsm_segment,
    seg: Segment,
    handles: *mut Handles,
    reported: Vec<bool>,
    running_since: Vec<Option<Instant>>,
    timeout: Option<Duration>,
    stop_on_error: bool,
    left: usize,
    last_lock_check: Instant,
    last_citus_check: Instant,
    citus_check_warned: bool,
}

/// One result row: query number (from 1), status, rows, seconds, error, sqlstate.
pub type BatchRow = (i32, String, i64, f64, Option<String>, Option<String>, Option<pgrx::JsonB>, Option<bool>);

impl Batch {
    pub fn start(
        queries: Vec<String>,
        workers: usize,
        stop_on_error: bool,
        timeout: Option<Duration>,
        results: bool,
        writers_of: Option<i64>,
    ) -> Self {
        let n = queries.len();
        let search_path = crate::identity::current_search_path();
        let results = if results { crate::gucs::batch_result_bytes() } else { 0 };
        unsafe {
            let size = Segment::size(&search_path, &queries, results);
            let dsm = pg_sys::dsm_create(size, 0);
            let seg = Segment { base: pg_sys::dsm_segment_address(dsm) as *mut u8 };
            std::ptr::write_bytes(seg.base, 0, size);
            let latch = std::ptr::addr_of_mut!((*pg_sys::MyProc).procLatch) as usize;
            seg.init(Caller::current(), pg_sys::MyProcPid, latch, stop_on_error, &search_path, &queries, results);
            seg.header_mut().writers_of = writers_of.unwrap_or(0);

            // handles live in the transaction's memory; its end terminates the workers
            let old = pg_sys::MemoryContextSwitchTo(pg_sys::CurTransactionContext);
            let handles = pg_sys::palloc0(std::mem::size_of::<Handles>()) as *mut Handles;
            let callback = pg_sys::palloc0(std::mem::size_of::<pg_sys::MemoryContextCallback>())
                as *mut pg_sys::MemoryContextCallback;
            (*callback).func = Some(terminate_workers);
            (*callback).arg = handles as *mut std::ffi::c_void;
            pg_sys::MemoryContextRegisterResetCallback(pg_sys::CurTransactionContext, callback);
            let want = workers.min(n).min(MAX_WORKERS);
            for _ in 0..want {
                let mut w: pg_sys::BackgroundWorker = std::mem::zeroed();
                let leader = pg_sys::MyProcPid;
                copy_name(&mut w.bgw_name, &format!("pg_ingest batch worker for PID {leader}"));
                copy_name(&mut w.bgw_type, "pg_ingest batch worker");
                copy_name(&mut w.bgw_library_name, "pg_ingest");
                copy_name(&mut w.bgw_function_name, "pg_ingest_batch_worker");
                w.bgw_flags = (pg_sys::BGWORKER_SHMEM_ACCESS | pg_sys::BGWORKER_BACKEND_DATABASE_CONNECTION) as i32;
                w.bgw_start_time = pg_sys::BgWorkerStartTime::BgWorkerStart_RecoveryFinished;
                w.bgw_restart_time = pg_sys::BGW_NEVER_RESTART;
                w.bgw_main_arg = pg_sys::Datum::from(pg_sys::dsm_segment_handle(dsm) as usize);
                w.bgw_notify_pid = pg_sys::MyProcPid;
                let mut handle: *mut pg_sys::BackgroundWorkerHandle = std::ptr::null_mut();
                if !pg_sys::RegisterDynamicBackgroundWorker(&mut w, &mut handle) {
                    break;
                }
                (*handles).handles[(*handles).n] = handle;
                (*handles).n += 1;
            }
            pg_sys::MemoryContextSwitchTo(old);
            if (*handles).n == 0 {
                IngestError::new(
                    PgSqlErrorCode::ERRCODE_CONFIGURATION_LIMIT_EXCEEDED,
                    "no background worker slot is free for run_batch",
                )
                .detail(format!("max_worker_processes is {} and every slot is taken.", {
                    pg_sys::max_worker_processes
                }))
                .hint("Raise max_worker_processes (needs a restart), or run fewer batches or parallel queries at once.")
                .raise();
            }
            Self {
                dsm,
                seg,
                handles,
                reported: vec![false; n],
                running_since: vec![None; n],
                timeout,
                stop_on_error,
                left: n,
                last_lock_check: Instant::now(),
                last_citus_check: Instant::now(),
                citus_check_warned: false,
            }
        }
    }

    /// Starts no more queries and cancels the running ones.
    fn stop_all(&mut self) {
        self.seg.header().stop.store(1, Ordering::Release);
        for i in 0..self.reported.len() {
            let slot = self.seg.slot(i);
            if slot.state.load(Ordering::Acquire) == RUNNING {
                slot.interrupt.store(INTERRUPT_CANCEL, Ordering::Release);
                unsafe { kill(slot.pid.load(Ordering::Acquire), SIGINT) };
            }
        }
    }

    /// Whether any worker is starting or running.
    fn any_worker_left(&self) -> bool {
        let h = unsafe { &*self.handles };
        h.handles[..h.n].iter().any(|&handle| {
            let mut pid = 0;
            matches!(
                unsafe { pg_sys::GetBackgroundWorkerPid(handle, &mut pid) },
                pg_sys::BgwHandleStatus::BGWH_STARTED | pg_sys::BgwHandleStatus::BGWH_NOT_YET_STARTED
            )
        })
    }

    fn row(&mut self, i: usize) -> BatchRow {
        self.reported[i] = true;
        self.left -= 1;
        let slot = self.seg.slot(i);
        let status = Status::from_u32(slot.status);
        let (error, sqlstate) = match status {
            Status::Ok => (None, None),
            _ => (Some(slot.error_text().to_owned()), Some(slot.sqlstate_text().to_owned())),
        };
        let wanted = self.seg.header().results_len > 0;
        let result = self.seg.result(i).map(|text| {
            pgrx::JsonB(serde_json::from_str(text).unwrap_or_else(|e| {
                IngestError::new(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, format!("a query's rows are not JSON: {e}"))
                    .raise()
            }))
        });
        let truncated = wanted.then_some(slot.truncated != 0);
        let result = result.or_else(|| (wanted && status == Status::Ok).then(|| pgrx::JsonB(serde_json::json!([]))));
        (i as i32 + 1, status.name().to_owned(), slot.rows as i64, slot.seconds, error, sqlstate, result, truncated)
    }

    fn synthetic(&mut self, i: usize, status: Status, sqlstate: &str, message: &str) -> BatchRow {
        let slot = self.seg.slot(i);
        slot.status = status as u32;
        slot.set_error(sqlstate, message);
        self.row(i)
    }
}

impl Iterator for Batch {
    type Item = BatchRow;

    fn next(&mut self) -> Option<BatchRow> {
        loop {
            if self.left == 0 {
                return None;
            }
            let n = self.reported.len();
            let check_locks = self.last_lock_check.elapsed() >= LOCK_CHECK_EVERY;
            if check_locks {
                self.last_lock_check = Instant::now();
            }
            let check_citus = check_locks && self.last_citus_check.elapsed() >= CITUS_LOCK_CHECK_EVERY;
            if check_citus {
                self.last_citus_check = Instant::now();
            }
            for i in 0..n {
                if self.reported[i] {
                    continue;
                }
                let slot = self.seg.slot(i);
                match slot.state.load(Ordering::Acquire) {
                    DONE => {
                        let row = self.row(i);
                        if self.stop_on_error && row.1 != "ok" {
                            self.stop_all();
                        }
                        return Some(row);
                    }
                    RUNNING => {
                        let since = *self.running_since[i].get_or_insert_with(Instant::now);
                        let pid = slot.pid.load(Ordering::Acquire);
                        let why = if self.timeout.is_some_and(|t| since.elapsed() > t) {
                            INTERRUPT_TIMEOUT
                        } else if check_locks
                            && since.elapsed() > LOCK_CHECK_AFTER
                            && blocked_by_me(
                                pid,
                                check_citus && since.elapsed() > CITUS_LOCK_CHECK_AFTER,
                                &mut self.citus_check_warned,
                            )
                        {
                            INTERRUPT_DEADLOCK
                        } else {
                            0
                        };
                        if why != 0 && slot.interrupt.load(Ordering::Acquire) == 0 {
                            slot.interrupt.store(why, Ordering::Release);
                            unsafe { kill(pid, SIGINT) };
                        }
                    }
                    _ => {}
                }
            }
            // Workers that are gone: a query one was running crashed with it; queries none
            // will take were cancelled (stop_on_error) or are left without a worker.
            let workers_left = self.any_worker_left();
            for i in 0..n {
                if self.reported[i] {
                    continue;
                }
                let slot = self.seg.slot(i);
                let state = slot.state.load(Ordering::Acquire);
                let pid = slot.pid.load(Ordering::Acquire);
                // The process itself, not the postmaster's bookkeeping: a worker can start its
                // first query before the postmaster has recorded its pid.
                let gone = pid > 0 && !process_exists(pid);
                if state == RUNNING && gone && slot.state.load(Ordering::Acquire) == RUNNING {
                    return Some(self.synthetic(
                        i,
                        Status::Error,
                        "XX000",
                        "the worker running this query exited before finishing it",
                    ));
                }
                if state == PENDING && !workers_left {
                    return Some(if self.seg.header().stop.load(Ordering::Acquire) != 0 {
                        self.synthetic(
                            i,
                            Status::Cancelled,
                            "57014",
                            "not started: an earlier query failed (stop_on_error)",
                        )
                    } else {
                        self.synthetic(i, Status::Error, "XX000", "no worker was left to run this query")
                    });
                }
            }
            shared::wait_latch(20);
            pgrx::check_for_interrupts!();
        }
    }
}

impl Drop for Batch {
    /// Ends the workers and waits until they are gone, on every exit path (an ERROR or a
    /// cancel unwinding included): a worker must not commit after the caller's transaction,
    /// and the locks it holds, are gone.
    fn drop(&mut self) {
        unsafe {
            terminate_workers(self.handles as *mut std::ffi::c_void);
            wait_for_workers_gone(&*self.handles);
            pg_sys::dsm_detach(self.dsm);
        }
    }
}

/// Waits until every worker has exited. Interrupts are not processed here (this runs while an
/// ERROR unwinds): a terminated worker exits at its next interrupt check, which PostgreSQL's
/// own `die` handler makes prompt even inside a query.
fn wait_for_workers_gone(h: &Handles) {
    for &handle in &h.handles[..h.n] {
        loop {
            let mut pid = 0;
            let status = unsafe { pg_sys::GetBackgroundWorkerPid(handle, &mut pid) };
            if matches!(status, pg_sys::BgwHandleStatus::BGWH_STOPPED | pg_sys::BgwHandleStatus::BGWH_POSTMASTER_DIED) {
                break;
            }
            shared::wait_latch(10);
        }
    }
}

/// Splits a table into `chunks` ranges of about as many rows each, by an integer column.
pub fn chunk_ranges(table: pg_sys::Oid, column: &str, chunks: i32) -> Vec<(i32, i64, i64)> {
    use pgrx::prelude::*;
    if chunks < 1 {
        IngestError::new(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("chunks must be at least 1, not {chunks}"),
        )
        .raise();
    }
    // the table as regclass prints it (quoted where needed), the column through quote_ident
    let (table_name, col) = Spi::get_two_with_args::<String, String>(
        "SELECT $1::regclass::text, pg_catalog.quote_ident($2)",
        &[table.into(), column.into()],
    )
    .ok()
    .and_then(|(t, c)| Some((t?, c?)))
    .unwrap_or_else(|| {
        IngestError::new(PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE, "chunk_ranges: no such table").raise()
    });
    let sql = format!(
        "SELECT n::int, min(v)::bigint, max(v)::bigint FROM \
         (SELECT {col} AS v, ntile($1) OVER (ORDER BY {col}) AS n FROM {table_name} WHERE {col} IS NOT NULL) s \
         GROUP BY n ORDER BY n"
    );
    Spi::connect(|c| {
        let rows = c.select(&sql, None, &[chunks.into()])?;
        let mut out = Vec::new();
        for r in rows {
            out.push((r.get::<i32>(1)?.unwrap_or(0), r.get::<i64>(2)?.unwrap_or(0), r.get::<i64>(3)?.unwrap_or(0)));
        }
        Ok::<_, pgrx::spi::Error>(out)
    })
    .unwrap_or_else(|e| {
        IngestError::new(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, format!("chunk_ranges: {e}")).raise()
    })
}
