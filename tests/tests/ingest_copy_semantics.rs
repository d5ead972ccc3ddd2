//! Writes go through COPY FROM: triggers, constraints, partitions, permissions and progress
//! reporting behave as for COPY; cancel leaves no rows and no threads.

use std::time::{Duration, Instant};

use pg_ingest_core::sample::{write_chat_lines, CHAT_TABLE_DDL};
use pg_ingest_tests::{connect, db_error, ingest, DataDir, TestDb};

fn lines(n: usize, f: impl Fn(usize) -> String) -> String {
    (1..=n).map(|i| f(i) + "\n").collect()
}

#[test]
fn triggers_fire_and_before_triggers_can_change_or_drop_rows() {
    let mut db = TestDb::new("triggers");
    let dir = DataDir::new();
    db.client
        .batch_execute(
            "CREATE TABLE t (n int, label text); CREATE TABLE audit (n int); \
             CREATE FUNCTION t_before() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
               IF NEW.n % 10 = 0 THEN RETURN NULL; END IF; NEW.label := 'seen ' || NEW.n; RETURN NEW; END $$; \
             CREATE FUNCTION t_after() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
               INSERT INTO audit VALUES (NEW.n); RETURN NULL; END $$; \
             CREATE TRIGGER b BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION t_before(); \
             CREATE TRIGGER a AFTER INSERT ON t FOR EACH ROW EXECUTE FUNCTION t_after();",
        )
        .unwrap();
    let path = dir.write("t.jsonl", lines(100, |i| format!("{{\"n\": {i}}}")));
    let r = ingest(&mut db.client, &path, "'t'").unwrap();
    // ten rows dropped by the BEFORE trigger: counted as skipped, and the counts add up
    assert_eq!((r.lines, r.rows_inserted, r.lines_skipped), (100, 90, 10));
    let row = db.client.query_one("SELECT count(*), min(label), (SELECT count(*) FROM audit) FROM t", &[]).unwrap();
    assert_eq!((row.get::<_, i64>(0), row.get::<_, String>(1), row.get::<_, i64>(2)), (90, "seen 1".into(), 90));
}

#[test]
fn a_trigger_error_names_the_line() {
    let mut db = TestDb::new("trigger_error");
    let dir = DataDir::new();
    db.client
        .batch_execute(
            "CREATE TABLE t (n int); \
             CREATE FUNCTION no_13() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
               IF NEW.n = 13 THEN RAISE EXCEPTION 'unlucky %', NEW.n; END IF; RETURN NEW; END $$; \
             CREATE TRIGGER b BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION no_13();",
        )
        .unwrap();
    let path = dir.write("t.jsonl", lines(20, |i| format!("{{\"n\": {i}}}")));
    let (code, message, _) = db_error(&ingest(&mut db.client, &path, "'t'").unwrap_err());
    assert_eq!((code.as_str(), message), ("P0001", format!("{path}: line 13: unlucky 13")));
}

#[test]
fn partitioned_targets_route_rows() {
    let mut db = TestDb::new("partitions");
    let dir = DataDir::new();
    db.client
        .batch_execute(
            "CREATE TABLE p (site int, v text) PARTITION BY LIST (site); \
             CREATE TABLE p1 PARTITION OF p FOR VALUES IN (1); CREATE TABLE p2 PARTITION OF p FOR VALUES IN (2);",
        )
        .unwrap();
    let path = dir.write("p.jsonl", lines(1000, |i| format!("{{\"site\": {}, \"v\": \"x{i}\"}}", i % 2 + 1)));
    assert_eq!(ingest(&mut db.client, &path, "'p'").unwrap().rows_inserted, 1000);
    let counts: (i64, i64) = {
        let r = db.client.query_one("SELECT (SELECT count(*) FROM p1), (SELECT count(*) FROM p2)", &[]).unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(counts, (500, 500));
    // a row no partition takes is an error naming its line
    let path = dir.write("p3.jsonl", "{\"site\": 1}\n\n{\"site\": 3}\n");
    let (code, message, _) = db_error(&ingest(&mut db.client, &path, "'p'").unwrap_err());
    assert_eq!(code, "23514");
    assert!(message.starts_with(&format!("{path}: line 3: no partition of relation \"p\" found for row")), "{message}");
}

#[test]
fn constraint_violations_name_the_line_and_leave_nothing() {
    let mut db = TestDb::new("constraints");
    let dir = DataDir::new();
    db.client
        .batch_execute(
            "CREATE TABLE parent (id int PRIMARY KEY); INSERT INTO parent VALUES (1); \
             CREATE TABLE c (id int PRIMARY KEY, n int NOT NULL CHECK (n > 0), parent int REFERENCES parent);",
        )
        .unwrap();
    // CHECK, on line 5 of 6 (a blank line before it)
    let path = dir.write(
        "check.jsonl",
        "{\"id\":1,\"n\":1}\n{\"id\":2,\"n\":1}\n\n{\"id\":3,\"n\":1}\n{\"id\":4,\"n\":-1}\n{\"id\":5,\"n\":1}\n",
    );
    let (code, message, detail) = db_error(&ingest(&mut db.client, &path, "'c'").unwrap_err());
    assert_eq!(code, "23514");
    assert_eq!(message, format!("{path}: line 5: new row for relation \"c\" violates check constraint \"c_n_check\""));
    assert_eq!(detail.as_deref(), Some("Failing row contains (4, -1, null)."));
    // NOT NULL from a missing key
    let path = dir.write("nn.jsonl", "{\"id\":1,\"n\":1}\n{\"id\":2}\n");
    let (code, message, _) = db_error(&ingest(&mut db.client, &path, "'c'").unwrap_err());
    assert_eq!(code, "23502");
    assert!(message.starts_with(&format!("{path}: line 2: null value in column \"n\"")), "{message}");
    // a duplicate key found when COPY flushes its buffered rows, far from the first
    let path =
        dir.write("dup.jsonl", lines(3000, |i| format!("{{\"id\": {}, \"n\": 1}}", if i == 2500 { 7 } else { i })));
    let (code, message, _) = db_error(&ingest(&mut db.client, &path, "'c'").unwrap_err());
    assert_eq!(code, "23505");
    assert_eq!(message, format!("{path}: line 2500: duplicate key value violates unique constraint \"c_pkey\""));
    // a foreign key, checked at the end of the statement
    let path = dir.write("fk.jsonl", "{\"id\":1,\"n\":1,\"parent\":1}\n{\"id\":2,\"n\":1,\"parent\":9}\n");
    let (code, _, _) = db_error(&ingest(&mut db.client, &path, "'c'").unwrap_err());
    assert_eq!(code, "23503");
    let n: i64 = db.client.query_one("SELECT count(*) FROM c", &[]).unwrap().get(0);
    assert_eq!(n, 0);
}

#[test]
fn all_rows_or_none_in_the_callers_transaction() {
    let mut db = TestDb::new("transaction");
    let dir = DataDir::new();
    db.client.batch_execute("CREATE TABLE t (n int)").unwrap();
    let path = dir.write("t.jsonl", lines(10, |i| format!("{{\"n\": {i}}}")));
    let mut tx = db.client.transaction().unwrap();
    tx.query("SELECT * FROM ingest_jsonl($1, 't')", &[&path]).unwrap();
    tx.query("SELECT * FROM ingest_jsonl($1, 't')", &[&path]).unwrap();
    tx.rollback().unwrap();
    let n: i64 = db.client.query_one("SELECT count(*) FROM t", &[]).unwrap().get(0);
    assert_eq!(n, 0);
}

#[test]
fn permissions_are_copys() {
    let mut db = TestDb::new("permissions");
    let dir = DataDir::new();
    let path = dir.write("t.jsonl", "{\"n\": 1}\n");
    db.client
        .batch_execute(
            "DROP ROLE IF EXISTS pgi_loader; DROP ROLE IF EXISTS pgi_reader; \
             CREATE ROLE pgi_loader; CREATE ROLE pgi_reader IN ROLE pg_read_server_files; \
             CREATE TABLE t (n int); CREATE TABLE locked (n int); \
             GRANT INSERT ON t TO pgi_loader, pgi_reader; \
             CREATE TABLE secured (n int); ALTER TABLE secured ENABLE ROW LEVEL SECURITY; \
             GRANT INSERT ON secured TO pgi_reader;",
        )
        .unwrap();
    // no pg_read_server_files: 42501 with a hint
    db.client.batch_execute("SET ROLE pgi_loader").unwrap();
    let e = ingest(&mut db.client, &path, "'t'").unwrap_err();
    let db_err = e.as_db_error().unwrap();
    assert_eq!(db_err.code().code(), "42501");
    assert!(db_err.message().contains("permission denied to read a file on the server"));
    assert!(db_err.hint().unwrap().contains("pg_read_server_files"));
    // pg_read_server_files and INSERT: loads
    db.client.batch_execute("RESET ROLE; SET ROLE pgi_reader").unwrap();
    assert_eq!(ingest(&mut db.client, &path, "'t'").unwrap().rows_inserted, 1);
    // no INSERT privilege on the target: 42501
    let (code, message, _) = db_error(&ingest(&mut db.client, &path, "'locked'").unwrap_err());
    assert_eq!((code.as_str(), message.as_str()), ("42501", "permission denied for table locked"));
    // row-level security is refused, as COPY FROM refuses it
    let (code, _, _) = db_error(&ingest(&mut db.client, &path, "'secured'").unwrap_err());
    assert_eq!(code, "0A000");
    db.client.batch_execute("RESET ROLE").unwrap();
}

/// The number of threads of a backend process.
fn threads_of(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task")).map(|d| d.count()).unwrap_or(0)
}

/// Starts a load of a large chat log on its own connection; returns its pid and the thread
/// that waits for its result.
fn start_big_load(
    db: &TestDb,
    dir: &DataDir,
    settings: &str,
) -> (i32, std::thread::JoinHandle<Result<(), postgres::Error>>) {
    let mut content = Vec::new();
    write_chat_lines(&mut content, 1_500_000, 5).unwrap();
    let path = dir.write("chat_messages.jsonl", &content);
    let mut loader = connect(&db.name);
    loader.batch_execute(settings).unwrap();
    let pid: i32 = loader.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    let handle = std::thread::spawn(move || {
        loader.query("SELECT * FROM ingest_jsonl($1, 'chat_messages', threads => 2)", &[&path]).map(|_| ())
    });
    (pid, handle)
}

fn wait_for_progress(db: &mut TestDb, pid: i32) -> (String, String, i64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let rows = db
            .client
            .query("SELECT command, type, tuples_processed FROM pg_stat_progress_copy WHERE pid = $1", &[&pid])
            .unwrap();
        if let Some(r) = rows.first() {
            let t: i64 = r.get(2);
            if t > 0 {
                return (r.get(0), r.get(1), t);
            }
        }
        assert!(Instant::now() < deadline, "the load never showed progress");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn assert_no_threads_left(pid: i32) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while threads_of(pid) > 1 {
        assert!(Instant::now() < deadline, "backend {pid} still has {} threads", threads_of(pid));
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn cancel_mid_load_leaves_no_rows_and_no_threads() {
    let mut db = TestDb::new("cancel");
    db.client.batch_execute(CHAT_TABLE_DDL).unwrap();
    let dir = DataDir::new();
    let (pid, handle) = start_big_load(&db, &dir, "SELECT 1");
    // pg_stat_progress_copy shows the load while it runs
    let (command, kind, _) = wait_for_progress(&mut db, pid);
    assert_eq!((command.as_str(), kind.as_str()), ("COPY FROM", "CALLBACK"));
    assert!(threads_of(pid) > 1, "the parse threads run in the backend");
    let cancelled_at = Instant::now();
    db.client.query("SELECT pg_cancel_backend($1)", &[&pid]).unwrap();
    let e = handle.join().unwrap().unwrap_err();
    assert!(cancelled_at.elapsed() < Duration::from_secs(1), "stopped in {:?}", cancelled_at.elapsed());
    assert_eq!(db_error(&e).0, "57014");
    let n: i64 = db.client.query_one("SELECT count(*) FROM chat_messages", &[]).unwrap().get(0);
    assert_eq!(n, 0);
    assert_no_threads_left(pid);
}

#[test]
fn statement_timeout_stops_a_load() {
    let mut db = TestDb::new("timeout");
    db.client.batch_execute(CHAT_TABLE_DDL).unwrap();
    let dir = DataDir::new();
    let (pid, handle) = start_big_load(&db, &dir, "SET statement_timeout = '700ms'");
    let e = handle.join().unwrap().unwrap_err();
    assert_eq!(db_error(&e).0, "57014");
    let n: i64 = db.client.query_one("SELECT count(*) FROM chat_messages", &[]).unwrap().get(0);
    assert_eq!(n, 0);
    assert_no_threads_left(pid);
}
