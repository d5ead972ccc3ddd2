//! The installed extension in a real cluster.

use pg_ingest_tests::{connect, TestDb};

#[test]
fn version_function_matches_the_installed_library() {
    let mut db = TestDb::new("ext_version");
    let v: String = db.client.query_one("SELECT pg_ingest_version()", &[]).unwrap().get(0);
    assert_eq!(v, pg_ingest_core::VERSION);
    let ext: String =
        db.client.query_one("SELECT extversion FROM pg_extension WHERE extname = 'pg_ingest'", &[]).unwrap().get(0);
    assert_eq!(ext, pg_ingest_core::VERSION);
}

#[test]
fn ingest_schema_comes_and_goes_with_the_extension() {
    let mut db = TestDb::new("ext_schema");
    let has_schema = |c: &mut postgres::Client| -> bool {
        c.query_one("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'ingest')", &[]).unwrap().get(0)
    };
    assert!(has_schema(&mut db.client));
    db.client.batch_execute("DROP EXTENSION pg_ingest").unwrap();
    assert!(!has_schema(&mut db.client));
}

#[test]
fn private_cluster_has_pg_cron_and_pg_ingest_in_postgres_db() {
    let mut c = connect("postgres");
    let preload: String = c.query_one("SHOW shared_preload_libraries", &[]).unwrap().get(0);
    assert!(preload.contains("pg_cron"), "{preload}");
    let cron_db: String = c.query_one("SHOW cron.database_name", &[]).unwrap().get(0);
    assert_eq!(cron_db, "postgres");
    let exts: Vec<String> = c
        .query("SELECT extname::text FROM pg_extension WHERE extname IN ('pg_cron','pg_ingest') ORDER BY 1", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(exts, ["pg_cron", "pg_ingest"]);
    let workers: String = c.query_one("SHOW max_worker_processes", &[]).unwrap().get(0);
    assert!(workers.parse::<i32>().unwrap() >= 16, "{workers}");
}
