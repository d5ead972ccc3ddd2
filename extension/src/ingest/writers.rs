//! `writers => N`: one file written by N background workers, each through the COPY path in a
//! transaction of its own.
//!
//! The caller's backend (the leader) cuts what is not loaded yet into ranges at line
//! boundaries, counting lines so each range knows its first line number, and runs one
//! `ingest.load_range(...)` per range through `run_batch`'s workers. Each range commits with
//! its rows, its rejects, its `ingest.loads` row (status `range`) and its `ingest.file_ranges`
//! row. When every range has committed, the leader folds them into `ingest.files` in the
//! caller's transaction. A load that fails or is cancelled keeps the ranges that committed:
//! calling it again loads only the gaps between them. Not atomic as a whole: readers see each
//! range as it commits.

use std::fs::File;
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use std::time::Instant;

use pgrx::pg_sys::{self, Oid};
use pgrx::prelude::*;

use super::plan::{self, LoadPlan};
use super::target::{self, Target};
use super::{load_span, open_file, sources, Checked, LoadOptions, LoadSummary, Span};
use crate::batch::shared::quote_literal;
use crate::error::{sqlstate, IngestError};
use crate::ledger::{self, FileRange};

/// Bytes read at a time when counting lines or looking for a line's end.
const BLOCK: usize = 1 << 20;

fn io_error(path: &str, e: std::io::Error) -> ! {
    IngestError::new(PgSqlErrorCode::ERRCODE_IO_ERROR, format!("could not read \"{path}\": {e}")).raise()
}

/// Newlines in `[from, to)` of the file.
fn count_lines(file: &File, path: &str, from: u64, to: u64) -> u64 {
    let mut buf = vec![0u8; BLOCK];
    let (mut at, mut lines) = (from, 0u64);
    while at < to {
        let want = ((to - at) as usize).min(BLOCK);
        match file.read_at(&mut buf[..want], at) {
            Ok(0) => break,
            Ok(n) => {
                lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
                at += n as u64;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => io_error(path, e),
        }
        pgrx::check_for_interrupts!();
    }
    lines
}

/// The offset just past the first newline at or after `at` (before `limit`), if any.
fn next_line_start(file: &File, path: &str, at: u64, limit: u64) -> Option<u64> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut pos = at;
    while pos < limit {
        let want = ((limit - pos) as usize).min(buf.len());
        let n = match file.read_at(&mut buf[..want], pos) {
            Ok(0) => return None,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => io_error(path, e),
        };
        if let Some(i) = buf[..n].iter().position(|&b| b == b'\n') {
            return Some(pos + i as u64 + 1);
        }
        pos += n as u64;
    }
    None
}

/// Cuts the plan's spans into pieces of about `total / writers` bytes, at line starts.
fn cut(file: &File, path: &str, gaps: &[Span], writers: usize) -> Vec<Span> {
    let total: u64 = gaps.iter().map(|g| g.end_offset.unwrap_or(g.start_offset) - g.start_offset).sum();
    let target = (total / writers as u64).max(1);
    let mut pieces = Vec::new();
    for gap in gaps {
        let stop = gap.end_offset.unwrap_or(gap.start_offset);
        let (mut at, mut line) = (gap.start_offset, gap.start_line);
        loop {
            let cut_at = at + target;
            let next = if cut_at + 1 < stop { next_line_start(file, path, cut_at, stop) } else { None };
            match next {
                Some(next) if next < stop => {
                    pieces.push(Span { start_offset: at, start_line: line, end_offset: Some(next) });
                    line += count_lines(file, path, at, next);
                    at = next;
                }
                _ => {
                    pieces.push(Span { start_offset: at, start_line: line, end_offset: gap.end_offset });
                    break;
                }
            }
        }
    }
    pieces
}

/// The writers run in other sessions: a table this transaction holds a strong lock on (or
/// created) would make them wait for it forever.
pub fn refuse_if_locked_here(target: &Target, writers: usize) {
    if unsafe { pg_sys::CheckRelationLockedByMe(target.rel, pg_sys::ShareLock as i32, true) } {
        IngestError::new(
            PgSqlErrorCode::ERRCODE_OBJECT_IN_USE,
            format!("writers => {writers} cannot load {}: this transaction holds a lock on it", target.name),
        )
        .detail("The writers run in other sessions and would wait for this transaction forever.")
        .hint("Load with one writer, or in a transaction that has not locked (or created) the table.")
        .raise();
    }
}

/// Loads the plan's spans with `writers` workers, then folds their committed ranges into
/// `ingest.files`; the same summary as a single-writer load.
pub fn load_with_writers(
    path: &str,
    file: &File,
    plan: &LoadPlan,
    target: &Target,
    opts: &LoadOptions,
    writers: usize,
    started: Instant,
) -> LoadSummary {
    let (oid, key) = (target.oid, plan.key.as_str());
    if plan.forget_ranges {
        ledger::delete_ranges(oid, plan.facts.device, plan.facts.inode);
    }
    let load_id = ledger::start_load(path, &target.name, oid, &opts.on_error, plan.prefix.0 as i64, None);

    if !plan.gaps.is_empty() {
        let pieces = cut(file, key, &plan.gaps, writers);
        let threads = opts.threads.unwrap_or((crate::gucs::max_threads() / writers).max(1) as i32);
        let options = serde_json::json!({
            "columns": opts.columns, "rest": opts.rest, "threads": threads, "epoch_unit": opts.epoch_unit,
            "on_error": opts.on_error, "max_errors": opts.max_errors,
            // what the writers must find when they open the file: the one that was cut
            "device": plan.facts.device, "inode": plan.facts.inode, "size": plan.facts.size,
            "head_bytes": plan.head.bytes, "head_fingerprint": plan.head.hash,
            // the caller's settings the input functions read: a writer reads values as the caller would
            "settings": caller_input_settings(),
        })
        .to_string();
        let (path_sql, options_sql) = (quote_literal(key), quote_literal(&options));
        let queries: Vec<String> = pieces
            .iter()
            .map(|p| {
                format!(
                    "SELECT ingest.load_range({path_sql}, {}::pg_catalog.oid, {}, {}, {}, {options_sql}::pg_catalog.jsonb, \
                     {load_id})",
                    u32::from(oid),
                    p.start_offset,
                    p.end_offset.unwrap_or(plan.facts.size),
                    p.start_line
                )
            })
            .collect();
        let n = queries.len();
        // Dropping the batch (also when an ERROR or a cancel unwinds from here) ends the
        // writers and waits until they are gone: none commits after this transaction ends.
        let batch = crate::batch::Batch::start(queries, writers.min(n), true, None, false, Some(load_id));
        let mut failure: Option<(usize, String, String, String)> = None;
        for (no, status, _, _, error, code, _, _) in batch {
            let worse = failure.as_ref().is_none_or(|f| f.1 != "error" && status == "error");
            if status != "ok" && worse {
                failure = Some((no as usize, status, error.unwrap_or_default(), code.unwrap_or_default()));
            }
        }
        if let Some((no, _, message, code)) = failure {
            let committed = ledger::file_ranges(oid, plan.facts.device, plan.facts.inode).len();
            let p = pieces[no - 1];
            IngestError::new(sqlstate(&code), message)
                .detail(format!(
                    "The writer of bytes {}..{} (from line {}) failed; {committed} range(s) of \"{path}\" are committed \
                     and stay.",
                    p.start_offset,
                    p.end_offset.unwrap_or(plan.facts.size),
                    p.start_line
                ))
                .hint("Fix the cause and call ingest_jsonl again: it loads only what is not loaded yet.")
                .raise()
        }
    }

    // every range is in: fold them into ingest.files
    let ranges = ledger::file_ranges(oid, plan.facts.device, plan.facts.inode);
    let (end, lines) = match ranges.last() {
        Some(r) => (r.end as u64, r.first_line - 1 + r.lines),
        None => (plan.prefix.0, plan.prefix.1 as i64),
    };
    plan.save(file, target, end, lines, load_id);
    ledger::delete_ranges(oid, plan.facts.device, plan.facts.inode);
    let (lines, inserted, rejected, skipped, bytes, first_error) = ledger::range_totals(load_id);
    let result = LoadSummary {
        file: path.to_owned(),
        target: target.name.clone(),
        status: plan.status.into(),
        lines,
        rows_inserted: inserted,
        rows_rejected: rejected,
        lines_skipped: skipped,
        bytes,
        seconds: started.elapsed().as_secs_f64(),
        load_id,
    };
    ledger::finish_load(load_id, &result, first_error);
    result
}

/// The caller's settings a writer takes over for its transaction: those input functions read
/// (time zone and its abbreviations, date and interval styles, xml's document or content,
/// money's locale, array NULLs), and pg_ingest's own that shape a load.
const INPUT_SETTINGS: [&str; 11] = [
    "TimeZone",
    "timezone_abbreviations",
    "DateStyle",
    "IntervalStyle",
    "xmloption",
    "lc_monetary",
    "array_nulls",
    "pg_ingest.max_line_bytes",
    "pg_ingest.chunk_bytes",
    "pg_ingest.memory_budget",
    "pg_ingest.reject_line_bytes",
];

pub(crate) fn caller_input_settings() -> serde_json::Value {
    let settings: serde_json::Map<String, serde_json::Value> = INPUT_SETTINGS
        .iter()
        .map(|name| {
            let value = match *name {
                "TimeZone" => time_zone_setting(),
                _ => setting(name),
            };
            (name.to_string(), serde_json::Value::String(value))
        })
        .collect();
    serde_json::Value::Object(settings)
}

/// The session's TimeZone as a value `SET` takes back. A zone set as an interval with seconds
/// (`SET TIME ZONE INTERVAL '-08:00:30'`) shows as `<-08:00:30>+08:00:30`, which `SET` refuses:
/// it is given back as the interval, in seconds east of UTC.
fn time_zone_setting() -> String {
    let mut east: std::ffi::c_long = 0;
    if unsafe { pg_sys::pg_get_timezone_offset(pg_sys::session_timezone, &mut east) } && east % 60 != 0 {
        return format!("INTERVAL '{east} seconds'");
    }
    setting("TimeZone")
}

fn setting(name: &str) -> String {
    let c_name = std::ffi::CString::new(name).expect("no NUL");
    unsafe {
        let v = pg_sys::GetConfigOptionByName(c_name.as_ptr(), std::ptr::null_mut(), false);
        std::ffi::CStr::from_ptr(v).to_string_lossy().into_owned()
    }
}

/// Takes over the caller's settings (as [`caller_input_settings`] recorded them) for the
/// transaction (`SET LOCAL`), those that differ: a writer's, a background job's.
pub(crate) fn take_input_settings(settings: &serde_json::Value) {
    for name in INPUT_SETTINGS {
        if let Some(value) = settings[name].as_str() {
            if setting(name) != value {
                crate::identity::set_guc_local(name, value);
            }
        }
    }
}

/// One writer's range (`ingest.load_range`): loaded, and recorded as committed, in the
/// current transaction. The file must still be the one the leader cut (same device, inode
/// and first bytes, at least as long): else nothing is loaded.
pub fn load_range(
    path: &str,
    oid: Oid,
    start: i64,
    end: i64,
    first_line: i64,
    options: serde_json::Value,
    parent_load_id: i64,
) {
    let started = Instant::now();
    // only the query a leader's writer runs for it: not SQL a role writes (run_batch, a
    // trigger inside the writer's own load), which could record ranges no load wrote
    if crate::batch::worker::take_writer_permit() != Some(parent_load_id) {
        IngestError::new(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            "ingest.load_range is called only by the writers of ingest_jsonl(…, writers => N)",
        )
        .hint("Call ingest_jsonl(path, target, writers => N).")
        .raise()
    }
    target::check_file_permission();
    take_input_settings(&options["settings"]);
    let opts: LoadOptions = LoadOptions {
        columns: options.get("columns").filter(|v| !v.is_null()).cloned(),
        rest: options["rest"].as_str().map(str::to_owned),
        threads: options["threads"].as_i64().map(|t| t as i32),
        epoch_unit: options["epoch_unit"].as_str().unwrap_or("s").to_owned(),
        on_error: options["on_error"].as_str().unwrap_or("stop").to_owned(),
        max_errors: options["max_errors"].as_i64(),
        force: false,
        on_conflict: None,
        format: pg_ingest_core::input::Format::Lines,
    };
    let checked: Checked = opts.check();
    let file = open_file(path);
    let facts = plan::facts(&file, path);
    let head = plan::fingerprint(&file, path, 0, options["head_bytes"].as_u64().unwrap_or(0));
    let same = Some(facts.device) == options["device"].as_u64()
        && Some(facts.inode) == options["inode"].as_u64()
        && facts.size >= end as u64
        && Some(head.hash.as_str()) == options["head_fingerprint"].as_str();
    if !same {
        IngestError::new(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("\"{path}\" is no longer the file that was cut into ranges: it was replaced or truncated"),
        )
        .hint("Call ingest_jsonl again: it plans the load anew.")
        .raise()
    }
    let target = Target::open(oid);
    let sources = sources(&target.columns, &target.name, &opts);
    let load_id = ledger::start_load(path, &target.name, oid, &opts.on_error, start, Some(parent_load_id));
    let span = Span { start_offset: start as u64, start_line: first_line as u64, end_offset: Some(end as u64) };
    // the range is in the middle of the file: its shape (a header line) is the file's
    let (_, shape) = super::layout(&file, path, facts.size, pg_ingest_core::input::Format::Lines);
    let mut input = super::Input::file_span(path, &file, facts.size, &span, false);
    input.shape = Some(shape);
    let done = load_span(path, input, &target, sources, &checked, &span, load_id, "range", started);
    ledger::finish_load(load_id, &done.summary, done.first_error);
    let range = FileRange {
        start,
        end: done.end_offset as i64,
        first_line,
        lines: done.lines as i64,
        device: facts.device as i64,
        inode: facts.inode as i64,
        head,
        load_id,
    };
    ledger::save_range(oid, path, &range, parent_load_id);
    target.close();
}
