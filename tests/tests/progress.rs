//! Progress of a running load: the `ingest.progress` view from another session, and the
//! NOTICEs the caller gets under each `pg_ingest.progress_notices` setting.

use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pg_ingest_core::report::ProgressReport;
use pg_ingest_core::sample::{write_chat_lines, CHAT_TABLE_DDL};
use pg_ingest_tests::{connect, ingest, DataDir, TestDb};
use postgres::error::DbError;
use postgres::{Client, Config, NoTls};

/// A chat table whose rows take `ms` milliseconds each (a trigger sleeps), and a file of
/// `lines` lines for it: a load that lasts about lines × ms.
fn slow_table(db: &mut TestDb, dir: &DataDir, lines: u64, ms: f64) -> String {
    db.client.batch_execute(CHAT_TABLE_DDL).unwrap();
    pg_ingest_tests::slow_inserts(&mut db.client, "chat_messages", ms / 1000.0, None);
    let mut content = Vec::new();
    write_chat_lines(&mut content, lines, 9).unwrap();
    dir.write("chat_messages.jsonl", content)
}

/// A connection whose NOTICEs are collected.
fn with_notices(db: &TestDb) -> (Client, Arc<Mutex<Vec<DbError>>>) {
    let notices = Arc::new(Mutex::new(Vec::new()));
    let sink = notices.clone();
    let mut config = Config::from_str(&db.dsn()).unwrap();
    config.notice_callback(move |n| sink.lock().unwrap().push(n));
    (config.connect(NoTls).unwrap(), notices)
}

#[test]
fn progress_view_shows_a_running_load_to_those_allowed() {
    let mut db = TestDb::new("progress_view");
    let dir = DataDir::new();
    let path = slow_table(&mut db, &dir, 3000, 1.0);
    let size = std::fs::metadata(&path).unwrap().len() as i64;
    db.client
        .batch_execute(
            "DO $$ BEGIN CREATE ROLE pgi_progress_peer LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$; \
             REVOKE pg_read_all_stats FROM pgi_progress_peer;",
        )
        .unwrap();

    let mut loader = connect(&db.name);
    let pid: i32 = loader.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    let load = {
        let path = path.clone();
        std::thread::spawn(move || ingest(&mut loader, &path, "").unwrap())
    };
    let sql = "SELECT load_id, file, target::text, bytes_done, bytes_total, percent::float8, lines, rows, rejected, \
                      started <= clock_timestamp(), eta IS NOT NULL \
                 FROM ingest.progress WHERE pid = $1";
    let deadline = Instant::now() + Duration::from_secs(30);
    let row = loop {
        let rows = db.client.query(sql, &[&pid]).unwrap();
        if let Some(r) = rows.first().filter(|r| r.get::<_, i64>(7) > 0) {
            break r.clone();
        }
        assert!(Instant::now() < deadline, "the load never showed in ingest.progress");
        std::thread::sleep(Duration::from_millis(20));
    };
    let view_load_id: i64 = row.get(0);
    assert_eq!(row.get::<_, Option<String>>(1).as_deref(), Some(path.as_str()));
    assert_eq!(row.get::<_, String>(2), "chat_messages");
    let (done, total): (i64, i64) = (row.get(3), row.get(4));
    assert_eq!(total, size);
    assert!(done > 0 && done <= size, "{done} of {size}");
    let percent: f64 = row.get(5);
    assert!((0.0..=100.0).contains(&percent));
    let (lines, rows, rejected): (i64, i64, i64) = (row.get(6), row.get(7), row.get(8));
    assert!(lines >= rows && rows > 0 && rejected == 0, "{lines} {rows}");
    assert!(row.get::<_, bool>(9));

    // another role sees nothing, until it may read all statistics
    let mut peer = Client::connect(&format!("{} user=pgi_progress_peer", db.dsn()), NoTls).unwrap();
    let seen: i64 = peer.query_one("SELECT count(*) FROM ingest.progress", &[]).unwrap().get(0);
    assert_eq!(seen, 0);
    db.client.batch_execute("GRANT pg_read_all_stats TO pgi_progress_peer").unwrap();
    let file: Option<String> =
        peer.query_one("SELECT file FROM ingest.progress WHERE pid = $1", &[&pid]).unwrap().get(0);
    assert_eq!(file.as_deref(), Some(path.as_str()));
    db.client.batch_execute("REVOKE pg_read_all_stats FROM pgi_progress_peer").unwrap();

    let summary = load.join().unwrap();
    assert_eq!(summary.load_id, view_load_id);
    assert_eq!(summary.rows_inserted, 3000);
    let after = db.client.query("SELECT 1 FROM ingest.progress WHERE pid = $1", &[&pid]).unwrap();
    assert!(after.is_empty(), "the load is over but still shown");
}

fn progress_notices(notices: &Arc<Mutex<Vec<DbError>>>) -> Vec<DbError> {
    notices.lock().unwrap().drain(..).filter(|n| n.message().contains("% of ")).collect()
}

#[test]
fn notices_are_paced_by_the_settings() {
    let mut db = TestDb::new("progress_notices");
    let dir = DataDir::new();
    let path = slow_table(&mut db, &dir, 1500, 1.0);
    let size = std::fs::metadata(&path).unwrap().len();
    let (mut client, notices) = with_notices(&db);
    client.batch_execute("SET pg_ingest.progress_interval = '100ms'").unwrap();

    // milestones (the default): each at a new tenth of the file, no DETAIL, never more than ten
    ingest(&mut client, &path, "force => true").unwrap();
    let got = progress_notices(&notices);
    assert!((2..=10).contains(&got.len()), "{} milestone notices", got.len());
    assert!(got.iter().all(|n| n.detail().is_none() && n.message().starts_with(&path)));
    let percents: Vec<u64> = got
        .iter()
        .map(|n| n.message().split("% of").next().unwrap().rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    assert!(percents.windows(2).all(|w| w[1] / 10 > w[0] / 10), "{percents:?}");

    // off: none
    client.batch_execute("TRUNCATE chat_messages; SET pg_ingest.progress_notices = off").unwrap();
    ingest(&mut client, &path, "force => true").unwrap();
    assert!(progress_notices(&notices).is_empty());

    // interval: one per interval with the numbers in DETAIL, and a last one at the end
    client.batch_execute("TRUNCATE chat_messages; SET pg_ingest.progress_notices = interval").unwrap();
    let summary = ingest(&mut client, &path, "force => true").unwrap();
    let got = progress_notices(&notices);
    assert!(got.len() >= 5, "{} interval notices over a ~1.5 s load", got.len());
    let reports: Vec<ProgressReport> =
        got.iter().map(|n| ProgressReport::from_detail(n.detail().expect("a DETAIL")).expect("numbers")).collect();
    assert!(reports.windows(2).all(|w| w[0].bytes_done <= w[1].bytes_done && w[0].seconds <= w[1].seconds));
    assert!(reports.iter().all(|r| r.load_id == summary.load_id && r.bytes_total == size));
    let last = reports.last().unwrap();
    assert_eq!((last.bytes_done, last.lines, last.rows, last.rejected), (size, 1500, 1500, 0));
    assert!(got.last().unwrap().message().contains("100% of"));
}
