//! Loads into Citus tables land in the shards, through Citus's own COPY routing (PostgreSQL 15)
//! or an `INSERT … SELECT` of the same COPY's rows (16+, where Citus's symbols are hidden):
//! every way in
//! (`ingest_jsonl`, writers, `COPY … (FORMAT jsonl)` from a file, a program and STDIN, the
//! client's stream), upserts and `INSERT … SELECT` from `read_jsonl`, into distributed and
//! reference tables, with the same accounting; skip mode keeps the good rows around rows the
//! coordinator or a worker refuses; a worker killed mid-load fails the load, and a rerun loads
//! each line once.
//!
//! Runs against the coordinator that `scripts/citus.sh start` runs (`make test` starts it when
//! Citus is installed or its source tarball is there); skipped with a message otherwise.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use pg_ingest_tests::citus::{coordinator, count, psql, rows_in_shards, SERIAL};
use pg_ingest_tests::{db_error, DataDir};
use postgres::{Client, NoTls};

fn lines(n: i64, from: i64) -> String {
    (from..from + n).map(|i| format!("{{\"id\": {i}, \"v\": \"v{i}\", \"n\": {}}}\n", i % 7)).collect()
}

#[test]
fn loads_land_in_the_shards() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(mut c) = coordinator() else { return };
    let dir = DataDir::new();
    let path = dir.write("citus.jsonl", lines(20_000, 1));
    c.batch_execute(
        "DROP TABLE IF EXISTS pgi_dist, pgi_ref;
         CREATE TABLE pgi_dist (id bigint PRIMARY KEY, v text, n int);
         SELECT create_distributed_table('pgi_dist', 'id');
         CREATE TABLE pgi_ref (id bigint PRIMARY KEY, v text, n int);
         SELECT create_reference_table('pgi_ref');",
    )
    .unwrap();
    for table in ["pgi_dist", "pgi_ref"] {
        let r = c
            .query_one(&format!("SELECT status, lines, rows_inserted FROM ingest_jsonl('{path}', '{table}')"), &[])
            .unwrap();
        assert_eq!((r.get::<_, String>(0), r.get::<_, i64>(1), r.get::<_, i64>(2)), ("loaded".into(), 20_000, 20_000));
        assert_eq!(count(&mut c, &format!("SELECT count(*) FROM {table}")), 20_000, "{table}");
        // nothing in the coordinator's shell table
        assert_eq!(count(&mut c, &format!("SELECT pg_relation_size('{table}')")), 0, "{table}");
        // the ledger knows the file
        let r = c.query_one(&format!("SELECT status FROM ingest_jsonl('{path}', '{table}')"), &[]).unwrap();
        assert_eq!(r.get::<_, String>(0), "unchanged");
    }
    assert_eq!(rows_in_shards(&mut c, "pgi_dist"), 20_000);
    assert_eq!(
        count(&mut c, "SELECT sum(n)::bigint FROM pgi_dist"),
        count(&mut c, "SELECT sum(n)::bigint FROM pgi_ref")
    );

    // COPY … (FORMAT jsonl)
    c.batch_execute(&format!("TRUNCATE pgi_dist; COPY pgi_dist FROM '{path}' (FORMAT jsonl)")).unwrap();
    assert_eq!(rows_in_shards(&mut c, "pgi_dist"), 20_000);
    assert_eq!(count(&mut c, "SELECT pg_relation_size('pgi_dist')"), 0);

    // upserts: a batch repeating 5000 records and adding 1000
    let again = dir.write("again.jsonl", lines(6_000, 15_001).replace("\"v\": \"v", "\"v\": \"w"));
    let r = c
        .query_one(
            &format!("SELECT rows_inserted, load_id FROM ingest_jsonl('{again}', 'pgi_dist', on_conflict => 'update')"),
            &[],
        )
        .unwrap();
    assert_eq!(r.get::<_, i64>(0), 6_000);
    let load_id: i64 = r.get(1);
    assert_eq!(count(&mut c, &format!("SELECT rows_conflicting FROM ingest.loads WHERE load_id = {load_id}")), 5_000);
    assert_eq!(rows_in_shards(&mut c, "pgi_dist"), 21_000);
    assert_eq!(count(&mut c, "SELECT count(*) FROM pgi_dist WHERE v LIKE 'w%'"), 6_000);

    // INSERT … SELECT from read_jsonl, transformed, routed by Citus
    c.batch_execute(&format!(
        "TRUNCATE pgi_dist; INSERT INTO pgi_dist SELECT id, upper(v), n FROM read_jsonl('{path}', NULL::pgi_dist) WHERE n > 0"
    ))
    .unwrap();
    let expected = (1..=20_000).filter(|i| i % 7 > 0).count() as i64;
    assert_eq!(rows_in_shards(&mut c, "pgi_dist"), expected);
    assert_eq!(count(&mut c, "SELECT count(*) FROM pgi_dist WHERE v LIKE 'V%'"), expected);
}

/// psql on the coordinator, as a client would run it.
/// (rows, distinct ids) in the table's shards; and nothing in the coordinator's shell.
fn landed(c: &mut Client, table: &str) -> (i64, i64) {
    assert_eq!(count(c, &format!("SELECT pg_relation_size('{table}')")), 0, "{table}: rows in the shell table");
    (rows_in_shards(c, table), count(c, &format!("SELECT count(DISTINCT id) FROM {table}")))
}

#[test]
fn every_way_in_lands_in_the_shards() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(mut c) = coordinator() else { return };
    let dir = DataDir::new();
    let n = 30_000;
    let path = dir.write("ways.jsonl", lines(n, 1));
    c.batch_execute(
        "DROP TABLE IF EXISTS pgi_ways, pgi_ways_ref;
         CREATE TABLE pgi_ways (id bigint PRIMARY KEY, v text NOT NULL, n int);
         SELECT create_distributed_table('pgi_ways', 'id', shard_count => 8);
         CREATE TABLE pgi_ways_ref (id bigint PRIMARY KEY, v text NOT NULL, n int);
         SELECT create_reference_table('pgi_ways_ref');",
    )
    .unwrap();
    let ways: Vec<(&str, String)> = vec![
        ("writers", format!("SELECT * FROM ingest_jsonl('{path}', 'pgi_ways', writers => 2, force => true)")),
        ("skip", format!("SELECT * FROM ingest_jsonl('{path}', 'pgi_ways', on_error => 'skip', force => true)")),
        ("program", format!("COPY pgi_ways FROM PROGRAM 'cat {path}' (FORMAT jsonl)")),
        ("COPY ON_ERROR", format!("COPY pgi_ways FROM '{path}' (FORMAT jsonl, ON_ERROR ignore)")),
    ];
    for (way, sql) in &ways {
        c.batch_execute("TRUNCATE pgi_ways").unwrap();
        c.batch_execute(sql).unwrap_or_else(|e| panic!("{way}: {:?}", db_error(&e)));
        assert_eq!(landed(&mut c, "pgi_ways"), (n, n), "{way}");
    }
    // a writer per range: each committed once, as on a single node
    let ranges =
        count(&mut c, "SELECT count(*) FROM ingest.loads WHERE target_oid = 'pgi_ways'::regclass AND status = 'range'");
    assert!(ranges >= 2, "writers => 2 loaded {ranges} ranges");
    for table in ["pgi_ways", "pgi_ways_ref"] {
        // FROM STDIN: psql's \copy and the client's stream
        c.batch_execute(&format!("TRUNCATE {table}")).unwrap();
        let out = psql(&format!("\\copy {table} FROM '{path}' WITH (FORMAT jsonl)"));
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("COPY {n}")));
        assert_eq!(landed(&mut c, table), (n, n), "{table}: \\copy");
        c.batch_execute(&format!("TRUNCATE {table}")).unwrap();
        let out = Command::new(pg_ingest_tests::pg_ingest_bin())
            .env_remove("DATABASE_URL")
            .args([
                "--dsn",
                &format!(
                    "host=127.0.0.1 port={} user=postgres dbname=postgres",
                    std::env::var("PG_INGEST_CITUS_PORT").unwrap()
                ),
            ])
            .args(["load", &path, "--into", table, "--force"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(landed(&mut c, table), (n, n), "{table}: pg-ingest load");
    }
    // the reference table's every placement has every row
    let placements = c
        .query("SELECT result FROM run_command_on_placements('pgi_ways_ref', 'SELECT count(*) FROM %s')", &[])
        .unwrap();
    assert!(placements.len() >= 2);
    for p in placements {
        assert_eq!(p.get::<_, String>(0), n.to_string());
    }
}

/// The load's rejects: line → (SQLSTATE, message).
fn rejects_of(c: &mut Client, load_id: i64) -> BTreeMap<i64, (String, String)> {
    c.query(&format!("SELECT line, sqlstate, message FROM ingest.rejects WHERE load_id = {load_id}"), &[])
        .unwrap()
        .iter()
        .map(|r| (r.get::<_, i64>(0), (r.get::<_, String>(1), r.get::<_, String>(2))))
        .collect()
}

#[test]
fn skip_mode_keeps_the_good_rows_around_rows_the_coordinator_or_a_worker_refuses() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(mut c) = coordinator() else { return };
    let dir = DataDir::new();
    let n = 20_000i64;
    // line → what is wrong with it; every other line is good
    let mut bad: BTreeMap<i64, (&str, String)> = BTreeMap::new();
    let mut text = String::new();
    for line in 1..=n {
        let id = line;
        let l = match line {
            // the key of a row the table already has (a worker refuses: unique), at the start,
            // middle and end of the file
            1 | 10_000 | 20_000 => format!("{{\"id\": 900000, \"v\": \"dup{line}\", \"n\": 1}}"),
            // a key an earlier line of the file has: the later line is refused
            7_001 => "{\"id\": 7000, \"v\": \"again\", \"n\": 1}".to_owned(),
            // a CHECK and a NOT NULL constraint: found on the coordinator
            2 | 15_000 => format!("{{\"id\": {id}, \"v\": \"neg\", \"n\": -1}}"),
            3 => format!("{{\"id\": {id}, \"n\": 1}}"),
            // not JSON, and no distribution column: the parse threads and Citus refuse them
            4 => "{\"id\": 4, \"v\": ".to_owned(),
            5 => "{\"v\": \"no id\", \"n\": 1}".to_owned(),
            // a trigger on the shards refuses it: the worker's error names no key (found by
            // halving)
            12_345 => "{\"id\": 12345, \"v\": \"boom\", \"n\": 1}".to_owned(),
            _ => format!("{{\"id\": {id}, \"v\": \"v{id}\", \"n\": {}}}", id % 7),
        };
        let why = match line {
            1 | 10_000 | 20_000 | 7_001 => Some(("XX000", "duplicate key value")),
            12_345 => Some(("XX000", "boom refused")),
            2 | 15_000 => Some(("23514", "violates check constraint \"pgi_skip_n_check\"")),
            3 => Some(("23502", "null value in column \"v\"")),
            4 => Some(("", "")),
            5 => Some(("23502", "null value in column \"id\"")),
            _ => None,
        };
        if let Some((state, message)) = why {
            bad.insert(line, (state, message.to_owned()));
        }
        text.push_str(&l);
        text.push('\n');
    }
    let path = dir.write("skip.jsonl", text);
    for sql in [
        "DROP TABLE IF EXISTS pgi_skip",
        "CREATE TABLE pgi_skip (id bigint PRIMARY KEY, v text NOT NULL, n int CHECK (n >= 0))",
        "SELECT create_distributed_table('pgi_skip', 'id', shard_count => 8)",
        "CREATE OR REPLACE FUNCTION pgi_boom() RETURNS trigger LANGUAGE plpgsql AS
           $$BEGIN IF NEW.v = 'boom' THEN RAISE EXCEPTION 'boom refused'; END IF; RETURN NULL; END$$",
        "SET citus.enable_unsafe_triggers = on",
        "CREATE TRIGGER pgi_boom AFTER INSERT ON pgi_skip FOR EACH ROW EXECUTE FUNCTION pgi_boom()",
        "RESET citus.enable_unsafe_triggers",
        "INSERT INTO pgi_skip VALUES (900000, 'existing', 0)",
    ] {
        c.batch_execute(sql).unwrap_or_else(|e| panic!("{sql}: {:?}", db_error(&e)));
    }
    // max_errors holds: more rejects than allowed fail the load, nothing kept
    let e = c
        .query(&format!("SELECT * FROM ingest_jsonl('{path}', 'pgi_skip', on_error => 'skip', max_errors => 5)"), &[])
        .unwrap_err();
    assert!(db_error(&e).1.contains("max_errors"), "{}", db_error(&e).1);
    assert_eq!(rows_in_shards(&mut c, "pgi_skip"), 1);

    let r = c
        .query_one(
            &format!("SELECT rows_inserted, rows_rejected, load_id FROM ingest_jsonl('{path}', 'pgi_skip', on_error => 'skip')"),
            &[],
        )
        .unwrap();
    let (inserted, rejected, load_id): (i64, i64, i64) = (r.get(0), r.get(1), r.get(2));
    let rejects = rejects_of(&mut c, load_id);
    assert_eq!(rejects.keys().copied().collect::<Vec<_>>(), bad.keys().copied().collect::<Vec<_>>());
    for (line, (state, message)) in &bad {
        let (got_state, got_message) = &rejects[line];
        if !state.is_empty() {
            assert_eq!(got_state, state, "line {line}: {got_message}");
        }
        assert!(got_message.contains(message.as_str()), "line {line}: {got_message}");
    }
    assert_eq!((inserted, rejected), (n - bad.len() as i64, bad.len() as i64));
    assert_eq!(rows_in_shards(&mut c, "pgi_skip"), n - bad.len() as i64 + 1);
    // every good line's row, once
    let good: i64 = (1..=n).filter(|l| !bad.contains_key(l)).sum();
    assert_eq!(count(&mut c, "SELECT sum(id)::bigint FROM pgi_skip WHERE id <> 900000"), good);
    assert_eq!(count(&mut c, "SELECT count(DISTINCT id) FROM pgi_skip"), n - bad.len() as i64 + 1);

    // stop mode: a CHECK violation names its line (found on the coordinator); a worker's
    // refusal fails the load with the worker's error; nothing is kept either way
    c.batch_execute("TRUNCATE pgi_skip; INSERT INTO pgi_skip VALUES (900000, 'existing', 0)").unwrap();
    let two = dir.write("two.jsonl", "{\"id\": 1, \"v\": \"a\", \"n\": 1}\n{\"id\": 2, \"v\": \"b\", \"n\": -1}\n");
    let e = c.query(&format!("SELECT * FROM ingest_jsonl('{two}', 'pgi_skip')"), &[]).unwrap_err();
    let (state, message, _) = db_error(&e);
    assert_eq!(state, "23514", "{message}");
    assert!(message.contains("line 2") && message.contains("pgi_skip_n_check"), "{message}");
    let dup = dir.write("dup.jsonl", "{\"id\": 1, \"v\": \"a\", \"n\": 1}\n{\"id\": 900000, \"v\": \"b\", \"n\": 1}\n");
    let e = c.query(&format!("SELECT * FROM ingest_jsonl('{dup}', 'pgi_skip')"), &[]).unwrap_err();
    assert!(db_error(&e).1.contains("duplicate key value"), "{}", db_error(&e).1);
    assert_eq!(rows_in_shards(&mut c, "pgi_skip"), 1);
}

/// The worker node's processes: its postmaster (from postmaster.pid) and the postmaster's
/// children.
fn node_processes(data: &std::path::Path) -> Vec<i32> {
    let pid: i32 =
        std::fs::read_to_string(data.join("postmaster.pid")).unwrap().lines().next().unwrap().parse().unwrap();
    let mut pids = vec![pid];
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else { continue };
        // pid (comm) state ppid …
        let ppid =
            stat.rsplit_once(") ").and_then(|(_, rest)| rest.split(' ').nth(1)).and_then(|p| p.parse::<i32>().ok());
        if ppid == Some(pid) {
            pids.push(child);
        }
    }
    pids
}

#[test]
fn a_worker_killed_mid_load_fails_the_load_and_a_rerun_loads_each_line_once() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(mut c) = coordinator() else { return };
    let dir = DataDir::new();
    let n = 600_000;
    let path = dir.write("killed.jsonl", lines(n, 1));
    c.batch_execute(
        "DROP TABLE IF EXISTS pgi_killed;
         CREATE TABLE pgi_killed (id bigint PRIMARY KEY, v text, n int);
         SELECT create_distributed_table('pgi_killed', 'id', shard_count => 8);",
    )
    .unwrap();
    let port = std::env::var("PG_INGEST_CITUS_PORT").unwrap();
    let worker = pg_ingest_tests::pg_dir().join("citus/worker1");
    let load = {
        let path = path.clone();
        let port = port.clone();
        std::thread::spawn(move || {
            let dsn =
                format!("host=127.0.0.1 port={port} user=postgres dbname=postgres options='-c statement_timeout=120s'");
            let mut c = Client::connect(&dsn, NoTls).unwrap();
            c.query(&format!("SELECT * FROM ingest_jsonl('{path}', 'pgi_killed')"), &[]).map(|_| ())
        })
    };
    // once the worker is taking rows: kill -9 the node
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut w = Client::connect(
        &format!("host=127.0.0.1 port={} user=postgres dbname=postgres", port.parse::<u16>().unwrap() + 1),
        NoTls,
    )
    .unwrap();
    loop {
        assert!(Instant::now() < deadline, "the worker never saw the load");
        // the coordinator's commands at work on the node (COPY into the shards, or the
        // INSERT … SELECT path's intermediate results)
        let copying = count(
            &mut w,
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND pid <> pg_backend_pid() \
             AND backend_type = 'client backend' AND query NOT ILIKE '%pg_stat_activity%'",
        );
        if copying > 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(w);
    for pid in node_processes(&worker) {
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
    }
    let failed = load.join().unwrap();
    let e = failed.expect_err("the load went on with a worker killed");
    eprintln!("the load failed with: {}", db_error(&e).1);
    // the node again, as the operator would start it
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let started = Command::new("runuser")
            .args(["-u", "postgres", "--", "env", "-u", "RUST_BACKTRACE"])
            .arg(pg_ingest_tests::pg_program("pg_ctl"))
            .arg("-D")
            .arg(&worker)
            .arg("-l")
            .arg(worker.with_extension("log"))
            .args(["-w", "-t", "60", "start"])
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        if started.success() {
            break;
        }
        // the killed node's last processes may still hold its shared memory
        assert!(Instant::now() < deadline, "the worker did not start again");
        std::thread::sleep(Duration::from_millis(500));
    }
    // the coordinator's first use of its old connection to the node fails: Citus drops it
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Err(e) = c.batch_execute("SELECT recover_prepared_transactions()") {
        assert!(Instant::now() < deadline, "the coordinator cannot reach the worker again: {e}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(rows_in_shards(&mut c, "pgi_killed"), 0, "rows of the failed load were kept");
    let r =
        c.query_one(&format!("SELECT status, rows_inserted FROM ingest_jsonl('{path}', 'pgi_killed')"), &[]).unwrap();
    assert_eq!((r.get::<_, String>(0), r.get::<_, i64>(1)), ("loaded".into(), n));
    assert_eq!(landed(&mut c, "pgi_killed"), (n, n));
    let r = c.query_one(&format!("SELECT status FROM ingest_jsonl('{path}', 'pgi_killed')"), &[]).unwrap();
    assert_eq!(r.get::<_, String>(0), "unchanged");
}

/// Loads `lines` in skip mode into a fresh distributed `table` (`ddl`, then `setup`); the rows
/// kept (column `n`, ordered) and the rejected line numbers.
fn skip_load(
    c: &mut Client,
    dir: &DataDir,
    table: &str,
    ddl: &str,
    setup: &str,
    lines: &[&str],
) -> (Vec<String>, Vec<i64>) {
    c.batch_execute(&format!("DROP TABLE IF EXISTS {table}")).unwrap();
    c.batch_execute(ddl).unwrap();
    c.batch_execute(&format!("SELECT create_distributed_table('{table}', 'k', shard_count => 4)")).unwrap();
    if !setup.is_empty() {
        c.batch_execute(setup).unwrap();
    }
    let path = dir.write(&format!("{table}.jsonl"), lines.join("\n") + "\n");
    let load_id: i64 = c
        .query_one(&format!("SELECT load_id FROM ingest_jsonl('{path}', '{table}', on_error => 'skip')"), &[])
        .unwrap()
        .get(0);
    let kept = c.query(&format!("SELECT n FROM {table} ORDER BY n"), &[]).unwrap().iter().map(|r| r.get(0)).collect();
    let rejected = rejects_of(c, load_id).into_keys().collect();
    (kept, rejected)
}

/// A worker's unique violation names a key, not a row: the rows with that key are only where
/// to look, and a row is rejected when it fails on its own (found by an attacker: a partial
/// unique index, a row the coordinator refused with the same key, keys printed in the
/// session's own settings each made the wrong row rejected).
#[test]
fn a_key_named_by_a_worker_is_a_hint_and_the_row_it_names_is_tried_alone() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(mut c) = coordinator() else { return };
    let dir = DataDir::new();
    let partial = "CREATE TABLE pgi_pu (k int, v text, n text); CREATE UNIQUE INDEX ON pgi_pu (k) WHERE v <> 'x'";
    // the first line is outside the index; the second has the key of the table's row
    let (kept, rejected) = skip_load(
        &mut c,
        &dir,
        "pgi_pu",
        partial,
        "INSERT INTO pgi_pu VALUES (1, 'z', 'existing')",
        &[
            r#"{"k": 1, "v": "x", "n": "good1"}"#,
            r#"{"k": 1, "v": "y", "n": "dup2"}"#,
            r#"{"k": 2, "v": "y", "n": "good3"}"#,
        ],
    );
    assert_eq!((kept, rejected), (vec!["existing".into(), "good1".into(), "good3".into()], vec![2]));
    // the table's row is outside the index; the second line repeats the first's key
    let (kept, rejected) = skip_load(
        &mut c,
        &dir,
        "pgi_pu",
        partial,
        "INSERT INTO pgi_pu VALUES (1, 'x', 'existing')",
        &[r#"{"k": 1, "v": "y", "n": "good1"}"#, r#"{"k": 1, "v": "w", "n": "dup2"}"#],
    );
    assert_eq!((kept, rejected), (vec!["existing".into(), "good1".into()], vec![2]));
    // a line the coordinator refuses (CHECK) has the key too
    let (kept, rejected) = skip_load(
        &mut c,
        &dir,
        "pgi_ck",
        "CREATE TABLE pgi_ck (k int PRIMARY KEY, n text, w text CHECK (w <> 'bad'))",
        "",
        &[r#"{"k": 1, "n": "check1", "w": "bad"}"#, r#"{"k": 1, "n": "good2"}"#, r#"{"k": 1, "n": "dup3"}"#],
    );
    assert_eq!((kept, rejected), (vec!["good2".into()], vec![1, 3]));
    // the coordinator prints both keys as the worker printed the refused one
    c.batch_execute("SET extra_float_digits = -15").unwrap();
    let (kept, rejected) = skip_load(
        &mut c,
        &dir,
        "pgi_fl",
        "CREATE TABLE pgi_fl (k float8 PRIMARY KEY, n text)",
        "INSERT INTO pgi_fl VALUES (1, 'existing')",
        &[r#"{"k": 1.4, "n": "good1"}"#, r#"{"k": 1, "n": "dup2"}"#, r#"{"k": 3, "n": "good3"}"#],
    );
    c.batch_execute("RESET extra_float_digits").unwrap();
    assert_eq!((kept, rejected), (vec!["existing".into(), "good1".into(), "good3".into()], vec![2]));

    // an append-distributed table is not routed (a Citus error there once counted as every
    // line refused): loads go through INSERT … SELECT, where skip mode is refused up front
    c.batch_execute("DROP TABLE IF EXISTS pgi_ap; CREATE TABLE pgi_ap (k int, n text)").unwrap();
    c.batch_execute("SELECT create_distributed_table('pgi_ap', 'k', 'append')").unwrap();
    c.batch_execute("SELECT master_create_empty_shard('pgi_ap')").unwrap();
    let path = dir.write("ap.jsonl", lines(100, 1));
    let e = c.query(&format!("SELECT * FROM ingest_jsonl('{path}', 'pgi_ap', on_error => 'skip')"), &[]).unwrap_err();
    assert_eq!(db_error(&e).0, "0A000", "{}", db_error(&e).1);
    assert_eq!(count(&mut c, "SELECT count(*) FROM pgi_ap"), 0);
}

/// Once a worker has refused a repeated key, later rows whose key this load already sent are
/// set aside before they are sent and written alone: each is rejected without rolling back
/// the attempt it came in (the load's NOTICE counts them), and the first row with the key stays.
#[test]
fn repeated_keys_are_set_aside_once_a_worker_refused_one() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(mut c) = coordinator() else { return };
    let dir = DataDir::new();
    // small chunks: the file takes several attempts
    let repeats = [(100, 99), (15_000, 14_999), (19_000, 5_000)];
    let text: String = (1..=20_000i64)
        .map(|line| {
            let id = repeats.iter().find(|(l, _)| *l == line).map_or(line, |&(_, id)| id);
            format!("{{\"id\": {id}, \"v\": \"line {line}\", \"n\": 1}}\n")
        })
        .collect();
    let path = dir.write("repeats.jsonl", text);
    c.batch_execute(
        "DROP TABLE IF EXISTS pgi_repeats;
         CREATE TABLE pgi_repeats (id bigint PRIMARY KEY, v text NOT NULL, n int);
         SELECT create_distributed_table('pgi_repeats', 'id', shard_count => 8);",
    )
    .unwrap();
    let sql = format!(
        "SET pg_ingest.chunk_bytes = '64kB'; \
         SELECT rows_inserted, rows_rejected FROM ingest_jsonl('{path}', 'pgi_repeats', on_error => 'skip')"
    );
    let out = pg_ingest_tests::citus::psql_with(&sql, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("2 line(s) repeated a key this load had sent"), "no row was set aside: {stderr}");
    let rejected: Vec<(i64, String)> = c
        .query(
            "SELECT line, message FROM ingest.rejects WHERE load_id = (SELECT max(load_id) FROM ingest.loads) ORDER BY line",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(rejected.iter().map(|r| r.0).collect::<Vec<_>>(), vec![100, 15_000, 19_000]);
    assert!(rejected.iter().all(|r| r.1.contains("duplicate key")), "{rejected:?}");
    assert_eq!(rows_in_shards(&mut c, "pgi_repeats"), 20_000 - 3);
    // the first line with each key is the one kept
    assert_eq!(count(&mut c, "SELECT count(*) FROM pgi_repeats WHERE v IN ('line 99', 'line 14999', 'line 5000')"), 3);
    assert_eq!(
        count(&mut c, "SELECT count(*) FROM pgi_repeats WHERE v IN ('line 100', 'line 15000', 'line 19000')"),
        0
    );
}
