//! Exactly once: the ledger (ingest.files) makes re-runs no-ops, loads only appended lines,
//! treats replaced files as new, serializes concurrent loads, and rolls back with the rows.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pg_ingest_core::sample::{write_chat_lines, CHAT_TABLE_DDL};
use pg_ingest_tests::{db_error, dsn, ingest, DataDir, TestDb};
use postgres::{Client, NoTls};

fn lines(range: std::ops::RangeInclusive<usize>) -> String {
    range.map(|i| format!("{{\"id\": {i}}}\n")).collect()
}

fn count(c: &mut Client, table: &str) -> i64 {
    c.query_one(&format!("SELECT count(*) FROM {table}"), &[]).unwrap().get(0)
}

/// A connection that keeps the NOTICEs it receives.
fn with_notices(database: &str) -> (Client, Arc<Mutex<Vec<String>>>) {
    let notices = Arc::new(Mutex::new(Vec::new()));
    let sink = notices.clone();
    let mut config: postgres::Config = dsn(database).parse().unwrap();
    config.notice_callback(move |n| {
        sink.lock().unwrap().push(format!("{} HINT: {}", n.message(), n.hint().unwrap_or("")))
    });
    (config.connect(NoTls).unwrap(), notices)
}

#[test]
fn rerunning_is_a_no_op_and_force_loads_again() {
    let db = TestDb::new("ledger_rerun");
    let (mut c, notices) = with_notices(&db.name);
    c.batch_execute("CREATE TABLE t (id int)").unwrap();
    let dir = DataDir::new();
    let path = dir.write("t.jsonl", lines(1..=100));
    let first = ingest(&mut c, &path, "'t'").unwrap();
    assert_eq!((first.status.as_str(), first.rows_inserted), ("loaded", 100));
    let again = ingest(&mut c, &path, "'t'").unwrap();
    assert_eq!((again.status.as_str(), again.lines, again.rows_inserted), ("unchanged", 0, 0));
    assert_eq!(count(&mut c, "t"), 100);
    let notice = notices.lock().unwrap().last().cloned().unwrap();
    assert!(
        notice.contains("is unchanged since it was loaded into public.t at") && notice.contains("force => true"),
        "{notice}"
    );
    let forced = ingest(&mut c, &path, "'t', force => true").unwrap();
    assert_eq!((forced.status.as_str(), forced.rows_inserted), ("loaded", 100));
    assert_eq!(count(&mut c, "t"), 200);
    // the ledger is per table: the same file into another table is a first load
    c.batch_execute("CREATE TABLE t2 (id int)").unwrap();
    assert_eq!(ingest(&mut c, &path, "'t2'").unwrap().status, "loaded");
    let statuses: Vec<String> =
        c.query("SELECT status FROM ingest.loads ORDER BY load_id", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(statuses, ["loaded", "unchanged", "loaded", "loaded"]);
}

#[test]
fn appended_lines_and_only_those_are_loaded() {
    let mut db = TestDb::new("ledger_append");
    db.client.batch_execute("CREATE TABLE t (id int NOT NULL)").unwrap();
    let dir = DataDir::new();
    let path = dir.write("t.jsonl", lines(1..=5000));
    assert_eq!(ingest(&mut db.client, &path, "'t'").unwrap().rows_inserted, 5000);
    let mut content = lines(1..=5000);
    content.push_str(&lines(5001..=6000));
    dir.write("t.jsonl", &content);
    let r = ingest(&mut db.client, &path, "'t'").unwrap();
    assert_eq!((r.status.as_str(), r.lines, r.rows_inserted), ("appended", 1000, 1000));
    assert_eq!(r.bytes, lines(5001..=6000).len() as i64);
    let (n, distinct, max): (i64, i64, i32) = {
        let row = db.client.query_one("SELECT count(*), count(DISTINCT id), max(id) FROM t", &[]).unwrap();
        (row.get(0), row.get(1), row.get(2))
    };
    assert_eq!((n, distinct, max), (6000, 6000, 6000));
    // line numbers go on from where the file was: an error names its line in the whole file
    content.push_str("{\"id\": null}\n");
    dir.write("t.jsonl", &content);
    let (code, message, _) = db_error(&ingest(&mut db.client, &path, "'t'").unwrap_err());
    assert_eq!(code, "23502");
    assert!(message.starts_with(&format!("{path}: line 6001: ")), "{message}");
    let f = db.client.query_one("SELECT byte_offset, lines FROM ingest.files", &[]).unwrap();
    assert_eq!((f.get::<_, i64>(0), f.get::<_, i64>(1)), (lines(1..=6000).len() as i64, 6000));
}

#[test]
fn an_unfinished_last_line_waits_for_the_next_call() {
    let mut db = TestDb::new("ledger_partial");
    db.client.batch_execute("CREATE TABLE t (id int, note text)").unwrap();
    let dir = DataDir::new();
    let path = dir.write("t.jsonl", "{\"id\": 1}\n{\"id\": 2, \"no");
    let r = ingest(&mut db.client, &path, "'t'").unwrap();
    assert_eq!((r.lines, r.rows_inserted), (1, 1));
    let path = dir.write("t.jsonl", "{\"id\": 1}\n{\"id\": 2, \"note\": \"done\"}\n{\"id\": 3}");
    let r = ingest(&mut db.client, &path, "'t'").unwrap();
    assert_eq!((r.status.as_str(), r.lines, r.rows_inserted), ("appended", 2, 2));
    let notes: Vec<Option<String>> =
        db.client.query("SELECT note FROM t ORDER BY id", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(notes, vec![None, Some("done".into()), None]);
}

#[test]
fn replaced_or_truncated_files_are_loaded_as_new() {
    let mut db = TestDb::new("ledger_rotate");
    db.client.batch_execute("CREATE TABLE t (id int)").unwrap();
    let dir = DataDir::new();
    let path = dir.write("t.jsonl", lines(1..=100));
    ingest(&mut db.client, &path, "'t'").unwrap();
    // rotated: a new file of the same name, longer than the old one
    dir.write("t.jsonl", lines(1001..=1200));
    let r = ingest(&mut db.client, &path, "'t'").unwrap();
    assert_eq!((r.status.as_str(), r.rows_inserted), ("loaded", 200));
    // truncated: shorter than what was loaded
    dir.write("t.jsonl", lines(1001..=1010));
    let r = ingest(&mut db.client, &path, "'t'").unwrap();
    assert_eq!((r.status.as_str(), r.rows_inserted), ("loaded", 10));
    assert_eq!(count(&mut db.client, "t"), 310);
}

fn big_chat_file(dir: &DataDir, lines: u64) -> String {
    let mut content = Vec::new();
    write_chat_lines(&mut content, lines, 3).unwrap();
    dir.write("chat_messages.jsonl", &content)
}

#[test]
fn two_sessions_loading_the_same_file_land_its_rows_once() {
    let mut db = TestDb::new("ledger_concurrent");
    db.client.batch_execute(CHAT_TABLE_DDL).unwrap();
    let dir = DataDir::new();
    let path = big_chat_file(&dir, 300_000);
    let spawn = |name: String, path: String| {
        std::thread::spawn(move || {
            let mut c = Client::connect(&dsn(&name), NoTls).unwrap();
            ingest(&mut c, &path, "'chat_messages'").unwrap()
        })
    };
    let a = spawn(db.name.clone(), path.clone());
    // the second starts while the first is loading
    let deadline = Instant::now() + Duration::from_secs(30);
    while db.client.query("SELECT 1 FROM pg_stat_progress_copy", &[]).unwrap().is_empty() {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(5));
    }
    let b = spawn(db.name.clone(), path.clone());
    // it waits on the first: an advisory lock, visible in pg_stat_activity
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let waiting: i64 = db
            .client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'advisory' AND query LIKE '%ingest_jsonl%'",
                &[],
            )
            .unwrap()
            .get(0);
        if waiting == 1 || a.is_finished() {
            break;
        }
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(5));
    }
    let (ra, rb) = (a.join().unwrap(), b.join().unwrap());
    let mut statuses = [ra.status.as_str(), rb.status.as_str()];
    statuses.sort();
    assert_eq!(statuses, ["loaded", "unchanged"]);
    assert_eq!(count(&mut db.client, "chat_messages"), 300_000);
}

#[test]
fn a_killed_load_leaves_no_rows_and_no_ledger_progress() {
    let mut db = TestDb::new("ledger_killed");
    db.client.batch_execute(CHAT_TABLE_DDL).unwrap();
    let dir = DataDir::new();
    let path = big_chat_file(&dir, 1_000_000);
    let mut loader = Client::connect(&db.dsn(), NoTls).unwrap();
    let pid: i32 = loader.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    let p = path.clone();
    let handle = std::thread::spawn(move || ingest(&mut loader, &p, "'chat_messages'"));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rows =
            db.client.query("SELECT tuples_processed FROM pg_stat_progress_copy WHERE pid = $1", &[&pid]).unwrap();
        if rows.first().is_some_and(|r| r.get::<_, i64>(0) > 10_000) {
            break;
        }
        assert!(Instant::now() < deadline, "no progress");
        std::thread::sleep(Duration::from_millis(10));
    }
    db.client.query("SELECT pg_terminate_backend($1)", &[&pid]).unwrap();
    assert!(handle.join().unwrap().is_err());
    let ledger: i64 = db
        .client
        .query_one("SELECT (SELECT count(*) FROM ingest.files) + (SELECT count(*) FROM ingest.loads)", &[])
        .unwrap()
        .get(0);
    assert_eq!((count(&mut db.client, "chat_messages"), ledger), (0, 0));
    let r = ingest(&mut db.client, &path, "'chat_messages'").unwrap();
    assert_eq!((r.status.as_str(), r.rows_inserted), ("loaded", 1_000_000));
}
