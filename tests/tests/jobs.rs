//! Background loads: ingest_jsonl_async, ingest.jobs, cancel_job, wait_job; and globs.

use std::time::{Duration, Instant};

use pg_ingest_core::sample::{write_chat_lines, CHAT_TABLE_DDL};
use pg_ingest_tests::{connect, db_error, ingest, DataDir, TestDb};
use postgres::Client;

fn chat_file(dir: &DataDir, name: &str, lines: u64) -> String {
    let mut content = Vec::new();
    write_chat_lines(&mut content, lines, 3).unwrap();
    dir.write(name, content)
}

/// Rows take about 1 ms each (a trigger sleeps).
fn slow_down(client: &mut Client) {
    pg_ingest_tests::slow_inserts(client, "chat_messages", 0.001, None);
}

fn submit(client: &mut Client, path: &str, extra: &str) -> i64 {
    let sql = format!("SELECT ingest_jsonl_async($1{}{extra})", if extra.is_empty() { "" } else { ", " });
    client.query_one(&sql, &[&path]).unwrap().get(0)
}

fn state(client: &mut Client, job: i64) -> (String, Option<String>) {
    let r = client.query_one("SELECT state, error FROM ingest.jobs WHERE job_id = $1", &[&job]).unwrap();
    (r.get(0), r.get(1))
}

/// Waits until the job runs and has written rows.
fn wait_running(client: &mut Client, job: i64) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = client
            .query_one("SELECT state, pid, coalesce(rows_so_far, 0) FROM ingest.jobs WHERE job_id = $1", &[&job])
            .unwrap();
        if r.get::<_, String>(0) == "running" && r.get::<_, i64>(2) > 0 {
            return r.get(1);
        }
        assert!(Instant::now() < deadline, "job {job} never got going: {}", r.get::<_, String>(0));
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn count(client: &mut Client) -> i64 {
    client.query_one("SELECT count(*) FROM chat_messages", &[]).unwrap().get(0)
}

#[test]
fn a_job_runs_the_load_and_wait_job_returns_its_rows() {
    let mut db = TestDb::new("jobs_lifecycle");
    db.client.batch_execute(CHAT_TABLE_DDL).unwrap();
    let dir = DataDir::new();
    let path = chat_file(&dir, "chat_messages.jsonl", 20_000);
    let job = submit(&mut db.client, &path, "on_error => 'skip'");
    let rows = db.client.query("SELECT * FROM wait_job($1)", &[&job]).unwrap();
    assert_eq!(rows.len(), 1);
    let r = pg_ingest_tests::loaded_from_row(&rows[0]);
    assert_eq!(
        (r.file.as_str(), r.status.as_str(), r.lines, r.rows_inserted),
        (path.as_str(), "loaded", 20_000, 20_000)
    );
    assert_eq!(count(&mut db.client), 20_000);
    let j = db
        .client
        .query_one(
            "SELECT state, submitted_by::text, files, lines, rows_inserted, rows_rejected, started_at <= finished_at, \
                    on_error FROM ingest.jobs WHERE job_id = $1",
            &[&job],
        )
        .unwrap();
    assert_eq!(j.get::<_, String>(0), "done");
    assert_eq!(j.get::<_, String>(1), "postgres");
    assert_eq!((j.get::<_, i64>(2), j.get::<_, i64>(4), j.get::<_, i64>(5)), (1, 20_000, 0));
    assert!(j.get::<_, bool>(6));
    assert_eq!(j.get::<_, String>(7), "skip");
    // the load is in the ledger like any other: running it again (as a job) loads nothing
    let again = submit(&mut db.client, &path, "");
    let r = pg_ingest_tests::loaded_from_row(&db.client.query_one("SELECT * FROM wait_job($1)", &[&again]).unwrap());
    assert_eq!((r.status.as_str(), r.rows_inserted), ("unchanged", 0));
    // ended jobs cannot be cancelled; unknown ones do not exist
    assert!(!db.client.query_one("SELECT cancel_job($1)", &[&job]).unwrap().get::<_, bool>(0));
    let (code, _, _) = db_error(&db.client.query("SELECT * FROM wait_job(999999)", &[]).unwrap_err());
    assert_eq!(code, "42704");
}

/// A job's worker reads values as the submitting session would: wall-clock times in its
/// TimeZone, day-first dates under its DateStyle, its array_nulls; with writers too.
#[test]
fn a_job_reads_values_in_the_submitters_settings() {
    let mut db = TestDb::new("jobs_settings");
    let dir = DataDir::new();
    let c = &mut db.client;
    c.batch_execute(
        "CREATE TABLE got (id int, at timestamptz, d date, tags text[]); CREATE TABLE want (LIKE got); \
         SET TimeZone = 'Asia/Tokyo'; SET DateStyle = 'SQL, DMY'; SET array_nulls = off",
    )
    .unwrap();
    let lines = [(1, "2024-03-04 12:00", "03/04/2024", "{a,NULL}"), (2, "2024-07-01T23:30:00", "31/12/1999", "{NULL}")];
    let text: String = lines
        .iter()
        .map(|(id, at, d, tags)| format!("{{\"id\": {id}, \"at\": \"{at}\", \"d\": \"{d}\", \"tags\": \"{tags}\"}}\n"))
        .collect();
    let path = dir.write("local.jsonl", text);
    for (id, at, d, tags) in lines {
        c.execute(
            "INSERT INTO want VALUES ($1, $2::text::timestamptz, $3::text::date, $4::text::text[])",
            &[&id, &at, &d, &tags],
        )
        .unwrap();
    }
    for writers in [1, 2] {
        c.batch_execute("TRUNCATE got").unwrap();
        let job = submit(c, &path, &format!("target => 'got', writers => {writers}, force => true"));
        c.query("SELECT * FROM wait_job($1)", &[&job]).unwrap();
        let differ: i64 = c
            .query_one("SELECT count(*) FROM (SELECT * FROM got EXCEPT ALL SELECT * FROM want) x", &[])
            .unwrap()
            .get(0);
        let loaded: i64 = c.query_one("SELECT count(*) FROM got", &[]).unwrap().get(0);
        assert_eq!((loaded, differ), (2, 0), "writers => {writers}: the job read values in other settings");
    }
    // a zone set as an interval with seconds shows as a name SET refuses: it is passed on as
    // the interval (a job or writers failed with 22023 before)
    c.batch_execute("SET TIME ZONE INTERVAL '-08:00:30'; RESET DateStyle; RESET array_nulls").unwrap();
    let at: String = c.query_one("SELECT '2024-03-04 12:00'::timestamptz::text", &[]).unwrap().get(0);
    for writers in [1, 2] {
        c.batch_execute("TRUNCATE got").unwrap();
        let job =
            submit(c, &path, &format!("target => 'got', writers => {writers}, force => true, on_error => 'skip'"));
        c.query("SELECT * FROM wait_job($1)", &[&job]).unwrap();
        let got: String = c.query_one("SELECT at::text FROM got WHERE id = 1", &[]).unwrap().get(0);
        assert_eq!(got, at, "writers => {writers}");
    }
    // the server's defaults would have read them otherwise: the test can tell
    c.batch_execute("RESET TimeZone; RESET DateStyle; RESET array_nulls; TRUNCATE got").unwrap();
    let job = submit(c, &path, "target => 'got', force => true, on_error => 'skip'");
    c.query("SELECT * FROM wait_job($1)", &[&job]).unwrap();
    let differ: i64 =
        c.query_one("SELECT count(*) FROM (SELECT * FROM got EXCEPT ALL SELECT * FROM want) x", &[]).unwrap().get(0);
    let loaded: i64 = c.query_one("SELECT count(*) FROM got", &[]).unwrap().get(0);
    // 12:00 read as UTC and 3 April as 4 March; 31/12/1999 refused under month-first dates
    assert_eq!((loaded, differ), (1, 1));
}

#[test]
fn a_job_starts_when_its_submission_commits() {
    let mut db = TestDb::new("jobs_transactional");
    db.client.batch_execute(CHAT_TABLE_DDL).unwrap();
    let dir = DataDir::new();
    let path = chat_file(&dir, "chat_messages.jsonl", 1000);
    let mut other = connect(&db.name);

    let mut tx = db.client.transaction().unwrap();
    let job: i64 = tx.query_one("SELECT ingest_jsonl_async($1)", &[&path]).unwrap().get(0);
    std::thread::sleep(Duration::from_millis(500));
    let seen: i64 = other.query_one("SELECT count(*) FROM ingest.jobs WHERE job_id = $1", &[&job]).unwrap().get(0);
    assert_eq!(seen, 0, "an uncommitted job is invisible");
    tx.rollback().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(count(&mut db.client), 0, "a rolled-back submission must not run");
    let alive: i64 = db
        .client
        .query_one("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_ingest job' AND datname = current_database()", &[])
        .unwrap()
        .get(0);
    assert_eq!(alive, 0);

    let mut tx = db.client.transaction().unwrap();
    let job: i64 = tx.query_one("SELECT ingest_jsonl_async($1)", &[&path]).unwrap().get(0);
    tx.commit().unwrap();
    db.client.query("SELECT * FROM wait_job($1, interval '30 s')", &[&job]).unwrap();
    assert_eq!(count(&mut db.client), 1000);
}

#[test]
fn cancel_job_stops_a_running_or_queued_job() {
    let mut db = TestDb::new("jobs_cancel");
    db.client.batch_execute(CHAT_TABLE_DDL).unwrap();
    slow_down(&mut db.client);
    let dir = DataDir::new();
    let path = chat_file(&dir, "chat_messages.jsonl", 100_000);
    let job = submit(&mut db.client, &path, "");
    wait_running(&mut db.client, job);
    assert!(db.client.query_one("SELECT cancel_job($1)", &[&job]).unwrap().get::<_, bool>(0));
    let (code, message, _) = db_error(&db.client.query("SELECT * FROM wait_job($1)", &[&job]).unwrap_err());
    assert_eq!(code, "57014");
    assert!(message.contains(&format!("job {job} cancelled")), "{message}");
    assert_eq!(state(&mut db.client, job).0, "cancelled");
    assert_eq!(count(&mut db.client), 0, "a cancelled job's rows roll back");

    // cancelled while queued (its submission not yet committed): it never runs
    let mut tx = db.client.transaction().unwrap();
    let queued: i64 = tx.query_one("SELECT ingest_jsonl_async($1)", &[&path]).unwrap().get(0);
    assert!(tx.query_one("SELECT cancel_job($1)", &[&queued]).unwrap().get::<_, bool>(0));
    tx.commit().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(state(&mut db.client, queued), ("cancelled".to_owned(), Some("cancelled before it started".to_owned())));
    assert_eq!(count(&mut db.client), 0);

    // wait_job gives up after its timeout
    let long = submit(&mut db.client, &path, "");
    let (code, message, _) =
        db_error(&db.client.query("SELECT * FROM wait_job($1, interval '200 ms')", &[&long]).unwrap_err());
    assert_eq!(code, "55000");
    assert!(message.contains("is still"), "{message}");
    db.client.query_one("SELECT cancel_job($1)", &[&long]).unwrap();
}

#[test]
fn failures_are_recorded_and_killed_workers_show_as_failed() {
    let mut db = TestDb::new("jobs_failures");
    db.client.batch_execute(CHAT_TABLE_DDL).unwrap();
    let dir = DataDir::new();
    let missing = dir.path("nowhere.jsonl");
    let job = submit(&mut db.client, &missing, "'chat_messages'");
    let (code, message, _) = db_error(&db.client.query("SELECT * FROM wait_job($1)", &[&job]).unwrap_err());
    assert_eq!(code, "58P01");
    assert!(message.contains("No such file"), "{message}");
    let r = db.client.query_one("SELECT state, sqlstate FROM ingest.jobs WHERE job_id = $1", &[&job]).unwrap();
    assert_eq!((r.get::<_, String>(0), r.get::<_, String>(1)), ("failed".to_owned(), "58P01".to_owned()));
    // a bad argument fails the submission itself
    let e = db.client.query_one("SELECT ingest_jsonl_async($1, on_error => 'maybe')", &[&missing]).unwrap_err();
    assert_eq!(db_error(&e).0, "22023");

    // a worker terminated mid-load: failed, with why; running the load again loads it all once
    slow_down(&mut db.client);
    let path = chat_file(&dir, "chat_messages.jsonl", 100_000);
    let job = submit(&mut db.client, &path, "");
    let pid = wait_running(&mut db.client, job);
    db.client.query_one("SELECT pg_terminate_backend($1)", &[&pid]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while state(&mut db.client, job).0 == "running" {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }
    let (state, error) = state(&mut db.client, job);
    assert_eq!(state, "failed");
    assert!(error.unwrap().contains("ended without finishing"));
    assert_eq!(count(&mut db.client), 0);
    db.client.batch_execute("DROP TRIGGER slow ON chat_messages").unwrap();
    let r = ingest(&mut db.client, &path, "").unwrap();
    assert_eq!((r.status.as_str(), r.rows_inserted), ("loaded", 100_000));
}

#[test]
fn a_job_runs_as_the_submitting_role() {
    let mut db = TestDb::new("jobs_role");
    db.client.batch_execute(CHAT_TABLE_DDL).unwrap();
    db.client
        .batch_execute(
            "DO $$ BEGIN CREATE ROLE pgi_job_loader LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$; \
             GRANT pg_read_server_files TO pgi_job_loader;",
        )
        .unwrap();
    let dir = DataDir::new();
    let path = chat_file(&dir, "chat_messages.jsonl", 100);
    let mut loader = Client::connect(&format!("{} user=pgi_job_loader", db.dsn()), postgres::NoTls).unwrap();
    let job = submit(&mut loader, &path, "");
    let (code, _, _) = db_error(&loader.query("SELECT * FROM wait_job($1)", &[&job]).unwrap_err());
    assert_eq!(code, "42501", "the role has no INSERT privilege on the table");
    db.client.batch_execute("GRANT INSERT ON chat_messages TO pgi_job_loader").unwrap();
    let job = submit(&mut loader, &path, "");
    loader.query("SELECT * FROM wait_job($1)", &[&job]).unwrap();
    let r = db
        .client
        .query_one(
            "SELECT j.submitted_by::text, l.loaded_by::text FROM ingest.jobs j, ingest.loads l \
              WHERE j.job_id = $1 AND l.load_id = (j.results->0->>'load_id')::bigint",
            &[&job],
        )
        .unwrap();
    assert_eq!(
        (r.get::<_, String>(0), r.get::<_, String>(1)),
        ("pgi_job_loader".to_owned(), "pgi_job_loader".to_owned())
    );
    // another role may not cancel it
    db.client
        .batch_execute("DO $$ BEGIN CREATE ROLE pgi_job_other LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
        .unwrap();
    let mut other = Client::connect(&format!("{} user=pgi_job_other", db.dsn()), postgres::NoTls).unwrap();
    let (code, _, _) = db_error(&other.query_one("SELECT cancel_job($1)", &[&job]).unwrap_err());
    assert_eq!(code, "42501");
}

#[test]
fn a_glob_loads_each_matching_file_through_the_ledger() {
    let mut db = TestDb::new("jobs_glob");
    db.client.batch_execute("CREATE TABLE events (id int PRIMARY KEY, v text)").unwrap();
    let dir = DataDir::new();
    dir.write("b.jsonl", "{\"id\":3,\"v\":\"b\"}\n");
    dir.write("a.jsonl", "{\"id\":1,\"v\":\"a\"}\n{\"id\":2,\"v\":\"a\"}\n");
    dir.write("notes.txt", "not json\n");
    let pattern = format!("{}/*.jsonl", dir.path("").trim_end_matches('/'));
    let rows = db.client.query("SELECT * FROM ingest_jsonl($1, 'events')", &[&pattern]).unwrap();
    let got: Vec<(String, String, i64)> = rows
        .iter()
        .map(|r| {
            let s = pg_ingest_tests::loaded_from_row(r);
            (s.file, s.status, s.rows_inserted)
        })
        .collect();
    assert_eq!(got, [(dir.path("a.jsonl"), "loaded".to_owned(), 2), (dir.path("b.jsonl"), "loaded".to_owned(), 1)]);
    // a new line in one file, a new file: only those load
    std::fs::write(dir.path("b.jsonl"), "{\"id\":3,\"v\":\"b\"}\n{\"id\":4,\"v\":\"b\"}\n").unwrap();
    dir.write("c.jsonl", "{\"id\":5,\"v\":\"c\"}\n");
    let rows = db.client.query("SELECT status, rows_inserted FROM ingest_jsonl($1, 'events')", &[&pattern]).unwrap();
    let got: Vec<(String, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(got, [("unchanged".to_owned(), 0), ("appended".to_owned(), 1), ("loaded".to_owned(), 1)]);
    let n: i64 = db.client.query_one("SELECT count(*) FROM events", &[]).unwrap().get(0);
    assert_eq!(n, 5);
    // no match: no rows, no error
    let none = db.client.query("SELECT * FROM ingest_jsonl($1, 'events')", &[&dir.path("*.nothing")]).unwrap();
    assert!(none.is_empty());
}
