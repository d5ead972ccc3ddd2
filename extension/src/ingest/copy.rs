//! Running COPY FROM over a [`Feed`]: `BeginCopyFrom` with our data source in binary format,
//! `CopyFrom` (the whole COPY executor: triggers, constraints, partitions, indexes, defaults),
//! `EndCopyFrom`. An error raised inside is re-raised naming the file, line and column.

use std::ffi::CStr;

use pgrx::pg_sys::panic::CaughtError;
use pgrx::pg_sys::{self, PgTryBuilder};
use pgrx::PgSqlErrorCode;

use super::feed::{feed_copy_data, ActiveFeed, Feed};
use super::target::Target;
use crate::error::IngestError;

unsafe extern "C" {
    // src/ingest/copy_state.c
    fn pg_ingest_copy_cur_lineno(cstate: pg_sys::CopyFromState) -> u64;
    fn pg_ingest_copy_cur_attname(cstate: pg_sys::CopyFromState) -> *const std::ffi::c_char;
}

/// Writes every row the feed yields into the target; returns the rows COPY processed.
pub fn copy_from(target: &Target, feed: *mut Feed) -> u64 {
    unsafe {
        let pstate = pg_sys::make_parsestate(std::ptr::null_mut());
        (*pstate).p_sourcetext = pg_sys::debug_query_string;
        target.check_insert_permission(pstate);

        let mut attnames: *mut pg_sys::List = std::ptr::null_mut();
        for c in &target.columns {
            let name = pg_sys::pstrdup(std::ffi::CString::new(c.name.as_str()).unwrap().as_ptr());
            attnames = pg_sys::lappend(attnames, pg_sys::makeString(name) as *mut std::ffi::c_void);
        }
        let format = pg_sys::makeDefElem(
            pg_sys::pstrdup(c"format".as_ptr()),
            pg_sys::makeString(pg_sys::pstrdup(c"binary".as_ptr())) as *mut pg_sys::Node,
            -1,
        );
        let options = pg_sys::lappend(std::ptr::null_mut(), format as *mut std::ffi::c_void);

        let _active = ActiveFeed::push(feed);
        let cstate = pg_sys::BeginCopyFrom(
            pstate,
            target.rel,
            std::ptr::null_mut(),
            std::ptr::null(),
            false,
            Some(feed_copy_data),
            attnames,
            options,
        );
        // raw addresses: the catch closure must be unwind-safe
        let (feed_addr, cstate_addr) = (feed as usize, cstate as usize);
        let rows = PgTryBuilder::new(|| pg_sys::CopyFrom(cstate_addr as pg_sys::CopyFromState))
            .catch_others(|e| annotate(e, feed_addr as *mut Feed, cstate_addr as pg_sys::CopyFromState))
            .execute();
        pg_sys::EndCopyFrom(cstate);
        rows
    }
}

/// The five characters of a SQLSTATE.
fn sqlstate_text(code: PgSqlErrorCode) -> String {
    let n = code as isize;
    (0..5).map(|i| (((n >> (6 * i)) & 0x3F) as u8 + b'0') as char).collect()
}

/// Re-raises a data error from inside COPY naming the file line and column it belongs to;
/// anything else (cancel, out of memory, a lock timeout...) goes on unchanged.
fn annotate(e: CaughtError, feed: *mut Feed, cstate: pg_sys::CopyFromState) -> u64 {
    let report = match &e {
        CaughtError::PostgresError(r) | CaughtError::ErrorReport(r) => r,
        CaughtError::RustPanic { .. } => e.rethrow(),
    };
    let feed = unsafe { &*feed };
    let class = sqlstate_text(report.sql_error_code());
    if feed.raised_own || !matches!(&class[..2], "22" | "23" | "54" | "P0") {
        e.rethrow();
    }
    let (line, column) = match feed.current_hole {
        Some((line, col)) => (Some(line), Some(feed.column_name(col).to_owned())),
        None => unsafe {
            let row = pg_ingest_copy_cur_lineno(cstate);
            let att = pg_ingest_copy_cur_attname(cstate);
            let att = (!att.is_null()).then(|| CStr::from_ptr(att).to_string_lossy().into_owned());
            (feed.line_of_row(row), att)
        },
    };
    let Some(line) = line else { e.rethrow() };
    let place = match column {
        Some(c) => format!("line {line}, column \"{c}\""),
        None => format!("line {line}"),
    };
    let mut err = IngestError::new(report.sql_error_code(), format!("{}: {place}: {}", feed.file, report.message()));
    err.detail = report.detail().map(str::to_owned);
    err.hint = report.hint().map(str::to_owned);
    err.raise()
}
