//! Compiles `src/ingest/copy_state.c` and `src/ingest/citus_copy.c` against the server headers
//! of the PostgreSQL version being built for: COPY's own state (`CopyFromStateData`) is opaque
//! in pgrx's bindings, and pg_ingest reads two of its fields to say which line of the file an
//! error belongs to; the Citus loop uses the executor's macros.

use pgrx_pg_config::{PgConfig, Pgrx};

/// The PostgreSQL majors pg_ingest is built and tested for.
const SUPPORTED: [u32; 3] = [15, 17, 18];

fn main() {
    println!("cargo:rerun-if-changed=src/ingest/copy_state.c");
    println!("cargo:rerun-if-changed=src/ingest/citus_copy.c");
    println!("cargo:rerun-if-env-changed=PGRX_PG_CONFIG_PATH");
    let major = SUPPORTED
        .into_iter()
        .find(|v| std::env::var(format!("CARGO_FEATURE_PG{v}")).is_ok())
        .expect("one of the pg15, pg17, pg18 features must be enabled");
    // cfg aliases for src/pg_compat.rs, the one place that tests the major
    for (alias, before) in [("pre_pg16", 16), ("pre_pg17", 17), ("pre_pg18", 18)] {
        println!("cargo::rustc-check-cfg=cfg({alias})");
        if major < before {
            println!("cargo::rustc-cfg={alias}");
        }
    }
    let pg_config = if PgConfig::is_in_environment() {
        PgConfig::from_env()
    } else {
        Pgrx::from_config().and_then(|p| p.get(&format!("pg{major}")))
    }
    .unwrap_or_else(|e| panic!("no pg_config for pg{major} (run `make deps`): {e}"));
    let include = pg_config.includedir_server().expect("pg_config --includedir-server");
    cc::Build::new()
        .file("src/ingest/copy_state.c")
        .file("src/ingest/citus_copy.c")
        .include(include)
        .warnings(false)
        .compile("pg_ingest_copy_state");
}
