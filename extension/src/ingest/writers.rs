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
use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::time::Instant;

use pgrx::pg_sys::{self, Oid};
use pgrx::prelude::*;

use super::target::{self, Target};
use super::{fingerprint, load_span, open_file, sources, Checked, LoadOptions, LoadSummary, Span, HEAD_BYTES};
use crate::batch::shared::quote_literal;
use crate::error::{sqlstate, IngestError};
use crate::ledger::{self, FileRange};

/// Bytes read at a time when counting lines or looking for a line's end.
const BLOCK: usize = 1 << 20;

fn io_error(path: &str, e: std::io::Error) -> ! {
    IngestError::new(PgSqlErrorCode::ERRCODE_IO_ERROR, format!("could not read \"{path}\": {e}")).raise()
}

/// Newlines in `[from, to)` of the file.
fn count_lines(file: &mut File, path: &str, from: u64, to: u64) -> u64 {
    file.seek(SeekFrom::Start(from)).unwrap_or_else(|e| io_error(path, e));
    let mut buf = vec![0u8; BLOCK];
    let (mut left, mut lines) = (to - from, 0u64);
    while left > 0 {
        let want = (left as usize).min(BLOCK);
        match file.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => {
                lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
                left -= n as u64;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => io_error(path, e),
        }
        pgrx::check_for_interrupts!();
    }
    lines
}

/// The offset just past the first newline at or after `at` (before `limit`), if any.
fn next_line_start(file: &mut File, path: &str, at: u64, limit: u64) -> Option<u64> {
    file.seek(SeekFrom::Start(at)).unwrap_or_else(|e| io_error(path, e));
    let mut buf = vec![0u8; 64 * 1024];
    let mut pos = at;
    while pos < limit {
        let want = ((limit - pos) as usize).min(buf.len());
        let n = match file.read(&mut buf[..want]) {
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

/// A range for one writer: `end` None runs to the end of the file.
#[derive(Debug, Clone, Copy)]
struct Piece {
    start: u64,
    end: Option<u64>,
    first_line: u64,
}

/// Cuts the gaps (start, end, first line) into pieces of about `total / writers` bytes.
fn cut(file: &mut File, path: &str, gaps: &[(u64, Option<u64>, u64)], size: u64, writers: usize) -> Vec<Piece> {
    let total: u64 = gaps.iter().map(|&(s, e, _)| e.unwrap_or(size) - s).sum();
    let target = (total / writers as u64).max(1);
    let mut pieces = Vec::new();
    for &(start, end, first_line) in gaps {
        let stop = end.unwrap_or(size);
        let (mut at, mut line) = (start, first_line);
        loop {
            let cut_at = at + target;
            let next = if cut_at + 1 < stop { next_line_start(file, path, cut_at, stop) } else { None };
            match next {
                Some(next) if next < stop => {
                    pieces.push(Piece { start: at, end: Some(next), first_line: line });
                    line += count_lines(file, path, at, next);
                    at = next;
                }
                _ => {
                    pieces.push(Piece { start: at, end, first_line: line });
                    break;
                }
            }
        }
    }
    pieces
}

/// Loads `path` with `writers` workers; the same summary as a single-writer load.
pub fn ingest_file_writers(path: &str, target: Option<Oid>, opts: &LoadOptions, writers: usize) -> LoadSummary {
    let started = Instant::now();
    target::check_file_permission();
    opts.check();
    let mut file = open_file(path);
    let oid = target::resolve(target, path);
    let meta = file.metadata().unwrap_or_else(|e| io_error(path, e));
    let size = meta.len();
    let mtime =
        meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map(|d| d.as_secs_f64());
    let target = Target::open(oid);
    sources(&target, opts); // a bad mapping fails here, not in every writer
    if unsafe { pg_sys::CheckRelationLockedByMe(target.rel, pg_sys::ShareLock as i32, true) } {
        IngestError::new(
            PgSqlErrorCode::ERRCODE_OBJECT_IN_USE,
            format!("writers => {writers} cannot load {}: this transaction holds a lock on it", target.name),
        )
        .detail("The writers run in other sessions and would wait for this transaction forever.")
        .hint("Load with one writer, or in a transaction that has not locked (or created) the table.")
        .raise();
    }
    ledger::lock_file(oid, path);
    let head = size.min(HEAD_BYTES);
    let fp = fingerprint(&file, head);

    // what is loaded already: ingest.files' prefix, then committed ranges of this version
    let (mut prefix, mut prefix_lines, mut replaced) = (0u64, 0u64, opts.force);
    if let Some(e) = ledger::file_entry(oid, path).filter(|_| !opts.force) {
        let same = size >= e.byte_offset as u64
            && size >= e.head_bytes as u64
            && fingerprint(&file, e.head_bytes as u64) == e.head_fingerprint;
        if same {
            (prefix, prefix_lines) = (e.byte_offset as u64, e.lines as u64);
        } else {
            replaced = true;
        }
    }
    let mut ranges = ledger::file_ranges(oid, path);
    let stale = ranges.iter().any(|r| {
        r.start < prefix as i64 || size < r.end as u64 || fingerprint(&file, r.head_bytes as u64) != r.head_fingerprint
    });
    if replaced || stale {
        ledger::delete_ranges(oid, path);
        ranges.clear();
    }
    let resumed = !ranges.is_empty();

    let mut gaps = Vec::new();
    let (mut pos, mut line) = (prefix, prefix_lines + 1);
    for r in &ranges {
        if r.start as u64 > pos {
            gaps.push((pos, Some(r.start as u64), line));
        }
        pos = r.end as u64;
        line = (r.first_line + r.lines) as u64;
    }
    if size > pos {
        gaps.push((pos, None, line));
    }
    if gaps.is_empty() && !resumed {
        // nothing new: the single-writer load says so (unchanged)
        target.close();
        return super::ingest_file(path, Some(oid), opts);
    }
    let status = if resumed {
        "resumed"
    } else if prefix > 0 {
        "appended"
    } else {
        "loaded"
    };
    let load_id = ledger::start_load(path, &target.name, oid, &opts.on_error, prefix as i64, None);

    if !gaps.is_empty() {
        let pieces = cut(&mut file, path, &gaps, size, writers);
        let threads = opts.threads.unwrap_or((crate::gucs::max_threads() / writers).max(1) as i32);
        let options = serde_json::json!({
            "columns": opts.columns, "rest": opts.rest, "threads": threads, "epoch_unit": opts.epoch_unit,
            "on_error": opts.on_error, "max_errors": opts.max_errors,
        })
        .to_string();
        let (path_sql, options_sql, fp_sql) = (quote_literal(path), quote_literal(&options), quote_literal(&fp));
        let schema = "ingest";
        let queries: Vec<String> = pieces
            .iter()
            .map(|p| {
                format!(
                    "SELECT {schema}.load_range({path_sql}, {}::oid, {}, {}, {}, {options_sql}::jsonb, {load_id}, {head}, \
                     {fp_sql})",
                    u32::from(oid),
                    p.start,
                    p.end.map_or("NULL".to_owned(), |e| e.to_string()),
                    p.first_line
                )
            })
            .collect();
        let n = queries.len();
        let batch = crate::batch::Batch::start(queries, writers.min(n), true, None);
        let mut failure: Option<(usize, String, String, String)> = None;
        for (no, status, _, _, error, code) in batch {
            let worse = failure.as_ref().is_none_or(|f| f.1 != "error" && status == "error");
            if status != "ok" && worse {
                failure = Some((no as usize, status, error.unwrap_or_default(), code.unwrap_or_default()));
            }
        }
        if let Some((no, _, message, code)) = failure {
            let committed = ledger::file_ranges(oid, path).len();
            let p = pieces[no - 1];
            IngestError::new(sqlstate(&code), message)
                .detail(format!(
                    "The writer of bytes {}..{} (from line {}) failed; {committed} range(s) of \"{path}\" are committed \
                     and stay.",
                    p.start,
                    p.end.map_or("end".to_owned(), |e| e.to_string()),
                    p.first_line
                ))
                .hint("Fix the cause and call ingest_jsonl again: it loads only what is not loaded yet.")
                .raise()
        }
    }

    // every range is in: fold them into ingest.files
    let ranges = ledger::file_ranges(oid, path);
    let (end, lines) = match ranges.last() {
        Some(r) => (r.end, r.first_line - 1 + r.lines),
        None => (prefix as i64, prefix_lines as i64),
    };
    ledger::save_file(&ledger::FileState {
        target_oid: oid,
        path,
        target: &target.name,
        byte_offset: end,
        lines,
        size: size as i64,
        mtime,
        head_bytes: head as i32,
        head_fingerprint: &fp,
        load_id,
    });
    ledger::delete_ranges(oid, path);
    let (lines, inserted, rejected, skipped, bytes, first_error) = ledger::range_totals(load_id);
    let result = LoadSummary {
        file: path.to_owned(),
        target: target.name.clone(),
        status: status.into(),
        lines,
        rows_inserted: inserted,
        rows_rejected: rejected,
        lines_skipped: skipped,
        bytes,
        seconds: started.elapsed().as_secs_f64(),
        load_id,
    };
    ledger::finish_load(load_id, &result, first_error);
    target.close();
    result
}

/// One writer's range (`ingest.load_range`): loaded, and recorded as committed, in the
/// current transaction.
#[allow(clippy::too_many_arguments)]
pub fn load_range(
    path: &str,
    oid: Oid,
    start: i64,
    end: Option<i64>,
    first_line: i64,
    options: serde_json::Value,
    parent_load_id: i64,
    head_bytes: i32,
    head_fingerprint: &str,
) {
    let started = Instant::now();
    target::check_file_permission();
    let opts: LoadOptions = LoadOptions {
        columns: options.get("columns").filter(|v| !v.is_null()).cloned(),
        rest: options["rest"].as_str().map(str::to_owned),
        threads: options["threads"].as_i64().map(|t| t as i32),
        epoch_unit: options["epoch_unit"].as_str().unwrap_or("s").to_owned(),
        on_error: options["on_error"].as_str().unwrap_or("stop").to_owned(),
        max_errors: options["max_errors"].as_i64(),
        force: false,
    };
    let checked: Checked = opts.check();
    let file = open_file(path);
    let size = file.metadata().unwrap_or_else(|e| io_error(path, e)).len();
    let target = Target::open(oid);
    let sources = sources(&target, &opts);
    let load_id = ledger::start_load(path, &target.name, oid, &opts.on_error, start, Some(parent_load_id));
    let span = Span { start_offset: start as u64, start_line: first_line as u64, end_offset: end.map(|e| e as u64) };
    let done = load_span(path, file, size, &target, sources, &checked, &span, load_id, "range", started);
    ledger::finish_load(load_id, &done.summary, done.first_error);
    let range = FileRange {
        start,
        end: done.end_offset as i64,
        first_line,
        lines: done.lines as i64,
        head_bytes,
        head_fingerprint: head_fingerprint.to_owned(),
        load_id,
    };
    ledger::save_range(oid, path, &range, parent_load_id);
    target.close();
}
