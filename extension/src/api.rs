//! The SQL-callable functions. They stay thin: the work is in the modules they call.

use pgrx::prelude::*;

/// The version of the pg_ingest library loaded in this backend.
#[pg_extern(immutable, parallel_safe)]
fn pg_ingest_version() -> &'static str {
    pg_ingest_core::VERSION
}
