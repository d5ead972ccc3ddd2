//! What a role sees is its own: the loads, rejected lines, ledger entries and jobs of tables it
//! may SELECT, or that a role whose privileges it has made; a superuser or pg_read_all_stats
//! sees all. Tried as a role created a moment ago with no privileges, as a role that may read
//! one table, and as a monitoring role. Every session runs with a statement_timeout.

use pg_ingest_tests::{connect_as, role, DataDir, TestDb};
use postgres::Client;

const TABLES: [&str; 7] = [
    "ingest.loads",
    "ingest.rejects",
    "ingest.files",
    "ingest.client_files",
    "ingest.file_ranges",
    "ingest.jobs",
    "ingest.job_records",
];

fn counts(c: &mut Client, filter: &str) -> Vec<(String, i64)> {
    TABLES
        .iter()
        .map(|t| {
            let col = match *t {
                "ingest.loads" | "ingest.rejects" => "file",
                "ingest.client_files" => "source",
                _ => "path",
            };
            let q = format!("SELECT count(*) FROM {t} WHERE {col} LIKE '%{filter}%'");
            (t.to_string(), c.query_one(&q, &[]).unwrap().get(0))
        })
        .collect()
}

#[test]
fn a_role_sees_only_the_loads_rejects_and_ledgers_it_may() {
    let (nobody, reader, monitor, loader) = ("pgi_vis_nobody", "pgi_vis_reader", "pgi_vis_monitor", "pgi_vis_loader");
    let mut db = TestDb::new("trust_visibility");
    for r in [nobody, reader, monitor, loader] {
        role(&mut db.client, r, "LOGIN");
    }
    db.client
        .batch_execute(&format!(
            "GRANT pg_read_all_stats TO {monitor};
             GRANT pg_read_server_files TO {loader};
             CREATE TABLE secret (id int PRIMARY KEY, card text NOT NULL);
             CREATE TABLE open (id int PRIMARY KEY, card text NOT NULL);
             GRANT SELECT ON open TO {reader};
             GRANT INSERT ON secret, open TO {loader};"
        ))
        .unwrap();
    let dir = DataDir::new();
    let body = "{\"id\":1,\"card\":\"4111 1111 1111 1111\"}\n{\"id\":2,\"card\":null}\n{\"id\":3,\"card\":\"x\"}\n";
    let secret = dir.write("secret.jsonl", body);
    let open = dir.write("open.jsonl", body);
    // loads by the superuser, one by a role taken with SET ROLE, a client file, a job
    let c = &mut db.client;
    c.batch_execute(&format!(
        "SELECT * FROM ingest_jsonl('{secret}', 'secret', on_error => 'skip');
         SET ROLE {loader};
         SELECT * FROM ingest_jsonl('{open}', 'open', on_error => 'skip');
         RESET ROLE;"
    ))
    .unwrap();
    let local = dir.write("secret_local.jsonl", body);
    db.cli().args(["load", &local, "--into", "secret", "--on-error", "skip", "--quiet"]).assert().code(3);
    let c = &mut db.client;
    let job: i64 = c
        .query_one(&format!("SELECT ingest_jsonl_async('{secret}', 'secret', force => true, on_error => 'skip')"), &[])
        .unwrap()
        .get(0);
    c.query(&format!("SELECT * FROM wait_job({job})"), &[]).unwrap();

    // loaded_by is the role that loaded (current_user after SET ROLE), in loads and the ledger
    let who: Vec<(String, String)> = c
        .query("SELECT l.loaded_by::text, f.loaded_by::text FROM ingest.loads l JOIN ingest.files f USING (load_id) WHERE l.target_oid = 'open'::regclass", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(who, vec![(loader.to_owned(), loader.to_owned())]);

    // the superuser sees it all
    let all = counts(c, "secret");
    assert!(all.iter().filter(|(t, _)| t != "ingest.file_ranges").all(|(_, n)| *n > 0), "{all:?}");

    // a role with no privileges sees nothing of anyone's
    let mut n = connect_as(&db.name, nobody);
    for filter in ["secret", "open", ""] {
        for (t, count) in counts(&mut n, filter) {
            assert_eq!(count, 0, "{nobody} sees {count} rows of {t}");
        }
    }
    let first_errors: i64 = n.query_one("SELECT count(first_error) FROM ingest.loads", &[]).unwrap().get(0);
    assert_eq!(first_errors, 0);

    // a role that may SELECT open sees open's loads and rejects, not secret's
    let mut r = connect_as(&db.name, reader);
    let open_counts = counts(&mut r, "open.jsonl");
    for (t, count) in &open_counts {
        let expected = matches!(t.as_str(), "ingest.loads" | "ingest.rejects" | "ingest.files");
        assert_eq!(*count > 0, expected, "{reader} on {t}: {count}");
    }
    for (t, count) in counts(&mut r, "secret") {
        assert_eq!(count, 0, "{reader} sees {count} rows of {t} for secret");
    }

    // the loader sees what it loaded, not the superuser's loads of secret (it may not SELECT it)
    let mut l = connect_as(&db.name, loader);
    let mine: i64 =
        l.query_one("SELECT count(*) FROM ingest.rejects WHERE file LIKE '%open.jsonl'", &[]).unwrap().get(0);
    assert_eq!(mine, 1);
    for (t, count) in counts(&mut l, "secret") {
        assert_eq!(count, 0, "{loader} sees {count} rows of {t} for secret");
    }

    // a monitoring role sees all
    let mut m = connect_as(&db.name, monitor);
    let seen = counts(&mut m, "secret");
    assert_eq!(seen, all, "{monitor}");
    // and nobody but pg_ingest writes
    for mut who in [n, r, l, m] {
        for t in ["ingest.loads", "ingest.rejects", "ingest.files", "ingest.client_files", "ingest.job_records"] {
            let e = who.batch_execute(&format!("DELETE FROM {t}")).unwrap_err();
            assert_eq!(e.as_db_error().unwrap().code().code(), "42501", "{t}");
        }
    }
}
