//! One-dimensional arrays of the types with a fast path, built on the parse threads as
//! `array_in` builds them from the literal pg_ingest would otherwise give it
//! (`src/backend/utils/adt/arrayfuncs.c`: `construct_md_array`, `src/include/utils/array.h`):
//! the header (size, one dimension, the data offset where there is a NULL bitmap, the element
//! type, the length, lower bound 1), the bitmap, then each element's in-memory datum aligned
//! to its type's alignment, the padding (zeros) after each element included; an empty array
//! has no dimension.
//!
//! A JSON null element is NULL (the backend builds arrays here only with `array_nulls` on, as
//! `array_in` then reads the literal's NULL). Whatever an element's fast path does not fully understand
//! (a nested array, a spelling left to the input function, an error) leaves the whole array
//! to `array_in`, which decides.

use crate::convert::{self, text_form};
use crate::encode::ColumnKind;
use crate::json::{self, Kind, Value};
use crate::numeric::{numeric_datum_typmod, varlena_header};
use crate::temporal;

/// The element type of an array column whose arrays are built here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Element {
    /// One of the kinds [`Element::new`] takes.
    pub kind: ColumnKind,
    /// Its type's OID (in the array header).
    pub oid: u32,
}

impl Element {
    /// `None` for element kinds whose datums are not built here.
    pub fn new(kind: ColumnKind, oid: u32) -> Option<Self> {
        use ColumnKind::*;
        matches!(
            kind,
            Int2 | Int4 | Int8 | Float4 | Float8 | Bool | Text | Uuid | Numeric | Date | Timestamp | Timestamptz
        )
        .then_some(Self { kind, oid })
    }

    /// The element type's alignment (`typalign`) in bytes.
    fn align(self) -> usize {
        use ColumnKind::*;
        match self.kind {
            Bool | Uuid => 1,
            Int2 => 2,
            Int8 | Float8 | Timestamp | Timestamptz => 8,
            _ => 4,
        }
    }
}

/// The `array_in` datum (varlena header included) of the JSON array `v` for an array column of
/// `element`s with the column's `typmod`, appended to `out`; `false`, with `out` as it was,
/// when `array_in` must decide.
pub fn array_datum_into(v: &Value<'_>, element: Element, typmod: i32, out: &mut Vec<u8>) -> bool {
    let base = out.len();
    let (mut n, mut nulls) = (0usize, false);
    for e in json::array_elements(v.raw) {
        match e.kind {
            Kind::Null => nulls = true,
            // another dimension: array_in's own checks
            Kind::Array => return false,
            _ => {}
        }
        n += 1;
    }
    let put_i32 = |out: &mut Vec<u8>, at: usize, value: i32| out[at..at + 4].copy_from_slice(&value.to_ne_bytes());
    if n == 0 {
        // construct_empty_array: no dimension, no data
        out.resize(base + 16, 0);
        put_i32(out, base + 12, element.oid as i32);
        out[base..base + 4].copy_from_slice(&varlena_header(16));
        return true;
    }
    let bitmap = if nulls { n.div_ceil(8) } else { 0 };
    // ARR_OVERHEAD_NONULLS / ARR_OVERHEAD_WITHNULLS: the header, the bitmap, MAXALIGNed
    let overhead = (24 + bitmap).next_multiple_of(8);
    // MaxArraySize: array_in's own error beyond it
    if n > 0x3FF_FFFF * 2 + 1 {
        return false;
    }
    out.resize(base + overhead, 0);
    put_i32(out, base + 4, 1);
    put_i32(out, base + 8, if nulls { overhead as i32 } else { 0 });
    put_i32(out, base + 12, element.oid as i32);
    put_i32(out, base + 16, n as i32);
    put_i32(out, base + 20, 1);
    for (i, e) in json::array_elements(v.raw).enumerate() {
        if e.kind == Kind::Null {
            continue;
        }
        if nulls {
            out[base + 24 + i / 8] |= 1 << (i % 8);
        }
        if !element_into(&e, element.kind, typmod, out) {
            out.truncate(base);
            return false;
        }
        let end = base + (out.len() - base).next_multiple_of(element.align());
        out.resize(end, 0);
    }
    let size = out.len() - base;
    if size > 0x3FFF_FFFF {
        out.truncate(base);
        return false;
    }
    out[base..base + 4].copy_from_slice(&varlena_header(size));
    true
}

/// One element's in-memory datum (native byte order; a varlena with its 4-byte header), as
/// the element type's input function makes it from the element's text in the literal.
fn element_into(e: &Value<'_>, kind: ColumnKind, typmod: i32, out: &mut Vec<u8>) -> bool {
    let plain_string = || match e.kind {
        Kind::String { escaped: false } => Some(&e.raw[1..e.raw.len() - 1]),
        _ => None,
    };
    match kind {
        ColumnKind::Int2 | ColumnKind::Int4 | ColumnKind::Int8 => {
            let width = match kind {
                ColumnKind::Int2 => 2,
                ColumnKind::Int4 => 4,
                _ => 8,
            };
            match convert::integer(e, width) {
                Ok(Some(n)) => match width {
                    2 => out.extend_from_slice(&(n as i16).to_ne_bytes()),
                    4 => out.extend_from_slice(&(n as i32).to_ne_bytes()),
                    _ => out.extend_from_slice(&n.to_ne_bytes()),
                },
                _ => return false,
            }
        }
        ColumnKind::Float4 | ColumnKind::Float8 => {
            match convert::float(e, if kind == ColumnKind::Float4 { 4 } else { 8 }) {
                Some((b, 4)) => out.extend_from_slice(&f32::from_be_bytes(b[..4].try_into().unwrap()).to_ne_bytes()),
                Some((b, _)) => out.extend_from_slice(&f64::from_be_bytes(b).to_ne_bytes()),
                None => return false,
            }
        }
        ColumnKind::Bool => match e.kind {
            Kind::Bool(b) => out.push(b as u8),
            _ => match plain_string().and_then(convert::bool_text) {
                Some(b) => out.push(b as u8),
                None => return false,
            },
        },
        ColumnKind::Text => {
            let Ok(text) = text_form(e) else { return false };
            out.extend_from_slice(&varlena_header(text.len() + 4));
            out.extend_from_slice(&text);
        }
        ColumnKind::Uuid => match text_form(e).ok().and_then(|t| convert::uuid(&t)) {
            Some(u) => out.extend_from_slice(&u),
            None => return false,
        },
        ColumnKind::Numeric => {
            let datum = match e.kind {
                Kind::Number | Kind::String { .. } => {
                    text_form(e).ok().and_then(|t| numeric_datum_typmod(&t, typmod).ok())
                }
                _ => None,
            };
            match datum {
                Some(d) => out.extend_from_slice(&d),
                None => return false,
            }
        }
        ColumnKind::Date => match plain_string().and_then(temporal::parse_date) {
            Some(days) => out.extend_from_slice(&days.to_ne_bytes()),
            None => return false,
        },
        ColumnKind::Timestamp | ColumnKind::Timestamptz => {
            let Some(t) = plain_string().and_then(temporal::parse_datetime) else { return false };
            let us = if kind == ColumnKind::Timestamp { Some(t.local_us()) } else { t.utc_us() };
            match us {
                Some(us) if typmod < 0 => out.extend_from_slice(&us.to_ne_bytes()),
                _ => return false,
            }
        }
        _ => return false,
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn datum(json: &str, kind: ColumnKind, oid: u32, typmod: i32) -> Option<Vec<u8>> {
        let mut out = vec![9u8; 3];
        let v = json::parse_value(json.as_bytes()).unwrap();
        let ok = array_datum_into(&v, Element::new(kind, oid).unwrap(), typmod, &mut out);
        assert!(ok || out == [9, 9, 9], "a refused array leaves nothing");
        ok.then(|| out[3..].to_vec())
    }

    fn words(ints: &[i32]) -> Vec<u8> {
        ints.iter().flat_map(|i| i.to_ne_bytes()).collect()
    }

    #[test]
    fn laid_out_as_array_in_lays_them_out() {
        // no NULLs: a 24-byte header, then the elements
        let d = datum("[1, \"2\", -3]", ColumnKind::Int4, 23, -1).unwrap();
        let mut want = varlena_header(36).to_vec();
        want.extend(words(&[1, 0, 23, 3, 1, 1, 2, -3]));
        assert_eq!(d, want);
        // a NULL: the data offset, the bitmap (1 = present), padding to 8
        let d = datum("[1, null, 3]", ColumnKind::Int4, 23, -1).unwrap();
        let mut want = varlena_header(40).to_vec();
        want.extend(words(&[1, 32, 23, 3, 1]));
        want.extend([0b101, 0, 0, 0, 0, 0, 0, 0]);
        want.extend(words(&[1, 3]));
        assert_eq!(d, want);
        // varlena elements keep 4-byte headers and are padded to 4 after each
        let d = datum("[\"a\", 7]", ColumnKind::Text, 25, -1).unwrap();
        assert_eq!(d.len(), 24 + 8 + 8);
        assert_eq!(
            &d[24..],
            &[&varlena_header(5)[..], b"a", &[0, 0, 0], &varlena_header(5), b"7", &[0, 0, 0]].concat()
        );
        // empty: no dimension
        let d = datum("[]", ColumnKind::Int8, 20, -1).unwrap();
        assert_eq!(d, [&varlena_header(16)[..], &words(&[0, 0, 20])].concat());
        // left to array_in
        for (json, kind) in [
            ("[[1]]", ColumnKind::Int4),
            ("[1.5]", ColumnKind::Int4),
            ("[99999]", ColumnKind::Int2),
            ("[\"yes\"]", ColumnKind::Bool),
            ("[\"2024-01-01 10:00\"]", ColumnKind::Timestamptz),
            ("[\"\\u0000\"]", ColumnKind::Text),
        ] {
            assert_eq!(datum(json, kind, 1, -1), None, "{json}");
        }
        assert_eq!(datum("[\"2024-01-01 10:00Z\"]", ColumnKind::Timestamptz, 1184, 3), None, "a typmod");
    }
}
