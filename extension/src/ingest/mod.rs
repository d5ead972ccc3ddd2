//! One load: a JSON-lines file on the server into a table, through COPY FROM, in the caller's
//! transaction. Parse threads turn the file into binary COPY rows ([`pg_ingest_core`]); the
//! main thread feeds them to COPY ([`feed`], [`copy`]).

pub mod copy;
pub mod feed;
pub mod target;

use std::fs::File;
use std::io::ErrorKind;
use std::sync::Arc;
use std::time::Instant;

use pgrx::pg_sys::{self, Oid};
use pgrx::PgSqlErrorCode;

use pg_ingest_core::convert::EpochUnit;
use pg_ingest_core::encode::{ColumnKind, ColumnSpec, DefaultValue, EncodeOptions, RowEncoder};
use pg_ingest_core::mapping::{parse_path, Source};
use pg_ingest_core::pipeline::{Pipeline, PipelineOptions};

use crate::error::IngestError;
use crate::gucs;
use feed::{ColumnIo, Feed};
use target::Target;

/// How to map and parse, beyond the file and the table.
#[derive(Debug, Default)]
pub struct LoadOptions {
    /// column → JSON path (`"meta.client"`, `"tags[0]"`, `"$"`).
    pub columns: Option<serde_json::Value>,
    /// A json/jsonb column that receives every key no other column takes.
    pub rest: Option<String>,
    pub threads: Option<i32>,
    pub epoch_unit: String,
}

/// The result row of one file.
#[derive(Debug, Clone)]
pub struct LoadResult {
    pub file: String,
    pub target: String,
    pub status: &'static str,
    pub lines: i64,
    pub rows_inserted: i64,
    pub rows_rejected: i64,
    pub lines_skipped: i64,
    pub bytes: i64,
    pub seconds: f64,
}

fn invalid(message: impl Into<String>) -> IngestError {
    IngestError::new(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, message)
}

fn open_file(path: &str) -> File {
    let fail = |code, why: String| -> ! {
        IngestError::new(code, format!("could not open file \"{path}\" for reading: {why}")).raise()
    };
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => {
            IngestError::new(PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE, format!("\"{path}\" is a directory")).raise()
        }
        _ => {}
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
fn sources(target: &Target, opts: &LoadOptions) -> Vec<Source> {
    let mut sources = vec![Source::Key; target.columns.len()];
    let find = |name: &str, what: &str| -> usize {
        target.columns.iter().position(|c| c.name == name).unwrap_or_else(|| {
            IngestError::new(
                PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN,
                format!("column \"{name}\" of {} does not exist (named in {what})", target.name),
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
        if !matches!(target.columns[i].kind, ColumnKind::Jsonb | ColumnKind::Json) {
            invalid(format!("the rest column \"{rest}\" must be of type jsonb or json")).raise();
        }
        sources[i] = Source::Rest;
    }
    if opts.columns.as_ref().is_none_or(|c| c.is_null())
        && opts.rest.is_none()
        && target.columns.len() == 1
        && matches!(target.columns[0].kind, ColumnKind::Jsonb | ColumnKind::Json)
    {
        sources[0] = Source::WholeLine;
    }
    sources
}

pub fn ingest_file(path: &str, target: Option<Oid>, opts: &LoadOptions) -> LoadResult {
    let started = Instant::now();
    target::check_file_permission();
    let oid = target::resolve(target, path);
    let epoch_unit = EpochUnit::parse(&opts.epoch_unit).unwrap_or_else(|| {
        invalid(format!("invalid epoch_unit \"{}\"", opts.epoch_unit)).hint("Use 's', 'ms' or 'us'.").raise()
    });
    let threads = match opts.threads {
        None => gucs::max_threads(),
        Some(n) if n >= 1 => (n as usize).min(gucs::max_threads().max(1)),
        Some(n) => invalid(format!("threads must be at least 1, not {n}")).raise(),
    };
    let file = open_file(path);
    let target = Target::open(oid);

    let sources = sources(&target, opts);
    let mut ios = Vec::with_capacity(target.columns.len());
    let mut specs = Vec::with_capacity(target.columns.len());
    for (col, source) in target.columns.iter().zip(sources) {
        let mut io = ColumnIo::new(&col.name, col.typid, col.typmod);
        let (default, expr) = target.default_for(col, |d| io.send(d));
        if default == DefaultValue::PerRow {
            io.default_state = unsafe { pg_sys::ExecInitExpr(expr, std::ptr::null_mut()) };
        }
        specs.push(ColumnSpec { name: col.name.clone(), kind: col.kind, default, source });
        ios.push(io);
    }
    let max_line_bytes = gucs::max_line_bytes();
    let encoder = RowEncoder::new(specs, EncodeOptions { epoch_unit, max_line_bytes, stop_at_first_error: true })
        .unwrap_or_else(|e| invalid(e).raise());
    let pipeline =
        Pipeline::start(file, Arc::new(encoder), &PipelineOptions::new(threads, gucs::chunk_bytes(), max_line_bytes))
            .unwrap_or_else(|e| {
                IngestError::new(PgSqlErrorCode::ERRCODE_SYSTEM_ERROR, format!("could not start parse threads: {e}"))
                    .raise()
            });

    // The feed owns the threads: if an ERROR unwinds from here, dropping it stops and joins them.
    let mut feed = Box::new(Feed::new(path.to_owned(), pipeline, ios));
    let rows = copy::copy_from(&target, &mut *feed as *mut Feed);
    feed.stop();
    let name = target.name.clone();
    target.close();
    LoadResult {
        file: path.to_owned(),
        target: name,
        status: "loaded",
        lines: feed.lines as i64,
        rows_inserted: rows as i64,
        rows_rejected: 0,
        // blank lines, and rows a BEFORE trigger chose not to insert
        lines_skipped: feed.lines as i64 - rows as i64,
        bytes: feed.bytes_read() as i64,
        seconds: started.elapsed().as_secs_f64(),
    }
}
