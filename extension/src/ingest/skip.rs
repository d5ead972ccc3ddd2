//! `on_error => 'skip'`: bad lines are left out and recorded, the good rows around them kept.
//!
//! Lines the parse threads refuse (invalid JSON or UTF-8, values a fast path refuses) never
//! reach COPY. Rows PostgreSQL refuses (input functions, constraints, triggers) are found by
//! writing each chunk in a subtransaction: when it fails, it is rolled back and retried
//! around the failing row — the row COPY names, else by halves — until the bad rows stand
//! alone and are rejected. A clean chunk costs one subtransaction and one COPY.

use std::ops::Range;
use std::rc::Rc;

use pgrx::pg_sys::{self, PgTryBuilder};
use pgrx::PgSqlErrorCode;

use pg_ingest_core::encode::EncodedChunk;
use pg_ingest_core::error::RowError;

use super::copy::{run_copy, CopyFailure, Mode, Refused, SetAside};
use super::feed::Feed;
use super::target::Target;
use crate::error::IngestError;
use crate::ledger;

/// Rejected lines: counted, written to `ingest.rejects` in batches, held to `max_errors`.
pub struct Rejects {
    load_id: i64,
    file: String,
    max_errors: Option<u64>,
    buffered: Vec<RowError>,
    pub count: u64,
    pub first: Vec<RowError>,
}

const REJECTS_PER_WRITE: usize = 1000;
const FIRST_KEPT: usize = 3;

impl Rejects {
    pub fn new(load_id: i64, file: &str, max_errors: Option<u64>) -> Self {
        Self { load_id, file: file.to_owned(), max_errors, buffered: Vec::new(), count: 0, first: Vec::new() }
    }

    pub fn add(&mut self, e: RowError) {
        self.count += 1;
        if self.first.len() < FIRST_KEPT {
            self.first.push(e.clone());
        }
        if let Some(max) = self.max_errors {
            if self.count > max {
                let firsts: Vec<String> = self.first.iter().map(|e| e.to_string()).collect();
                IngestError::new(
                    PgSqlErrorCode::ERRCODE_DATA_EXCEPTION,
                    format!("{}: more than {max} lines rejected (max_errors => {max}); nothing was loaded", self.file),
                )
                .detail(format!("First rejected: {}.", firsts.join("; ")))
                .hint("Fix the file, or raise max_errors.")
                .raise();
            }
        }
        self.buffered.push(e);
        if self.buffered.len() >= REJECTS_PER_WRITE {
            self.flush();
        }
    }

    pub fn flush(&mut self) {
        ledger::record_rejects(self.load_id, &self.file, &self.buffered);
        self.buffered.clear();
    }

    /// `line 3: invalid input syntax for type json`, for ingest.loads.first_error.
    pub fn first_error(&self) -> Option<String> {
        self.first.first().map(|e| e.to_string())
    }
}

/// Writes what the feed was set to feed in a subtransaction of its own. COPY's memory goes to
/// `memory`, reset after every attempt (as PL/pgSQL runs statements inside exception
/// blocks): left in the subtransaction's context it would be kept to the end of the
/// transaction, and a file with many bad rows would grow the backend without bound.
/// The rows written, and those of a Citus table refused on the coordinator (not sent). With
/// `set_aside`, rows whose key repeats are not sent either: they are in its `rows`.
fn attempt(
    target: &Target,
    feed: &mut Feed,
    memory: pg_sys::MemoryContext,
    mut set_aside: Option<&mut SetAside>,
) -> Result<(u64, Vec<Refused>), CopyFailure> {
    let mut refused = Vec::new();
    let result = in_subtransaction(|| {
        unsafe { pg_sys::MemoryContextSwitchTo(memory) };
        let set_aside = set_aside.as_deref_mut();
        run_copy(target, feed as *mut Feed, Mode::Skipping { refused: &mut refused, set_aside })
    })
    .map(|n| (n, refused));
    unsafe { pg_sys::MemoryContextReset(memory) };
    if let Some(s) = set_aside {
        match &result {
            Ok(_) => s.keep(),
            Err(_) => s.forget(),
        }
    }
    match result {
        Err(f) if f.raised_by_feed || !f.is_about_a_row() => f.rethrow(),
        other => other,
    }
}

/// Runs `f` in a subtransaction of its own: released when it returns `Ok`, rolled back when it
/// returns `Err` (it catches its own ERROR); the caller's memory context and resource owner
/// are current again afterwards, as PL/pgSQL's exception blocks leave them.
pub fn in_subtransaction<T, E>(f: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
    unsafe {
        let (old_context, old_owner) = (pg_sys::CurrentMemoryContext, pg_sys::CurrentResourceOwner);
        // A cancel is not taken while the subtransaction starts: Citus sends SAVEPOINT to every
        // connection of the transaction from its callback, and a cancel taken there, midway
        // through the start, ends the session (FATAL); it is taken right after, inside `f`.
        held(|| pg_sys::BeginInternalSubTransaction(std::ptr::null()));
        let result = f();
        pg_sys::MemoryContextSwitchTo(old_context);
        match &result {
            // The release can fail too (Citus releases the savepoint on every connection, and a
            // cancel can arrive meanwhile): then it is rolled back and the ERROR goes on, as
            // PL/pgSQL's exception blocks do.
            Ok(_) => PgTryBuilder::new(|| held(|| pg_sys::ReleaseCurrentSubTransaction()))
                .catch_others(|e| {
                    pg_sys::MemoryContextSwitchTo(old_context);
                    held(|| pg_sys::RollbackAndReleaseCurrentSubTransaction());
                    pg_sys::MemoryContextSwitchTo(old_context);
                    pg_sys::CurrentResourceOwner = old_owner;
                    e.rethrow()
                })
                .execute(),
            Err(_) => held(|| pg_sys::RollbackAndReleaseCurrentSubTransaction()),
        }
        pg_sys::MemoryContextSwitchTo(old_context);
        pg_sys::CurrentResourceOwner = old_owner;
        result
    }
}

/// Runs `f` with interrupts held (HOLD_INTERRUPTS): a cancel that arrives meanwhile is taken
/// at the next CHECK_FOR_INTERRUPTS after it. An ERROR inside `f` unwinds with them held; the
/// error handling resets the count (as for any ERROR).
fn held<T>(f: impl FnOnce() -> T) -> T {
    unsafe {
        pg_sys::InterruptHoldoffCount += 1;
        let out = f();
        pg_sys::InterruptHoldoffCount -= 1;
        out
    }
}

/// The row of the chunk that failed, when COPY or the feed can tell.
fn failing_row(f: &CopyFailure, rows: &Range<usize>) -> Option<usize> {
    if let Some((_, row)) = f.hole {
        return row;
    }
    let r = f.copy_row? as usize;
    (1..=rows.len()).contains(&r).then(|| rows.start + r - 1)
}

fn reject_row(f: &CopyFailure, chunk: &EncodedChunk, row: usize, raw_limit: usize) -> RowError {
    let mut e = rejected(chunk, row, raw_limit, &f.sqlstate, f.message.clone());
    e.detail = f.detail.clone();
    e.column = f.column.clone();
    e
}

fn rejected(chunk: &EncodedChunk, row: usize, raw_limit: usize, sqlstate: &str, message: String) -> RowError {
    let line = chunk.line_of_row(row as u64).expect("every row has a line");
    let offset = chunk.row_offsets[row];
    let mut e = RowError::new("XX000", message).at(line, offset);
    e.sqlstate = crate::error::static_sqlstate(sqlstate);
    e.raw = chunk.raw_of_row(row, raw_limit);
    e
}

/// Records the rows the coordinator refused in an attempt that wrote `segments` (rows of
/// chunks, in the order COPY read them).
fn reject_refused(refused: Vec<Refused>, segments: &[Segment], rejects: &mut Rejects, raw_limit: usize) {
    for r in refused {
        let (i, row) = nth_row(segments, r.row).expect("a refused row is one of the attempt's");
        rejects.add(rejected(&segments[i].0, row, raw_limit, &r.sqlstate, r.message));
    }
}

/// Rows of a chunk, fed to COPY in this order.
type Segment = (Rc<EncodedChunk>, Range<usize>);

/// COPY row `n` (from 1) of an attempt that wrote `segments`: its segment, and its row in that
/// segment's chunk.
fn nth_row(segments: &[Segment], n: u64) -> Option<(usize, usize)> {
    let mut n = (n as usize).checked_sub(1)?;
    for (i, (_, rows)) in segments.iter().enumerate() {
        if n < rows.len() {
            return Some((i, rows.start + n));
        }
        n -= rows.len();
    }
    None
}

/// Most chunks written in one attempt while attempts succeed (about 32MB of input).
const MAX_CHUNKS_PER_ATTEMPT: usize = 8;

/// Loads every chunk, leaving bad lines out; returns the rows inserted.
///
/// Chunks are written several at a time while that succeeds (a clean file costs a handful of
/// subtransactions), pulled while COPY runs so that parsing goes on; once an attempt fails,
/// its chunks are written one at a time with row isolation (after a Citus worker's unique
/// violation, first the rows before the row with the key at once, the row alone, then the rows
/// after it at once).
pub fn load_skipping(target: &Target, feed: &mut Feed, rejects: &mut Rejects, raw_limit: usize) -> u64 {
    let mut inserted = 0;
    let memory = unsafe {
        pg_sys::AllocSetContextCreateExtended(
            pg_sys::CurrentMemoryContext,
            c"pg_ingest attempt".as_ptr(),
            pg_sys::ALLOCSET_DEFAULT_MINSIZE as usize,
            pg_sys::ALLOCSET_DEFAULT_INITSIZE as usize,
            pg_sys::ALLOCSET_DEFAULT_MAXSIZE as usize,
        )
    };
    let mut batch = 1;
    let mut set_aside_rows = 0;
    // a Citus table's rows whose primary key repeats (once a worker refused one): set aside,
    // written alone
    // (not when a BEFORE ROW trigger on the shards may change the key: the rows set aside are
    // written after the rest of their attempt, and only an unchanged key makes that order safe)
    let mut set_aside = (target.citus && !target.has_before_row_triggers())
        .then(|| target.primary_key())
        .flatten()
        .map(|(_, key)| SetAside::new(key));
    while !feed.exhausted {
        feed.feed_next_chunks(batch);
        let result = attempt(target, feed, memory, set_aside.as_mut());
        let aside = set_aside.as_mut().map(|s| std::mem::take(&mut s.rows)).unwrap_or_default();
        let chunks = feed.take_pulled();
        for chunk in &chunks {
            for e in &chunk.errors {
                rejects.add(e.clone());
            }
        }
        let segments: Vec<Segment> = chunks.iter().map(|c| (c.clone(), 0..c.rows as usize)).collect();
        match result {
            Ok((n, refused)) => {
                reject_refused(refused, &segments, rejects, raw_limit);
                inserted += n;
                set_aside_rows += aside.len() as u64;
                for r in aside {
                    let (i, row) = nth_row(&segments, r).expect("a row set aside is one of the attempt's");
                    inserted += isolate(target, feed, &segments[i].0, row..row + 1, None, rejects, raw_limit, memory);
                }
                feed.progress.written_before = inserted;
                feed.progress.rejected = rejects.count;
                batch = (batch * 2).min(MAX_CHUNKS_PER_ATTEMPT);
            }
            Err(f) => {
                // a Citus worker's unique violation: the rows before the row with the key are
                // written again in one attempt, then the row alone, then the rows after it in one
                // attempt (each rollback on Citus costs every connection of the transaction, each
                // attempt a COPY on every shard)
                let hint = if f.refused_by_worker { row_with_key(target, feed, &segments, &f, memory) } else { None };
                // the file repeats keys: from now on, rows with a key sent before are set aside
                if let Some(s) =
                    set_aside.as_mut().filter(|_| f.detail.as_deref().is_some_and(|d| d.starts_with("Key (")))
                {
                    s.active = true;
                }
                if let Some((i, row)) = hint {
                    // in file order: the rows before it at once, the row alone, the rows after
                    let (chunk, rows) = &segments[i];
                    let mut before = segments[..i].to_vec();
                    before.push((chunk.clone(), rows.start..row));
                    let mut after = vec![(chunk.clone(), row + 1..rows.end)];
                    after.extend_from_slice(&segments[i + 1..]);
                    if let Some(n) = write_at_once(target, feed, before, rejects, raw_limit, memory) {
                        inserted += n;
                        inserted += isolate(target, feed, chunk, row..row + 1, None, rejects, raw_limit, memory);
                        match write_at_once(target, feed, after.clone(), rejects, raw_limit, memory) {
                            Some(n) => inserted += n,
                            None => {
                                for (c, rows) in after {
                                    inserted += isolate(target, feed, &c, rows, None, rejects, raw_limit, memory);
                                }
                            }
                        }
                        feed.progress.written_before = inserted;
                        feed.progress.rejected = rejects.count;
                        continue;
                    }
                }
                batch = 1;
                for (i, chunk) in chunks.iter().enumerate() {
                    let at = hint.filter(|(segment, _)| *segment == i).map(|(_, row)| row);
                    let rows = 0..chunk.rows as usize;
                    inserted += isolate(target, feed, chunk, rows, at, rejects, raw_limit, memory);
                    feed.progress.written_before = inserted;
                    feed.progress.rejected = rejects.count;
                }
            }
        }
    }
    if set_aside_rows > 0 {
        pgrx::notice!(
            "{}: {set_aside_rows} line(s) repeated a key this load had sent, and were written alone after their batch",
            feed.file
        );
    }
    inserted
}

/// Writes `segments` in one attempt: the rows written, or `None` when it was rolled back (a row
/// was refused). Rows the coordinator refused are rejected.
fn write_at_once(
    target: &Target,
    feed: &mut Feed,
    segments: Vec<Segment>,
    rejects: &mut Rejects,
    raw_limit: usize,
    memory: pg_sys::MemoryContext,
) -> Option<u64> {
    let segments: Vec<Segment> = segments.into_iter().filter(|(_, rows)| !rows.is_empty()).collect();
    if segments.is_empty() {
        return Some(0);
    }
    feed.feed_rows(segments.clone());
    let (n, refused) = attempt(target, feed, memory, None).ok()?;
    reject_refused(refused, &segments, rejects, raw_limit);
    Some(n)
}

/// Writes rows `rows` of a chunk, retrying around refused rows until each stands alone and is
/// rejected; split first around row `at` when that is where a refused row probably is.
#[allow(clippy::too_many_arguments)]
fn isolate(
    target: &Target,
    feed: &mut Feed,
    chunk: &Rc<EncodedChunk>,
    rows: Range<usize>,
    at: Option<usize>,
    rejects: &mut Rejects,
    raw_limit: usize,
    memory: pg_sys::MemoryContext,
) -> u64 {
    let mut inserted = 0;
    // a stack of row ranges still to write, the next one in file order on top
    let mut todo = match at {
        Some(bad) => vec![bad + 1..rows.end, bad..bad + 1, rows.start..bad],
        None => vec![rows],
    };
    while let Some(rows) = todo.pop() {
        if rows.is_empty() {
            continue;
        }
        feed.feed_rows(vec![(chunk.clone(), rows.clone())]);
        match attempt(target, feed, memory, None) {
            Ok((n, refused)) => {
                reject_refused(refused, &[(chunk.clone(), rows.clone())], rejects, raw_limit);
                inserted += n
            }
            Err(f) if rows.len() == 1 => {
                let e = reject_row(&f, chunk, rows.start, raw_limit);
                rejects.add(e);
            }
            Err(f) => match failing_row(&f, &rows) {
                // a Citus worker refused a row with a unique key that rows here have: split
                // around the last of them, which is tried alone (rejected only if it fails so)
                _ if f.refused_by_worker
                    && let Some((_, bad)) =
                        row_with_key(target, feed, &[(chunk.clone(), rows.clone())], &f, memory) =>
                {
                    todo.push(bad + 1..rows.end);
                    todo.push(bad..bad + 1);
                    todo.push(rows.start..bad);
                }
                // The last row is also where end-of-statement checks (foreign keys) point:
                // only a row before it is sure, else halve.
                Some(bad) if bad + 1 < rows.end => {
                    todo.push(bad + 1..rows.end);
                    todo.push(bad..bad + 1);
                    todo.push(rows.start..bad);
                }
                _ => {
                    let mid = rows.start + rows.len() / 2;
                    todo.push(mid..rows.end);
                    todo.push(rows.start..mid);
                }
            },
        }
    }
    inserted
}

/// Where in `segments` a Citus worker's unique violation ("Key (id)=(7) already exists.")
/// probably is: the last row with that key, as its segment and row. The rows are read again
/// without writing, each row's key output as text; a hint only, since the worker output it
/// in its own settings (the row is rejected only when it fails alone). `None` when the error
/// names no column of the table, or no row has the key (then halving finds the row).
fn row_with_key(
    target: &Target,
    feed: &mut Feed,
    segments: &[Segment],
    f: &CopyFailure,
    memory: pg_sys::MemoryContext,
) -> Option<(usize, usize)> {
    let detail = f.detail.as_deref()?;
    let (columns, key) = detail.strip_prefix("Key (")?.strip_suffix(") already exists.")?.split_once(")=(")?;
    let attnums = columns
        .split(", ")
        .map(|name| {
            let name = match name.strip_prefix('"').and_then(|n| n.strip_suffix('"')) {
                Some(quoted) => quoted.replace("\"\"", "\""),
                None => name.to_owned(),
            };
            target.columns.iter().find(|c| c.name == name).map(|c| c.attnum)
        })
        .collect::<Option<Vec<i16>>>()?;
    let wanted = std::ffi::CString::new(key).ok()?;
    // the first and the last row with the key
    let mut found = [0u64; 2];
    feed.feed_rows(segments.to_vec());
    let result = in_subtransaction(|| {
        unsafe { pg_sys::MemoryContextSwitchTo(memory) };
        run_copy(target, feed as *mut Feed, Mode::FindKey { attnums: &attnums, wanted: &wanted, found: &mut found })
    });
    unsafe { pg_sys::MemoryContextReset(memory) };
    match result {
        Ok(0) => None,
        Ok(_) => nth_row(segments, found[1]),
        // a row COPY cannot read again: halving finds it; a cancel goes on
        Err(f) if f.is_about_a_row() => None,
        Err(f) => f.rethrow(),
    }
}
