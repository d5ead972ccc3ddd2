//! Citus: a distributed or reference table is written through Citus's own COPY routing
//! (`citus_copy.c`): each row COPY reads from the load's feed goes to Citus's
//! `CitusCopyDestReceiver`, which sends it to its shard over one connection per placement, as
//! Citus's `COPY` does (COPY's executor would write into the coordinator's shell table, where
//! no query sees the rows). Where those entry points cannot be reached (a Citus other than
//! 13.x; PostgreSQL 16 and later, where PGXS builds Citus with its internal symbols hidden;
//! append- and range-distributed tables), the same COPY's rows go through an
//! `INSERT … SELECT` from them, which Citus plans and routes ([`crate::ingest::copy`]).
//! Either way every row is read and checked by the same reader, so skip mode, writers and
//! every way in work alike.

use pgrx::pg_sys::{self, Oid};
use pgrx::prelude::*;

use crate::identity::with_safe_search_path;

/// Whether Citus manages the table (distributed, reference, or a Citus local table).
pub fn manages(table: Oid) -> bool {
    with_safe_search_path(|| {
        let present =
            Spi::get_one::<bool>("SELECT pg_catalog.to_regclass('pg_catalog.pg_dist_partition') IS NOT NULL")?;
        if present != Some(true) {
            return Ok(Some(false));
        }
        Spi::get_one_with_args::<bool>(
            "SELECT EXISTS (SELECT FROM pg_catalog.pg_dist_partition WHERE logicalrelid OPERATOR(pg_catalog.=) $1)",
            &[table.into()],
        )
    })
    .unwrap_or_else(|e| crate::ledger::spi_error(e))
    .unwrap_or(false)
}

unsafe extern "C" {
    // src/ingest/citus_copy.c
    fn pg_ingest_citus_lookup() -> bool;
}

/// The Citus versions whose `CreateCitusCopyDestReceiver` has the signature `citus_copy.c`
/// calls (Citus 13.1 added `trackQueryCounters`).
const ROUTED_VERSIONS: &[&str] = &["13."];

/// How rows reach a Citus table through Citus's COPY routing: the distribution column's index
/// in the table's tuple descriptor (-1: none, as for reference tables). `None`: this Citus is
/// not one whose entry points are known here.
pub fn route(table: Oid) -> Option<i32> {
    let found = with_safe_search_path(|| {
        let version = Spi::get_one::<String>(
            "SELECT extversion::pg_catalog.text FROM pg_catalog.pg_extension WHERE extname OPERATOR(pg_catalog.=) 'citus'",
        )?;
        if !version.is_some_and(|v| ROUTED_VERSIONS.iter().any(|p| v.starts_with(p))) {
            return Ok(None);
        }
        // hash-distributed, and tables without a distribution column (reference, single
        // shard, Citus local); append- and range-distributed tables are not routed
        let method = Spi::get_one_with_args::<String>(
            "SELECT (SELECT partmethod::pg_catalog.text FROM pg_catalog.pg_dist_partition \
              WHERE logicalrelid OPERATOR(pg_catalog.=) $1)",
            &[table.into()],
        )?;
        if !matches!(method.as_deref(), Some("h" | "n")) {
            return Ok(None);
        }
        // NULL for a table without a distribution column (a reference table)
        let attnum = Spi::get_one_with_args::<i16>(
            "SELECT (SELECT a.attnum FROM pg_catalog.pg_dist_partition p JOIN pg_catalog.pg_attribute a \
               ON a.attrelid OPERATOR(pg_catalog.=) p.logicalrelid \
              AND a.attname OPERATOR(pg_catalog.=) pg_catalog.column_to_column_name(p.logicalrelid, p.partkey) \
             WHERE p.logicalrelid OPERATOR(pg_catalog.=) $1 AND p.partkey IS NOT NULL)",
            &[table.into()],
        )?;
        Ok(Some(attnum.map_or(-1, |a| a as i32 - 1)))
    })
    .unwrap_or_else(|e| crate::ledger::spi_error(e));
    found.filter(|_| unsafe { pg_sys::ffi::pg_guard_ffi_boundary(|| pg_ingest_citus_lookup()) })
}
