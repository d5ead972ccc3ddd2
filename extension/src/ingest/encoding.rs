//! The file's bytes are UTF-8 whatever the session's `client_encoding`: what is stored must be
//! what a UTF8 session would store. Binary COPY's receive functions, and the send functions
//! that make values for it, convert text from and to the client encoding; for a load they
//! run with no conversion (COPY's through `copy_state.c`, ours through [`Unconverted`]), and
//! the database itself must be UTF8 (or SQL_ASCII, which stores bytes as they come).

use pgrx::pg_sys;
use pgrx::PgSqlErrorCode;

use crate::error::IngestError;

/// Whether the session's client encoding differs from the database's.
pub fn client_differs() -> bool {
    unsafe { pg_sys::pg_get_client_encoding() != pg_sys::GetDatabaseEncoding() }
}

/// Refuses a database whose encoding is neither UTF8 nor SQL_ASCII: the file's UTF-8 would
/// need converting value by value, which pg_ingest does not do.
pub fn check_database() {
    let encoding = unsafe { pg_sys::GetDatabaseEncoding() } as u32;
    if encoding == pg_sys::pg_enc::PG_UTF8 || encoding == pg_sys::pg_enc::PG_SQL_ASCII {
        return;
    }
    let name = unsafe { std::ffi::CStr::from_ptr(pg_sys::GetDatabaseEncodingName()).to_string_lossy().into_owned() };
    IngestError::new(
        PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
        format!("ingest_jsonl needs a UTF8 database, and this one's encoding is {name}"),
    )
    .detail("JSON-lines files are UTF-8; pg_ingest stores their text as it is.")
    .hint("Load into a database created with ENCODING 'UTF8'.")
    .raise()
}

/// While it lives, the session's client encoding is the database's: send and receive
/// functions convert nothing. Restored when dropped, an ERROR unwinding included.
pub struct Unconverted(Option<i32>);

impl Unconverted {
    pub fn enter() -> Self {
        unsafe {
            let (client, database) = (pg_sys::pg_get_client_encoding(), pg_sys::GetDatabaseEncoding());
            if client == database {
                return Self(None);
            }
            pg_sys::SetClientEncoding(database);
            Self(Some(client))
        }
    }
}

impl Drop for Unconverted {
    fn drop(&mut self) {
        if let Some(client) = self.0 {
            unsafe { pg_sys::SetClientEncoding(client) };
        }
    }
}
