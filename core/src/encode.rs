//! JSON lines → PostgreSQL binary COPY rows, one chunk at a time, on any thread.
//!
//! Every field is a tag byte and what the tag says follows (see [`TAG_DATUM`] and the others):
//! a finished datum, the type's binary form for its receive function, or text for its input
//! function, where PostgreSQL decides what no fast path fully understands. The backend reads
//! the tag (`pg_ingest_field` in `copy_state.c`) for COPY and for rows alike. A per-row DEFAULT
//! is a *hole*: a place in the byte stream the main thread fills as it streams the chunk to
//! COPY. A hole takes no bytes in [`EncodedChunk::bytes`], so filling it is a splice.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::arrays::Element;
use crate::convert::{self, EpochUnit};
use crate::error::{sqlstate, RowError};
use crate::fields::{
    mark_checked, put_array, put_bytes, put_char_value, put_datum, put_hole, put_input, put_json, put_jsonb, put_null,
    put_receive, put_temporal, put_text_value, string_inner,
};
use crate::framing::{self, Chunk};
use crate::input::Header;
use crate::json::{self, JsonError, Kind, Value};
use crate::mapping::{KeyIndex, KeyMatch, PathStep, Source};

/// How a column's values are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    /// text, varchar: the binary form is the UTF-8 text.
    Text,
    /// character(n), blank-padded: the binary form is the UTF-8 text.
    Bpchar,
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    Bool,
    Json,
    Jsonb,
    Timestamptz,
    Timestamp,
    Date,
    Uuid,
    Numeric,
    /// A PostgreSQL array type: JSON arrays become array literals for `array_in`.
    Array,
    /// json[] or jsonb[]: each element of a JSON array, arrays included, is one JSON value.
    JsonArray,
    /// Anything else: the type's input function decides.
    Other,
}

/// What a column gets when its key is missing from a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DefaultValue {
    /// No DEFAULT: NULL.
    Null,
    /// A DEFAULT that is the same for every row, already in binary form (`None`: NULL).
    Const(Option<Vec<u8>>),
    /// A volatile DEFAULT (`nextval`, `clock_timestamp()`, ...): the main thread evaluates it per row.
    PerRow,
}

#[derive(Debug, Clone)]
pub struct ColumnSpec {
    pub name: String,
    pub kind: ColumnKind,
    pub default: DefaultValue,
    pub source: Source,
    /// The column's type itself (not a domain, whose checks only PostgreSQL runs), of one
    /// whose datums are built here (text, varchar, json, jsonb, numeric; timestamptz for
    /// [`TAG_LOCAL`]): fields may be [`TAG_DATUM`].
    pub finished: bool,
    /// The column's typmod (numeric(p,s) is rounded here as `apply_typmod` rounds).
    pub typmod: i32,
    /// For an array column that is [`ColumnSpec::finished`]: its element type, whose arrays are
    /// built here ([`crate::arrays`]).
    pub element: Option<Element>,
}

/// A field's tag: the datum itself follows, its varlena header included, taken as it is.
pub const TAG_DATUM: u8 = 0;
/// A field's tag: the type's binary COPY form follows, for its own receive function (which
/// applies the typmod and a domain's checks).
pub const TAG_RECEIVE: u8 = 1;
/// A field's tag: text for the type's input function follows (PostgreSQL decides).
pub const TAG_INPUT: u8 = 2;
/// A field's tag (timestamptz only): a wall-clock time without an offset, as 8 bytes of
/// microseconds since 2000-01-01 (native order), then the text it was read from. The backend
/// places it in the session's TimeZone as `timestamptz_in` does, or gives the text to the
/// input function where that fails.
pub const TAG_LOCAL: u8 = 3;

#[derive(Debug, Clone)]
pub struct EncodeOptions {
    pub epoch_unit: EpochUnit,
    pub max_line_bytes: usize,
    /// Stop at the first bad line of a chunk (else record every bad line and go on).
    pub stop_at_first_error: bool,
    /// Keep what rejects need: each row's line offset, bad lines' text.
    pub track_rows: bool,
    /// Longest raw line text kept in an error record.
    pub raw_limit: usize,
    /// A last line without its newline that does not parse yet is left for a later load of
    /// the file (a line still being written); off for streams, which end where they end.
    pub hold_back: bool,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        Self {
            epoch_unit: EpochUnit::Seconds,
            max_line_bytes: 64 << 20,
            stop_at_first_error: true,
            track_rows: false,
            raw_limit: 4096,
            hold_back: true,
        }
    }
}

/// A place in [`EncodedChunk::bytes`] where the main thread inserts one field: the column's
/// per-row DEFAULT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hole {
    /// Byte position in `bytes` where the field (length and data) goes.
    pub at: usize,
    pub column: u16,
    pub line: u64,
}

/// The rows of one chunk in binary COPY form (without the file header and trailer).
#[derive(Debug, Clone, Default)]
pub struct EncodedChunk {
    pub seq: u64,
    pub first_line: u64,
    /// File offset of the chunk's first byte.
    pub offset: u64,
    /// Lines in the chunk, blank ones and bad ones included.
    pub lines: u64,
    pub rows: u64,
    pub blank_lines: u64,
    /// Bytes of input the chunk covered.
    pub input_bytes: u64,
    pub bytes: Vec<u8>,
    pub holes: Vec<Hole>,
    /// Rows (index in the chunk) with a field PostgreSQL may still refuse: text for an input
    /// function, a form its receive function checks. A row not listed is made of values
    /// built and checked here.
    pub checked_rows: Vec<u32>,
    /// `(row index in chunk, line number)` wherever the line stops being the previous row's
    /// line + 1 (and for the first row): enough to map any row back to its line.
    pub row_lines: Vec<(u64, u64)>,
    /// Bad lines, in order. With `stop_at_first_error`, at most one, and the chunk's rows end
    /// just before it.
    pub errors: Vec<RowError>,
    /// Where each row starts in `bytes`.
    pub row_starts: Vec<usize>,
    /// With `track_rows`: the file offset of each row's line.
    pub row_offsets: Vec<u64>,
    /// With `track_rows`: the chunk's input (moved in by the pipeline once the chunk is
    /// encoded), and where each row's text is in it (what a reject records as the raw line,
    /// whatever the input was: a file, a stream, a pipe).
    pub source: Vec<u8>,
    pub row_text: Vec<(usize, usize)>,
    /// The input's last line had no newline and does not parse yet: it was left for a later
    /// load (not counted in `lines` nor in `input_bytes`).
    pub held_back: bool,
    /// The work was cancelled before the chunk was finished.
    pub cancelled: bool,
}

impl EncodedChunk {
    /// Where row `row` ends in `bytes`.
    /// About the heap memory it holds.
    pub fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        self.bytes.capacity()
            + self.checked_rows.capacity() * size_of::<u32>()
            + self.holes.capacity() * size_of::<Hole>()
            + self.row_lines.capacity() * size_of::<(u64, u64)>()
            + self.row_starts.capacity() * size_of::<usize>()
            + self.row_offsets.capacity() * size_of::<u64>()
            + self.source.capacity()
            + self.row_text.capacity() * size_of::<(usize, usize)>()
            + self
                .errors
                .iter()
                .map(|e| size_of::<RowError>() + e.message.len() + e.raw.as_ref().map_or(0, |r| r.len()))
                .sum::<usize>()
    }

    /// With `track_rows`: the text of row `row` (0-based), up to `limit` bytes.
    pub fn raw_of_row(&self, row: usize, limit: usize) -> Option<String> {
        let &(start, len) = self.row_text.get(row)?;
        Some(crate::error::raw_text(&self.source[start..start + len], limit))
    }

    pub fn row_end(&self, row: usize) -> usize {
        self.row_starts.get(row + 1).copied().unwrap_or(self.bytes.len())
    }

    /// The line number of row `row` (0-based, within the chunk).
    pub fn line_of_row(&self, row: u64) -> Option<u64> {
        let i = self.row_lines.partition_point(|&(r, _)| r <= row).checked_sub(1)?;
        let (r, line) = self.row_lines[i];
        Some(line + (row - r))
    }
}

/// Turns lines into rows for one target table.
#[derive(Debug, Clone)]
pub struct RowEncoder {
    columns: Vec<ColumnSpec>,
    keys: KeyIndex,
    /// Top-level key → the path columns that start with it.
    /// (a few keys: compared in turn, cheaper than hashing every key of every line)
    path_roots: Vec<(Vec<u8>, Vec<usize>)>,
    rest: Option<usize>,
    needs_object: bool,
    opts: EncodeOptions,
}

/// Per-line working memory, reused across the lines of a chunk.
struct Scratch<'a> {
    values: Vec<Option<Value<'a>>>,
    exact: Vec<bool>,
    roots: Vec<Option<Value<'a>>>,
    rest: Vec<u8>,
    key: Vec<u8>,
    /// The column each key position matched on the previous line: most lines share a layout.
    layout: Vec<Option<KeyMatch>>,
}

impl RowEncoder {
    pub fn new(columns: Vec<ColumnSpec>, opts: EncodeOptions) -> Result<Self, String> {
        let keys = KeyIndex::new(
            columns.iter().enumerate().filter(|(_, c)| c.source == Source::Key).map(|(i, c)| (i, c.name.as_str())),
        );
        let mut path_roots: Vec<(Vec<u8>, Vec<usize>)> = Vec::new();
        let mut rest = None;
        for (i, c) in columns.iter().enumerate() {
            match &c.source {
                Source::Path(steps) => match steps.first() {
                    Some(PathStep::Key(k)) => match path_roots.iter_mut().find(|(key, _)| key == k.as_bytes()) {
                        Some((_, cols)) => cols.push(i),
                        None => path_roots.push((k.as_bytes().to_vec(), vec![i])),
                    },
                    _ => return Err(format!("the path for column \"{}\" must start with a key", c.name)),
                },
                Source::Rest => {
                    if !matches!(c.kind, ColumnKind::Jsonb | ColumnKind::Json) {
                        return Err(format!("the rest column \"{}\" must be of type jsonb or json", c.name));
                    }
                    if rest.replace(i).is_some() {
                        return Err("only one column can receive the rest".into());
                    }
                }
                Source::Key | Source::WholeLine => {}
            }
        }
        let needs_object = columns.iter().any(|c| c.source != Source::WholeLine);
        Ok(Self { columns, keys, path_roots, rest, needs_object, opts })
    }

    pub fn columns(&self) -> &[ColumnSpec] {
        &self.columns
    }

    /// Encodes the lines of `chunk`. `cancel` is polled now and then.
    /// Whether encoded chunks keep their input (for rejects' raw lines).
    pub fn keeps_input(&self) -> bool {
        self.opts.track_rows
    }

    pub fn encode_chunk(&self, chunk: &Chunk, cancel: &AtomicBool) -> EncodedChunk {
        // the pipeline's tests check that a panic here is an error, not an abort
        #[cfg(test)]
        if chunk.data.starts_with(b"PANIC") {
            panic!("injected into a parse thread at line {}", chunk.first_line);
        }
        let n = self.columns.len();
        let mut out = EncodedChunk {
            seq: chunk.seq,
            first_line: chunk.first_line,
            offset: chunk.offset,
            lines: chunk.lines,
            input_bytes: chunk.data.len() as u64,
            bytes: Vec::with_capacity(chunk.data.len() + chunk.data.len() / 8),
            ..Default::default()
        };
        let mut s = Scratch {
            values: vec![None; n],
            exact: vec![false; n],
            roots: vec![None; n],
            rest: Vec::new(),
            key: Vec::new(),
            layout: Vec::new(),
        };
        let mut next_expected_line = 0;
        let last_line = chunk.first_line + chunk.lines.saturating_sub(1);
        for (i, line) in framing::lines(chunk).enumerate() {
            if i % 1024 == 0 && cancel.load(Ordering::Relaxed) {
                out.cancelled = true;
                break;
            }
            // a header names the columns of positional arrays: a target whose column takes the
            // whole line has none to name, and the line is a row like any other
            let header = chunk.header.as_ref().filter(|_| self.needs_object);
            if line.is_blank() || header.is_some_and(|h| h.line == line.no) {
                out.blank_lines += 1;
                continue;
            }
            let row_start = out.bytes.len();
            match self.encode_line(line.text, line.no, chunk.header.as_deref(), &mut s, &mut out) {
                Ok(()) => {
                    if line.no != next_expected_line {
                        out.row_lines.push((out.rows, line.no));
                    }
                    next_expected_line = line.no + 1;
                    out.rows += 1;
                    out.row_starts.push(row_start);
                    if self.opts.track_rows {
                        out.row_offsets.push(line.offset);
                        let at = line.text.as_ptr() as usize - chunk.data.as_ptr() as usize;
                        out.row_text.push((at, line.text.len()));
                    }
                }
                Err(e) if self.opts.hold_back && chunk.unterminated && line.no == last_line && is_unfinished(&e) => {
                    // a line still being written: it waits for the next load
                    out.held_back = true;
                    out.lines -= 1;
                    // all of the line's bytes, a `\r` it ends in included (`text` has it cut)
                    out.input_bytes = line.offset - chunk.offset;
                }
                Err(e) => {
                    let mut e = e.at(line.no, line.offset);
                    if self.opts.track_rows {
                        e = e.with_raw(line.text, self.opts.raw_limit);
                    }
                    out.errors.push(e);
                    if self.opts.stop_at_first_error {
                        break;
                    }
                }
            }
        }
        out
    }

    fn encode_line<'a>(
        &self,
        text: &'a [u8],
        line_no: u64,
        header: Option<&Header>,
        s: &mut Scratch<'a>,
        out: &mut EncodedChunk,
    ) -> Result<(), RowError> {
        if text.len() > self.opts.max_line_bytes {
            return Err(RowError::new(
                sqlstate::PROGRAM_LIMIT_EXCEEDED,
                format!("line is longer than pg_ingest.max_line_bytes ({} bytes)", self.opts.max_line_bytes),
            ));
        }
        // SIMD validation; the standard library says where, for the rare bad line
        if simdutf8::basic::from_utf8(text).is_err() {
            let e = std::str::from_utf8(text).expect_err("invalid UTF-8");
            let at = e.valid_up_to();
            let len = e.error_len().unwrap_or(text.len() - at).min(8);
            let shown: Vec<String> = text[at..at + len].iter().map(|b| format!("0x{b:02x}")).collect();
            return Err(RowError::new(
                sqlstate::CHARACTER_NOT_IN_REPERTOIRE,
                format!("invalid byte sequence for encoding \"UTF8\": {}", shown.join(" ")),
            )
            .with_detail(format!("at byte {} of the line", at + 1)));
        }
        s.values.iter_mut().for_each(|v| *v = None);
        s.exact.iter_mut().for_each(|v| *v = false);
        s.roots.iter_mut().for_each(|v| *v = None);
        s.rest.clear();
        // what a column taking the whole line gets: an object, unless the line was only validated
        let mut whole_kind = Kind::Object;
        let positional = header.filter(|_| text.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'['));
        if let (Some(header), true) = (positional, self.needs_object) {
            whole_kind = Kind::Array;
            let v = json::parse_value(text).map_err(json_error)?;
            let values = json::array_elements(v.raw);
            for (pos, v) in values.enumerate() {
                let Some((name, escaped)) = header.names.get(pos) else {
                    return Err(RowError::new(
                        sqlstate::INVALID_TEXT_REPRESENTATION,
                        format!("line has more values than the header (line {}) has names", header.line),
                    )
                    .with_detail(format!("The header names {} columns.", header.names.len())));
                };
                self.assign(name, *escaped, v, pos, s);
            }
        } else if self.needs_object {
            let mut pos = 0;
            let found = json::parse_object(text, |key, escaped, v| {
                self.assign(key, escaped, v, pos, s);
                pos += 1;
            })
            .map_err(json_error)?;
            if let Some(kind) = found {
                return Err(RowError::new(sqlstate::INVALID_TEXT_REPRESENTATION, "line is not a JSON object")
                    .with_detail(format!("The line holds {}; its keys are mapped to columns.", kind_name(kind))));
            }
        } else {
            whole_kind = json::parse_value(text).map_err(json_error)?.kind;
        }
        for (c, col) in self.columns.iter().enumerate() {
            match &col.source {
                Source::WholeLine => {
                    let trimmed = trim_ws(text);
                    s.values[c] = Some(Value { kind: whole_kind, raw: trimmed });
                }
                Source::Path(steps) => s.values[c] = s.roots[c].and_then(|root| resolve(root, &steps[1..])),
                _ => {}
            }
        }
        let row_start = out.bytes.len();
        let holes = out.holes.len();
        out.bytes.extend_from_slice(&(self.columns.len() as i16).to_be_bytes());
        for c in 0..self.columns.len() {
            let value = if Some(c) == self.rest { None } else { s.values[c] };
            let result = if Some(c) == self.rest && !s.rest.is_empty() {
                let text = [&b"{"[..], &s.rest, b"}"].concat();
                let value = json::parse_value(&text).unwrap_or(Value { kind: Kind::Object, raw: &text });
                let col = &self.columns[c];
                match col.kind {
                    ColumnKind::Jsonb => put_jsonb(out, value, col.finished),
                    _ if col.finished => put_json(out, &text),
                    _ => put_receive(out, &[], &text),
                }
                Ok(())
            } else {
                self.encode_field(c, value, line_no, out)
            };
            if let Err(e) = result {
                out.bytes.truncate(row_start);
                out.holes.truncate(holes);
                if out.checked_rows.last() == Some(&(out.rows as u32)) {
                    out.checked_rows.pop();
                }
                return Err(e.in_column(&self.columns[c].name));
            }
        }
        Ok(())
    }

    fn assign<'a>(&self, key: &[u8], escaped: bool, v: Value<'a>, pos: usize, s: &mut Scratch<'a>) {
        let lookup: &[u8] = if escaped {
            s.key.clear();
            if json::unescape_into(key, &mut s.key).is_err() {
                s.key.clear();
            }
            &s.key
        } else {
            key
        };
        let mut taken = false;
        if !self.path_roots.is_empty() {
            if let Some((_, cols)) = self.path_roots.iter().find(|(key, _)| key == lookup) {
                for &c in cols {
                    s.roots[c] = Some(v);
                }
                taken = true;
            }
        }
        // Most lines have the same keys in the same order as the line before.
        let predicted = s.layout.get(pos).copied().flatten().filter(|m| match m {
            KeyMatch::Exact(c) => same_key(self.columns[*c].name.as_bytes(), lookup),
            KeyMatch::Folded(_) => false,
        });
        let found = predicted.or_else(|| self.keys.find(lookup));
        if s.layout.len() <= pos {
            s.layout.resize(pos + 1, None);
        }
        s.layout[pos] = found;
        match found {
            Some(KeyMatch::Exact(c)) => {
                s.values[c] = Some(v);
                s.exact[c] = true;
                taken = true;
            }
            Some(KeyMatch::Folded(c)) => {
                if !s.exact[c] && s.values[c].is_none() {
                    s.values[c] = Some(v);
                }
                taken = true;
            }
            None => {}
        }
        if !taken && self.rest.is_some() {
            if !s.rest.is_empty() {
                s.rest.push(b',');
            }
            s.rest.push(b'"');
            s.rest.extend_from_slice(key);
            s.rest.extend_from_slice(b"\":");
            s.rest.extend_from_slice(v.raw);
        }
    }

    fn encode_field(&self, c: usize, value: Option<Value>, line: u64, out: &mut EncodedChunk) -> Result<(), RowError> {
        let col = &self.columns[c];
        let v = match value {
            None => {
                match &col.default {
                    DefaultValue::Null | DefaultValue::Const(None) => put_null(out),
                    DefaultValue::Const(Some(b)) => put_bytes(out, b),
                    DefaultValue::PerRow => put_hole(out, c, line),
                }
                return Ok(());
            }
            Some(v) if v.kind == Kind::Null => {
                put_null(out);
                return Ok(());
            }
            Some(v) => v,
        };
        match col.kind {
            ColumnKind::Text | ColumnKind::Bpchar if col.finished && col.typmod >= 4 => {
                put_char_value(out, &v, (col.typmod - 4) as usize, col.kind == ColumnKind::Bpchar)?
            }
            ColumnKind::Text | ColumnKind::Bpchar if col.finished => put_text_value(out, &v)?,
            // a domain: the receive function applies the typmod and checks
            ColumnKind::Text | ColumnKind::Bpchar => {
                put_receive(out, &[], &convert::text_form(&v)?);
                mark_checked(out);
            }
            ColumnKind::Json if col.finished => put_json(out, v.raw),
            ColumnKind::Json => {
                put_receive(out, &[], v.raw);
                mark_checked(out);
            }
            ColumnKind::Jsonb => put_jsonb(out, v, col.finished),
            ColumnKind::Int2 | ColumnKind::Int4 | ColumnKind::Int8 => {
                let width = match col.kind {
                    ColumnKind::Int2 => 2,
                    ColumnKind::Int4 => 4,
                    _ => 8,
                };
                match convert::integer(&v, width)? {
                    Some(n) => put_receive(out, &[], &n.to_be_bytes()[8 - width as usize..]),
                    None => put_input(out, &convert::text_form(&v)?),
                }
            }
            ColumnKind::Float4 | ColumnKind::Float8 => {
                match convert::float(&v, if col.kind == ColumnKind::Float4 { 4 } else { 8 }) {
                    Some((b, len)) => put_receive(out, &[], &b[..len]),
                    None => put_input(out, &convert::text_form(&v)?),
                }
            }
            ColumnKind::Bool => {
                let b = match v.kind {
                    Kind::Bool(b) => Some(b),
                    Kind::String { escaped: false } => convert::bool_text(string_inner(&v)),
                    _ => None,
                };
                match b {
                    Some(b) => put_receive(out, &[], &[b as u8]),
                    None => put_input(out, &convert::text_form(&v)?),
                }
            }
            ColumnKind::Timestamptz | ColumnKind::Timestamp if v.kind == Kind::Number => {
                put_receive(out, &[], &convert::epoch_timestamp(&v, self.opts.epoch_unit)?)
            }
            ColumnKind::Date if v.kind == Kind::Number => {
                put_receive(out, &[], &convert::epoch_date(&v, self.opts.epoch_unit)?)
            }
            ColumnKind::Timestamptz | ColumnKind::Timestamp | ColumnKind::Date => {
                let text = convert::text_form(&v)?;
                put_temporal(out, col, &text);
            }
            ColumnKind::Uuid => {
                let text = convert::text_form(&v)?;
                match convert::uuid(&text) {
                    Some(u) => put_receive(out, &[], &u),
                    None => put_input(out, &text),
                }
            }
            ColumnKind::Numeric => {
                let text = convert::text_form(&v)?;
                let datum = match v.kind {
                    Kind::Number | Kind::String { .. } if col.finished => {
                        crate::numeric::numeric_datum_typmod(&text, col.typmod).ok()
                    }
                    _ => None,
                };
                match datum {
                    Some(d) => put_datum(out, &d),
                    None => put_input(out, &text),
                }
            }
            ColumnKind::Array
                if v.kind == Kind::Array && col.finished && col.element.is_some() && put_array(out, &v, col) => {}
            ColumnKind::Array | ColumnKind::JsonArray if v.kind == Kind::Array => {
                let mut literal = Vec::with_capacity(v.raw.len() + 8);
                convert::array_literal(&v, col.kind == ColumnKind::JsonArray, &mut literal)?;
                put_input(out, &literal);
            }
            _ => put_input(out, &convert::text_form(&v)?),
        }
        Ok(())
    }
}

/// `a == b` for the short keys of lines, compared in line (no call to `memcmp`).
#[inline(always)]
fn same_key(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

/// Follows `steps` below `root`; `None` where a key or index is missing.
fn resolve<'a>(root: Value<'a>, steps: &[PathStep]) -> Option<Value<'a>> {
    let mut cur = root;
    for step in steps {
        cur = match (step, cur.kind) {
            (PathStep::Key(k), Kind::Object) => {
                let mut found = None;
                let mut buf = Vec::new();
                let _ = json::parse_object(cur.raw, |key, escaped, v| {
                    let matches = if escaped {
                        buf.clear();
                        json::unescape_into(key, &mut buf).is_ok() && buf == k.as_bytes()
                    } else {
                        key == k.as_bytes()
                    };
                    if matches {
                        found = Some(v);
                    }
                });
                found?
            }
            (PathStep::Index(i), Kind::Array) => json::array_elements(cur.raw).nth(*i)?,
            _ => return None,
        };
    }
    Some(cur)
}

fn trim_ws(t: &[u8]) -> &[u8] {
    let is_ws = |b: &u8| matches!(b, b' ' | b'\t' | b'\r' | b'\n');
    let start = t.iter().position(|b| !is_ws(b)).unwrap_or(t.len());
    let end = t.iter().rposition(|b| !is_ws(b)).map_or(start, |e| e + 1);
    &t[start..end]
}

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::Null => "null",
        Kind::Bool(_) => "a boolean",
        Kind::Number => "a number",
        Kind::String { .. } => "a string",
        Kind::Object => "an object",
        Kind::Array => "an array",
    }
}

const JSON_SYNTAX: &str = "invalid input syntax for type json";

fn json_error(e: JsonError) -> RowError {
    RowError::new(sqlstate::INVALID_TEXT_REPRESENTATION, JSON_SYNTAX).with_detail(e.to_string())
}

/// A line that may simply not be finished yet: broken JSON or a cut UTF-8 character.
fn is_unfinished(e: &RowError) -> bool {
    e.column.is_none()
        && (e.sqlstate == sqlstate::CHARACTER_NOT_IN_REPERTOIRE
            || (e.sqlstate == sqlstate::INVALID_TEXT_REPRESENTATION && e.message == JSON_SYNTAX))
}

#[cfg(test)]
#[path = "encode_tests.rs"]
mod tests;
