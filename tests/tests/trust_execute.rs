//! GRANT and REVOKE hold for every way a function is called: `read_jsonl` planned as a custom
//! scan (which evaluates the call itself) checks EXECUTE as PostgreSQL does for a function it
//! calls; the extension's internal entry points are not executable by PUBLIC.

use pg_ingest_tests::{connect_as, db_error, role, DataDir, TestDb};

#[test]
fn a_revoked_read_jsonl_cannot_be_reached_through_its_scan() {
    let reader = "pgi_exec_reader";
    let mut db = TestDb::new("trust_execute");
    role(&mut db.client, reader, "LOGIN");
    let dir = DataDir::new();
    let path = dir.write("r.jsonl", "{\"a\": 1}\n{\"a\": 2}\n");
    db.client
        .batch_execute(&format!(
            "GRANT pg_read_server_files TO {reader};
             CREATE TABLE t (a int); GRANT SELECT ON t TO {reader};
             REVOKE EXECUTE ON FUNCTION read_jsonl(text, jsonb, text, text, text, bigint, integer, text) FROM PUBLIC;
             REVOKE EXECUTE ON FUNCTION read_jsonl(text, anyelement, jsonb, text, text, text, bigint, integer, text) FROM PUBLIC;"
        ))
        .unwrap();
    let mut r = connect_as(&db.name, reader);
    let queries = [
        format!("SELECT * FROM read_jsonl('{path}') AS x(a int)"),
        format!("SELECT * FROM read_jsonl('{path}', NULL::t)"),
        format!("SELECT sum(a) FROM read_jsonl('{path}', NULL::t) LIMIT 1"),
        format!("EXPLAIN SELECT * FROM read_jsonl('{path}') AS x(a int)"),
        // the function path (lateral, select list) was checked by PostgreSQL already
        format!("SELECT * FROM (VALUES ('{path}')) f(p), LATERAL read_jsonl(f.p) AS x(a int)"),
    ];
    for q in &queries {
        let e = r.query(q, &[]).unwrap_err();
        let (code, message, _) = db_error(&e);
        assert_eq!(code, "42501", "{q}: {message}");
        assert!(message.contains("read_jsonl"), "{message}");
    }
    // granted back to the role: the scan reads
    db.client
        .batch_execute(&format!(
            "GRANT EXECUTE ON FUNCTION read_jsonl(text, jsonb, text, text, text, bigint, integer, text) TO {reader};
             GRANT EXECUTE ON FUNCTION read_jsonl(text, anyelement, jsonb, text, text, text, bigint, integer, text) TO {reader};"
        ))
        .unwrap();
    for q in &queries[..3] {
        assert!(!r.query(q, &[]).unwrap().is_empty(), "{q}");
    }
}

#[test]
fn internal_entry_points_are_not_executable_by_public() {
    let mut db = TestDb::new("trust_internal");
    let public: Vec<String> = db
        .client
        .query(
            "SELECT p.oid::regprocedure::text FROM pg_proc p
              WHERE p.pronamespace = 'ingest'::regnamespace
                AND has_function_privilege('public', p.oid, 'EXECUTE')
              ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    // what a role's own load or query calls as that role, and what the views call
    let expected = [
        "ingest.client_file_state(regclass,text)",
        "ingest.client_file_tail(regclass,text,text)",
        "ingest.job_worker_alive(integer)",
        "ingest.load_range(text,oid,bigint,bigint,bigint,jsonb,bigint)",
        "ingest.prepared_rows(bigint,anyelement)",
        "ingest.progress_file(bigint,integer,bigint)",
        "ingest.visible(oid,regrole)",
    ];
    assert_eq!(public, expected);
}
