//! `pg-ingest load`, `loads` and `rejects`, driven as a user would: progress lines, the
//! summary, `--json`, exit codes, server errors, and Ctrl-C.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pg_ingest_core::sample::{write_chat_lines, CHAT_TABLE_DDL};
use pg_ingest_tests::{DataDir, TestDb};
use predicates::prelude::*;

fn chat_file(dir: &DataDir, lines: u64) -> String {
    let mut content = Vec::new();
    write_chat_lines(&mut content, lines, 5).unwrap();
    dir.write("chat_messages.jsonl", content)
}

fn json(out: &[u8]) -> serde_json::Value {
    serde_json::from_slice(out).unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(out)))
}

fn count(db: &mut TestDb, table: &str) -> i64 {
    db.client.query_one(&format!("SELECT count(*) FROM {table}"), &[]).unwrap().get(0)
}

#[test]
fn load_prints_progress_lines_then_a_summary() {
    let mut db = TestDb::new("cli_load_progress");
    db.client.batch_execute(CHAT_TABLE_DDL).unwrap();
    // a trigger that takes a little time per row makes the load last about a second
    pg_ingest_tests::slow_inserts(&mut db.client, "chat_messages", 0.0002, None);
    let dir = DataDir::new();
    let path = chat_file(&dir, 4000);
    let size = std::fs::metadata(&path).unwrap().len();
    let out = db.cli().args(["load", &path, "--progress-interval", "0.1"]).assert().success();
    let out = out.get_output();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let progress: Vec<&str> = stderr.lines().filter(|l| l.starts_with("progress: ")).collect();
    assert!(progress.len() >= 3, "expected several progress lines, got:\n{stderr}");
    assert!(progress.iter().all(|l| l.contains("chat_messages.jsonl")), "{stderr}");
    let last = progress.last().unwrap();
    assert!(last.contains("100% of") && last.contains("4000 lines") && last.contains("done"), "{last}");
    // the lines before the last show the load part-way
    assert!(progress[..progress.len() - 1].iter().any(|l| !l.contains("100%")), "{stderr}");
    assert!(stdout.contains(&format!("{path} -> public.chat_messages: loaded (load ")), "{stdout}");
    assert!(stdout.contains("4000 lines: 4000 inserted, 0 rejected, 0 skipped"), "{stdout}");
    assert!(stdout.contains(&format!("{:.1} MB in", size as f64 / 1e6)), "{stdout}");
    assert_eq!(count(&mut db, "chat_messages"), 4000);

    // --quiet: only the summary
    let out = db.cli().args(["load", &path, "--quiet"]).assert().success();
    let out = out.get_output();
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    assert!(String::from_utf8_lossy(&out.stdout).contains(": unchanged (load "));
}

#[test]
fn load_json_reports_each_file() {
    let mut db = TestDb::new("cli_load_json");
    db.client.batch_execute(CHAT_TABLE_DDL).unwrap();
    db.client.batch_execute("CREATE TABLE other (LIKE chat_messages)").unwrap();
    let dir = DataDir::new();
    let first = chat_file(&dir, 300);
    let second = dir.write("more.jsonl", "{\"id\":\"x1\",\"from\":\"a\",\"site_id\":\"s\",\"timestamp\":1}\n\n");
    let out = db.cli().args(["--json", "load", &first]).assert().success();
    let v = json(&out.get_output().stdout);
    let load = &v["loads"][0];
    assert_eq!(load["file"], first.as_str());
    assert_eq!(load["target"], "public.chat_messages");
    assert_eq!(load["status"], "loaded");
    assert_eq!(load["lines"], 300);
    assert_eq!(load["rows_inserted"], 300);
    assert_eq!(load["rows_rejected"], 0);
    assert_eq!(load["bytes"], std::fs::metadata(&first).unwrap().len());
    let load_id = load["load_id"].as_i64().unwrap();
    let (status, rows): (String, i64) = {
        let r = db.client.query_one("SELECT status, rows_inserted FROM ingest.loads WHERE load_id = $1", &[&load_id]);
        let r = r.unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!((status.as_str(), rows), ("loaded", 300));

    // two files, --into, and a blank line that counts as skipped
    let out = db.cli().args(["--json", "load", &first, &second, "--into", "other"]).assert().success();
    let v = json(&out.get_output().stdout);
    assert_eq!(v["loads"].as_array().unwrap().len(), 2);
    assert_eq!(v["loads"][0]["target"], "public.other");
    assert_eq!(v["loads"][1]["lines"], 2);
    assert_eq!(v["loads"][1]["rows_inserted"], 1);
    assert_eq!(v["loads"][1]["lines_skipped"], 1);
    assert_eq!(count(&mut db, "other"), 301);

    // `loads` lists them, most recent first: a client's file as host:path
    let out = db.cli().args(["--json", "loads", "--limit", "2"]).assert().success();
    let v = json(&out.get_output().stdout);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_owned();
    assert_eq!(v["loads"][0]["file"], format!("{host}:{second}"));
    assert_eq!(v["loads"][1]["file"], format!("{host}:{first}"));
    assert_eq!(v["loads"][1]["target"], "public.other");
    db.cli().args(["loads", "--file", "more.jsonl"]).assert().success().stdout(predicate::str::contains(&second));
}

#[test]
fn rejected_lines_exit_3_and_are_listed() {
    let mut db = TestDb::new("cli_load_rejects");
    db.client.batch_execute("CREATE TABLE events (id int PRIMARY KEY, at timestamptz NOT NULL)").unwrap();
    let dir = DataDir::new();
    let path = dir.write(
        "events.jsonl",
        "{\"id\":1,\"at\":\"2024-01-01\"}\n\
         {\"id\":2,\"at\":\"yesterday-ish\"}\n\
         {\"id\":3\n\
         {\"id\":4,\"at\":\"2024-01-04\"}\n\
         {\"id\":4,\"at\":\"2024-01-05\"}\n",
    );
    let out = db.cli().args(["load", &path, "--on-error", "skip"]).assert().code(3);
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(stdout.contains("5 lines: 2 inserted, 3 rejected, 0 skipped"), "{stdout}");
    assert!(
        stdout.contains("line 2, column \"at\": invalid input syntax for type timestamp with time zone"),
        "{stdout}"
    );
    assert!(stdout.contains("(22007)"), "{stdout}");
    assert!(stdout.contains("line 3"), "{stdout}");
    assert!(stdout.contains("line 5") && stdout.contains("(23505)"), "{stdout}");
    let load_id: i64 = stdout.split("(load ").nth(1).unwrap().split(')').next().unwrap().parse().unwrap();
    assert!(stdout.contains(&format!("pg-ingest rejects {load_id}")), "{stdout}");

    // --json: the same, with the first rejects
    let out = db.cli().args(["--json", "load", &path, "--on-error", "skip", "--force"]).assert().code(3);
    let v = json(&out.get_output().stdout);
    let rejects = v["loads"][0]["first_rejects"].as_array().unwrap();
    let lines: Vec<i64> = rejects.iter().map(|r| r["line"].as_i64().unwrap()).collect();
    assert_eq!(lines, [1, 2, 3, 4, 5], "lines 1 and 4 now clash with the first load's rows: {v}");

    // `rejects` shows them all
    let out = db.cli().args(["--json", "rejects", &load_id.to_string()]).assert().success();
    let v = json(&out.get_output().stdout);
    assert_eq!(v["rows_rejected"], 3);
    let sqlstates: Vec<&str> =
        v["rejects"].as_array().unwrap().iter().map(|r| r["sqlstate"].as_str().unwrap()).collect();
    assert_eq!(sqlstates, ["22007", "22P02", "23505"]);
    db.cli()
        .args(["rejects", &load_id.to_string(), "--limit", "1"])
        .assert()
        .success()
        .stdout(predicate::str::contains("3 lines rejected"))
        .stdout(predicate::str::contains("2 more"));
    db.cli().args(["rejects", "999999"]).assert().code(1).stderr(predicate::str::contains("no load 999999"));

    // max_errors exceeded: a failure, nothing kept
    db.cli()
        .args(["load", &path, "--on-error", "skip", "--max-errors", "1", "--force"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("more than 1 lines rejected"));
}

#[test]
fn server_errors_are_one_clear_line() {
    let db = TestDb::new("cli_load_errors");
    let dir = DataDir::new();
    let missing = dir.path("nowhere.jsonl");
    // a file on the server (--server): the server's error
    let out = db.cli().args(["load", "--server", &missing]).assert().code(1);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with(&format!("pg-ingest: {missing}: ERROR (58P01): could not open file")), "{stderr}");
    assert!(stderr.contains("No such file or directory"), "{stderr}");

    let out = db.cli().args(["--json", "load", "--server", &missing]).assert().code(1);
    let v = json(&out.get_output().stdout);
    assert_eq!(v["loads"][0]["error"]["sqlstate"], "58P01");

    // a file on this machine (the default): this machine's error, one line
    let out = db.cli().args(["load", &missing]).assert().code(1);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with(&format!("pg-ingest: {missing}: could not open {missing}")), "{stderr}");
    assert!(stderr.contains("No such file or directory"), "{stderr}");

    // a target that does not exist: the server's error (and its hint, for a server file)
    let path = dir.write("nosuchtable.jsonl", "{}\n");
    db.cli().args(["load", &path]).assert().code(1).stderr(predicate::str::contains("ERROR (42P01)"));
    db.cli()
        .args(["load", "--server", &path])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("ERROR (42P01)"))
        .stderr(predicate::str::contains("HINT:"));
    // usage errors exit 2
    db.cli().args(["load", &path, "--columns", "[1]"]).assert().code(2);
    db.cli().args(["load", &path, "--on-error", "maybe"]).assert().code(2);
    db.cli().args(["load"]).assert().code(2);
}

#[test]
fn ctrl_c_cancels_the_load_on_the_server() {
    let mut db = TestDb::new("cli_load_sigint");
    db.client.batch_execute(CHAT_TABLE_DDL).unwrap();
    pg_ingest_tests::slow_inserts(&mut db.client, "chat_messages", 0.001, None);
    let dir = DataDir::new();
    let path = chat_file(&dir, 100_000); // ~100 s at 1 ms a row: it will not finish by itself
    let mut child = db
        .cli_process()
        .args(["load", &path, "--progress-interval", "0.1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // wait until the load reports rows written
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "pg-ingest ended before any progress");
        if line.starts_with("progress: ") && !line.contains(" 0 rows") {
            break;
        }
    }
    let started = Instant::now();
    Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    let status = child.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    assert_eq!(status.code(), Some(130), "{rest}");
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(rest.contains("cancelled; the server rolled the load back"), "{rest}");
    assert_eq!(count(&mut db, "chat_messages"), 0);
    assert_eq!(count(&mut db, "ingest.loads"), 0);
    let busy: i64 = db
        .client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() \
             AND state <> 'idle'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(busy, 0, "the load's backend is still busy");
}
