//! One load: a JSON-lines file on the server into a table, through COPY FROM, in the caller's
//! transaction. Parse threads turn the file into binary COPY rows ([`pg_ingest_core`]); the
//! main thread feeds them to COPY ([`feed`], [`copy`]); [`skip`] leaves bad lines out; the
//! [`ledger`](crate::ledger) makes each line land once.

pub mod copy;
pub mod encoding;
pub mod feed;
pub mod paths;
pub mod plan;
pub mod progress;
pub mod rows;
pub mod skip;
pub mod stream;
pub mod target;
pub mod upsert;
pub mod writers;

use std::fs::File;
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Instant;

use pgrx::pg_sys::{self, Oid};
use pgrx::PgSqlErrorCode;

use pg_ingest_core::convert::EpochUnit;
use pg_ingest_core::encode::{ColumnKind, ColumnSpec, DefaultValue, EncodeOptions, RowEncoder};
use pg_ingest_core::input::{Compression, Counted, Format, Shape};
use pg_ingest_core::mapping::{parse_path, Source};
use pg_ingest_core::pipeline::{Pipeline, PipelineOptions};

use crate::error::IngestError;
use crate::{gucs, ledger};
use feed::{ColumnIo, Feed};
use plan::LoadPlan;
use target::{Target, TargetColumn};

/// How to map, parse and account, beyond the file and the table.
#[derive(Debug)]
pub struct LoadOptions {
    /// column → JSON path (`"meta.client"`, `"tags[0]"`, `"$"`).
    pub columns: Option<serde_json::Value>,
    /// A json/jsonb column that receives every key no other column takes.
    pub rest: Option<String>,
    pub threads: Option<i32>,
    pub epoch_unit: String,
    /// `stop` or `skip`.
    pub on_error: String,
    pub max_errors: Option<i64>,
    /// Load the whole file even if the ledger says it is loaded.
    pub force: bool,
    /// How values are laid out (`jsonl`, `json` or `auto`).
    pub format: Format,
    /// Rows that meet an existing row on a unique key: `INSERT … ON CONFLICT` instead of COPY.
    pub on_conflict: Option<upsert::OnConflict>,
}

pub use pg_ingest_core::report::LoadSummary;

/// The options, checked.
#[derive(Debug, Clone, Copy)]
pub struct Checked {
    pub epoch_unit: EpochUnit,
    pub threads: usize,
    pub skip: bool,
    pub max_errors: Option<u64>,
}

impl LoadOptions {
    /// Checks the options (an ERROR names the bad one).
    pub fn check(&self) -> Checked {
        let epoch_unit = EpochUnit::parse(&self.epoch_unit).unwrap_or_else(|| {
            invalid(format!("invalid epoch_unit \"{}\"", self.epoch_unit)).hint("Use 's', 'ms' or 'us'.").raise()
        });
        let threads = match self.threads {
            None => gucs::default_threads(),
            Some(n) if n >= 1 => (n as usize).min(gucs::max_threads().max(1)),
            Some(n) => invalid(format!("threads must be at least 1, not {n}")).raise(),
        };
        let skip = match self.on_error.as_str() {
            "stop" => false,
            "skip" => true,
            other => invalid(format!("invalid on_error \"{other}\"")).hint("Use 'stop' or 'skip'.").raise(),
        };
        let max_errors = match self.max_errors {
            Some(n) if n < 0 => invalid(format!("max_errors must be at least 0, not {n}")).raise(),
            Some(_) if !skip => invalid("max_errors needs on_error => 'skip'").raise(),
            Some(n) => Some(n as u64),
            None => None,
        };
        Checked { epoch_unit, threads, skip, max_errors }
    }
}

/// `jsonl` (`ndjson`), `json` or `auto`.
pub fn parse_format(format: &str) -> Format {
    Format::parse(format).unwrap_or_else(|| {
        invalid(format!("invalid format \"{format}\""))
            .hint("Use 'jsonl' (one value per line), 'json' (an array, or values laid out any way) or 'auto'.")
            .raise()
    })
}

fn invalid(message: impl Into<String>) -> IngestError {
    IngestError::new(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, message)
}

pub fn open_file(path: &str) -> File {
    let fail = |code, why: String| -> ! {
        IngestError::new(code, format!("could not open file \"{path}\" for reading: {why}")).raise()
    };
    if std::fs::metadata(path).is_ok_and(|m| m.is_dir()) {
        IngestError::new(PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE, format!("\"{path}\" is a directory")).raise()
    }
    File::open(path).unwrap_or_else(|e| match e.kind() {
        ErrorKind::NotFound => fail(PgSqlErrorCode::ERRCODE_UNDEFINED_FILE, "No such file or directory".into()),
        ErrorKind::PermissionDenied => fail(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            "Permission denied (the file is read by the server's operating-system user)".into(),
        ),
        _ => fail(PgSqlErrorCode::ERRCODE_IO_ERROR, e.to_string()),
    })
}

/// Where each column's value comes from: the `columns` mapping, the `rest` column, a lone
/// json/jsonb column taking whole lines, else the key of the column's name.
pub fn sources(columns: &[TargetColumn], of: &str, opts: &LoadOptions) -> Vec<Source> {
    let mut sources = vec![Source::Key; columns.len()];
    let find = |name: &str, what: &str| -> usize {
        columns.iter().position(|c| c.name == name).unwrap_or_else(|| {
            IngestError::new(
                PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN,
                format!("column \"{name}\" of {of} does not exist (named in {what})"),
            )
            .hint("Generated columns cannot be loaded; they are computed.")
            .raise()
        })
    };
    match &opts.columns {
        None | Some(serde_json::Value::Null) => {}
        Some(serde_json::Value::Object(map)) => {
            for (column, path) in map {
                let i = find(column, "columns");
                let path = path.as_str().unwrap_or_else(|| {
                    invalid(format!("the path for column \"{column}\" in columns must be a string")).raise()
                });
                sources[i] = parse_path(path).unwrap_or_else(|e| invalid(e).raise());
            }
        }
        Some(_) => invalid("columns must be a JSON object of column name → JSON path").raise(),
    }
    if let Some(rest) = &opts.rest {
        let i = find(rest, "rest");
        if !matches!(columns[i].kind, ColumnKind::Jsonb | ColumnKind::Json) {
            invalid(format!("the rest column \"{rest}\" must be of type jsonb or json")).raise();
        }
        sources[i] = Source::Rest;
    }
    if opts.columns.as_ref().is_none_or(|c| c.is_null())
        && opts.rest.is_none()
        && columns.len() == 1
        && matches!(columns[0].kind, ColumnKind::Jsonb | ColumnKind::Json)
    {
        sources[0] = Source::WholeLine;
    }
    sources
}

/// Loads `path` (one file) into the table, with `writers` writers: what is loaded is
/// decided once, after the lock, from the open file ([`plan`]).
pub fn ingest_file(path: &str, target: Option<Oid>, opts: &LoadOptions, writers: usize) -> LoadSummary {
    let started = Instant::now();
    target::check_file_permission();
    let checked = opts.check();
    encoding::check_database();
    // The file before the table: a load of a file that is not there fails on that.
    let file = open_file(path);
    let key = plan::resolved_path(&file, path);
    let oid = target::resolve(target, path);
    let target = Target::open(oid);
    let sources = sources(&target.columns, &target.name, opts);
    if writers > 1 {
        writers::refuse_if_locked_here(&target, writers);
    }
    // The plan takes the file's lock: a second load waits, then sees the first's work.
    let plan = LoadPlan::decide(&file, &key, oid, &target.name, opts.force, |size| {
        let (compression, shape) = layout(&file, path, size, opts.format);
        let whole = compression != Compression::None || shape == Shape::Values;
        Layout { compression, shape, whole }
    });
    let Layout { ref shape, whole, .. } = plan.layout;
    let writers = if whole && writers > 1 {
        plan::notice(
            format!("\"{key}\" is loaded by one writer: {} input cannot be cut into ranges", shape.name()),
            "Only uncompressed JSON lines are cut for writers.",
        );
        1
    } else {
        writers
    };
    let result = if plan.status == "unchanged" {
        let load_id = ledger::start_load(path, &target.name, oid, &opts.on_error, plan.facts.size as i64, None);
        let result = LoadSummary {
            file: path.to_owned(),
            target: target.name.clone(),
            status: "unchanged".into(),
            lines: 0,
            rows_inserted: 0,
            rows_rejected: 0,
            lines_skipped: 0,
            bytes: 0,
            seconds: started.elapsed().as_secs_f64(),
            load_id,
        };
        ledger::finish_load(load_id, &result, None);
        if plan.renamed {
            // nothing new, but the file goes by its new name now
            plan.save(&file, &target, plan.prefix.0, plan.prefix.1 as i64, load_id);
        }
        result
    } else if writers == 1 && plan.ranges.is_empty() {
        load_alone(path, &file, &plan, &target, sources, opts, &checked, started)
    } else {
        writers::load_with_writers(path, &file, &plan, &target, opts, writers, started)
    };
    target.close();
    result
}

/// How a server file is laid out: compressed or not, and the shape of its JSON.
#[derive(Debug)]
pub struct Layout {
    pub compression: Compression,
    pub shape: Shape,
    /// Loaded as a whole or not at all (compressed, or not one value per line).
    pub whole: bool,
}

impl Layout {
    /// What makes it loaded only as a whole, for messages.
    pub fn kind(&self) -> &'static str {
        if self.compression != Compression::None {
            self.compression.name()
        } else {
            "json (not one value per line)"
        }
    }
}

/// Reads the file's start (decompressed if needed) to tell how it is laid out.
pub fn layout(file: &File, path: &str, size: u64, format: Format) -> (Compression, Shape) {
    let handle = file.try_clone().unwrap_or_else(|e| {
        IngestError::new(PgSqlErrorCode::ERRCODE_IO_ERROR, format!("could not read file \"{path}\": {e}")).raise()
    });
    let reader = std::io::Read::take(PositionedReader { file: handle, at: 0 }, size);
    let fail = |e: std::io::Error| -> ! {
        IngestError::new(PgSqlErrorCode::ERRCODE_IO_ERROR, format!("could not read file \"{path}\": {e}")).raise()
    };
    let (reader, compression) = pg_ingest_core::input::decompressed(reader).unwrap_or_else(|e| fail(e));
    let (shape, _, _) =
        pg_ingest_core::input::shaped(reader, format, gucs::max_line_bytes()).unwrap_or_else(|e| fail(e));
    (compression, shape)
}

/// One writer, this transaction: the plan's one span, then the ledger.
#[allow(clippy::too_many_arguments)]
fn load_alone(
    path: &str,
    file: &File,
    plan: &LoadPlan,
    target: &Target,
    sources: Vec<Source>,
    opts: &LoadOptions,
    checked: &Checked,
    started: Instant,
) -> LoadSummary {
    let layout = &plan.layout;
    if plan.forget_ranges {
        ledger::delete_ranges(target.oid, plan.facts.device, plan.facts.inode);
    }
    let span = plan.gaps.first().copied().unwrap_or(Span {
        start_offset: plan.prefix.0,
        start_line: plan.prefix.1 + 1,
        end_offset: Some(plan.facts.size),
    });
    let load_id = ledger::start_load(path, &target.name, target.oid, &opts.on_error, span.start_offset as i64, None);
    let mut input = Input::file_span(path, file, plan.facts.size, &span, layout.compression != Compression::None);
    input.format = opts.format;
    if span.start_offset > 0 {
        input.shape = Some(layout.shape.clone());
    }
    let done = match opts.on_conflict {
        Some(mode) => {
            upsert::upsert_span(path, input, target, sources, checked, &span, load_id, plan.status, mode, started)
        }
        None => load_span(path, input, target, sources, checked, &span, load_id, plan.status, started),
    };
    // a whole file is loaded up to its end, its values counted as its lines
    let end = if layout.whole { plan.facts.size } else { done.end_offset };
    plan.save(file, target, end, (span.start_line - 1 + done.lines) as i64, load_id);
    ledger::finish_load(load_id, &done.summary, done.first_error);
    done.summary
}

/// Where a load starts in the file, and where it stops (`None`: at the end).
#[derive(Debug, Clone, Copy)]
pub struct Span {
    pub start_offset: u64,
    pub start_line: u64,
    pub end_offset: Option<u64>,
}

/// What loading a span did.
pub struct SpanResult {
    pub summary: LoadSummary,
    /// File offset just past the last line taken.
    pub end_offset: u64,
    pub lines: u64,
    pub first_error: Option<String>,
}

/// Where a load's bytes come from, and how to read them.
pub struct Input {
    pub reader: Box<dyn std::io::Read + Send>,
    /// Bytes expected, for progress (compressed bytes when compressed); 0: not known.
    pub total: u64,
    /// Counts the bytes read before decompression, for progress.
    pub raw_read: Option<Arc<AtomicU64>>,
    pub decompress: bool,
    pub format: Format,
    /// Decided already (a load that goes on from the middle of a file).
    pub shape: Option<Shape>,
    /// A last line still being written waits for a later load (files); streams end where
    /// they end.
    pub hold_back: bool,
    /// Data that arrives through this backend's client connection (COPY FROM STDIN).
    pub pump: Option<stream::Pump>,
}

impl Input {
    /// Bytes `span` of the plan's open file, through a handle of its own (`pread`).
    pub fn file_span(path: &str, file: &File, size: u64, span: &Span, compressed: bool) -> Self {
        let handle = file.try_clone().unwrap_or_else(|e| {
            IngestError::new(PgSqlErrorCode::ERRCODE_IO_ERROR, format!("could not read file \"{path}\": {e}")).raise()
        });
        let reader = PositionedReader { file: handle, at: span.start_offset };
        let reader: Box<dyn std::io::Read + Send> = match span.end_offset {
            Some(end) => Box::new(std::io::Read::take(reader, end.saturating_sub(span.start_offset))),
            None => Box::new(reader),
        };
        let raw_read = Arc::new(AtomicU64::new(0));
        Self {
            reader: Box::new(Counted { inner: reader, count: raw_read.clone() }),
            total: span.end_offset.unwrap_or(size),
            raw_read: compressed.then_some(raw_read),
            decompress: compressed,
            format: Format::Lines,
            shape: None,
            hold_back: !compressed,
            pump: None,
        }
    }
}

/// Loads one span of input through COPY in the current transaction, recording rejects
/// under `load_id`; the ledger is the caller's.
#[allow(clippy::too_many_arguments)]
pub fn load_span(
    path: &str,
    input: Input,
    target: &Target,
    sources: Vec<Source>,
    checked: &Checked,
    span: &Span,
    load_id: i64,
    status: &str,
    started: Instant,
) -> SpanResult {
    let Checked { skip, max_errors, .. } = *checked;
    let start_offset = span.start_offset;
    let Input { reader, total, raw_read, decompress, format, shape, hold_back, pump } = input;
    let (ios, specs) = column_specs(target, sources);
    let raw_limit = gucs::reject_line_bytes();
    let threads = Threads { reader, decompress, format, shape, hold_back };
    let pipeline = start_pipeline(threads, specs, checked, span);

    // The feed owns the threads: if an ERROR unwinds from here, dropping it stops and joins them.
    let progress = progress::Progress::start(load_id, path, total, start_offset);
    let mut feed = Box::new(Feed::new(path.to_owned(), pipeline, ios, progress));
    feed.pump = pump;
    feed.raw_read = raw_read.map(|r| (r, start_offset));
    let mut rejects = skip::Rejects::new(load_id, path, max_errors);
    let rows = if skip {
        skip::load_skipping(target, &mut feed, &mut rejects, raw_limit)
    } else {
        feed.stream_all();
        copy::copy_from(target, &mut *feed as *mut Feed)
    };
    feed.stop();
    rejects.flush();
    feed.progress.finish(rows, rejects.count);

    let summary = LoadSummary {
        file: path.to_owned(),
        target: target.name.clone(),
        status: status.into(),
        lines: feed.lines as i64,
        rows_inserted: rows as i64,
        rows_rejected: rejects.count as i64,
        // blank lines, and rows a BEFORE trigger chose not to insert
        lines_skipped: (feed.lines - rows - rejects.count) as i64,
        bytes: feed.bytes_read() as i64,
        seconds: started.elapsed().as_secs_f64(),
        load_id,
    };
    SpanResult {
        summary,
        end_offset: feed.end_offset.unwrap_or(start_offset),
        lines: feed.lines,
        first_error: rejects.first_error(),
    }
}

/// How each column is encoded on the threads and made on the main thread: its source, and
/// its DEFAULT for a line without a value (as COPY gives it).
pub fn column_specs(target: &Target, sources: Vec<Source>) -> (Vec<ColumnIo>, Vec<ColumnSpec>) {
    let mut ios = Vec::with_capacity(target.columns.len());
    let mut specs = Vec::with_capacity(target.columns.len());
    for (col, source) in target.columns.iter().zip(sources) {
        let mut io = ColumnIo::new(&col.name, col.typid);
        let (default, expr) = target.default_for(col, |d| io.send(d));
        if default == DefaultValue::PerRow {
            io.default_state = unsafe { pg_sys::ExecInitExpr(expr, std::ptr::null_mut()) };
        }
        specs.push(ColumnSpec {
            name: col.name.clone(),
            kind: col.kind,
            default,
            source,
            finished: col.finished,
            typmod: col.typmod,
            element: col.element,
        });
        ios.push(io);
    }
    (ios, specs)
}

/// What the parse threads read, and how.
pub struct Threads {
    pub reader: Box<dyn std::io::Read + Send>,
    pub decompress: bool,
    pub format: Format,
    pub shape: Option<Shape>,
    pub hold_back: bool,
}

/// Starts the reader and parse threads over `threads.reader`, encoding rows of `specs` from
/// `span`'s start: one way for every load and every read.
pub fn start_pipeline(threads: Threads, specs: Vec<ColumnSpec>, checked: &Checked, span: &Span) -> Pipeline {
    let Threads { reader, decompress, format, shape, hold_back } = threads;
    let Checked { epoch_unit, threads, skip, .. } = *checked;
    let max_line_bytes = gucs::max_line_bytes();
    let encode = EncodeOptions {
        epoch_unit,
        max_line_bytes,
        stop_at_first_error: !skip,
        track_rows: skip,
        raw_limit: gucs::reject_line_bytes(),
        hold_back,
    };
    let encoder = RowEncoder::new(specs, encode).unwrap_or_else(|e| invalid(e).raise());
    let mut pipeline_opts = PipelineOptions::new(threads, gucs::chunk_bytes(), max_line_bytes);
    pipeline_opts.memory_budget = gucs::memory_budget();
    pipeline_opts.start_offset = span.start_offset;
    pipeline_opts.start_line = span.start_line;
    pipeline_opts.decompress = decompress;
    pipeline_opts.format = format;
    pipeline_opts.shape = shape;
    Pipeline::start(reader, Arc::new(encoder), &pipeline_opts).unwrap_or_else(|e| {
        IngestError::new(PgSqlErrorCode::ERRCODE_SYSTEM_ERROR, format!("could not start parse threads: {e}")).raise()
    })
}

/// Reads a file from an offset with `pread`, leaving the handle's own position alone (the
/// handle is shared with the fingerprints and the reject reader).
struct PositionedReader {
    file: File,
    at: u64,
}

impl std::io::Read for PositionedReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read_at(buf, self.at)?;
        self.at += n as u64;
        Ok(n)
    }
}
