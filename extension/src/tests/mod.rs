//! `#[pg_test]`s: behaviour that needs a backend. Each runs in a transaction that is rolled back.
//! Every file holds one inline `#[pg_schema] mod tests`, as pgrx requires.

mod bootstrap;
mod ingest;
