//! Every line lands once, under concurrency, whatever happens to the file: overlapping loads of
//! a file being appended to (lines written in pieces), files replaced with the same first
//! bytes, rewritten in place, renamed, reached through other spellings; and no combination of
//! options waits on itself. Every session runs with a statement_timeout: nothing may hang.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pg_ingest_tests::{connect_as, db_error, ingest, DataDir, TestDb};
use postgres::Client;

fn session(db: &TestDb) -> Client {
    connect_as(&db.name, "postgres")
}

fn line(id: u64) -> String {
    format!("{{\"id\":{id},\"v\":\"value of line {id} with some padding to make it longer\"}}\n")
}

fn counts(c: &mut Client, table: &str) -> (i64, i64) {
    let r = c.query_one(&format!("SELECT count(*), count(DISTINCT id) FROM {table}"), &[]).unwrap();
    (r.get(0), r.get(1))
}

fn status_and_rows(c: &mut Client, path: &str, extra: &str) -> (String, i64) {
    let r = ingest(c, path, extra).unwrap();
    (r.status, r.rows_inserted)
}

#[test]
fn overlapping_loads_of_a_growing_file_load_each_line_once() {
    let db = TestDb::new("once_growing");
    let mut c = session(&db);
    // no key: a line loaded twice would show as a duplicate
    c.batch_execute("CREATE TABLE t (id bigint, v text)").unwrap();
    let dir = DataDir::new();
    let path = dir.write("t.jsonl", "");
    let done = Arc::new(AtomicBool::new(false));

    // the appender: bursts of lines, the last one of a burst often written in two pieces
    let appender = {
        let (path, done) = (path.clone(), done.clone());
        std::thread::spawn(move || {
            let mut f = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
            let (mut id, started) = (0u64, Instant::now());
            while started.elapsed() < Duration::from_secs(6) {
                let burst = 1 + (id * 7919) % 400;
                let mut text = String::new();
                for _ in 0..burst {
                    id += 1;
                    text.push_str(&line(id));
                }
                let cut = if id % 3 == 0 { text.len() - 17 } else { text.len() };
                f.write_all(&text.as_bytes()[..cut]).unwrap();
                f.flush().unwrap();
                std::thread::sleep(Duration::from_millis(3));
                f.write_all(&text.as_bytes()[cut..]).unwrap();
                f.flush().unwrap();
                std::thread::sleep(Duration::from_millis(2));
            }
            done.store(true, Ordering::SeqCst);
            id
        })
    };
    // loaders: a "scheduled" one and a "manual" one, the second also with writers
    let loaders: Vec<_> = (0..2)
        .map(|k| {
            let (name, path, done) = (db.name.clone(), path.clone(), done.clone());
            std::thread::spawn(move || {
                let mut c = connect_as(&name, "postgres");
                let mut calls = 0;
                while !done.load(Ordering::SeqCst) {
                    let extra = if k == 1 && calls % 2 == 1 { "'t', writers => 2" } else { "'t'" };
                    ingest(&mut c, &path, extra).unwrap();
                    calls += 1;
                }
                calls
            })
        })
        .collect();
    let lines = appender.join().unwrap();
    let calls: Vec<i32> = loaders.into_iter().map(|l| l.join().unwrap()).collect();
    assert!(calls.iter().all(|&n| n >= 3), "each loader ran several times: {calls:?}");
    ingest(&mut c, &path, "'t'").unwrap();
    assert_eq!(counts(&mut c, "t"), (lines as i64, lines as i64));
    let r = c.query_one("SELECT byte_offset, lines FROM ingest.files", &[]).unwrap();
    assert_eq!(
        (r.get::<_, i64>(0), r.get::<_, i64>(1)),
        (std::fs::metadata(&path).unwrap().len() as i64, lines as i64)
    );
}

/// 120 lines of about 80 bytes: the first 4 kB are the first ~50 lines.
fn lines_from(first: u64, n: u64) -> String {
    (first..first + n).map(line).collect()
}

#[test]
fn a_replaced_or_rewritten_file_with_the_same_start_is_loaded_as_new() {
    let db = TestDb::new("once_replaced");
    let mut c = session(&db);
    c.batch_execute("CREATE TABLE t (id bigint, v text)").unwrap();
    let dir = DataDir::new();
    let path = dir.write("t.jsonl", lines_from(1, 120));
    assert_eq!(status_and_rows(&mut c, &path, "'t'"), ("loaded".into(), 120));

    // replaced (another inode) by a longer file with the same first 100 lines
    let new = dir.write("new.jsonl", lines_from(1, 100) + &lines_from(1001, 50));
    std::fs::rename(&new, &path).unwrap();
    assert_eq!(status_and_rows(&mut c, &path, "'t'"), ("loaded".into(), 150));

    // rewritten in place (same inode): same first 4 kB, other lines before the old end
    let mut f = std::fs::OpenOptions::new().write(true).truncate(true).open(&path).unwrap();
    f.write_all((lines_from(1, 60) + &lines_from(2001, 100)).as_bytes()).unwrap();
    drop(f);
    assert_eq!(status_and_rows(&mut c, &path, "'t'"), ("loaded".into(), 160));

    // appended to in place: only the new lines
    let mut f = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(lines_from(3001, 5).as_bytes()).unwrap();
    drop(f);
    assert_eq!(status_and_rows(&mut c, &path, "'t'"), ("appended".into(), 5));
    assert_eq!(counts(&mut c, "t").0, 120 + 150 + 160 + 5);
}

/// A reader can see an append cut anywhere (a write lands page by page): here, just before a
/// line's newline. The line parses, so it loads; its newline, arriving later, ends that same
/// line: no line is counted twice and line numbers stay those of the file.
#[test]
fn a_line_loaded_before_its_newline_arrived_is_counted_once() {
    let db = TestDb::new("once_newline_later");
    let mut c = session(&db);
    c.batch_execute("CREATE TABLE t (id bigint, v text)").unwrap();
    let dir = DataDir::new();
    let path = dir.write("t.jsonl", lines_from(1, 99) + "{\"id\":100}");
    let append = |text: &str| {
        let mut f = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(text.as_bytes()).unwrap();
    };
    let ledger_lines = |c: &mut Client| c.query_one("SELECT lines FROM ingest.files", &[]).unwrap().get::<_, i64>(0);
    let r = ingest(&mut c, &path, "'t'").unwrap();
    assert_eq!((r.lines, r.rows_inserted, ledger_lines(&mut c)), (100, 100, 100));

    // its newline, then two lines, the second one bad: reported as line 102 of the file
    append("\n{\"id\":101}\n{\"id\":\"x\"}\n");
    let r = ingest(&mut c, &path, "'t', on_error => 'skip'").unwrap();
    assert_eq!((r.rows_inserted, r.rows_rejected, r.lines_skipped, r.lines), (1, 1, 1, 3));
    assert_eq!(ledger_lines(&mut c), 102);
    let bad: i64 = c.query_one("SELECT line FROM ingest.rejects", &[]).unwrap().get(0);
    assert_eq!(bad, 102);

    // the same with writers: a line without its newline, then its blanks and newline, then more
    append("{\"id\":103}");
    assert_eq!(ingest(&mut c, &path, "'t', writers => 2").unwrap().rows_inserted, 1);
    append(&(" \r\n".to_owned() + &lines_from(104, 200) + "{\"id\":\"y\"}\n"));
    let r = ingest(&mut c, &path, "'t', writers => 2, on_error => 'skip'").unwrap();
    assert_eq!((r.rows_inserted, r.rows_rejected), (200, 1));
    assert_eq!(ledger_lines(&mut c), 304);
    let bad: Vec<i64> =
        c.query("SELECT line FROM ingest.rejects ORDER BY 1", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(bad, [102, 304]);
    assert_eq!(counts(&mut c, "t"), (302, 302));
}

#[test]
fn one_file_is_one_ledger_entry_whatever_its_spelling_or_name() {
    let db = TestDb::new("once_spelling");
    let mut c = session(&db);
    c.batch_execute("CREATE TABLE t (id bigint, v text)").unwrap();
    let dir = DataDir::new();
    let path = dir.write("f.jsonl", lines_from(1, 30));
    std::fs::create_dir(dir.path("sub")).unwrap();
    std::os::unix::fs::symlink(&path, dir.path("link.jsonl")).unwrap();
    let base = dir.path("");
    let base = base.trim_end_matches('/');
    assert_eq!(status_and_rows(&mut c, &path, "'t'"), ("loaded".into(), 30));
    for spelling in [
        format!("{base}//f.jsonl"),
        format!("{base}/./f.jsonl"),
        format!("{base}/sub/../f.jsonl"),
        format!("{base}/link.jsonl"),
    ] {
        assert_eq!(status_and_rows(&mut c, &spelling, "'t'"), ("unchanged".into(), 0), "{spelling}");
    }
    let real = std::fs::canonicalize(&path).unwrap().to_str().unwrap().to_owned();
    let keys: Vec<String> = c.query("SELECT path FROM ingest.files", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(keys, vec![real]);

    // renamed (log rotation), then appended to: it goes on where it stopped
    let rotated = dir.path("f.jsonl.1");
    std::fs::rename(&path, &rotated).unwrap();
    let mut f = std::fs::OpenOptions::new().append(true).open(&rotated).unwrap();
    f.write_all(lines_from(31, 4).as_bytes()).unwrap();
    drop(f);
    dir.write("f.jsonl", lines_from(101, 7));
    assert_eq!(status_and_rows(&mut c, &rotated, "'t'"), ("appended".into(), 4));
    assert_eq!(status_and_rows(&mut c, &path, "'t'"), ("loaded".into(), 7));
    assert_eq!(status_and_rows(&mut c, &rotated, "'t'"), ("unchanged".into(), 0));
    assert_eq!(counts(&mut c, "t"), (41, 41));
    // rotated again, and this time the new file is loaded first (a glob's name order)
    let rotated = dir.path("f.jsonl.2");
    std::fs::rename(&path, &rotated).unwrap();
    let mut f = std::fs::OpenOptions::new().append(true).open(&rotated).unwrap();
    f.write_all(lines_from(108, 3).as_bytes()).unwrap();
    drop(f);
    dir.write("f.jsonl", lines_from(201, 2));
    assert_eq!(status_and_rows(&mut c, &path, "'t'"), ("loaded".into(), 2));
    assert_eq!(status_and_rows(&mut c, &rotated, "'t'"), ("appended".into(), 3));
    assert_eq!(counts(&mut c, "t"), (46, 46));
    let n: i64 = c.query_one("SELECT count(*) FROM ingest.files", &[]).unwrap().get(0);
    assert_eq!(n, 3);
    // renamed with nothing new: unchanged, and the ledger has its new name
    let old = dir.path("f.jsonl.old");
    std::fs::rename(&rotated, &old).unwrap();
    assert_eq!(status_and_rows(&mut c, &old, "'t'"), ("unchanged".into(), 0));
    let real = std::fs::canonicalize(&old).unwrap().to_str().unwrap().to_owned();
    let known: i64 = c.query_one("SELECT count(*) FROM ingest.files WHERE path = $1", &[&real]).unwrap().get(0);
    assert_eq!(known, 1);
}

#[test]
fn force_with_writers_after_a_partial_multi_writer_load_does_not_wait_on_itself() {
    let db = TestDb::new("once_force_writers");
    let mut c = session(&db);
    c.batch_execute(
        "CREATE TABLE t (id bigint, v text); SET statement_timeout = '30s';
         CREATE FUNCTION t_check() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           IF NEW.id > 1600 THEN PERFORM pg_sleep(0.0005); END IF;
           IF NEW.id = 3001 THEN RAISE EXCEPTION 'line 3001 is refused' USING ERRCODE = '22023'; END IF;
           RETURN NEW;
         END $$;
         CREATE TRIGGER t_check BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION t_check();",
    )
    .unwrap();
    let dir = DataDir::new();
    // the first half loads quickly and commits; the second fails near its end
    let path = dir.write("t.jsonl", lines_from(1, 3010));
    let e = ingest(&mut c, &path, "'t', writers => 2").unwrap_err();
    assert_eq!(db_error(&e).0, "22023");
    let ranges: i64 = c.query_one("SELECT count(*) FROM ingest.file_ranges", &[]).unwrap().get(0);
    assert_eq!(ranges, 1);
    let kept = counts(&mut c, "t").0;
    // the leader forgets the committed range in its open transaction while its writers record
    // theirs: it used to hang here
    let r = ingest(&mut c, &path, "'t', force => true, writers => 2, on_error => 'skip'").unwrap();
    assert_eq!((r.status.as_str(), r.rows_inserted, r.rows_rejected), ("loaded", 3009, 1));
    assert_eq!(counts(&mut c, "t").0, kept + 3009);
    let ranges: i64 = c.query_one("SELECT count(*) FROM ingest.file_ranges", &[]).unwrap().get(0);
    assert_eq!(ranges, 0);
    let r = ingest(&mut c, &path, "'t', writers => 2").unwrap();
    assert_eq!(r.status, "unchanged");
}

#[test]
fn workers_blocked_by_their_callers_transaction_fail_instead_of_waiting() {
    let db = TestDb::new("once_self_wait");
    let mut c = session(&db);
    c.batch_execute("CREATE TABLE t (id bigint PRIMARY KEY, v text); CREATE TABLE x (a int)").unwrap();
    let dir = DataDir::new();
    let path = dir.write("t.jsonl", lines_from(1, 2000));
    // the caller's uncommitted row has a key a writer inserts too
    c.batch_execute("SET statement_timeout = '30s'; BEGIN; INSERT INTO t VALUES (1500, 'mine')").unwrap();
    let started = Instant::now();
    let e = ingest(&mut c, &path, "'t', writers => 2").unwrap_err();
    let (code, message, _) = db_error(&e);
    assert_eq!(code, "40P01", "{message}");
    assert!(started.elapsed() < Duration::from_secs(15));
    c.batch_execute("ROLLBACK").unwrap();
    // run_batch the same way: a query on a table the caller holds locked
    c.batch_execute("BEGIN; LOCK TABLE x IN ACCESS EXCLUSIVE MODE").unwrap();
    let r = c.query_one("SELECT status, sqlstate FROM run_batch(ARRAY['SELECT count(*) FROM x'])", &[]).unwrap();
    assert_eq!((r.get::<_, String>(0), r.get::<_, Option<String>>(1)), ("error".into(), Some("40P01".into())));
    c.batch_execute("ROLLBACK").unwrap();
    // what a writer committed stays (writers commit on their own); once the caller is out of
    // the way the rest loads, each line once
    let (kept, _) = counts(&mut c, "t");
    let r = ingest(&mut c, &path, "'t', writers => 2").unwrap();
    let status = if kept > 0 { "resumed" } else { "loaded" };
    assert_eq!((r.status.as_str(), r.rows_inserted), (status, 2000 - kept));
    assert_eq!(counts(&mut c, "t"), (2000, 2000));
}

#[test]
fn a_cancelled_multi_writer_load_leaves_no_writer_behind() {
    let db = TestDb::new("once_cancel_writers");
    let mut c = session(&db);
    c.batch_execute("CREATE TABLE t (id bigint, v text)").unwrap();
    pg_ingest_tests::slow_inserts(&mut c, "t", 0.002, None);
    let dir = DataDir::new();
    let path = dir.write("t.jsonl", lines_from(1, 4000));
    let mut loader = session(&db);
    let leader: i32 = loader.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    let load = {
        let path = path.clone();
        std::thread::spawn(move || ingest(&mut loader, &path, "'t', writers => 2"))
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while writers(&mut c) < 2 {
        assert!(Instant::now() < deadline, "the writers never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    c.query_one("SELECT pg_cancel_backend($1)", &[&leader]).unwrap();
    let e = load.join().unwrap().unwrap_err();
    assert_eq!(db_error(&e).0, "57014");
    // the leader's error came back only once its writers were gone
    assert_eq!(writers(&mut c), 0);
    let (n, _) = counts(&mut c, "t");
    let committed: i64 = c.query_one("SELECT count(*) FROM ingest.file_ranges", &[]).unwrap().get(0);
    assert_eq!((n, committed), (0, 0), "a writer committed after its leader was cancelled");
    c.batch_execute("DROP TRIGGER slow ON t").unwrap();
    ingest(&mut c, &path, "'t', writers => 2").unwrap();
    assert_eq!(counts(&mut c, "t"), (4000, 4000));
}

fn writers(c: &mut Client) -> i64 {
    c.query_one(
        "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_ingest batch worker' \
           AND datname = current_database()",
        &[],
    )
    .unwrap()
    .get(0)
}

#[test]
fn a_job_whose_worker_dies_before_starting_fails_and_waiting_on_ones_own_job_is_refused() {
    let db = TestDb::new("once_job_orphan");
    let mut c = session(&db);
    c.batch_execute("CREATE TABLE t (id bigint, v text)").unwrap();
    let dir = DataDir::new();
    let path = dir.write("t.jsonl", lines_from(1, 10));
    c.batch_execute("BEGIN").unwrap();
    let job: i64 = c.query_one("SELECT ingest_jsonl_async($1, 't')", &[&path]).unwrap().get(0);
    // in the submitting transaction, waiting would wait for itself
    c.batch_execute("SAVEPOINT s").unwrap();
    let started = Instant::now();
    let e = c.query("SELECT * FROM wait_job($1)", &[&job]).unwrap_err();
    assert_eq!(db_error(&e).0, "55000");
    assert!(started.elapsed() < Duration::from_secs(5));
    c.batch_execute("ROLLBACK TO s").unwrap();
    // the worker (waiting for this transaction) is killed before the job starts
    let mut other = session(&db);
    let pid: i32 = c.query_one("SELECT pid FROM ingest.job_records WHERE job_id = $1", &[&job]).unwrap().get(0);
    let killed: bool = other.query_one("SELECT pg_terminate_backend($1, 10000)", &[&pid]).unwrap().get(0);
    assert!(killed);
    c.batch_execute("COMMIT").unwrap();
    let r = c.query_one("SELECT state, sqlstate, error FROM ingest.jobs WHERE job_id = $1", &[&job]).unwrap();
    assert_eq!((r.get::<_, String>(0), r.get::<_, Option<String>>(1)), ("failed".into(), Some("57P01".into())));
    assert!(r.get::<_, String>(2).contains("before the job started"));
    let e = c.query("SELECT * FROM wait_job($1)", &[&job]).unwrap_err();
    assert_eq!(db_error(&e).0, "57P01");
    assert_eq!(counts(&mut c, "t").0, 0);
}
