//! What an attacker found in loads into Citus tables, each kept found: a writer blocked on a
//! node by the caller's own transaction, a worker's lock timeout taken for a row's refusal, a
//! cancel while an attempt's savepoint is released on every node, a line blamed for what a
//! placement on the coordinator flushed, and rows converted to the client's encoding on their
//! way to the workers.
//!
//! Runs against the coordinator that `scripts/citus.sh start` runs; skipped without one.

use std::time::{Duration, Instant};

use pg_ingest_tests::citus::{coordinator, count, psql_with, rows_in_shards, SERIAL};
use pg_ingest_tests::{db_error, DataDir};

/// A new distributed table `name` (id int PRIMARY KEY, v text NOT NULL) of 4 shards.
fn keyed_table(c: &mut postgres::Client, name: &str) {
    c.batch_execute(&format!(
        "DROP TABLE IF EXISTS {name};
         CREATE TABLE {name} (id int PRIMARY KEY, v text NOT NULL);
         SELECT create_distributed_table('{name}', 'id', shard_count => 4);"
    ))
    .unwrap();
}

/// A skip-mode load of `path` into `table` with one rejected line: (rows inserted, rows
/// rejected, the rejected line).
fn skip_load(c: &mut postgres::Client, path: &str, table: &str) -> (i64, i64, i64) {
    let sql = format!(
        "SELECT rows_inserted, rows_rejected, load_id FROM ingest_jsonl('{path}', '{table}', on_error => 'skip')"
    );
    let r = c.query_one(&sql, &[]).unwrap();
    let load_id: i64 = r.get(2);
    (r.get(0), r.get(1), count(c, &format!("SELECT line FROM ingest.rejects WHERE load_id = {load_id}")))
}

fn lines(n: i64) -> String {
    (1..=n).map(|i| format!("{{\"id\": {i}, \"v\": \"v{i}\"}}\n")).collect()
}

/// A writer in a transaction of its own waits on a worker for a key the caller's transaction
/// inserted there; the caller waits for the writer. Neither PostgreSQL's nor Citus's deadlock
/// detector sees the caller's wait: pg_ingest asks Citus's wait graph, and the load fails
/// with 40P01 instead of waiting forever.
#[test]
fn a_writer_blocked_on_a_node_by_the_callers_transaction_fails_with_40p01() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(mut c) = coordinator() else { return };
    let dir = DataDir::new();
    let path = dir.write("clash.jsonl", lines(10_000));
    keyed_table(&mut c, "pgi_clash");
    c.batch_execute("SET statement_timeout = '60s'; BEGIN; INSERT INTO pgi_clash VALUES (9999, 'the caller')").unwrap();
    let started = Instant::now();
    let e = c
        .query(&format!("SELECT * FROM ingest_jsonl('{path}', 'pgi_clash', writers => 2)"), &[])
        .expect_err("a writer waits for the caller's row");
    let (state, message, _) = db_error(&e);
    assert_eq!(state, "40P01", "{message}");
    assert!(started.elapsed() < Duration::from_secs(30), "found after {:?}", started.elapsed());
    c.batch_execute("ROLLBACK").unwrap();
}

/// A worker's lock timeout reaches the coordinator as Citus's XX000 with the worker's message:
/// it is not the row's fault, so the skip-mode load fails with 55P03 and rejects nothing
/// (it once rejected the line whose key was locked, for good).
#[test]
fn a_workers_lock_timeout_fails_a_skip_load_and_rejects_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(mut c) = coordinator() else { return };
    let Some(mut holder) = coordinator() else { return };
    let dir = DataDir::new();
    let path = dir.write("locked.jsonl", lines(100));
    keyed_table(&mut c, "pgi_locked");
    holder.batch_execute("BEGIN; INSERT INTO pgi_locked VALUES (50, 'held')").unwrap();
    c.batch_execute("BEGIN; SET LOCAL citus.propagate_set_commands = 'local'; SET LOCAL lock_timeout = '1s'").unwrap();
    let e = c
        .query(&format!("SELECT * FROM ingest_jsonl('{path}', 'pgi_locked', on_error => 'skip')"), &[])
        .expect_err("line 50 waits for the holder's row");
    let (state, message, _) = db_error(&e);
    assert_eq!(state, "55P03", "{message}");
    assert!(message.contains("lock timeout"), "{message}");
    c.batch_execute("ROLLBACK").unwrap();
    holder.batch_execute("ROLLBACK").unwrap();
    // once the row is free, the file loads whole
    let r = c
        .query_one(&format!("SELECT rows_inserted, rows_rejected FROM ingest_jsonl('{path}', 'pgi_locked')"), &[])
        .unwrap();
    assert_eq!((r.get::<_, i64>(0), r.get::<_, i64>(1)), (100, 0));
    assert_eq!(rows_in_shards(&mut c, "pgi_locked"), 100);
}

/// A reference table's placement on the coordinator buffers rows and raises a unique violation
/// when it flushes them, later than the row: stop mode must not name the line being read then
/// (it once said line 1670 for a repeat on line 5). Skip mode still rejects line 5.
#[test]
fn a_violation_flushed_by_a_placement_names_no_wrong_line() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(mut c) = coordinator() else { return };
    let dir = DataDir::new();
    let long = "x".repeat(300);
    let text: String =
        (1..=5000).map(|i| format!("{{\"id\": {}, \"v\": \"{long}\"}}\n", if i == 5 { 1 } else { i })).collect();
    let path = dir.write("flushed.jsonl", text);
    c.batch_execute(
        "DROP TABLE IF EXISTS pgi_flushed;
         CREATE TABLE pgi_flushed (id int PRIMARY KEY, v text NOT NULL);
         SELECT create_reference_table('pgi_flushed');",
    )
    .unwrap();
    let e =
        c.query(&format!("SELECT * FROM ingest_jsonl('{path}', 'pgi_flushed')"), &[]).expect_err("line 5 repeats id 1");
    let (_, message, _) = db_error(&e);
    assert!(message.contains("duplicate key"), "{message}");
    assert!(!message.contains("line ") || message.contains("line 5:"), "{message}");
    assert_eq!(skip_load(&mut c, &path, "pgi_flushed"), (4999, 1, 5));
}

/// The file is UTF-8 and the database too: a session in LATIN1 loads the same bytes (Citus
/// converts the text it sends to the workers to the session's encoding, while its connections
/// say the database's; "€" has no LATIN1 form and failed, or was rejected in skip mode).
#[test]
fn rows_reach_the_workers_in_the_databases_encoding_whatever_the_clients() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(mut c) = coordinator() else { return };
    let dir = DataDir::new();
    let path =
        dir.write("euro.jsonl", "{\"id\": 1, \"v\": \"a\"}\n{\"id\": 2, \"v\": \"é\"}\n{\"id\": 3, \"v\": \"€\"}\n");
    c.batch_execute(
        "DROP TABLE IF EXISTS pgi_euro;
         CREATE TABLE pgi_euro (id int, v text);
         SELECT create_distributed_table('pgi_euro', 'id');",
    )
    .unwrap();
    for skip in ["stop", "skip"] {
        c.batch_execute("TRUNCATE pgi_euro").unwrap();
        let sql = format!(
            "SELECT rows_inserted FROM ingest_jsonl('{path}', 'pgi_euro', on_error => '{skip}', force => true)"
        );
        let out = psql_with(&sql, &[("PGCLIENTENCODING", "LATIN1")]);
        assert!(out.status.success(), "{skip}: {}", String::from_utf8_lossy(&out.stderr));
        let stored: Vec<(i32, String)> = c
            .query("SELECT id, v FROM pgi_euro ORDER BY id", &[])
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        assert_eq!(stored, vec![(1, "a".into()), (2, "é".into()), (3, "€".into())], "{skip}");
    }
}

/// Cancels at every point of a skip-mode load with repeated keys and bad lines: each fails
/// with 57014 or loads, and the session goes on working (a cancel while Citus released an
/// attempt's savepoint on the workers once left it in a broken transaction state).
#[test]
fn a_cancel_at_any_point_of_a_skip_load_leaves_the_session_usable() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(mut c) = coordinator() else { return };
    let dir = DataDir::new();
    let text: String = (1..=10_000i64)
        .map(|i| match i % 1500 {
            7 => format!("{{\"id\": {}, \"v\": \"again\"}}\n", i - 1),
            8 => format!("{{\"id\": {i}, \"v\": \"BAD\"}}\n"),
            9 => "{\"id\": \n".to_owned(),
            _ => format!("{{\"id\": {i}, \"v\": \"v{i}\"}}\n"),
        })
        .collect();
    let path = dir.write("cancelled.jsonl", text);
    c.batch_execute(
        "DROP TABLE IF EXISTS pgi_cancelled;
         CREATE TABLE pgi_cancelled (id int PRIMARY KEY, v text NOT NULL CHECK (v <> 'BAD'));
         SELECT create_distributed_table('pgi_cancelled', 'id', shard_count => 4);",
    )
    .unwrap();
    let mut outcomes = (0, 0);
    for ms in (60..=420).step_by(12) {
        c.batch_execute(&format!("SET statement_timeout = '{ms}ms'")).unwrap();
        let sql = format!("SELECT * FROM ingest_jsonl('{path}', 'pgi_cancelled', on_error => 'skip', force => true)");
        match c.query(&sql, &[]) {
            Ok(_) => outcomes.1 += 1,
            Err(e) => {
                let (state, message, _) = db_error(&e);
                assert_eq!(state, "57014", "after {ms} ms: {message}");
                outcomes.0 += 1;
            }
        }
        c.batch_execute("RESET statement_timeout").unwrap();
        assert_eq!(count(&mut c, "SELECT 1::bigint"), 1, "the session after a cancel at {ms} ms");
    }
    assert!(outcomes.0 > 0, "no load was cancelled: {outcomes:?}");
    c.batch_execute("TRUNCATE pgi_cancelled").unwrap();
}

/// A worker's unique violation names a key; the row with that key is tried alone, in file
/// order, between the rows before it and the rows after it. A BEFORE trigger on the shards can
/// give a later row the key of an earlier one: the later row is the one refused, as on a
/// single node (the row named by the key was once tried after the rest, and the good line 1 was
/// rejected in place of line 2). Rows with a repeated key are not set aside on such a table.
#[test]
fn the_row_a_key_names_is_tried_in_file_order() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(mut c) = coordinator() else { return };
    let dir = DataDir::new();
    let path = dir.write(
        "order.jsonl",
        "{\"tenant\": 1, \"id\": 1, \"kind\": \"y\"}\n{\"tenant\": 1, \"id\": -999, \"kind\": \"x\"}\n\
         {\"tenant\": 1, \"id\": 3, \"kind\": \"y\"}\n",
    );
    for sql in [
        "DROP TABLE IF EXISTS pgi_order",
        "CREATE TABLE pgi_order (tenant int, id int, kind text, PRIMARY KEY (tenant, id))",
        "SELECT create_distributed_table('pgi_order', 'tenant')",
        "CREATE OR REPLACE FUNCTION pgi_order_shift() RETURNS trigger LANGUAGE plpgsql AS
           $$BEGIN IF NEW.kind = 'x' THEN NEW.id := NEW.id + 1000; END IF; RETURN NEW; END$$",
        "SET citus.enable_unsafe_triggers = on",
        "CREATE TRIGGER pgi_order_shift BEFORE INSERT ON pgi_order FOR EACH ROW EXECUTE FUNCTION pgi_order_shift()",
        "RESET citus.enable_unsafe_triggers",
    ] {
        c.batch_execute(sql).unwrap_or_else(|e| panic!("{sql}: {:?}", db_error(&e)));
    }
    assert_eq!(skip_load(&mut c, &path, "pgi_order"), (2, 1, 2));
    let kinds: Vec<String> =
        c.query("SELECT kind FROM pgi_order ORDER BY id", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(kinds, vec!["y", "y"]);
}

/// The check for a worker blocked on a Citus node by the caller reads Citus's wait graph as the
/// extension's owner: a REVOKE of that function from PUBLIC once made it fail silently, and a
/// non-superuser's run_batch waited forever for a query blocked by its own transaction.
#[test]
fn a_revoked_wait_graph_still_finds_a_query_blocked_by_the_caller() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(mut c) = coordinator() else { return };
    keyed_table(&mut c, "pgi_blocked");
    for sql in [
        "INSERT INTO pgi_blocked SELECT g, 'v' FROM generate_series(1, 10) g",
        "DROP OWNED BY pgi_batcher",
        "DROP ROLE IF EXISTS pgi_batcher",
        "CREATE ROLE pgi_batcher LOGIN",
        "GRANT ALL ON pgi_blocked TO pgi_batcher",
        "GRANT USAGE ON SCHEMA ingest TO pgi_batcher",
        "REVOKE EXECUTE ON FUNCTION citus_internal.global_blocked_processes() FROM PUBLIC",
    ] {
        if let Err(e) = c.batch_execute(sql) {
            // no such role yet
            assert!(sql.starts_with("DROP OWNED"), "{sql}: {:?}", db_error(&e));
        }
    }
    let port = std::env::var("PG_INGEST_CITUS_PORT").unwrap();
    let dsn = format!("host=127.0.0.1 port={port} user=pgi_batcher dbname=postgres options='-c statement_timeout=60s'");
    let mut u = postgres::Client::connect(&dsn, postgres::NoTls).unwrap();
    u.batch_execute("BEGIN; UPDATE pgi_blocked SET v = 'mine' WHERE id = 8").unwrap();
    let started = Instant::now();
    let rows = u.query(
        "SELECT status, sqlstate FROM run_batch(ARRAY['UPDATE pgi_blocked SET v = ''theirs'' WHERE id = 8'], 1)",
        &[],
    );
    let waited = started.elapsed();
    let _ = u.batch_execute("ROLLBACK");
    c.batch_execute("GRANT EXECUTE ON FUNCTION citus_internal.global_blocked_processes() TO PUBLIC").unwrap();
    let rows = rows.unwrap_or_else(|e| panic!("{:?}", db_error(&e)));
    let (status, sqlstate): (String, Option<String>) = (rows[0].get(0), rows[0].get(1));
    assert_eq!(sqlstate.as_deref(), Some("40P01"), "{status}");
    assert!(waited < Duration::from_secs(30), "found after {waited:?}");
}
