//! Rows for SQL: the parse threads' chunks made into datums of a row type on the main thread,
//! for `read_jsonl` (and the loads built on it). The same pipeline as a load; no COPY: each
//! field of a chunk's rows is read by its tag as COPY reads it (`pg_ingest_field` in
//! copy_state.c: a finished datum as it is, a binary form through the receive function, text
//! through the input function). A column the line lacks is NULL, as `jsonb_populate_record`
//! makes it.

use std::time::Instant;

use pgrx::pg_sys::{self, Oid, PgTryBuilder};
use pgrx::PgSqlErrorCode;

use pg_ingest_core::encode::{ColumnSpec, DefaultValue, EncodedChunk};
use pg_ingest_core::error::RowError;
use pg_ingest_core::input::Compression;

use super::feed::Feed;
use super::skip::Rejects;
use super::target::{array_element, column_kind, finishes, TargetColumn};
use super::{Checked, Input, LoadOptions, Span, Threads};
use crate::error::{sqlstate_text, IngestError};
use crate::pg_compat;
use crate::{gucs, ledger};

/// The row type asked for: its attributes (dropped ones stay NULL).
pub struct RowType {
    pub natts: usize,
    /// The columns filled, with their index in the row.
    pub columns: Vec<(usize, TargetColumn)>,
    /// How to name it in messages.
    pub name: String,
    /// For `ingest.loads`: the type's relation (a table, a composite type), or `record`.
    pub ledger_target: (String, Oid),
}

impl RowType {
    /// # Safety
    /// `tupdesc` is a valid tuple descriptor.
    pub unsafe fn of(tupdesc: pg_sys::TupleDesc) -> Self {
        let natts = unsafe { (*tupdesc).natts } as usize;
        let mut columns = Vec::with_capacity(natts);
        for i in 0..natts {
            let att = unsafe { pg_compat::tuple_desc_attr(tupdesc, i) };
            if att.attisdropped {
                continue;
            }
            let name = unsafe { std::ffi::CStr::from_ptr(att.attname.data.as_ptr()) }.to_string_lossy().into_owned();
            columns.push((
                i,
                TargetColumn {
                    attnum: (i + 1) as i16,
                    name,
                    typid: att.atttypid,
                    typmod: att.atttypmod,
                    kind: column_kind(att.atttypid),
                    finished: finishes(att.atttypid, att.atttypmod),
                    element: array_element(att.atttypid, att.atttypmod),
                },
            ));
        }
        let (name, ledger_target) = unsafe {
            let typid = (*tupdesc).tdtypeid;
            if typid == pg_sys::RECORDOID || typid == Oid::INVALID {
                ("the column definition list".to_owned(), ("record".to_owned(), pg_sys::RECORDOID))
            } else {
                let t = std::ffi::CStr::from_ptr(pg_sys::format_type_be(typid)).to_string_lossy().into_owned();
                (format!("type {t}"), (t, pg_sys::get_typ_typrelid(typid)))
            }
        };
        Self { natts, columns, name, ledger_target }
    }
}

/// Whether two row types are the same row: as many attributes, each of the same type where
/// neither is dropped (a dropped attribute is only ever NULL). What PostgreSQL's FunctionScan
/// checks of a function's rows (`tupledesc_match`) before it lets them into a slot.
///
/// # Safety
/// Both are valid tuple descriptors.
pub unsafe fn same_row_type(a: pg_sys::TupleDesc, b: pg_sys::TupleDesc) -> bool {
    unsafe {
        if (*a).natts != (*b).natts {
            return false;
        }
        (0..(*a).natts as usize).all(|i| {
            let (x, y) = (pg_compat::tuple_desc_attr(a, i), pg_compat::tuple_desc_attr(b, i));
            x.attisdropped || y.attisdropped || x.atttypid == y.atttypid
        })
    }
}

/// Refuses rows of one type where another is expected: `what` names the call.
///
/// # Safety
/// Both are valid tuple descriptors.
pub unsafe fn check_row_type(expected: pg_sys::TupleDesc, got: pg_sys::TupleDesc, what: &str) {
    if !unsafe { same_row_type(expected, got) } {
        IngestError::new(
            PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH,
            format!("{what}: function return row and query-specified return row do not match"),
        )
        .detail(unsafe {
            format!("Returned row has {} attributes, but query expects {}.", (*expected).natts, (*got).natts)
        })
        .hint("A prepared statement whose row type changed (ALTER TABLE) must be prepared again.")
        .raise()
    }
}

impl RowType {
    /// The row type of a load's table: the columns it writes, at their attribute numbers.
    pub fn of_target(target: &super::target::Target) -> Self {
        let natts = unsafe { (*(*target.rel).rd_att).natts } as usize;
        let columns = target.columns.iter().map(|c| (c.attnum as usize - 1, c.clone())).collect();
        let oid = target.oid;
        Self { natts, columns, name: target.name.clone(), ledger_target: (target.name.clone(), oid) }
    }
}

/// How one column's datums are made here.
struct Column {
    index: usize,
    name: String,
    typioparam: Oid,
    typmod: i32,
    input: Box<pg_sys::FmgrInfo>,
    receive: Box<pg_sys::FmgrInfo>,
    /// Its per-row DEFAULT, for a line without a value (else null: NULL).
    default: *mut pg_sys::ExprState,
    /// Its receive function checks more than the parse threads did (a domain, a type they
    /// hand over as text): in skip mode a row with a value here is made in a subtransaction.
    may_fail: bool,
}

/// Where a read's rejected lines are recorded.
pub enum Ledger {
    /// A record of its own in `ingest.loads` (status `read`), in skip mode.
    Own,
    /// Under this load (a load built on rows), whose record is its caller's.
    Load(i64),
}

/// Rows of one input, pulled one at a time.
pub struct RowSource {
    feed: Box<Feed>,
    columns: Vec<Column>,
    chunk: Option<EncodedChunk>,
    row: usize,
    hole: usize,
    field: pg_sys::StringInfo,
    /// Where a row's datums live until the next row is asked for.
    memory: pg_sys::MemoryContext,
    pending_error: Option<RowError>,
    rejects: Option<Rejects>,
    load_id: i64,
    raw_limit: usize,
    pub rows: u64,
    started: Instant,
    ended: bool,
    own_ledger: bool,
    econtext: *mut pg_sys::ExprContext,
    last_line: u64,
    any_may_fail: bool,
    /// Attributes a row must have to hold every column this source fills.
    width: usize,
    ledger_target: String,
    /// The column being made, for an error raised meanwhile.
    failed_column: Option<String>,
}

impl RowSource {
    /// Starts the parse threads over the server file `path` (compressed or not, any of the
    /// formats), for rows of `rowtype`. With `on_error => 'skip'` the read is recorded in
    /// `ingest.loads` (status `read`) and its rejected lines in `ingest.rejects`.
    pub fn open_file(path: &str, rowtype: &RowType, opts: &LoadOptions) -> Self {
        super::target::check_file_permission();
        super::encoding::check_database();
        let checked = opts.check();
        let file = super::open_file(path);
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        let (compression, _) = super::layout(&file, path, size, opts.format);
        let span = Span { start_offset: 0, start_line: 1, end_offset: Some(size) };
        let mut input = Input::file_span(path, &file, size, &span, compression != Compression::None);
        input.format = opts.format;
        // a last line without a newline is a line: nothing waits for a later load
        input.hold_back = false;
        Self::start(path, input, rowtype, opts, &checked)
    }

    fn start(path: &str, input: Input, rowtype: &RowType, opts: &LoadOptions, checked: &Checked) -> Self {
        let columns: Vec<TargetColumn> = rowtype.columns.iter().map(|(_, c)| c.clone()).collect();
        let sources = super::sources(&columns, &rowtype.name, opts);
        let specs = columns
            .iter()
            .zip(sources)
            .map(|(c, source)| ColumnSpec {
                name: c.name.clone(),
                kind: c.kind,
                default: DefaultValue::Null,
                source,
                finished: c.finished,
                typmod: c.typmod,
                element: c.element,
            })
            .collect();
        let span = Span { start_offset: 0, start_line: 1, end_offset: None };
        let defaults = vec![std::ptr::null_mut(); columns.len()];
        Self::new(path, input, &span, rowtype, specs, defaults, checked, Ledger::Own)
    }

    /// Rows of `input` from `span`'s start, encoded as `specs` say (one per column of
    /// `rowtype`, in order); `defaults` are the per-row DEFAULT expressions of the columns
    /// that have one (else null).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        path: &str,
        input: Input,
        span: &Span,
        rowtype: &RowType,
        specs: Vec<ColumnSpec>,
        defaults: Vec<*mut pg_sys::ExprState>,
        checked: &Checked,
        ledger: Ledger,
    ) -> Self {
        let Input { reader, decompress, format, shape, hold_back, .. } = input;
        let threads = Threads { reader, decompress, format, shape, hold_back };
        let pipeline = super::start_pipeline(threads, specs, checked, span);
        let feed = Box::new(Feed::new(path.to_owned(), pipeline, Vec::new(), super::progress::Progress::silent(path)));
        let own = matches!(ledger, Ledger::Own);
        let (load_id, rejects) = match ledger {
            _ if !checked.skip => (0, None),
            Ledger::Own => {
                let (target, oid) = &rowtype.ledger_target;
                let id = ledger::start_load(path, target, *oid, "skip", 0, None);
                (id, Some(Rejects::new(id, path, checked.max_errors)))
            }
            Ledger::Load(id) => (id, Some(Rejects::new(id, path, checked.max_errors))),
        };
        let columns: Vec<Column> = rowtype
            .columns
            .iter()
            .zip(defaults)
            .map(|((index, c), default)| unsafe {
                let (mut input_fn, mut receive_fn, mut typioparam) = (Oid::INVALID, Oid::INVALID, Oid::INVALID);
                pg_sys::getTypeInputInfo(c.typid, &mut input_fn, &mut typioparam);
                pg_sys::getTypeBinaryInputInfo(c.typid, &mut receive_fn, &mut typioparam);
                let mut input: Box<pg_sys::FmgrInfo> = Box::new(std::mem::zeroed());
                let mut receive: Box<pg_sys::FmgrInfo> = Box::new(std::mem::zeroed());
                pg_sys::fmgr_info(input_fn, input.as_mut());
                pg_sys::fmgr_info(receive_fn, receive.as_mut());
                let plain =
                    pg_sys::getBaseType(c.typid) == c.typid && c.kind != pg_ingest_core::encode::ColumnKind::Other;
                Column {
                    index: *index,
                    name: c.name.clone(),
                    typioparam,
                    typmod: c.typmod,
                    input,
                    receive,
                    may_fail: !(c.finished || plain) || !default.is_null(),
                    default,
                }
            })
            .collect();
        let any_may_fail = columns.iter().any(|c: &Column| c.may_fail);
        let width = columns.iter().map(|c: &Column| c.index + 1).max().unwrap_or(0);
        let memory = unsafe {
            pg_sys::AllocSetContextCreateExtended(
                pg_sys::CurrentMemoryContext,
                c"pg_ingest row".as_ptr(),
                pg_sys::ALLOCSET_DEFAULT_MINSIZE as usize,
                pg_sys::ALLOCSET_DEFAULT_INITSIZE as usize,
                pg_sys::ALLOCSET_DEFAULT_MAXSIZE as usize,
            )
        };
        Self {
            feed,
            columns,
            chunk: None,
            row: 0,
            hole: 0,
            field: unsafe { pg_sys::makeStringInfo() },
            memory,
            pending_error: None,
            rejects,
            load_id,
            raw_limit: gucs::reject_line_bytes(),
            rows: 0,
            started: Instant::now(),
            ended: false,
            own_ledger: own,
            econtext: unsafe { pg_sys::CreateStandaloneExprContext() },
            last_line: 0,
            any_may_fail,
            width,
            ledger_target: rowtype.ledger_target.0.clone(),
            failed_column: None,
        }
    }

    /// The next row into `values`/`nulls` (the row type's `natts` of each); false after the
    /// last. Its datums stay valid until the next call.
    ///
    /// # Safety
    /// `values` and `nulls` hold the row type's attributes.
    pub unsafe fn next(&mut self, values: *mut pg_sys::Datum, nulls: *mut bool, natts: usize) -> bool {
        loop {
            if let Some(chunk) = &self.chunk {
                let chunk = chunk as *const EncodedChunk;
                let chunk = unsafe { &*chunk };
                if self.row < chunk.rows as usize {
                    let row = self.row;
                    self.row += 1;
                    if self.make_row(row, values, nulls, natts) {
                        self.rows += 1;
                        self.last_line = chunk.line_of_row(row as u64).unwrap_or(self.last_line);
                        return true;
                    }
                    continue;
                }
            }
            if let Some(e) = self.pending_error.take() {
                IngestError::from_row(&self.feed.file, &e).raise()
            }
            if self.ended {
                return false;
            }
            match self.feed.next_chunk() {
                Some(chunk) => {
                    match &mut self.rejects {
                        Some(rejects) => chunk.errors.iter().for_each(|e| rejects.add(e.clone())),
                        None => self.pending_error = chunk.errors.first().cloned(),
                    }
                    (self.chunk, self.row, self.hole) = (Some(chunk), 0, 0);
                }
                None => {
                    self.chunk = None;
                    self.end();
                    return false;
                }
            }
        }
    }

    /// Makes row `row` of the current chunk; false when it was rejected (skip mode).
    fn make_row(&mut self, row: usize, values: *mut pg_sys::Datum, nulls: *mut bool, natts: usize) -> bool {
        let chunk = self.chunk.as_ref().expect("a chunk");
        let guarded = self.rejects.is_some() && {
            let end = chunk.row_end(row);
            chunk.holes.get(self.hole).is_some_and(|h| h.at <= end)
                || self.any_may_fail
                || chunk.checked_rows.binary_search(&(row as u32)).is_ok()
        };
        let first_hole = self.hole;
        let me = self as *mut Self as usize;
        let (values, nulls) = (values as usize, nulls as usize);
        let memory = self.memory;
        unsafe {
            pg_sys::MemoryContextReset(memory);
            pg_sys::MemoryContextReset((*self.econtext).ecxt_per_tuple_memory);
        }
        let make = || unsafe {
            let old_context = pg_sys::MemoryContextSwitchTo(memory);
            let result = PgTryBuilder::new(|| {
                (*(me as *mut Self)).decode(row, values as *mut pg_sys::Datum, nulls as *mut bool, natts);
                Ok(())
            })
            .catch_others(Err)
            .execute();
            pg_sys::MemoryContextSwitchTo(old_context);
            result
        };
        let made = if guarded { super::skip::in_subtransaction(make) } else { make() };
        let Err(error) = made else { return true };
        let chunk = self.chunk.as_ref().expect("a chunk");
        // the holes of the row are behind us, whichever field failed
        let end = chunk.row_end(row);
        self.hole = first_hole + chunk.holes[first_hole..].iter().take_while(|h| h.at <= end).count();
        let (sqlstate, message, detail) = match &error {
            pgrx::pg_sys::panic::CaughtError::PostgresError(r) | pgrx::pg_sys::panic::CaughtError::ErrorReport(r) => {
                (sqlstate_text(r.sql_error_code()), r.message().to_owned(), r.detail().map(str::to_owned))
            }
            pgrx::pg_sys::panic::CaughtError::RustPanic { .. } => error.rethrow(),
        };
        let about_a_row = matches!(sqlstate.get(..2), Some("22" | "23" | "54"));
        let line = chunk.line_of_row(row as u64).unwrap_or(0);
        let column = self.failed_column.take();
        match &mut self.rejects {
            Some(rejects) if about_a_row => {
                let mut e = RowError::new("XX000", message).at(line, chunk.row_offsets.get(row).copied().unwrap_or(0));
                e.sqlstate = crate::error::static_sqlstate(&sqlstate);
                e.detail = detail;
                e.column = column;
                e.raw = chunk.raw_of_row(row, self.raw_limit);
                rejects.add(e);
                false
            }
            _ if !about_a_row => error.rethrow(),
            _ => {
                let place = match column {
                    Some(c) => format!("line {line}, column \"{c}\""),
                    None => format!("line {line}"),
                };
                let mut err = IngestError::new(
                    crate::error::sqlstate(&sqlstate),
                    format!("{}: {place}: {message}", self.feed.file),
                );
                err.detail = detail;
                err.raise()
            }
        }
    }
}

impl RowSource {
    /// Reads row `row`'s fields into datums (in the current memory context).
    fn decode(&mut self, row: usize, values: *mut pg_sys::Datum, nulls: *mut bool, natts: usize) {
        let chunk = self.chunk.as_ref().expect("a chunk");
        let bytes = &chunk.bytes;
        let (mut pos, end) = (chunk.row_starts[row], chunk.row_end(row));
        let fields = i16::from_be_bytes([bytes[pos], bytes[pos + 1]]) as usize;
        pos += 2;
        debug_assert_eq!(fields, self.columns.len());
        // never past the row the caller holds, whatever it is
        if self.width > natts {
            IngestError::new(
                PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH,
                format!("the row being filled has {natts} attributes, and this read fills {}", self.width),
            )
            .raise()
        }
        unsafe {
            for i in 0..natts {
                *values.add(i) = pg_sys::Datum::from(0);
                *nulls.add(i) = true;
            }
        }
        let _unconverted = super::encoding::Unconverted::enter();
        for c in 0..fields {
            let column = &mut self.columns[c];
            self.failed_column = Some(column.name.clone());
            let datum = if chunk.holes.get(self.hole).is_some_and(|h| h.at == pos && pos <= end) {
                self.hole += 1;
                match column.default.is_null() {
                    true => None,
                    false => unsafe {
                        let mut isnull = false;
                        let datum = pg_sys::ExecEvalExprSwitchContext(column.default, self.econtext, &mut isnull);
                        (!isnull).then_some(datum)
                    },
                }
            } else {
                let len = i32::from_be_bytes(bytes[pos..pos + 4].try_into().expect("4 bytes"));
                pos += 4;
                if len < 0 {
                    // as COPY does: a NULL goes to the receive function too (a domain's NOT
                    // NULL and CHECKs; a strict one is not called)
                    unsafe {
                        pg_sys::ReceiveFunctionCall(
                            column.receive.as_mut(),
                            std::ptr::null_mut(),
                            column.typioparam,
                            column.typmod,
                        )
                    };
                    None
                } else {
                    let data = &bytes[pos..pos + len as usize];
                    pos += len as usize;
                    Some(unsafe { receive(column, data, self.field) })
                }
            };
            if let Some(datum) = datum {
                unsafe {
                    *values.add(column.index) = datum;
                    *nulls.add(column.index) = false;
                }
            }
        }
        self.failed_column = None;
    }

    /// The end of the read, at the end of the input or before (a LIMIT was reached): the
    /// threads stop; a read in skip mode is recorded with what was read, and says what it
    /// rejected.
    pub fn end(&mut self) {
        if self.ended {
            return;
        }
        self.ended = true;
        // stopped early: the lines read are those up to the last row handed over
        let lines = if self.feed.exhausted { self.feed.lines } else { self.last_line };
        self.feed.stop();
        let Some(rejects) = &mut self.rejects else { return };
        rejects.flush();
        if !self.own_ledger {
            return;
        }
        let summary = super::LoadSummary {
            file: self.feed.file.clone(),
            target: self.ledger_target.clone(),
            status: "read".into(),
            lines: lines as i64,
            rows_inserted: self.rows as i64,
            rows_rejected: rejects.count as i64,
            lines_skipped: lines.saturating_sub(self.rows + rejects.count) as i64,
            bytes: self.feed.bytes_read() as i64,
            seconds: self.started.elapsed().as_secs_f64(),
            load_id: self.load_id,
        };
        ledger::finish_load(self.load_id, &summary, rejects.first_error());
        if rejects.count > 0 {
            pgrx::notice!(
                "{}: {} line{} rejected; see ingest.rejects (load_id {})",
                self.feed.file,
                rejects.count,
                if rejects.count == 1 { "" } else { "s" },
                self.load_id
            );
        }
    }

    /// Lines read, rows handed over, lines rejected, and the file offset after the last line.
    pub fn counts(&self) -> (u64, u64, u64, Option<u64>) {
        (self.feed.lines, self.rows, self.rejects.as_ref().map_or(0, |r| r.count), self.feed.end_offset)
    }

    /// Every row was read.
    pub fn exhausted(&self) -> bool {
        self.feed.exhausted
    }

    /// The first rejected line, for `ingest.loads.first_error`.
    pub fn first_error(&self) -> Option<String> {
        self.rejects.as_ref().and_then(|r| r.first_error())
    }

    /// Bytes of input read.
    pub fn bytes_read(&self) -> u64 {
        self.feed.bytes_read()
    }
}

unsafe extern "C" {
    // src/ingest/copy_state.c: the one reader of the fields' tags
    fn pg_ingest_field(
        receive: *mut pg_sys::FmgrInfo,
        input: *mut pg_sys::FmgrInfo,
        typioparam: Oid,
        typmod: i32,
        buf: pg_sys::StringInfo,
    ) -> pg_sys::Datum;
}

/// A field by its tag, as COPY reads it (`buf` keeps it NUL-terminated).
unsafe fn receive(column: &mut Column, data: &[u8], buf: pg_sys::StringInfo) -> pg_sys::Datum {
    unsafe {
        pg_sys::resetStringInfo(buf);
        pg_sys::appendBinaryStringInfo(buf, data.as_ptr() as *const _, data.len() as i32);
        pg_sys::ffi::pg_guard_ffi_boundary(|| {
            pg_ingest_field(column.receive.as_mut(), column.input.as_mut(), column.typioparam, column.typmod, buf)
        })
    }
}
