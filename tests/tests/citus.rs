//! Loads into Citus tables land in the shards: `ingest_jsonl`, `COPY … (FORMAT jsonl)`,
//! upserts and `INSERT … SELECT` from `read_jsonl`, into distributed and reference tables,
//! with the same accounting; what cannot work on Citus is refused before anything is written.
//!
//! Runs against the coordinator that `scripts/citus.sh start` runs (`make test` starts it when
//! Citus is installed or its source tarball is there); skipped with a message otherwise.

use pg_ingest_tests::{db_error, DataDir};
use postgres::{Client, NoTls};

/// One test at a time: Citus DDL (create_distributed_table) of two sessions at once can fail.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn coordinator() -> Option<Client> {
    let Ok(port) = std::env::var("PG_INGEST_CITUS_PORT") else {
        eprintln!(
            "Citus tests skipped: no Citus cluster (PG_INGEST_CITUS_PORT unset). `scripts/citus.sh start` builds Citus \
             from citus-13.2.2.tar.gz (set CITUS_TARBALL) and starts a coordinator and two workers."
        );
        return None;
    };
    let dsn = format!("host=127.0.0.1 port={port} user=postgres dbname=postgres options='-c statement_timeout=120s'");
    Some(Client::connect(&dsn, NoTls).expect("the Citus coordinator"))
}

fn count(c: &mut Client, sql: &str) -> i64 {
    c.query_one(sql, &[]).unwrap().get(0)
}

/// Rows in the table's shards, counted on the workers.
fn rows_in_shards(c: &mut Client, table: &str) -> i64 {
    count(
        c,
        &format!("SELECT coalesce(sum(result::bigint), 0)::bigint FROM run_command_on_shards('{table}', 'SELECT count(*) FROM %s')"),
    )
}

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

#[test]
fn what_cannot_work_on_citus_is_refused_before_anything_is_written() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(mut c) = coordinator() else { return };
    let dir = DataDir::new();
    let path = dir.write("refused.jsonl", lines(100, 1));
    c.batch_execute(
        "DROP TABLE IF EXISTS pgi_dist2, pgi_ref2;
         CREATE TABLE pgi_dist2 (id bigint PRIMARY KEY, v text, n int);
         SELECT create_distributed_table('pgi_dist2', 'id');
         CREATE TABLE pgi_ref2 (id bigint PRIMARY KEY, v text, n int);
         SELECT create_reference_table('pgi_ref2');",
    )
    .unwrap();
    for extra in [", on_error => 'skip'", ", writers => 2"] {
        let e = c.query(&format!("SELECT * FROM ingest_jsonl('{path}', 'pgi_dist2'{extra})"), &[]).unwrap_err();
        let (state, message, _) = db_error(&e);
        assert_eq!(state, "0A000", "{extra}: {message}");
        assert!(message.contains("Citus"), "{message}");
    }
    let e = c.batch_execute(&format!("COPY pgi_dist2 FROM '{path}' (FORMAT jsonl, ON_ERROR skip)")).unwrap_err();
    assert_eq!(db_error(&e).0, "0A000");
    // FROM STDIN (psql's \copy, a client's stream) used to answer COPY 0 and drop the rows:
    // refused before the client is asked for data, and nothing is recorded
    let loads = count(&mut c, "SELECT count(*) FROM ingest.loads");
    for table in ["pgi_dist2", "pgi_ref2"] {
        let e = c.batch_execute(&format!("COPY {table} FROM STDIN (FORMAT jsonl)")).unwrap_err();
        let (state, message, _) = db_error(&e);
        assert_eq!(state, "0A000", "{message}");
        assert!(message.contains("STDIN"), "{message}");
    }
    let psql = std::process::Command::new(pg_ingest_tests::pg_program("psql"))
        .args(["-X", "-h", "127.0.0.1", "-p", &std::env::var("PG_INGEST_CITUS_PORT").unwrap(), "-U", "postgres"])
        .args(["-c", &format!("\\copy pgi_dist2 FROM '{path}' WITH (FORMAT jsonl)")])
        .output()
        .unwrap();
    assert!(!psql.status.success());
    let stderr = String::from_utf8_lossy(&psql.stderr);
    assert!(stderr.contains("FROM STDIN"), "{stderr}");
    assert_eq!(count(&mut c, "SELECT count(*) FROM ingest.loads"), loads);
    assert_eq!(count(&mut c, "SELECT count(*) FROM pgi_dist2"), 0);
    assert_eq!(count(&mut c, "SELECT count(*) FROM ingest.files WHERE target_oid = 'pgi_dist2'::regclass"), 0);
}
