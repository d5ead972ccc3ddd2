//! Fixtures for the end-to-end tests: the private cluster started by `make start`
//! (127.0.0.1:54329 unless PGHOST/PGPORT say otherwise), one fresh database per test, and
//! the `pg-ingest` binary as installed by `make install`.

use std::env;
use std::path::PathBuf;

use postgres::{Client, NoTls};

/// Where the cluster is: PGHOST/PGPORT/PGUSER, defaulting to the private cluster.
pub fn server() -> (String, u16, String) {
    let host = env::var("PGHOST").unwrap_or_else(|_| "127.0.0.1".to_owned());
    let port = env::var("PGPORT").ok().and_then(|p| p.parse().ok()).unwrap_or(54329);
    let user = env::var("PGUSER").unwrap_or_else(|_| "postgres".to_owned());
    (host, port, user)
}

/// A key=value DSN for `database`.
pub fn dsn(database: &str) -> String {
    let (host, port, user) = server();
    format!("host={host} port={port} user={user} dbname={database}")
}

pub fn connect(database: &str) -> Client {
    let dsn = dsn(database);
    Client::connect(&dsn, NoTls)
        .unwrap_or_else(|e| panic!("cannot connect with '{dsn}': {e} (is the private cluster running? `make start`)"))
}

/// A database of its own for one test, dropped and created anew, with pg_ingest created in
/// it unless asked otherwise.
pub struct TestDb {
    pub name: String,
    pub client: Client,
}

impl TestDb {
    pub fn new(name: &str) -> Self {
        Self::create(name, true)
    }

    pub fn without_extension(name: &str) -> Self {
        Self::create(name, false)
    }

    fn create(name: &str, with_extension: bool) -> Self {
        let name = format!("pgi_e2e_{name}");
        let mut admin = connect("postgres");
        admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).unwrap();
        admin.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
        let mut client = connect(&name);
        if with_extension {
            client.batch_execute("CREATE EXTENSION pg_ingest").unwrap();
        }
        Self { name, client }
    }

    pub fn dsn(&self) -> String {
        dsn(&self.name)
    }

    /// The `pg-ingest` binary, with the libpq environment pointing at this database.
    pub fn cli(&self) -> assert_cmd::Command {
        let (host, port, user) = server();
        let mut cmd = assert_cmd::Command::new(pg_ingest_bin());
        cmd.env_remove("DATABASE_URL")
            .env("PGHOST", host)
            .env("PGPORT", port.to_string())
            .env("PGUSER", user)
            .env("PGDATABASE", &self.name);
        cmd
    }
}

/// The client binary: `PG_INGEST_BIN` if set, else `pg-ingest` from PATH (`make install`).
pub fn pg_ingest_bin() -> PathBuf {
    if let Ok(p) = env::var("PG_INGEST_BIN") {
        return PathBuf::from(p);
    }
    let path = env::var_os("PATH").unwrap_or_default();
    env::split_paths(&path)
        .map(|dir| dir.join("pg-ingest"))
        .find(|p| p.is_file())
        .expect("pg-ingest is not on PATH: run `make install` (or set PG_INGEST_BIN)")
}
