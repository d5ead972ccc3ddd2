//! A batch worker: a dynamic background worker that takes queries from its batch one by one,
//! runs each in its own transaction as the caller (see [`crate::identity::Caller`]) with the
//! caller's search_path, and writes the result to the query's slot.

use std::sync::atomic::Ordering;
use std::time::Instant;

use pgrx::pg_sys::panic::CaughtError;
use pgrx::pg_sys::{self, PgTryBuilder};

use super::shared::{
    backend_signals, process_exists, Segment, Status, DONE, INTERRUPT_CANCEL, INTERRUPT_DEADLOCK, INTERRUPT_TIMEOUT,
    MAGIC, RUNNING,
};
use crate::error::sqlstate_text;
use crate::identity::set_guc_local;

fn run_sql(sql: &str) -> u64 {
    let c =
        std::ffi::CString::new(sql).unwrap_or_else(|_| std::ffi::CString::new("SELECT 1/0 -- NUL in query").unwrap());
    unsafe {
        let rc = pg_sys::SPI_execute(c.as_ptr(), false, 0);
        if rc < 0 {
            pgrx::error!("SPI_execute failed with code {rc}");
        }
        pg_sys::SPI_processed
    }
}

/// Puts the rows query `i` returned into the results area as a JSON array of row objects
/// (`row_to_json`: numbers, booleans and json values stay what they are); when the area has
/// not room for all, the rows that fit, flagged truncated.
fn keep_rows(seg: Segment, i: usize) {
    unsafe {
        let table = pg_sys::SPI_tuptable;
        if table.is_null() {
            return;
        }
        let tupdesc = pg_sys::BlessTupleDesc((*table).tupdesc);
        let room = (seg.header().results_len - seg.header().results_used.load(Ordering::Acquire)) as usize;
        let mut json = String::from("[");
        let mut truncated = false;
        for r in 0..pg_sys::SPI_processed as usize {
            let tuple = *(*table).vals.add(r);
            let datum = pg_sys::heap_copy_tuple_as_datum(tuple, tupdesc);
            let text = pg_sys::OidFunctionCall1Coll(pg_sys::Oid::from(ROW_TO_JSON), pg_sys::InvalidOid, datum);
            let text = pgrx::text_to_rust_str_unchecked(text.cast_mut_ptr());
            if json.len() + text.len() + 2 > room {
                truncated = true;
                break;
            }
            if r > 0 {
                json.push(',');
            }
            json.push_str(text);
        }
        json.push(']');
        let (at, got) = seg.reserve(json.len());
        if got < json.len() {
            // other queries took the room meanwhile: none of its rows (the leader says [])
            truncated = true;
        } else {
            seg.write_at(at, json.as_bytes());
            seg.slot(i).result = (at as u32, json.len() as u32);
        }
        seg.slot(i).truncated = truncated as u32;
    }
}

/// `row_to_json(record)`.
const ROW_TO_JSON: u32 = 3155;

/// Runs query `i` in a transaction of its own; the rows it processed.
fn run_query(seg: Segment, i: usize) -> u64 {
    unsafe {
        pg_sys::SetCurrentStatementStartTimestamp();
        pg_sys::StartTransactionCommand();
        pg_sys::SPI_connect();
        pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
        // the caller's search_path, for this query's transaction (the identity is the
        // worker's since it started)
        set_guc_local("search_path", seg.search_path());
        let query = seg.query(i);
        pgrx::pg_sys::pgstat_report_activity(
            pg_sys::BackendState::STATE_RUNNING,
            std::ffi::CString::new(query).unwrap_or_default().as_ptr(),
        );
        let rows = run_sql(query);
        if seg.header().results_len > 0 {
            keep_rows(seg, i);
        }
        pg_sys::PopActiveSnapshot();
        pg_sys::SPI_finish();
        pg_sys::CommitTransactionCommand();
        pgrx::pg_sys::pgstat_report_activity(pg_sys::BackendState::STATE_IDLE, std::ptr::null());
        rows
    }
}

thread_local! {
    /// In a writers' batch, while a query runs: the load it writes for, taken once by
    /// `ingest.load_range` (the query's own call, before any SQL of the load runs).
    static WRITER_PERMIT: std::cell::Cell<Option<i64>> = const { std::cell::Cell::new(None) };
}

/// The permit of the query running in this writer (taken: a second call finds none).
pub fn take_writer_permit() -> Option<i64> {
    WRITER_PERMIT.with(|p| p.take())
}

/// The worker's entry point (bgw_function_name); its argument is the segment's handle.
#[pgrx::pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pg_ingest_batch_worker(arg: pg_sys::Datum) {
    unsafe {
        backend_signals();
        let handle = arg.value() as pg_sys::dsm_handle;
        let dsm = pg_sys::dsm_attach(handle);
        if dsm.is_null() {
            return; // the leader is gone already
        }
        let seg = Segment { base: pg_sys::dsm_segment_address(dsm) as *mut u8 };
        if seg.header().magic != MAGIC {
            return;
        }
        seg.header().caller.become_in_worker();
        let latch = seg.header().leader_latch as *mut pg_sys::Latch;
        let n = seg.header().n_queries as usize;
        loop {
            if seg.header().stop.load(Ordering::Acquire) != 0 || !process_exists(seg.header().leader_pid) {
                break;
            }
            let i = seg.header().next_query.fetch_add(1, Ordering::AcqRel) as usize;
            if i >= n {
                break;
            }
            let slot = seg.slot(i);
            slot.pid.store(pg_sys::MyProcPid, Ordering::Release);
            slot.state.store(RUNNING, Ordering::Release);
            pg_sys::SetLatch(latch);
            let started = Instant::now();
            let addr = seg.base as usize;
            let writers_of = seg.header().writers_of;
            WRITER_PERMIT.with(|p| p.set((writers_of != 0).then_some(writers_of)));
            let result = PgTryBuilder::new(|| Ok(run_query(Segment { base: addr as *mut u8 }, i)))
                .catch_others(|e| {
                    let (code, message) = match &e {
                        CaughtError::PostgresError(r) | CaughtError::ErrorReport(r) => {
                            (sqlstate_text(r.sql_error_code()), r.message().to_owned())
                        }
                        CaughtError::RustPanic { ereport, .. } => ("XX000".to_owned(), ereport.message().to_owned()),
                    };
                    pg_sys::AbortCurrentTransaction();
                    pg_sys::MemoryContextSwitchTo(pg_sys::TopMemoryContext);
                    Err((code, message))
                })
                .execute();
            WRITER_PERMIT.with(|p| p.set(None));
            let slot = seg.slot(i);
            slot.seconds = started.elapsed().as_secs_f64();
            match result {
                Ok(rows) => {
                    slot.rows = rows;
                    slot.status = Status::Ok as u32;
                }
                Err((code, message)) => {
                    let (status, message) = match (code.as_str(), slot.interrupt.load(Ordering::Acquire)) {
                        ("57014", INTERRUPT_TIMEOUT) => {
                            (Status::Timeout, "canceling statement due to run_batch timeout".to_owned())
                        }
                        ("57014", INTERRUPT_CANCEL) => (
                            Status::Cancelled,
                            "canceling statement: an earlier query failed (stop_on_error)".to_owned(),
                        ),
                        ("57014", INTERRUPT_DEADLOCK) => (
                            Status::Error,
                            "deadlock detected: the query waited for a lock held by the transaction that called \
                             run_batch, which waits for the query"
                                .to_owned(),
                        ),
                        _ => (Status::Error, message),
                    };
                    let deadlock = code == "57014" && slot.interrupt.load(Ordering::Acquire) == INTERRUPT_DEADLOCK;
                    let code = if deadlock { "40P01".to_owned() } else { code };
                    slot.status = status as u32;
                    slot.set_error(&code, &message);
                    // stop here and now: waiting for the leader to notice would let this
                    // worker start the next query first
                    if seg.header().stop_on_error != 0 {
                        seg.header().stop.store(1, Ordering::Release);
                    }
                }
            }
            slot.state.store(DONE, Ordering::Release);
            pg_sys::SetLatch(latch);
        }
        pg_sys::dsm_detach(dsm);
    }
}
