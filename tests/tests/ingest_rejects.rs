//! on_error => 'skip': every kind of bad line is left out and explained in ingest.rejects,
//! the good rows around it kept, and the counts add up.

use pg_ingest_tests::{db_error, ingest, DataDir, LoadSummary, TestDb};

fn setup(db: &mut TestDb) {
    db.client
        .batch_execute(
            "CREATE TABLE parent (id int PRIMARY KEY); INSERT INTO parent VALUES (1); \
             CREATE TABLE t (id int PRIMARY KEY, code varchar(3), n int NOT NULL DEFAULT 0 CHECK (n >= 0), \
                             parent int REFERENCES parent, note text); \
             INSERT INTO t (id) VALUES (1000); \
             CREATE FUNCTION no_13() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
               IF NEW.n = 13 THEN RAISE EXCEPTION 'unlucky %', NEW.n; END IF; RETURN NEW; END $$; \
             CREATE TRIGGER no_13 BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION no_13();",
        )
        .unwrap();
}

/// (line, column, sqlstate) of each reject of a load, in line order.
fn rejects(db: &mut TestDb, load_id: i64) -> Vec<(i64, Option<String>, String)> {
    db.client
        .query("SELECT line, column_name, sqlstate FROM ingest.rejects WHERE load_id = $1 ORDER BY line", &[&load_id])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

fn last_load_id(db: &mut TestDb) -> i64 {
    db.client.query_one("SELECT max(load_id) FROM ingest.loads", &[]).unwrap().get(0)
}

#[test]
fn every_kind_of_bad_line_is_skipped_and_explained() {
    let mut db = TestDb::new("skip_every_kind");
    setup(&mut db);
    let dir = DataDir::new();
    let mut content: Vec<u8> = Vec::new();
    let mut push = |line: &[u8]| {
        content.extend_from_slice(line);
        content.push(b'\n');
    };
    push(br#"{"id": 1, "code": "ok"}"#); // 1 good
    push(br#"{"id": 2, "code": }"#); // 2 invalid JSON
    push(br#"[1, 2]"#); // 3 not an object
    push(b"{\"id\": 4, \"note\": \"\xff\"}"); // 4 invalid UTF-8
    push(br#"{"id": 5, "n": "many"}"#); // 5 the type's input function refuses
    push(br#"{"id": 2147483648}"#); // 6 out of range
    push(br#"{"id": 7, "code": "toolong"}"#); // 7 too long for varchar(3)
    push(br#"{"id": 8, "note": "nul \u0000"}"#); // 8 \u0000
    push(br#"{"id": 9, "n": null}"#); // 9 NOT NULL
    push(br#"{"id": 10, "n": -1}"#); // 10 CHECK
    push(br#"{"id": 1}"#); // 11 unique, within the file
    push(br#"{"id": 1000}"#); // 12 unique, with a row already there
    push(br#"{"id": 13, "parent": 99}"#); // 13 foreign key
    push(br#"{"id": 14, "n": 13}"#); // 14 trigger error
    push(b""); // 15 blank
    push(br#"{"id": 16, "parent": 1, "n": 3}"#); // 16 good
    let path = dir.write("t.jsonl", &content);
    let r = ingest(&mut db.client, &path, "'t', on_error => 'skip'").unwrap();
    assert_eq!((r.lines, r.rows_inserted, r.rows_rejected, r.lines_skipped), (16, 2, 13, 1));
    assert_eq!(r.lines, r.rows_inserted + r.rows_rejected + r.lines_skipped);
    let ids: Vec<i32> =
        db.client.query("SELECT id FROM t ORDER BY id", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(ids, vec![1, 16, 1000]);
    let load_id = last_load_id(&mut db);
    let c = |s: &str| Some(s.to_owned());
    assert_eq!(
        rejects(&mut db, load_id),
        vec![
            (2, None, "22P02".into()),
            (3, None, "22P02".into()),
            (4, None, "22021".into()),
            (5, c("n"), "22P02".into()),
            (6, c("id"), "22003".into()),
            (7, c("code"), "22001".into()),
            (8, c("note"), "22P05".into()),
            (9, None, "23502".into()),
            (10, None, "23514".into()),
            (11, None, "23505".into()),
            (12, None, "23505".into()),
            (13, None, "23503".into()),
            (14, None, "P0001".into()),
        ]
    );
    // the raw line, its offset and the message are there to fix it by
    let r = db
        .client
        .query_one(
            "SELECT raw_line, byte_offset, message FROM ingest.rejects WHERE load_id = $1 AND line = 10",
            &[&load_id],
        )
        .unwrap();
    assert_eq!(r.get::<_, String>(0), r#"{"id": 10, "n": -1}"#);
    let offset = content.windows(9).position(|w| w == br#"{"id": 10"#).unwrap() as i64;
    assert_eq!(r.get::<_, i64>(1), offset);
    assert_eq!(r.get::<_, String>(2), "new row for relation \"t\" violates check constraint \"t_n_check\"");
    // and the load is in the history, with its first error
    let h = db
        .client
        .query_one("SELECT status, on_error, lines, rows_inserted, rows_rejected, first_error, loaded_by::text FROM ingest.loads WHERE load_id = $1", &[&load_id])
        .unwrap();
    assert_eq!(h.get::<_, String>(0), "loaded");
    assert_eq!(h.get::<_, String>(1), "skip");
    assert_eq!((h.get::<_, i64>(2), h.get::<_, i64>(3), h.get::<_, i64>(4)), (16, 2, 13));
    assert!(h.get::<_, String>(5).starts_with("line 2: invalid input syntax for type json"));
    assert_eq!(h.get::<_, String>(6), "postgres");
}

#[test]
fn refused_rows_in_large_chunks_are_isolated_and_good_rows_kept() {
    let mut db = TestDb::new("skip_large");
    db.client.batch_execute("CREATE TABLE big (id int PRIMARY KEY, n int CHECK (n <> 7))").unwrap();
    let dir = DataDir::new();
    // 20,000 lines; every 97th violates CHECK, every 101st duplicates an earlier id
    let content: String = (1..=20_000)
        .map(|i| {
            let id = if i % 101 == 0 { i - 50 } else { i };
            let n = if i % 97 == 0 { 7 } else { 1 };
            format!("{{\"id\": {id}, \"n\": {n}}}\n")
        })
        .collect();
    let path = dir.write("big.jsonl", content);
    let r = ingest(&mut db.client, &path, "'big', on_error => 'skip'").unwrap();
    // a line is bad if it breaks CHECK, or repeats the id of a line that was loaded
    let check_fails = |i: i64| i % 97 == 0;
    let bad: Vec<i64> = (1..=20_000).filter(|&i| check_fails(i) || (i % 101 == 0 && !check_fails(i - 50))).collect();
    assert!(bad.len() > 350);
    assert_eq!(r.rows_rejected, bad.len() as i64);
    assert_eq!(r.rows_inserted, 20_000 - bad.len() as i64);
    let load_id = last_load_id(&mut db);
    let lines: Vec<i64> = db
        .client
        .query("SELECT line FROM ingest.rejects WHERE load_id = $1 ORDER BY line", &[&load_id])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(lines, bad, "each rejected line exactly once, with its line number");
    let n: i64 = db.client.query_one("SELECT count(*) FROM big", &[]).unwrap().get(0);
    assert_eq!(n, r.rows_inserted);
}

#[test]
fn max_errors_aborts_with_nothing_kept() {
    let mut db = TestDb::new("max_errors");
    setup(&mut db);
    let dir = DataDir::new();
    let path =
        dir.write("t.jsonl", "{\"id\": 1}\nbad one\n{\"id\": 3}\n{\"id\": -5, \"n\": -1}\nbad three\n{\"id\": 6}\n");
    // at the limit: loads
    let r = ingest(&mut db.client, &path, "'t', on_error => 'skip', max_errors => 3").unwrap();
    assert_eq!((r.rows_inserted, r.rows_rejected), (3, 3));
    // over it: an error saying how many and where, and nothing kept
    db.client.batch_execute("DELETE FROM t WHERE id < 1000; DELETE FROM ingest.loads").unwrap();
    let e = ingest(&mut db.client, &path, "'t', on_error => 'skip', max_errors => 2, force => true").unwrap_err();
    let db_err = e.as_db_error().unwrap();
    assert_eq!(db_err.code().code(), "22000");
    assert_eq!(db_err.message(), format!("{path}: more than 2 lines rejected (max_errors => 2); nothing was loaded"));
    let detail = db_err.detail().unwrap();
    assert!(detail.contains("line 2: invalid input syntax for type json") && detail.contains("line 4:"), "{detail}");
    let counts = db
        .client
        .query_one("SELECT (SELECT count(*) FROM t WHERE id < 1000), (SELECT count(*) FROM ingest.loads), (SELECT count(*) FROM ingest.rejects)", &[])
        .unwrap();
    assert_eq!((counts.get::<_, i64>(0), counts.get::<_, i64>(1), counts.get::<_, i64>(2)), (0, 0, 0));
    // max_errors without skip is a usage error
    assert_eq!(db_error(&ingest(&mut db.client, &path, "'t', max_errors => 2").unwrap_err()).0, "22023");
}

#[test]
fn rejects_can_be_fixed_and_loaded_again() {
    let mut db = TestDb::new("fix_rejects");
    db.client.batch_execute("CREATE TABLE m (id int, amount numeric NOT NULL)").unwrap();
    let dir = DataDir::new();
    let path = dir.write("m.jsonl", "{\"id\": 1, \"amount\": 10}\n{\"id\": 2, \"amount\": \"12,50\"}\n{\"id\": 3}\n");
    let r = ingest(&mut db.client, &path, "'m', on_error => 'skip'").unwrap();
    assert_eq!(r.rows_rejected, 2);
    // the recipe in the README: export the raw lines, fix them, load the fixed file
    let fixed: Vec<String> = db
        .client
        .query(
            "SELECT raw_line FROM ingest.rejects WHERE load_id = (SELECT max(load_id) FROM ingest.loads) ORDER BY line",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| {
            let v: String = r.get(0);
            let mut j: serde_json::Value = serde_json::from_str(&v).unwrap();
            j["amount"] = match j.get("amount").and_then(|a| a.as_str()) {
                Some(s) => serde_json::Value::String(s.replace(',', ".")),
                None => serde_json::json!(0),
            };
            j.to_string() + "\n"
        })
        .collect();
    let fixed_path = dir.write("m.fixed.jsonl", fixed.concat());
    let r = ingest(&mut db.client, &fixed_path, "'m'").unwrap();
    assert_eq!(r.rows_inserted, 2);
    let total: String = db.client.query_one("SELECT sum(amount)::text FROM m", &[]).unwrap().get(0);
    assert_eq!(total, "22.50");
}

#[test]
fn loaded_result_and_history_agree() {
    let mut db = TestDb::new("history");
    db.client.batch_execute("CREATE TABLE h (id int)").unwrap();
    let dir = DataDir::new();
    let path = dir.write("h.jsonl", "{\"id\": 1}\n\n{\"id\": 2}\n");
    let r: LoadSummary = ingest(&mut db.client, &path, "'h'").unwrap();
    let row = db
        .client
        .query_one(
            "SELECT file, target, status, lines, rows_inserted, rows_rejected, lines_skipped, bytes, seconds, \
             started_at <= finished_at FROM ingest.loads",
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, String>(0), r.file);
    assert_eq!(row.get::<_, String>(1), r.target);
    assert_eq!(row.get::<_, String>(2), r.status);
    assert_eq!((row.get::<_, i64>(3), row.get::<_, i64>(4), row.get::<_, i64>(5), row.get::<_, i64>(6)), (3, 2, 0, 1));
    assert_eq!(row.get::<_, i64>(7), r.bytes);
    assert!(row.get::<_, bool>(9));
}

#[test]
fn values_sharing_a_line_are_each_rejected() {
    let mut db = TestDb::new("skip_values_one_line");
    setup(&mut db);
    let dir = DataDir::new();
    // json input: several values start on one line, and two or three of them are refused
    let content = "[{\"id\": 1}, {\"id\": 2, \"n\": -1}, {\"id\": 3, \"code\": \"toolong\"},\n {\"id\": 4, \"n\": }, {\"id\": 5}]\n";
    let path = dir.write("t.json", content);
    let r = ingest(&mut db.client, &path, "'t', on_error => 'skip', format => 'json'").unwrap();
    assert_eq!((r.lines, r.rows_inserted, r.rows_rejected, r.lines_skipped), (5, 2, 3, 0));
    let load_id = last_load_id(&mut db);
    let got: Vec<(i64, i64, String)> = db
        .client
        .query(
            "SELECT line, byte_offset, sqlstate FROM ingest.rejects WHERE load_id = $1 ORDER BY byte_offset",
            &[&load_id],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let at = |s: &str| content.find(s).unwrap() as i64;
    assert_eq!(
        got,
        vec![
            (1, at("{\"id\": 2"), "23514".into()),
            (1, at("{\"id\": 3"), "22001".into()),
            (2, at("{\"id\": 4"), "22P02".into())
        ]
    );
    let ids: Vec<i32> =
        db.client.query("SELECT id FROM t ORDER BY id", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(ids, vec![1, 5, 1000]);
}
