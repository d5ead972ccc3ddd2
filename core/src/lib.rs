//! The part of pg_ingest that needs no PostgreSQL: it is shared by the extension and the
//! `pg-ingest` client and tested with plain `cargo test`.

pub mod convert;
pub mod encode;
pub mod error;
pub mod framing;
pub mod json;
pub mod mapping;
pub mod pipeline;
pub mod report;
pub mod sample;

/// The version every pg_ingest component reports.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
