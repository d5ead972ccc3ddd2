//! Compiles `src/ingest/copy_state.c` against the server headers of the PostgreSQL version
//! being built for: COPY's own state (`CopyFromStateData`) is opaque in pgrx's bindings, and
//! pg_ingest reads two of its fields to say which line of the file an error belongs to.

use pgrx_pg_config::{PgConfig, Pgrx};

fn main() {
    println!("cargo:rerun-if-changed=src/ingest/copy_state.c");
    println!("cargo:rerun-if-env-changed=PGRX_PG_CONFIG_PATH");
    let major = (13..=18)
        .find(|v| std::env::var(format!("CARGO_FEATURE_PG{v}")).is_ok())
        .expect("one of the pg13..pg18 features must be enabled");
    let pg_config = if PgConfig::is_in_environment() {
        PgConfig::from_env()
    } else {
        Pgrx::from_config().and_then(|p| p.get(&format!("pg{major}")))
    }
    .unwrap_or_else(|e| panic!("no pg_config for pg{major} (run `make deps`): {e}"));
    let include = pg_config.includedir_server().expect("pg_config --includedir-server");
    cc::Build::new().file("src/ingest/copy_state.c").include(include).warnings(false).compile("pg_ingest_copy_state");
}
