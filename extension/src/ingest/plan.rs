//! What a load loads: decided once, after the file's lock is taken, from the open file handle
//! (`fstat`) and what the ledger knows. Every byte read, fingerprinted or cut into ranges is
//! read from that same handle, and nothing past the size seen here: bytes appended while the
//! load runs wait for the next one.
//!
//! A file is the one the ledger knows when the OS says so (same device and inode), it is not
//! shorter than what was loaded, its first bytes are the same, and so are the bytes just
//! before the offset the last load stopped at. Otherwise it was replaced (or rewritten, or
//! truncated) and is loaded as a new file.

use std::fs::File;
use std::io::ErrorKind;
use std::os::unix::fs::{FileExt, MetadataExt};

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::pg_sys::Oid;
use pgrx::{PgLogLevel, PgSqlErrorCode};

use super::target::Target;
use super::Span;
use crate::error::IngestError;
use crate::ledger::{self, FileEntry, FileFacts, FileRange, Fingerprint};

/// The head of a file the ledger fingerprints to tell a grown file from a replaced one.
pub const HEAD_BYTES: u64 = 4096;
/// The bytes before the resume offset the ledger fingerprints.
pub const TAIL_BYTES: u64 = 4096;

fn io_error(path: &str, e: std::io::Error) -> ! {
    IngestError::new(PgSqlErrorCode::ERRCODE_IO_ERROR, format!("could not read file \"{path}\": {e}")).raise()
}

/// `fstat` of the open file.
pub fn facts(file: &File, path: &str) -> FileFacts {
    let m = file.metadata().unwrap_or_else(|e| io_error(path, e));
    let mtime = m.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map(|d| d.as_secs_f64());
    FileFacts { device: m.dev(), inode: m.ino(), size: m.len(), mtime }
}

/// The file's path with symbolic links, `.`, `..` and repeated slashes resolved: the ledger's
/// key. Taken from the open handle itself (`/proc/self/fd`), so it names the file that is
/// read even if the path is changed meanwhile.
pub fn resolved_path(file: &File, path: &str) -> String {
    use std::os::fd::AsRawFd;
    std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
        .ok()
        .filter(|p| p.is_absolute())
        .or_else(|| std::fs::canonicalize(path).ok())
        .and_then(|p| p.to_str().map(str::to_owned))
        .unwrap_or_else(|| path.to_owned())
}

/// FNV-1a over bytes `from..to` of the file (fewer at its end), as hex and length.
pub fn fingerprint(file: &File, path: &str, from: u64, to: u64) -> Fingerprint {
    // never more than a fingerprint's bytes, whatever a caller asks: what sizes the buffer
    // is bounded here
    let mut buf = vec![0u8; to.saturating_sub(from).min(HEAD_BYTES.max(TAIL_BYTES)) as usize];
    let mut read = 0;
    while read < buf.len() {
        match file.read_at(&mut buf[read..], from + read as u64) {
            Ok(0) => break,
            Ok(k) => read += k,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => io_error(path, e),
        }
    }
    Fingerprint { bytes: read as i32, hash: pg_ingest_core::input::fingerprint(&buf[..read]) }
}

/// The first bytes of a file of `size` bytes.
pub fn head_of(file: &File, path: &str, size: u64) -> Fingerprint {
    fingerprint(file, path, 0, size.min(HEAD_BYTES))
}

/// The bytes just before `offset`.
pub fn tail_before(file: &File, path: &str, offset: u64) -> Fingerprint {
    fingerprint(file, path, offset.saturating_sub(TAIL_BYTES), offset)
}

/// The number of the line that starts at `offset`, after `lines` lines. A load can stop at the
/// end of a file whose last line had no newline yet (it parsed, so it was loaded): a later load
/// that goes on from there reads the rest of that same line (its newline, or trailing blanks
/// and then the newline) before the next one. So the line at `offset` is a new one only if the
/// byte before it is a newline; otherwise it is line `lines` going on, and what is left of it
/// is a blank line (skipped) or, if the line was longer, the rest of it, numbered as it.
pub fn line_at(file: &File, path: &str, offset: u64, lines: u64) -> u64 {
    let mut before = [0u8; 1];
    let ended = offset == 0
        || loop {
            match file.read_at(&mut before, offset - 1) {
                Ok(0) => break true,
                Ok(_) => break before[0] == b'\n',
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => io_error(path, e),
            }
        };
    if ended || lines == 0 {
        lines + 1
    } else {
        lines
    }
}

pub fn notice(message: String, hint: &str) {
    ErrorReport::new(PgSqlErrorCode::ERRCODE_SUCCESSFUL_COMPLETION, message, "ingest_jsonl")
        .set_hint(hint)
        .report(PgLogLevel::NOTICE);
}

/// What one load of one file into one table does.
#[derive(Debug)]
pub struct LoadPlan {
    /// The resolved path: the ledger's key and what writers open.
    pub key: String,
    pub facts: FileFacts,
    pub head: Fingerprint,
    /// Loaded already, from the file's start: bytes and lines.
    pub prefix: (u64, u64),
    /// Ranges committed by writers of an earlier load of this same file, still valid.
    pub ranges: Vec<FileRange>,
    /// Ranges the ledger holds for this file that no longer count (replaced file, force).
    pub forget_ranges: bool,
    /// What is left to load, in file order; every span ends at or before `facts.size`.
    pub gaps: Vec<Span>,
    /// `loaded`, `appended`, `resumed`, or `unchanged` when there is nothing to load.
    pub status: &'static str,
    /// The ledger knows the file under another path (renamed, or another spelling).
    pub renamed: bool,
    /// Compressed or not, the shape of its JSON, and whether it is loaded only as a whole.
    pub layout: super::Layout,
}

impl LoadPlan {
    /// Decides what to load of `file` (open, its lock held) into `target`.
    /// `layout_of` tells how the file of a size is laid out: a file loaded only as a whole
    /// (compressed, or not one value per line) that changed is loaded again from its start.
    pub fn decide(
        file: &File,
        key: &str,
        target: Oid,
        target_name: &str,
        force: bool,
        layout_of: impl FnOnce(u64) -> super::Layout,
    ) -> Self {
        // one load of a file (whatever its path) into a table at a time; then what it is now
        let opened = facts(file, key);
        ledger::lock_file(target, opened.device, opened.inode);
        let facts = self::facts(file, key);
        let size = facts.size;
        let layout = layout_of(size);
        let head = head_of(file, key, size);
        let entry = ledger::file_entry(target, facts.device, facts.inode);
        let mut ranges = ledger::file_ranges(target, facts.device, facts.inode);
        let had_ranges = !ranges.is_empty();
        let (mut prefix, mut previous, mut same, mut renamed) = ((0u64, 0u64), None, !force, false);
        match entry.as_ref().filter(|_| !force) {
            Some((was, e)) => match same_as_before(file, key, &facts, e) {
                None => {
                    prefix = (e.byte_offset as u64, e.lines as u64);
                    previous = Some((e.load_id, e.loaded_at.clone()));
                    if was != key {
                        renamed = true;
                        notice(
                            format!("\"{key}\" was loaded as \"{was}\" (load {}): going on from there", e.load_id),
                            "The ledger (ingest.files) knows a file by its device and inode, whatever its name.",
                        );
                    }
                }
                Some(why) => {
                    same = false;
                    notice(
                        format!("\"{key}\" was rewritten since load {} ({why}): loading it as a new file", e.load_id),
                        "The ledger (ingest.files) tells a grown file from a rewritten one by its length and the \
                         bytes at its start and before where the last load stopped.",
                    );
                }
            },
            None if !force => {
                if let Some(load_id) = ledger::other_file_at(target, key, facts.device, facts.inode) {
                    notice(
                        format!(
                            "\"{key}\" is another file than the one loaded from that path (load {load_id}): \
                                 loading it as a new file"
                        ),
                        "The ledger (ingest.files) knows a file by its device and inode: a file replaced by another \
                         (or rotated away) is a new one.",
                    );
                }
            }
            None => {}
        }
        if layout.whole && same && prefix.0 > 0 && prefix.0 < size {
            notice(
                format!(
                    "\"{key}\" changed since it was loaded, and {} input cannot be loaded from where the last load \
                     stopped: loading all of it again",
                    layout.kind()
                ),
                "The rows of the earlier load stay; only a file of JSON lines, uncompressed, is loaded incrementally.",
            );
            (prefix, previous, same) = ((0, 0), None, false);
        }
        let stale = ranges.iter().any(|r| {
            (r.start as u64) < prefix.0
                || size < r.end as u64
                || fingerprint(file, key, 0, r.head.bytes as u64) != r.head
        });
        if !same || stale {
            ranges.clear();
        }
        let forget_ranges = had_ranges && ranges.is_empty();

        let mut gaps = Vec::new();
        let (mut pos, mut line) = (prefix.0, line_at(file, key, prefix.0, prefix.1));
        for r in &ranges {
            if r.start as u64 > pos {
                gaps.push(Span { start_offset: pos, start_line: line, end_offset: Some(r.start as u64) });
            }
            pos = r.end as u64;
            line = line_at(file, key, pos, (r.first_line - 1 + r.lines) as u64);
        }
        if size > pos {
            gaps.push(Span { start_offset: pos, start_line: line, end_offset: Some(size) });
        }
        let status = if !ranges.is_empty() {
            "resumed"
        } else if gaps.is_empty() && entry.is_some() && same {
            "unchanged"
        } else if prefix.0 > 0 {
            "appended"
        } else {
            "loaded"
        };
        if status == "unchanged" {
            let (load_id, at) = previous.unwrap_or_default();
            notice(
                format!("\"{key}\" is unchanged since it was loaded into {target_name} at {at} (load {load_id}): nothing to load"),
                "force => true loads it again.",
            );
        }
        Self { key: key.to_owned(), facts, head, prefix, ranges, forget_ranges, gaps, status, renamed, layout }
    }

    /// Records in the ledger that the file is loaded up to `end` (`lines` lines), by `load_id`.
    pub fn save(&self, file: &File, target: &Target, end: u64, lines: i64, load_id: i64) {
        ledger::save_file(&ledger::FileState {
            target_oid: target.oid,
            path: &self.key,
            target: &target.name,
            byte_offset: end as i64,
            lines,
            facts: self.facts,
            head: &self.head,
            tail: &tail_before(file, &self.key, end),
            load_id,
        });
    }
}

/// Why the open file (found in the ledger by its device and inode) is not the one the entry
/// describes any more, if it is not: rewritten in place or truncated.
fn same_as_before(file: &File, key: &str, facts: &FileFacts, e: &FileEntry) -> Option<&'static str> {
    let offset = e.byte_offset as u64;
    if facts.size < offset {
        Some("it is shorter than what was loaded")
    } else if fingerprint(file, key, 0, e.head.bytes as u64) != e.head {
        Some("its first bytes differ")
    } else if e.tail.bytes > 0 && tail_before(file, key, offset) != e.tail {
        Some("the bytes before where the last load stopped differ")
    } else {
        None
    }
}
