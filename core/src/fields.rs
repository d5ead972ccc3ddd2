//! How one field is written into a chunk's rows: its length, its tag (see
//! [`crate::encode::TAG_DATUM`] and the others), and what the tag says follows; a per-row
//! DEFAULT as a hole. Which rows hold a field PostgreSQL may still refuse is noted as it goes.

use crate::convert;
use crate::encode::{ColumnKind, ColumnSpec, EncodedChunk, Hole, TAG_DATUM, TAG_INPUT, TAG_LOCAL, TAG_RECEIVE};
use crate::error::RowError;
use crate::json::{self, Kind, Value};

/// A string's bytes between its quotes (for a string without escapes).
pub(crate) fn string_inner<'a>(v: &Value<'a>) -> &'a [u8] {
    &v.raw[1..v.raw.len() - 1]
}

/// A timestamptz, timestamp or date from its ISO 8601 text: the binary form where it is
/// certain, a wall-clock time for the session's TimeZone, or the text for the input function.
pub(crate) fn put_temporal(out: &mut EncodedChunk, col: &ColumnSpec, text: &[u8]) {
    use crate::temporal;
    match col.kind {
        ColumnKind::Date => match temporal::parse_date(text) {
            Some(days) => put_receive(out, &[], &days.to_be_bytes()),
            None => put_input(out, text),
        },
        ColumnKind::Timestamp => match temporal::parse_datetime(text) {
            // timestamp_in reads an offset and ignores it
            Some(t) => put_receive(out, &[], &t.local_us().to_be_bytes()),
            None => put_input(out, text),
        },
        _ => match temporal::parse_datetime(text) {
            Some(t) => match t.utc_us() {
                Some(us) => put_receive(out, &[], &us.to_be_bytes()),
                None if col.finished && col.typmod < 0 && !t.fraction_carried => {
                    out.bytes.extend_from_slice(&(1 + 8 + text.len() as i32).to_be_bytes());
                    out.bytes.push(TAG_LOCAL);
                    out.bytes.extend_from_slice(&t.local_us().to_ne_bytes());
                    out.bytes.extend_from_slice(text);
                    mark_checked(out);
                }
                None => put_input(out, text),
            },
            None => put_input(out, text),
        },
    }
}

pub(crate) fn put_null(out: &mut EncodedChunk) {
    out.bytes.extend_from_slice(&(-1i32).to_be_bytes());
}

/// The row being encoded has a field PostgreSQL may still refuse.
pub(crate) fn mark_checked(out: &mut EncodedChunk) {
    let row = out.rows as u32;
    if out.checked_rows.last() != Some(&row) {
        out.checked_rows.push(row);
    }
}

/// Text for the column type's input function.
pub(crate) fn put_input(out: &mut EncodedChunk, text: &[u8]) {
    out.bytes.extend_from_slice(&(text.len() as i32 + 1).to_be_bytes());
    out.bytes.push(TAG_INPUT);
    out.bytes.extend_from_slice(text);
    mark_checked(out);
}

/// The type's binary form (`prefix`, then `data`) for its receive function.
pub(crate) fn put_receive(out: &mut EncodedChunk, prefix: &[u8], data: &[u8]) {
    out.bytes.extend_from_slice(&((prefix.len() + data.len()) as i32 + 1).to_be_bytes());
    out.bytes.push(TAG_RECEIVE);
    out.bytes.extend_from_slice(prefix);
    out.bytes.extend_from_slice(data);
}

/// A finished datum, its varlena header included.
pub(crate) fn put_datum(out: &mut EncodedChunk, datum: &[u8]) {
    out.bytes.extend_from_slice(&(datum.len() as i32 + 1).to_be_bytes());
    out.bytes.push(TAG_DATUM);
    out.bytes.extend_from_slice(datum);
}

/// A json datum, unless it nests deeper than json_in would take (its stack depth check): then
/// json_recv decides.
pub(crate) fn put_json(out: &mut EncodedChunk, raw: &[u8]) {
    if json::nests_deeper_than(raw, crate::jsonb::MAX_DEPTH) {
        put_receive(out, &[], raw);
        mark_checked(out);
    } else {
        put_text_datum(out, raw);
    }
}

/// A text or json datum: the tag, a varlena header, the text.
pub(crate) fn put_text_datum(out: &mut EncodedChunk, text: &[u8]) {
    out.bytes.extend_from_slice(&(text.len() as i32 + 5).to_be_bytes());
    out.bytes.push(TAG_DATUM);
    out.bytes.extend_from_slice(&crate::numeric::varlena_header(text.len() + 4));
    out.bytes.extend_from_slice(text);
}

/// A text datum of a JSON value's text form: a string decoded straight into the row, anything
/// else as written.
pub(crate) fn put_text_value(out: &mut EncodedChunk, v: &Value<'_>) -> Result<(), RowError> {
    match v.kind {
        Kind::String { escaped: true } => {
            let start = out.bytes.len();
            out.bytes.extend_from_slice(&[0; 4]);
            out.bytes.push(TAG_DATUM);
            let header = out.bytes.len();
            out.bytes.extend_from_slice(&[0; 4]);
            if let Err(e) = json::unescape_into(string_inner(v), &mut out.bytes) {
                out.bytes.truncate(start);
                return Err(convert::unescape_error(e));
            }
            let len = out.bytes.len() - header;
            out.bytes[start..start + 4].copy_from_slice(&(len as i32 + 1).to_be_bytes());
            out.bytes[header..header + 4].copy_from_slice(&crate::numeric::varlena_header(len));
        }
        Kind::String { escaped: false } => put_text_datum(out, string_inner(v)),
        _ => put_text_datum(out, v.raw),
    }
    Ok(())
}

/// A varchar(n) (`pad` false) or character(n) (`pad` true) datum of a JSON value's text form,
/// `maxlen` characters at most, as `varchar_input` and `bpchar_input` make it: characters past
/// `maxlen` that are all spaces are cut off, and character(n) is padded with spaces to `maxlen`
/// characters. A longer text is left to the receive function, whose error it gets. (The
/// characters are UTF-8's: the backend finishes these only in a UTF8 database.)
pub(crate) fn put_char_value(out: &mut EncodedChunk, v: &Value<'_>, maxlen: usize, pad: bool) -> Result<(), RowError> {
    let start = out.bytes.len();
    put_text_value(out, v)?;
    // the field: its length (4), the tag, the varlena header (4), the text
    let text_at = start + 9;
    let len = out.bytes.len() - text_at;
    if len > maxlen || pad {
        let text = &out.bytes[text_at..];
        // where the character after the first `maxlen` starts
        let mut chars = 0;
        let cut = text.iter().position(|&b| {
            let starts = b & 0xC0 != 0x80;
            chars += starts as usize;
            starts && chars > maxlen
        });
        match cut {
            Some(cut) if text[cut..].iter().all(|&b| b == b' ') => out.bytes.truncate(text_at + cut),
            Some(_) => {
                let text = text.to_vec();
                out.bytes.truncate(start);
                put_receive(out, &[], &text);
                mark_checked(out);
                return Ok(());
            }
            None if pad => {
                let spaces = maxlen - chars;
                out.bytes.resize(out.bytes.len() + spaces, b' ');
            }
            None => {}
        }
        let total = out.bytes.len() - start;
        out.bytes[start..start + 4].copy_from_slice(&(total as i32 - 4).to_be_bytes());
        out.bytes[start + 5..start + 9].copy_from_slice(&crate::numeric::varlena_header(total - 5));
    }
    Ok(())
}

/// A finished array of a column's element type; `false` (nothing written) where `array_in` must
/// decide.
pub(crate) fn put_array(out: &mut EncodedChunk, v: &Value<'_>, col: &ColumnSpec) -> bool {
    let Some(element) = col.element else { return false };
    put_datum_built(out, |bytes| crate::arrays::array_datum_into(v, element, col.typmod, bytes))
}

/// A finished datum that `build` appends to the row's bytes; `false` (nothing written) where it
/// cannot.
fn put_datum_built(out: &mut EncodedChunk, build: impl FnOnce(&mut Vec<u8>) -> bool) -> bool {
    let start = out.bytes.len();
    out.bytes.extend_from_slice(&[0; 4]);
    out.bytes.push(TAG_DATUM);
    if build(&mut out.bytes) {
        let len = (out.bytes.len() - start - 4) as i32;
        out.bytes[start..start + 4].copy_from_slice(&len.to_be_bytes());
        true
    } else {
        out.bytes.truncate(start);
        false
    }
}

/// A jsonb field: the finished datum when it can be built here, else jsonb's binary COPY
/// form (version 1, the text) for `jsonb_recv`.
pub(crate) fn put_jsonb(out: &mut EncodedChunk, v: Value<'_>, finished: bool) {
    if finished && put_datum_built(out, |bytes| crate::jsonb::jsonb_datum_into(v, bytes)) {
        return;
    }
    // jsonb_recv: version 1, then the text (a domain's checks, what the builder leaves)
    put_receive(out, &[1], v.raw);
    mark_checked(out);
}

/// A constant DEFAULT, already a whole field's bytes (tag included).
pub(crate) fn put_bytes(out: &mut EncodedChunk, b: &[u8]) {
    out.bytes.extend_from_slice(&(b.len() as i32).to_be_bytes());
    out.bytes.extend_from_slice(b);
}

pub(crate) fn put_hole(out: &mut EncodedChunk, column: usize, line: u64) {
    out.holes.push(Hole { at: out.bytes.len(), column: column as u16, line });
}
