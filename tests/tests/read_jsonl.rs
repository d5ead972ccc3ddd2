//! `read_jsonl()`: a file as rows for SQL. Its rows are held against what `ingest_jsonl` loads
//! from the same file (same engine, same values); a `LIMIT` stops the read; memory stays
//! bounded for files far beyond `work_mem`; bad lines stop the query or are skipped and
//! recorded; and the recipes of the README (transform and filter, joins, upserts, MERGE) run.

use std::io::Write;

use pg_ingest_core::sample::{write_chat_lines, write_tweet_lines, CHAT_TABLE_DDL, TWEETS_TABLE_DDL};
use pg_ingest_tests::{connect_as, db_error, peak_private_mb, DataDir, TestDb};

fn sample(dir: &DataDir, name: &str, lines: u64, tweets: bool) -> String {
    let path = dir.path(name);
    let f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    if tweets {
        write_tweet_lines(f, lines, 7).unwrap();
    } else {
        write_chat_lines(f, lines, 7).unwrap();
    }
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    path
}

/// Rows of `a` not in `b` and of `b` not in `a` (duplicates counted).
fn difference(c: &mut postgres::Client, a: &str, b: &str) -> i64 {
    c.query_one(
        &format!("SELECT (SELECT count(*) FROM (({a}) EXCEPT ALL ({b})) x) + (SELECT count(*) FROM (({b}) EXCEPT ALL ({a})) y)"),
        &[],
    )
    .unwrap()
    .get(0)
}

#[test]
fn rows_are_the_values_a_load_stores() {
    let mut db = TestDb::new("read_same_values");
    let dir = DataDir::new();
    let chat = sample(&dir, "chat.jsonl", 20_000, false);
    let tweets = sample(&dir, "tweets.jsonl", 3_000, true);
    let c = &mut db.client;
    c.batch_execute(CHAT_TABLE_DDL).unwrap();
    c.batch_execute(TWEETS_TABLE_DDL).unwrap();
    c.query("SELECT * FROM ingest_jsonl($1, 'chat_messages')", &[&chat]).unwrap();
    // read_jsonl gives NULL for a key a line lacks (as jsonb_populate_record does), where a
    // load gives the column's DEFAULT: the same rows, loaded into a table without defaults
    c.batch_execute("CREATE TABLE chat_plain (LIKE chat_messages)").unwrap();
    c.query("SELECT * FROM ingest_jsonl($1, 'chat_plain')", &[&chat]).unwrap();
    assert!(c.query_one("SELECT count(*) FROM chat_plain WHERE data IS NULL", &[]).unwrap().get::<_, i64>(0) > 0);
    c.query("SELECT * FROM ingest_jsonl($1, 'tweets')", &[&tweets]).unwrap();

    // the table's row type, streamed (custom scan) and materialised (a lateral call)
    let streamed = format!("SELECT * FROM read_jsonl('{chat}', NULL::chat_messages)");
    let lateral = format!("SELECT r.* FROM (VALUES ('{chat}')) f(p), LATERAL read_jsonl(f.p, NULL::chat_messages) r");
    assert!(c
        .query(&format!("EXPLAIN {streamed}"), &[])
        .unwrap()
        .iter()
        .any(|r| r.get::<_, String>(0).contains("Custom Scan (ReadJsonl)")));
    assert_eq!(difference(c, &streamed, "SELECT * FROM chat_plain"), 0);
    assert_eq!(difference(c, &lateral, "SELECT * FROM chat_plain"), 0);
    // JSON-heavy rows: jsonb, numbers, timestamps, nested values
    assert_eq!(
        difference(c, &format!("SELECT * FROM read_jsonl('{tweets}', NULL::tweets)"), "SELECT * FROM tweets"),
        0
    );
    // a column definition list, with a mapping, a rest column, and epoch units
    let n: i64 = c
        .query_one(
            &format!(
                "SELECT count(*) FROM read_jsonl('{chat}', columns => '{{\"who\": \"from\", \"ts\": \"timestamp\"}}', \
                 rest => 'others') AS r(id text, who text, ts timestamptz, others jsonb) \
                 JOIN chat_messages m ON m.id = r.id AND m.\"from\" = r.who AND m.\"timestamp\" = r.ts \
                 AND r.others ? 'site_id' AND NOT r.others ? 'from'"
            ),
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(n, 20_000);
    // a select-list call gives the same rows
    let n: i64 = c
        .query_one(&format!("SELECT count(*) FROM (SELECT read_jsonl('{chat}', NULL::chat_messages)) x"), &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 20_000);
}

#[test]
fn inputs_of_every_kind_and_formats() {
    let mut db = TestDb::new("read_inputs");
    let dir = DataDir::new();
    let lines = "{\"id\": 1, \"v\": \"a\"}\n{\"id\": 2, \"v\": \"b\"}\n{\"id\": 3}";
    let plain = dir.write("p.jsonl", lines);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(lines.as_bytes()).unwrap();
    let gz = dir.write("p.jsonl.gz", gz.finish().unwrap());
    let array = dir.write("p.json", "[{\"id\": 1, \"v\": \"a\"},\n {\"id\": 2, \"v\": \"b\"}, {\"id\": 3}]");
    let c = &mut db.client;
    for path in [&plain, &gz, &array] {
        let rows =
            c.query(&format!("SELECT id, v FROM read_jsonl('{path}') AS (id int, v text) ORDER BY id"), &[]).unwrap();
        let got: Vec<(i32, Option<String>)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        assert_eq!(got, vec![(1, Some("a".into())), (2, Some("b".into())), (3, None)], "{path}");
    }
    // format => 'jsonl' refuses the array's layout, with the line
    let e = c
        .query(&format!("SELECT * FROM read_jsonl('{array}', format => 'jsonl') AS (id int, v text)"), &[])
        .unwrap_err();
    assert_eq!(db_error(&e).0, "22P02", "{e:?}");
    // not a row type
    let e = c.query(&format!("SELECT * FROM read_jsonl('{plain}', NULL::int)"), &[]).unwrap_err();
    assert_eq!(db_error(&e).0, "42804");
}

#[test]
fn bad_lines_stop_the_query_or_are_recorded() {
    let mut db = TestDb::new("read_bad_lines");
    let dir = DataDir::new();
    let path = dir.write(
        "bad.jsonl",
        "{\"id\": 1, \"at\": \"2024-01-01T00:00:00Z\"}\n{\"id\": \"x\"}\n{broken\n\n{\"id\": 5, \"at\": \"not a time\"}\n{\"id\": 6}\n",
    );
    let c = &mut db.client;
    let q = format!("SELECT id FROM read_jsonl('{path}', on_error => $1) AS (id int, at timestamptz) ORDER BY id");
    let e = c.query(&q, &[&"stop"]).unwrap_err();
    let (state, message, _) = db_error(&e);
    assert_eq!(state, "22P02");
    assert!(message.contains("line 2") && message.contains("\"id\""), "{message}");

    let ids: Vec<i32> = c.query(&q, &[&"skip"]).unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(ids, vec![1, 6]);
    let r = c
        .query_one(
            "SELECT load_id, status, lines, rows_inserted, rows_rejected, lines_skipped FROM ingest.loads \
             ORDER BY load_id DESC LIMIT 1",
            &[],
        )
        .unwrap();
    assert_eq!(r.get::<_, String>(1), "read");
    assert_eq!((r.get::<_, i64>(2), r.get::<_, i64>(3), r.get::<_, i64>(4), r.get::<_, i64>(5)), (6, 2, 3, 1));
    let load_id: i64 = r.get(0);
    let lines: Vec<i64> = c
        .query("SELECT line FROM ingest.rejects WHERE load_id = $1 ORDER BY line", &[&load_id])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(lines, vec![2, 3, 5]);
    // max_errors holds
    let e = c
        .query(
            &format!(
                "SELECT * FROM read_jsonl('{path}', on_error => 'skip', max_errors => 1) AS (id int, at timestamptz)"
            ),
            &[],
        )
        .unwrap_err();
    assert_eq!(db_error(&e).0, "22000");
}

/// Bytes the backend `pid` has read (all its threads), from /proc.
fn read_bytes(pid: i32) -> u64 {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap();
    io.lines().find(|l| l.starts_with("rchar:")).unwrap().split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn limit_reads_a_little_and_memory_stays_bounded() {
    let db = TestDb::new("read_limit");
    let dir = DataDir::new();
    // about 250 MB of JSON
    let path = sample(&dir, "big.jsonl", 700_000, true);
    let size = std::fs::metadata(&path).unwrap().len();
    assert!(size > 200 << 20, "{size}");
    let mut admin = connect_as(&db.name, "postgres");
    admin.batch_execute(TWEETS_TABLE_DDL).unwrap();

    let mut c = connect_as(&db.name, "postgres");
    c.batch_execute("SET work_mem = '4MB'; SET statement_timeout = '120s'").unwrap();
    let pid: i32 = c.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    let before = read_bytes(pid);
    let rows = c.query(&format!("SELECT id FROM read_jsonl('{path}', NULL::tweets) LIMIT 10"), &[]).unwrap();
    assert_eq!(rows.len(), 10);
    let read = read_bytes(pid) - before;
    assert!(read < size / 8, "LIMIT 10 read {read} of {size} bytes");
    // the threads have stopped: the backend is idle, and a second preview works at once
    let rows = c.query(&format!("SELECT id FROM read_jsonl('{path}', NULL::tweets) LIMIT 3"), &[]).unwrap();
    assert_eq!(rows.len(), 3);

    // the whole file, streamed through an aggregate: memory of a few chunks, not of the file
    let n: i64 = c
        .query_one(&format!("SELECT count(*) FROM read_jsonl('{path}', NULL::tweets) WHERE lang = 'en'"), &[])
        .unwrap()
        .get(0);
    assert!(n > 0);
    let streamed = peak_private_mb(pid);
    assert!(streamed < 200.0, "streaming {size} bytes took {streamed:.0} MB");

    // materialised (lateral call): the tuplestore spills past work_mem, memory stays bounded
    let mut m = connect_as(&db.name, "postgres");
    m.batch_execute("SET work_mem = '4MB'; SET statement_timeout = '120s'").unwrap();
    let pid: i32 = m.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    let n2: i64 = m
        .query_one(
            &format!("SELECT count(*) FROM (VALUES ('{path}')) f(p), LATERAL read_jsonl(f.p, NULL::tweets) r WHERE lang = 'en'"),
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(n, n2);
    let materialised = peak_private_mb(pid);
    assert!(materialised < 250.0, "materialising {size} bytes took {materialised:.0} MB");
}

#[test]
fn recipes_transform_join_upsert_merge() {
    let mut db = TestDb::new("read_recipes");
    let dir = DataDir::new();
    let path = dir.write(
        "users.jsonl",
        "{\"id\": 1, \"email\": \"Ann@X.org\", \"team\": \"red\"}\n{\"id\": 2, \"email\": \"BOB@x.org\", \"team\": \"blue\"}\n\
         {\"id\": 3, \"email\": \"cy@x.org\", \"team\": \"none\"}\n{\"id\": 1, \"email\": \"ann@new.org\", \"team\": \"red\"}\n",
    );
    let c = &mut db.client;
    c.batch_execute(
        "CREATE TABLE users (id int PRIMARY KEY, email text NOT NULL, team_id int);
         CREATE TABLE teams (id int PRIMARY KEY, name text UNIQUE);
         INSERT INTO teams VALUES (10, 'red'), (20, 'blue');",
    )
    .unwrap();
    // transform, filter and join in one INSERT … SELECT; DISTINCT ON keeps one row per key
    let n = c
        .execute(
            &format!(
                "INSERT INTO users (id, email, team_id)
                 SELECT DISTINCT ON (r.id) r.id, lower(r.email), t.id
                   FROM read_jsonl('{path}') AS r(id int, email text, team text)
                   JOIN teams t ON t.name = r.team
                  ORDER BY r.id"
            ),
            &[],
        )
        .unwrap();
    assert_eq!(n, 2);
    let emails: Vec<String> =
        c.query("SELECT email FROM users ORDER BY id", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(emails, vec!["ann@x.org", "bob@x.org"]);
    // MERGE from the file
    c.batch_execute(&format!(
        "MERGE INTO users u USING (SELECT * FROM read_jsonl('{path}') AS (id int, email text, team text) WHERE id <> 1) r
           ON u.id = r.id
         WHEN MATCHED THEN UPDATE SET email = r.email
         WHEN NOT MATCHED THEN INSERT (id, email) VALUES (r.id, r.email)"
    ))
    .unwrap();
    let emails: Vec<String> =
        c.query("SELECT email FROM users ORDER BY id", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(emails, vec!["ann@x.org", "BOB@x.org", "cy@x.org"]);
}

#[test]
fn loads_with_on_conflict_keep_the_ledger_and_count_conflicts() {
    let mut db = TestDb::new("read_upserts");
    let dir = DataDir::new();
    let first = dir.write("b1.jsonl", "{\"id\": 1, \"v\": \"a\"}\n{\"id\": 2, \"v\": \"b\"}\n{\"id\": \"bad\"}\n\n");
    let second = dir.write("b2.jsonl", "{\"id\": 2, \"v\": \"B\"}\n{\"id\": 3, \"v\": \"c\"}\n");
    let c = &mut db.client;
    c.batch_execute(
        "CREATE TABLE t (id int PRIMARY KEY, v text, n int DEFAULT 7, loaded timestamptz DEFAULT clock_timestamp())",
    )
    .unwrap();
    let load = |c: &mut postgres::Client, path: &str, extra: &str| -> (String, i64, i64, i64, i64, i64) {
        let r = c
            .query_one(&format!("SELECT status, lines, rows_inserted, rows_rejected, lines_skipped, load_id FROM ingest_jsonl('{path}', 't'{extra})"), &[])
            .unwrap();
        (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5))
    };
    let conflicting = |c: &mut postgres::Client, id: i64| -> i64 {
        c.query_one("SELECT rows_conflicting FROM ingest.loads WHERE load_id = $1", &[&id]).unwrap().get(0)
    };
    let (status, lines, rows, rejected, skipped, id) =
        load(c, &first, ", on_conflict => 'nothing', on_error => 'skip'");
    assert_eq!((status.as_str(), lines, rows, rejected, skipped), ("loaded", 4, 2, 1, 1));
    assert_eq!(conflicting(c, id), 0);
    // DEFAULTs as COPY gives them, per row for volatile ones
    let r = c.query_one("SELECT count(*), count(DISTINCT loaded), min(n) FROM t", &[]).unwrap();
    assert_eq!((r.get::<_, i64>(0), r.get::<_, i64>(1), r.get::<_, i32>(2)), (2, 2, 7));
    // a batch repeating a record: the conflict is counted, the row kept
    let (_, lines, rows, _, skipped, id) = load(c, &second, ", on_conflict => 'nothing'");
    assert_eq!((lines, rows, skipped), (2, 1, 1));
    assert_eq!(conflicting(c, id), 1);
    assert_eq!(c.query_one("SELECT v FROM t WHERE id = 2", &[]).unwrap().get::<_, String>(0), "b");
    // the ledger knows the file: loading it again does nothing
    let (status, ..) = load(c, &second, ", on_conflict => 'update'");
    assert_eq!(status, "unchanged");
    // appended lines only are loaded; update replaces the existing row
    std::fs::OpenOptions::new().append(true).open(&second).unwrap().write_all(b"{\"id\": 1, \"v\": \"A\"}\n").unwrap();
    let (status, lines, rows, _, _, id) = load(c, &second, ", on_conflict => 'update'");
    assert_eq!((status.as_str(), lines, rows), ("appended", 1, 1));
    assert_eq!(conflicting(c, id), 1);
    let vs: Vec<String> = c.query("SELECT v FROM t ORDER BY id", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(vs, vec!["A", "b", "c"]);
    // what cannot work is refused before anything is written
    let e = c
        .query(&format!("SELECT * FROM ingest_jsonl('{first}', 't', on_conflict => 'update', writers => 2)"), &[])
        .unwrap_err();
    assert_eq!(db_error(&e).0, "0A000");
    c.batch_execute("CREATE TABLE nokey (id int, v text)").unwrap();
    let e =
        c.query(&format!("SELECT * FROM ingest_jsonl('{first}', 'nokey', on_conflict => 'update')"), &[]).unwrap_err();
    assert_eq!(db_error(&e).0, "42P10");
    let e = c.query(&format!("SELECT * FROM ingest_jsonl('{first}', 't', on_conflict => 'replace')"), &[]).unwrap_err();
    assert_eq!(db_error(&e).0, "22023");
    // a stop-mode failure rolls the whole load back, ledger included
    let e =
        c.query(&format!("SELECT * FROM ingest_jsonl('{first}', 'nokey', on_conflict => 'nothing')"), &[]).unwrap_err();
    assert_eq!(db_error(&e).0, "22P02");
    assert_eq!(c.query_one("SELECT count(*) FROM nokey", &[]).unwrap().get::<_, i64>(0), 0);
}

#[test]
fn reading_a_server_file_needs_the_right_to() {
    let db = TestDb::new("read_rights");
    let dir = DataDir::new();
    let path = dir.write("x.jsonl", "{\"id\": 1}\n");
    let mut admin = connect_as(&db.name, "postgres");
    admin
        .batch_execute(
            "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'pgi_read_jsonl_user') THEN \
             CREATE ROLE pgi_read_jsonl_user LOGIN; END IF; END $$;",
        )
        .unwrap();
    let mut c = connect_as(&db.name, "pgi_read_jsonl_user");
    let e = c.query(&format!("SELECT * FROM read_jsonl('{path}') AS (id int)"), &[]).unwrap_err();
    assert_eq!(db_error(&e).0, "42501");
}
