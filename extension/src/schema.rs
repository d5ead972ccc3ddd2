//! Functions that live in schema `ingest` (beside the ledger and the views), not in the
//! extension's schema: helpers of the views rather than things users call.

#[pgrx::pg_schema]
pub mod ingest {
    use pgrx::prelude::*;

    /// The file of a running load, for the `ingest.progress` view: `NULL` once the load has
    /// ended or when the caller may not see that backend's activity.
    #[pg_extern(volatile, parallel_restricted)]
    pub fn progress_file(handle: i64, pid: i32, load_id: i64) -> Option<String> {
        crate::ingest::progress::file_of(handle, pid, load_id)
    }
}
