//! How `pg-ingest` connects: bad DSNs, TLS with libpq's sslmode semantics, and passwords from
//! PGPASSWORD or a password file. The private cluster has TLS on and two roles set up in its
//! pg_hba.conf for these tests (scripts/cluster.sh).

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;

use pg_ingest_tests::{server, TestDb};
use predicates::prelude::*;

/// The private cluster's certificate (self-signed, for localhost and 127.0.0.1).
fn server_certificate() -> PathBuf {
    let cert = pg_ingest_tests::pg_dir().join("tls/server.crt");
    assert!(cert.is_file(), "{} is missing: start the cluster with `make start`", cert.display());
    cert
}

fn ping_json(db: &TestDb, dsn: &str) -> serde_json::Value {
    let out = db.cli().args(["--json", "ping", "--dsn", dsn]).assert().success();
    serde_json::from_slice(&out.get_output().stdout).unwrap()
}

fn ensure_role(db: &mut TestDb, role: &str, password: Option<&str>) {
    db.client
        .batch_execute(&format!(
            "DO $$ BEGIN CREATE ROLE {role} LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$"
        ))
        .unwrap();
    if let Some(pw) = password {
        db.client.batch_execute(&format!("ALTER ROLE {role} PASSWORD '{pw}'")).unwrap();
    }
}

#[test]
fn bad_connection_strings_and_unreachable_servers() {
    let db = TestDb::new("cli_conn_bad");
    let out = db.cli().args(["ping", "--dsn", "host=127.0.0.1 port=1 dbname=x connect_timeout=5"]).assert().code(1);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("pg-ingest: cannot connect to 127.0.0.1:1/x: "), "{stderr}");
    assert!(!stderr.contains("Error {") && !stderr.contains("kind:"), "a debug dump: {stderr}");

    for bad in ["postgresql://[bad", "host=h sslmode=sometimes", "host='open", "nonsense"] {
        db.cli()
            .args(["ping", "--dsn", bad])
            .assert()
            .code(2)
            .stderr(predicate::str::starts_with("pg-ingest: invalid connection string"));
    }
    // --json: the error as JSON on stdout too
    let out = db.cli().args(["--json", "ping", "--dsn", "host=127.0.0.1 port=1"]).assert().code(1);
    let v: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert!(v["error"]["message"].as_str().unwrap().contains("cannot connect"));
    // a database that does not exist: the server's error, with its SQLSTATE
    db.cli()
        .args(["ping"])
        .env("PGDATABASE", "pgi_no_such_database")
        .assert()
        .code(1)
        .stderr(predicate::str::contains("FATAL (3D000): database \"pgi_no_such_database\" does not exist"));
}

#[test]
fn tls_follows_sslmode() {
    let db = TestDb::new("cli_conn_tls");
    let (host, port, user) = server();
    let base = format!("host={host} port={port} user={user} dbname={}", db.name);
    assert_eq!(ping_json(&db, &format!("{base} sslmode=disable"))["ssl"], false);
    assert_eq!(ping_json(&db, &format!("{base} sslmode=require"))["ssl"], true);
    assert_eq!(ping_json(&db, &base)["ssl"], true, "prefer (the default) uses TLS when the server offers it");
    let cert = server_certificate();
    let verified = format!("{base} sslmode=verify-full sslrootcert={}", cert.display());
    assert_eq!(ping_json(&db, &verified)["ssl"], true);
    // URL form, and the environment
    let url = format!("postgresql://{user}@{host}:{port}/{}?sslmode=verify-ca&sslrootcert={}", db.name, cert.display());
    assert_eq!(ping_json(&db, &url)["ssl"], true);
    let out = db.cli().env("PGSSLMODE", "disable").args(["--json", "ping"]).assert().success();
    let v: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(v["ssl"], false);

    // a root certificate that did not sign the server's: refused
    let other = tempfile::tempdir().unwrap();
    let (key, crt) = (other.path().join("other.key"), other.path().join("other.crt"));
    let made = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=other"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    for mode in ["verify-ca", "verify-full", "require"] {
        let dsn = format!("{base} sslmode={mode} sslrootcert={}", crt.display());
        let out = db.cli().args(["ping", "--dsn", &dsn]).assert().code(1);
        let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
        assert!(stderr.contains("certificate verify failed"), "{mode}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }
    // verify-full checks the name: the certificate is for localhost and 127.0.0.1 only
    db.cli().args(["ping", "--dsn", &format!("{verified} sslmode=verify-ca")]).assert().success();
    db.cli()
        .args(["ping", "--dsn", &format!("{base} sslmode=verify-full")])
        .env("HOME", other.path())
        .assert()
        .code(1)
        .stderr(predicate::str::contains("needs a root certificate"));
}

#[test]
fn tls_when_the_server_requires_it() {
    let mut db = TestDb::new("cli_conn_tls_only");
    ensure_role(&mut db, "pgi_tls_only", None);
    let (host, port, _) = server();
    let base = format!("host={host} port={port} user=pgi_tls_only dbname={}", db.name);
    assert_eq!(ping_json(&db, &base)["ssl"], true);
    db.cli()
        .args(["ping", "--dsn", &format!("{base} sslmode=disable")])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("(28000)"))
        .stderr(predicate::str::contains("no encryption"));
}

#[test]
fn passwords_from_the_environment_or_a_password_file() {
    let mut db = TestDb::new("cli_conn_password");
    let password = "pw:with\\colons";
    ensure_role(&mut db, "pgi_password", Some("pw:with\\colons"));
    let (host, port, _) = server();
    let dsn = format!("host={host} port={port} user=pgi_password dbname={}", db.name);
    let dir = tempfile::tempdir().unwrap();
    let pgpass = dir.path().join("pgpass");
    std::fs::write(&pgpass, format!("# test\nother:*:*:*:nope\n{host}:{port}:*:pgi_password:pw\\:with\\\\colons\n"))
        .unwrap();
    std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o600)).unwrap();

    // no password at all
    db.cli()
        .env("PGPASSFILE", dir.path().join("none"))
        .args(["ping", "--dsn", &dsn])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("password"));
    // PGPASSWORD, right and wrong
    db.cli().env("PGPASSWORD", password).args(["ping", "--dsn", &dsn]).assert().success();
    db.cli()
        .env("PGPASSWORD", "wrong")
        .args(["ping", "--dsn", &dsn])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("(28P01)"));
    // the password file
    db.cli().env("PGPASSFILE", &pgpass).args(["ping", "--dsn", &dsn]).assert().success();
    // ... ignored, with a warning, when others can read it
    std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o644)).unwrap();
    db.cli()
        .env("PGPASSFILE", &pgpass)
        .args(["ping", "--dsn", &dsn])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("has group or world access"));
}
