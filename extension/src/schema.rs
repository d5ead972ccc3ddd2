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

    /// Whether `pid` is a live pg_ingest job worker, from the postmaster's worker slots (not
    /// `pg_stat_activity`, which hides other roles' backends): what `ingest.jobs` tells a live
    /// job from one whose worker is gone by.
    #[pg_extern(volatile, parallel_restricted)]
    pub fn job_worker_alive(pid: Option<i32>) -> bool {
        pid.is_some_and(crate::jobs::worker::is_job_worker)
    }

    /// One writer's part of `ingest_jsonl(..., writers => N)`: bytes `range_start` up to
    /// `range_end` of the file, whose first line is `first_line`, loaded and recorded in
    /// `ingest.file_ranges` in the current transaction. `options` carry the load's options and
    /// what the file must still be (device, inode, size, first bytes). Called by the writers;
    /// the same permission checks as `ingest_jsonl`.
    #[pg_extern(volatile, parallel_unsafe)]
    pub fn load_range(
        path: &str,
        target: pgrx::pg_sys::Oid,
        range_start: i64,
        range_end: i64,
        first_line: i64,
        options: pgrx::JsonB,
        parent_load_id: i64,
    ) {
        crate::ingest::writers::load_range(path, target, range_start, range_end, first_line, options.0, parent_load_id)
    }

    /// For `pg-ingest load` of a client file: takes the file's lock in `target` (held to the
    /// end of the transaction) and returns what the ledger knows of it, if anything. The
    /// client then streams what is new with `COPY … FROM STDIN WITH (FORMAT …, LEDGER …)`.
    #[allow(clippy::type_complexity)]
    #[pg_extern(volatile, parallel_unsafe)]
    pub fn client_file_state(
        target: crate::regclass::Regclass,
        source: &str,
    ) -> TableIterator<
        'static,
        (
            name!(byte_offset, i64),
            name!(lines, i64),
            name!(size, i64),
            name!(device, i64),
            name!(inode, i64),
            name!(head_fingerprint, String),
            name!(tail_fingerprint, String),
            name!(load_id, i64),
        ),
    > {
        crate::identity::check_insert_before_lock(target.0);
        crate::ledger::lock_client_file(target.0, source);
        let entry = crate::ledger::client_file(target.0, source);
        crate::ledger::grant_client_load(target.0, source);
        let rows: Vec<_> = entry
            .into_iter()
            .map(|f| {
                (f.byte_offset, f.lines, f.size, f.device, f.inode, f.head_fingerprint, f.tail_fingerprint, f.load_id)
            })
            .collect();
        TableIterator::new(rows)
    }

    /// For `pg-ingest load`: records the fingerprint of the bytes before where the load in
    /// this transaction stopped (the client computes it from its file).
    #[pg_extern(volatile, parallel_unsafe)]
    pub fn client_file_tail(target: crate::regclass::Regclass, source: &str, tail_fingerprint: &str) {
        crate::identity::check_insert_before_lock(target.0);
        crate::ledger::check_client_grant(target.0, source, true);
        crate::ledger::lock_client_file(target.0, source);
        if let Some(mut f) = crate::ledger::client_file(target.0, source) {
            let name = crate::identity::with_safe_search_path(|| {
                Spi::get_one_with_args::<String>("SELECT $1::pg_catalog.regclass::pg_catalog.text", &[target.0.into()])
            })
            .ok()
            .flatten()
            .unwrap_or_default();
            f.tail_fingerprint = tail_fingerprint.to_owned();
            crate::ledger::save_client_file(target.0, &name, source, &f);
        }
    }

    pgrx::extension_sql!(
        "-- for the differential tests, not for roles: they read values through SQL\n\
         REVOKE EXECUTE ON FUNCTION ingest.datum_bytes(anyelement) FROM PUBLIC;",
        name = "datum_bytes_revoked",
        requires = [datum_bytes]
    );

    /// The bytes of a varlena value as stored (after its header, detoasted): what the
    /// differential tests compare to hold values built on the parse threads byte for byte
    /// against PostgreSQL's own input functions.
    #[pg_extern(immutable, parallel_safe, strict)]
    pub fn datum_bytes(value: pgrx::AnyElement) -> Vec<u8> {
        unsafe {
            if pgrx::pg_sys::get_typlen(value.oid()) != -1 {
                pgrx::error!("datum_bytes takes a variable-length value");
            }
            let p = pgrx::pg_sys::pg_detoast_datum(value.datum().cast_mut_ptr());
            let len = pgrx::varlena::varsize_any_exhdr(p);
            let data = pgrx::varlena::vardata_any(p) as *const u8;
            std::slice::from_raw_parts(data, len).to_vec()
        }
    }
}
