//! The parse pipeline: a reader thread frames the input into chunks, a rayon pool encodes them
//! in parallel, and the caller (the backend's main thread) takes them back in order.
//!
//! Memory is bounded twice: at most `in_flight` chunks exist at once (read, being encoded, or
//! waiting to be taken), because the reader needs a token per chunk and gets one back only when
//! the caller has taken a chunk; and the bytes those chunks hold stay within `memory_budget`
//! (a chunk is charged its input and its encoded rows, estimated from the chunks before it and
//! corrected once it is encoded), so that long
//! lines on many threads cannot add up: a chunk bigger than the whole budget waits until it is
//! the only one. A panic in a parse thread is a failed chunk, never an abort. Dropping the
//! pipeline cancels it and joins every thread, on any exit path (end, error, or a PostgreSQL
//! ERROR unwinding through the caller).

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::encode::{EncodedChunk, RowEncoder};
use crate::error::RowError;
use crate::framing::{Chunk, FrameError, LineFramer};
use crate::input::{self, Format, Shape, ValueFramer};

/// Frames lines, or values laid out any way.
enum Framer {
    Lines(LineFramer<Box<dyn Read + Send>>, Option<Arc<input::Header>>),
    Values(ValueFramer<Box<dyn Read + Send>>),
}

impl Framer {
    fn next_chunk(&mut self) -> Result<Option<Chunk>, FrameError> {
        match self {
            Framer::Lines(f, header) => {
                let mut chunk = f.next_chunk()?;
                if let Some(c) = chunk.as_mut() {
                    c.header = header.clone();
                }
                Ok(chunk)
            }
            Framer::Values(f) => f.next_chunk(),
        }
    }

    fn bytes_read(&self) -> u64 {
        match self {
            Framer::Lines(f, _) => f.bytes_read,
            Framer::Values(f) => f.bytes_read,
        }
    }
}

/// Opens the input as the options say: decompressed, its shape decided, framed.
fn framer<R: Read + Send + 'static>(input: R, opts: &PipelineOptions) -> std::io::Result<(Framer, u64)> {
    let input: Box<dyn Read + Send> = if opts.decompress { input::decompressed(input)?.0 } else { Box::new(input) };
    let (shape, skipped, input) = match &opts.shape {
        Some(shape) => (shape.clone(), 0, input),
        None => input::shaped(input, opts.format, opts.max_line_bytes)?,
    };
    let offset = opts.start_offset + skipped;
    let framer = match &shape {
        Shape::Lines { header } => Framer::Lines(
            LineFramer::resume(input, offset, opts.start_line, opts.chunk_bytes, opts.max_line_bytes),
            header.clone(),
        ),
        Shape::Values => Framer::Values(ValueFramer::new(input, offset, opts.chunk_bytes, opts.max_line_bytes)),
    };
    Ok((framer, skipped))
}

#[derive(Debug, Clone)]
pub struct PipelineOptions {
    pub threads: usize,
    pub chunk_bytes: usize,
    pub max_line_bytes: usize,
    /// Chunks that may exist at once; at least `threads + 1`.
    pub in_flight: usize,
    /// Bytes the chunks in flight may hold together (one bigger chunk may go alone).
    pub memory_budget: usize,
    /// Where the input starts in the file (it is already positioned there), and its line.
    pub start_offset: u64,
    pub start_line: u64,
    /// Decompress gzip and zstd (told by their magic bytes).
    pub decompress: bool,
    /// How values are laid out; decided from the input's start unless `shape` is given.
    pub format: Format,
    pub shape: Option<Shape>,
}

/// The default `memory_budget`.
pub const DEFAULT_MEMORY_BUDGET: usize = 256 * 1024 * 1024;

impl PipelineOptions {
    pub fn new(threads: usize, chunk_bytes: usize, max_line_bytes: usize) -> Self {
        let threads = threads.max(1);
        Self {
            threads,
            chunk_bytes,
            max_line_bytes,
            in_flight: 2 * threads + 2,
            memory_budget: DEFAULT_MEMORY_BUDGET,
            start_offset: 0,
            start_line: 1,
            decompress: false,
            format: Format::Lines,
            shape: None,
        }
    }
}

enum Msg {
    /// An encoded chunk, and the bytes of budget it holds.
    Chunk(EncodedChunk, usize),
    /// The input could not be framed at chunk `seq` (I/O error, or a line over the limit).
    Failed {
        seq: u64,
        error: RowError,
    },
    End {
        chunks: u64,
    },
}

/// What [`Pipeline::next`] returns.
#[derive(Debug)]
pub enum Next {
    Chunk(EncodedChunk),
    /// Reading failed after every chunk before it was returned.
    Failed(RowError),
    End,
}

/// Bytes of memory the chunks in flight may still take. A chunk takes its estimate before it
/// is parsed, and what its encoded rows hold beyond that once they are made (the budget may
/// then go below zero: the next chunks wait longer).
struct Budget {
    total: isize,
    left: Mutex<isize>,
    freed: Condvar,
    /// Encoded bytes per input byte, the most seen (rounded up).
    ratio: std::sync::atomic::AtomicUsize,
}

impl Budget {
    fn new(total: usize) -> Self {
        let total = total.clamp(1, isize::MAX as usize) as isize;
        Self { total, left: Mutex::new(total), freed: Condvar::new(), ratio: std::sync::atomic::AtomicUsize::new(1) }
    }

    /// Takes `want` bytes (the whole budget at most: a bigger chunk waits until it is alone),
    /// waiting for them; `None` if cancelled.
    fn take(&self, want: usize, cancel: &AtomicBool) -> Option<usize> {
        let want = (want.min(isize::MAX as usize) as isize).min(self.total);
        let mut left = self.left.lock().unwrap();
        while *left < want {
            if cancel.load(Ordering::Relaxed) {
                return None;
            }
            left = self.freed.wait_timeout(left, Duration::from_millis(50)).unwrap().0;
        }
        *left -= want;
        Some(want as usize)
    }

    /// Takes `n` more bytes without waiting.
    fn overdraw(&self, n: usize) {
        *self.left.lock().unwrap() -= n as isize;
    }

    fn give_back(&self, n: usize) {
        *self.left.lock().unwrap() += n as isize;
        self.freed.notify_all();
    }
}

/// A panic's message.
fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned())
}

/// Counts tasks still running on the pool, so that drop can wait for them.
#[derive(Default)]
struct InFlight {
    count: Mutex<usize>,
    zero: Condvar,
}

impl InFlight {
    fn add(&self) {
        *self.count.lock().unwrap() += 1;
    }
    fn done(&self) {
        let mut c = self.count.lock().unwrap();
        *c -= 1;
        if *c == 0 {
            self.zero.notify_all();
        }
    }
    fn wait_idle(&self) {
        let mut c = self.count.lock().unwrap();
        while *c > 0 {
            c = self.zero.wait(c).unwrap();
        }
    }
}

pub struct Pipeline {
    results: Receiver<Msg>,
    tokens: Option<SyncSender<()>>,
    cancel: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
    tasks: Arc<InFlight>,
    pool: Option<Arc<rayon::ThreadPool>>,
    /// The pool's threads: dropping a rayon pool only asks them to end, and a stopped
    /// pipeline leaves none behind.
    pool_threads: Vec<JoinHandle<()>>,
    waiting: BTreeMap<u64, (EncodedChunk, usize)>,
    budget: Arc<Budget>,
    next_seq: u64,
    failed: Option<(u64, RowError)>,
    end: Option<u64>,
    /// Bytes of input the reader has consumed so far.
    bytes_read: Arc<std::sync::atomic::AtomicU64>,
}

impl Pipeline {
    /// Starts reading `input` and encoding it with `encoder`.
    pub fn start<R: Read + Send + 'static>(
        input: R,
        encoder: Arc<RowEncoder>,
        opts: &PipelineOptions,
    ) -> std::io::Result<Self> {
        // the pool's threads are spawned here, so that stopping joins them
        let mut pool_threads = Vec::with_capacity(opts.threads);
        let pool = Arc::new(
            rayon::ThreadPoolBuilder::new()
                .num_threads(opts.threads)
                .spawn_handler(|thread| {
                    let name = format!("pg_ingest parse {}", thread.index());
                    pool_threads.push(std::thread::Builder::new().name(name).spawn(|| thread.run())?);
                    Ok(())
                })
                .build()
                .map_err(std::io::Error::other)?,
        );
        let in_flight = opts.in_flight.max(opts.threads + 1);
        let (token_tx, token_rx) = mpsc::sync_channel::<()>(in_flight);
        for _ in 0..in_flight {
            token_tx.send(()).expect("room for every token");
        }
        let (tx, results) = mpsc::channel::<Msg>();
        let cancel = Arc::new(AtomicBool::new(false));
        let tasks = Arc::new(InFlight::default());
        let bytes_read = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let budget = Arc::new(Budget::new(opts.memory_budget));
        let reader = {
            let (pool, cancel, tasks, bytes_read, budget) =
                (pool.clone(), cancel.clone(), tasks.clone(), bytes_read.clone(), budget.clone());
            let opts = opts.clone();
            std::thread::Builder::new().name("pg_ingest read".into()).spawn(move || {
                let (mut framer, skipped) = match framer(input, &opts) {
                    Ok((framer, skipped)) => {
                        bytes_read.store(skipped, Ordering::Relaxed);
                        (framer, skipped)
                    }
                    Err(e) => {
                        let _ = tx.send(Msg::Failed { seq: 0, error: FrameError::Io(e).into_row_error() });
                        return;
                    }
                };
                let mut seq = 0;
                loop {
                    if token_rx.recv().is_err() || cancel.load(Ordering::Relaxed) {
                        return;
                    }
                    let next = framer.next_chunk();
                    // a BOM skipped while deciding the shape counts as read
                    bytes_read.store(skipped + framer.bytes_read(), Ordering::Relaxed);
                    match next {
                        Ok(Some(mut chunk)) => {
                            seq = chunk.seq + 1;
                            // its input and its encoded rows (as big as the largest seen so far,
                            // relative to their input), within the budget
                            let estimate = chunk.data.len() * (1 + budget.ratio.load(Ordering::Relaxed).max(1));
                            let Some(charge) = budget.take(estimate, &cancel) else { return };
                            let (tx, cancel, encoder, done, budget) =
                                (tx.clone(), cancel.clone(), encoder.clone(), tasks.clone(), budget.clone());
                            done.add();
                            pool.spawn(move || {
                                let encoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                                    encoder.encode_chunk(&chunk, &cancel)
                                }));
                                let msg = match encoded {
                                    Ok(mut encoded) => {
                                        let input_len = chunk.data.len().max(1);
                                        if encoder.keeps_input() {
                                            encoded.source = std::mem::take(&mut chunk.data);
                                        }
                                        let held = encoded.heap_bytes();
                                        let ratio = held.div_ceil(input_len);
                                        budget.ratio.fetch_max(ratio, Ordering::Relaxed);
                                        budget.overdraw(held.saturating_sub(charge));
                                        Msg::Chunk(encoded, charge.max(held))
                                    }
                                    Err(panic) => Msg::Failed {
                                        seq: chunk.seq,
                                        error: RowError::new(
                                            crate::error::sqlstate::INTERNAL_ERROR,
                                            format!("a parse thread failed: {}", panic_text(panic.as_ref())),
                                        )
                                        .at(chunk.first_line, chunk.offset),
                                    },
                                };
                                drop(chunk);
                                let _ = tx.send(msg);
                                done.done();
                            });
                        }
                        Ok(None) => {
                            let _ = tx.send(Msg::End { chunks: seq });
                            return;
                        }
                        Err(e) => {
                            let _ = tx.send(Msg::Failed { seq, error: e.into_row_error() });
                            return;
                        }
                    }
                }
            })?
        };
        Ok(Self {
            results,
            tokens: Some(token_tx),
            cancel,
            reader: Some(reader),
            tasks,
            pool: Some(pool),
            pool_threads,
            waiting: BTreeMap::new(),
            budget,
            next_seq: 0,
            failed: None,
            end: None,
            bytes_read,
        })
    }

    /// Bytes of input read so far.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read.load(Ordering::Relaxed)
    }

    /// The next chunk in input order. `on_wait` runs about every `tick` while waiting (the
    /// backend checks for interrupts there; an ERROR it raises unwinds and drops the pipeline).
    pub fn next(&mut self, tick: Duration, on_wait: &mut dyn FnMut()) -> Next {
        loop {
            if let Some((chunk, charge)) = self.waiting.remove(&self.next_seq) {
                self.next_seq += 1;
                self.budget.give_back(charge);
                if let Some(tokens) = &self.tokens {
                    let _ = tokens.try_send(());
                }
                return Next::Chunk(chunk);
            }
            if let Some((seq, _)) = &self.failed {
                if *seq == self.next_seq {
                    let (_, e) = self.failed.take().unwrap();
                    return Next::Failed(e);
                }
            }
            if self.end == Some(self.next_seq) {
                return Next::End;
            }
            match self.results.recv_timeout(tick) {
                Ok(Msg::Chunk(c, charge)) => {
                    self.waiting.insert(c.seq, (c, charge));
                }
                // the first failure in input order counts
                Ok(Msg::Failed { seq, error }) => {
                    if self.failed.as_ref().is_none_or(|(s, _)| seq < *s) {
                        self.failed = Some((seq, error));
                    }
                }
                Ok(Msg::End { chunks }) => self.end = Some(chunks),
                Err(RecvTimeoutError::Timeout) => on_wait(),
                Err(RecvTimeoutError::Disconnected) => {
                    // every sender is gone without an End: only a reader panic does that
                    return Next::Failed(RowError::new(
                        crate::error::sqlstate::IO_ERROR,
                        "the file reader stopped unexpectedly",
                    ));
                }
            }
        }
    }

    /// Stops the threads and waits for them; also what drop does.
    pub fn stop(&mut self) {
        self.cancel.store(true, Ordering::Relaxed);
        self.tokens.take();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        self.tasks.wait_idle();
        self.pool.take();
        for thread in self.pool_threads.drain(..) {
            let _ = thread.join();
        }
        self.waiting.clear();
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::{ColumnKind, ColumnSpec, DefaultValue, EncodeOptions};
    use crate::mapping::Source;

    fn encoder() -> Arc<RowEncoder> {
        let cols = vec![ColumnSpec {
            name: "id".into(),
            kind: ColumnKind::Int8,
            default: DefaultValue::Null,
            source: Source::Key,
            finished: false,
            typmod: -1,
            element: None,
        }];
        Arc::new(RowEncoder::new(cols, EncodeOptions::default()).unwrap())
    }

    fn input(n: usize) -> Vec<u8> {
        (1..=n).map(|i| format!("{{\"id\":{i}}}\n")).collect::<String>().into_bytes()
    }

    fn drain(p: &mut Pipeline) -> (Vec<EncodedChunk>, Option<RowError>) {
        let mut chunks = Vec::new();
        loop {
            match p.next(Duration::from_millis(10), &mut || {}) {
                Next::Chunk(c) => chunks.push(c),
                Next::Failed(e) => return (chunks, Some(e)),
                Next::End => return (chunks, None),
            }
        }
    }

    #[test]
    fn chunks_come_back_in_order_with_every_row() {
        let opts = PipelineOptions::new(4, 256, 1 << 20);
        let mut p = Pipeline::start(std::io::Cursor::new(input(20_000)), encoder(), &opts).unwrap();
        let (chunks, err) = drain(&mut p);
        assert!(err.is_none());
        assert!(chunks.len() > 100);
        assert_eq!(chunks.iter().map(|c| c.seq).collect::<Vec<_>>(), (0..chunks.len() as u64).collect::<Vec<_>>());
        assert_eq!(chunks.iter().map(|c| c.rows).sum::<u64>(), 20_000);
        let mut line = 1;
        for c in &chunks {
            assert_eq!(c.first_line, line);
            line += c.lines;
        }
        assert_eq!(p.bytes_read(), input(20_000).len() as u64);
    }

    #[test]
    fn a_read_failure_comes_after_the_chunks_before_it() {
        let mut data = input(1000);
        data.extend_from_slice(&vec![b'x'; 5000]);
        data.extend_from_slice(b"\n{\"id\":1}\n");
        let opts = PipelineOptions::new(2, 512, 4096);
        let mut p = Pipeline::start(std::io::Cursor::new(data), encoder(), &opts).unwrap();
        let (chunks, err) = drain(&mut p);
        let err = err.expect("line too long");
        assert_eq!(err.sqlstate, "54000");
        assert_eq!(err.line, 1001);
        assert_eq!(chunks.iter().map(|c| c.rows).sum::<u64>(), 1000);
    }

    /// An input that never ends, counting what was read: proves memory stays bounded while the
    /// caller is slow, and that dropping the pipeline stops the reader.
    struct Endless(Arc<std::sync::atomic::AtomicU64>);
    impl Read for Endless {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let line = b"{\"id\":1}\n";
            let n = buf.len() / line.len() * line.len();
            for i in 0..n / line.len() {
                buf[i * line.len()..(i + 1) * line.len()].copy_from_slice(line);
            }
            self.0.fetch_add(n as u64, Ordering::Relaxed);
            Ok(n)
        }
    }

    #[test]
    fn memory_is_bounded_and_drop_stops_everything() {
        let read = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let opts = PipelineOptions::new(2, 64 * 1024, 1 << 20);
        let mut p = Pipeline::start(Endless(read.clone()), encoder(), &opts).unwrap();
        // take one chunk, then stall: the reader must stop after in_flight chunks
        assert!(matches!(p.next(Duration::from_millis(10), &mut || {}), Next::Chunk(_)));
        std::thread::sleep(Duration::from_millis(300));
        let before = read.load(Ordering::Relaxed);
        assert!(before <= (opts.in_flight as u64 + 2) * 64 * 1024, "{before}");
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(read.load(Ordering::Relaxed), before, "the reader waits for the caller");
        let start = std::time::Instant::now();
        drop(p);
        assert!(start.elapsed() < Duration::from_secs(2));
        let after = read.load(Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(read.load(Ordering::Relaxed), after, "nothing reads after drop");
    }

    #[test]
    fn waiting_calls_back() {
        // a reader that blocks for a while: next() must keep calling on_wait
        struct Slow(bool);
        impl Read for Slow {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                if self.0 {
                    return Ok(0);
                }
                std::thread::sleep(Duration::from_millis(200));
                self.0 = true;
                buf[..9].copy_from_slice(b"{\"id\":1}\n");
                Ok(9)
            }
        }
        let mut p = Pipeline::start(Slow(false), encoder(), &PipelineOptions::new(1, 1024, 1024)).unwrap();
        let mut waits = 0;
        let got = p.next(Duration::from_millis(10), &mut || waits += 1);
        assert!(matches!(got, Next::Chunk(c) if c.rows == 1));
        assert!(waits >= 5, "{waits}");
    }

    #[test]
    fn a_panic_in_a_parse_thread_is_an_error_after_the_chunks_before_it() {
        // chunks of one line each: the panic comes with the chunk that starts with it
        let mut data = input(300);
        data.extend_from_slice(b"PANIC\n");
        data.extend_from_slice(&input(10));
        let mut opts = PipelineOptions::new(4, 1, 1024);
        opts.in_flight = 4;
        let mut p = Pipeline::start(std::io::Cursor::new(data), encoder(), &opts).unwrap();
        let (chunks, failed) = drain(&mut p);
        let e = failed.expect("the panic is reported");
        assert_eq!(e.sqlstate, crate::error::sqlstate::INTERNAL_ERROR);
        assert!(e.message.contains("injected into a parse thread"), "{}", e.message);
        assert_eq!(chunks.iter().map(|c| c.rows).sum::<u64>(), 300);
        assert_eq!(e.line, 301);
    }

    /// A reader that counts how far ahead of the consumer it was asked to read.
    struct Counting {
        data: std::io::Cursor<Vec<u8>>,
        read: Arc<std::sync::atomic::AtomicU64>,
    }

    impl Read for Counting {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.data.read(buf)?;
            self.read.fetch_add(n as u64, Ordering::SeqCst);
            Ok(n)
        }
    }

    #[test]
    fn long_lines_on_many_threads_stay_within_the_memory_budget() {
        const LINE: usize = 100_000;
        let line = format!("{{\"id\":1,\"pad\":\"{}\"}}\n", "x".repeat(LINE - 20));
        let data = line.repeat(60).into_bytes();
        let read = Arc::new(std::sync::atomic::AtomicU64::new(0));
        // every line a chunk of its own; 16 threads and 34 chunks in flight would be 3.4 MB
        let mut opts = PipelineOptions::new(16, LINE / 2, 4 * LINE);
        opts.memory_budget = 5 * LINE;
        let input = Counting { data: std::io::Cursor::new(data), read: read.clone() };
        let mut p = Pipeline::start(input, encoder(), &opts).unwrap();
        let mut taken = 0u64;
        loop {
            std::thread::sleep(Duration::from_millis(5));
            let ahead = (read.load(Ordering::SeqCst) / LINE as u64).saturating_sub(taken);
            // the budget holds two chunks (each charged twice its size), one more is being
            // framed, and the framer reads at most one chunk and a line ahead
            assert!(ahead <= 2 + 1 + 2, "the reader got {ahead} lines ahead");
            match p.next(Duration::from_millis(10), &mut || {}) {
                Next::Chunk(c) => taken += c.lines,
                Next::End => break,
                Next::Failed(e) => panic!("{e:?}"),
            }
        }
        assert_eq!(taken, 60);
    }
}
