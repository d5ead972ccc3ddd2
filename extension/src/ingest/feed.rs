//! The data source behind COPY FROM: a binary COPY stream made of the pipeline's chunks.
//!
//! COPY's callback has no user pointer, so the active feed is kept on a thread-local stack
//! (COPY can nest, through triggers). Everything here runs on the backend's main thread: it
//! takes chunks from the parse threads in order, fills their holes with the column's DEFAULT
//! (through the type's send function), and hands the bytes to COPY, whose receive functions
//! read each field by its tag (`pg_ingest_field` in copy_state.c).
//!
//! Two ways to feed: the whole file as one stream (one COPY), or chosen rows of one chunk
//! (one COPY per attempt, for `on_error => 'skip'`).

use std::cell::RefCell;
use std::ffi::c_int;
use std::ops::Range;
use std::rc::Rc;
use std::time::Duration;

use pgrx::pg_sys::{self, Oid};

use pg_ingest_core::encode::EncodedChunk;
use pg_ingest_core::error::RowError;
use pg_ingest_core::pipeline::{Next, Pipeline};

use super::progress::Progress;
use crate::error::IngestError;

const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
const TRAILER: &[u8] = &[0xff, 0xff];
/// Rows spliced at a time when feeding chosen rows.
const ROWS_PER_REFILL: usize = 512;

/// How one column's DEFAULT values are made on the main thread: its send function, and a
/// per-row DEFAULT expression when there is one.
pub struct ColumnIo {
    pub name: String,
    send: Box<pg_sys::FmgrInfo>,
    pub default_state: *mut pg_sys::ExprState,
}

impl ColumnIo {
    pub fn new(name: &str, typid: Oid) -> Self {
        unsafe {
            let (mut send_fn, mut varlena) = (Oid::INVALID, false);
            pg_sys::getTypeBinaryOutputInfo(typid, &mut send_fn, &mut varlena);
            let mut send: Box<pg_sys::FmgrInfo> = Box::new(std::mem::zeroed());
            pg_sys::fmgr_info(send_fn, send.as_mut());
            Self { name: name.to_owned(), send, default_state: std::ptr::null_mut() }
        }
    }

    /// A value as a field of the stream: the receive tag, then its binary form through the
    /// type's send function (in the database's encoding, as COPY will read it).
    pub fn send(&mut self, datum: pg_sys::Datum) -> Vec<u8> {
        let _unconverted = super::encoding::Unconverted::enter();
        unsafe {
            let bytes = pg_sys::SendFunctionCall(self.send.as_mut(), datum);
            let len = pgrx::varlena::varsize_any_exhdr(bytes as *const pg_sys::varlena);
            let data = pgrx::varlena::vardata_any(bytes as *const pg_sys::varlena) as *const u8;
            let bytes = std::slice::from_raw_parts(data, len);
            [&[pg_ingest_core::encode::TAG_RECEIVE][..], bytes].concat()
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Header,
    Rows,
    Done,
}

/// Chosen rows of chunks, being fed to one COPY: each segment's rows `next..end`.
struct RowsOfChunk {
    chunk: Rc<EncodedChunk>,
    next: usize,
    end: usize,
}

/// Rows of chunks to feed to one COPY, in order.
pub type Segments = Vec<(Rc<EncodedChunk>, Range<usize>)>;

/// Where COPY's input comes from, and what has gone through.
pub struct Feed {
    pub file: String,
    /// COPY FROM STDIN's client data, moved to the reader thread while waiting for rows.
    /// Before `pipeline`: dropped first, so the reader sees the end of its input.
    pub pump: Option<super::stream::Pump>,
    /// Bytes read before decompression (progress counts those when the input is compressed).
    /// With the offset the count starts at.
    pub raw_read: Option<(std::sync::Arc<std::sync::atomic::AtomicU64>, u64)>,
    pipeline: Pipeline,
    /// Freed chunks kept for the next ones while the feed lives (after `pipeline`: dropped
    /// once its threads are gone).
    _reuse: crate::alloc::Reuse,
    io: Vec<ColumnIo>,
    econtext: *mut pg_sys::ExprContext,
    scratch: pg_sys::MemoryContext,
    stage: Stage,
    rows: Option<RowsOfChunk>,
    /// Segments after `rows`, last first.
    more_rows: Vec<RowsOfChunk>,
    /// Chunks still to pull from the pipeline into this COPY, and those pulled (kept to
    /// retry them if the COPY fails).
    pull: usize,
    pulled: Vec<Rc<EncodedChunk>>,
    /// The pipeline has no more chunks.
    pub exhausted: bool,
    /// Bytes ready for COPY: `out[pos..]`, or, when set, `borrowed` (a chunk's bytes, read
    /// in place when they need no filling).
    out: Vec<u8>,
    pos: usize,
    borrowed: Option<(Rc<EncodedChunk>, Range<usize>)>,
    pending_error: Option<RowError>,
    /// `(first row, its line)` wherever line − row changes; rows count from 1 as COPY's do.
    breakpoints: Vec<(u64, i64)>,
    pub rows_sent: u64,
    pub lines: u64,
    pub blank_lines: u64,
    pub input_bytes: u64,
    /// File offset just past the last line taken (a held-back unfinished line not included).
    pub end_offset: Option<u64>,
    /// The hole being filled: its line and column, for an error raised meanwhile.
    pub current_hole: Option<(u64, u16)>,
    /// The row (index in its chunk) whose holes are being filled, when feeding chosen rows.
    pub current_row: Option<usize>,
    /// The feed raised the current error itself, already naming file and line.
    pub raised_own: bool,
    /// What other sessions and the caller are told.
    pub progress: Progress,
}

thread_local! {
    static FEEDS: RefCell<Vec<*mut Feed>> = const { RefCell::new(Vec::new()) };
}

/// Keeps a feed on the stack the callback reads, for as long as it lives.
pub struct ActiveFeed(());

impl ActiveFeed {
    pub fn push(feed: *mut Feed) -> Self {
        FEEDS.with(|f| f.borrow_mut().push(feed));
        Self(())
    }
}

impl Drop for ActiveFeed {
    fn drop(&mut self) {
        FEEDS.with(|f| f.borrow_mut().pop());
    }
}

impl Feed {
    pub fn new(file: String, pipeline: Pipeline, io: Vec<ColumnIo>, progress: Progress) -> Self {
        let (econtext, scratch) = unsafe {
            (
                pg_sys::CreateStandaloneExprContext(),
                pg_sys::AllocSetContextCreateExtended(
                    pg_sys::CurrentMemoryContext,
                    c"pg_ingest values".as_ptr(),
                    pg_sys::ALLOCSET_DEFAULT_MINSIZE as usize,
                    pg_sys::ALLOCSET_DEFAULT_INITSIZE as usize,
                    pg_sys::ALLOCSET_DEFAULT_MAXSIZE as usize,
                ),
            )
        };
        Self {
            file,
            pump: None,
            raw_read: None,
            pipeline,
            _reuse: crate::alloc::Reuse::new(crate::gucs::memory_budget() / 4),
            io,
            econtext,
            scratch,
            stage: Stage::Header,
            rows: None,
            more_rows: Vec::new(),
            pull: 0,
            pulled: Vec::new(),
            exhausted: false,
            out: Vec::new(),
            pos: 0,
            borrowed: None,
            pending_error: None,
            breakpoints: Vec::new(),
            rows_sent: 0,
            lines: 0,
            blank_lines: 0,
            input_bytes: 0,
            end_offset: None,
            current_hole: None,
            current_row: None,
            raised_own: false,
            progress,
        }
    }

    pub fn column_name(&self, column: u16) -> &str {
        &self.io[column as usize].name
    }

    /// The file line of COPY's row `row` (from 1) when streaming the whole file.
    pub fn line_of_row(&self, row: u64) -> Option<u64> {
        let i = self.breakpoints.partition_point(|&(r, _)| r <= row).checked_sub(1)?;
        let (r, line) = self.breakpoints[i];
        Some((line + (row - r) as i64) as u64)
    }

    /// Bytes of the file read, a BOM included.
    pub fn bytes_read(&self) -> u64 {
        self.pipeline.bytes_read()
    }

    /// Stops the parse threads (also done when the feed is dropped).
    pub fn stop(&mut self) {
        self.pump = None;
        self.pipeline.stop();
    }

    fn raise(&mut self, e: &RowError) -> ! {
        self.raised_own = true;
        IngestError::from_row(&self.file, e).raise()
    }

    /// The next chunk from the parse threads, counted; `None` at the end. Waiting checks for
    /// interrupts; a read failure (I/O, a line over the limit) is raised.
    pub fn next_chunk(&mut self) -> Option<EncodedChunk> {
        let (progress, pump) = (&mut self.progress, &mut self.pump);
        // with a client sending the input, wait briefly and keep receiving meanwhile
        let tick = Duration::from_millis(if pump.is_some() { 2 } else { 50 });
        if let Some(pump) = pump.as_mut() {
            pump.fill();
        }
        match self.pipeline.next(tick, &mut || {
            pgrx::check_for_interrupts!();
            if let Some(pump) = pump.as_mut() {
                pump.fill();
            }
            progress.tick();
        }) {
            Next::Chunk(chunk) => {
                self.lines += chunk.lines;
                self.blank_lines += chunk.blank_lines;
                self.input_bytes += chunk.input_bytes;
                self.end_offset = Some(chunk.offset + chunk.input_bytes);
                self.progress.parsed_end = match &self.raw_read {
                    Some((raw, from)) => from + raw.load(std::sync::atomic::Ordering::Relaxed),
                    None => chunk.offset + chunk.input_bytes,
                };
                self.progress.parsed_lines = self.lines;
                self.progress.parsed_rows += chunk.rows;
                Some(chunk)
            }
            Next::Failed(e) => self.raise(&e),
            Next::End => {
                self.exhausted = true;
                None
            }
        }
    }

    /// Feeds the next `chunks` chunks, pulled as COPY reads (so parsing goes on meanwhile),
    /// all their good rows; [`Feed::take_pulled`] then hands them over.
    pub fn feed_next_chunks(&mut self, chunks: usize) {
        self.feed_rows(Vec::new());
        self.pull = chunks;
    }

    /// The chunks the last COPY pulled.
    pub fn take_pulled(&mut self) -> Vec<Rc<EncodedChunk>> {
        self.pull = 0;
        std::mem::take(&mut self.pulled)
    }

    /// Feeds the whole file from here on: the next COPY reads every remaining chunk.
    pub fn stream_all(&mut self) {
        self.stage = Stage::Header;
        self.rows = None;
        self.more_rows.clear();
        self.out.clear();
        self.pos = 0;
        self.borrowed = None;
    }

    /// Feeds these rows only: the next COPY reads them and ends.
    pub fn feed_rows(&mut self, segments: Segments) {
        self.stage = Stage::Header;
        let mut segments: Vec<RowsOfChunk> =
            segments.into_iter().map(|(chunk, r)| RowsOfChunk { chunk, next: r.start, end: r.end }).collect();
        segments.reverse();
        self.rows = segments.pop();
        self.more_rows = segments;
        self.pull = 0;
        self.pulled.clear();
        self.out.clear();
        self.pos = 0;
        self.borrowed = None;
        self.current_hole = None;
        self.current_row = None;
    }

    /// Makes the next bytes ready; false at the end of the stream.
    fn refill(&mut self) -> bool {
        self.out.clear();
        self.pos = 0;
        self.borrowed = None;
        match self.stage {
            Stage::Header => {
                self.out.extend_from_slice(HEADER);
                self.stage = Stage::Rows;
            }
            Stage::Rows if self.rows.is_some() || self.pull > 0 => loop {
                let mut rows = match self.rows.take() {
                    Some(rows) if rows.next < rows.end => rows,
                    _ => match self.more_rows.pop() {
                        Some(rows) => {
                            self.rows = Some(rows);
                            continue;
                        }
                        None if self.pull > 0 => {
                            self.pull -= 1;
                            if let Some(chunk) = self.next_chunk() {
                                let chunk = Rc::new(chunk);
                                self.pulled.push(chunk.clone());
                                self.rows = Some(RowsOfChunk { end: chunk.rows as usize, chunk, next: 0 });
                            }
                            continue;
                        }
                        None => {
                            self.out.extend_from_slice(TRAILER);
                            self.stage = Stage::Done;
                            break;
                        }
                    },
                };
                let chunk = &rows.chunk;
                let (start, end) = (chunk.row_starts[rows.next], chunk.row_end(rows.end - 1));
                let first_hole = chunk.holes.partition_point(|h| h.at <= start);
                if chunk.holes.get(first_hole).is_none_or(|h| h.at > end) {
                    // nothing to fill: COPY reads the chunk's bytes in place
                    self.borrowed = Some((chunk.clone(), start..end));
                    rows.next = rows.end;
                } else {
                    let upto = (rows.next + ROWS_PER_REFILL).min(rows.end);
                    self.splice(&rows.chunk.clone(), rows.next..upto);
                    rows.next = upto;
                }
                self.rows = Some(rows);
                break;
            },
            Stage::Rows => {
                if let Some(e) = self.pending_error.take() {
                    self.raise(&e);
                }
                match self.next_chunk() {
                    Some(chunk) => self.take(chunk),
                    None => {
                        self.out.extend_from_slice(TRAILER);
                        self.stage = Stage::Done;
                    }
                }
            }
            Stage::Done => return false,
        }
        true
    }

    /// Streams a whole chunk (the rows before its first bad line, if any).
    fn take(&mut self, mut chunk: EncodedChunk) {
        for &(r, line) in &chunk.row_lines {
            let row = self.rows_sent + r + 1;
            let delta = line as i64 - row as i64;
            if self.breakpoints.last().is_none_or(|&(r0, l0)| l0 - r0 as i64 != delta) {
                self.breakpoints.push((row, line as i64));
            }
        }
        self.rows_sent += chunk.rows;
        self.forget_old_breakpoints();
        self.pending_error = chunk.errors.first().cloned();
        if chunk.holes.is_empty() {
            std::mem::swap(&mut self.out, &mut chunk.bytes);
        } else {
            self.splice(&chunk, 0..chunk.rows as usize);
        }
    }

    /// Breakpoints of rows COPY can no longer report an error for: blank and rejected lines add
    /// one each, and a file with millions of them must not grow the backend. COPY reports rows
    /// it has buffered for a multi-row insert (at most 1000 per buffer, 32 buffers), far fewer
    /// than the rows kept here.
    fn forget_old_breakpoints(&mut self) {
        const KEEP_ROWS: u64 = 100_000;
        const PRUNE_AT: usize = 64 * 1024;
        if self.breakpoints.len() < PRUNE_AT {
            return;
        }
        let cutoff = self.rows_sent.saturating_sub(KEEP_ROWS);
        // the last breakpoint at or before the cutoff still maps the rows after it
        let keep_from = self.breakpoints.partition_point(|&(r, _)| r <= cutoff).saturating_sub(1);
        self.breakpoints.drain(..keep_from);
    }

    /// Copies rows `rows` of the chunk into `out`, filling their holes on the way.
    fn splice(&mut self, chunk: &EncodedChunk, rows: Range<usize>) {
        if rows.is_empty() {
            return;
        }
        let (start, end) = (chunk.row_starts[rows.start], chunk.row_end(rows.end - 1));
        self.out.reserve(end - start);
        // A hole sits after its row's field count, so it is never at its own row's start;
        // one at `end` is the last field of the last row.
        let first_hole = chunk.holes.partition_point(|h| h.at <= start);
        let mut prev = start;
        let mut row = rows.start;
        let old = unsafe { pg_sys::MemoryContextSwitchTo(self.scratch) };
        for hole in chunk.holes[first_hole..].iter().take_while(|h| h.at <= end) {
            while row + 1 < rows.end && chunk.row_starts[row + 1] < hole.at {
                row += 1;
            }
            self.out.extend_from_slice(&chunk.bytes[prev..hole.at]);
            prev = hole.at;
            self.current_hole = Some((hole.line, hole.column));
            self.current_row = Some(row);
            let io = &mut self.io[hole.column as usize];
            let mut isnull = false;
            let datum = unsafe { pg_sys::ExecEvalExprSwitchContext(io.default_state, self.econtext, &mut isnull) };
            let value = (!isnull).then(|| io.send(datum));
            match value {
                Some(bytes) => {
                    self.out.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
                    self.out.extend_from_slice(&bytes);
                }
                None => self.out.extend_from_slice(&(-1i32).to_be_bytes()),
            }
        }
        self.current_hole = None;
        self.current_row = None;
        self.out.extend_from_slice(&chunk.bytes[prev..end]);
        unsafe {
            pg_sys::MemoryContextSwitchTo(old);
            pg_sys::MemoryContextReset(self.scratch);
            pg_sys::MemoryContextReset((*self.econtext).ecxt_per_tuple_memory);
        }
    }

    /// COPY asks for between `min` and `max` bytes.
    fn read(&mut self, outbuf: *mut u8, min: usize, max: usize) -> usize {
        self.progress.tick();
        let mut copied = 0;
        while copied < max {
            let ready: &[u8] = match &self.borrowed {
                Some((chunk, range)) => &chunk.bytes[range.start + self.pos..range.end],
                None => &self.out[self.pos..],
            };
            if ready.is_empty() {
                if copied >= min.max(1) || !self.refill() {
                    break;
                }
                continue;
            }
            let n = ready.len().min(max - copied);
            unsafe { std::ptr::copy_nonoverlapping(ready.as_ptr(), outbuf.add(copied), n) };
            self.pos += n;
            copied += n;
        }
        copied
    }
}

/// COPY FROM's data source callback.
#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn feed_copy_data(outbuf: *mut std::ffi::c_void, minread: c_int, maxread: c_int) -> c_int {
    let feed = FEEDS.with(|f| f.borrow().last().copied()).expect("COPY asked pg_ingest for data with no load running");
    let feed = unsafe { &mut *feed };
    feed.read(outbuf as *mut u8, minread.max(0) as usize, maxread.max(0) as usize) as c_int
}
