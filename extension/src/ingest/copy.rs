//! Running COPY FROM over a [`Feed`]: `BeginCopyFrom` with our data source in binary format,
//! `CopyFrom` (the whole COPY executor: triggers, constraints, partitions, indexes, defaults),
//! `EndCopyFrom`. A failure comes back with where it happened: COPY's row and column, or
//! the hole being filled.

use std::ffi::CStr;

use pgrx::pg_sys::panic::CaughtError;
use pgrx::pg_sys::{self, PgTryBuilder};

use super::feed::{feed_copy_data, ActiveFeed, Feed};
use super::target::Target;
use super::upsert::{quote_identifier, Prepared, PreparedRows};
use crate::error::{sqlstate_text, IngestError};
use pgrx::spi::Spi;

use crate::pg_compat::CopyFromState;

unsafe extern "C" {
    // src/ingest/copy_state.c
    fn pg_ingest_copy_cur_lineno(cstate: CopyFromState) -> u64;
    fn pg_ingest_copy_cur_attname(cstate: CopyFromState) -> *const std::ffi::c_char;
    fn pg_ingest_copy_recv_unconverted(cstate: CopyFromState);
    fn pg_ingest_copy_recv_tagged(cstate: CopyFromState);
    // src/ingest/citus_copy.c
    fn pg_ingest_citus_copy(reader: *mut std::ffi::c_void, partition_index: i32) -> u64;
    fn pg_ingest_copy_rows_with_key(
        cstate: CopyFromState,
        rel: pg_sys::Relation,
        attnums: *const i16,
        nkeys: i32,
        wanted: *const std::ffi::c_char,
        found: *mut u64,
        max: i32,
    ) -> u64;
    fn pg_ingest_copy_reader_begin(
        cstate: CopyFromState,
        rel: pg_sys::Relation,
        refused: Option<RefusedFn>,
        refused_arg: *mut std::ffi::c_void,
    ) -> *mut std::ffi::c_void;
    fn pg_ingest_copy_reader_next(reader: *mut std::ffi::c_void) -> *mut pg_sys::TupleTableSlot;
    fn pg_ingest_copy_reader_set_aside(
        reader: *mut std::ffi::c_void,
        keys: *const i16,
        nkeys: i32,
        repeated: KeyFn,
        arg: *mut std::ffi::c_void,
    );
    fn pg_ingest_copy_reader_rows(reader: *mut std::ffi::c_void) -> i64;
    fn pg_ingest_copy_reader_end(reader: *mut std::ffi::c_void);
    fn pg_ingest_citus_phase() -> i32;
    fn pg_ingest_citus_reset_phase();
}

/// An ERROR raised inside COPY, and where.
pub struct CopyFailure {
    pub error: CaughtError,
    /// Five characters; empty for a Rust panic.
    pub sqlstate: String,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
    /// COPY's row number (from 1) when it was processing rows.
    pub copy_row: Option<u64>,
    pub column: Option<String>,
    /// The hole being filled: its line, and its row's index in the chunk when feeding rows.
    pub hole: Option<(u64, Option<usize>)>,
    /// The feed raised it itself (a bad line found by the parse threads).
    pub raised_by_feed: bool,
    /// A Citus worker refused a row of this COPY, which row it does not say (Citus reports a
    /// shard's COPY error with the worker's message and detail only, as SQLSTATE XX000).
    pub refused_by_worker: bool,
    /// A worker's error that is not about a row, its SQLSTATE (`sqlstate`) told by its message.
    pub worker_state: bool,
}

impl CopyFailure {
    /// A data error of some row (class 22, 23, 54, or raised by a trigger), as opposed to a
    /// cancel, an out-of-memory, a lock or serialization failure...
    pub fn is_about_a_row(&self) -> bool {
        self.refused_by_worker || matches!(self.sqlstate.get(..2), Some("22" | "23" | "54" | "P0"))
    }

    /// Raises the error again; a worker's error that is not about a row, with its SQLSTATE.
    pub fn rethrow(self) -> ! {
        if self.worker_state {
            let mut e = IngestError::new(crate::error::sqlstate(&self.sqlstate), self.message);
            e.detail = self.detail;
            e.hint = self.hint;
            e.raise()
        }
        self.error.rethrow()
    }
}

type RefusedFn = unsafe extern "C" fn(*mut std::ffi::c_void, u64, i32, *const std::ffi::c_char);
type KeyFn = unsafe extern "C" fn(*mut std::ffi::c_void, u64, u64) -> bool;

/// Skip mode into a Citus table: once a worker has refused a row for a repeated key, a row whose
/// primary key repeats one this load sent since is set aside, not sent, and written alone after
/// its attempt (its shard would most likely refuse it, and a refusal by a worker costs a
/// rollback of the attempt on every connection and a resend). Keys are hashed as stored: a
/// repeat the hash misses is left to the shard, and a row set aside wrongly is written alone
/// all the same. Not before: remembering every key costs the coordinator's main thread about a
/// tenth of a clean load.
pub struct SetAside {
    pub key: Vec<i16>,
    /// Keys are remembered (a worker refused a repeated key).
    pub active: bool,
    seen: std::collections::HashSet<u64, std::hash::BuildHasherDefault<KeyHash>>,
    /// The hashes the current attempt added (taken back if it is rolled back).
    added: Vec<u64>,
    /// The current attempt's rows set aside (COPY rows, from 1).
    pub rows: Vec<u64>,
}

/// The key hashes are hashes already (citus_copy.c's): used as they are.
#[derive(Default)]
pub struct KeyHash(u64);

impl std::hash::Hasher for KeyHash {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// Keys remembered by one load at most (about 32 MB); later keys are left to the shards.
const MAX_KEYS_SET_ASIDE: usize = 1 << 21;

impl SetAside {
    pub fn new(key: Vec<i16>) -> Self {
        Self { key, active: false, seen: Default::default(), added: Vec::new(), rows: Vec::new() }
    }

    /// The attempt was written: its keys stay (its rows set aside are the caller's to write).
    pub fn keep(&mut self) {
        self.added.clear();
    }

    /// The attempt was rolled back: its keys were not sent.
    pub fn forget(&mut self) {
        for h in self.added.drain(..) {
            self.seen.remove(&h);
        }
        self.rows.clear();
    }
}

/// Called from `citus_copy.c` for each row in skip mode; must not raise.
unsafe extern "C" fn repeated_key(arg: *mut std::ffi::c_void, row: u64, hash: u64) -> bool {
    let s = unsafe { &mut *(arg as *mut SetAside) };
    if hash == 0 {
        return false; // a NULL in the key
    }
    if s.seen.len() < MAX_KEYS_SET_ASIDE {
        if s.seen.insert(hash) {
            s.added.push(hash);
            return false;
        }
    } else if !s.seen.contains(&hash) {
        return false;
    }
    s.rows.push(row);
    true
}

/// A row the coordinator refused before sending it to its Citus shard (a NOT NULL or CHECK
/// constraint the shard has): its row in this COPY (from 1), SQLSTATE and message.
pub struct Refused {
    pub row: u64,
    pub sqlstate: String,
    pub message: String,
}

/// Called from `citus_copy.c` for each refused row; must not raise (it only records).
unsafe extern "C" fn record_refused(
    arg: *mut std::ffi::c_void,
    row: u64,
    sqlstate: i32,
    message: *const std::ffi::c_char,
) {
    let refused = unsafe { &mut *(arg as *mut Vec<Refused>) };
    let sqlstate = crate::error::sqlstate_of(sqlstate);
    let message = unsafe { CStr::from_ptr(message) }.to_string_lossy().into_owned();
    refused.push(Refused { row, sqlstate, message });
}

/// What a COPY over the feed does with the rows it reads.
pub enum Mode<'a> {
    /// Writes them; a row that fails, fails the COPY.
    Write,
    /// Writes them; rows of a Citus table that break a NOT NULL or CHECK constraint are not
    /// sent but recorded in `refused`, and rows whose key repeats are set aside (skip mode).
    Skipping { refused: &'a mut Vec<Refused>, set_aside: Option<&'a mut SetAside> },
    /// Writes nothing: finds the rows whose key (these attributes, output as text and joined
    /// by ", ") reads `wanted`; up to `found`'s length of their COPY rows go there.
    FindKey { attnums: &'a [i16], wanted: &'a CStr, found: &'a mut [u64] },
}

/// Writes every row the feed yields into the target (see [`Mode`]); the rows COPY processed
/// (for [`Mode::FindKey`], the rows found), or what failed.
pub fn run_copy(target: &Target, feed: *mut Feed, mode: Mode) -> Result<u64, CopyFailure> {
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
        // every field is tagged: a finished datum, a binary form, or text for the input function
        pg_ingest_copy_recv_tagged(cstate);
        // the stream is in the database's encoding: COPY must not convert it from the client's
        if super::encoding::client_differs() {
            pg_ingest_copy_recv_unconverted(cstate);
        }
        // raw addresses: the closures must be unwind-safe
        let (feed_addr, cstate_addr, rel_addr) = (feed as usize, cstate as usize, target.rel as usize);
        let (route, citus, target_addr) = (target.citus_route, target.citus, target as *const Target as usize);
        let (refused_fn, refused_arg): (Option<RefusedFn>, usize) = match &mode {
            Mode::Skipping { refused, .. } => (Some(record_refused), &**refused as *const Vec<Refused> as usize),
            _ => (None, 0),
        };
        // (key attributes, their number, the SetAside)
        let set_aside = match &mode {
            Mode::Skipping { set_aside: Some(s), .. } if citus && s.active && !s.key.is_empty() => {
                Some((s.key.as_ptr() as usize, s.key.len() as i32, &**s as *const SetAside as usize))
            }
            _ => None,
        };
        // (attnums, nkeys, wanted, found, max)
        let find = match mode {
            Mode::FindKey { attnums, wanted, found } => Some((
                attnums.as_ptr() as usize,
                attnums.len() as i32,
                wanted.as_ptr() as usize,
                found.as_mut_ptr() as usize,
                found.len() as i32,
            )),
            _ => None,
        };
        pg_ingest_citus_reset_phase();
        let result = PgTryBuilder::new(|| {
            if let Some((attnums, nkeys, wanted, found, max)) = find {
                return Ok(pg_sys::ffi::pg_guard_ffi_boundary(|| {
                    pg_ingest_copy_rows_with_key(
                        cstate_addr as CopyFromState,
                        rel_addr as pg_sys::Relation,
                        attnums as *const i16,
                        nkeys,
                        wanted as *const std::ffi::c_char,
                        found as *mut u64,
                        max,
                    )
                }));
            }
            if !citus {
                return Ok(pg_sys::CopyFrom(cstate_addr as CopyFromState));
            }
            // a Citus table: the rows read (and checked) one at a time by one reader. Citus
            // sends text to the workers converted to the session's client encoding, while its
            // connections to them say the database's: the rows go in the database's, whatever
            // the session's (restored when this ends, an ERROR included)
            let _unconverted = super::encoding::Unconverted::enter();
            let reader = pg_sys::ffi::pg_guard_ffi_boundary(|| {
                pg_ingest_copy_reader_begin(
                    cstate_addr as CopyFromState,
                    rel_addr as pg_sys::Relation,
                    refused_fn,
                    refused_arg as *mut std::ffi::c_void,
                )
            });
            let reader_addr = reader as usize;
            if let Some((keys, nkeys, arg)) = set_aside {
                pg_sys::ffi::pg_guard_ffi_boundary(|| {
                    pg_ingest_copy_reader_set_aside(
                        reader_addr as *mut std::ffi::c_void,
                        keys as *const i16,
                        nkeys,
                        repeated_key,
                        arg as *mut std::ffi::c_void,
                    )
                });
            }
            let rows = match route {
                // Citus's COPY routing: the rows to the shards
                Some(partition) => pg_sys::ffi::pg_guard_ffi_boundary(|| {
                    pg_ingest_citus_copy(reader_addr as *mut std::ffi::c_void, partition)
                }),
                // Citus's routing not reachable: INSERT … SELECT of the rows
                None => insert_rows(&*(target_addr as *const Target), reader),
            };
            pg_ingest_copy_reader_end(reader);
            Ok(rows)
        })
        .catch_others(|e| Err(failure(e, feed_addr as *mut Feed, cstate_addr as CopyFromState)))
        .execute();
        if result.is_ok() {
            pg_sys::EndCopyFrom(cstate);
        }
        result
    }
}

/// The rows of a COPY over the feed, read one at a time by the `INSERT … SELECT` a Citus
/// table gets when COPY's routing is not reachable (`citus_copy.c`'s reader: read, checked as
/// the shards would check them, refused rows recorded in skip mode).
pub struct CopiedRows(*mut std::ffi::c_void);

impl CopiedRows {
    /// The next row into `values`/`nulls`, valid until the next call; false after the last.
    ///
    /// # Safety
    /// `values` and `nulls` hold the target's attributes.
    pub unsafe fn next(&mut self, values: *mut pg_sys::Datum, nulls: *mut bool, natts: usize) -> bool {
        let reader = self.0 as usize;
        let slot = unsafe {
            pg_sys::ffi::pg_guard_ffi_boundary(|| pg_ingest_copy_reader_next(reader as *mut std::ffi::c_void))
        };
        if slot.is_null() {
            return false;
        }
        unsafe {
            std::ptr::copy_nonoverlapping((*slot).tts_values, values, natts);
            std::ptr::copy_nonoverlapping((*slot).tts_isnull, nulls, natts);
        }
        true
    }
}

/// `INSERT … SELECT` of every stored column of the COPY's rows, as COPY writes them: the
/// columns COPY was not given hold the defaults it computed (computing them again would take
/// a sequence's value twice), and values for identity columns are written as COPY writes them
/// (OVERRIDING SYSTEM VALUE). It runs as the caller, with the caller's search_path; what it
/// names itself is schema-qualified.
fn insert_statement(target: &Target) -> String {
    let desc = unsafe { (*target.rel).rd_att };
    let natts = unsafe { (*desc).natts } as usize;
    let mut cols = Vec::with_capacity(natts);
    for i in 0..natts {
        let att = unsafe { crate::pg_compat::tuple_desc_attr(desc, i) };
        if att.attisdropped || att.attgenerated != 0 {
            continue;
        }
        cols.push(quote_identifier(&unsafe { CStr::from_ptr(att.attname.data.as_ptr()) }.to_string_lossy()));
    }
    format!(
        "INSERT INTO {name} ({cols}) OVERRIDING SYSTEM VALUE SELECT {cols} FROM ingest.prepared_rows($1, NULL::{name})",
        name = target.name,
        cols = cols.join(", ")
    )
}

/// Writes the COPY's rows into a Citus table by `INSERT … SELECT` from them, which Citus
/// plans and routes to the shards (run as the caller, as the COPY would); the rows inserted
/// (SPI's count: no row is sent back from the workers).
unsafe fn insert_rows(target: &Target, reader: *mut std::ffi::c_void) -> u64 {
    let mut rows = CopiedRows(reader);
    let prepared = Prepared::new();
    prepared.offer(PreparedRows::Copied(&mut rows), target);
    let sql = insert_statement(target);
    let inserted = Spi::connect_mut(|c| c.update(&sql, None, &[prepared.0.into()]).map(|done| done.len() as u64))
        .unwrap_or_else(|e| crate::ledger::spi_error(e));
    drop(prepared);
    let read = unsafe { pg_ingest_copy_reader_rows(reader) };
    if read != inserted as i64 {
        IngestError::new(
            pgrx::PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            format!("the INSERT into {} did not take every row of the load", target.name),
        )
        .detail(format!("{inserted} rows inserted, {read} read (-1: not every row was read)."))
        .raise()
    }
    inserted
}

fn failure(error: CaughtError, feed: *mut Feed, cstate: CopyFromState) -> CopyFailure {
    let feed = unsafe { &*feed };
    let (sqlstate, message, detail, hint, function) = match &error {
        CaughtError::PostgresError(r) | CaughtError::ErrorReport(r) => (
            sqlstate_text(r.sql_error_code()),
            r.message().to_owned(),
            r.detail().map(str::to_owned),
            r.hint().map(str::to_owned),
            r.function_name().map(str::to_owned),
        ),
        CaughtError::RustPanic { ereport, .. } => (String::new(), ereport.message().to_owned(), None, None, None),
    };
    let (copy_row, column) = unsafe {
        let row = pg_ingest_copy_cur_lineno(cstate);
        let att = pg_ingest_copy_cur_attname(cstate);
        ((row > 0).then_some(row), (!att.is_null()).then(|| CStr::from_ptr(att).to_string_lossy().into_owned()))
    };
    let (hole, column) = match feed.current_hole {
        Some((line, col)) => (Some((line, feed.current_row)), Some(feed.column_name(col).to_owned())),
        None => (None, column),
    };
    // Inside Citus's routing: an error of class 22 while a row is handed over is that row's (a
    // NULL distribution column, or one that cannot be coerced); one while the shards' COPYs
    // end, or any other while a row is handed over (a shard's COPY ended early, a placement on
    // the coordinator flushing the rows it buffered), is not about the row being read.
    // A worker refusing a row of its shard's COPY is reported by Citus's ReportCopyError
    // (XX000, the worker's message and detail); anything else there (a lost connection, a
    // shard Citus cannot find) is not about a row.
    let phase = unsafe { pg_ingest_citus_phase() };
    let row_error = sqlstate.starts_with("22");
    let remote = phase == 3 || (phase == 2 && !row_error);
    let from_worker = remote && sqlstate == "XX000" && function.as_deref() == Some("ReportCopyError");
    // (a row too big for a buffer is that row's: "out of memory", "Cannot enlarge string buffer…")
    let too_big = detail.as_deref().is_some_and(|d| d.starts_with("Cannot enlarge"));
    let worker_state = if from_worker && !too_big { worker_sqlstate(&message) } else { None };
    let refused_by_worker = from_worker && worker_state.is_none();
    let sqlstate = worker_state.map_or(sqlstate, str::to_owned);
    let copy_row = if remote { None } else { copy_row };
    unsafe { pg_ingest_citus_reset_phase() };
    CopyFailure {
        error,
        sqlstate,
        message,
        detail,
        hint,
        copy_row,
        column: if remote { None } else { column },
        hole,
        raised_by_feed: feed.raised_own,
        refused_by_worker,
        worker_state: worker_state.is_some(),
    }
}

/// The SQLSTATE of a worker's error that PostgreSQL raises for a reason other than the rows
/// (a timeout, a cancel, a deadlock, a serialization failure, a lack of resources), told by
/// its message: Citus passes a worker's COPY error on with its message only, as XX000. The
/// load fails on it, with that SQLSTATE (a client retries 40001 and 40P01), rather than
/// reject a row. The messages are PostgreSQL's own in English, as workers report them with
/// `lc_messages` C or en; a worker in another language has them taken as a row's refusal.
fn worker_sqlstate(message: &str) -> Option<&'static str> {
    const KNOWN: &[(&str, &str)] = &[
        ("canceling statement due to lock timeout", "55P03"),
        ("canceling statement due to conflict with recovery", "40001"),
        ("canceling statement due to", "57014"),
        ("terminating connection", "57P01"),
        ("deadlock detected", "40P01"),
        ("could not serialize access", "40001"),
        ("could not obtain lock", "55P03"),
        ("lock timeout", "55P03"),
        ("out of memory", "53200"),
        ("out of shared memory", "53200"),
        ("could not extend file", "53100"),
        ("could not resize shared memory", "53100"),
        ("could not write", "58030"),
        ("could not read", "58030"),
        ("could not open", "58030"),
        ("could not access", "58030"),
        ("cannot execute COPY", "25006"),
        ("sorry, too many clients", "53300"),
        ("too many connections", "53300"),
        ("remaining connection slots", "53300"),
        ("the database system is", "57P03"),
        ("server closed the connection", "08006"),
        ("connection to server", "08006"),
    ];
    KNOWN.iter().find(|(prefix, _)| message.starts_with(prefix)).map(|&(_, state)| state)
}

/// Writes the whole file in one COPY; an error about a row is raised again naming the file
/// line and column, anything else (cancel, out of memory...) goes on unchanged.
pub fn copy_from(target: &Target, feed: *mut Feed) -> u64 {
    run_copy(target, feed, Mode::Write).unwrap_or_else(|f| {
        if f.raised_by_feed || !f.is_about_a_row() {
            f.rethrow();
        }
        let feed = unsafe { &*feed };
        let line = match f.hole {
            Some((line, _)) => Some(line),
            None => f.copy_row.and_then(|r| feed.line_of_row(r)),
        };
        let Some(line) = line else { f.rethrow() };
        annotated(&feed.file, line, &f).raise()
    })
}

/// The failure as an error naming the file, line and column.
pub fn annotated(file: &str, line: u64, f: &CopyFailure) -> IngestError {
    let place = match &f.column {
        Some(c) => format!("line {line}, column \"{c}\""),
        None => format!("line {line}"),
    };
    let mut err = IngestError::new(crate::error::sqlstate(&f.sqlstate), format!("{file}: {place}: {}", f.message));
    err.detail = f.detail.clone();
    err.hint = f.hint.clone();
    err
}
