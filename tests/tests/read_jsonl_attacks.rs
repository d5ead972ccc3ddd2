//! Trying to break `read_jsonl` and `on_conflict` loads: cancelling a read midway (its threads
//! must stop, streamed or materialised), a LATIN1 session (values stored as a UTF8 session
//! stores them), a line over the limit, a trigger that tries to take a load's prepared rows,
//! two sessions upserting the same file at once, and a role without INSERT. Every session
//! runs with a statement_timeout: nothing may wait forever.

use std::io::Write;

use pg_ingest_tests::{connect_as, db_error, DataDir, TestDb};
use postgres::Client;

/// Threads of backend `pid`.
fn threads(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().count()
}

fn session(db: &TestDb) -> (Client, i32) {
    let mut c = connect_as(&db.name, "postgres");
    c.batch_execute("SET statement_timeout = '60s'").unwrap();
    let pid = c.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    (c, pid)
}

#[test]
fn a_cancelled_read_stops_its_threads() {
    let db = TestDb::new("read_cancel");
    let dir = DataDir::new();
    let path = dir.path("many.jsonl");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    for i in 0..2_000_000 {
        writeln!(f, "{{\"id\": {i}, \"v\": \"value {i}\"}}").unwrap();
    }
    f.into_inner().unwrap().sync_all().unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let (mut c, pid) = session(&db);
    let idle = threads(pid);
    // streamed (custom scan), and materialised (a lateral call): each cancelled mid-read
    let streamed = format!("SELECT count(*) FROM read_jsonl('{path}', threads => 2) AS r(id int, v text) WHERE pg_sleep(0.0001) IS NOT NULL");
    let lateral = format!("SELECT count(*) FROM (VALUES ('{path}')) f(p), LATERAL read_jsonl(f.p, threads => 2) AS r(id int, v text) WHERE pg_sleep(0.0001) IS NOT NULL");
    for q in [streamed, lateral] {
        c.batch_execute("SET statement_timeout = '1s'").unwrap();
        let e = c.query(&q, &[]).unwrap_err();
        assert_eq!(db_error(&e).0, "57014", "{q}");
        c.batch_execute("SET statement_timeout = '60s'").unwrap();
        // the threads are joined by the time the error is back
        assert_eq!(threads(pid), idle, "threads left after a cancelled read: {q}");
        let n: i64 = c
            .query_one(
                &format!("SELECT count(*) FROM (SELECT * FROM read_jsonl('{path}') AS r(id int) LIMIT 5) x"),
                &[],
            )
            .unwrap()
            .get(0);
        assert_eq!(n, 5);
        assert_eq!(threads(pid), idle);
    }
}

#[test]
fn a_latin1_session_reads_and_upserts_what_a_utf8_session_would() {
    let db = TestDb::new("read_latin1");
    let dir = DataDir::new();
    let path = dir.write("u.jsonl", "{\"id\": 1, \"t\": \"café\", \"v\": \"naïve\", \"j\": {\"k\": \"é\"}}\n");
    let (mut utf8, _) = session(&db);
    utf8.batch_execute("CREATE TABLE t (id int PRIMARY KEY, t text, v varchar(10), j jsonb)").unwrap();
    let expected: String =
        utf8.query_one("SELECT md5('café' || 'naïve' || '{\"k\": \"é\"}'::jsonb::text)", &[]).unwrap().get(0);

    let (mut latin1, _) = session(&db);
    latin1.batch_execute("SET client_encoding = 'LATIN1'").unwrap();
    // only ASCII crosses the LATIN1 connection: md5 of what the server made
    let got: String = latin1
        .query_one(&format!("SELECT md5(t || v || j::text) FROM read_jsonl('{path}', NULL::t)"), &[])
        .unwrap()
        .get(0);
    assert_eq!(got, expected);
    latin1.query(&format!("SELECT * FROM ingest_jsonl('{path}', 't', on_conflict => 'update')"), &[]).unwrap();
    let stored: String = utf8.query_one("SELECT md5(t || v || j::text) FROM t", &[]).unwrap().get(0);
    assert_eq!(stored, expected);
}

#[test]
fn a_line_over_the_limit_stops_or_is_rejected() {
    let db = TestDb::new("read_huge_line");
    let dir = DataDir::new();
    let huge = "x".repeat(3 << 20);
    let path = dir.write("huge.jsonl", format!("{{\"id\": 1}}\n{{\"id\": 2, \"pad\": \"{huge}\"}}\n{{\"id\": 3}}\n"));
    let (mut c, _) = session(&db);
    c.batch_execute("SET pg_ingest.max_line_bytes = '1MB'").unwrap();
    let q = format!("SELECT id FROM read_jsonl('{path}', on_error => $1) AS r(id int, pad text) ORDER BY id");
    let e = c.query(&q, &[&"stop"]).unwrap_err();
    let (state, message, _) = db_error(&e);
    assert_eq!(state, "54000", "{message}");
    assert!(message.contains("line 2"), "{message}");
    let ids: Vec<i32> = c.query(&q, &[&"skip"]).unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(ids, vec![1, 3]);
    let line: i64 =
        c.query_one("SELECT line FROM ingest.rejects ORDER BY load_id DESC, line LIMIT 1", &[]).unwrap().get(0);
    assert_eq!(line, 2);
}

#[test]
fn a_trigger_cannot_take_a_loads_prepared_rows() {
    let db = TestDb::new("read_steal");
    let dir = DataDir::new();
    let path = dir.write("s.jsonl", "{\"id\": 1}\n{\"id\": 2}\n{\"id\": 3}\n");
    let (mut c, _) = session(&db);
    c.batch_execute(
        "CREATE TABLE t (id int PRIMARY KEY);
         CREATE TABLE stolen (id int);
         CREATE FUNCTION steal() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           FOR token IN 1..200 LOOP
             BEGIN
               INSERT INTO stolen SELECT id FROM ingest.prepared_rows(token, NULL::t);
             EXCEPTION WHEN object_not_in_prerequisite_state THEN NULL;
             END;
           END LOOP;
           RETURN NEW;
         END $$;
         CREATE TRIGGER steal BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION steal();",
    )
    .unwrap();
    let e = c.query("SELECT * FROM ingest.prepared_rows(1, NULL::t)", &[]).unwrap_err();
    assert_eq!(db_error(&e).0, "55000");
    let r = c
        .query_one(
            &format!("SELECT lines, rows_inserted FROM ingest_jsonl('{path}', 't', on_conflict => 'nothing')"),
            &[],
        )
        .unwrap();
    assert_eq!((r.get::<_, i64>(0), r.get::<_, i64>(1)), (3, 3));
    assert_eq!(c.query_one("SELECT count(*) FROM t", &[]).unwrap().get::<_, i64>(0), 3);
    assert_eq!(c.query_one("SELECT count(*) FROM stolen", &[]).unwrap().get::<_, i64>(0), 0);
}

#[test]
fn two_sessions_upserting_one_file_load_each_line_once() {
    let db = TestDb::new("read_overlap");
    let dir = DataDir::new();
    let body: String = (1..=50_000).map(|i| format!("{{\"id\": {i}, \"v\": \"v{i}\"}}\n")).collect();
    let path = dir.write("o.jsonl", body);
    let (mut c, _) = session(&db);
    c.batch_execute("CREATE TABLE t (id int PRIMARY KEY, v text)").unwrap();
    let runs: Vec<_> = (0..2)
        .map(|_| {
            let (mut s, _) = session(&db);
            let path = path.clone();
            std::thread::spawn(move || {
                let r = s
                    .query_one(&format!("SELECT status, rows_inserted, load_id FROM ingest_jsonl('{path}', 't', on_conflict => 'nothing')"), &[])
                    .unwrap();
                (r.get::<_, String>(0), r.get::<_, i64>(1), r.get::<_, i64>(2))
            })
        })
        .collect();
    let mut results: Vec<_> = runs.into_iter().map(|h| h.join().unwrap()).collect();
    results.sort();
    assert_eq!(results[0].0, "loaded");
    assert_eq!(results[0].1, 50_000);
    assert_eq!((results[1].0.as_str(), results[1].1), ("unchanged", 0));
    assert_eq!(c.query_one("SELECT count(*) FROM t", &[]).unwrap().get::<_, i64>(0), 50_000);
    let conflicting: i64 =
        c.query_one("SELECT rows_conflicting FROM ingest.loads WHERE load_id = $1", &[&results[0].2]).unwrap().get(0);
    assert_eq!(conflicting, 0);
}

#[test]
fn an_upsert_needs_insert_on_the_table() {
    let db = TestDb::new("read_upsert_rights");
    let dir = DataDir::new();
    let path = dir.write("r.jsonl", "{\"id\": 1}\n");
    let (mut c, _) = session(&db);
    c.batch_execute(
        "CREATE TABLE t (id int PRIMARY KEY);
         DO $$ BEGIN CREATE ROLE pgi_upsert_reader LOGIN IN ROLE pg_read_server_files;
         EXCEPTION WHEN duplicate_object THEN NULL; END $$;
         GRANT SELECT ON t TO pgi_upsert_reader;",
    )
    .unwrap();
    let mut r = connect_as(&db.name, "pgi_upsert_reader");
    let e = r.query(&format!("SELECT * FROM ingest_jsonl('{path}', 't', on_conflict => 'update')"), &[]).unwrap_err();
    assert_eq!(db_error(&e).0, "42501");
    // reading the file is allowed to the role: its rows are no table's
    let n: i64 = r.query_one(&format!("SELECT count(*) FROM read_jsonl('{path}', NULL::t)"), &[]).unwrap().get(0);
    assert_eq!(n, 1);
    assert_eq!(c.query_one("SELECT count(*) FROM t", &[]).unwrap().get::<_, i64>(0), 0);
    assert_eq!(c.query_one("SELECT count(*) FROM ingest.files", &[]).unwrap().get::<_, i64>(0), 0);
}
