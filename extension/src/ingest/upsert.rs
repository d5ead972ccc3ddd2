//! `ingest_jsonl(…, on_conflict => 'nothing' | 'update')`: a load whose rows may meet rows
//! already in the table (batches that repeat records). The plan, the ledger and the rejects
//! are a load's; the rows come from [`RowSource`] (the same threads) and are written by
//! `INSERT … SELECT … ON CONFLICT`, planned by PostgreSQL (and routed by Citus). Lines whose
//! row met an existing one are counted (`ingest.loads.rows_conflicting`), never lost silently.

use std::cell::RefCell;

use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;

use pg_ingest_core::mapping::Source;

use super::copy::CopiedRows;
use super::rows::{Ledger, RowSource, RowType};
use super::target::Target;
use super::{Checked, Input, LoadSummary, Span, SpanResult};
use crate::error::IngestError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnConflict {
    /// `ON CONFLICT DO NOTHING`: the existing row stays, the line is skipped.
    Nothing,
    /// `ON CONFLICT (primary key) DO UPDATE`: the line's values replace the existing row's.
    Update,
}

impl OnConflict {
    pub fn parse(s: &str) -> Self {
        match s {
            "nothing" => Self::Nothing,
            "update" => Self::Update,
            other => IngestError::new(
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                format!("invalid on_conflict \"{other}\""),
            )
            .hint("Use 'nothing' (keep the existing row) or 'update' (replace it; needs a primary key).")
            .raise(),
        }
    }
}

/// Refuses what an upsert cannot do, before anything is written.
pub fn check_writers(on_conflict: Option<OnConflict>, writers: usize) {
    if on_conflict.is_some() && writers > 1 {
        IngestError::new(PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED, "on_conflict loads with one writer")
            .detail("Writers in separate transactions could each insert the same new key.")
            .hint("Drop writers, or load with COPY semantics (no on_conflict).")
            .raise()
    }
}

/// Rows handed to an INSERT this backend runs: a load's [`RowSource`], or the rows of a COPY
/// over the load's feed ([`CopiedRows`], a Citus table COPY's routing does not reach).
#[derive(Clone, Copy)]
pub enum PreparedRows {
    Source(*mut RowSource),
    Copied(*mut CopiedRows),
}

impl PreparedRows {
    /// The next row (see [`RowSource::next`]).
    ///
    /// # Safety
    /// The rows are still offered, and `values`/`nulls` hold the row type's attributes.
    pub unsafe fn next(self, values: *mut pg_sys::Datum, nulls: *mut bool, natts: usize) -> bool {
        match self {
            Self::Source(s) => unsafe { (*s).next(values, nulls, natts) },
            Self::Copied(c) => unsafe { (*c).next(values, nulls, natts) },
        }
    }
}

thread_local! {
    /// Rows handed to the INSERT this backend runs: (token, the target's row type, the rows).
    static PREPARED: RefCell<Vec<(i64, usize, PreparedRows)>> = const { RefCell::new(Vec::new()) };
}

/// The rows prepared under `token`, taken (once) by the scan of `ingest.prepared_rows` that
/// fills rows of `rowtype`: only the INSERT the load built knows the token (a secret, passed
/// as a parameter, never in SQL text), and the rows go only into the target's row type.
///
/// # Safety
/// `rowtype` is a valid tuple descriptor.
pub unsafe fn take_prepared(token: i64, rowtype: pg_sys::TupleDesc) -> PreparedRows {
    let found = PREPARED.with(|p| {
        let mut p = p.borrow_mut();
        let i = p.iter().position(|&(t, _, _)| t == token)?;
        Some(p.swap_remove(i))
    });
    let Some((_, expected, rows)) = found else {
        IngestError::new(PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE, "no rows prepared under this token")
            .detail("ingest.prepared_rows is read by the INSERT that a load runs, once.")
            .raise()
    };
    unsafe { super::rows::check_row_type(expected as pg_sys::TupleDesc, rowtype, "ingest.prepared_rows") };
    rows
}

/// Keeps rows in [`PREPARED`] while the INSERT runs; removed when dropped (an ERROR too).
pub struct Prepared(pub i64);

impl Prepared {
    /// A token of its own, random (unguessable by SQL a trigger runs meanwhile), with nothing
    /// offered under it yet.
    pub fn new() -> Self {
        let mut bytes = [0u8; 8];
        if !unsafe { pg_sys::pg_strong_random(bytes.as_mut_ptr() as *mut _, bytes.len()) } {
            IngestError::new(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, "could not generate a random token").raise()
        }
        Self(i64::from_ne_bytes(bytes))
    }

    /// Offers `rows` (which outlive this) for the INSERT into the target.
    pub fn offer(&self, rows: PreparedRows, target: &Target) {
        let rowtype = unsafe { (*target.rel).rd_att } as usize;
        PREPARED.with(|p| p.borrow_mut().push((self.0, rowtype, rows)));
    }
}

impl Drop for Prepared {
    fn drop(&mut self) {
        PREPARED.with(|p| p.borrow_mut().retain(|&(t, _, _)| t != self.0));
    }
}

pub fn quote_identifier(name: &str) -> String {
    let c = std::ffi::CString::new(name).expect("a name has no NUL");
    unsafe { std::ffi::CStr::from_ptr(pg_sys::quote_identifier(c.as_ptr())) }.to_string_lossy().into_owned()
}

/// The INSERT: every loaded column from the prepared rows, and what a conflict does. It
/// runs as the caller, with the caller's search_path (triggers see what a COPY's would);
/// what it names itself is schema-qualified.
fn statement(target: &Target, mode: OnConflict) -> String {
    let cols: Vec<String> = target.columns.iter().map(|c| quote_identifier(&c.name)).collect();
    let cols = cols.join(", ");
    let conflict = match mode {
        OnConflict::Nothing => "ON CONFLICT DO NOTHING".to_owned(),
        OnConflict::Update => {
            let (constraint, key) = primary_key(target);
            let set: Vec<String> = target
                .columns
                .iter()
                .filter(|c| !key.contains(&c.attnum))
                .map(|c| format!("{0} = EXCLUDED.{0}", quote_identifier(&c.name)))
                .collect();
            if set.is_empty() {
                "ON CONFLICT DO NOTHING".to_owned()
            } else {
                format!("ON CONFLICT ON CONSTRAINT {} DO UPDATE SET {}", quote_identifier(&constraint), set.join(", "))
            }
        }
    };
    format!(
        "WITH written AS (INSERT INTO {name} AS t ({cols}) SELECT {cols} FROM ingest.prepared_rows($1, NULL::{name}) \
         {conflict} RETURNING (t.xmax::pg_catalog.text OPERATOR(pg_catalog.=) '0') AS inserted) \
         SELECT pg_catalog.count(*) FILTER (WHERE inserted), pg_catalog.count(*) FILTER (WHERE NOT inserted) FROM written",
        name = target.name
    )
}

/// The primary key's constraint name and columns; an error when there is none.
fn primary_key(target: &Target) -> (String, Vec<i16>) {
    target.primary_key().unwrap_or_else(|| {
        IngestError::new(
            PgSqlErrorCode::ERRCODE_INVALID_COLUMN_REFERENCE,
            format!("on_conflict => 'update' needs a primary key on {}", target.name),
        )
        .hint("Add a primary key, or use on_conflict => 'nothing', or write INSERT … ON CONFLICT (…) DO UPDATE from read_jsonl().")
        .raise()
    })
}

/// Loads one span through `INSERT … SELECT … ON CONFLICT`: what [`super::load_span`] does
/// with COPY, for upserts.
#[allow(clippy::too_many_arguments)]
pub fn upsert_span(
    path: &str,
    input: Input,
    target: &Target,
    sources: Vec<Source>,
    checked: &Checked,
    span: &Span,
    load_id: i64,
    status: &str,
    mode: OnConflict,
    started: std::time::Instant,
) -> SpanResult {
    // the statement first: a missing primary key is refused before the threads start
    let prepared = Prepared::new();
    let sql = statement(target, mode);
    let (ios, specs) = super::column_specs(target, sources);
    let defaults = ios.iter().map(|io| io.default_state).collect();
    let rowtype = RowType::of_target(target);
    let mut source =
        Box::new(RowSource::new(path, input, span, &rowtype, specs, defaults, checked, Ledger::Load(load_id)));
    prepared.offer(PreparedRows::Source(&mut *source), target);
    let (inserted, updated) = Spi::connect_mut(|c| {
        let row = c.update(&sql, None, &[prepared.0.into()])?.first();
        Ok::<_, pgrx::spi::Error>((row.get::<i64>(1)?.unwrap_or(0), row.get::<i64>(2)?.unwrap_or(0)))
    })
    .unwrap_or_else(|e| crate::ledger::spi_error(e));
    drop(prepared);
    let (lines, rows, rejected, end_offset) = source.counts();
    if !source.exhausted() {
        IngestError::new(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, "the INSERT did not read every row of the load")
            .raise()
    }
    let written = (inserted + updated) as u64;
    let conflicting = rows - inserted as u64;
    crate::ledger::record_conflicts(load_id, conflicting as i64);
    if conflicting > 0 {
        let what = match mode {
            OnConflict::Nothing => "kept the existing row (skipped)",
            OnConflict::Update => "updated the existing row",
        };
        pgrx::notice!("{path}: {conflicting} line(s) met an existing row and {what}");
    }
    let summary = LoadSummary {
        file: path.to_owned(),
        target: target.name.clone(),
        status: status.into(),
        lines: lines as i64,
        rows_inserted: written as i64,
        rows_rejected: rejected as i64,
        lines_skipped: lines.saturating_sub(written + rejected) as i64,
        bytes: source.bytes_read() as i64,
        seconds: started.elapsed().as_secs_f64(),
        load_id,
    };
    SpanResult {
        summary,
        end_offset: end_offset.unwrap_or(span.start_offset),
        lines,
        first_error: source.first_error(),
    }
}
