//! `writers => N`: the same rows as a single-writer load, and a failed multi-writer load
//! resumed by calling again, with every line loaded exactly once.

use std::time::{Duration, Instant};

use pg_ingest_core::sample::write_chat_lines;
use pg_ingest_tests::{db_error, ingest, DataDir, TestDb};

const TABLE: &str = "(id text PRIMARY KEY, \"from\" text NOT NULL, type text, site_id text NOT NULL, \
                     data text DEFAULT '', \"timestamp\" timestamptz NOT NULL, meta jsonb)";

/// A chat log of `lines` lines with a bad line every 997 (invalid JSON, a bad timestamp, a
/// missing "from").
fn chat_with_bad_lines(dir: &DataDir, lines: u64) -> String {
    let mut content = Vec::new();
    write_chat_lines(&mut content, lines, 8).unwrap();
    let text = String::from_utf8(content).unwrap();
    let mut out = String::new();
    for (i, line) in text.lines().enumerate() {
        match i % 997 {
            100 => out.push_str("{\"id\": broken\n"),
            200 => out.push_str(&line.replace("\"timestamp\":", "\"timestamp\":\"soon\",\"x\":")),
            300 => out.push_str(&line.replace("\"from\":", "\"sender\":")),
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    dir.write("chat.jsonl", out)
}

fn rejects(db: &mut TestDb, load_id: i64) -> Vec<(i64, String)> {
    db.client
        .query(
            "SELECT line, sqlstate FROM ingest.rejects WHERE load_id IN \
               (SELECT load_id FROM ingest.loads WHERE load_id = $1 OR parent_load_id = $1) ORDER BY line",
            &[&load_id],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[test]
fn several_writers_load_the_same_rows_as_one() {
    let mut db = TestDb::new("writers_equal");
    db.client.batch_execute(&format!("CREATE TABLE one {TABLE}; CREATE TABLE three {TABLE};")).unwrap();
    let dir = DataDir::new();
    let path = chat_with_bad_lines(&dir, 30_000);
    let single = ingest(&mut db.client, &path, "'one', on_error => 'skip'").unwrap();
    let multi = ingest(&mut db.client, &path, "'three', on_error => 'skip', writers => 3").unwrap();
    assert_eq!(
        (
            multi.status.as_str(),
            multi.lines,
            multi.rows_inserted,
            multi.rows_rejected,
            multi.lines_skipped,
            multi.bytes
        ),
        (
            single.status.as_str(),
            single.lines,
            single.rows_inserted,
            single.rows_rejected,
            single.lines_skipped,
            single.bytes
        )
    );
    assert!(single.rows_rejected > 80, "{single:?}");
    let differ: i64 = db
        .client
        .query_one(
            "SELECT (SELECT count(*) FROM (SELECT * FROM one EXCEPT ALL SELECT * FROM three) a) + \
                    (SELECT count(*) FROM (SELECT * FROM three EXCEPT ALL SELECT * FROM one) b)",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(differ, 0, "the tables differ");
    // the same rejects, at the same (absolute) line numbers
    assert_eq!(rejects(&mut db, single.load_id), rejects(&mut db, multi.load_id));
    // three ranges were written, by three loads, folded into one ledger entry
    let ranges: i64 = db
        .client
        .query_one(
            "SELECT count(*) FROM ingest.loads WHERE parent_load_id = $1 AND status = 'range'",
            &[&multi.load_id],
        )
        .unwrap()
        .get(0);
    assert_eq!(ranges, 3);
    // the broken lines end with a blank line: 30 blank lines, skipped
    let ledger: Vec<(String, i64, i64)> = db
        .client
        .query("SELECT target, byte_offset, lines FROM ingest.files ORDER BY target", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let size = std::fs::metadata(&path).unwrap().len() as i64;
    assert_eq!(ledger, [("public.one".to_owned(), size, 30_030), ("public.three".to_owned(), size, 30_030)]);
    let left: i64 = db.client.query_one("SELECT count(*) FROM ingest.file_ranges", &[]).unwrap().get(0);
    assert_eq!(left, 0);
    // and again: nothing to do
    let again = ingest(&mut db.client, &path, "'three', writers => 3").unwrap();
    assert_eq!((again.status.as_str(), again.rows_inserted), ("unchanged", 0));
}

#[test]
fn a_killed_writer_then_a_rerun_gives_exactly_the_full_data() {
    let mut db = TestDb::new("writers_resume");
    db.client.batch_execute(&format!("CREATE TABLE chat {TABLE}")).unwrap();
    // the second half of the file is slow to write
    pg_ingest_tests::slow_inserts(&mut db.client, "chat", 0.001, Some("NEW.id > 'msg-000010000'"));
    let dir = DataDir::new();
    let mut content = Vec::new();
    write_chat_lines(&mut content, 20_000, 6).unwrap();
    let path = dir.write("chat.jsonl", content);

    let mut loader = pg_ingest_tests::connect(&db.name);
    let load = {
        let path = path.clone();
        std::thread::spawn(move || ingest(&mut loader, &path, "'chat', writers => 2"))
    };
    // once the fast half has committed, kill the writer of the slow half
    let deadline = Instant::now() + Duration::from_secs(60);
    let pid: i32 = loop {
        let committed: i64 = db.client.query_one("SELECT count(*) FROM ingest.file_ranges", &[]).unwrap().get(0);
        let writers = db
            .client
            .query(
                "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_ingest batch worker' \
                   AND datname = current_database() AND state = 'active' AND query LIKE '%load_range%'",
                &[],
            )
            .unwrap();
        if committed == 1 && writers.len() == 1 {
            break writers[0].get(0);
        }
        assert!(Instant::now() < deadline, "the first range never committed");
        std::thread::sleep(Duration::from_millis(20));
    };
    db.client.query_one("SELECT pg_terminate_backend($1)", &[&pid]).unwrap();
    let e = load.join().unwrap().unwrap_err();
    let (_, message, detail) = db_error(&e);
    assert!(detail.as_deref().unwrap_or("").contains("1 range(s)"), "{message} / {detail:?}");
    let kept: i64 = db.client.query_one("SELECT count(*) FROM chat", &[]).unwrap().get(0);
    assert!(kept > 0 && kept < 20_000, "{kept} rows kept from the committed range");

    // again, with one writer and no slowness: only the rest is loaded
    db.client.batch_execute("DROP TRIGGER slow ON chat").unwrap();
    let r = ingest(&mut db.client, &path, "'chat'").unwrap();
    assert_eq!(r.status, "resumed");
    assert_eq!(r.rows_inserted, 20_000 - kept);
    let (n, distinct): (i64, i64) = {
        let row = db.client.query_one("SELECT count(*), count(DISTINCT id) FROM chat", &[]).unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!((n, distinct), (20_000, 20_000));
    let r = db.client.query_one("SELECT byte_offset, lines FROM ingest.files", &[]).unwrap();
    assert_eq!((r.get::<_, i64>(0), r.get::<_, i64>(1)), (std::fs::metadata(&path).unwrap().len() as i64, 20_000));
    let again = ingest(&mut db.client, &path, "'chat', writers => 2").unwrap();
    assert_eq!((again.status.as_str(), again.rows_inserted), ("unchanged", 0));
}

#[test]
fn writers_refuse_a_table_this_transaction_locked() {
    let mut db = TestDb::new("writers_locked");
    let dir = DataDir::new();
    let path = dir.write("t.jsonl", "{\"a\":1}\n");
    let mut tx = db.client.transaction().unwrap();
    tx.batch_execute("CREATE TABLE t (a int)").unwrap();
    let e = tx.query("SELECT * FROM ingest_jsonl($1, 't', writers => 2)", &[&path]).unwrap_err();
    let (code, message, _) = db_error(&e);
    assert_eq!(code, "55006");
    assert!(message.contains("holds a lock"), "{message}");
    drop(tx);
    db.client.batch_execute("CREATE TABLE u (a int)").unwrap();
    let e = db.client.query("SELECT * FROM ingest_jsonl($1, 'u', writers => 0)", &[&path]).unwrap_err();
    assert_eq!(db_error(&e).0, "22023");
}

#[test]
fn writers_read_values_in_the_callers_time_zone_and_date_style() {
    let mut db = TestDb::new("writers_settings");
    let c = &mut db.client;
    c.batch_execute(
        "CREATE TABLE got (id int, at timestamptz, d date, i interval, ab timestamptz); CREATE TABLE want (LIKE got)",
    )
    .unwrap();
    // wall-clock times (no offset), a day-first date, a SQL-standard interval, a zone
    // abbreviation: what they mean depends on TimeZone, DateStyle, IntervalStyle and
    // timezone_abbreviations
    let lines: Vec<String> = (0..4000)
        .map(|i| {
            format!(
                "{{\"id\": {i}, \"at\": \"2024-{:02}-{:02}T{:02}:30:00\", \"d\": \"{:02}/{:02}/2024\", \"i\": \"-1 2:03:04\", \"ab\": \"2024-05-01 12:00 EST\"}}",
                1 + i % 12,
                1 + i % 28,
                i % 24,
                1 + i % 28,
                1 + i % 12
            )
        })
        .collect();
    let dir = DataDir::new();
    let path = dir.write("settings.jsonl", lines.join("\n") + "\n");
    c.batch_execute(
        "SET TimeZone = 'America/St_Johns'; SET DateStyle = 'SQL, DMY'; SET IntervalStyle = 'sql_standard'; \
         SET timezone_abbreviations = 'Australia'",
    )
    .unwrap();
    let r = ingest(c, &path, "'got', writers => 2").unwrap();
    assert_eq!(r.rows_inserted, 4000);
    for line in &lines {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        c.execute(
            "INSERT INTO want VALUES ($1::int, $2::text::timestamptz, $3::text::date, $4::text::interval, \
             $5::text::timestamptz)",
            &[
                &(v["id"].as_i64().unwrap() as i32),
                &v["at"].as_str(),
                &v["d"].as_str(),
                &v["i"].as_str(),
                &v["ab"].as_str(),
            ],
        )
        .unwrap();
    }
    let differ: i64 = c
        .query_one(
            "SELECT count(*) FROM ((TABLE got EXCEPT ALL TABLE want) UNION ALL (TABLE want EXCEPT ALL TABLE got)) d",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(differ, 0, "the writers read values as the caller's session would");
}
