//! Framing rules and errors for bad lines: each names the file, the line, the column when
//! there is one, and carries a proper SQLSTATE; nothing is left behind.

use pg_ingest_tests::{db_error, ingest, DataDir, TestDb};

fn count(db: &mut TestDb, table: &str) -> i64 {
    db.client.query_one(&format!("SELECT count(*) FROM {table}"), &[]).unwrap().get(0)
}

#[test]
fn bom_crlf_blank_lines_and_a_last_line_without_newline() {
    let mut db = TestDb::new("framing");
    let dir = DataDir::new();
    db.client.batch_execute("CREATE TABLE f (n int)").unwrap();
    let content = b"\xEF\xBB\xBF{\"n\": 1}\r\n\r\n{\"n\": 2}\n   \n\n{\"n\": 3}";
    let path = dir.write("f.jsonl", content);
    let r = ingest(&mut db.client, &path, "'f'").unwrap();
    assert_eq!((r.lines, r.rows_inserted, r.lines_skipped, r.rows_rejected), (6, 3, 3, 0));
    assert_eq!(r.bytes, content.len() as i64);
    let ns: Vec<i32> = db.client.query("SELECT n FROM f ORDER BY n", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(ns, vec![1, 2, 3]);
    // an empty file loads nothing, and says so
    let empty = dir.write("empty.jsonl", "");
    let r = ingest(&mut db.client, &empty, "'f'").unwrap();
    assert_eq!((r.lines, r.rows_inserted), (0, 0));
}

#[test]
fn bad_lines_stop_the_load_naming_file_line_and_reason() {
    let mut db = TestDb::new("bad_lines");
    let dir = DataDir::new();
    db.client.batch_execute("CREATE TABLE b (id int, t text)").unwrap();
    let good = "{\"id\": 1}\n\n{\"id\": 2}\n";
    let cases: Vec<(&str, Vec<u8>, &str, &str)> = vec![
        ("json", format!("{good}{{\"id\": 3,}}\n").into_bytes(), "22P02", "line 4: invalid input syntax for type json"),
        ("not_object", format!("{good}[1, 2]\n").into_bytes(), "22P02", "line 4: line is not a JSON object"),
        (
            "utf8",
            [good.as_bytes(), b"{\"t\": \"\xc3\x28\"}\n"].concat(),
            "22021",
            "line 4: invalid byte sequence for encoding \"UTF8\": 0xc3",
        ),
        (
            "range",
            format!("{good}{{\"id\": 2147483648}}\n").into_bytes(),
            "22003",
            "line 4, column \"id\": value \"2147483648\" is out of range for type integer",
        ),
        (
            "syntax",
            format!("{good}{{\"id\": \"x\"}}\n").into_bytes(),
            "22P02",
            "line 4, column \"id\": invalid input syntax for type integer: \"x\"",
        ),
    ];
    for (name, content, code, message) in cases {
        let path = dir.write(&format!("{name}.jsonl"), &content);
        let e = ingest(&mut db.client, &path, "'b'").unwrap_err();
        let (got_code, got_message, _) = db_error(&e);
        assert_eq!(got_code, code, "{name}: {got_message}");
        assert_eq!(got_message, format!("{path}: {message}"), "{name}");
        assert_eq!(count(&mut db, "b"), 0, "{name}: the statement's rows are rolled back");
    }
}

#[test]
fn a_line_over_the_limit_is_an_error_not_an_out_of_memory() {
    let mut db = TestDb::new("long_line");
    let dir = DataDir::new();
    db.client.batch_execute("CREATE TABLE l (t text)").unwrap();
    let long = format!("{{\"t\": \"{}\"}}", "x".repeat(5000));
    let path = dir.write("l.jsonl", format!("{{\"t\": \"short\"}}\n{long}\n{{\"t\": \"short\"}}\n"));
    db.client.batch_execute("SET pg_ingest.max_line_bytes = '4kB'").unwrap();
    let e = ingest(&mut db.client, &path, "'l'").unwrap_err();
    let (code, message, _) = db_error(&e);
    assert_eq!(code, "54000");
    assert_eq!(message, format!("{path}: line 2: line is longer than pg_ingest.max_line_bytes (4096 bytes)"));
    // also when the line is longer than a whole read chunk
    db.client.batch_execute("SET pg_ingest.chunk_bytes = '64kB'; SET pg_ingest.max_line_bytes = '100kB'").unwrap();
    let huge = format!("{{\"t\": \"{}\"}}", "y".repeat(200_000));
    let path = dir.write("h.jsonl", format!("{{\"t\": \"a\"}}\n{huge}\n"));
    let (code, message, _) = db_error(&ingest(&mut db.client, &path, "'l'").unwrap_err());
    assert_eq!(
        (code.as_str(), message),
        ("54000", format!("{path}: line 2: line is longer than pg_ingest.max_line_bytes (102400 bytes)"))
    );
    db.client.batch_execute("RESET pg_ingest.max_line_bytes").unwrap();
    let r = ingest(&mut db.client, &path, "'l'").unwrap();
    assert_eq!(r.rows_inserted, 2);
}

#[test]
fn file_errors_have_their_sqlstates() {
    let mut db = TestDb::new("file_errors");
    let dir = DataDir::new();
    db.client.batch_execute("CREATE TABLE x (a int)").unwrap();
    let (code, message, _) = db_error(&ingest(&mut db.client, &dir.path("missing.jsonl"), "'x'").unwrap_err());
    assert_eq!(code, "58P01");
    assert!(message.contains("missing.jsonl") && message.contains("No such file"), "{message}");
    let (code, _, _) = db_error(&ingest(&mut db.client, "/tmp", "'x'").unwrap_err());
    assert_eq!(code, "42809");
    // a file the server's OS user cannot read
    let secret = dir.write("secret.jsonl", "{}\n");
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let (code, _, _) = db_error(&ingest(&mut db.client, &secret, "'x'").unwrap_err());
    assert_eq!(code, "42501");
    let (code, _, _) = db_error(&ingest(&mut db.client, &dir.path("x.jsonl"), "'x', threads => 0").unwrap_err());
    assert_eq!(code, "22023");
}
