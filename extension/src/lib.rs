//! pg_ingest: JSON-lines files parsed on many threads inside the backend and written through
//! PostgreSQL's own COPY FROM machinery; query batches in dynamic background workers.

// A COPY failure (the caught error and where it happened) and a bad line's RowError are
// returned by value: they are made once per failure, not per row.
#![allow(clippy::result_large_err)]

mod alloc;
mod api;
mod batch;
mod citus;
mod copy_hook;
mod error;
mod gucs;
mod identity;
mod ingest;
mod jobs;
mod ledger;
mod pg_compat;
mod read;
mod regclass;
mod schema;

::pgrx::pg_module_magic!(name, version);

#[global_allocator]
static ALLOCATOR: alloc::Allocator = alloc::Allocator;

pgrx::extension_sql_file!("../sql/bootstrap.sql", name = "bootstrap", bootstrap);
pgrx::extension_sql_file!("../sql/ledger.sql", name = "ledger", requires = ["bootstrap"]);
pgrx::extension_sql_file!(
    "../sql/progress.sql",
    name = "progress",
    requires = ["bootstrap", schema::ingest::progress_file]
);
pgrx::extension_sql_file!(
    "../sql/jobs.sql",
    name = "jobs",
    requires = ["progress", "ledger", schema::ingest::job_worker_alive]
);

#[pgrx::pg_guard]
pub extern "C-unwind" fn _PG_init() {
    gucs::init();
    copy_hook::init();
    read::scan::init();
}

#[cfg(any(test, feature = "pg_test"))]
mod tests;

/// Required by `cargo pgrx test`: settings for its temporary cluster.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec!["max_worker_processes = 32"]
    }
}
