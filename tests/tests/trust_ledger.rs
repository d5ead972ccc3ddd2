//! A ledger moves only under its own load, and no role holds another's load lock. Tried as
//! an attacker with INSERT on a victim's table: forged `LEDGER` options, another role's client
//! and server entries, `ingest.client_file_tail` on its own, the writers' entry point called
//! as SQL (directly and through run_batch), and the old advisory-lock key held open. Every
//! session runs with a statement_timeout.

use std::io::Write;
use std::os::unix::fs::MetadataExt;

use pg_ingest_tests::{connect_as, db_error, role, DataDir, TestDb};
use postgres::Client;

fn lines(from: u32, to: u32) -> String {
    (from..=to).map(|i| format!("{{\"id\":{i},\"v\":\"line {i}\"}}\n")).collect()
}

/// (rows, distinct ids) in t.
fn rows(c: &mut Client) -> (i64, i64) {
    let r = c.query_one("SELECT count(*), count(DISTINCT id) FROM t", &[]).unwrap();
    (r.get(0), r.get(1))
}

fn setup(name: &str, victim: &str, attacker: &str) -> TestDb {
    let mut db = TestDb::new(name);
    role(&mut db.client, victim, "LOGIN");
    role(&mut db.client, attacker, "LOGIN");
    db.client
        .batch_execute(&format!(
            "CREATE TABLE t (id int, v text);
             GRANT INSERT, SELECT ON t TO {victim};
             GRANT INSERT ON t TO {attacker};
             GRANT pg_read_server_files TO {victim}, {attacker};"
        ))
        .unwrap();
    db
}

#[test]
fn a_client_ledger_moves_only_under_its_own_load() {
    let (victim, attacker) = ("pgi_ledger_victim", "pgi_ledger_attacker");
    let db = setup("trust_client_ledger", victim, attacker);
    let dir = DataDir::new();
    let path = dir.write("chat.jsonl", lines(1, 110));
    db.cli().env("PGUSER", victim).args(["load", &path, "--into", "t", "--quiet"]).assert().success();
    let mut v = connect_as(&db.name, victim);
    assert_eq!(rows(&mut v), (110, 110));
    let (source, offset): (String, i64) =
        v.query_one("SELECT source, byte_offset FROM ingest.client_files", &[]).unwrap().get_pair();

    let mut a = connect_as(&db.name, attacker);
    // the entry is not the attacker's to read, and asking for the same name gives its own
    assert_eq!(a.query_one("SELECT count(*) FROM ingest.client_files", &[]).unwrap().get::<_, i64>(0), 0);
    assert!(a.query("SELECT * FROM ingest.client_file_state('t', $1)", &[&source]).unwrap().is_empty());
    let forged = |source: &str, size: i64, whole: bool, status: &str| {
        format!(
            "COPY t FROM STDIN WITH (FORMAT jsonl, LEDGER '{{\"source\": \"{source}\", \"device\": 1, \"inode\": 1, \
             \"size\": {size}, \"start_offset\": 0, \"start_line\": 1, \"head_fingerprint\": \"\", \"whole\": {whole}, \
             \"status\": \"{status}\"}}')"
        )
    };
    // without client_file_state in the same transaction: refused before the server asks for data
    for sql in [forged(&source, 0, false, "loaded"), forged(&source, 1 << 40, true, "loaded")] {
        let e = a.batch_execute(&sql).unwrap_err();
        assert_eq!(db_error(&e).0, "55000", "{sql}: {e}");
    }
    let e = a.query("SELECT ingest.client_file_tail('t', $1, 'x')", &[&source]).unwrap_err();
    assert_eq!(db_error(&e).0, "55000", "{e}");
    // with it, under the victim's file name: an entry of the attacker's own, the victim's
    // stays where it was
    let mut tx = a.transaction().unwrap();
    tx.query("SELECT * FROM ingest.client_file_state('t', $1)", &[&source]).unwrap();
    assert_eq!(tx.copy_in(&forged(&source, 0, false, "loaded")).unwrap().finish().unwrap(), 0);
    tx.commit().unwrap();
    let now: i64 = v
        .query_one("SELECT byte_offset FROM ingest.client_files WHERE loaded_by::text = current_user", &[])
        .unwrap()
        .get(0);
    assert_eq!(now, offset);
    std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(lines(111, 120).as_bytes()).unwrap();
    db.cli().env("PGUSER", victim).args(["load", &path, "--into", "t", "--quiet"]).assert().success();
    assert_eq!(rows(&mut v), (120, 120));

    // the attacker prepares an entry for a file a superuser will load, standing in 50 fake
    // lines for the first 50 of it: the superuser's load trusts only its own entries
    let real = dir.write("export.jsonl", lines(1001, 1100));
    let host_source = source.replace(&path, &real);
    let fake: String = (1001..=1050).map(|i| format!("{{\"id\":{i},\"v\":\"FAKE\"}}\n")).collect();
    let mut tx = a.transaction().unwrap();
    tx.query("SELECT * FROM ingest.client_file_state('t', $1)", &[&host_source]).unwrap();
    let mut w = tx.copy_in(&forged(&host_source, 1 << 20, false, "loaded")).unwrap();
    w.write_all(fake.as_bytes()).unwrap();
    assert_eq!(w.finish().unwrap(), 50);
    tx.commit().unwrap();
    db.cli().args(["load", &real, "--into", "t", "--quiet"]).assert().success();
    let r = v
        .query_one(
            "SELECT count(*) FILTER (WHERE v LIKE 'line%'), count(*) FILTER (WHERE v = 'FAKE') FROM t WHERE id > 1000",
            &[],
        )
        .unwrap();
    assert_eq!((r.get::<_, i64>(0), r.get::<_, i64>(1)), (100, 50), "every real line, beside the attacker's own rows");

    // its own ledger: the offset is what the server received, not the size it was told
    let own = "attacker-host:/nowhere/own.jsonl";
    let mut tx = a.transaction().unwrap();
    assert!(tx.query("SELECT * FROM ingest.client_file_state('t', $1)", &[&own]).unwrap().is_empty());
    let mut w = tx.copy_in(&forged(own, 1 << 40, true, "loaded")).unwrap();
    w.write_all(b"{\"id\": 1000}\n").unwrap();
    assert_eq!(w.finish().unwrap(), 1);
    let (at, size): (i64, i64) = tx
        .query_one("SELECT byte_offset, size FROM ingest.client_files WHERE source = $1", &[&own])
        .unwrap()
        .get_pair();
    assert_eq!((at, size), (13, 13));
    tx.execute("SELECT ingest.client_file_tail('t', $1, 'fp')", &[&own]).unwrap();
    tx.commit().unwrap();
}

#[test]
fn a_server_ledger_entry_moves_only_under_its_roles_loads() {
    let (victim, attacker) = ("pgi_ledger_owner", "pgi_ledger_mover");
    let mut db = setup("trust_server_ledger", victim, attacker);
    let dir = DataDir::new();
    let path = dir.write("events.jsonl", lines(1, 50));
    let mut v = connect_as(&db.name, victim);
    v.query(&format!("SELECT * FROM ingest_jsonl('{path}', 't')"), &[]).unwrap();
    let mut a = connect_as(&db.name, attacker);
    for extra in ["", ", force => true", ", writers => 2"] {
        let e = a.query(&format!("SELECT * FROM ingest_jsonl('{path}', 't'{extra})"), &[]).unwrap_err();
        let (code, message, _) = db_error(&e);
        assert_eq!(code, "42501", "{extra}: {message}");
        // neither the owner nor the path it was loaded from: the attacker may not see them
        assert!(!message.contains(victim) && !message.contains(&path), "{message}");
    }
    // a member of the victim's role may
    db.client.batch_execute(&format!("GRANT {victim} TO {attacker}")).unwrap();
    std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(lines(51, 60).as_bytes()).unwrap();
    let status: String = a.query_one(&format!("SELECT status FROM ingest_jsonl('{path}', 't')"), &[]).unwrap().get(0);
    assert_eq!(status, "appended");
    db.client.batch_execute(&format!("REVOKE {victim} FROM {attacker}")).unwrap();
    assert_eq!(rows(&mut v), (60, 60));
}

#[test]
fn the_writers_entry_point_is_not_callable_as_sql() {
    let (victim, attacker) = ("pgi_ledger_writer_v", "pgi_ledger_writer_a");
    let db = setup("trust_load_range", victim, attacker);
    let dir = DataDir::new();
    let path = dir.write("ranges.jsonl", lines(1, 100));
    let mut a = connect_as(&db.name, attacker);
    let call =
        format!("SELECT ingest.load_range('{path}', 't'::regclass::oid, 0, 1000000, 1, '{{\"head_bytes\": 0}}', 1)");
    let e = a.query(&call, &[]).unwrap_err();
    assert_eq!(db_error(&e).0, "42501", "{e}");
    // nor from a batch worker of its own
    let r = a.query_one("SELECT status, sqlstate FROM run_batch(ARRAY[$1], 1)", &[&call]).unwrap();
    assert_eq!((r.get::<_, String>(0), r.get::<_, Option<String>>(1)), ("error".into(), Some("42501".into())));
    let mut v = connect_as(&db.name, victim);
    assert_eq!(v.query_one("SELECT count(*) FROM ingest.file_ranges", &[]).unwrap().get::<_, i64>(0), 0);
    assert_eq!(rows(&mut v), (0, 0));
    // the writers of a real load still write
    let n: i64 = v
        .query_one(&format!("SELECT rows_inserted FROM ingest_jsonl('{path}', 't', writers => 2)"), &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 100);
}

#[test]
fn no_role_holds_a_files_load_lock() {
    let (victim, attacker) = ("pgi_lock_victim", "pgi_lock_attacker");
    let db = setup("trust_lock", victim, attacker);
    let dir = DataDir::new();
    let path = dir.write("locked.jsonl", lines(1, 20));
    let meta = std::fs::metadata(&path).unwrap();
    let mut a = connect_as(&db.name, attacker);
    let oid: u32 = a.query_one("SELECT 't'::regclass::oid", &[]).unwrap().get(0);
    // the key the load lock used to be: computable by anyone from the file and the table
    let mut tx = a.transaction().unwrap();
    for key in [format!("pg_ingest:{oid}:{}:{}", meta.dev(), meta.ino()), format!("pg_ingest:{oid}:client:x")] {
        tx.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", &[&key]).unwrap();
    }
    // while the attacker's transaction stays open, the victim's load goes through
    let mut v = connect_as(&db.name, victim);
    v.batch_execute("SET statement_timeout = '10s'").unwrap();
    let n: i64 = v.query_one(&format!("SELECT rows_inserted FROM ingest_jsonl('{path}', 't')"), &[]).unwrap().get(0);
    assert_eq!(n, 20);
    tx.rollback().unwrap();
}

#[test]
fn ledger_rows_belong_to_a_role_not_to_its_name() {
    let (first, renamed) = ("pgi_ledger_erin", "pgi_ledger_erin2");
    let mut db = TestDb::new("trust_role_oid");
    db.client
        .batch_execute(&format!(
            "DROP ROLE IF EXISTS {first}; DROP ROLE IF EXISTS {renamed}; CREATE ROLE {first} LOGIN;
             GRANT pg_read_server_files TO {first};
             CREATE TABLE t (id int NOT NULL, v text); GRANT INSERT ON t TO {first};"
        ))
        .unwrap();
    let dir = DataDir::new();
    let client_file = dir.write("client.jsonl", lines(1, 10));
    let server_file = dir.write("server.jsonl", format!("{}{{\"id\": null}}\n", lines(101, 110)));
    db.cli().env("PGUSER", first).args(["load", &client_file, "--into", "t", "--quiet"]).assert().success();
    let mut e = connect_as(&db.name, first);
    e.query(&format!("SELECT * FROM ingest_jsonl('{server_file}', 't', on_error => 'skip')"), &[]).unwrap();
    drop(e);
    // renamed: its entries and rows are still its own (no line loaded twice)
    db.client.batch_execute(&format!("ALTER ROLE {first} RENAME TO {renamed}")).unwrap();
    db.cli().env("PGUSER", renamed).args(["load", &client_file, "--into", "t", "--quiet"]).assert().success();
    let mut e = connect_as(&db.name, renamed);
    let status: String = e
        .query_one(&format!("SELECT status FROM ingest_jsonl('{server_file}', 't', on_error => 'skip')"), &[])
        .unwrap()
        .get(0);
    assert_eq!(status, "unchanged");
    let seen: i64 = e.query_one("SELECT count(*) FROM ingest.rejects", &[]).unwrap().get(0);
    assert_eq!(seen, 1);
    drop(e);
    assert_eq!(rows(&mut db.client), (20, 20));
    // dropped, and a new role made with its old name: nothing of the old one's is the new one's
    db.client
        .batch_execute(&format!(
            "REVOKE pg_read_server_files FROM {renamed}; DROP OWNED BY {renamed}; DROP ROLE {renamed};
             CREATE ROLE {renamed} LOGIN; GRANT pg_read_server_files TO {renamed}; GRANT INSERT ON t TO {renamed};"
        ))
        .unwrap();
    let mut n = connect_as(&db.name, renamed);
    for t in ["ingest.loads", "ingest.rejects", "ingest.files", "ingest.client_files"] {
        let c: i64 = n.query_one(&format!("SELECT count(*) FROM {t}"), &[]).unwrap().get(0);
        assert_eq!(c, 0, "{t}");
    }
    let e = n.query(&format!("SELECT * FROM ingest_jsonl('{server_file}', 't')"), &[]).unwrap_err();
    assert_eq!(db_error(&e).0, "42501");
    db.client.batch_execute(&format!("DROP OWNED BY {renamed}; REVOKE pg_read_server_files FROM {renamed}")).unwrap();
}

#[test]
fn a_deferred_trigger_cannot_move_the_loaders_client_tail() {
    let (owner, loader) = ("pgi_ledger_alice", "pgi_ledger_bob");
    let db = setup("trust_deferred_tail", loader, owner);
    let mut c = connect_as(&db.name, "postgres");
    c.batch_execute(
        "CREATE FUNCTION evil_tail() RETURNS trigger LANGUAGE plpgsql AS $$
         DECLARE r record; BEGIN
           FOR r IN SELECT source FROM ingest.client_files WHERE target_oid = 't'::regclass AND loaded_by::text = current_user LOOP
             BEGIN
               PERFORM ingest.client_file_tail('t'::regclass, r.source, 'forged');
             EXCEPTION WHEN others THEN NULL;
             END;
           END LOOP; RETURN NULL; END $$;
         CREATE CONSTRAINT TRIGGER evil AFTER INSERT ON t DEFERRABLE INITIALLY DEFERRED
           FOR EACH ROW EXECUTE FUNCTION evil_tail();"
    )
    .unwrap();
    let dir = DataDir::new();
    let path = dir.write("tail.jsonl", lines(1, 10));
    // the first load has no entry yet; the second moves its tail
    for i in 0..3 {
        let out = db.cli().env("PGUSER", loader).args(["load", &path, "--into", "t"]).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert!(!stderr.contains("loading it as a new file"), "{stderr}");
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(lines(11 + i, 11 + i).as_bytes())
            .unwrap();
    }
    let tails: Vec<String> =
        c.query("SELECT tail_fingerprint FROM ingest.client_files", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    assert!(!tails.iter().any(|t| t == "forged"), "{tails:?}");
    assert_eq!(rows(&mut c), (12, 12), "every line once");
}

#[test]
fn the_ledger_option_is_for_a_clients_stream_only() {
    let (victim, attacker) = ("pgi_ledger_file_v", "pgi_ledger_file_a");
    let db = setup("trust_ledger_file", victim, attacker);
    let dir = DataDir::new();
    let path = dir.write("f.jsonl", lines(1, 5));
    let mut a = connect_as(&db.name, attacker);
    let mut tx = a.transaction().unwrap();
    tx.query("SELECT * FROM ingest.client_file_state('t', 'h:/x')", &[]).unwrap();
    let e = tx
        .batch_execute(&format!(
            "COPY t FROM '{path}' WITH (FORMAT jsonl, LEDGER '{{\"source\": \"h:/x\", \"device\": 1, \"inode\": 1, \
             \"size\": 9, \"start_offset\": 0, \"start_line\": 1, \"head_fingerprint\": \"\", \"whole\": false, \
             \"status\": \"loaded\"}}')"
        ))
        .unwrap_err();
    assert_eq!(db_error(&e).0, "0A000", "{e}");
}

trait Pair {
    fn get_pair<A, B>(&self) -> (A, B)
    where
        A: for<'a> postgres::types::FromSql<'a>,
        B: for<'a> postgres::types::FromSql<'a>;
}

impl Pair for postgres::Row {
    fn get_pair<A, B>(&self) -> (A, B)
    where
        A: for<'a> postgres::types::FromSql<'a>,
        B: for<'a> postgres::types::FromSql<'a>,
    {
        (self.get(0), self.get(1))
    }
}
