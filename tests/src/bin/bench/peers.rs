//! The client-side peers, run beside pg_ingest on the same files: DuckDB `read_json` and
//! polars `scan_ndjson`, written through ADBC's PostgreSQL driver (`bench/peers.py`, in the
//! virtual environment `scripts/bench_peers.sh` makes). Before they are timed, each is checked
//! to leave exactly the rows ingest_jsonl leaves.

use std::path::PathBuf;
use std::process::Command;

use pg_ingest_tests::{connect, server};

/// The peers' names in the report, and the tool `peers.py` runs.
pub const PEERS: [(&str, &str); 2] = [("DuckDB read_json → ADBC", "duckdb"), ("polars scan_ndjson → ADBC", "polars")];

pub struct Peers {
    /// The virtual environment's python, when it could be made.
    python: Option<PathBuf>,
}

impl Peers {
    /// From PG_INGEST_BENCH_PYTHON (`make bench` sets it); without it, the peers are not run.
    pub fn from_env() -> Self {
        let python = std::env::var_os("PG_INGEST_BENCH_PYTHON").map(PathBuf::from).filter(|p| p.exists());
        if python.is_none() {
            eprintln!("the client-side peers are not run: no PG_INGEST_BENCH_PYTHON (scripts/bench_peers.sh)");
        }
        Self { python }
    }

    pub fn available(&self) -> bool {
        self.python.is_some()
    }

    /// Loads `file` (a `kind` set: chat or events) into `table` of `db` with `tool`; the seconds
    /// it took as the peer measured them (reading the file to the commit).
    pub fn run(&self, tool: &str, kind: &str, file: &str, db: &str, table: &str) -> f64 {
        let python = self.python.as_ref().expect("peers available");
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../bench/peers.py");
        let (host, port, user) = server();
        let uri = format!("postgresql://{user}@{host}:{port}/{db}");
        let out = Command::new(python).arg(&script).args([tool, kind, file, &uri, table]).output().unwrap();
        assert!(out.status.success(), "{tool}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or_else(|e| panic!("{tool}: {e}"))
    }

    /// Each peer loads `file` once into `table` (emptied first) and must leave the rows of
    /// `reference`, a copy of what ingest_jsonl loaded: the same multiset of rows.
    pub fn verify(&self, kind: &str, file: &str, db: &str, table: &str, reference: &str) {
        let mut c = connect(db);
        for (name, tool) in PEERS {
            c.batch_execute(&format!("TRUNCATE {table}")).unwrap();
            self.run(tool, kind, file, db, table);
            let differ: i64 = c
                .query_one(
                    &format!(
                        "SELECT count(*) FROM ((TABLE {table} EXCEPT ALL TABLE {reference}) \
                         UNION ALL (TABLE {reference} EXCEPT ALL TABLE {table})) d"
                    ),
                    &[],
                )
                .unwrap()
                .get(0);
            assert_eq!(differ, 0, "{name} left rows that differ from ingest_jsonl's");
            eprintln!("{name}: the same rows as ingest_jsonl");
        }
        c.batch_execute(&format!("TRUNCATE {table}")).unwrap();
    }
}
