//! The Debian packages of `make package`, installed onto a PostgreSQL that has never seen a build
//! of this tree; and `ALTER EXTENSION pg_ingest UPDATE` from the last release (0.1.0: commit
//! 009ecc0, git tag `v0.1.0`) on a server with data in the ledger, then a schema identical to a
//! fresh install's.
//!
//! scripts/test.sh sets PG_INGEST_PACKAGES (target/packages), PG_INGEST_PRISTINE (the server as
//! Debian ships it, or as scripts/server.sh built it) and, on PostgreSQL 15, the only major 0.1.0
//! was released for, PG_INGEST_OLD_RELEASE (0.1.0's files, as scripts/old_release.sh built them).
//! Each test runs its own server on a free port, in a directory of its own.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use postgres::{Client, NoTls};

const OLD_VERSION: &str = "0.1.0";

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn as_postgres(program: &Path) -> Command {
    let mut c = Command::new("runuser");
    c.args(["-u", "postgres", "--", "env", "-u", "RUST_BACKTRACE"]).arg(program);
    c
}

/// A server unpacked from the pristine tree into a directory of its own.
struct Server {
    dir: PathBuf,
    port: u16,
}

impl Server {
    fn unpack(name: &str) -> Option<Self> {
        let Ok(pristine) = std::env::var("PG_INGEST_PRISTINE") else {
            eprintln!("skipped: PG_INGEST_PRISTINE is unset (scripts/test.sh sets it)");
            return None;
        };
        let dir = std::env::temp_dir().join(format!("pg_ingest_{name}_{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        run(Command::new("cp").arg("-a").arg(format!("{pristine}/.")).arg(dir.join("root")));
        run(Command::new("chmod").arg("-R").arg("a+rX").arg(&dir));
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let server = Self { dir, port };
        let found = std::fs::read_dir(server.lib_dir()).unwrap().chain(std::fs::read_dir(server.ext_dir()).unwrap());
        let ours: Vec<_> =
            found.map(|e| e.unwrap().file_name()).filter(|f| f.to_string_lossy().starts_with("pg_ingest")).collect();
        assert!(ours.is_empty(), "the pristine server already has pg_ingest files: {ours:?}");
        Some(server)
    }

    fn major() -> String {
        pg_ingest_tests::pg_major()
    }

    fn bin(&self, program: &str) -> PathBuf {
        self.dir.join(format!("root/usr/lib/postgresql/{}/bin/{program}", Self::major()))
    }

    fn lib_dir(&self) -> PathBuf {
        self.dir.join(format!("root/usr/lib/postgresql/{}/lib", Self::major()))
    }

    fn ext_dir(&self) -> PathBuf {
        self.dir.join(format!("root/usr/share/postgresql/{}/extension", Self::major()))
    }

    /// Unpacks a .deb as dpkg would: its files at their paths under the server's root.
    fn install_deb(&self, deb: &Path) {
        run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(self.dir.join("root")));
        run(Command::new("chmod").arg("-R").arg("a+rX").arg(self.dir.join("root")));
    }

    /// Copies a tree of files at Debian's paths (a release built from its commit) into the root.
    fn install_tree(&self, tree: &str) {
        run(Command::new("cp").arg("-a").arg(format!("{tree}/.")).arg(self.dir.join("root")));
        run(Command::new("chmod").arg("-R").arg("a+rX").arg(self.dir.join("root")));
    }

    /// initdb, start, and in database postgres the extension and a table `chat` to load into.
    fn start_with_chat_table(&self) -> Client {
        self.init();
        self.pg_ctl("start");
        let mut c = self.connect("postgres");
        c.batch_execute("CREATE EXTENSION pg_ingest; CREATE TABLE chat (id int PRIMARY KEY, body text)").unwrap();
        c
    }

    fn init(&self) {
        let data = self.dir.join("data");
        std::fs::create_dir_all(&data).unwrap();
        run(Command::new("chown").arg("postgres").arg(&data));
        run(as_postgres(&self.bin("initdb")).arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
        ]));
        let conf = format!(
            "listen_addresses = '127.0.0.1'\nport = {}\nunix_socket_directories = ''\n\
             shared_preload_libraries = 'pg_ingest'\nmax_worker_processes = 32\nlc_messages = 'C'\n\
             timezone = 'UTC'\nlogging_collector = off\n",
            self.port
        );
        let path = data.join("postgresql.auto.conf");
        let mut all = std::fs::read_to_string(&path).unwrap();
        all.push_str(&conf);
        std::fs::write(&path, all).unwrap();
    }

    fn pg_ctl(&self, action: &str) {
        run(as_postgres(&self.bin("pg_ctl"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .arg("-l")
            .arg(self.dir.join("data/server.log"))
            .args(["-w", "-t", "60", "-m", "fast", action]));
    }

    fn connect(&self, db: &str) -> Client {
        let dsn =
            format!("host=127.0.0.1 port={} user=postgres dbname={db} options='-c statement_timeout=120s'", self.port);
        Client::connect(&dsn, NoTls).unwrap_or_else(|e| panic!("{dsn}: {e}\n{}", self.log()))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("data/server.log")).unwrap_or_default()
    }

    /// A file the server can read.
    fn write_file(&self, name: &str, content: &str) -> String {
        let path = self.dir.join(name);
        std::fs::write(&path, content).unwrap();
        run(Command::new("chmod").arg("644").arg(&path));
        path.to_string_lossy().into_owned()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = as_postgres(&self.bin("pg_ctl"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-w", "-m", "immediate", "stop"])
            .output();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The package of `name` in PG_INGEST_PACKAGES.
fn package(name: &str) -> Option<PathBuf> {
    let Ok(dir) = std::env::var("PG_INGEST_PACKAGES") else {
        eprintln!("skipped: PG_INGEST_PACKAGES is unset (scripts/test.sh runs make package and sets it)");
        return None;
    };
    let prefix = format!("{name}_{}-", pg_ingest_core::VERSION);
    let found = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(&prefix));
    Some(found.unwrap_or_else(|| panic!("no {prefix}*.deb in {dir}")))
}

fn deb_field(deb: &Path, field: &str) -> String {
    String::from_utf8(run(Command::new("dpkg-deb").arg("-f").arg(deb).arg(field)).stdout).unwrap().trim().to_owned()
}

fn deb_files(deb: &Path) -> String {
    String::from_utf8(run(Command::new("dpkg-deb").arg("-c").arg(deb)).stdout).unwrap()
}

fn extension_version(c: &mut Client) -> String {
    c.query_one("SELECT extversion FROM pg_extension WHERE extname = 'pg_ingest'", &[]).unwrap().get(0)
}

fn chat_lines(from: i64, to: i64) -> String {
    (from..to).map(|i| format!("{{\"id\": {i}, \"body\": \"line {i}\"}}\n")).collect()
}

/// Streams a local file into `chat` with a `pg-ingest` binary, as a user would.
fn stream_with(client: &Path, server: &Server, file: &str) {
    run(Command::new(client)
        .args(["load", "--quiet", "--into", "chat"])
        .arg(file)
        .env("PGHOST", "127.0.0.1")
        .env("PGPORT", server.port.to_string())
        .env("PGUSER", "postgres")
        .env("PGDATABASE", "postgres"));
}

#[test]
fn the_packages_install_onto_a_server_that_never_saw_a_build_and_load() {
    let major = Server::major();
    let (Some(ext), Some(cli)) = (package(&format!("postgresql-{major}-pg-ingest")), package("pg-ingest")) else {
        return;
    };
    let Some(server) = Server::unpack("package") else { return };

    // what the packages say and hold
    assert!(deb_field(&ext, "Depends").split(", ").any(|d| d == format!("postgresql-{major}")));
    let files = deb_files(&ext);
    // every update script (0.1.0 → 0.2.0 → 0.3.0 …: ALTER EXTENSION … UPDATE follows the chain)
    let sql_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../extension/sql");
    let updates: Vec<String> = std::fs::read_dir(&sql_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|f| f.starts_with("pg_ingest--") && f.matches("--").count() == 2)
        .collect();
    assert!(updates.iter().any(|f| f.starts_with(&format!("pg_ingest--{OLD_VERSION}--"))), "{updates:?}");
    assert!(updates.iter().any(|f| f.ends_with(&format!("--{}.sql", pg_ingest_core::VERSION))), "{updates:?}");
    let expected = [
        format!("./usr/lib/postgresql/{major}/lib/pg_ingest.so"),
        format!("./usr/share/postgresql/{major}/extension/pg_ingest.control"),
        format!("./usr/share/postgresql/{major}/extension/pg_ingest--{}.sql", pg_ingest_core::VERSION),
    ];
    let scripts = updates.iter().map(|f| format!("./usr/share/postgresql/{major}/extension/{f}"));
    for f in expected.into_iter().chain(scripts) {
        assert!(files.contains(&f), "{f} is not in {}:\n{files}", ext.display());
    }
    assert!(deb_files(&cli).contains("./usr/bin/pg-ingest"));
    // On Debian 12, PostgreSQL 15's package's dependencies can be met from its own suites.
    if major == "15" {
        for deb in [&ext, &cli] {
            run(Command::new("apt-get").args(["install", "--simulate", "-qq"]).arg(deb));
        }
    }

    server.install_deb(&ext);
    let mut c = server.start_with_chat_table();
    assert_eq!(extension_version(&mut c), pg_ingest_core::VERSION);
    let path = server.write_file("chat.jsonl", &chat_lines(0, 1000));
    let rows: i64 = c.query_one("SELECT rows_inserted FROM ingest_jsonl($1, 'chat')", &[&path]).unwrap().get(0);
    assert_eq!(rows, 1000);

    // the client from its own package streams a local file to that server
    let client_root = server.dir.join("client");
    run(Command::new("dpkg-deb").arg("-x").arg(&cli).arg(&client_root));
    let local = server.write_file("more.jsonl", &chat_lines(1000, 1500));
    stream_with(&client_root.join("usr/bin/pg-ingest"), &server, &local);
    let (n, distinct): (i64, i64) = {
        let r = c.query_one("SELECT count(*), count(DISTINCT id) FROM chat", &[]).unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!((n, distinct), (1500, 1500));
}

/// Everything the extension owns, described without OIDs: objects, definitions, columns,
/// constraints, indexes, policies, privileges. Two databases with the same extension schema
/// give the same lines.
const SCHEMA_DESCRIPTION: &str = r#"
WITH members AS (
    SELECT d.classid, d.objid, pg_describe_object(d.classid, d.objid, 0) AS object
    FROM pg_depend d JOIN pg_extension e ON d.refclassid = 'pg_extension'::regclass AND d.refobjid = e.oid
    WHERE e.extname = 'pg_ingest' AND d.deptype = 'e'
)
SELECT line FROM (
    SELECT object AS line FROM members
    UNION ALL
    SELECT m.object || ': ' || pg_get_functiondef(p.oid) || ' acl ' || coalesce(p.proacl::text, 'default')
    FROM members m JOIN pg_proc p ON m.classid = 'pg_proc'::regclass AND p.oid = m.objid AND p.prokind <> 'a'
    UNION ALL
    SELECT m.object || ': kind ' || c.relkind::text || ' rls ' || c.relrowsecurity || ' force ' || c.relforcerowsecurity
        || ' options ' || coalesce(c.reloptions::text, '') || ' acl ' || coalesce(c.relacl::text, 'default')
        || coalesce(' view ' || pg_get_viewdef(c.oid), '')
    FROM members m JOIN pg_class c ON m.classid = 'pg_class'::regclass AND c.oid = m.objid
    UNION ALL
    SELECT m.object || ' column ' || a.attnum || ' ' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
        || ' not null ' || a.attnotnull || ' default ' || coalesce(pg_get_expr(ad.adbin, ad.adrelid), '')
        || ' identity ' || a.attidentity::text || ' generated ' || a.attgenerated::text
        || ' acl ' || coalesce(a.attacl::text, 'default')
    FROM members m JOIN pg_attribute a ON m.classid = 'pg_class'::regclass AND a.attrelid = m.objid
    LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
    WHERE a.attnum > 0 AND NOT a.attisdropped
    UNION ALL
    SELECT m.object || ' constraint ' || co.conname || ' ' || pg_get_constraintdef(co.oid)
    FROM members m JOIN pg_constraint co ON m.classid = 'pg_class'::regclass AND co.conrelid = m.objid
    UNION ALL
    SELECT m.object || ' index ' || pg_get_indexdef(i.indexrelid)
    FROM members m JOIN pg_index i ON m.classid = 'pg_class'::regclass AND i.indrelid = m.objid
    UNION ALL
    SELECT m.object || ' trigger ' || pg_get_triggerdef(t.oid)
    FROM members m JOIN pg_trigger t ON m.classid = 'pg_class'::regclass AND t.tgrelid = m.objid AND NOT t.tgisinternal
    UNION ALL
    SELECT m.object || ' policy ' || po.polname || ' ' || po.polcmd::text || ' permissive ' || po.polpermissive
        || ' roles ' || po.polroles::text || ' using ' || coalesce(pg_get_expr(po.polqual, po.polrelid), '')
        || ' check ' || coalesce(pg_get_expr(po.polwithcheck, po.polrelid), '')
    FROM members m JOIN pg_policy po ON m.classid = 'pg_class'::regclass AND po.polrelid = m.objid
    UNION ALL
    SELECT m.object || ': acl ' || coalesce(n.nspacl::text, 'default')
    FROM members m JOIN pg_namespace n ON m.classid = 'pg_namespace'::regclass AND n.oid = m.objid
) lines ORDER BY line
"#;

fn describe_schema(c: &mut Client) -> Vec<String> {
    c.query(SCHEMA_DESCRIPTION, &[]).unwrap().iter().map(|r| r.get(0)).collect()
}

/// The ledger and job tables as text, in a stable order.
fn ledger_snapshot(c: &mut Client) -> Vec<String> {
    let mut out = Vec::new();
    for (table, order) in [
        ("ingest.loads", "load_id"),
        ("ingest.files", "path"),
        ("ingest.rejects", "load_id, line"),
        ("ingest.client_files", "source"),
        ("ingest.jobs", "job_id"),
    ] {
        let sql = format!("SELECT '{table} ' || to_jsonb(x)::text FROM {table} x ORDER BY {order}");
        out.extend(c.query(&sql, &[]).unwrap().iter().map(|r| r.get::<_, String>(0)));
    }
    out
}

#[test]
fn alter_extension_update_from_the_last_release_keeps_the_ledger() {
    let Ok(old_release) = std::env::var("PG_INGEST_OLD_RELEASE") else {
        eprintln!("skipped: PG_INGEST_OLD_RELEASE is unset (scripts/test.sh sets it on PostgreSQL 15)");
        return;
    };
    let Some(ext) = package(&format!("postgresql-{}-pg-ingest", Server::major())) else { return };
    let Some(server) = Server::unpack("upgrade") else { return };

    // 0.1.0, as its commit built it, with loads, rejects, a client load and a job in its ledger
    server.install_tree(&old_release);
    let mut c = server.start_with_chat_table();
    assert_eq!(extension_version(&mut c), OLD_VERSION);
    let mut lines = chat_lines(0, 300);
    lines.push_str("{\"id\": \"not a number\"}\n");
    lines.push_str(&chat_lines(300, 400));
    let first = server.write_file("chat.jsonl", &lines);
    let loaded: i64 = c
        .query_one("SELECT rows_inserted FROM ingest_jsonl($1, 'chat', on_error => 'skip')", &[&first])
        .unwrap()
        .get(0);
    assert_eq!(loaded, 400);
    let second = server.write_file("chat2.jsonl", &chat_lines(400, 500));
    let job: i64 = c.query_one("SELECT ingest_jsonl_async($1, 'chat')", &[&second]).unwrap().get(0);
    c.query("SELECT * FROM wait_job($1)", &[&job]).unwrap();
    let streamed = server.write_file("streamed.jsonl", &chat_lines(500, 600));
    stream_with(&pg_ingest_tests::pg_ingest_bin(), &server, &streamed);
    let before = ledger_snapshot(&mut c);
    assert!(before.iter().any(|l| l.starts_with("ingest.rejects ")), "{before:#?}");
    assert!(before.iter().any(|l| l.starts_with("ingest.jobs ")), "{before:#?}");
    assert!(before.iter().any(|l| l.starts_with("ingest.client_files ")), "{before:#?}");
    drop(c);

    // the new package over it, as an upgrade leaves it: 0.1.0's install script is gone
    server.pg_ctl("stop");
    server.install_deb(&ext);
    std::fs::remove_file(server.ext_dir().join(format!("pg_ingest--{OLD_VERSION}.sql"))).unwrap();
    server.pg_ctl("start");
    let mut c = server.connect("postgres");
    c.batch_execute("ALTER EXTENSION pg_ingest UPDATE").unwrap();
    assert_eq!(extension_version(&mut c), pg_ingest_core::VERSION);
    assert_eq!(ledger_snapshot(&mut c), before, "the update changed the ledger");

    // the ledger still decides: loading the same files again loads nothing twice
    c.query("SELECT * FROM ingest_jsonl($1, 'chat', on_error => 'skip')", &[&first]).unwrap();
    c.query("SELECT * FROM ingest_jsonl($1, 'chat')", &[&second]).unwrap();
    stream_with(&pg_ingest_tests::pg_ingest_bin(), &server, &streamed);
    let r = c.query_one("SELECT count(*), count(DISTINCT id) FROM chat", &[]).unwrap();
    assert_eq!((r.get::<_, i64>(0), r.get::<_, i64>(1)), (600, 600));
    // and new lines appended to a loaded file are loaded, once
    std::fs::write(&first, format!("{lines}{}", chat_lines(600, 650))).unwrap();
    let loaded: i64 = c.query_one("SELECT rows_inserted FROM ingest_jsonl($1, 'chat')", &[&first]).unwrap().get(0);
    assert_eq!(loaded, 50);

    // the updated schema is the one a fresh install creates
    c.batch_execute("CREATE DATABASE fresh").unwrap();
    let mut fresh = server.connect("fresh");
    fresh.batch_execute("CREATE EXTENSION pg_ingest").unwrap();
    let (updated, created) = (describe_schema(&mut c), describe_schema(&mut fresh));
    assert!(created.len() > 50, "{created:#?}");
    let only_updated: Vec<_> = updated.iter().filter(|l| !created.contains(l)).collect();
    let only_created: Vec<_> = created.iter().filter(|l| !updated.contains(l)).collect();
    assert!(
        only_updated.is_empty() && only_created.is_empty(),
        "ALTER EXTENSION UPDATE leaves a schema that differs from CREATE EXTENSION's: \
         only after the update: {only_updated:#?}\nonly in a fresh install: {only_created:#?}"
    );
}
