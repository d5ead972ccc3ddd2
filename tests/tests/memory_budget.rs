//! The backend's memory stays within a budget whatever the file: long lines on many threads
//! (pg_ingest.memory_budget bounds what the parse threads hold, not max_line_bytes × threads),
//! and millions of blank lines (bookkeeping per blank line is dropped as COPY moves on).
//! Measured as the backend's peak private memory: its peak resident size less the shared
//! memory and files it has mapped.

use std::io::Write;

use pg_ingest_tests::{connect_as, peak_private_mb, private_mb, DataDir, TestDb};
use postgres::Client;

/// Settings for [`long_lines`]: 16 threads, chunks smaller than a line.
const LONG_LINE_SETTINGS: &str =
    "SET pg_ingest.max_threads = 16; SET pg_ingest.chunk_bytes = '1MB'; SET pg_ingest.max_line_bytes = '8MB';";

/// A file of 40 lines of 6 MB each.
fn long_lines(dir: &DataDir) -> String {
    let path = dir.path("long.jsonl");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let pad = "x".repeat(6 << 20);
    for i in 1..=40 {
        writeln!(f, "{{\"id\":{i},\"pad\":\"{pad}\"}}").unwrap();
    }
    f.into_inner().unwrap().sync_all().unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    path
}

/// A fresh backend (its peak starts low), its pid.
fn backend(db: &TestDb, settings: &str) -> (Client, i32) {
    let mut c = connect_as(&db.name, "postgres");
    c.batch_execute(settings).unwrap();
    let pid = c.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    (c, pid)
}

#[test]
fn long_lines_on_many_threads_stay_within_the_memory_budget() {
    let db = TestDb::new("mem_long_lines");
    let mut admin = connect_as(&db.name, "postgres");
    admin.batch_execute("CREATE TABLE t (id int, pad text)").unwrap();
    // COPY takes its time over each row: the parse threads could run far ahead of it
    pg_ingest_tests::slow_inserts(&mut admin, "t", 0.03, None);
    let dir = DataDir::new();
    let path = long_lines(&dir);
    let settings = LONG_LINE_SETTINGS;

    // no budget to speak of: 16 threads, 34 chunks in flight of a line each
    let (mut c, pid) = backend(&db, &format!("{settings} SET pg_ingest.memory_budget = '64GB'"));
    c.query("SELECT * FROM ingest_jsonl($1, 't', threads => 16)", &[&path]).unwrap();
    let unbounded = peak_private_mb(pid);
    // a 32 MB budget: about two lines in flight, one being read
    let (mut c, pid) = backend(&db, &format!("{settings} SET pg_ingest.memory_budget = '32MB'"));
    c.query("SELECT * FROM ingest_jsonl($1, 't', threads => 16, force => true)", &[&path]).unwrap();
    let bounded = peak_private_mb(pid);
    eprintln!("peak private memory: {unbounded:.0} MB without a budget, {bounded:.0} MB with 32 MB");
    // the budget, the row COPY is making (its line, its datum, its tuple: a few lines' worth)
    // and the backend's own; freed chunks are not kept by the threads' malloc arenas (they
    // were: the peak then went anywhere from 70 to 100 MB, differently each run)
    assert!(bounded < 32.0 + 3.0 * 8.0 + 16.0, "{bounded:.0} MB with a 32 MB budget");
    assert!(unbounded > bounded + 60.0, "the budget made no difference: {unbounded:.0} vs {bounded:.0} MB");
    let n: i64 = admin.query_one("SELECT count(*) FROM t", &[]).unwrap().get(0);
    assert_eq!(n, 80);
}

#[test]
fn a_cancelled_load_leaves_no_threads_and_gives_back_the_blocks_it_kept() {
    let db = TestDb::new("mem_cancel");
    let mut admin = connect_as(&db.name, "postgres");
    admin.batch_execute("CREATE TABLE t (id int, pad text)").unwrap();
    pg_ingest_tests::slow_inserts(&mut admin, "t", 0.05, None);
    let dir = DataDir::new();
    let path = long_lines(&dir);
    // the default budget (256 MB): freed blocks up to 64 MB are kept while the load runs
    let (mut c, pid) = backend(&db, &format!("{LONG_LINE_SETTINGS} SET statement_timeout = '1500ms'"));
    let before = private_mb(pid);
    let e = c.query("SELECT * FROM ingest_jsonl($1, 't', threads => 16)", &[&path]).unwrap_err();
    assert_eq!(e.code(), Some(&postgres::error::SqlState::QUERY_CANCELED), "{e}");
    let threads = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().count();
    let after = private_mb(pid);
    eprintln!("private memory: {before:.0} MB before the load, {after:.0} MB after its cancel");
    assert_eq!(threads, 1, "parse threads left in the backend");
    // what the load kept for reuse (up to 64 MB) is gone with it, not held for the backend's
    // life: 18 MB stay here (PostgreSQL's own), 77–80 MB when kept blocks outlived the load
    assert!(after < before + 35.0, "{after:.0} MB after the cancel, {before:.0} MB before");
    let n: i64 = c.query_one("SELECT count(*) FROM t", &[]).unwrap().get(0);
    assert_eq!(n, 0);
}

#[test]
fn millions_of_blank_lines_do_not_grow_the_backend() {
    let db = TestDb::new("mem_blank_lines");
    let mut admin = connect_as(&db.name, "postgres");
    admin.batch_execute("CREATE UNLOGGED TABLE t (id int)").unwrap();
    let dir = DataDir::new();
    let path = dir.path("blank.jsonl");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    const ROWS: i64 = 5_000_000;
    for i in 1..=ROWS {
        // every row followed by a blank line: each is a break between rows and lines
        write!(f, "{{\"id\":{i}}}\n\n").unwrap();
    }
    f.into_inner().unwrap().sync_all().unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let (mut c, pid) = backend(&db, "SET pg_ingest.max_threads = 2; SET pg_ingest.memory_budget = '48MB'");
    let r = c.query_one("SELECT lines, rows_inserted, lines_skipped FROM ingest_jsonl($1, 't')", &[&path]).unwrap();
    assert_eq!((r.get::<_, i64>(0), r.get::<_, i64>(1), r.get::<_, i64>(2)), (2 * ROWS, ROWS, ROWS));
    let peak = peak_private_mb(pid);
    eprintln!("peak private memory: {peak:.0} MB for {ROWS} rows and as many blank lines");
    // the budget and the backend's own memory; a record per blank line would be 80 MB more
    assert!(peak < 48.0 + 45.0, "{peak:.0} MB");
}

#[test]
fn a_gzip_of_a_gigabyte_loads_in_bounded_memory() {
    let db = TestDb::new("mem_gzip");
    let mut admin = connect_as(&db.name, "postgres");
    admin.batch_execute("CREATE UNLOGGED TABLE t (id int, v text)").unwrap();
    let dir = DataDir::new();
    let path = dir.path("big.jsonl.gz");
    // 1024 lines of 1 MB (a short row padded with JSON white space, and a long value every
    // 64th line): 1 GB once decompressed, written straight into gzip
    let mut gzip = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("gzip -1 > {path}"))
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        let mut w = std::io::BufWriter::with_capacity(1 << 20, gzip.stdin.take().unwrap());
        let pad = " ".repeat((1 << 20) - 64);
        let long = "y".repeat((1 << 20) - 64);
        for i in 1..=1024 {
            if i % 64 == 0 {
                writeln!(w, "{{\"id\":{i},\"v\":\"{long}\"}}").unwrap();
            } else {
                writeln!(w, "{{\"id\":{i},{pad}\"v\":\"r\"}}").unwrap();
            }
        }
        w.flush().unwrap();
    }
    assert!(gzip.wait().unwrap().success());
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let compressed = std::fs::metadata(&path).unwrap().len();
    let (mut c, pid) = backend(&db, "SET pg_ingest.max_threads = 2; SET pg_ingest.memory_budget = '64MB'");
    let r = c.query_one("SELECT lines, rows_inserted, bytes FROM ingest_jsonl($1, 't')", &[&path]).unwrap();
    assert_eq!((r.get::<_, i64>(0), r.get::<_, i64>(1)), (1024, 1024));
    assert!(r.get::<_, i64>(2) > 1_000_000_000, "a gigabyte decompressed");
    let peak = peak_private_mb(pid);
    eprintln!("peak private memory: {peak:.0} MB for a {:.1} MB gzip of 1 GB", compressed as f64 / 1e6);
    // the budget, gzip's window and buffers, the backend's own memory: not the gigabyte
    assert!(peak < 64.0 + 60.0, "{peak:.0} MB");
}
