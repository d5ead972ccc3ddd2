#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    #[pg_test]
    fn version_matches_the_crate() {
        let v = Spi::get_one::<String>("SELECT pg_ingest_version()").unwrap();
        assert_eq!(v.as_deref(), Some(env!("CARGO_PKG_VERSION")));
    }

    #[pg_test]
    fn bootstrap_creates_the_ingest_schema_owned_by_the_extension() {
        let owned = Spi::get_one::<bool>(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace n JOIN pg_depend d ON d.objid = n.oid \
             JOIN pg_extension e ON e.oid = d.refobjid \
             WHERE n.nspname = 'ingest' AND e.extname = 'pg_ingest' AND d.deptype = 'e')",
        )
        .unwrap();
        assert_eq!(owned, Some(true));
    }
}
