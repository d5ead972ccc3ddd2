//! ingest_jsonl on the sample chat log and the basic mapping rules.

use pg_ingest_core::sample::{write_chat_lines, CHAT_TABLE_DDL};
use pg_ingest_tests::{db_error, ingest, DataDir, TestDb};
use serde_json::Value;

#[test]
fn chat_sample_loads_with_exact_values() {
    let mut db = TestDb::new("chat_exact");
    let dir = DataDir::new();
    let mut content = Vec::new();
    write_chat_lines(&mut content, 5000, 11).unwrap();
    let path = dir.write("chat_messages.jsonl", &content);
    db.client.batch_execute(CHAT_TABLE_DDL).unwrap();

    // no target: the table is named after the file
    let r = ingest(&mut db.client, &path, "").unwrap();
    assert_eq!((r.status.as_str(), r.target.as_str()), ("loaded", "public.chat_messages"));
    assert_eq!((r.lines, r.rows_inserted, r.rows_rejected, r.lines_skipped), (5000, 5000, 0, 0));
    assert_eq!(r.lines, r.rows_inserted + r.rows_rejected + r.lines_skipped);
    assert_eq!(r.bytes, content.len() as i64);
    assert_eq!(r.file, path);

    let rows = db
        .client
        .query(
            "SELECT id, \"from\", type, site_id, data, extract(epoch FROM \"timestamp\")::bigint, meta::text \
             FROM chat_messages ORDER BY id",
            &[],
        )
        .unwrap();
    assert_eq!(rows.len(), 5000);
    for (line, row) in String::from_utf8(content).unwrap().lines().zip(&rows) {
        let v: Value = serde_json::from_str(line).unwrap();
        assert_eq!(row.get::<_, String>(0), v["id"].as_str().unwrap());
        assert_eq!(row.get::<_, String>(1), v["from"].as_str().unwrap());
        assert_eq!(row.get::<_, String>(2), v["type"].as_str().unwrap());
        assert_eq!(row.get::<_, String>(3), v["site_id"].as_str().unwrap());
        // a missing data key gets the column default ''
        assert_eq!(row.get::<_, String>(4), v.get("data").map_or("", |d| d.as_str().unwrap()));
        assert_eq!(row.get::<_, i64>(5), v["timestamp"].as_i64().unwrap());
        match v.get("meta") {
            None => assert_eq!(row.get::<_, Option<String>>(6), None),
            Some(meta) => {
                let stored: Value = serde_json::from_str(&row.get::<_, String>(6)).unwrap();
                assert_eq!(&stored, meta);
            }
        }
    }
}

#[test]
fn missing_target_names_the_table_it_looked_for() {
    let mut db = TestDb::new("no_target");
    let dir = DataDir::new();
    let path = dir.write("events.jsonl", "{}\n");
    let e = ingest(&mut db.client, &path, "").unwrap_err();
    let (code, msg, detail) = db_error(&e);
    assert_eq!(code, "42P01");
    assert!(msg.contains("no table \"events\""), "{msg}");
    assert!(detail.unwrap().contains("search_path"));
    // found through search_path
    db.client.batch_execute("CREATE SCHEMA s; CREATE TABLE s.events (a int); SET search_path = s, public").unwrap();
    assert_eq!(ingest(&mut db.client, &path, "").unwrap().target, "s.events");
}

#[test]
fn keys_map_exactly_then_case_insensitively_and_unmapped_keys_are_ignored() {
    let mut db = TestDb::new("keys");
    let dir = DataDir::new();
    let path = dir.write(
        "k.jsonl",
        "{\"ID\": 1, \"Name\": \"folded\", \"extra\": true}\n{\"id\": 2, \"ID\": 3, \"name\": \"exact\", \"NAME\": \"x\"}\n",
    );
    db.client.batch_execute("CREATE TABLE k (id int, name text)").unwrap();
    ingest(&mut db.client, &path, "'k'").unwrap();
    let rows: Vec<(i32, String)> = db
        .client
        .query("SELECT id, name FROM k ORDER BY id", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(rows, vec![(1, "folded".into()), (2, "exact".into())]);
}

#[test]
fn columns_map_paths_and_the_whole_line() {
    let mut db = TestDb::new("paths");
    let dir = DataDir::new();
    let line = r#"{"id": "a", "timestamp": 1542700001, "meta": {"client": "ios", "tags": ["x", "y"]}}"#;
    let path = dir.write("p.jsonl", format!("{line}\n{{\"id\": \"b\"}}\n"));
    db.client
        .batch_execute("CREATE TABLE p (id text, sent_at timestamptz, client text, first_tag text, doc jsonb)")
        .unwrap();
    let args = r#"'p', columns => '{"sent_at": "timestamp", "client": "meta.client", "first_tag": "meta.tags[0]", "doc": "$"}'"#;
    ingest(&mut db.client, &path, args).unwrap();
    let r = db
        .client
        .query_one("SELECT extract(epoch FROM sent_at)::bigint, client, first_tag, doc = $1::text::jsonb FROM p WHERE id = 'a'", &[&line])
        .unwrap();
    assert_eq!(
        (r.get::<_, i64>(0), r.get::<_, String>(1), r.get::<_, String>(2), r.get::<_, bool>(3)),
        (1542700001, "ios".into(), "x".into(), true)
    );
    let r =
        db.client.query_one("SELECT sent_at IS NULL, client IS NULL, doc->>'id' FROM p WHERE id = 'b'", &[]).unwrap();
    assert_eq!((r.get::<_, bool>(0), r.get::<_, bool>(1), r.get::<_, String>(2)), (true, true, "b".into()));

    // a bad mapping is a clear error
    let e = ingest(&mut db.client, &path, r#"'p', columns => '{"nope": "id"}'"#).unwrap_err();
    assert_eq!(db_error(&e).0, "42703");
    let e = ingest(&mut db.client, &path, r#"'p', columns => '{"client": "meta..x"}'"#).unwrap_err();
    assert_eq!(db_error(&e).0, "22023");
}

#[test]
fn a_lone_jsonb_column_receives_whole_lines() {
    let mut db = TestDb::new("whole_line");
    let dir = DataDir::new();
    let path = dir.write("docs.jsonl", "{\"a\": 1}\n[1, 2]\n\"text\"\n");
    db.client.batch_execute("CREATE TABLE docs (doc jsonb)").unwrap();
    let r = ingest(&mut db.client, &path, "").unwrap();
    assert_eq!(r.rows_inserted, 3);
    let docs: Vec<String> =
        db.client.query("SELECT doc::text FROM docs", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(docs, vec!["{\"a\": 1}", "[1, 2]", "\"text\""]);
}

#[test]
fn rest_column_receives_unmapped_keys() {
    let mut db = TestDb::new("rest");
    let dir = DataDir::new();
    let path = dir.write("r.jsonl", "{\"id\": 1, \"x\": [1], \"y\": {\"z\": null}}\n{\"id\": 2}\n");
    db.client.batch_execute("CREATE TABLE r (id int, extra jsonb)").unwrap();
    ingest(&mut db.client, &path, "'r', rest => 'extra'").unwrap();
    let rows: Vec<Option<String>> =
        db.client.query("SELECT extra::text FROM r ORDER BY id", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(rows, vec![Some("{\"x\": [1], \"y\": {\"z\": null}}".into()), None]);
    db.client.batch_execute("CREATE TABLE r2 (id int, extra text)").unwrap();
    assert_eq!(db_error(&ingest(&mut db.client, &path, "'r2', rest => 'extra'").unwrap_err()).0, "22023");
}

#[test]
fn missing_keys_get_defaults_as_insert_would_and_null_is_null() {
    let mut db = TestDb::new("defaults");
    let dir = DataDir::new();
    let path = dir.write("d.jsonl", "{\"v\": 1}\n{\"v\": 2, \"label\": null}\n{\"v\": 3, \"label\": \"given\"}\n");
    db.client
        .batch_execute(
            "CREATE SEQUENCE d_seq START 100; \
             CREATE TABLE d (id bigint DEFAULT nextval('d_seq'), v int, label text DEFAULT 'none', \
                             at timestamptz DEFAULT now(), clock timestamptz DEFAULT clock_timestamp(), \
                             ident int GENERATED ALWAYS AS IDENTITY, doubled int GENERATED ALWAYS AS (v * 2) STORED)",
        )
        .unwrap();
    let mut tx = db.client.transaction().unwrap();
    let r = tx.query_one("SELECT rows_inserted FROM ingest_jsonl($1, 'd')", &[&path]).unwrap();
    assert_eq!(r.get::<_, i64>(0), 3);
    let rows =
        tx.query("SELECT id, v, label, at = now(), clock IS NOT NULL, ident, doubled FROM d ORDER BY v", &[]).unwrap();
    type Row = (i64, i32, Option<String>, bool, bool, i32, i32);
    let got: Vec<Row> =
        rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5), r.get(6))).collect();
    assert_eq!(
        got,
        vec![
            (100, 1, Some("none".into()), true, true, 1, 2),
            (101, 2, None, true, true, 2, 4),
            (102, 3, Some("given".into()), true, true, 3, 6),
        ]
    );
    tx.commit().unwrap();
}
