//! pg_cron: a job scheduled every minute loads a file through the ledger; after lines are
//! appended, the next run loads only those. pg_cron 1.4 schedules by the minute, so this test
//! takes one to two minutes.

use std::time::{Duration, Instant};

use pg_ingest_tests::{connect, DataDir, TestDb};
use postgres::Client;

struct Scheduled {
    admin: Client,
    job: i64,
}

impl Drop for Scheduled {
    fn drop(&mut self) {
        // `$1::bigint`: unschedule(name) exists too, and an unknown parameter is ambiguous
        let _ = self.admin.execute("SELECT cron.unschedule($1::bigint)", &[&self.job]);
    }
}

/// Waits until the job has `runs` finished runs; fails on a failed one.
fn wait_runs(s: &mut Scheduled, runs: i64) {
    let deadline = Instant::now() + Duration::from_secs(150);
    loop {
        let rows = s
            .admin
            .query(
                "SELECT status, return_message FROM cron.job_run_details WHERE jobid = $1 \
                  AND status IN ('succeeded', 'failed') ORDER BY runid",
                &[&s.job],
            )
            .unwrap();
        for r in &rows {
            let (status, message): (String, Option<String>) = (r.get(0), r.get(1));
            assert_eq!(status, "succeeded", "the cron run failed: {message:?}");
        }
        if rows.len() as i64 >= runs {
            return;
        }
        assert!(Instant::now() < deadline, "pg_cron ran the job {} times in 150 s", rows.len());
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn a_pg_cron_schedule_loads_new_lines_each_minute() {
    let mut db = TestDb::new("cron");
    db.client.batch_execute("CREATE TABLE events (id int PRIMARY KEY, v text)").unwrap();
    let dir = DataDir::new();
    let path = dir.write("events.jsonl", "{\"id\":1,\"v\":\"a\"}\n{\"id\":2,\"v\":\"b\"}\n{\"id\":3,\"v\":\"c\"}\n");
    let mut admin = connect("postgres");
    // a job of that name left by an earlier run that was killed: scheduling by name would
    // take it over, runs and all
    admin.batch_execute("SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname = 'pgi_e2e_cron'").unwrap();
    let command = format!("SELECT * FROM ingest_jsonl('{path}', 'events')");
    let job: i64 = admin
        .query_one("SELECT cron.schedule_in_database('pgi_e2e_cron', '* * * * *', $1, $2)", &[&command, &db.name])
        .unwrap()
        .get(0);
    let mut scheduled = Scheduled { admin, job };

    wait_runs(&mut scheduled, 1);
    let n: i64 = db.client.query_one("SELECT count(*) FROM events", &[]).unwrap().get(0);
    assert_eq!(n, 3);

    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"id\":4,\"v\":\"d\"}\n{\"id\":5,\"v\":\"e\"}\n").unwrap();
    }
    // the next run that starts after the append loads the two lines
    let deadline = Instant::now() + Duration::from_secs(150);
    loop {
        wait_runs(&mut scheduled, 1); // and no failed run
        let n: i64 = db.client.query_one("SELECT count(*) FROM events", &[]).unwrap().get(0);
        if n == 5 {
            break;
        }
        assert_eq!(n, 3);
        assert!(Instant::now() < deadline, "the appended lines were not loaded within 150 s");
        std::thread::sleep(Duration::from_millis(500));
    }
    let loads: Vec<(String, i64)> = db
        .client
        .query("SELECT status, rows_inserted FROM ingest.loads WHERE status <> 'unchanged' ORDER BY load_id", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(loads, [("loaded".to_owned(), 3), ("appended".to_owned(), 2)]);
}
