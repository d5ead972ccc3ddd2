//! PostgreSQL's jsonb on-disk value, built from JSON text on the parse threads exactly as
//! `jsonb_in` builds it (`src/backend/utils/adt/jsonb_util.c`: `convertToJsonb` and what it
//! calls; `src/include/utils/jsonb.h`): containers with a count and flags, JEntries (lengths,
//! an offset every 32nd), keys sorted by length then bytes with the last of duplicate keys
//! kept, keys before values, numerics and containers aligned to 4 bytes (the padding counted
//! in their length), a top-level scalar as a one-element "raw scalar" array.
//!
//! What this does not build exactly as PostgreSQL would (a `\u0000` or a lone surrogate in a
//! string, a number beyond the numeric format, very deep nesting) returns `None`: the value
//! then goes to PostgreSQL's own `jsonb_recv`, which decides (and raises its own error).

use std::borrow::Cow;

use crate::json::{self, Kind, Value};
use crate::numeric::{numeric_datum_into, varlena_header};

const JENTRY_OFFLENMASK: u32 = 0x0FFF_FFFF;
const JENTRY_HAS_OFF: u32 = 0x8000_0000;
const JENTRY_TYPEMASK: u32 = 0x7000_0000;
const JENTRY_ISSTRING: u32 = 0x0000_0000;
const JENTRY_ISNUMERIC: u32 = 0x1000_0000;
const JENTRY_ISBOOL_FALSE: u32 = 0x2000_0000;
const JENTRY_ISBOOL_TRUE: u32 = 0x3000_0000;
const JENTRY_ISNULL: u32 = 0x4000_0000;
const JENTRY_ISCONTAINER: u32 = 0x5000_0000;
const JB_OFFSET_STRIDE: usize = 32;
const JB_FSCALAR: u32 = 0x1000_0000;
const JB_FOBJECT: u32 = 0x2000_0000;
const JB_FARRAY: u32 = 0x4000_0000;
/// Deeper than this, PostgreSQL's own input decides (its stack depth check included).
pub const MAX_DEPTH: usize = 512;

enum Node<'a> {
    Null,
    Bool(bool),
    Number(&'a [u8]),
    String(Cow<'a, [u8]>),
    Array(Vec<Node<'a>>),
    Object(Vec<(Cow<'a, [u8]>, Node<'a>)>),
}

fn string<'a>(v: &Value<'a>) -> Option<Cow<'a, [u8]>> {
    v.string_text().ok()
}

fn node<'a>(v: Value<'a>, depth: usize) -> Option<Node<'a>> {
    if depth > MAX_DEPTH {
        return None;
    }
    Some(match v.kind {
        Kind::Null => Node::Null,
        Kind::Bool(b) => Node::Bool(b),
        Kind::Number => Node::Number(v.raw),
        Kind::String { .. } => Node::String(string(&v)?),
        Kind::Array => {
            let mut elems = Vec::new();
            for e in json::array_elements(v.raw) {
                elems.push(node(e, depth + 1)?);
            }
            Node::Array(elems)
        }
        Kind::Object => {
            let mut pairs: Vec<(Cow<'a, [u8]>, Node<'a>)> = Vec::new();
            let mut failed = false;
            json::parse_object(v.raw, |key, escaped, value| {
                if failed {
                    return;
                }
                let key = if escaped {
                    let mut out = Vec::new();
                    match json::unescape_into(key, &mut out) {
                        Ok(()) if !out.contains(&0) => Cow::Owned(out),
                        _ => {
                            failed = true;
                            return;
                        }
                    }
                } else {
                    Cow::Borrowed(key)
                };
                match node(value, depth + 1) {
                    Some(n) => pairs.push((key, n)),
                    None => failed = true,
                }
            })
            .ok()?;
            if failed {
                return None;
            }
            // sorted by length then bytes; of equal keys the last one stays (a stable sort
            // keeps input order, so the last of a run is the last in the input)
            pairs.sort_by(|a, b| a.0.len().cmp(&b.0.len()).then_with(|| a.0.as_ref().cmp(b.0.as_ref())));
            // in place: of a run of equal keys the last one is kept
            let mut kept = 0;
            for i in 0..pairs.len() {
                if kept > 0 && pairs[kept - 1].0 == pairs[i].0 {
                    pairs.swap(kept - 1, i);
                } else {
                    pairs.swap(kept, i);
                    kept += 1;
                }
            }
            pairs.truncate(kept);
            Node::Object(pairs)
        }
    })
}

fn pad_to_int(buf: &mut Vec<u8>) -> usize {
    let pad = (4 - buf.len() % 4) % 4;
    buf.extend(std::iter::repeat_n(0, pad));
    pad
}

/// Appends a value's data; its JEntry.
fn convert(buf: &mut Vec<u8>, n: &Node<'_>) -> Option<u32> {
    Some(match n {
        Node::Null => JENTRY_ISNULL,
        Node::Bool(true) => JENTRY_ISBOOL_TRUE,
        Node::Bool(false) => JENTRY_ISBOOL_FALSE,
        Node::String(s) => {
            buf.extend_from_slice(s);
            JENTRY_ISSTRING | s.len() as u32
        }
        Node::Number(text) => {
            let pad = pad_to_int(buf);
            let at = buf.len();
            numeric_datum_into(text, buf).ok()?;
            JENTRY_ISNUMERIC | (pad + buf.len() - at) as u32
        }
        Node::Array(elems) => container(buf, elems.len() as u32 | JB_FARRAY, elems.iter().map(Entry::Value))?,
        Node::Object(pairs) => container(
            buf,
            pairs.len() as u32 | JB_FOBJECT,
            pairs.iter().map(|(k, _)| Entry::Key(k)).chain(pairs.iter().map(|(_, v)| Entry::Value(v))),
        )?,
    })
}

enum Entry<'n, 'a> {
    Key(&'n Cow<'a, [u8]>),
    Value(&'n Node<'a>),
}

/// Appends a container (its header, JEntries and children's data); its JEntry.
fn container<'n, 'a: 'n>(buf: &mut Vec<u8>, header: u32, children: impl Iterator<Item = Entry<'n, 'a>>) -> Option<u32> {
    let base = buf.len();
    pad_to_int(buf);
    buf.extend_from_slice(&header.to_ne_bytes());
    let count = (header & 0x0FFF_FFFF) as usize * if header & JB_FOBJECT != 0 { 2 } else { 1 };
    let mut at = buf.len();
    buf.resize(at + 4 * count, 0);
    let mut total: u32 = 0;
    for (i, child) in children.enumerate() {
        let mut meta = match child {
            Entry::Key(k) => {
                buf.extend_from_slice(k);
                JENTRY_ISSTRING | k.len() as u32
            }
            Entry::Value(v) => convert(buf, v)?,
        };
        total = total.checked_add(meta & JENTRY_OFFLENMASK)?;
        if total > JENTRY_OFFLENMASK {
            return None;
        }
        if i % JB_OFFSET_STRIDE == 0 {
            meta = (meta & JENTRY_TYPEMASK) | total | JENTRY_HAS_OFF;
        }
        buf[at..at + 4].copy_from_slice(&meta.to_ne_bytes());
        at += 4;
    }
    let len = buf.len() - base;
    if len > JENTRY_OFFLENMASK as usize {
        return None;
    }
    Some(JENTRY_ISCONTAINER | len as u32)
}

/// The jsonb datum (its 4-byte varlena header included) for one validated JSON value, or
/// `None` when PostgreSQL's own input must decide.
pub fn jsonb_datum(value: Value<'_>) -> Option<Vec<u8>> {
    let root = node(value, 0)?;
    let mut buf = Vec::with_capacity(value.raw.len() + 64);
    buf.extend_from_slice(&[0; 4]);
    match &root {
        Node::Array(_) | Node::Object(_) => {
            convert(&mut buf, &root)?;
        }
        scalar => {
            // a raw scalar: a one-element array flagged as such
            container(&mut buf, 1 | JB_FARRAY | JB_FSCALAR, std::iter::once(Entry::Value(scalar)))?;
        }
    }
    let len = buf.len();
    if len > 0x3FFF_FFFF {
        return None;
    }
    buf[..4].copy_from_slice(&varlena_header(len));
    Some(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn datum(text: &str) -> Vec<u8> {
        jsonb_datum(json::parse_value(text.as_bytes()).unwrap()).unwrap()
    }

    fn u32s(b: &[u8]) -> Vec<u32> {
        b.chunks(4).map(|c| u32::from_ne_bytes(c.try_into().unwrap())).collect()
    }

    #[test]
    fn containers_keys_and_scalars_as_jsonb_in_lays_them_out() {
        // {"b": true, "a": null}: keys sorted, keys then values, a: 1 byte, b: 1 byte
        let d = datum(r#"{"b": true, "a": null}"#);
        assert_eq!(
            &d[4..],
            &[2u32 | JB_FOBJECT, JENTRY_HAS_OFF | 1, 1, JENTRY_ISNULL, JENTRY_ISBOOL_TRUE,]
                .iter()
                .flat_map(|w| w.to_ne_bytes())
                .chain(*b"ab")
                .collect::<Vec<u8>>()[..]
        );
        assert_eq!(u32::from_ne_bytes(d[..4].try_into().unwrap()) >> 2, d.len() as u32);
        // the last of duplicate keys stays; shorter keys first
        let d = datum(r#"{"bb": 1, "a": "x", "bb": "y"}"#);
        assert_eq!(d.len(), 4 + 4 + 4 * 4 + 3 + 2);
        assert!(d.ends_with(b"abbxy"));
        // a raw scalar
        assert_eq!(u32s(&datum("\"s\"")[4..8]), [1 | JB_FARRAY | JB_FSCALAR]);
        // numerics are aligned, the padding counted in their length
        let d = datum(r#"["x", 1]"#);
        assert_eq!(u32s(&d[4..16]), [2 | JB_FARRAY, JENTRY_HAS_OFF | 1, JENTRY_ISNUMERIC | (3 + 8)]);
        // what PostgreSQL must decide
        assert!(jsonb_datum(json::parse_value(br#"{"a": "\u0000"}"#).unwrap()).is_none());
        assert!(jsonb_datum(json::parse_value(br#"[1e999999999999]"#).unwrap()).is_none());
    }
}
