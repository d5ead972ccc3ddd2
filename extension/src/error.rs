//! Errors pg_ingest raises: one type, mapped once to a PostgreSQL ERROR with its SQLSTATE.

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{PgLogLevel, PgSqlErrorCode};

use pg_ingest_core::error::RowError;

/// A SQLSTATE from its five characters (PostgreSQL's `MAKE_SQLSTATE`).
pub fn sqlstate(code: &str) -> PgSqlErrorCode {
    let b = code.as_bytes();
    let six = |i: usize| ((b.get(i).copied().unwrap_or(b'0').wrapping_sub(b'0')) & 0x3F) as i32;
    PgSqlErrorCode::from(six(0) + (six(1) << 6) + (six(2) << 12) + (six(3) << 18) + (six(4) << 24))
}

/// The five characters of a SQLSTATE (the inverse of [`sqlstate`]).
pub fn sqlstate_text(code: PgSqlErrorCode) -> String {
    sqlstate_of(code as i32)
}

/// The five characters of an SQLSTATE as PostgreSQL packs it in an int (`MAKE_SQLSTATE`).
pub fn sqlstate_of(n: i32) -> String {
    (0..5).map(|i| (((n >> (6 * i)) & 0x3F) as u8 + b'0') as char).collect()
}

#[derive(Debug, Clone)]
pub struct IngestError {
    pub code: PgSqlErrorCode,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
}

impl IngestError {
    pub fn new(code: PgSqlErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), detail: None, hint: None }
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// A bad line of `file`: the message names the file, line and column.
    pub fn from_row(file: &str, e: &RowError) -> Self {
        let mut err = Self::new(sqlstate(e.sqlstate), format!("{file}: {}: {}", e.location(), e.message));
        err.detail = e.detail.clone();
        err
    }

    /// Raises it as an ERROR.
    pub fn raise(self) -> ! {
        let mut report = ErrorReport::new(self.code, self.message, "ingest_jsonl");
        if let Some(d) = self.detail {
            report = report.set_detail(d);
        }
        if let Some(h) = self.hint {
            report = report.set_hint(h);
        }
        report.report(PgLogLevel::ERROR);
        unreachable!("an ERROR does not return")
    }
}

/// A SQLSTATE's five characters with a static lifetime, for [`RowError`] records.
pub fn static_sqlstate(code: &str) -> &'static str {
    use std::collections::HashSet;
    use std::sync::{Mutex, OnceLock};
    static CODES: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut codes = CODES.get_or_init(Default::default).lock().unwrap();
    match codes.get(code) {
        Some(c) => c,
        None => {
            let leaked: &'static str = Box::leak(code.to_owned().into_boxed_str());
            codes.insert(leaked);
            leaked
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_map_to_pgrx_codes() {
        assert_eq!(sqlstate("22P02"), PgSqlErrorCode::ERRCODE_INVALID_TEXT_REPRESENTATION);
        assert_eq!(sqlstate("42501"), PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE);
        assert_eq!(sqlstate("58P01"), PgSqlErrorCode::ERRCODE_UNDEFINED_FILE);
        assert_eq!(sqlstate("23502"), PgSqlErrorCode::ERRCODE_NOT_NULL_VIOLATION);
    }
}
