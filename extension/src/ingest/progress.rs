//! Progress of a running load, for other sessions and for the caller.
//!
//! Other sessions see it in `ingest.progress`: the numbers ride in the spare parameters of the
//! backend's COPY progress slot (the one `pg_stat_progress_copy` reads; COPY itself uses the
//! first six of twenty), so they share its visibility rules and need no shared memory set up at
//! server start. The file's path, text, sits in a small dynamic shared memory segment whose
//! handle is one of those parameters.
//!
//! The caller sees NOTICEs, paced by `pg_ingest.progress_interval` and
//! `pg_ingest.progress_notices`: a handful of milestones by default, or one per interval with
//! the exact numbers in DETAIL for programs (the `pg-ingest` client), or none.

use std::time::{Duration, Instant};

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::pg_sys::{self, Oid};
use pgrx::{PgLogLevel, PgSqlErrorCode};

use pg_ingest_core::report::ProgressReport;

use crate::gucs::{self, ProgressNotices};

/// Marks a COPY progress slot as a pg_ingest load ("pgingest").
pub const MAGIC: i64 = 0x7067_696e_6765_7374;

/// Indexes (from 0) of the COPY progress parameters pg_ingest uses; `param11`..`param20` in
/// `pg_stat_get_progress_info('COPY')`.
mod param {
    pub const MAGIC: i32 = 10;
    pub const HANDLE: i32 = 11;
    pub const LOAD_ID: i32 = 12;
    pub const BYTES_DONE: i32 = 13;
    pub const BYTES_TOTAL: i32 = 14;
    pub const LINES: i32 = 15;
    pub const ROWS: i32 = 16;
    pub const REJECTED: i32 = 17;
    pub const STARTED: i32 = 18;
    pub const START_OFFSET: i32 = 19;
}

/// The head of the shared segment; the path's bytes follow it.
#[repr(C)]
struct SharedHead {
    magic: i64,
    pid: i32,
    role: Oid,
    load_id: i64,
    path_len: u32,
}

/// One load's progress, published as it goes.
pub struct Progress {
    load_id: i64,
    file: String,
    total: u64,
    start_offset: u64,
    started_at: pg_sys::TimestampTz,
    started: Instant,
    segment: *mut pg_sys::dsm_segment,
    handle: u32,
    mode: ProgressNotices,
    /// Publishes nothing (see [`Progress::silent`]).
    silent: bool,
    interval: Duration,
    last_notice: Instant,
    notices: u32,
    last_step: u64,
    /// What the parse threads have handed over: the file offset after it, its lines, and
    /// its rows (all bound for COPY).
    pub parsed_end: u64,
    pub parsed_lines: u64,
    pub parsed_rows: u64,
    /// Rows written by COPYs that have finished (skip mode writes in several).
    pub written_before: u64,
    pub rejected: u64,
    /// Everything has been written: the parsed numbers are the final ones.
    done: bool,
    // What is reported: rows COPY has written, and the share of the parsed input they stand
    // for (rows are spread evenly enough over a few megabytes of input).
    bytes_done: u64,
    lines: u64,
    rows: u64,
}

impl Progress {
    /// Starts reporting a load of `file` (`total` bytes) from `start_offset`.
    pub fn start(load_id: i64, file: &str, total: u64, start_offset: u64) -> Self {
        let path = file.as_bytes();
        let head = std::mem::size_of::<SharedHead>();
        let (segment, handle) = unsafe {
            let segment = pg_sys::dsm_create(head + path.len(), 0);
            let base = pg_sys::dsm_segment_address(segment) as *mut u8;
            (base as *mut SharedHead).write(SharedHead {
                magic: MAGIC,
                pid: pg_sys::MyProcPid,
                role: pg_sys::GetUserId(),
                load_id,
                path_len: path.len() as u32,
            });
            std::ptr::copy_nonoverlapping(path.as_ptr(), base.add(head), path.len());
            (segment, pg_sys::dsm_segment_handle(segment))
        };
        Self::start_with(load_id, file, total, start_offset, segment, handle)
    }

    fn start_with(
        load_id: i64,
        file: &str,
        total: u64,
        start_offset: u64,
        segment: *mut pg_sys::dsm_segment,
        handle: u32,
    ) -> Self {
        let now = Instant::now();
        Self {
            load_id,
            file: file.to_owned(),
            total,
            start_offset,
            started_at: unsafe { pg_sys::GetCurrentTimestamp() },
            started: now,
            segment,
            handle,
            mode: gucs::progress_notices(),
            silent: false,
            interval: gucs::progress_interval(),
            last_notice: now,
            notices: 0,
            last_step: 0,
            parsed_end: start_offset,
            parsed_lines: 0,
            parsed_rows: 0,
            written_before: 0,
            rejected: 0,
            done: false,
            bytes_done: start_offset,
            lines: 0,
            rows: 0,
        }
    }

    /// Numbers kept for the caller only: nothing published, no NOTICE (rows read by a query).
    pub fn silent(file: &str) -> Self {
        let mut p = Self::start_with(0, file, 0, 0, std::ptr::null_mut(), 0);
        (p.mode, p.silent) = (ProgressNotices::Off, true);
        p
    }

    /// Rows the running COPY has written so far, from its own progress counter.
    fn copy_rows() -> u64 {
        unsafe {
            let entry = pg_sys::MyBEEntry;
            if entry.is_null() || (*entry).st_progress_command != pg_sys::ProgressCommandType::PROGRESS_COMMAND_COPY {
                return 0;
            }
            (*entry).st_progress_param[pg_sys::PROGRESS_COPY_TUPLES_PROCESSED as usize].max(0) as u64
        }
    }

    fn measure(&mut self) {
        if self.done {
            (self.bytes_done, self.lines, self.rows) = (self.parsed_end, self.parsed_lines, self.written_before);
            return;
        }
        self.rows = (self.written_before + Self::copy_rows()).min(self.parsed_rows);
        let share = if self.parsed_rows == 0 { 0.0 } else { self.rows as f64 / self.parsed_rows as f64 };
        self.bytes_done = self.start_offset + ((self.parsed_end - self.start_offset) as f64 * share) as u64;
        self.lines = (self.parsed_lines as f64 * share) as u64;
    }

    /// Publishes the numbers (cheap: call it often) and sends a NOTICE when one is due.
    pub fn tick(&mut self) {
        self.measure();
        self.publish();
        let now = Instant::now();
        if self.mode == ProgressNotices::Off || now.duration_since(self.last_notice) < self.interval {
            return;
        }
        if self.mode == ProgressNotices::Milestones {
            let step = (self.fraction() * 10.0) as u64;
            if step <= self.last_step {
                return;
            }
            self.last_step = step;
        }
        self.last_notice = now;
        self.notice();
    }

    /// The load has written `rows` rows of everything parsed: a last NOTICE when they go out
    /// every interval.
    pub fn finish(&mut self, rows: u64, rejected: u64) {
        (self.written_before, self.rejected, self.done) = (rows, rejected, true);
        self.measure();
        self.publish();
        if self.mode == ProgressNotices::Interval {
            self.notice();
        }
        if !self.segment.is_null() {
            unsafe { pg_sys::dsm_detach(self.segment) };
            self.segment = std::ptr::null_mut();
        }
    }

    fn fraction(&self) -> f64 {
        if self.total <= self.start_offset {
            return 1.0;
        }
        (self.bytes_done.saturating_sub(self.start_offset)) as f64 / (self.total - self.start_offset) as f64
    }

    /// Writes the numbers into this backend's COPY progress slot. Outside a COPY they are
    /// invisible (the views show only the slot's current command), and the next COPY's start
    /// clears them: so they are written again at every tick.
    fn publish(&self) {
        if self.silent {
            return;
        }
        let index = [
            param::MAGIC,
            param::HANDLE,
            param::LOAD_ID,
            param::BYTES_DONE,
            param::BYTES_TOTAL,
            param::LINES,
            param::ROWS,
            param::REJECTED,
            param::STARTED,
            param::START_OFFSET,
        ];
        let value = [
            MAGIC,
            self.handle as i64,
            self.load_id,
            self.bytes_done as i64,
            self.total as i64,
            self.lines as i64,
            self.rows as i64,
            self.rejected as i64,
            self.started_at,
            self.start_offset as i64,
        ];
        unsafe { pg_sys::pgstat_progress_update_multi_param(index.len() as i32, index.as_ptr(), value.as_ptr()) };
    }

    fn notice(&mut self) {
        self.notices += 1;
        let elapsed = self.started.elapsed().as_secs_f64();
        let done = self.bytes_done.saturating_sub(self.start_offset);
        let rate = if elapsed > 0.0 { done as f64 / elapsed } else { 0.0 };
        let left = self.total.saturating_sub(self.bytes_done);
        let eta = if left == 0 {
            "done".to_owned()
        } else if rate > 0.0 {
            format!("ETA {}", seconds(left as f64 / rate))
        } else {
            "ETA unknown".to_owned()
        };
        let message = format!(
            "{}: {:.0}% of {}, {} lines, {} rows, {} rejected, {}/s, {eta}",
            self.file,
            self.fraction() * 100.0,
            megabytes(self.total),
            self.lines,
            self.rows,
            self.rejected,
            megabytes(rate as u64),
        );
        let mut report = ErrorReport::new(PgSqlErrorCode::ERRCODE_SUCCESSFUL_COMPLETION, message, "ingest_jsonl");
        if self.mode == ProgressNotices::Interval {
            let numbers = ProgressReport {
                load_id: self.load_id,
                bytes_done: self.bytes_done,
                bytes_total: self.total,
                start_offset: self.start_offset,
                lines: self.lines,
                rows: self.rows,
                rejected: self.rejected,
                seconds: elapsed,
            };
            report = report.set_detail(numbers.to_detail());
        }
        report.report(PgLogLevel::NOTICE);
    }
}

fn megabytes(bytes: u64) -> String {
    let mb = bytes as f64 / 1e6;
    if mb >= 100.0 {
        format!("{mb:.0} MB")
    } else {
        format!("{mb:.1} MB")
    }
}

fn seconds(s: f64) -> String {
    let s = s.ceil() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

/// The path of the load whose progress segment is `handle`, if it is still running in
/// backend `pid` as `load_id` and the caller may see that backend's activity (its role, or
/// pg_read_all_stats: the rule of pg_stat_progress_copy).
pub fn file_of(handle: i64, pid: i32, load_id: i64) -> Option<String> {
    let handle = u32::try_from(handle).ok()?;
    unsafe {
        // A segment this backend has mapped already cannot be attached again (and is not a
        // load of another backend).
        if !pg_sys::dsm_find_mapping(handle).is_null() {
            return None;
        }
        let segment = pg_sys::dsm_attach(handle);
        if segment.is_null() {
            return None;
        }
        let base = pg_sys::dsm_segment_address(segment) as *const u8;
        let size = pg_sys::dsm_segment_map_length(segment);
        let head_size = std::mem::size_of::<SharedHead>();
        let mut path = None;
        if size >= head_size {
            let head = (base as *const SharedHead).read();
            let me = pg_sys::GetUserId();
            if head.magic == MAGIC
                && head.pid == pid
                && head.load_id == load_id
                && head_size + head.path_len as usize <= size
                && (pg_sys::has_privs_of_role(me, head.role)
                    || pg_sys::has_privs_of_role(me, pg_sys::Oid::from(pg_sys::ROLE_PG_READ_ALL_STATS)))
            {
                let bytes = std::slice::from_raw_parts(base.add(head_size), head.path_len as usize);
                path = Some(String::from_utf8_lossy(bytes).into_owned());
            }
        }
        pg_sys::dsm_detach(segment);
        path
    }
}
