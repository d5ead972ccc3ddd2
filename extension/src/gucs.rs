//! pg_ingest's settings (`SET pg_ingest.…`), with typed getters.

use std::ffi::CStr;

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting, PostgresGucEnum};

static MAX_LINE_BYTES: GucSetting<i32> = GucSetting::<i32>::new(64 * 1024 * 1024);
static CHUNK_BYTES: GucSetting<i32> = GucSetting::<i32>::new(4 * 1024 * 1024);
/// In kB.
static MEMORY_BUDGET: GucSetting<i32> =
    GucSetting::<i32>::new((pg_ingest_core::pipeline::DEFAULT_MEMORY_BUDGET / 1024) as i32);
static MAX_THREADS: GucSetting<i32> = GucSetting::<i32>::new(0);
static REJECT_LINE_BYTES: GucSetting<i32> = GucSetting::<i32>::new(4096);
static MAX_BATCH_WORKERS: GucSetting<i32> = GucSetting::<i32>::new(16);
static BATCH_RESULT_BYTES: GucSetting<i32> = GucSetting::<i32>::new(16 * 1024 * 1024);
static PROGRESS_INTERVAL: GucSetting<i32> = GucSetting::<i32>::new(1000);
static PROGRESS_NOTICES: GucSetting<ProgressNotices> = GucSetting::<ProgressNotices>::new(ProgressNotices::Milestones);

/// Which progress NOTICEs a load sends its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PostgresGucEnum)]
pub enum ProgressNotices {
    /// None.
    #[name = c"off"]
    Off,
    /// At most one per 10% of the file, and at most one per interval: a handful on a long
    /// load, none on a short one. Readable in psql.
    #[name = c"milestones"]
    Milestones,
    /// One per interval and a last one at the end, each with the exact numbers in DETAIL:
    /// for programs that draw progress (the pg-ingest client).
    #[name = c"interval"]
    Interval,
}

pub fn init() {
    GucRegistry::define_int_guc(
        c"pg_ingest.max_line_bytes",
        c"Longest line ingest_jsonl accepts.",
        c"A longer line is an error (SQLSTATE 54000) naming the line, never an out-of-memory.",
        &MAX_LINE_BYTES,
        1024,
        i32::MAX,
        GucContext::Userset,
        GucFlags::UNIT_BYTE,
    );
    GucRegistry::define_int_guc(
        c"pg_ingest.chunk_bytes",
        c"Bytes of input each parse thread takes at a time.",
        c"At most (2 × threads + 2) chunks are in flight, within pg_ingest.memory_budget.",
        &CHUNK_BYTES,
        64 * 1024,
        256 * 1024 * 1024,
        GucContext::Userset,
        GucFlags::UNIT_BYTE,
    );
    GucRegistry::define_int_guc(
        c"pg_ingest.memory_budget",
        c"Memory the parse threads of one load may hold at once.",
        c"Input being parsed and rows waiting for COPY, whatever the threads and line lengths: a chunk \
          larger than the budget waits until it is the only one.",
        &MEMORY_BUDGET,
        8 * 1024,
        i32::MAX,
        GucContext::Userset,
        GucFlags::UNIT_KB,
    );
    GucRegistry::define_int_guc(
        c"pg_ingest.max_threads",
        c"Most parse threads one load may use (0: the number of CPUs).",
        c"",
        &MAX_THREADS,
        0,
        256,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pg_ingest.reject_line_bytes",
        c"How much of a rejected line ingest.rejects keeps.",
        c"The raw line is cut at a character boundary at or below this many bytes.",
        &REJECT_LINE_BYTES,
        0,
        64 * 1024 * 1024,
        GucContext::Userset,
        GucFlags::UNIT_BYTE,
    );
    GucRegistry::define_int_guc(
        c"pg_ingest.max_batch_workers",
        c"Most background workers one run_batch call may start.",
        c"Also capped by the free max_worker_processes slots.",
        &MAX_BATCH_WORKERS,
        1,
        crate::batch::MAX_WORKERS as i32,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pg_ingest.batch_result_bytes",
        c"Most bytes of rows (as JSON) that run_batch(…, results => true) returns, all queries together.",
        c"A query whose rows do not fit gets those that fit, flagged truncated.",
        &BATCH_RESULT_BYTES,
        1024,
        1024 * 1024 * 1024,
        GucContext::Userset,
        GucFlags::UNIT_BYTE,
    );
    GucRegistry::define_int_guc(
        c"pg_ingest.progress_interval",
        c"How often a running load may send a progress NOTICE.",
        c"ingest.progress is updated continuously; this paces the NOTICEs.",
        &PROGRESS_INTERVAL,
        10,
        3_600_000,
        GucContext::Userset,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_enum_guc(
        c"pg_ingest.progress_notices",
        c"Progress NOTICEs during a load: off, milestones (each 10%, paced) or interval (every interval).",
        c"",
        &PROGRESS_NOTICES,
        GucContext::Userset,
        GucFlags::default(),
    );
    mark_prefix_reserved(c"pg_ingest");
}

fn mark_prefix_reserved(prefix: &CStr) {
    unsafe { pgrx::pg_sys::MarkGUCPrefixReserved(prefix.as_ptr()) }
}

pub fn max_line_bytes() -> usize {
    MAX_LINE_BYTES.get() as usize
}

pub fn chunk_bytes() -> usize {
    CHUNK_BYTES.get() as usize
}

pub fn memory_budget() -> usize {
    MEMORY_BUDGET.get() as usize * 1024
}

/// The cap on parse threads: the setting, else the machine's CPU count.
pub fn max_threads() -> usize {
    match MAX_THREADS.get() {
        0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
        n => n as usize,
    }
}

/// Parse threads when a load does not say: one CPU is left to the backend's main thread (it
/// runs COPY's executor, and only assembles tuples since values are finished on the threads),
/// the others parse; capped by `max_threads`. Measured on 2 CPUs (`make bench`): 1 thread beats
/// 2 there, because a second parse thread takes the core the executor needs.
pub fn default_threads() -> usize {
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    cpus.saturating_sub(1).clamp(1, max_threads().max(1))
}

pub fn reject_line_bytes() -> usize {
    REJECT_LINE_BYTES.get() as usize
}

pub fn max_batch_workers() -> usize {
    MAX_BATCH_WORKERS.get() as usize
}

pub fn batch_result_bytes() -> usize {
    BATCH_RESULT_BYTES.get() as usize
}

pub fn progress_interval() -> std::time::Duration {
    std::time::Duration::from_millis(PROGRESS_INTERVAL.get() as u64)
}

pub fn progress_notices() -> ProgressNotices {
    PROGRESS_NOTICES.get()
}
