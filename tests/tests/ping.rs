//! `pg-ingest ping` and `--version`, driven as a user would.

use pg_ingest_tests::{server, TestDb};
use predicates::prelude::*;

#[test]
fn version_flag_prints_the_version() {
    let db = TestDb::without_extension("version_flag");
    db.cli()
        .arg("--version")
        .assert()
        .success()
        .stdout(predicate::str::contains(format!("pg-ingest {}", pg_ingest_core::VERSION)));
}

#[test]
fn ping_reports_pg_ingest_installed() {
    let db = TestDb::new("ping_installed");
    db.cli()
        .arg("ping")
        .assert()
        .success()
        .stdout(predicate::str::contains(format!("PostgreSQL {}", pg_ingest_tests::pg_major())))
        .stdout(predicate::str::contains(format!("pg_ingest {} installed", pg_ingest_core::VERSION)));
}

#[test]
fn ping_json_is_machine_readable() {
    let db = TestDb::new("ping_json");
    let out = db.cli().args(["ping", "--json"]).assert().success().get_output().stdout.clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["database"], db.name.as_str());
    assert_eq!(v["pg_ingest_installed"], pg_ingest_core::VERSION);
    assert!(v["server_version"].as_str().unwrap().starts_with(&pg_ingest_tests::pg_major()));
}

#[test]
fn ping_says_when_the_extension_is_only_available() {
    let db = TestDb::without_extension("ping_available");
    db.cli()
        .arg("ping")
        .assert()
        .success()
        .stdout(predicate::str::contains("pg_ingest not installed in this database"))
        .stdout(predicate::str::contains("CREATE EXTENSION pg_ingest"));
}

#[test]
fn dsn_flag_overrides_the_environment() {
    let db = TestDb::new("ping_dsn");
    // the environment points nowhere useful; --dsn must win
    db.cli()
        .env("PGDATABASE", "no_such_database")
        .args(["ping", "--dsn", &db.dsn()])
        .assert()
        .success()
        .stdout(predicate::str::contains(format!("database {}", db.name)));
    // DATABASE_URL in URL form works too
    let (host, port, user) = server();
    db.cli()
        .env("PGDATABASE", "no_such_database")
        .env("DATABASE_URL", format!("postgresql://{user}@{host}:{port}/{}", db.name))
        .arg("ping")
        .assert()
        .success();
}

#[test]
fn unreachable_server_is_one_clear_line_and_exit_1() {
    let db = TestDb::without_extension("ping_unreachable");
    let assert = db.cli().env("PGPORT", "1").arg("ping").assert().code(1);
    let stderr = String::from_utf8(assert.get_output().stderr.clone()).unwrap();
    assert!(stderr.starts_with("pg-ingest: cannot connect to 127.0.0.1:1/"), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
}

#[test]
fn server_errors_show_the_server_message() {
    let db = TestDb::without_extension("ping_nodb");
    let assert = db.cli().env("PGDATABASE", "no_such_database_here").arg("ping").assert().code(1);
    let stderr = String::from_utf8(assert.get_output().stderr.clone()).unwrap();
    assert!(stderr.contains("3D000") && stderr.contains("no_such_database_here"), "{stderr}");
}

#[test]
fn bad_usage_exits_2() {
    let db = TestDb::without_extension("usage");
    db.cli().arg("no-such-command").assert().code(2);
}
