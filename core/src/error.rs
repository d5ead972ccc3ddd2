//! The one error record for a bad line, used by the extension and the client alike.

use std::fmt;

/// SQLSTATE codes pg_ingest reports (PostgreSQL's `errcodes.txt`).
pub mod sqlstate {
    pub const INVALID_TEXT_REPRESENTATION: &str = "22P02";
    pub const UNTRANSLATABLE_CHARACTER: &str = "22P05";
    pub const CHARACTER_NOT_IN_REPERTOIRE: &str = "22021";
    pub const NUMERIC_VALUE_OUT_OF_RANGE: &str = "22003";
    pub const DATETIME_FIELD_OVERFLOW: &str = "22008";
    pub const PROGRAM_LIMIT_EXCEEDED: &str = "54000";
    pub const INVALID_PARAMETER_VALUE: &str = "22023";
    pub const IO_ERROR: &str = "58030";
    pub const INTERNAL_ERROR: &str = "XX000";
    pub const UNDEFINED_FILE: &str = "58P01";
    pub const INSUFFICIENT_PRIVILEGE: &str = "42501";
}

/// Why one line could not become a row: where (line, byte offset, column) and why
/// (SQLSTATE, message, detail), as PostgreSQL would say it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    /// 1-based line number in the file.
    pub line: u64,
    /// Byte offset of the line's first byte in the file.
    pub offset: u64,
    /// The target column, when the error belongs to one.
    pub column: Option<String>,
    pub sqlstate: &'static str,
    pub message: String,
    pub detail: Option<String>,
    /// The line as it was in the file (lossy UTF-8), cut to a limit; kept for rejects.
    pub raw: Option<String>,
}

impl RowError {
    pub fn new(sqlstate: &'static str, message: impl Into<String>) -> Self {
        Self { line: 0, offset: 0, column: None, sqlstate, message: message.into(), detail: None, raw: None }
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn at(mut self, line: u64, offset: u64) -> Self {
        self.line = line;
        self.offset = offset;
        self
    }

    pub fn with_raw(mut self, line: &[u8], limit: usize) -> Self {
        self.raw = Some(raw_text(line, limit));
        self
    }

    pub fn in_column(mut self, column: &str) -> Self {
        self.column = Some(column.to_owned());
        self
    }

    /// `line 17, column "age"`: where the error is, for messages.
    pub fn location(&self) -> String {
        match &self.column {
            Some(c) => format!("line {}, column \"{}\"", self.line, c),
            None => format!("line {}", self.line),
        }
    }
}

/// A line as text for people: lossy UTF-8, cut to `limit` bytes at a character boundary.
pub fn raw_text(line: &[u8], limit: usize) -> String {
    let mut end = line.len().min(limit);
    while end > 0 && end < line.len() && (line[end] & 0xC0) == 0x80 {
        end -= 1;
    }
    String::from_utf8_lossy(&line[..end]).into_owned()
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location(), self.message)?;
        if let Some(d) = &self.detail {
            write!(f, " ({d})")?;
        }
        Ok(())
    }
}

impl std::error::Error for RowError {}
