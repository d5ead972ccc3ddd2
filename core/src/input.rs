//! What comes before framing: decompression (gzip, zstd, told by their magic bytes) and the
//! shape of the JSON (one value per line, or values laid out any way: a top-level array,
//! pretty-printed objects), decided from the input's first value. Runs on the reader thread.

use std::io::{self, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::framing::{Chunk, FrameError};
use crate::json::{self, Kind};

/// The ledger's fingerprint of some bytes of a file: FNV-1a, as hex, and how many bytes.
/// The server and the client compute it the same way.
pub fn fingerprint(bytes: &[u8]) -> String {
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3));
    format!("{hash:016x}:{}", bytes.len())
}

/// How the input compresses, told by its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// From the first bytes of a file or stream (fewer than 4 bytes: uncompressed).
    pub fn of(head: &[u8]) -> Self {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }
}

/// Counts the bytes read through it (the compressed bytes, for progress).
pub struct Counted<R> {
    pub inner: R,
    pub count: Arc<AtomicU64>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Reads until `buf` is full or the input ends.
fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// The input, decompressed if its magic bytes say so. Decompression holds a window of a few
/// MB at most (zstd's largest allowed here: 2^27 bytes), whatever the input's size.
pub fn decompressed<R: Read + Send + 'static>(mut input: R) -> io::Result<(Box<dyn Read + Send>, Compression)> {
    let mut magic = [0u8; 4];
    let n = read_full(&mut input, &mut magic)?;
    let head = io::Cursor::new(magic[..n].to_vec());
    let whole = head.chain(input);
    let kind = Compression::of(&magic[..n]);
    let out: Box<dyn Read + Send> = match kind {
        Compression::None => Box::new(whole),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(io::BufReader::with_capacity(1 << 16, whole))),
        Compression::Zstd => {
            let mut d = zstd::stream::read::Decoder::new(whole)?;
            d.window_log_max(27)?;
            Box::new(d)
        }
    };
    Ok((out, kind))
}

/// How values are laid out, as asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One value per line (JSON lines, NDJSON).
    Lines,
    /// Values laid out any way: a top-level array of them, or values one after the other
    /// with any white space between (pretty-printed, as `jq .` writes).
    Values,
    /// Decided from the first value.
    Auto,
}

impl Format {
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "jsonl" | "ndjson" => Some(Format::Lines),
            "json" => Some(Format::Values),
            "auto" => Some(Format::Auto),
            _ => None,
        }
    }
}

/// A header line of positional arrays (`["id","name"]`, then `[1,"a"]` per line): the
/// names, raw (between their quotes) with whether they have escapes, and its line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub names: Vec<(Vec<u8>, bool)>,
    pub line: u64,
}

/// How the input is laid out, decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shape {
    Lines { header: Option<Arc<Header>> },
    Values,
}

impl Shape {
    pub fn name(&self) -> &'static str {
        match self {
            Shape::Lines { header: None } => "jsonl",
            Shape::Lines { header: Some(_) } => "jsonl with a header",
            Shape::Values => "json",
        }
    }
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Where the first top-level value starting at `from` ends (exclusive), if it ends in `buf`.
fn value_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut sc = ValueScan::default();
    let first = buf[from];
    if !matches!(first, b'{' | b'[' | b'"') {
        // a scalar: up to a delimiter
        return buf[from..]
            .iter()
            .position(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n' | b',' | b']' | b'[' | b'{'))
            .map(|i| from + i);
    }
    for (i, &b) in buf[from..].iter().enumerate() {
        if sc.step(b) {
            return Some(from + i + 1);
        }
    }
    None
}

/// Decides the shape from the input's start (its BOM already skipped). `None`: more bytes
/// are needed (and `eof` is false).
pub fn detect(prefix: &[u8], eof: bool, format: Format) -> Option<Shape> {
    let lines = Shape::Lines { header: None };
    if format == Format::Values {
        return Some(Shape::Values);
    }
    let Some(p) = prefix.iter().position(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n')) else {
        return eof.then_some(lines);
    };
    let Some(end) = value_end(prefix, p) else {
        return eof.then_some(lines);
    };
    let first = &prefix[p..end];
    let line = 1 + prefix[..p].iter().filter(|&&b| b == b'\n').count() as u64;
    let is_blank = |b: &u8| matches!(b, b' ' | b'\t' | b'\r');
    // the rest of the first value's line (up to its newline, or the end), and where the next
    // line starts
    let (rest, next_line) = match prefix[end..].iter().position(|&b| b == b'\n') {
        Some(i) => (&prefix[end..end + i], Some(end + i + 1)),
        None if eof => (&prefix[end..], None),
        None => return None,
    };
    let alone = rest.iter().all(is_blank);
    let spans_lines = first.contains(&b'\n');
    let one_line = !spans_lines && alone;
    // another value after it on its line (`{…} {…}`): anything else there is a bad line
    let shares_line = rest.iter().find(|b| !is_blank(b)).is_some_and(|b| matches!(b, b'{' | b'['));
    if first[0] == b'[' {
        if let Ok(v) = json::parse_value(first) {
            let names: Vec<_> = json::array_elements(v.raw).collect();
            if one_line && !names.is_empty() && names.iter().all(|n| matches!(n.kind, Kind::String { .. })) {
                let names = names
                    .iter()
                    .map(|n| (n.raw[1..n.raw.len() - 1].to_vec(), matches!(n.kind, Kind::String { escaped: true })))
                    .collect();
                return Some(Shape::Lines { header: Some(Arc::new(Header { names, line })) });
            }
        }
        if format != Format::Auto {
            return Some(lines);
        }
        // An array alone on its line with more values after it is a line of JSON lines (whose
        // values are arrays): read as a document, each array's elements would become rows.
        // Spread over lines, sharing its line, or all there is: a document.
        if one_line {
            let more = match next_line {
                Some(next) => prefix[next..].iter().any(|b| !is_blank(b) && *b != b'\n'),
                None => false,
            };
            if !more && !eof {
                return None;
            }
            return Some(if more { lines } else { Shape::Values });
        }
        return Some(if spans_lines || shares_line { Shape::Values } else { lines });
    }
    if format == Format::Auto && first[0] == b'{' && (spans_lines || shares_line) {
        return Some(Shape::Values);
    }
    Some(lines)
}

/// Reads the input's start, skips a BOM, decides the shape; returns it, the bytes skipped,
/// and the input to frame (what was read for deciding put back in front).
pub fn shaped(
    mut input: Box<dyn Read + Send>,
    format: Format,
    limit: usize,
) -> io::Result<(Shape, u64, Box<dyn Read + Send>)> {
    let mut prefix = Vec::new();
    let mut eof = false;
    let mut skipped = 0u64;
    let shape = loop {
        let start = prefix.len();
        let want = (start * 2).clamp(64 * 1024, limit.max(64 * 1024) + 1);
        prefix.resize(want, 0);
        let n = read_full(&mut input, &mut prefix[start..])?;
        prefix.truncate(start + n);
        eof = eof || n < want - start;
        if skipped == 0 && prefix.starts_with(BOM) {
            prefix.drain(..BOM.len());
            skipped = BOM.len() as u64;
        }
        if let Some(shape) = detect(&prefix, eof || prefix.len() > limit, format) {
            break shape;
        }
    };
    Ok((shape, skipped, Box::new(io::Cursor::new(prefix).chain(input))))
}

/// Follows strings and nesting, byte by byte.
#[derive(Debug, Default, Clone)]
struct ValueScan {
    depth: u32,
    in_string: bool,
    escape: bool,
}

impl ValueScan {
    /// Takes one byte of a value that started with `{`, `[` or `"`; true when it ends it.
    fn step(&mut self, b: u8) -> bool {
        if self.in_string {
            if self.escape {
                self.escape = false;
            } else if b == b'\\' {
                self.escape = true;
            } else if b == b'"' {
                self.in_string = false;
                return self.depth == 0;
            }
            return false;
        }
        match b {
            b'"' => self.in_string = true,
            b'{' | b'[' => self.depth += 1,
            b'}' | b']' => {
                self.depth = self.depth.saturating_sub(1);
                return self.depth == 0;
            }
            _ => {}
        }
        false
    }
}

/// Frames values laid out any way into chunks of records, one per line of the chunk's
/// `data` (new lines inside a value, JSON white space, become spaces; a raw one inside a
/// string, which JSON forbids, becomes a control byte that is refused just the same), each
/// with the line and offset where it starts in the input.
pub struct ValueFramer<R> {
    input: R,
    chunk_bytes: usize,
    max_value_bytes: usize,
    buf: Vec<u8>,
    pos: usize,
    eof: bool,
    /// The input's offset of `buf[0]`, and the line at `buf[pos]`.
    buf_offset: u64,
    line: u64,
    /// Inside the top-level array.
    in_array: bool,
    seq: u64,
    pub bytes_read: u64,
}

impl<R: Read> ValueFramer<R> {
    pub fn new(input: R, offset: u64, chunk_bytes: usize, max_value_bytes: usize) -> Self {
        Self {
            input,
            chunk_bytes: chunk_bytes.max(1),
            max_value_bytes: max_value_bytes.max(1),
            buf: Vec::new(),
            pos: 0,
            eof: false,
            buf_offset: offset,
            line: 1,
            in_array: false,
            seq: 0,
            bytes_read: 0,
        }
    }

    /// Makes at least one more byte available at `buf[pos..]`; false at the end.
    fn more(&mut self) -> io::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        if self.pos > 0 && self.pos * 2 >= self.buf.len() {
            self.buf.drain(..self.pos);
            self.buf_offset += self.pos as u64;
            self.pos = 0;
        }
        let start = self.buf.len();
        self.buf.resize(start + (1 << 16).max(self.chunk_bytes / 4), 0);
        loop {
            match self.input.read(&mut self.buf[start..]) {
                Ok(0) => {
                    self.buf.truncate(start);
                    self.eof = true;
                    return Ok(false);
                }
                Ok(n) => {
                    self.buf.truncate(start + n);
                    self.bytes_read += n as u64;
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.buf.truncate(start);
                    return Err(e);
                }
            }
        }
    }

    fn at(&mut self, i: usize) -> io::Result<Option<u8>> {
        while self.pos + i >= self.buf.len() {
            if !self.more()? {
                return Ok(None);
            }
        }
        Ok(Some(self.buf[self.pos + i]))
    }

    /// The next chunk of records, or `None` at the end of the input.
    pub fn next_chunk(&mut self) -> Result<Option<Chunk>, FrameError> {
        let mut data = Vec::with_capacity(self.chunk_bytes.min(1 << 24));
        let mut records = Vec::new();
        let (mut first_offset, mut first_line) = (None, self.line);
        while data.len() < self.chunk_bytes {
            // between values: white space, and the top-level array's brackets and commas
            let Some(b) = self.at(0).map_err(FrameError::Io)? else { break };
            match b {
                b'\n' => {
                    self.line += 1;
                    self.pos += 1;
                    continue;
                }
                b' ' | b'\t' | b'\r' => {
                    self.pos += 1;
                    continue;
                }
                b'[' if !self.in_array => {
                    self.in_array = true;
                    self.pos += 1;
                    continue;
                }
                b',' | b']' if self.in_array => {
                    self.in_array = b == b',';
                    self.pos += 1;
                    continue;
                }
                _ => {}
            }
            // one value: find its end
            let (start_line, start_offset) = (self.line, self.buf_offset + self.pos as u64);
            let scalar = !matches!(b, b'{' | b'[' | b'"');
            let mut sc = ValueScan::default();
            let mut len = 0usize;
            while let Some(c) = self.at(len).map_err(FrameError::Io)? {
                if scalar && matches!(c, b' ' | b'\t' | b'\r' | b'\n' | b',' | b']' | b'[' | b'{') && len > 0 {
                    break;
                }
                len += 1;
                if len > self.max_value_bytes {
                    return Err(FrameError::LineTooLong {
                        line: start_line,
                        offset: start_offset,
                        limit: self.max_value_bytes,
                    });
                }
                if !scalar && sc.step(c) {
                    break;
                }
            }
            let value = &self.buf[self.pos..self.pos + len];
            let mut strings = ValueScan::default();
            for &c in value {
                let in_string = strings.in_string;
                strings.step(c);
                data.push(match c {
                    b'\n' => {
                        self.line += 1;
                        if in_string {
                            0x01
                        } else {
                            b' '
                        }
                    }
                    c => c,
                });
            }
            data.push(b'\n');
            self.pos += len;
            records.push((start_line, start_offset));
            first_offset.get_or_insert(start_offset);
            if records.len() == 1 {
                first_line = start_line;
            }
        }
        if records.is_empty() {
            return Ok(None);
        }
        let chunk = Chunk {
            seq: self.seq,
            first_line,
            offset: first_offset.unwrap_or(0),
            lines: records.len() as u64,
            data,
            unterminated: false,
            records,
            header: None,
        };
        self.seq += 1;
        Ok(Some(chunk))
    }

    /// Where the input was read up to (what was framed, white space after it included).
    pub fn end_offset(&self) -> u64 {
        self.buf_offset + self.pos as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framing;

    fn records(input: &str, chunk: usize) -> Vec<(u64, u64, String)> {
        let mut f = ValueFramer::new(input.as_bytes(), 0, chunk, 1 << 20);
        let mut out = Vec::new();
        while let Some(c) = f.next_chunk().unwrap() {
            for l in framing::lines(&c) {
                out.push((l.no, l.offset, String::from_utf8_lossy(l.text).into_owned()));
            }
        }
        out
    }

    #[test]
    fn arrays_pretty_printed_and_concatenated_values_become_records() {
        let pretty = "{\n  \"a\": 1,\n  \"b\": \"x\\\"}\"\n}\n{\n  \"a\": 2\n}\n";
        for chunk in [1, 7, 1 << 20] {
            assert_eq!(
                records(pretty, chunk),
                [(1, 0, "{   \"a\": 1,   \"b\": \"x\\\"}\" }".into()), (5, 28, "{   \"a\": 2 }".into())]
            );
        }
        let array = "[\n {\"a\":1},\n {\"a\":[2,3]}\n]\n";
        assert_eq!(records(array, 1), [(2, 3, "{\"a\":1}".into()), (3, 13, "{\"a\":[2,3]}".into())]);
        assert_eq!(records("[{\"a\":1},{\"a\":2}]", 1 << 20).len(), 2);
        assert_eq!(
            records("{\"a\":1}{\"a\":2} 3 \"s\"", 1).iter().map(|r| r.2.as_str()).collect::<Vec<_>>(),
            ["{\"a\":1}", "{\"a\":2}", "3", "\"s\""]
        );
        // a cut-off value is handed on as it is: the parser says what is wrong
        assert_eq!(records("[{\"a\":1},{\"a\":", 1).last().unwrap().2, "{\"a\":");
    }

    #[test]
    fn the_shape_is_decided_from_the_first_value() {
        let d = |s: &str| detect(s.as_bytes(), true, Format::Auto).unwrap();
        assert_eq!(d("{\"a\":1}\n{\"a\":2}\n"), Shape::Lines { header: None });
        assert_eq!(d("\n\n  {\"a\":1}"), Shape::Lines { header: None });
        assert_eq!(d("{\n \"a\": 1\n}\n"), Shape::Values);
        assert_eq!(d("{\"a\":1} {\"a\":2}\n"), Shape::Values);
        assert_eq!(d("[{\"a\":1},\n{\"a\":2}]"), Shape::Values);
        assert_eq!(d("[{\"a\":1},{\"a\":2}]"), Shape::Values);
        match d("\n[\"id\", \"na\\\"me\"]\n[1,\"a\"]\n") {
            Shape::Lines { header: Some(h) } => {
                assert_eq!(h.line, 2);
                assert_eq!(h.names, [(b"id".to_vec(), false), (b"na\\\"me".to_vec(), true)]);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(d(""), Shape::Lines { header: None });
        // JSON lines whose first line is an array, or a bad line: still JSON lines
        let lines = Shape::Lines { header: None };
        assert_eq!(d("[1]\n[2, 3]\n"), lines);
        assert_eq!(d("\n[{\"a\":1}]\n\n{\"a\":2}\n"), lines);
        assert_eq!(d("{\"a\":1}}\n{\"a\":2}\n"), lines);
        assert_eq!(d("{\"a\":1} x\n{\"a\":2}\n"), lines);
        assert_eq!(d("[1] x\n[2]\n"), lines);
        // one array, alone in the input (blank lines after it): a document
        assert_eq!(d("[{\"a\":1},{\"a\":2}]\n \n\n"), Shape::Values);
        assert_eq!(d("[1] [2]\n"), Shape::Values);
        assert_eq!(detect(b"[1]\n  \n", false, Format::Auto), None);
        assert_eq!(detect(b"[1]\n  \n[", false, Format::Auto), Some(lines.clone()));
        assert_eq!(detect(b"[1]\n[2]\n", true, Format::Lines), Some(lines.clone()));
        assert_eq!(detect(b"{\"a\":", false, Format::Auto), None);
        assert_eq!(detect(b"{\"a\":1}", false, Format::Auto), None);
        assert_eq!(detect(b"{\n", true, Format::Lines), Some(Shape::Lines { header: None }));
        assert_eq!(detect(b"{\n", true, Format::Values), Some(Shape::Values));
    }

    #[test]
    fn gzip_and_zstd_are_told_by_their_magic_bytes() {
        use std::io::Write;
        let text = b"{\"a\":1}\n".repeat(1000);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&text).unwrap();
        let gz = gz.finish().unwrap();
        let zs = zstd::encode_all(&text[..], 3).unwrap();
        for (bytes, kind) in [(gz, Compression::Gzip), (zs, Compression::Zstd), (text.clone(), Compression::None)] {
            let (mut r, k) = decompressed(io::Cursor::new(bytes)).unwrap();
            let mut out = Vec::new();
            r.read_to_end(&mut out).unwrap();
            assert_eq!((k, out.len()), (kind, text.len()));
        }
        let (mut r, _) = decompressed(io::Cursor::new(vec![0x1f, 0x8b, 8, 0, 1, 2, 3])).unwrap();
        assert!(r.read_to_end(&mut Vec::new()).is_err(), "a corrupt gzip is an error");
    }
}
