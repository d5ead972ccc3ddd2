//! Input from anywhere, through one engine: `COPY … (FORMAT jsonl)` from a file, a program and
//! STDIN, driven by clients nobody here wrote (psql's `\copy`, psycopg 3); files and streams
//! that are gzip or zstd, JSON arrays, pretty-printed, positional arrays with a header; and
//! `pg-ingest load` streaming a file from the client, exactly once. Each gives exactly the
//! rows and rejects `ingest_jsonl` gives for the same data.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pg_ingest_tests::{connect_as, db_error, dsn, ingest, DataDir, TestDb};
use postgres::Client;

const TABLE: &str = "(id bigint, v text, tags jsonb)";

/// Lines with multi-byte text, blank and CRLF lines, and bad ones (a type error, broken
/// JSON, a value too big for bigint) at known lines.
fn records() -> Vec<String> {
    (1..=400u64)
        .map(|i| match i {
            37 => r#"{"id": "thirty-seven", "v": "bad type"}"#.to_owned(),
            120 => r#"{"id": 120, "v": "broken"#.to_owned(),
            333 => r#"{"id": 99999999999999999999, "v": "too big"}"#.to_owned(),
            _ => format!(r#"{{"id": {i}, "v": "héllo ✓ 𝄞 n°{i} \"q\"", "tags": ["a", {i}]}}"#),
        })
        .collect()
}

fn jsonl() -> String {
    let mut s = String::new();
    for (i, r) in records().iter().enumerate() {
        s.push_str(r);
        s.push_str(if i % 7 == 3 { "\r\n" } else { "\n" });
        if i % 50 == 10 {
            s.push_str("\n   \n");
        }
    }
    s
}

fn bad_lines() -> Vec<i64> {
    // where lines 37, 120 and 333 of records() end up, blank lines included
    let text = jsonl();
    text.lines()
        .enumerate()
        .filter(|(_, l)| l.contains("bad type") || l.contains("broken") || l.contains("too big"))
        .map(|(i, _)| i as i64 + 1)
        .collect()
}

fn table(c: &mut Client, name: &str) {
    c.batch_execute(&format!("CREATE TABLE {name} {TABLE}")).unwrap();
}

/// Rows of `a` not in `b` and of `b` not in `a`, duplicates counted.
fn differences(c: &mut Client, a: &str, b: &str) -> i64 {
    c.query_one(
        &format!(
            "SELECT count(*) FROM ((SELECT id, v, tags::text FROM {a} EXCEPT ALL SELECT id, v, tags::text FROM {b}) \
             UNION ALL (SELECT id, v, tags::text FROM {b} EXCEPT ALL SELECT id, v, tags::text FROM {a})) d"
        ),
        &[],
    )
    .unwrap()
    .get(0)
}

fn count(c: &mut Client, t: &str) -> i64 {
    c.query_one(&format!("SELECT count(*) FROM {t}"), &[]).unwrap().get(0)
}

/// The rejects of the latest load into `target`: (line, sqlstate).
fn rejects_of_latest(c: &mut Client, target: &str) -> Vec<(i64, String)> {
    c.query(
        "SELECT line, sqlstate FROM ingest.rejects WHERE load_id = \
           (SELECT max(load_id) FROM ingest.loads WHERE target = $1) ORDER BY line",
        &[&target],
    )
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

/// `ref`: the file loaded by ingest_jsonl, bad lines skipped; returns its rejects.
fn reference(c: &mut Client, path: &str) -> Vec<(i64, String)> {
    table(c, "ref");
    let r = ingest(c, path, "'ref', on_error => 'skip'").unwrap();
    assert_eq!(r.rows_rejected, 3);
    let rejects = rejects_of_latest(c, "public.ref");
    assert_eq!(rejects.iter().map(|r| r.0).collect::<Vec<_>>(), bad_lines());
    rejects
}

fn psql(db: &str, command: &str) -> std::process::Output {
    Command::new("psql")
        .args(["-X", "-v", "ON_ERROR_STOP=1", "-d", &dsn(db), "-c", command])
        .output()
        .expect("psql runs")
}

#[test]
fn psql_copy_streams_a_file_the_server_cannot_read() {
    let mut db = TestDb::new("anywhere_psql");
    let c = &mut db.client;
    let dir = DataDir::new();
    let readable = dir.write("events.jsonl", jsonl());
    let want = reference(c, &readable);

    // a directory only this (root) user can read
    let private = tempfile::Builder::new().prefix("pg_ingest_private").tempdir_in("/tmp").unwrap();
    std::fs::set_permissions(private.path(), std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let path = private.path().join("events.jsonl");
    std::fs::write(&path, jsonl()).unwrap();
    let path = path.to_str().unwrap();
    let e = c.batch_execute(&format!("COPY ref FROM '{path}' WITH (FORMAT jsonl)")).unwrap_err();
    assert!(db_error(&e).1.contains("Permission denied"), "the server cannot read it: {:?}", db_error(&e));

    table(c, "got");
    let out = psql(&db.name, &format!("\\copy got from '{path}' with (format jsonl, on_error ignore)"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "COPY 397");
    assert!(String::from_utf8_lossy(&out.stderr).contains("3 line(s) of STDIN rejected"));
    assert_eq!(differences(c, "ref", "got"), 0);
    assert_eq!(rejects_of_latest(c, "public.got"), want);

    // gzip through psql too (psql sends the bytes as they are)
    let gz = private.path().join("events.jsonl.gz");
    let status = Command::new("sh").arg("-c").arg(format!("gzip -c {path} > {}", gz.display())).status().unwrap();
    assert!(status.success());
    c.batch_execute("TRUNCATE got").unwrap();
    let out = psql(&db.name, &format!("\\copy got from '{}' with (format auto, on_error ignore)", gz.display()));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(differences(c, "ref", "got"), 0);
}

#[test]
fn psycopg_streams_chunks_cut_anywhere() {
    let mut db = TestDb::new("anywhere_psycopg");
    let c = &mut db.client;
    let dir = DataDir::new();
    let path = dir.write("events.jsonl", jsonl());
    let want = reference(c, &path);
    table(c, "got");
    // pieces of 1 to 9 bytes: lines and UTF-8 sequences are cut anywhere
    let script = r#"
import random, sys, psycopg
data = open(sys.argv[2], "rb").read()
rnd = random.Random(7)
with psycopg.connect(sys.argv[1], autocommit=True) as conn:
    with conn.cursor() as cur:
        with cur.copy("COPY got FROM STDIN WITH (FORMAT jsonl, ON_ERROR ignore)") as copy:
            at = 0
            while at < len(data):
                n = rnd.randint(1, 9)
                copy.write(data[at:at + n])
                at += n
        print(cur.rowcount)
"#;
    let out = Command::new("/usr/bin/python3").args(["-c", script, &dsn(&db.name), &path]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "397");
    assert_eq!(differences(c, "ref", "got"), 0);
    assert_eq!(rejects_of_latest(c, "public.got"), want);

    // a client that gives up mid-stream (an exception inside the copy block sends CopyFail)
    let script = r#"
import sys, psycopg
with psycopg.connect(sys.argv[1]) as conn:
    with conn.cursor() as cur:
        try:
            with cur.copy("COPY got FROM STDIN WITH (FORMAT jsonl)") as copy:
                copy.write(b'{"id": 1}\n{"id": 2}\n{"id"')
                raise RuntimeError("client gave up")
        except Exception as e:
            print(type(e).__name__)
"#;
    c.batch_execute("TRUNCATE got").unwrap();
    let out = Command::new("/usr/bin/python3").args(["-c", script, &dsn(&db.name)]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(count(c, "got"), 0, "nothing of a failed stream is kept");
}

#[test]
fn copy_from_program_and_file_with_copy_rules() {
    let mut db = TestDb::new("anywhere_program");
    let c = &mut db.client;
    let dir = DataDir::new();
    let path = dir.write("events.jsonl", jsonl());
    let want = reference(c, &path);
    let gz = dir.path("events.jsonl.gz");
    assert!(Command::new("sh").arg("-c").arg(format!("gzip -c {path} > {gz}")).status().unwrap().success());
    std::fs::set_permissions(&gz, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();

    table(c, "got");
    let n = c.execute(&format!("COPY got FROM PROGRAM 'gzip -dc {gz}' WITH (FORMAT jsonl, ON_ERROR ignore)"), &[]);
    assert_eq!(n.unwrap(), 397);
    assert_eq!(differences(c, "ref", "got"), 0);
    assert_eq!(rejects_of_latest(c, "public.got"), want);
    // the file itself, compressed: the same
    c.batch_execute("TRUNCATE got").unwrap();
    assert_eq!(c.execute(&format!("COPY got FROM '{gz}' WITH (FORMAT ndjson, ON_ERROR ignore)"), &[]).unwrap(), 397);
    assert_eq!(differences(c, "ref", "got"), 0);

    // a program that fails: COPY's error, nothing kept
    c.batch_execute("TRUNCATE got").unwrap();
    let e = c.batch_execute("COPY got FROM PROGRAM 'echo ''{\"id\": 1}''; exit 3' WITH (FORMAT jsonl)").unwrap_err();
    let (code, message, detail) = db_error(&e);
    assert_eq!((code.as_str(), message.as_str()), ("38000", "program \"echo '{\"id\": 1}'; exit 3\" failed"));
    assert_eq!(detail.as_deref(), Some("child process exited with exit code 3"));
    assert_eq!(count(c, "got"), 0);

    // COPY's permission rules: STDIN needs INSERT only; a program and a file need the roles
    c.batch_execute(
        "CREATE ROLE anywhere_loader LOGIN; GRANT INSERT ON got TO anywhere_loader; \
         GRANT USAGE ON SCHEMA public TO anywhere_loader",
    )
    .unwrap();
    let mut loader = connect_as(&db.name, "anywhere_loader");
    let e = loader.batch_execute(&format!("COPY got FROM PROGRAM 'cat {path}' WITH (FORMAT jsonl)")).unwrap_err();
    assert_eq!(db_error(&e).0, "42501");
    let e = loader.batch_execute(&format!("COPY got FROM '{path}' WITH (FORMAT jsonl)")).unwrap_err();
    assert_eq!(db_error(&e).0, "42501");
    let mut w = loader.copy_in("COPY got (id, v) FROM STDIN WITH (FORMAT jsonl)").unwrap();
    w.write_all(b"{\"id\": 1, \"v\": \"x\", \"tags\": [1]}\n").unwrap();
    assert_eq!(w.finish().unwrap(), 1);
    let tags: Option<String> = c.query_one("SELECT tags::text FROM got", &[]).unwrap().get(0);
    assert_eq!(tags, None, "columns left out of COPY's list get their default");
    c.batch_execute("DROP OWNED BY anywhere_loader; DROP ROLE anywhere_loader").unwrap();

    // unknown options are named; other formats are PostgreSQL's
    let e = c.batch_execute("COPY got FROM STDIN WITH (FORMAT jsonl, DELIMITER ',')").unwrap_err();
    assert_eq!(db_error(&e).0, "42601");
    assert!(db_error(&e).1.contains("\"delimiter\""), "{e}");
    let csv = dir.write("x.csv", "5,five,\n");
    c.batch_execute(&format!("TRUNCATE got; COPY got FROM '{csv}' WITH (FORMAT csv)")).unwrap();
    assert_eq!(count(c, "got"), 1);
}

/// `bytes` through a compressor's command line (`gzip -c`, `zstd -qc`).
fn compressed(command: &str, bytes: &[u8]) -> Vec<u8> {
    let (program, flag) = command.split_once(' ').unwrap();
    let mut child = Command::new(program).arg(flag).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let data = bytes.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&data).unwrap());
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out.stdout
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    compressed("gzip -c", bytes)
}

fn zstd(bytes: &[u8]) -> Vec<u8> {
    compressed("zstd -qc", bytes)
}

#[test]
fn compressed_arrays_pretty_printed_and_positional_files_equal_the_plain_file() {
    let mut db = TestDb::new("anywhere_shapes");
    let c = &mut db.client;
    let dir = DataDir::new();
    let good: Vec<String> = records()
        .into_iter()
        .filter(|r| !r.contains("bad type") && !r.contains("broken") && !r.contains("too big"))
        .collect();
    let plain = good.join("\n") + "\n";
    let values: Vec<serde_json::Value> = good.iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    let array = serde_json::to_string(&values).unwrap();
    let pretty: String = values.iter().map(|v| serde_json::to_string_pretty(v).unwrap() + "\n").collect();
    let pretty_array = serde_json::to_string_pretty(&values).unwrap();
    let positional: String = std::iter::once(r#"["id", "v", "tags"]"#.to_owned())
        .chain(values.iter().map(|v| serde_json::json!([v["id"], v["v"], v["tags"]]).to_string()))
        .collect::<Vec<_>>()
        .join("\n");
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("plain.jsonl", plain.clone().into_bytes()),
        ("plain.jsonl.gz", gzip(plain.as_bytes())),
        ("plain.jsonl.zst", zstd(plain.as_bytes())),
        ("array.json", array.clone().into_bytes()),
        ("array.json.gz", gzip(array.as_bytes())),
        ("pretty.json", pretty.clone().into_bytes()),
        ("pretty_array.json", pretty_array.into_bytes()),
        ("positional.jsonl", positional.into_bytes()),
        ("pretty.json.zst", zstd(pretty.as_bytes())),
    ];
    table(c, "want");
    let r = ingest(c, &dir.write("want.jsonl", &plain), "'want'").unwrap();
    assert_eq!(r.rows_inserted, 397);
    for (name, bytes) in &files {
        let path = dir.write(name, bytes);
        let t = format!("t_{}", name.replace('.', "_"));
        table(c, &t);
        let r = ingest(c, &path, &format!("'{t}'")).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!((r.rows_inserted, r.rows_rejected), (397, 0), "{name}");
        assert_eq!(differences(c, "want", &t), 0, "{name} by ingest_jsonl");
        // loaded: the same again is unchanged
        assert_eq!(ingest(c, &path, &format!("'{t}'")).unwrap().status, "unchanged", "{name}");
        c.batch_execute(&format!("TRUNCATE {t}; COPY {t} FROM '{path}' WITH (FORMAT auto)")).unwrap();
        assert_eq!(differences(c, "want", &t), 0, "{name} by COPY");
    }

    // a bad value in a pretty-printed file is reported at the line where it starts
    let bad = "{\n  \"id\": 1\n}\n{\n  \"id\": \"x\",\n  \"v\": \"y\"\n}\n{\"id\": 3}\n";
    let path = dir.write("bad.json", bad);
    table(c, "bad");
    let r = ingest(c, &path, "'bad', on_error => 'skip'").unwrap();
    assert_eq!((r.rows_inserted, r.rows_rejected), (2, 1));
    assert_eq!(rejects_of_latest(c, "public.bad"), [(4, "22P02".to_owned())]);
    let e = ingest(c, &path, "'bad', force => true").unwrap_err();
    assert!(db_error(&e).1.contains("line 4"), "{e}");

    // a changed compressed file is loaded again as a whole
    let path = dir.write("grow.jsonl.gz", gzip(b"{\"id\": 1}\n"));
    table(c, "grow");
    assert_eq!(ingest(c, &path, "'grow'").unwrap().rows_inserted, 1);
    let path = dir.write("grow.jsonl.gz", gzip(b"{\"id\": 1}\n{\"id\": 2}\n"));
    let r = ingest(c, &path, "'grow'").unwrap();
    assert_eq!((r.status.as_str(), r.rows_inserted), ("loaded", 2));
}

#[test]
fn a_corrupt_gzip_is_a_clear_error_and_leaves_nothing() {
    let mut db = TestDb::new("anywhere_corrupt");
    let c = &mut db.client;
    let dir = DataDir::new();
    let lines: String = (0..20000).map(|i| format!("{{\"id\": {i}, \"v\": \"row {i}\"}}\n")).collect();
    let mut gz = gzip(lines.as_bytes());
    let mid = gz.len() / 2;
    gz[mid..mid + 64].iter_mut().for_each(|b| *b ^= 0x5a);
    let path = dir.write("corrupt.jsonl.gz", &gz);
    let truncated = dir.write("truncated.jsonl.gz", &gz[..mid]);
    table(c, "t");
    for p in [&path, &truncated] {
        let e = ingest(c, p, "'t'").unwrap_err();
        let (code, message, _) = db_error(&e);
        assert_eq!(code, "58030", "{message}");
        assert!(message.contains("could not read"), "{message}");
        let e = c.batch_execute(&format!("COPY t FROM '{p}' WITH (FORMAT jsonl)")).unwrap_err();
        assert_eq!(db_error(&e).0, "58030");
    }
    assert_eq!(count(c, "t"), 0);
    assert_eq!(count(c, "ingest.files"), 0);
}

#[test]
fn the_client_streams_local_files_exactly_once_and_a_killed_client_leaves_nothing() {
    let mut db = TestDb::new("anywhere_client");
    let dir = DataDir::new();
    db.client.batch_execute("CREATE TABLE events (id bigint, v text)").unwrap();
    let path = dir.write("events.jsonl", "");
    let append = |from: u64, n: u64| {
        let mut f = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
        for i in from..from + n {
            writeln!(f, "{{\"id\": {i}, \"v\": \"line {i}\"}}").unwrap();
        }
    };
    let load = |db: &TestDb| {
        let out = db.cli().args(["--json", "load", &path]).assert().success();
        let v: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
        (v["loads"][0]["status"].as_str().unwrap().to_owned(), v["loads"][0]["rows_inserted"].as_i64().unwrap())
    };
    append(1, 100);
    assert_eq!(load(&db), ("loaded".into(), 100));
    append(101, 50);
    assert_eq!(load(&db), ("appended".into(), 50));
    append(151, 25);
    assert_eq!(load(&db), ("appended".into(), 25));
    assert_eq!(load(&db), ("unchanged".into(), 0));
    let mut session = connect_as(&db.name, "postgres");
    let c = &mut session;
    let r = c.query_one("SELECT count(*), count(DISTINCT id) FROM events", &[]).unwrap();
    assert_eq!((r.get::<_, i64>(0), r.get::<_, i64>(1)), (175, 175));
    let r = c.query_one("SELECT byte_offset, lines, source FROM ingest.client_files", &[]).unwrap();
    assert_eq!(r.get::<_, i64>(0), std::fs::metadata(&path).unwrap().len() as i64);
    assert_eq!(r.get::<_, i64>(1), 175);
    assert!(r.get::<_, String>(2).ends_with(&format!(":{path}")));

    // a client killed mid-stream: nothing of its load stays, and the next run loads it all
    let big = dir.write("big.jsonl", (1..=20000).map(|i| format!("{{\"id\": {i}}}\n")).collect::<String>());
    c.batch_execute("CREATE TABLE big (id bigint)").unwrap();
    pg_ingest_tests::slow_inserts(c, "big", 0.0005, None);
    let mut child = db.cli_process().args(["load", &big, "--quiet"]).spawn().unwrap();
    let started = Instant::now();
    loop {
        let active: i64 = c
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'COPY%big%' AND state = 'active' \
                   AND pid <> pg_backend_pid()",
                &[],
            )
            .unwrap()
            .get(0);
        if active > 0 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "the load never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    let started = Instant::now();
    while c
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'COPY%big%' AND pid <> pg_backend_pid()",
            &[],
        )
        .unwrap()
        .get::<_, i64>(0)
        > 0
    {
        assert!(started.elapsed() < Duration::from_secs(30), "the killed client's backend never ended");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(count(c, "big"), 0);
    assert_eq!(count(c, "ingest.client_files WHERE target = 'public.big'"), 0);
    c.batch_execute("DROP TRIGGER IF EXISTS slow ON big").unwrap();
    let out = db.cli().args(["--json", "load", &big]).assert().success();
    let v: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(v["loads"][0]["rows_inserted"], 20000);
    let r = db.client.query_one("SELECT count(*), count(DISTINCT id) FROM big", &[]).unwrap();
    assert_eq!((r.get::<_, i64>(0), r.get::<_, i64>(1)), (20000, 20000));
}
