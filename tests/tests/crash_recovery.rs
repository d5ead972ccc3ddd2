//! `kill -9` of a loading backend, and of one writer of a multi-writer load. PostgreSQL then
//! ends every backend and recovers; afterwards the killed work left no rows and no ledger
//! progress, and the next call loads every line exactly once. One test, run alone in its own
//! binary: the crash restarts every session of the cluster.

use std::time::{Duration, Instant};

use pg_ingest_tests::{connect_as, ingest, DataDir, TestDb};
use postgres::Client;

fn lines(n: u64) -> String {
    (1..=n).map(|i| format!("{{\"id\":{i},\"v\":\"line {i}\"}}\n")).collect()
}

/// Waits until the cluster accepts connections to `db` again after a crash.
fn reconnect(db: &str) -> Client {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (host, port, _) = pg_ingest_tests::server();
        let dsn = format!("host={host} port={port} user=postgres dbname={db} options='-c statement_timeout=60s'");
        if let Ok(mut c) = Client::connect(&dsn, postgres::NoTls) {
            if c.simple_query("SELECT 1").is_ok() {
                return c;
            }
        }
        assert!(Instant::now() < deadline, "the cluster did not come back within 120 s");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn kill9(pid: i32) {
    let status = std::process::Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap();
    assert!(status.success(), "kill -9 {pid}");
}

/// Waits until `sql` (on `c`) returns a pid.
fn wait_for_pid(c: &mut Client, sql: &str) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(r) = c.query(sql, &[]).unwrap().first() {
            return r.get(0);
        }
        assert!(Instant::now() < deadline, "nothing matched: {sql}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn state(c: &mut Client) -> (i64, i64, i64, i64) {
    let r = c
        .query_one(
            "SELECT (SELECT count(*) FROM t), (SELECT count(DISTINCT id) FROM t), \
                    (SELECT count(*) FROM ingest.files), (SELECT count(*) FROM ingest.loads WHERE status <> 'range')",
            &[],
        )
        .unwrap();
    (r.get(0), r.get(1), r.get(2), r.get(3))
}

#[test]
fn kill_9_of_a_loader_or_a_writer_loses_nothing_and_duplicates_nothing() {
    let db = TestDb::new("crash");
    let name = db.name.clone();
    let mut c = connect_as(&name, "postgres");
    c.batch_execute("CREATE TABLE t (id bigint, v text)").unwrap();
    pg_ingest_tests::slow_inserts(&mut c, "t", 0.001, Some("NEW.id > 2000"));
    let dir = DataDir::new();
    let path = dir.write("t.jsonl", lines(6000));

    // 1. the loading backend itself, once it has written rows
    {
        let mut loader = connect_as(&name, "postgres");
        let pid: i32 = loader.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
        let path = path.clone();
        let load = std::thread::spawn(move || ingest(&mut loader, &path, "'t'"));
        let sql = format!("SELECT pid FROM ingest.progress WHERE pid = {pid} AND rows > 100");
        wait_for_pid(&mut c, &sql);
        kill9(pid);
        assert!(load.join().unwrap().is_err());
    }
    let mut c = reconnect(&name);
    assert_eq!(state(&mut c), (0, 0, 0, 0), "the killed load left rows or ledger entries");

    // 2. one writer of a multi-writer load: the crash ends the leader and the other writer too
    {
        let mut leader = connect_as(&name, "postgres");
        let path = path.clone();
        let load = std::thread::spawn(move || ingest(&mut leader, &path, "'t', writers => 3"));
        let sql = "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_ingest batch worker' \
                     AND query LIKE '%load_range%' AND state = 'active' ORDER BY backend_start DESC LIMIT 1";
        // wait for a committed range, so that there is committed work to keep and work to lose
        let deadline = Instant::now() + Duration::from_secs(60);
        while c.query_one("SELECT count(*) FROM ingest.file_ranges", &[]).unwrap().get::<_, i64>(0) == 0 {
            assert!(Instant::now() < deadline, "no range committed");
            std::thread::sleep(Duration::from_millis(20));
        }
        let pid = wait_for_pid(&mut c, sql);
        kill9(pid);
        assert!(load.join().unwrap().is_err());
    }
    let mut c = reconnect(&name);
    let (rows, distinct, files, loads) = state(&mut c);
    let ranged: i64 = c
        .query_one("SELECT coalesce(sum(l.rows_inserted), 0)::bigint FROM ingest.file_ranges r JOIN ingest.loads l USING (load_id)", &[])
        .unwrap()
        .get(0);
    assert_eq!((rows, distinct, files, loads), (ranged, ranged, 0, 0), "only committed ranges stay");
    assert!(ranged > 0 && ranged < 6000);

    // 3. the next call loads the rest, exactly once
    c.batch_execute("DROP TRIGGER slow ON t").unwrap();
    let r = ingest(&mut c, &path, "'t'").unwrap();
    assert_eq!((r.status.as_str(), r.rows_inserted), ("resumed", 6000 - ranged));
    assert_eq!(state(&mut c), (6000, 6000, 1, 1));
    let r = ingest(&mut c, &path, "'t', writers => 2").unwrap();
    assert_eq!(r.status, "unchanged");
}
