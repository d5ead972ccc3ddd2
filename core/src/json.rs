//! A validating JSON scanner that hands out raw spans instead of building values.
//!
//! Keeping values as the exact bytes of the input is what lets numbers reach numeric columns
//! without float rounding, lets strings without escapes be copied straight into COPY rows, and
//! lets objects and arrays reach json/jsonb columns as they are. Containers are walked with an
//! explicit stack, never by recursion, so no nesting depth can overflow a thread's stack.
//! Input must already be valid UTF-8 (checked per line by the caller).

use std::borrow::Cow;
use std::fmt;

/// What kind of JSON value a span holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Null,
    Bool(bool),
    Number,
    /// `escaped`: the string has backslash escapes, so its raw bytes are not its text.
    String {
        escaped: bool,
    },
    Object,
    Array,
}

/// One JSON value: its kind and its exact text (strings with their quotes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Value<'a> {
    pub kind: Kind,
    pub raw: &'a [u8],
}

impl<'a> Value<'a> {
    /// For a string: its text, decoded (`\u0000` is refused, as PostgreSQL refuses it).
    pub fn string_text(&self) -> Result<Cow<'a, [u8]>, UnescapeError> {
        let inner = &self.raw[1..self.raw.len() - 1];
        match self.kind {
            Kind::String { escaped: false } => Ok(Cow::Borrowed(inner)),
            _ => {
                let mut out = Vec::with_capacity(inner.len());
                unescape_into(inner, &mut out)?;
                Ok(Cow::Owned(out))
            }
        }
    }
}

/// Where and why the input is not JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError {
    /// Byte offset in the scanned text.
    pub offset: usize,
    pub message: String,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at character {}", self.message, self.offset + 1)
    }
}

/// A string escape PostgreSQL cannot store as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnescapeError {
    /// `\u0000`.
    Nul,
    /// A `\uD800`–`\uDFFF` escape without its pair.
    LoneSurrogate,
}

/// How many bytes at the start of `s` a string takes as they are: up to the first `"`, `\\` or
/// control character (or all of them). Sixteen bytes at a time with SSE2 where there is SSE2.
#[inline]
pub(crate) fn string_run(s: &[u8]) -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        let mut at = 0;
        // SAFETY: SSE2 is part of x86_64; every load reads 16 bytes inside `s`
        unsafe {
            let (quote, backslash, control) =
                (_mm_set1_epi8(b'"' as i8), _mm_set1_epi8(b'\\' as i8), _mm_set1_epi8(0x1f));
            while at + 16 <= s.len() {
                let v = _mm_loadu_si128(s.as_ptr().add(at) as *const __m128i);
                // a byte ≤ 0x1f is its own unsigned minimum with 0x1f
                let hits = _mm_or_si128(
                    _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash)),
                    _mm_cmpeq_epi8(_mm_min_epu8(v, control), v),
                );
                let mask = _mm_movemask_epi8(hits) as u32;
                if mask != 0 {
                    return at + mask.trailing_zeros() as usize;
                }
                at += 16;
            }
        }
        at + s[at..].iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20).unwrap_or(s.len() - at)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        s.iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20).unwrap_or(s.len())
    }
}

/// The open containers, innermost last: the first 64 levels in a bit set (no allocation for
/// the usual depths), deeper ones in a vector.
#[derive(Default)]
struct Nesting {
    /// Bit i: level i is an object.
    objects: u64,
    depth: usize,
    deeper: Vec<u8>,
}

impl Nesting {
    #[inline]
    fn push(&mut self, open: u8) {
        if self.depth < 64 {
            let bit = 1u64 << self.depth;
            self.objects = if open == b'{' { self.objects | bit } else { self.objects & !bit };
        } else {
            self.deeper.push(open);
        }
        self.depth += 1;
    }

    #[inline]
    fn last(&self) -> Option<u8> {
        match self.depth {
            0 => None,
            d if d <= 64 => Some(if self.objects >> (d - 1) & 1 == 1 { b'{' } else { b'[' }),
            _ => self.deeper.last().copied(),
        }
    }

    #[inline]
    fn pop(&mut self) {
        if self.depth > 64 {
            self.deeper.pop();
        }
        self.depth -= 1;
    }
}

struct Scanner<'a> {
    s: &'a [u8],
    pos: usize,
}

impl<'a> Scanner<'a> {
    #[cold]
    #[inline(never)]
    fn err<T>(&self, message: impl Into<String>) -> Result<T, JsonError> {
        Err(JsonError { offset: self.pos, message: message.into() })
    }

    #[cold]
    #[inline(never)]
    fn unexpected<T>(&self, expected: &str) -> Result<T, JsonError> {
        match self.s.get(self.pos) {
            None => self.err(format!("expected {expected}, found end of input")),
            Some(&b) => {
                let ch = std::str::from_utf8(&self.s[self.pos..]).ok().and_then(|t| t.chars().next());
                let shown = ch.map(|c| c.to_string()).unwrap_or_else(|| format!("\\x{b:02x}"));
                self.err(format!("expected {expected}, found \"{shown}\""))
            }
        }
    }

    #[inline]
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.s.get(self.pos) {
            self.pos += 1;
        }
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn literal(&mut self, word: &[u8], kind: Kind) -> Result<Kind, JsonError> {
        if self.s[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(kind)
        } else {
            self.unexpected("a JSON value")
        }
    }

    /// A string starting at the opening quote; returns whether it has escapes. The usual
    /// strings are scanned here; anything else (a `\\u` escape, an error) by
    /// [`Self::string_checked`].
    #[inline(always)]
    fn string(&mut self) -> Result<bool, JsonError> {
        debug_assert_eq!(self.peek(), Some(b'"'));
        let s = self.s;
        let mut at = self.pos + 1;
        let mut escaped = false;
        loop {
            at += string_run(&s[at..]);
            match s.get(at) {
                Some(b'"') => {
                    self.pos = at + 1;
                    return Ok(escaped);
                }
                Some(b'\\')
                    if matches!(s.get(at + 1), Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't')) =>
                {
                    escaped = true;
                    at += 2;
                }
                _ => return self.string_checked(),
            }
        }
    }

    /// [`Self::string`] byte by byte, every escape and error included.
    #[cold]
    #[inline(never)]
    fn string_checked(&mut self) -> Result<bool, JsonError> {
        debug_assert_eq!(self.peek(), Some(b'"'));
        self.pos += 1;
        let mut escaped = false;
        loop {
            // Fast scan to the next byte that needs a look.
            self.pos += string_run(&self.s[self.pos..]);
            match self.peek() {
                None => return self.err("unterminated string"),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(escaped);
                }
                Some(b'\\') => {
                    escaped = true;
                    match self.s.get(self.pos + 1) {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.pos += 2,
                        Some(b'u') => {
                            let hex = self.s.get(self.pos + 2..self.pos + 6);
                            if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                                self.pos += 2;
                                return self.err("\"\\u\" must be followed by four hexadecimal digits");
                            }
                            self.pos += 6;
                        }
                        _ => {
                            self.pos += 1;
                            return self.err("invalid escape sequence in string");
                        }
                    }
                }
                Some(b) => return self.err(format!("character with value 0x{b:02x} must be escaped")),
            }
        }
    }

    fn number(&mut self) -> Result<Kind, JsonError> {
        let s = self.s;
        let mut p = self.pos;
        if s.get(p) == Some(&b'-') {
            p += 1;
        }
        match s.get(p) {
            Some(b'0') => p += 1,
            Some(b'1'..=b'9') => {
                while s.get(p).is_some_and(u8::is_ascii_digit) {
                    p += 1;
                }
            }
            _ => {
                self.pos = p;
                return self.unexpected("a digit");
            }
        }
        if s.get(p) == Some(&b'.') {
            p += 1;
            if !s.get(p).is_some_and(u8::is_ascii_digit) {
                self.pos = p;
                return self.unexpected("a digit after the decimal point");
            }
            while s.get(p).is_some_and(u8::is_ascii_digit) {
                p += 1;
            }
        }
        if let Some(b'e' | b'E') = s.get(p) {
            p += 1;
            if let Some(b'+' | b'-') = s.get(p) {
                p += 1;
            }
            if !s.get(p).is_some_and(u8::is_ascii_digit) {
                self.pos = p;
                return self.unexpected("a digit in the exponent");
            }
            while s.get(p).is_some_and(u8::is_ascii_digit) {
                p += 1;
            }
        }
        self.pos = p;
        Ok(Kind::Number)
    }

    /// A scalar at the current position (after white space).
    fn scalar(&mut self) -> Result<Kind, JsonError> {
        match self.peek() {
            Some(b'"') => Ok(Kind::String { escaped: self.string()? }),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b't') => self.literal(b"true", Kind::Bool(true)),
            Some(b'f') => self.literal(b"false", Kind::Bool(false)),
            Some(b'n') => self.literal(b"null", Kind::Null),
            _ => self.unexpected("a JSON value"),
        }
    }

    /// Any value at the current position (after white space); containers are walked with an
    /// explicit stack. Returns the value's span.
    #[inline(always)]
    fn value(&mut self) -> Result<Value<'a>, JsonError> {
        let start = self.pos;
        let kind = match self.peek() {
            Some(b'"') => Kind::String { escaped: self.string()? },
            Some(b'0'..=b'9' | b'-') => self.number()?,
            Some(open @ (b'{' | b'[')) => {
                self.container(open)?;
                if open == b'{' {
                    Kind::Object
                } else {
                    Kind::Array
                }
            }
            _ => self.scalar()?,
        };
        Ok(Value { kind, raw: &self.s[start..self.pos] })
    }

    fn container(&mut self, open: u8) -> Result<(), JsonError> {
        #[derive(PartialEq)]
        enum State {
            ValueOrClose,
            Value,
            CommaOrClose,
        }
        let mut stack = Nesting::default();
        stack.push(open);
        self.pos += 1;
        let mut state = State::ValueOrClose;
        while let Some(top) = stack.last() {
            self.ws();
            let close = if top == b'{' { b'}' } else { b']' };
            if state != State::Value && self.peek() == Some(close) {
                self.pos += 1;
                stack.pop();
                state = State::CommaOrClose;
                continue;
            }
            match state {
                State::CommaOrClose => {
                    if self.peek() == Some(b',') {
                        self.pos += 1;
                        state = State::Value;
                    } else {
                        return self.unexpected(if top == b'{' { "\",\" or \"}\"" } else { "\",\" or \"]\"" });
                    }
                }
                State::ValueOrClose | State::Value => {
                    if top == b'{' {
                        if self.peek() != Some(b'"') {
                            return self.unexpected("a string (an object key)");
                        }
                        self.string()?;
                        self.ws();
                        if self.peek() != Some(b':') {
                            return self.unexpected("\":\"");
                        }
                        self.pos += 1;
                        self.ws();
                    }
                    match self.peek() {
                        Some(nested @ (b'{' | b'[')) => {
                            stack.push(nested);
                            self.pos += 1;
                            state = State::ValueOrClose;
                        }
                        _ => {
                            self.scalar()?;
                            state = State::CommaOrClose;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn end(&mut self) -> Result<(), JsonError> {
        self.ws();
        if self.pos < self.s.len() {
            return self.unexpected("end of input");
        }
        Ok(())
    }
}

/// Whether the JSON text `raw` (valid JSON) nests containers deeper than `limit`.
pub fn nests_deeper_than(raw: &[u8], limit: usize) -> bool {
    let (mut depth, mut at) = (0usize, 0);
    while at < raw.len() {
        match raw[at] {
            b'"' => {
                // to the closing quote, over escapes
                at += 1;
                loop {
                    at += string_run(&raw[at..]);
                    match raw.get(at) {
                        Some(b'\\') => at += 2,
                        _ => break,
                    }
                }
            }
            b'{' | b'[' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
        at += 1;
    }
    false
}

/// Validates `text` as one JSON value (white space around it allowed) and returns its span.
pub fn parse_value(text: &[u8]) -> Result<Value<'_>, JsonError> {
    let mut sc = Scanner { s: text, pos: 0 };
    sc.ws();
    let v = sc.value()?;
    sc.end()?;
    Ok(v)
}

/// Validates `text` as a JSON object and calls `member(key, value)` for each member in order.
/// `key` is the raw key (without quotes) and whether it has escapes. A text that is valid JSON
/// but not an object returns `Ok(Some(kind))` without calling `member`.
pub fn parse_object<'a>(
    text: &'a [u8],
    mut member: impl FnMut(&'a [u8], bool, Value<'a>),
) -> Result<Option<Kind>, JsonError> {
    let mut sc = Scanner { s: text, pos: 0 };
    sc.ws();
    if sc.peek() != Some(b'{') {
        let v = sc.value()?;
        sc.end()?;
        return Ok(Some(v.kind));
    }
    sc.pos += 1;
    sc.ws();
    if sc.peek() == Some(b'}') {
        sc.pos += 1;
        sc.end()?;
        return Ok(None);
    }
    loop {
        // white space is looked for only where the next byte is not what is expected
        if sc.peek() != Some(b'"') {
            sc.ws();
            if sc.peek() != Some(b'"') {
                return sc.unexpected("a string (an object key)");
            }
        }
        let key_start = sc.pos + 1;
        let escaped = sc.string()?;
        let key = &text[key_start..sc.pos - 1];
        if sc.peek() != Some(b':') {
            sc.ws();
            if sc.peek() != Some(b':') {
                return sc.unexpected("\":\"");
            }
        }
        sc.pos += 1;
        sc.ws();
        let v = sc.value()?;
        member(key, escaped, v);
        let mut next = sc.peek();
        if !matches!(next, Some(b',' | b'}')) {
            sc.ws();
            next = sc.peek();
        }
        match next {
            Some(b',') => sc.pos += 1,
            Some(b'}') => {
                sc.pos += 1;
                sc.end()?;
                return Ok(None);
            }
            _ => return sc.unexpected("\",\" or \"}\""),
        }
    }
}

/// The elements of an already validated array, in order.
pub fn array_elements(raw: &[u8]) -> impl Iterator<Item = Value<'_>> {
    let mut sc = Scanner { s: raw, pos: 1 };
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        sc.ws();
        if matches!(sc.peek(), Some(b']') | None) {
            done = true;
            return None;
        }
        let v = sc.value().ok()?;
        sc.ws();
        if sc.peek() == Some(b',') {
            sc.pos += 1;
        } else {
            done = true;
        }
        Some(v)
    })
}

/// Decodes the inside of a JSON string (between its quotes, as the scanner validated it) into
/// UTF-8 bytes. The text between escapes is copied sixteen bytes at a time with SSE2.
pub fn unescape_into(inner: &[u8], out: &mut Vec<u8>) -> Result<(), UnescapeError> {
    let start = out.len();
    // the decoded text is never longer than its escaped form; 16 bytes spare for the last copy
    out.reserve(inner.len() + 16);
    let mut len = start;
    let mut i = 0;
    // SAFETY: every write is at `len` < start + i + 16 ≤ start + inner.len() + 16, inside the
    // capacity reserved above (each escape writes at most as many bytes as it reads), and only
    // bytes already written are made part of the vector.
    unsafe {
        let dst = out.as_mut_ptr();
        loop {
            let run = copy_to_backslash(&inner[i..], dst.add(len));
            i += run;
            len += run;
            if i >= inner.len() {
                break;
            }
            let e = inner[i + 1];
            i += 2;
            let simple = match e {
                b'"' => b'"',
                b'\\' => b'\\',
                b'/' => b'/',
                b'b' => 0x08,
                b'f' => 0x0c,
                b'n' => b'\n',
                b'r' => b'\r',
                b't' => b'\t',
                _ => {
                    let hex = |at: usize| {
                        inner[at..at + 4]
                            .iter()
                            .fold(0u32, |n, &d| n * 16 + (d as char).to_digit(16).expect("hex digit"))
                    };
                    let mut cp = hex(i);
                    i += 4;
                    if cp == 0 {
                        out.set_len(start);
                        return Err(UnescapeError::Nul);
                    }
                    if (0xD800..0xDC00).contains(&cp) {
                        let lo = (inner.get(i..i + 2) == Some(b"\\u") && inner.len() >= i + 6).then(|| hex(i + 2));
                        match lo {
                            Some(lo @ 0xDC00..0xE000) => {
                                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                                i += 6;
                            }
                            _ => {
                                out.set_len(start);
                                return Err(UnescapeError::LoneSurrogate);
                            }
                        }
                    } else if (0xDC00..0xE000).contains(&cp) {
                        out.set_len(start);
                        return Err(UnescapeError::LoneSurrogate);
                    }
                    let c = char::from_u32(cp).expect("surrogates are handled above");
                    let mut buf = [0u8; 4];
                    let bytes = c.encode_utf8(&mut buf).as_bytes();
                    std::ptr::copy_nonoverlapping(bytes.as_ptr(), dst.add(len), bytes.len());
                    len += bytes.len();
                    continue;
                }
            };
            *dst.add(len) = simple;
            len += 1;
        }
        out.set_len(len);
    }
    Ok(())
}

/// Copies `s` up to its first backslash (or all of it) to `dst`; how many bytes that is.
///
/// # Safety
/// `dst` must be valid for writes of `s.len() + 16` bytes.
#[inline(always)]
unsafe fn copy_to_backslash(s: &[u8], dst: *mut u8) -> usize {
    let mut at = 0;
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        let backslash = _mm_set1_epi8(b'\\' as i8);
        while at + 16 <= s.len() {
            let v = _mm_loadu_si128(s.as_ptr().add(at) as *const __m128i);
            _mm_storeu_si128(dst.add(at) as *mut __m128i, v);
            let mask = _mm_movemask_epi8(_mm_cmpeq_epi8(v, backslash)) as u32;
            if mask != 0 {
                return at + mask.trailing_zeros() as usize;
            }
            at += 16;
        }
    }
    while at < s.len() && s[at] != b'\\' {
        *dst.add(at) = s[at];
        at += 1;
    }
    at
}

#[cfg(test)]
#[path = "json_tests.rs"]
mod tests;
