//! `pg-ingest batch`: statements split as psql splits them, run through run_batch, each result
//! printed as it completes.

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use pg_ingest_tests::{DataDir, TestDb};
use predicates::prelude::*;

const TRICKY: &str = r#"
-- statements a naive split at ';' would cut apart
INSERT INTO t(v) VALUES ('semi;colon'), ('it''s; fine');   -- a trailing comment; with a semicolon
INSERT INTO t(v) VALUES (E'back\\slash\';quote');
/* a block comment; /* nested; */ still inside; */
INSERT INTO t(v) VALUES ($$dollar; quoted$$), ($tag$ with $$ inside; $tag$);
CREATE FUNCTION add_one(x int) RETURNS int LANGUAGE plpgsql AS $body$
BEGIN
  RETURN x + 1;  -- a semicolon in the body
END;
$body$;
CREATE FUNCTION twice(x int) RETURNS int LANGUAGE sql
BEGIN ATOMIC
  SELECT x * 2;
END;
SELECT 1/0;
SELECT CASE WHEN 1 > 0 THEN 'case; end' ELSE 'x' END AS "odd;name";
"#;

#[test]
fn batch_splits_tricky_statements_and_reports_each() {
    let mut db = TestDb::new("cli_batch_split");
    db.client.batch_execute("CREATE TABLE t (id serial, v text)").unwrap();
    let dir = DataDir::new();
    let script = dir.write("script.sql", TRICKY);
    let out = db.cli().args(["--json", "batch", &script, "--workers", "3"]).assert().code(1);
    let v: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(v["statements"], 7, "{v:#}");
    assert_eq!(v["ok"], 6);
    let mut results = v["results"].as_array().unwrap().clone();
    results.sort_by_key(|r| r["query_no"].as_i64().unwrap());
    let statuses: Vec<&str> = results.iter().map(|r| r["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["ok", "ok", "ok", "ok", "ok", "error", "ok"]);
    assert_eq!(results[5]["sqlstate"], "22012");
    assert_eq!(results[5]["statement"], "SELECT 1/0");
    assert!(results[3]["statement"].as_str().unwrap().ends_with("$body$"));
    assert!(results[4]["statement"].as_str().unwrap().ends_with("END"));
    assert_eq!(results[0]["rows"], 2);

    let values: Vec<String> =
        db.client.query("SELECT v FROM t ORDER BY v", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(values, [" with $$ inside; ", "back\\slash';quote", "dollar; quoted", "it's; fine", "semi;colon"]);
    let (a, b): (i32, i32) = {
        let r = db.client.query_one("SELECT add_one(1), twice(2)", &[]).unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!((a, b), (2, 4));
}

#[test]
fn batch_prints_results_as_they_complete() {
    let db = TestDb::new("cli_batch_live");
    let mut child = db
        .cli_process()
        .args(["batch", "-", "--workers", "2"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"SELECT pg_sleep(2); SELECT 42;").unwrap();
    }
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    // the quick statement is reported while the slow one still runs
    assert!(child.try_wait().unwrap().is_none(), "the first result came only at the end");
    assert!(first.starts_with("[  2] ok") && first.contains("1 row") && first.contains("SELECT 42"), "{first}");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    assert!(child.wait().unwrap().success());
    assert!(rest.contains("[  1] ok") && rest.contains("SELECT pg_sleep(2)"), "{rest}");
    assert!(rest.contains("2 statements in") && rest.contains("2 ok"), "{rest}");
}

#[test]
fn batch_stop_on_error_and_empty_input() {
    let db = TestDb::new("cli_batch_stop");
    let dir = DataDir::new();
    let script = dir.write("stop.sql", "SELECT 1/0; SELECT pg_sleep(30); SELECT pg_sleep(30);");
    let out = db.cli().args(["--json", "batch", &script, "--workers", "2", "--stop-on-error"]).assert().code(1);
    let v: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    let statuses: Vec<&str> = v["results"].as_array().unwrap().iter().map(|r| r["status"].as_str().unwrap()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == "error").count(), 1, "{v:#}");
    assert_eq!(statuses.iter().filter(|s| **s == "cancelled").count(), 2, "{v:#}");

    let empty = dir.write("empty.sql", "-- nothing here;\n/* ; */\n");
    db.cli().args(["batch", &empty]).assert().code(2).stderr(predicate::str::contains("no SQL statements"));
    db.cli()
        .args(["batch", &dir.path("missing.sql")])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("could not read"));
}
