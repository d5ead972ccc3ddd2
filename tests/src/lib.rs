//! Fixtures for the end-to-end tests: the private cluster started by `make start`
//! (127.0.0.1:54329 unless PGHOST/PGPORT say otherwise; `make test PG=NN` points them at that
//! major's cluster), one fresh database per test, and the `pg-ingest` binary as installed by
//! `make install`.

pub mod citus;

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

/// The PostgreSQL major of the private cluster (scripts/test.sh exports PG_INGEST_PG_MAJOR;
/// 15 without it).
pub fn pg_major() -> String {
    env::var("PG_INGEST_PG_MAJOR").unwrap_or_else(|_| "15".to_owned())
}

/// A program of that major's PostgreSQL (pg_ctl, psql…), from PG_INGEST_PG_BIN.
pub fn pg_program(name: &str) -> PathBuf {
    PathBuf::from(env::var("PG_INGEST_PG_BIN").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".to_owned())).join(name)
}

/// The private cluster's directory (data/, server.log, tls/), from PG_INGEST_PG_DIR.
pub fn pg_dir() -> PathBuf {
    env::var_os("PG_INGEST_PG_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.pg"))
}

/// A key=value DSN for `database`.
pub fn dsn(database: &str) -> String {
    let (host, port, user) = server();
    format!("host={host} port={port} user={user} dbname={database}")
}

/// Connects to `database` as `user` (trust authentication on the private cluster), with a
/// statement_timeout so that nothing a test does can wait forever.
pub fn connect_as(database: &str, user: &str) -> Client {
    let (host, port, _) = server();
    let dsn = format!("host={host} port={port} user={user} dbname={database} options='-c statement_timeout=60s'");
    Client::connect(&dsn, NoTls).unwrap_or_else(|e| panic!("cannot connect with '{dsn}': {e}"))
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
        assert_cmd::Command::from_std(self.cli_process())
    }

    /// The same, as a process to spawn and talk to while it runs.
    pub fn cli_process(&self) -> std::process::Command {
        let (host, port, user) = server();
        let mut cmd = std::process::Command::new(pg_ingest_bin());
        cmd.env_remove("DATABASE_URL")
            .env_remove("PGSSLMODE")
            .env_remove("PGSSLROOTCERT")
            .env_remove("PGPASSWORD")
            .env_remove("PGPASSFILE")
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

/// A directory the server can read (the postgres OS user reads the files, not the test).
pub struct DataDir {
    dir: tempfile::TempDir,
}

impl DataDir {
    pub fn new() -> Self {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::Builder::new().prefix("pg_ingest_e2e").tempdir_in("/tmp").unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        Self { dir }
    }

    /// Writes `name` and returns its absolute path.
    pub fn write(&self, name: &str, content: impl AsRef<[u8]>) -> String {
        use std::os::unix::fs::PermissionsExt;
        let path = self.dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        path.to_str().unwrap().to_owned()
    }

    pub fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_owned()
    }
}

impl Default for DataDir {
    fn default() -> Self {
        Self::new()
    }
}

pub use pg_ingest_core::report::LoadSummary;

/// An `ingest_jsonl` result row as the summary it is.
pub fn loaded_from_row(r: &postgres::Row) -> LoadSummary {
    LoadSummary {
        file: r.get("file"),
        target: r.get("target"),
        status: r.get("status"),
        lines: r.get("lines"),
        rows_inserted: r.get("rows_inserted"),
        rows_rejected: r.get("rows_rejected"),
        lines_skipped: r.get("lines_skipped"),
        bytes: r.get("bytes"),
        seconds: r.get("seconds"),
        load_id: r.get("load_id"),
    }
}

/// `SELECT * FROM ingest_jsonl(path, <extra SQL arguments>)`.
pub fn ingest(client: &mut Client, path: &str, extra: &str) -> Result<LoadSummary, postgres::Error> {
    let sql = format!("SELECT * FROM ingest_jsonl($1{}{extra})", if extra.is_empty() { "" } else { ", " });
    client.query_one(&sql, &[&path]).map(|r| loaded_from_row(&r))
}

/// The server's error: (SQLSTATE, message, detail).
pub fn db_error(e: &postgres::Error) -> (String, String, Option<String>) {
    let db = e.as_db_error().unwrap_or_else(|| panic!("not a server error: {e}"));
    (db.code().code().to_owned(), db.message().to_owned(), db.detail().map(str::to_owned))
}

/// Makes every row inserted into `table` take `seconds` (a BEFORE INSERT trigger sleeps), or
/// only rows for which `when` (an expression on NEW) holds: a load that lasts long enough to
/// watch, cancel or kill.
pub fn slow_inserts(client: &mut Client, table: &str, seconds: f64, when: Option<&str>) {
    let when = when.unwrap_or("true");
    client
        .batch_execute(&format!(
            "CREATE FUNCTION {table}_slow() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN IF {when} THEN PERFORM pg_sleep({seconds}); END IF; RETURN NEW; END $$; \
             CREATE TRIGGER slow BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION {table}_slow();"
        ))
        .unwrap();
}

/// Private memory backend `pid` holds now, in MB (its anonymous resident pages).
pub fn private_mb(pid: i32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find(|l| l.starts_with("RssAnon:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

/// Peak private memory of backend `pid`, in MB (VmHWM less shared memory and mapped files,
/// which only grow during a load).
pub fn peak_private_mb(pid: i32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb = |key: &str| -> f64 {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (kb("VmHWM:") - kb("RssShmem:") - kb("RssFile:")) / 1024.0
}

/// A role created once per cluster (roles are shared by the test databases), reset to a
/// plain role at each use.
pub fn role(admin: &mut Client, name: &str, options: &str) {
    admin
        .batch_execute(&format!(
            "DO $$ BEGIN CREATE ROLE {name}; EXCEPTION WHEN duplicate_object THEN NULL; END $$; \
             ALTER ROLE {name} NOSUPERUSER NOCREATEROLE {options}"
        ))
        .unwrap();
}

/// Sees a server crash: a backend that dies of a signal makes the postmaster end every other
/// session and recover (`pg_postmaster_start_time()` stays the same), so a session opened
/// before an attack that still answers after it says no backend crashed meanwhile.
pub struct CrashWitness {
    client: Client,
    pid: i32,
}

impl CrashWitness {
    pub fn new(database: &str) -> Self {
        let mut client = connect(database);
        let pid = client.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
        Self { client, pid }
    }

    /// Panics when the server crashed since the witness was made.
    pub fn assert_no_crash(&mut self) {
        let pid: i32 = self
            .client
            .query_one("SELECT pg_backend_pid()", &[])
            .unwrap_or_else(|e| panic!("the witness session was ended: a backend crashed ({e})"))
            .get(0);
        assert_eq!(pid, self.pid);
    }
}

/// A small deterministic generator (xorshift64*) for generated test data.
pub struct Rng(pub u64);

impl Rng {
    #[allow(clippy::should_implement_trait)] // not an iterator: it never ends
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform enough in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}
