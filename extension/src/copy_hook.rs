//! `COPY table [(columns)] FROM 'file' | PROGRAM 'command' | STDIN WITH (FORMAT jsonl, …)`:
//! a utility hook hands COPY FROM in the JSON formats (`jsonl`, its alias `ndjson`, `json`,
//! `auto`) to the same engine as `ingest_jsonl` (parse threads, COPY's executor, accounting
//! and rejects). Every other COPY goes on to PostgreSQL untouched.
//!
//! The hook must be installed before the first COPY of a session: the library is preloaded
//! (`shared_preload_libraries = 'pg_ingest'`).

use std::ffi::{c_char, CStr};
use std::time::Instant;

use pgrx::list::old_list::PgList;
use pgrx::pg_sys::{self, Oid};
use pgrx::prelude::*;

use crate::error::IngestError;
use crate::ingest::{self, stream, target::Target, Input, LoadOptions, Span};
use crate::ledger;
use pg_ingest_core::input::Format;

static mut PREVIOUS: pg_sys::ProcessUtility_hook_type = None;

/// Installs the hook (from `_PG_init`).
pub fn init() {
    unsafe {
        PREVIOUS = pg_sys::ProcessUtility_hook;
        pg_sys::ProcessUtility_hook = Some(process_utility);
    }
}

#[pg_guard]
#[allow(clippy::too_many_arguments)]
unsafe extern "C-unwind" fn process_utility(
    pstmt: *mut pg_sys::PlannedStmt,
    query_string: *const c_char,
    read_only_tree: bool,
    context: pg_sys::ProcessUtilityContext::Type,
    params: pg_sys::ParamListInfo,
    query_env: *mut pg_sys::QueryEnvironment,
    dest: *mut pg_sys::DestReceiver,
    qc: *mut pg_sys::QueryCompletion,
) {
    let stmt = (*pstmt).utilityStmt;
    if let Some(format) = json_copy_from(stmt) {
        let rows = copy_from(stmt as *mut pg_sys::CopyStmt, format);
        if !qc.is_null() {
            (*qc).commandTag = pg_sys::CommandTag::CMDTAG_COPY;
            (*qc).nprocessed = rows;
        }
        return;
    }
    #[allow(static_mut_refs)]
    match PREVIOUS {
        Some(previous) => previous(pstmt, query_string, read_only_tree, context, params, query_env, dest, qc),
        None => {
            pg_sys::standard_ProcessUtility(pstmt, query_string, read_only_tree, context, params, query_env, dest, qc)
        }
    }
}

/// The options of a COPY statement, as (name, value) (a value-less option: `None`).
unsafe fn options(list: *mut pg_sys::List) -> Vec<(String, Option<String>, *mut pg_sys::DefElem)> {
    let list = PgList::<pg_sys::DefElem>::from_pg(list);
    list.iter_ptr()
        .map(|def| {
            let name = CStr::from_ptr((*def).defname).to_string_lossy().to_ascii_lowercase();
            let value = (!(*def).arg.is_null())
                .then(|| CStr::from_ptr(pg_sys::defGetString(def)).to_string_lossy().into_owned());
            (name, value, def)
        })
        .collect()
}

/// A COPY FROM in one of the JSON formats: its format.
unsafe fn json_copy_from(stmt: *mut pg_sys::Node) -> Option<Format> {
    if stmt.is_null() || (*stmt).type_ != pg_sys::NodeTag::T_CopyStmt {
        return None;
    }
    let copy = stmt as *mut pg_sys::CopyStmt;
    if !(*copy).is_from {
        return None;
    }
    options((*copy).options)
        .into_iter()
        .find(|(name, _, _)| name == "format")
        .and_then(|(_, value, _)| Format::parse(value.as_deref()?))
}

fn syntax(message: String) -> IngestError {
    IngestError::new(PgSqlErrorCode::ERRCODE_SYNTAX_ERROR, message)
}

const OPTIONS_HINT: &str = "COPY … FROM … WITH (FORMAT jsonl | ndjson | json | auto) takes ON_ERROR (stop or ignore), \
                            REJECT_LIMIT, COLUMNS_MAP (a JSON object: column → JSON path), REST, EPOCH_UNIT and THREADS.";

/// What `pg-ingest load` says of a client file it streams (the `LEDGER` option, JSON): which
/// file, what it is, and where this load starts in it.
#[derive(Debug, serde::Deserialize)]
struct ClientLedger {
    /// `host:path`
    source: String,
    device: i64,
    inode: i64,
    size: i64,
    start_offset: i64,
    start_line: i64,
    head_fingerprint: String,
    /// Compressed, or not one value per line: loaded as a whole.
    whole: bool,
    /// `loaded` (from the start: new, or another file now), `appended` or `unchanged`.
    status: String,
}

/// pg_ingest's options, from COPY's.
unsafe fn load_options(copy: *mut pg_sys::CopyStmt, format: Format) -> (LoadOptions, Option<ClientLedger>) {
    let mut opts = LoadOptions {
        columns: None,
        rest: None,
        threads: None,
        epoch_unit: "s".into(),
        on_error: "stop".into(),
        max_errors: None,
        force: false,
        on_conflict: None,
        format,
    };
    let mut seen = Vec::new();
    let mut ledger = None;
    for (name, value, def) in options((*copy).options) {
        if seen.contains(&name) {
            syntax(format!("conflicting or redundant options: \"{name}\"")).raise();
        }
        seen.push(name.clone());
        let value = || value.clone().unwrap_or_else(|| syntax(format!("option \"{name}\" needs a value")).raise());
        match name.as_str() {
            "format" => {}
            "on_error" => {
                opts.on_error = match value().to_ascii_lowercase().as_str() {
                    "stop" => "stop".into(),
                    "ignore" | "skip" => "skip".into(),
                    other => IngestError::new(
                        PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                        format!("COPY ON_ERROR \"{other}\" not recognized"),
                    )
                    .hint("Use stop (the default) or ignore (the line is left out and recorded in ingest.rejects).")
                    .raise(),
                }
            }
            "reject_limit" => opts.max_errors = Some(pg_sys::defGetInt64(def)),
            "columns_map" => {
                opts.columns = Some(serde_json::from_str(&value()).unwrap_or_else(|e| {
                    IngestError::new(
                        PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                        format!("COLUMNS_MAP is not valid JSON: {e}"),
                    )
                    .hint("COLUMNS_MAP '{\"column\": \"json.path\"}'")
                    .raise()
                }))
            }
            "rest" => opts.rest = Some(value()),
            "epoch_unit" => opts.epoch_unit = value(),
            "threads" => opts.threads = Some(pg_sys::defGetInt32(def)),
            "ledger" => {
                let l: ClientLedger = serde_json::from_str(&value()).unwrap_or_else(|e| {
                    IngestError::new(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, format!("invalid LEDGER: {e}"))
                        .raise()
                });
                if !matches!(l.status.as_str(), "loaded" | "appended" | "unchanged") {
                    IngestError::new(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, "invalid LEDGER status").raise();
                }
                ledger = Some(l);
            }
            other => {
                syntax(format!("COPY option \"{other}\" not recognized with FORMAT jsonl")).hint(OPTIONS_HINT).raise()
            }
        }
    }
    if opts.max_errors.is_some() && opts.on_error != "skip" {
        IngestError::new(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            "COPY REJECT_LIMIT requires ON_ERROR to be set to IGNORE",
        )
        .raise();
    }
    (opts, ledger)
}

/// Runs a COPY FROM in a JSON format; the rows it inserted.
unsafe fn copy_from(copy: *mut pg_sys::CopyStmt, format: Format) -> u64 {
    let started = Instant::now();
    if pg_sys::get_extension_oid(c"pg_ingest".as_ptr(), true) == pg_sys::InvalidOid {
        IngestError::new(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            "COPY FORMAT jsonl needs the pg_ingest extension in this database",
        )
        .hint("CREATE EXTENSION pg_ingest;")
        .raise();
    }
    let (opts, client) = load_options(copy, format);
    let checked = opts.check();
    ingest::encoding::check_database();
    if !(*copy).whereClause.is_null() {
        IngestError::new(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            "COPY FROM … WHERE is not supported with FORMAT jsonl",
        )
        .hint("Load into a staging table, or filter with a BEFORE INSERT trigger.")
        .raise();
    }
    if (*copy).relation.is_null() {
        syntax("COPY FROM needs a table".into()).raise();
    }
    let source = if (*copy).filename.is_null() {
        None
    } else {
        Some(CStr::from_ptr((*copy).filename).to_string_lossy().into_owned())
    };
    // COPY's own rules: a program needs pg_execute_server_program, a file
    // pg_read_server_files, STDIN only INSERT on the table
    match (&source, (*copy).is_program) {
        (Some(_), true) if !crate::identity::has_privs_of("pg_execute_server_program") => {
            IngestError::new(
                PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
                "permission denied to COPY to or from an external program",
            )
            .detail("Only roles with privileges of the \"pg_execute_server_program\" role may COPY to or from an external program.")
            .raise()
        }
        (Some(_), false) if !crate::identity::has_privs_of("pg_read_server_files") => IngestError::new(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            "permission denied to COPY from a file",
        )
        .detail("Only roles with privileges of the \"pg_read_server_files\" role may COPY from a file.")
        .raise(),
        _ => {}
    }
    let oid: Oid =
        pg_sys::RangeVarGetRelidExtended((*copy).relation, pg_sys::NoLock as _, 0, None, std::ptr::null_mut());
    let mut target = Target::open(oid);
    restrict_columns(&mut target, (*copy).attlist);
    let sources = ingest::sources(&target.columns, &target.name, &opts);

    // a client ledger is checked before the client is asked for its bytes; it is a client's
    // (what the server receives from it), not a server file's or a program's
    if client.is_some() && source.is_some() {
        IngestError::new(PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED, "COPY option LEDGER is for COPY … FROM STDIN")
            .hint("A file on the server has a ledger of its own: ingest_jsonl(path, …).")
            .raise()
    }
    // a client ledger is checked before the client is asked for its bytes
    let (span, status) = match &client {
        Some(c) => {
            check_client_ledger(oid, c);
            (
                Span { start_offset: c.start_offset as u64, start_line: c.start_line as u64, end_offset: None },
                c.status.as_str(),
            )
        }
        None => (Span { start_offset: 0, start_line: 1, end_offset: None }, "copy"),
    };
    let (name, input, program) = match (&source, (*copy).is_program) {
        (None, _) => {
            let (pump, bytes) = stream::from_client(target.columns.len());
            ("STDIN".to_owned(), stream_input(Box::new(bytes), format, Some(pump)), None)
        }
        (Some(command), true) => {
            let (program, out) = stream::Program::start(command);
            (format!("PROGRAM '{command}'"), stream_input(Box::new(out), format, None), Some(program))
        }
        (Some(path), false) => {
            let file = ingest::open_file(path);
            let size = ingest::plan::facts(&file, path).size;
            let span = Span { start_offset: 0, start_line: 1, end_offset: Some(size) };
            let mut input = Input::file_span(path, &file, size, &span, true);
            input.format = format;
            input.hold_back = false;
            (path.clone(), input, None)
        }
    };
    let (name, mut input) = (client.as_ref().map_or(name.clone(), |c| c.source.clone()), input);
    // a client's growing file: a last line still being written waits for the next load
    input.hold_back = client.as_ref().is_some_and(|c| !c.whole);
    if let Some(c) = &client {
        input.total = c.size as u64;
    }
    let load_id = ledger::start_load(&name, &target.name, oid, &opts.on_error, span.start_offset as i64, None);
    // the bytes as they came (compressed ones too)
    let received = input.raw_read.clone();
    let done = ingest::load_span(&name, input, &target, sources, &checked, &span, load_id, status, started);
    if let Some(c) = &client {
        // where the load stopped is what the server received and read, never what the client
        // says: the last complete line, or for a file loaded as a whole, the bytes it sent
        let received = received.map_or(0, |r| r.load(std::sync::atomic::Ordering::Relaxed));
        let end = if c.whole { span.start_offset + received } else { done.end_offset.max(span.start_offset) };
        let entry = ledger::ClientFile {
            byte_offset: end as i64,
            lines: (span.start_line - 1 + done.lines) as i64,
            size: if c.whole { end as i64 } else { c.size },
            device: c.device,
            inode: c.inode,
            head_fingerprint: c.head_fingerprint.clone(),
            tail_fingerprint: String::new(),
            load_id,
        };
        ledger::save_client_file(oid, &target.name, &c.source, &entry);
        ledger::mark_client_copied(oid, &c.source);
    }
    if let Some(program) = program {
        program.finish();
    }
    ledger::finish_load(load_id, &done.summary, done.first_error);
    if done.summary.rows_rejected > 0 {
        ereport!(
            PgLogLevel::NOTICE,
            PgSqlErrorCode::ERRCODE_SUCCESSFUL_COMPLETION,
            format!(
                "{} line(s) of {name} rejected (load {load_id}): SELECT * FROM ingest.rejects WHERE load_id = {load_id}",
                done.summary.rows_rejected
            )
        );
    }
    target.close();
    done.summary.rows_inserted as u64
}

/// The client decided where to start from what the ledger said under the file's lock
/// (`ingest.client_file_state`, in this transaction): it must still say so.
fn check_client_ledger(oid: Oid, c: &ClientLedger) {
    ledger::check_client_grant(oid, &c.source, false);
    if c.whole && c.status == "appended" {
        IngestError::new(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            "invalid LEDGER: a whole file is not appended to",
        )
        .raise()
    }
    ledger::lock_client_file(oid, &c.source);
    let at = ledger::client_file(oid, &c.source).map_or(0, |f| f.byte_offset);
    let expected = if c.status == "loaded" { 0 } else { at };
    if c.start_offset != expected {
        IngestError::new(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("{} is loaded up to byte {at}, and this load starts at byte {}", c.source, c.start_offset),
        )
        .hint("Call ingest.client_file_state in the same transaction first; pg-ingest load does.")
        .raise()
    }
}

/// A stream (STDIN, a program): read to its end, decompressed if it is compressed.
fn stream_input(reader: Box<dyn std::io::Read + Send>, format: Format, pump: Option<stream::Pump>) -> Input {
    let raw_read = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    Input {
        reader: Box::new(pg_ingest_core::input::Counted { inner: reader, count: raw_read.clone() }),
        total: 0,
        raw_read: Some(raw_read),
        decompress: true,
        format,
        shape: None,
        hold_back: false,
        pump,
    }
}

/// COPY's column list: only those columns are written (the others get their defaults).
unsafe fn restrict_columns(target: &mut Target, attlist: *mut pg_sys::List) {
    if attlist.is_null() {
        return;
    }
    let names: Vec<String> = PgList::<pg_sys::Node>::from_pg(attlist)
        .iter_ptr()
        .map(|n| CStr::from_ptr((*(n as *mut pg_sys::String)).sval).to_string_lossy().into_owned())
        .collect();
    for (i, name) in names.iter().enumerate() {
        if names[..i].contains(name) {
            IngestError::new(
                PgSqlErrorCode::ERRCODE_DUPLICATE_COLUMN,
                format!("column \"{name}\" specified more than once"),
            )
            .raise();
        }
        if !target.columns.iter().any(|c| &c.name == name) {
            IngestError::new(
                PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN,
                format!("column \"{name}\" of relation {} does not exist", target.name),
            )
            .raise();
        }
    }
    target.columns.retain(|c| names.contains(&c.name));
}
