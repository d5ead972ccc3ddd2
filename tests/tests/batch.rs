//! run_batch: queries in background workers, results per completion.

use std::time::{Duration, Instant};

use pg_ingest_tests::{connect, db_error, TestDb};
use postgres::Client;

type Row = (i32, String, i64, Option<String>, Option<String>);

/// One batch test at a time: one of them takes every worker slot of the server.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn run(c: &mut Client, queries: &[&str], args: &str) -> Result<Vec<Row>, postgres::Error> {
    let q: Vec<String> = queries.iter().map(|s| s.to_string()).collect();
    let sql = format!("SELECT query_no, status, rows, error, sqlstate FROM run_batch($1{args})");
    c.query(&sql, &[&q]).map(|rows| rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4))).collect())
}

fn batch_workers(c: &mut Client) -> i64 {
    c.query_one("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_ingest batch worker' AND datname = current_database()", &[]).unwrap().get(0)
}

/// Batch workers of every database (for filling the server's slots).
fn all_batch_workers(c: &mut Client) -> i64 {
    c.query_one("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_ingest batch worker'", &[])
        .unwrap()
        .get(0)
}

#[test]
fn results_come_per_completion_with_errors_and_rows() {
    let _serial = serial();
    let mut db = TestDb::new("batch_basic");
    db.client.batch_execute("CREATE TABLE t (n int); INSERT INTO t SELECT generate_series(1, 10)").unwrap();
    let rows = run(
        &mut db.client,
        &[
            "SELECT pg_sleep(0.4)",
            "SELECT * FROM t",
            "SELECT 1/0",
            "UPDATE t SET n = n + 1 WHERE n <= 3",
            "SELECT nope",
        ],
        ", workers => 5",
    )
    .unwrap();
    assert_eq!(rows.len(), 5);
    // the slow one completes last
    assert_eq!(rows.last().unwrap().0, 1);
    let by_no = |n: i32| rows.iter().find(|r| r.0 == n).unwrap().clone();
    assert_eq!(by_no(1), (1, "ok".into(), 1, None, None));
    assert_eq!(by_no(2), (2, "ok".into(), 10, None, None));
    assert_eq!(by_no(3), (3, "error".into(), 0, Some("division by zero".into()), Some("22012".into())));
    assert_eq!(by_no(4), (4, "ok".into(), 3, None, None));
    assert_eq!(by_no(5).3.as_deref(), Some("column \"nope\" does not exist"));
    // each query committed on its own: the UPDATE is there
    let n: i64 = db.client.query_one("SELECT sum(n) FROM t", &[]).unwrap().get(0);
    assert_eq!(n, 58);
    assert!(run(&mut db.client, &[], "").unwrap().is_empty());
}

#[test]
fn concurrency_is_the_number_of_workers() {
    let _serial = serial();
    let mut db = TestDb::new("batch_concurrency");
    db.client.batch_execute("CREATE TABLE log (q int, pid int, t0 timestamptz, t1 timestamptz)").unwrap();
    let queries: Vec<String> = (1..=9)
        .map(|i| format!("INSERT INTO log SELECT {i}, pg_backend_pid(), statement_timestamp(), clock_timestamp() FROM pg_sleep(0.3)"))
        .collect();
    let refs: Vec<&str> = queries.iter().map(String::as_str).collect();
    let rows = run(&mut db.client, &refs, ", workers => 3").unwrap();
    assert!(rows.iter().all(|r| r.1 == "ok"), "{rows:?}");
    let (pids, max_overlap): (i64, i64) = {
        let r = db
            .client
            .query_one(
                "SELECT (SELECT count(DISTINCT pid) FROM log), \
                        (SELECT max(c) FROM (SELECT (SELECT count(*) FROM log b WHERE b.t0 <= a.t0 AND a.t0 < b.t1) c FROM log a) x)",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!((pids, max_overlap), (3, 3));
    // the workers are gone once the batch is done
    let deadline = Instant::now() + Duration::from_secs(5);
    while batch_workers(&mut db.client) > 0 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn stop_on_error_and_timeout() {
    let _serial = serial();
    let mut db = TestDb::new("batch_stop");
    let rows = run(
        &mut db.client,
        &["SELECT 1/0", "SELECT pg_sleep(5)", "SELECT 1", "SELECT 2"],
        ", workers => 2, stop_on_error => true",
    )
    .unwrap();
    let statuses: Vec<(i32, String)> = rows.iter().map(|r| (r.0, r.1.clone())).collect();
    assert_eq!(statuses[0], (1, "error".into()));
    assert!(statuses[1..].iter().all(|(_, s)| s == "cancelled"), "{statuses:?}");
    let started = Instant::now();
    let rows = run(&mut db.client, &["SELECT pg_sleep(5)", "SELECT pg_sleep(0.05)"], ", timeout => '300 ms'").unwrap();
    assert!(started.elapsed() < Duration::from_secs(4));
    let by_no = |n: i32| rows.iter().find(|r| r.0 == n).unwrap().clone();
    assert_eq!(by_no(1).1, "timeout");
    assert_eq!(by_no(1).4.as_deref(), Some("57014"));
    assert_eq!(by_no(2).1, "ok");
}

#[test]
fn workers_run_as_the_calling_role_with_its_search_path() {
    let _serial = serial();
    let mut db = TestDb::new("batch_role");
    db.client
        .batch_execute(
            "DROP ROLE IF EXISTS pgi_batch_user; CREATE ROLE pgi_batch_user; \
             CREATE SCHEMA app; CREATE TABLE app.items (n int); INSERT INTO app.items VALUES (1), (2); \
             CREATE TABLE secret (s text); INSERT INTO secret VALUES ('x'); \
             GRANT USAGE ON SCHEMA app TO pgi_batch_user; GRANT SELECT ON app.items TO pgi_batch_user; \
             CREATE TABLE whoami (u text, sp text); GRANT INSERT ON whoami TO pgi_batch_user;",
        )
        .unwrap();
    db.client.batch_execute("SET ROLE pgi_batch_user; SET search_path = app, public").unwrap();
    let rows = run(
        &mut db.client,
        &[
            "SELECT * FROM items",
            "SELECT * FROM secret",
            "INSERT INTO public.whoami SELECT current_user, current_setting('search_path')",
        ],
        "",
    )
    .unwrap();
    db.client.batch_execute("RESET ROLE; RESET search_path").unwrap();
    let by_no = |n: i32| rows.iter().find(|r| r.0 == n).unwrap().clone();
    assert_eq!((by_no(1).1.as_str(), by_no(1).2), ("ok", 2));
    assert_eq!((by_no(2).1.as_str(), by_no(2).4.as_deref()), ("error", Some("42501")));
    assert_eq!(by_no(3).1, "ok");
    let r = db.client.query_one("SELECT u, sp FROM whoami", &[]).unwrap();
    assert_eq!((r.get::<_, String>(0), r.get::<_, String>(1)), ("pgi_batch_user".into(), "app, public".into()));
}

#[test]
fn cancelling_the_caller_leaves_no_worker() {
    let _serial = serial();
    let mut db = TestDb::new("batch_cancel");
    let mut caller = connect(&db.name);
    let pid: i32 = caller.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    let handle = std::thread::spawn(move || {
        run(&mut caller, &["SELECT pg_sleep(30)", "SELECT pg_sleep(30)", "SELECT pg_sleep(30)"], ", workers => 3")
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while batch_workers(&mut db.client) < 3 {
        assert!(Instant::now() < deadline, "the workers never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    db.client.query("SELECT pg_cancel_backend($1)", &[&pid]).unwrap();
    let e = handle.join().unwrap().unwrap_err();
    assert_eq!(db_error(&e).0, "57014");
    let deadline = Instant::now() + Duration::from_secs(5);
    while batch_workers(&mut db.client) > 0 {
        assert!(Instant::now() < deadline, "a worker outlived its caller");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_worker_that_dies_is_that_querys_error() {
    let _serial = serial();
    let mut db = TestDb::new("batch_worker_dies");
    let name = db.name.clone();
    let killer = std::thread::spawn(move || {
        let mut c = connect(&name);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let rows = c
                .query("SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_ingest batch worker' AND query LIKE '%pg_sleep(20)%'", &[])
                .unwrap();
            if let Some(r) = rows.first() {
                let pid: i32 = r.get(0);
                c.query("SELECT pg_terminate_backend($1)", &[&pid]).unwrap();
                return;
            }
            assert!(Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let rows = run(&mut db.client, &["SELECT pg_sleep(20)", "SELECT 7"], ", workers => 2").unwrap();
    killer.join().unwrap();
    let by_no = |n: i32| rows.iter().find(|r| r.0 == n).unwrap().clone();
    assert_eq!(by_no(1).1, "error");
    assert_eq!(by_no(2).1, "ok");
}

#[test]
fn no_free_worker_slot_is_a_clear_error() {
    let _serial = serial();
    let mut db = TestDb::new("batch_no_slots");
    let total: i64 = db.client.query_one("SELECT current_setting('max_worker_processes')::bigint", &[]).unwrap().get(0);
    // fill every slot with sleeping batch workers, 16 (pg_ingest.max_batch_workers) per caller
    let callers: Vec<_> = (0..(total / 16 + 1))
        .map(|_| {
            let mut c = connect(&db.name);
            std::thread::spawn(move || {
                let q = vec!["SELECT pg_sleep(4)".to_owned(); 16];
                let _ = c.query("SELECT * FROM run_batch($1, workers => 16)", &[&q]);
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut err = None;
    while Instant::now() < deadline {
        if all_batch_workers(&mut db.client) >= total - 4 {
            match run(&mut db.client, &["SELECT 1"], "") {
                Err(e) => {
                    err = Some(e);
                    break;
                }
                Ok(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        } else {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let e = err.expect("run_batch found a slot while all were taken");
    let db_err = e.as_db_error().unwrap();
    assert_eq!(db_err.code().code(), "53400");
    assert!(db_err.message().contains("no background worker slot is free"));
    assert!(db_err.hint().unwrap().contains("max_worker_processes"));
    for c in callers {
        c.join().unwrap();
    }
}

#[test]
fn chunk_ranges_split_a_table_evenly() {
    let _serial = serial();
    let mut db = TestDb::new("chunk_ranges");
    db.client.batch_execute("CREATE TABLE big (id bigint); INSERT INTO big SELECT generate_series(1, 1000)").unwrap();
    let rows: Vec<(i32, i64, i64)> = db
        .client
        .query("SELECT chunk, lo, hi FROM chunk_ranges('big', 'id', 4)", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(rows, vec![(1, 1, 250), (2, 251, 500), (3, 501, 750), (4, 751, 1000)]);
}

#[test]
fn results_come_back_in_query_order_and_are_bounded() {
    // its workers would free slots while no_free_worker_slot_is_a_clear_error counts them
    let _serial = serial();
    let mut db = pg_ingest_tests::TestDb::new("batch_results");
    let c = &mut db.client;
    c.batch_execute("CREATE TABLE nums AS SELECT g AS id, g % 3 AS k FROM generate_series(1, 9000) g").unwrap();
    // chunked computation over the table, per-chunk answers combined in one statement
    let total: i64 = c
        .query_one(
            "WITH b AS (SELECT * FROM run_batch(
                 (SELECT array_agg(format('SELECT count(*) AS n, sum(id) AS s FROM nums WHERE id BETWEEN %s AND %s', lo, hi)
                                   ORDER BY chunk) FROM chunk_ranges('nums', 'id', 4)),
                 workers => 4, results => true))
             SELECT sum((r->>'s')::bigint)::bigint FROM b, jsonb_array_elements(b.result) r",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(total, (1..=9000i64).sum::<i64>());
    let rows = c
        .query(
            "SELECT query_no, status, result::text, truncated FROM run_batch(ARRAY[
                 'SELECT 1 AS a, ''x'' AS b, ''{\"k\": [1, 2]}''::jsonb AS j, true AS t, NULL::int AS z',
                 'UPDATE nums SET k = k WHERE id <= 2 RETURNING id',
                 'SELECT 1/0'], results => true) ORDER BY query_no",
            &[],
        )
        .unwrap();
    let result =
        |i: usize| rows[i].get::<_, Option<String>>(2).map(|t| serde_json::from_str::<serde_json::Value>(&t).unwrap());
    assert_eq!(result(0), Some(serde_json::json!([{"a": 1, "b": "x", "j": {"k": [1, 2]}, "t": true, "z": null}])));
    assert_eq!(result(1), Some(serde_json::json!([{"id": 1}, {"id": 2}])));
    assert_eq!(rows[2].get::<_, String>(1), "error");
    assert_eq!(result(2), None);
    // past pg_ingest.batch_result_bytes: the rows that fit, flagged
    c.batch_execute("SET pg_ingest.batch_result_bytes = '4kB'").unwrap();
    let r = c
        .query_one(
            "SELECT result::text, truncated FROM run_batch(ARRAY['SELECT id FROM nums ORDER BY id'], results => true)",
            &[],
        )
        .unwrap();
    let got: serde_json::Value = serde_json::from_str(&r.get::<_, String>(0)).unwrap();
    let got = got.as_array().unwrap();
    assert!(r.get::<_, bool>(1));
    assert!(!got.is_empty() && got.len() < 9000);
    assert_eq!(got[0], serde_json::json!({"id": 1}));
    // without results => true: no result column values
    let r = c.query_one("SELECT result::text, truncated FROM run_batch(ARRAY['SELECT 1'])", &[]).unwrap();
    assert_eq!((r.get::<_, Option<String>>(0), r.get::<_, Option<bool>>(1)), (None, None));
}
