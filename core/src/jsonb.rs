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

use std::cell::RefCell;

use crate::json::{self, Value};
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
/// A builder's working memory above this is given back after the value.
const KEEP_BYTES: usize = 1 << 20;

/// One value of the tree, in the builder's arena. Strings and numbers are spans: of the input,
/// or of the decoded text for strings with escapes.
#[derive(Clone, Copy)]
enum Node {
    Null,
    Bool(bool),
    Number {
        at: u32,
        len: u32,
    },
    String {
        at: u32,
        len: u32,
        decoded: bool,
    },
    /// `n` children at `kids[first..]`.
    Array {
        first: u32,
        n: u32,
    },
    /// `n` members at `kids[first..]`, key and value in turn, sorted and deduplicated.
    Object {
        first: u32,
        n: u32,
    },
}

/// The working memory of one thread's jsonb builds, reused from value to value.
#[derive(Default)]
struct Builder {
    nodes: Vec<Node>,
    kids: Vec<u32>,
    /// The children of the containers still open, in order.
    pending: Vec<u32>,
    /// The open containers: whether an object, where their children start in `pending`.
    open: Vec<(bool, usize)>,
    /// Decoded strings with escapes.
    text: Vec<u8>,
    pairs: Vec<(u32, u32)>,
    /// Where in the output the datum starts: its padding counts from there.
    base: usize,
}

thread_local! {
    static BUILDER: RefCell<Builder> = RefCell::default();
}

impl Builder {
    fn clear(&mut self) {
        self.nodes.clear();
        self.kids.clear();
        self.pending.clear();
        self.open.clear();
        self.text.clear();
        self.pairs.clear();
    }

    fn push(&mut self, node: Node) {
        self.pending.push(self.nodes.len() as u32);
        self.nodes.push(node);
    }

    fn bytes<'s>(&'s self, raw: &'s [u8], node: Node) -> &'s [u8] {
        match node {
            Node::String { at, len, decoded: true } => &self.text[at as usize..(at + len) as usize],
            Node::String { at, len, .. } | Node::Number { at, len } => &raw[at as usize..(at + len) as usize],
            _ => &[],
        }
    }

    /// The tree of `raw`, one validated JSON value, in one pass: its root's index, or `None`
    /// where PostgreSQL must decide.
    fn build(&mut self, raw: &[u8]) -> Option<u32> {
        let mut i = 0;
        while i < raw.len() {
            let b = raw[i];
            if matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b',' | b':') {
                i += 1;
                continue;
            }
            if matches!(b, b'}' | b']') {
                self.close(raw)?;
                i += 1;
                continue;
            }
            // a value, `open.len()` containers deep
            if self.open.len() > MAX_DEPTH {
                return None;
            }
            match b {
                b'{' | b'[' => {
                    self.open.push((b == b'{', self.pending.len()));
                    i += 1;
                }
                b'"' => {
                    let start = i + 1;
                    let mut j = start;
                    let mut escaped = false;
                    loop {
                        j += json::string_run(&raw[j..]);
                        match raw.get(j) {
                            Some(b'\\') => {
                                escaped = true;
                                j += 2;
                            }
                            Some(_) => break,
                            None => return None,
                        }
                    }
                    let node = if escaped {
                        let at = self.text.len();
                        json::unescape_into(&raw[start..j], &mut self.text).ok()?;
                        Node::String { at: at as u32, len: (self.text.len() - at) as u32, decoded: true }
                    } else {
                        Node::String { at: start as u32, len: (j - start) as u32, decoded: false }
                    };
                    self.push(node);
                    i = j + 1;
                }
                b't' => {
                    self.push(Node::Bool(true));
                    i += 4;
                }
                b'f' => {
                    self.push(Node::Bool(false));
                    i += 5;
                }
                b'n' => {
                    self.push(Node::Null);
                    i += 4;
                }
                _ => {
                    let len = raw[i..]
                        .iter()
                        .position(|b| !matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
                        .unwrap_or(raw.len() - i);
                    self.push(Node::Number { at: i as u32, len: len as u32 });
                    i += len;
                }
            }
        }
        (self.open.is_empty() && self.pending.len() == 1).then(|| self.pending[0])
    }

    /// Closes the innermost container: its children move to `kids`, an object's members
    /// sorted by key length then bytes, of equal keys the last one kept.
    fn close(&mut self, raw: &[u8]) -> Option<()> {
        let (object, from) = self.open.pop()?;
        let first = self.kids.len() as u32;
        let node = if object {
            let mut pairs = std::mem::take(&mut self.pairs);
            pairs.clear();
            pairs.extend(self.pending[from..].chunks_exact(2).map(|kv| (kv[0], kv[1])));
            // stable: of equal keys, input order stays
            pairs.sort_by(|a, b| {
                let (ka, kb) = (self.bytes(raw, self.nodes[a.0 as usize]), self.bytes(raw, self.nodes[b.0 as usize]));
                ka.len().cmp(&kb.len()).then_with(|| ka.cmp(kb))
            });
            let mut n = 0;
            for (i, &(k, v)) in pairs.iter().enumerate() {
                let same_as_next = pairs.get(i + 1).is_some_and(|next| {
                    self.bytes(raw, self.nodes[next.0 as usize]) == self.bytes(raw, self.nodes[k as usize])
                });
                if !same_as_next {
                    self.kids.push(k);
                    self.kids.push(v);
                    n += 1;
                }
            }
            self.pairs = pairs;
            Node::Object { first, n }
        } else {
            let n = (self.pending.len() - from) as u32;
            self.kids.extend_from_slice(&self.pending[from..]);
            Node::Array { first, n }
        };
        self.pending.truncate(from);
        self.push(node);
        Some(())
    }

    /// Appends a value's data to `buf`; its JEntry.
    fn emit(&self, raw: &[u8], buf: &mut Vec<u8>, index: u32) -> Option<u32> {
        let node = self.nodes[index as usize];
        Some(match node {
            Node::Null => JENTRY_ISNULL,
            Node::Bool(true) => JENTRY_ISBOOL_TRUE,
            Node::Bool(false) => JENTRY_ISBOOL_FALSE,
            Node::String { .. } => {
                let s = self.bytes(raw, node);
                buf.extend_from_slice(s);
                JENTRY_ISSTRING | s.len() as u32
            }
            Node::Number { .. } => {
                let pad = pad_to_int(buf, self.base);
                let at = buf.len();
                numeric_datum_into(self.bytes(raw, node), buf).ok()?;
                JENTRY_ISNUMERIC | (pad + buf.len() - at) as u32
            }
            Node::Array { first, n } => self.container(raw, buf, n | JB_FARRAY, first, n as usize, 1)?,
            Node::Object { first, n } => self.container(raw, buf, n | JB_FOBJECT, first, n as usize, 2)?,
        })
    }

    /// Appends a container: its header, JEntries and children's data (an object's keys, then
    /// its values); its JEntry. Its `n` children are at `kids[first..]`, every `stride`th.
    fn container(
        &self,
        raw: &[u8],
        buf: &mut Vec<u8>,
        header: u32,
        first: u32,
        n: usize,
        stride: usize,
    ) -> Option<u32> {
        let base = buf.len();
        pad_to_int(buf, self.base);
        buf.extend_from_slice(&header.to_ne_bytes());
        let mut at = buf.len();
        buf.resize(at + 4 * n * stride, 0);
        let mut total: u32 = 0;
        let first = first as usize;
        // an object's keys (offset 0 of each pair), then its values (offset 1)
        let children = (0..stride).flat_map(|half| (0..n).map(move |i| first + i * stride + half));
        for (i, child) in children.enumerate() {
            let mut meta = self.emit(raw, buf, self.kids[child])?;
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
}

/// Pads the datum that starts at `base` in `buf` to a multiple of 4 bytes.
fn pad_to_int(buf: &mut Vec<u8>, base: usize) -> usize {
    let pad = (4 - (buf.len() - base) % 4) % 4;
    buf.extend(std::iter::repeat_n(0, pad));
    pad
}

/// Appends the jsonb datum (its 4-byte varlena header included) of one validated JSON value
/// to `out`; `false`, with `out` as it was, when PostgreSQL's own input must decide. The
/// datum's alignment is counted from where it starts in `out`.
pub fn jsonb_datum_into(value: Value<'_>, out: &mut Vec<u8>) -> bool {
    BUILDER.with_borrow_mut(|b| {
        b.clear();
        let start = out.len();
        let built = build_into(b, value.raw, out, start);
        if b.nodes.capacity() * 16 + b.text.capacity() > KEEP_BYTES {
            *b = Builder::default();
        }
        match built {
            Some(()) => true,
            None => {
                out.truncate(start);
                false
            }
        }
    })
}

fn build_into(b: &mut Builder, raw: &[u8], out: &mut Vec<u8>, start: usize) -> Option<()> {
    let root = b.build(raw)?;
    b.base = start;
    out.extend_from_slice(&[0; 4]);
    match b.nodes[root as usize] {
        Node::Array { .. } | Node::Object { .. } => {
            b.emit(raw, out, root)?;
        }
        _ => {
            // a raw scalar: a one-element array flagged as such
            b.kids.push(root);
            let first = (b.kids.len() - 1) as u32;
            b.container(raw, out, 1 | JB_FARRAY | JB_FSCALAR, first, 1, 1)?;
        }
    }
    let len = out.len() - start;
    if len > 0x3FFF_FFFF {
        return None;
    }
    out[start..start + 4].copy_from_slice(&varlena_header(len));
    Some(())
}

/// The jsonb datum (its 4-byte varlena header included) for one validated JSON value, or
/// `None` when PostgreSQL's own input must decide.
pub fn jsonb_datum(value: Value<'_>) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(value.raw.len() + 64);
    jsonb_datum_into(value, &mut out).then_some(out)
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
