//! Splitting a byte stream into chunks of whole lines, and chunks into lines.
//!
//! Rules: a UTF-8 BOM at the very start is skipped; `\n` ends a line and a `\r` before it is
//! dropped; the last line may lack its newline; a line longer than `max_line_bytes` is an
//! error (the framer never buffers more than that plus one chunk); blank lines are yielded
//! as such so that callers can count them.

use std::io::{self, Read};

use crate::error::{sqlstate, RowError};

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// A run of whole lines from the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// Sequence number, from 0.
    pub seq: u64,
    /// Line number (1-based) of the first line in `data`.
    pub first_line: u64,
    /// Byte offset in the input of `data[0]`.
    pub offset: u64,
    /// Whole lines; every line but possibly the input's last ends in `\n`.
    pub data: Vec<u8>,
    /// How many lines `data` holds.
    pub lines: u64,
    /// The input ended without a newline after the last line of `data`.
    pub unterminated: bool,
    /// Values framed from any layout ([`crate::input::ValueFramer`]): each line of `data` is
    /// one value, and this is where each starts in the input (line, offset). Empty for lines.
    pub records: Vec<(u64, u64)>,
    /// The header line of positional arrays, when the input has one.
    pub header: Option<std::sync::Arc<crate::input::Header>>,
}

#[derive(Debug)]
pub enum FrameError {
    Io(io::Error),
    /// A line is longer than the limit: its number and offset.
    LineTooLong {
        line: u64,
        offset: u64,
        limit: usize,
    },
}

impl FrameError {
    pub fn into_row_error(self) -> RowError {
        match self {
            FrameError::Io(e) => RowError::new(sqlstate::IO_ERROR, format!("could not read file: {e}")),
            FrameError::LineTooLong { line, offset, limit } => RowError::new(
                sqlstate::PROGRAM_LIMIT_EXCEEDED,
                format!("line is longer than pg_ingest.max_line_bytes ({limit} bytes)"),
            )
            .at(line, offset),
        }
    }
}

/// Reads chunks of about `chunk_bytes` whole lines from `R`.
pub struct LineFramer<R> {
    input: R,
    chunk_bytes: usize,
    max_line_bytes: usize,
    /// Bytes read but not yet handed out (the start of an unfinished line).
    carry: Vec<u8>,
    next_seq: u64,
    next_line: u64,
    next_offset: u64,
    at_start: bool,
    eof: bool,
    /// Bytes consumed from the input so far (BOM included).
    pub bytes_read: u64,
}

impl<R: Read> LineFramer<R> {
    pub fn new(input: R, chunk_bytes: usize, max_line_bytes: usize) -> Self {
        Self::resume(input, 0, 1, chunk_bytes, max_line_bytes)
    }

    /// Frames an input already positioned at byte `offset`, whose next line is number `line`
    /// (a BOM is only looked for at offset 0).
    pub fn resume(input: R, offset: u64, line: u64, chunk_bytes: usize, max_line_bytes: usize) -> Self {
        Self {
            input,
            chunk_bytes: chunk_bytes.max(1),
            max_line_bytes: max_line_bytes.max(1),
            carry: Vec::new(),
            next_seq: 0,
            next_line: line,
            next_offset: offset,
            at_start: offset == 0,
            eof: false,
            bytes_read: 0,
        }
    }

    /// Fills `buf` up to `want` bytes or end of input. (`read_to_end` reads into the spare
    /// capacity where the reader can, a file's or a slice's, without zeroing it first.)
    fn fill(&mut self, buf: &mut Vec<u8>, want: usize) -> io::Result<()> {
        if buf.len() >= want || self.eof {
            return Ok(());
        }
        let need = (want - buf.len()) as u64;
        let start = buf.len();
        let read = (&mut self.input).take(need).read_to_end(buf);
        let n = (buf.len() - start) as u64;
        self.bytes_read += n;
        read?;
        if n < need {
            self.eof = true;
        }
        Ok(())
    }

    /// The next chunk of whole lines, or `None` at the end of the input.
    pub fn next_chunk(&mut self) -> Result<Option<Chunk>, FrameError> {
        let mut buf = std::mem::take(&mut self.carry);
        buf.reserve(self.chunk_bytes.saturating_sub(buf.len()));
        let mut want = self.chunk_bytes.max(buf.len() + 1);
        loop {
            self.fill(&mut buf, want).map_err(FrameError::Io)?;
            if self.at_start && (buf.len() >= BOM.len() || self.eof) {
                self.at_start = false;
                if buf.starts_with(BOM) {
                    buf.drain(..BOM.len());
                    self.next_offset += BOM.len() as u64;
                }
            }
            if self.at_start {
                want = want.max(BOM.len());
                continue;
            }
            // Cut after the last newline; what follows waits for the next chunk.
            let cut = match memchr::memrchr(b'\n', &buf) {
                _ if self.eof => buf.len(),
                Some(i) => i + 1,
                None => {
                    if buf.len() > self.max_line_bytes {
                        return Err(FrameError::LineTooLong {
                            line: self.next_line,
                            offset: self.next_offset,
                            limit: self.max_line_bytes,
                        });
                    }
                    // A line longer than a chunk: read on (never past the line limit + 1).
                    want = (buf.len() + self.chunk_bytes).min(self.max_line_bytes + 1).max(buf.len() + 1);
                    continue;
                }
            };
            if cut == 0 {
                return Ok(None);
            }
            self.carry = buf[cut..].to_vec();
            buf.truncate(cut);
            let newlines = count_newlines(&buf) as u64;
            let unterminated = !buf.ends_with(b"\n");
            let lines = newlines + u64::from(unterminated);
            let chunk = Chunk {
                seq: self.next_seq,
                first_line: self.next_line,
                offset: self.next_offset,
                data: buf,
                lines,
                unterminated,
                records: Vec::new(),
                header: None,
            };
            self.next_seq += 1;
            self.next_line += lines;
            self.next_offset += chunk.data.len() as u64;
            return Ok(Some(chunk));
        }
    }
}

fn count_newlines(data: &[u8]) -> usize {
    memchr::memchr_iter(b'\n', data).count()
}

/// One line of a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line<'a> {
    pub no: u64,
    pub offset: u64,
    /// The line without its `\n` or `\r\n`.
    pub text: &'a [u8],
}

impl Line<'_> {
    /// Empty, or nothing but JSON white space.
    pub fn is_blank(&self) -> bool {
        self.text.iter().all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
    }
}

/// The lines of a chunk, in order.
pub fn lines(chunk: &Chunk) -> impl Iterator<Item = Line<'_>> {
    let mut rest = &chunk.data[..];
    let mut no = chunk.first_line;
    let mut offset = chunk.offset;
    let mut index = 0;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let (mut text, len) = match memchr::memchr(b'\n', rest) {
            Some(i) => (&rest[..i], i + 1),
            None => (rest, rest.len()),
        };
        if let [head @ .., b'\r'] = text {
            text = head;
        }
        let line = match chunk.records.get(index) {
            Some(&(no, offset)) => Line { no, offset, text },
            None => Line { no, offset, text },
        };
        rest = &rest[len..];
        no += 1;
        index += 1;
        offset += len as u64;
        Some(line)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frame(input: &[u8], chunk: usize, max: usize) -> Result<Vec<Chunk>, FrameError> {
        let mut f = LineFramer::new(input, chunk, max);
        let mut out = Vec::new();
        while let Some(c) = f.next_chunk()? {
            out.push(c);
        }
        Ok(out)
    }

    fn all_lines(chunks: &[Chunk]) -> Vec<(u64, u64, Vec<u8>)> {
        chunks.iter().flat_map(|c| lines(c).map(|l| (l.no, l.offset, l.text.to_vec())).collect::<Vec<_>>()).collect()
    }

    #[test]
    fn splits_lines_with_numbers_and_offsets() {
        let chunks = frame(b"a\nbb\r\n\nccc", 4, 100).unwrap();
        assert_eq!(
            all_lines(&chunks),
            vec![(1, 0, b"a".to_vec()), (2, 2, b"bb".to_vec()), (3, 6, b"".to_vec()), (4, 7, b"ccc".to_vec())]
        );
        assert_eq!(chunks.iter().map(|c| c.lines).sum::<u64>(), 4);
        assert!(chunks.iter().all(|c| c.data.ends_with(b"\n") || c.data == b"ccc"));
    }

    #[test]
    fn bom_is_skipped_and_counted_in_offsets() {
        let chunks = frame(b"\xEF\xBB\xBF{}\n{}\n", 1024, 100).unwrap();
        assert_eq!(all_lines(&chunks), vec![(1, 3, b"{}".to_vec()), (2, 6, b"{}".to_vec())]);
        // a BOM later in the file is data
        let chunks = frame(b"{}\n\xEF\xBB\xBF{}\n", 1024, 100).unwrap();
        assert_eq!(all_lines(&chunks)[1].2, b"\xEF\xBB\xBF{}".to_vec());
    }

    #[test]
    fn trailing_newline_makes_no_extra_line() {
        assert_eq!(frame(b"x\n", 8, 8).unwrap().iter().map(|c| c.lines).sum::<u64>(), 1);
        assert!(frame(b"", 8, 8).unwrap().is_empty());
        assert_eq!(all_lines(&frame(b"\n", 8, 8).unwrap()), vec![(1, 0, vec![])]);
    }

    #[test]
    fn too_long_line_is_an_error_naming_it() {
        match frame(b"ok\nthis line is too long\nok\n", 4, 10) {
            Err(FrameError::LineTooLong { line, offset, limit }) => assert_eq!((line, offset, limit), (2, 3, 10)),
            other => panic!("{other:?}"),
        }
        // the last line, without a newline, is checked too
        assert!(matches!(frame(b"ok\n0123456789012", 4, 10), Err(FrameError::LineTooLong { line: 2, .. })));
        // a long line within the limit spans chunks
        let chunks = frame(b"0123456789\nab\n", 3, 10).unwrap();
        assert_eq!(all_lines(&chunks)[0].2, b"0123456789".to_vec());
    }

    #[test]
    fn resumes_at_an_offset_and_line() {
        let input = b"{}\n{}\n\xEF\xBB\xBF{}";
        let mut f = LineFramer::resume(&input[3..], 3, 2, 1024, 100);
        let c = f.next_chunk().unwrap().unwrap();
        assert_eq!(
            all_lines(std::slice::from_ref(&c)),
            vec![(2, 3, b"{}".to_vec()), (3, 6, b"\xEF\xBB\xBF{}".to_vec())]
        );
        assert!(c.unterminated);
        assert!(!frame(b"x\n", 8, 8).unwrap()[0].unterminated);
    }

    #[test]
    fn memory_is_bounded_by_the_line_limit() {
        // an endless line is refused after about limit bytes, not read to the end
        let endless = std::io::repeat(b'x').take(1 << 30);
        let mut f = LineFramer::new(endless, 1024, 4096);
        assert!(matches!(f.next_chunk(), Err(FrameError::LineTooLong { line: 1, .. })));
        assert!(f.bytes_read < 8192, "{}", f.bytes_read);
    }

    proptest! {
        #[test]
        fn any_chunk_size_gives_the_same_lines(
            input in proptest::collection::vec(prop_oneof![Just(b'\n'), Just(b'\r'), Just(b'a'), Just(b'{')], 0..300),
            chunk in 1usize..40,
        ) {
            let reference: Vec<Vec<u8>> = {
                let mut v: Vec<Vec<u8>> = input.split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l).to_vec()).collect();
                if input.ends_with(b"\n") || input.is_empty() { v.pop(); }
                v
            };
            let chunks = frame(&input, chunk, 1000).unwrap();
            let got = all_lines(&chunks);
            prop_assert_eq!(got.iter().map(|l| l.2.clone()).collect::<Vec<_>>(), reference.clone());
            prop_assert_eq!(got.iter().map(|l| l.0).collect::<Vec<_>>(), (1..=reference.len() as u64).collect::<Vec<_>>());
            for (_, off, text) in &got {
                prop_assert_eq!(&input[*off as usize..*off as usize + text.len()], &text[..]);
            }
        }
    }
}
