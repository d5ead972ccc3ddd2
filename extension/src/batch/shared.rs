//! What a batch's leader and its workers share: one dynamic shared memory segment holding a
//! header (with who the workers become), one result slot per query, then the texts
//! (search_path, queries).

use std::sync::atomic::{AtomicI32, AtomicU32};

use crate::identity::Caller;

unsafe extern "C" {
    /// libc's kill(2): signals a worker, or (signal 0) asks whether a process exists.
    pub fn kill(pid: i32, sig: i32) -> i32;
}
pub const SIGINT: i32 = 2;
pub const SIGTERM: i32 = 15;

// PostgreSQL's own signal handlers, as C functions (pgrx's bindings wrap them in Rust, and
// wrapped functions cannot be signal handlers).
unsafe extern "C-unwind" {
    #[link_name = "die"]
    fn pg_die(sig: std::ffi::c_int);
    #[link_name = "StatementCancelHandler"]
    fn pg_statement_cancel_handler(sig: std::ffi::c_int);
}

/// Makes a background worker behave like a backend: SIGTERM ends it even inside a query,
/// SIGINT cancels the running query.
pub fn backend_signals() {
    unsafe {
        crate::pg_compat::pqsignal(SIGTERM, Some(pg_die));
        crate::pg_compat::pqsignal(SIGINT, Some(pg_statement_cancel_handler));
        pgrx::pg_sys::BackgroundWorkerUnblockSignals();
    }
}

/// A SQL string literal, as PostgreSQL's quote_literal() makes it (E'' when there are
/// backslashes, so it reads the same whatever standard_conforming_strings says).
pub fn quote_literal(s: &str) -> String {
    let body = s.replace('\'', "''");
    if s.contains('\\') {
        format!("E'{}'", body.replace('\\', "\\\\"))
    } else {
        format!("'{body}'")
    }
}

/// Copies a name into a fixed-size `BackgroundWorker` field, NUL-terminated.
pub fn copy_name(dst: &mut [std::ffi::c_char], s: &str) {
    for (d, b) in dst.iter_mut().zip(s.bytes().chain(std::iter::once(0))) {
        *d = b as std::ffi::c_char;
    }
}

/// Sleeps on this backend's latch for at most `ms` milliseconds (interrupts are the caller's
/// to check: this also runs while an ERROR unwinds).
pub fn wait_latch(ms: i64) {
    unsafe {
        pgrx::pg_sys::WaitLatch(
            pgrx::pg_sys::MyLatch,
            (pgrx::pg_sys::WL_LATCH_SET | pgrx::pg_sys::WL_TIMEOUT | pgrx::pg_sys::WL_EXIT_ON_PM_DEATH) as i32,
            ms as std::ffi::c_long,
            pgrx::pg_sys::PG_WAIT_EXTENSION,
        );
        pgrx::pg_sys::ResetLatch(pgrx::pg_sys::MyLatch);
    }
}

/// Whether process `pid` still exists.
pub fn process_exists(pid: i32) -> bool {
    unsafe { kill(pid, 0) == 0 }
}

pub const MAGIC: u32 = 0x7067_6962; // "pgib"
/// The largest segment a batch makes: its offsets are 32-bit.
pub const MAX_SEGMENT_BYTES: usize = i32::MAX as usize;
pub const ERROR_BYTES: usize = 2048;

/// Slot states.
pub const PENDING: u32 = 0;
pub const RUNNING: u32 = 1;
pub const DONE: u32 = 2;

/// Why the leader interrupted a running query (set before it sends SIGINT).
pub const INTERRUPT_TIMEOUT: u32 = 1;
pub const INTERRUPT_CANCEL: u32 = 2;
/// The query waits for a lock the leader's transaction holds: it would wait forever.
pub const INTERRUPT_DEADLOCK: u32 = 3;

/// Result statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Status {
    Ok = 0,
    Error = 1,
    Timeout = 2,
    Cancelled = 3,
}

impl Status {
    pub fn from_u32(v: u32) -> Self {
        match v {
            0 => Self::Ok,
            2 => Self::Timeout,
            3 => Self::Cancelled,
            _ => Self::Error,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Error => "error",
            Self::Timeout => "timeout",
            Self::Cancelled => "cancelled",
        }
    }
}

#[repr(C)]
pub struct Header {
    pub magic: u32,
    pub n_queries: u32,
    /// The next query a worker takes.
    pub next_query: AtomicU32,
    /// Set: start no more queries.
    pub stop: AtomicU32,
    /// Set: a worker whose query fails sets `stop` at once (the leader also cancels what runs).
    pub stop_on_error: u32,
    /// Who the workers become.
    pub caller: Caller,
    pub leader_pid: i32,
    /// The leader's latch (in the PGPROC array: the same address in every backend).
    pub leader_latch: usize,
    /// (offset, length) of the texts, from the start of the segment.
    pub search_path: (u32, u32),
    pub queries_at: u32,
    pub slots_at: u32,
    /// The area queries' rows go to (`results => true`), and how much of it is taken.
    pub results_at: u32,
    pub results_len: u32,
    pub results_used: AtomicU32,
    /// A writers' batch (`ingest_jsonl(…, writers => N)`): the leader's load id; else 0.
    pub writers_of: i64,
}

#[repr(C)]
pub struct Slot {
    pub state: AtomicU32,
    pub pid: AtomicI32,
    pub interrupt: AtomicU32,
    pub status: u32,
    pub rows: u64,
    pub seconds: f64,
    pub sqlstate: [u8; 5],
    pub error_len: u32,
    pub error: [u8; ERROR_BYTES],
    /// The query's rows as a JSON array, in the results area; and whether rows were left out.
    pub result: (u32, u32),
    pub truncated: u32,
}

/// A view of the segment.
#[derive(Clone, Copy)]
pub struct Segment {
    pub base: *mut u8,
}

impl Segment {
    /// Bytes needed for these texts: an ERROR (54000) past what the segment's 32-bit offsets
    /// address (a batch of millions of queries), before anything is allocated.
    pub fn size(search_path: &str, queries: &[String], results: usize) -> usize {
        let texts: usize = search_path.len() + queries.iter().map(|q| q.len()).sum::<usize>();
        let size = std::mem::size_of::<Header>()
            + 8 * queries.len()
            + std::mem::size_of::<Slot>() * queries.len()
            + texts
            + 64
            + results;
        if size > MAX_SEGMENT_BYTES {
            crate::error::IngestError::new(
                pgrx::PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
                format!("run_batch: {} queries need {size} bytes of shared memory, more than one batch may use", queries.len()),
            )
            .detail(format!("A batch's shared memory holds about {} bytes per query plus their texts, at most {MAX_SEGMENT_BYTES} bytes.", std::mem::size_of::<Slot>()))
            .hint("Split the queries into several run_batch calls, or lower pg_ingest.batch_result_bytes.")
            .raise()
        }
        size
    }

    /// Takes up to `want` bytes of the results area; where, and how many.
    pub fn reserve(&self, want: usize) -> (usize, usize) {
        let h = self.header();
        let mut used = h.results_used.load(std::sync::atomic::Ordering::Acquire);
        loop {
            let take = want.min((h.results_len - used) as usize);
            match h.results_used.compare_exchange(
                used,
                used + take as u32,
                std::sync::atomic::Ordering::AcqRel,
                std::sync::atomic::Ordering::Acquire,
            ) {
                Ok(_) => return (h.results_at as usize + used as usize, take),
                Err(now) => used = now,
            }
        }
    }

    /// Query `i`'s rows, as JSON text.
    pub fn result(&self, i: usize) -> Option<&str> {
        let (at, len) = self.slot(i).result;
        (at > 0).then(|| self.text((at, len)))
    }

    pub fn write_at(&self, at: usize, bytes: &[u8]) {
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.base.add(at), bytes.len()) };
    }

    pub fn header(&self) -> &Header {
        unsafe { &*(self.base as *const Header) }
    }

    #[allow(clippy::mut_from_ref)] // shared memory, written by the leader before workers start
    pub fn header_mut(&self) -> &mut Header {
        unsafe { &mut *(self.base as *mut Header) }
    }

    #[allow(clippy::mut_from_ref)] // shared memory: each slot is written by one process at a time
    pub fn slot(&self, i: usize) -> &mut Slot {
        let at = self.header().slots_at as usize + i * std::mem::size_of::<Slot>();
        unsafe { &mut *(self.base.add(at) as *mut Slot) }
    }

    fn text(&self, (at, len): (u32, u32)) -> &str {
        unsafe { std::str::from_utf8_unchecked(std::slice::from_raw_parts(self.base.add(at as usize), len as usize)) }
    }

    pub fn search_path(&self) -> &str {
        self.text(self.header().search_path)
    }

    pub fn query(&self, i: usize) -> &str {
        let entry = self.header().queries_at as usize + 8 * i;
        let (at, len) = unsafe { *(self.base.add(entry) as *const (u32, u32)) };
        self.text((at, len))
    }

    /// Lays out a zeroed segment: header, query table, slots, texts, results area.
    #[allow(clippy::too_many_arguments)]
    pub fn init(
        &self,
        caller: Caller,
        leader_pid: i32,
        leader_latch: usize,
        stop_on_error: bool,
        search_path: &str,
        queries: &[String],
        results: usize,
    ) {
        let n = queries.len();
        let queries_at = std::mem::size_of::<Header>().next_multiple_of(8);
        let slots_at = (queries_at + 8 * n).next_multiple_of(8);
        let mut at = slots_at + std::mem::size_of::<Slot>() * n;
        let mut put = |s: &str| -> (u32, u32) {
            unsafe { std::ptr::copy_nonoverlapping(s.as_ptr(), self.base.add(at), s.len()) };
            let r = (at as u32, s.len() as u32);
            at += s.len();
            r
        };
        let sp = put(search_path);
        let texts: Vec<(u32, u32)> = queries.iter().map(|q| put(q)).collect();
        let h = self.header_mut();
        h.magic = MAGIC;
        h.n_queries = n as u32;
        h.caller = caller;
        h.leader_pid = leader_pid;
        h.leader_latch = leader_latch;
        h.stop_on_error = stop_on_error as u32;
        h.search_path = sp;
        h.queries_at = queries_at as u32;
        h.slots_at = slots_at as u32;
        h.results_at = at as u32;
        h.results_len = results as u32;
        for (i, t) in texts.into_iter().enumerate() {
            unsafe { *(self.base.add(queries_at + 8 * i) as *mut (u32, u32)) = t };
        }
    }
}

impl Slot {
    pub fn set_error(&mut self, sqlstate: &str, message: &str) {
        let code = sqlstate.as_bytes();
        for (i, b) in self.sqlstate.iter_mut().enumerate() {
            *b = code.get(i).copied().unwrap_or(b'0');
        }
        let mut len = message.len().min(ERROR_BYTES);
        while !message.is_char_boundary(len) {
            len -= 1;
        }
        self.error[..len].copy_from_slice(&message.as_bytes()[..len]);
        self.error_len = len as u32;
    }

    pub fn error_text(&self) -> &str {
        std::str::from_utf8(&self.error[..self.error_len as usize]).unwrap_or("")
    }

    pub fn sqlstate_text(&self) -> &str {
        std::str::from_utf8(&self.sqlstate).unwrap_or("XX000")
    }
}
