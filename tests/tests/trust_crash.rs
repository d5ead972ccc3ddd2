//! The server never crashes, whatever a role sends. Written as an attacker would: a
//! statement-level trigger that feeds a load's prepared rows into a row type of its own, a
//! prepared read_jsonl whose row type changes under it, a writer's entry point called with an
//! allocation size of its choosing, a batch of millions of queries. Each test asserts that no
//! backend crashed, and every session runs with a statement_timeout.
//!
//! A crashed backend makes the postmaster end every other session and recover, without a new
//! `pg_postmaster_start_time()`: a witness session opened first must still answer at the end.

use pg_ingest_tests::{connect_as, db_error, role, CrashWitness, DataDir, TestDb};

fn wide_lines(n: u32) -> String {
    (1..=n)
        .map(|i| {
            format!(
                "{{\"a\": {i}, \"b\": \"text {i}\", \"c\": {}, \"d\": \"{}\", \"e\": {{\"k\": [{i}, \"x\"]}}, \"f\": {i}.5}}\n",
                i as i64 * 1_000_003,
                "w".repeat((i % 50) as usize)
            )
        })
        .collect()
}

#[test]
fn a_statement_trigger_cannot_feed_a_loads_rows_into_another_row_type() {
    let attacker = "pgi_trust_rowtype";
    let mut db = TestDb::new("trust_rowtype");
    role(&mut db.client, attacker, "LOGIN");
    db.client
        .batch_execute(&format!(
            "GRANT pg_read_server_files TO {attacker}; GRANT CREATE ON SCHEMA public TO {attacker}"
        ))
        .unwrap();
    let mut witness = CrashWitness::new(&db.name);
    let dir = DataDir::new();
    let path = dir.write("wide.jsonl", wide_lines(300));
    let mut c = connect_as(&db.name, attacker);
    // narrower and wider row types than the table's, and a statement trigger that tries every
    // small token (they used to be 1, 2, 3…) and the token of every shape it can think of
    c.batch_execute(
        "CREATE TABLE t (a int PRIMARY KEY, b text, c int8, d text, e jsonb, f float8);
         CREATE TYPE narrow AS (x int);
         CREATE TYPE wider AS (a text, b text, c text, d text, e text, f text, g text, h text, i text, j text);
         CREATE TABLE taken (how text, n bigint);
         CREATE FUNCTION grab() RETURNS trigger LANGUAGE plpgsql AS $$
         DECLARE tok bigint;
         BEGIN
           FOR tok IN SELECT g FROM generate_series(-3, 60) g UNION ALL SELECT 9223372036854775807 LOOP
             BEGIN
               INSERT INTO taken SELECT 'wider', count(*) FROM ingest.prepared_rows(tok, NULL::wider);
             EXCEPTION WHEN others THEN NULL;
             END;
             BEGIN
               INSERT INTO taken SELECT 'narrow', count(*) FROM ingest.prepared_rows(tok, NULL::narrow);
             EXCEPTION WHEN others THEN NULL;
             END;
             BEGIN
               INSERT INTO taken SELECT 'record', count(*) FROM ingest.prepared_rows(tok, NULL::record) AS r(x int);
             EXCEPTION WHEN others THEN NULL;
             END;
             BEGIN
               INSERT INTO taken SELECT 'same', count(*) FROM ingest.prepared_rows(tok, NULL::t);
             EXCEPTION WHEN others THEN NULL;
             END;
           END LOOP;
           RETURN NULL;
         END $$;
         CREATE TRIGGER grab BEFORE INSERT ON t FOR EACH STATEMENT EXECUTE FUNCTION grab();",
    )
    .unwrap();
    for mode in ["nothing", "update"] {
        let r = c
            .query_one(
                &format!(
                    "SELECT lines, rows_inserted FROM ingest_jsonl('{path}', 't', on_conflict => '{mode}', force => true)"
                ),
                &[],
            )
            .unwrap();
        assert_eq!(r.get::<_, i64>(0), 300, "{mode}");
    }
    assert_eq!(c.query_one("SELECT count(*) FROM t", &[]).unwrap().get::<_, i64>(0), 300);
    // nothing was taken by the trigger: every call failed before a row came out
    assert_eq!(c.query_one("SELECT count(*) FROM taken", &[]).unwrap().get::<_, i64>(0), 0);
    // called directly, with any token and type: an error, never a crash
    for q in [
        "SELECT * FROM ingest.prepared_rows(1, NULL::narrow)",
        "SELECT * FROM ingest.prepared_rows(0, NULL::wider)",
        "SELECT ingest.prepared_rows(2, NULL::t)",
        "SELECT * FROM ingest.prepared_rows(NULL, NULL::t)",
    ] {
        let e = c.query(q, &[]).unwrap_err();
        assert_eq!(db_error(&e).0, "55000", "{q}");
    }
    witness.assert_no_crash();
}

#[test]
fn a_prepared_read_whose_row_type_changed_is_refused_not_overrun() {
    let mut db = TestDb::new("trust_replan");
    let mut witness = CrashWitness::new(&db.name);
    let dir = DataDir::new();
    let path = dir.write("wide.jsonl", wide_lines(2000));
    let c = &mut db.client;
    c.batch_execute("SET statement_timeout = '60s'; CREATE TABLE t (a int, b text)").unwrap();
    // a server-side prepared statement and a protocol-level one (the plan cache keeps both)
    c.batch_execute(&format!("PREPARE q AS SELECT * FROM read_jsonl('{path}', NULL::t)")).unwrap();
    let stmt = c.prepare(&format!("SELECT * FROM read_jsonl('{path}', NULL::t)")).unwrap();
    let count = |c: &mut postgres::Client| c.query("EXECUTE q", &[]).map(|rows| (rows.len(), rows[0].len()));
    assert_eq!(count(c).unwrap(), (2000, 2));
    assert_eq!(c.query(&stmt, &[]).unwrap().len(), 2000);
    let changes = [
        // many columns more than the plan's slot holds
        "ALTER TABLE t ADD COLUMN c int8, ADD COLUMN d text, ADD COLUMN e jsonb, ADD COLUMN f float8, \
         ADD COLUMN g text, ADD COLUMN h text, ADD COLUMN i text, ADD COLUMN j text, ADD COLUMN k text",
        "ALTER TABLE t DROP COLUMN b",
        "ALTER TABLE t ALTER COLUMN a TYPE text",
        "ALTER TABLE t DROP COLUMN c, DROP COLUMN d, DROP COLUMN e",
    ];
    for change in changes {
        c.batch_execute(change).unwrap();
        let shape: i64 = c
            .query_one(
                "SELECT count(*) FROM pg_attribute WHERE attrelid = 't'::regclass AND attnum > 0 AND NOT attisdropped",
                &[],
            )
            .unwrap()
            .get(0);
        // either the statement is planned again (the new shape) or refused, as FunctionScan
        // refuses a function whose rows no longer match: never rows written past the slot
        for result in [count(c).map(|r| r.1), c.query(&stmt, &[]).map(|rows| rows.first().map_or(0, |r| r.len()))] {
            match result {
                Ok(columns) => assert_eq!(columns as i64, shape, "{change}"),
                Err(e) => assert_eq!(db_error(&e).0, "42804", "{change}: {e}"),
            }
        }
    }
    witness.assert_no_crash();
}

#[test]
fn sizes_from_arguments_are_bounded_and_errors_not_aborts() {
    let mut db = TestDb::new("trust_alloc");
    let mut witness = CrashWitness::new(&db.name);
    let c = &mut db.client;
    c.batch_execute("SET statement_timeout = '120s'").unwrap();
    // the writers' entry point, with a fingerprint of 2^60 bytes: refused before it reads
    let e = c
        .query("SELECT ingest.load_range('/etc/hostname', 0, 0, 0, 1, '{\"head_bytes\":1152921504606846976}', 0)", &[])
        .unwrap_err();
    assert_eq!(db_error(&e).0, "42501", "{e}");
    // a batch whose shared memory would pass what 32-bit offsets address
    let e = c.query("SELECT * FROM run_batch(array_fill(''::text, ARRAY[3000000]), 1)", &[]).unwrap_err();
    let (code, message, _) = db_error(&e);
    assert_eq!(code, "54000", "{message}");
    assert!(message.contains("3000000 queries"), "{message}");
    // a batch just under it still runs
    let n: i64 = c
        .query_one("SELECT count(*) FROM run_batch(array_fill('SELECT 1'::text, ARRAY[2000]), 2)", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 2000);
    witness.assert_no_crash();
}
