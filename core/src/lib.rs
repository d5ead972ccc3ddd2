//! The part of pg_ingest that needs no PostgreSQL: it is shared by the extension and the
//! `pg-ingest` client and tested with plain `cargo test`.

// A RowError (SQLSTATE, message, line, column, raw line) is what a bad line costs, and the
// encoder returns it by value on purpose: bad lines are rare, and boxing would cost every one.
#![allow(clippy::result_large_err)]

pub mod arrays;
pub mod convert;
pub mod encode;
pub mod error;
mod fields;
pub mod framing;
pub mod input;
pub mod json;
pub mod jsonb;
pub mod mapping;
pub mod numeric;
pub mod pipeline;
pub mod report;
pub mod sample;
pub mod temporal;

/// The version every pg_ingest component reports.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
