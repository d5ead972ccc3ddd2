//! A server restart during a background load: the job shows as failed with the reason, never
//! running forever, and running the load again loads every line exactly once. (Its own test
//! binary: it restarts the private cluster.)

use std::process::Command;
use std::time::{Duration, Instant};

use pg_ingest_core::sample::{write_chat_lines, CHAT_TABLE_DDL};
use pg_ingest_tests::{connect, ingest, DataDir, TestDb};

fn restart_cluster() {
    let pg = pg_ingest_tests::pg_dir();
    let status = Command::new("runuser")
        .args(["-u", "postgres", "--", "env", "-u", "RUST_BACKTRACE"])
        .arg(pg_ingest_tests::pg_program("pg_ctl"))
        .arg("-D")
        .arg(pg.join("data"))
        .arg("-l")
        .arg(pg.join("server.log"))
        .args(["-w", "-t", "60", "-m", "fast", "restart"])
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "pg_ctl restart failed");
}

#[test]
fn a_restart_fails_the_job_and_a_rerun_loads_everything_once() {
    let mut db = TestDb::new("jobs_restart");
    db.client.batch_execute(CHAT_TABLE_DDL).unwrap();
    pg_ingest_tests::slow_inserts(&mut db.client, "chat_messages", 0.001, None);
    let dir = DataDir::new();
    let mut content = Vec::new();
    write_chat_lines(&mut content, 50_000, 4).unwrap();
    let path = dir.write("chat_messages.jsonl", content);
    let job: i64 = db.client.query_one("SELECT ingest_jsonl_async($1)", &[&path]).unwrap().get(0);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let state: String =
            db.client.query_one("SELECT state FROM ingest.jobs WHERE job_id = $1", &[&job]).unwrap().get(0);
        if state == "running" {
            break;
        }
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    let name = db.name.clone();
    drop(db);
    restart_cluster();

    let mut client = connect(&name);
    let r = client.query_one("SELECT state, error, sqlstate FROM ingest.jobs WHERE job_id = $1", &[&job]).unwrap();
    assert_eq!(r.get::<_, String>(0), "failed");
    assert!(r.get::<_, String>(1).contains("the server restarted while the job was running"));
    assert_eq!(r.get::<_, String>(2), "57P01");
    let n: i64 = client.query_one("SELECT count(*) FROM chat_messages", &[]).unwrap().get(0);
    assert_eq!(n, 0);
    client.batch_execute("DROP TRIGGER slow ON chat_messages").unwrap();
    let summary = ingest(&mut client, &path, "").unwrap();
    assert_eq!((summary.status.as_str(), summary.rows_inserted), ("loaded", 50_000));
    let distinct: i64 = client.query_one("SELECT count(DISTINCT id) FROM chat_messages", &[]).unwrap().get(0);
    assert_eq!(distinct, 50_000);
}
