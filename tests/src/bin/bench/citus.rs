//! The Citus set: chat lines into a distributed table (32 shards on two workers, primary key
//! on the distribution column) on the three-node cluster `scripts/citus.sh` runs, against
//! Citus's own `COPY … (FORMAT csv)` of the same rows; skip mode, clean and with 1% bad lines
//! (some refused by the workers); writers; a reference table; upserts; `INSERT … SELECT` from
//! `read_jsonl`; and the same load into a local table on the coordinator (a single node).

use std::fmt::Write as _;
use std::io::{BufRead, Write};
use std::os::unix::fs::PermissionsExt;
use std::time::Instant;

use postgres::{Client, NoTls};

use super::median;

const DDL: &str = "(id text PRIMARY KEY, \"from\" text NOT NULL, type text, site_id text NOT NULL, \
    data text DEFAULT '', \"timestamp\" timestamptz NOT NULL, meta jsonb)";

fn coordinator(port: &str) -> Client {
    let dsn = format!("host=127.0.0.1 port={port} user=postgres dbname=postgres options='-c statement_timeout=0'");
    Client::connect(&dsn, NoTls).expect("the Citus coordinator")
}

/// The chat file with one line in a hundred made bad, three kinds in turn (broken JSON and an
/// out-of-range epoch, refused by the parse threads; a missing NOT NULL key, refused on the
/// coordinator before the row is sent), and `dups` lines spread through the file repeating
/// the id of the line before them (refused by the workers: the primary key). Returns how many
/// lines are bad.
fn spoil(src: &str, dst: &str, lines: u64, dups: u64) -> u64 {
    let input = std::io::BufReader::new(std::fs::File::open(src).unwrap());
    let mut out = std::io::BufWriter::new(std::fs::File::create(dst).unwrap());
    let (mut bad, mut previous_id) = (0, String::new());
    let id_of = |line: &str| {
        let start = line.find("\"id\":\"").map(|i| i + 6)?;
        Some(line[start..start + line[start..].find('"')?].to_owned())
    };
    for (i, line) in input.lines().enumerate() {
        let line = line.unwrap();
        let i = i as u64;
        let spoiled = if i % 100 == 50 {
            bad += 1;
            super::spoil_line(&line, bad % 3)
        } else if dups > 0 && i % (lines / dups) == lines / dups / 2 && !previous_id.is_empty() {
            bad += 1;
            let id = id_of(&line).expect("a chat line has an id");
            line.replacen(&format!("\"id\":\"{id}\""), &format!("\"id\":\"{previous_id}\""), 1)
        } else {
            line
        };
        if let Some(id) = id_of(&spoiled) {
            previous_id = id;
        }
        writeln!(out, "{spoiled}").unwrap();
    }
    out.flush().unwrap();
    std::fs::set_permissions(dst, std::fs::Permissions::from_mode(0o644)).unwrap();
    bad
}

struct Method {
    name: &'static str,
    table: &'static str,
    /// Run first, untimed (a table filled for upserts).
    setup: Option<String>,
    sql: String,
    rows: u64,
}

pub fn citus(port: &str, dir: &std::path::Path, lines: u64, runs: usize, report: &mut String) {
    let mut c = coordinator(port);
    // Citus's COPY routing is reached only where citus.so exports its entry points (built for
    // PostgreSQL 15); from 16 on the rows go through INSERT … SELECT (the README's Citus section)
    let major: i32 = c.query_one("SELECT current_setting('server_version_num')::int / 10000", &[]).unwrap().get(0);
    let way =
        if major == 15 { "Citus's COPY routing" } else { "INSERT … SELECT (Citus's symbols are hidden on 16+)" };
    let path = |name: &str| dir.join(name).to_str().unwrap().to_owned();
    let (jsonl, csv) = (path("citus.jsonl"), path("citus.csv"));
    let (bad_jsonl, dup_jsonl) = (path("citus_bad.jsonl"), path("citus_bad_dups.jsonl"));
    eprintln!("generating {lines} chat lines into {jsonl}");
    let file = std::fs::File::create(&jsonl).unwrap();
    let bytes = pg_ingest_core::sample::write_chat_lines(std::io::BufWriter::new(file), lines, 42).unwrap();
    std::fs::set_permissions(&jsonl, std::fs::Permissions::from_mode(0o644)).unwrap();
    let dups = 5;
    let bad = spoil(&jsonl, &bad_jsonl, lines, 0);
    let bad_dups = spoil(&jsonl, &dup_jsonl, lines, dups);
    c.batch_execute(&format!(
        "DROP TABLE IF EXISTS bench_citus, bench_citus_ref, bench_citus_local, bench_citus_staging;
         CREATE TABLE bench_citus {DDL}; CREATE TABLE bench_citus_ref {DDL}; CREATE TABLE bench_citus_local {DDL};
         CREATE TABLE bench_citus_staging {DDL};"
    ))
    .unwrap();
    c.batch_execute("SELECT create_distributed_table('bench_citus', 'id', shard_count => 32)").unwrap();
    c.batch_execute("SELECT create_distributed_table('bench_citus_staging', 'id', colocate_with => 'bench_citus')")
        .unwrap();
    c.batch_execute("SELECT create_reference_table('bench_citus_ref')").unwrap();
    c.batch_execute(&format!("SELECT * FROM ingest_jsonl('{jsonl}', 'bench_citus')")).unwrap();
    c.batch_execute(&format!("COPY (SELECT * FROM bench_citus) TO '{csv}' (FORMAT csv)")).unwrap();

    let ingest =
        |table: &str, extra: &str| format!("SELECT * FROM ingest_jsonl('{jsonl}', '{table}', force => true{extra})");
    let m = |name, table, sql: String, rows| Method { name, table, setup: None, sql, rows };
    let methods = vec![
        m("Citus COPY csv", "bench_citus", format!("COPY bench_citus FROM '{csv}' (FORMAT csv)"), lines),
        m("ingest_jsonl", "bench_citus", ingest("bench_citus", ""), lines),
        m("ingest_jsonl, skip mode, clean", "bench_citus", ingest("bench_citus", ", on_error => 'skip'"), lines),
        m(
            "ingest_jsonl, skip mode, 1% bad",
            "bench_citus",
            format!("SELECT * FROM ingest_jsonl('{bad_jsonl}', 'bench_citus', on_error => 'skip', force => true)"),
            lines - bad,
        ),
        m(
            "ingest_jsonl, skip mode, 1% bad + 5 refused by workers",
            "bench_citus",
            format!("SELECT * FROM ingest_jsonl('{dup_jsonl}', 'bench_citus', on_error => 'skip', force => true)"),
            lines - bad_dups,
        ),
        m("ingest_jsonl, writers => 2", "bench_citus", ingest("bench_citus", ", writers => 2"), lines),
        m(
            "INSERT … SELECT FROM read_jsonl",
            "bench_citus",
            format!("INSERT INTO bench_citus SELECT * FROM read_jsonl('{jsonl}', NULL::bench_citus)"),
            lines,
        ),
        Method {
            setup: Some(format!("COPY bench_citus FROM '{csv}' (FORMAT csv)")),
            ..m(
                "upsert, every line an update",
                "bench_citus",
                ingest("bench_citus", ", on_conflict => 'update'"),
                lines,
            )
        },
        Method {
            setup: Some(format!("COPY bench_citus FROM '{csv}' (FORMAT csv)")),
            ..m(
                "upsert by hand: COPY csv into a co-located table, INSERT … SELECT … ON CONFLICT",
                "bench_citus",
                format!(
                    "COPY bench_citus_staging FROM '{csv}' (FORMAT csv); \
                     INSERT INTO bench_citus SELECT * FROM bench_citus_staging ON CONFLICT (id) DO UPDATE SET \
                     \"from\" = excluded.\"from\", type = excluded.type, site_id = excluded.site_id, data = excluded.data, \
                     \"timestamp\" = excluded.\"timestamp\", meta = excluded.meta; TRUNCATE bench_citus_staging"
                ),
                lines,
            )
        },
        m(
            "reference table: Citus COPY csv",
            "bench_citus_ref",
            format!("COPY bench_citus_ref FROM '{csv}' (FORMAT csv)"),
            lines,
        ),
        m("reference table: ingest_jsonl", "bench_citus_ref", ingest("bench_citus_ref", ""), lines),
        m(
            "single node (coordinator): COPY csv",
            "bench_citus_local",
            format!("COPY bench_citus_local FROM '{csv}' (FORMAT csv)"),
            lines,
        ),
        m("single node (coordinator): ingest_jsonl", "bench_citus_local", ingest("bench_citus_local", ""), lines),
    ];
    let mut times = vec![Vec::new(); methods.len()];
    for run in 0..runs {
        for (i, m) in methods.iter().enumerate() {
            c.batch_execute(&format!("TRUNCATE {}; TRUNCATE ingest.loads CASCADE", m.table)).unwrap();
            if let Some(setup) = &m.setup {
                c.batch_execute(setup).unwrap();
            }
            c.batch_execute("CHECKPOINT").unwrap();
            let mut session = coordinator(port);
            let start = Instant::now();
            session.batch_execute(&m.sql).unwrap_or_else(|e| panic!("{}: {e}", m.name));
            let secs = start.elapsed().as_secs_f64();
            let n: i64 = c.query_one(&format!("SELECT count(*) FROM {}", m.table), &[]).unwrap().get(0);
            assert_eq!(n as u64, m.rows, "{} loaded {n} rows", m.name);
            eprintln!("[citus] run {} {:<45} {secs:7.2} s", run + 1, m.name);
            times[i].push(secs);
        }
    }
    let med: Vec<f64> = times.iter().map(|t| median(t)).collect();
    c.batch_execute("DROP TABLE bench_citus, bench_citus_ref, bench_citus_local, bench_citus_staging").unwrap();
    writeln!(
        report,
        "### Citus 13 on PostgreSQL {major} (a coordinator and two workers on this machine; {lines} chat lines, \
         {:.0} MB; a distributed table of 32 shards with a primary key on the distribution column; rows to the \
         shards through {way})\n",
        bytes as f64 / 1e6
    )
    .unwrap();
    writeln!(report, "| method | median s | rows/s | × Citus COPY csv time |").unwrap();
    writeln!(report, "|---|---:|---:|---:|").unwrap();
    for (i, m) in methods.iter().enumerate() {
        writeln!(report, "| {} | {:.2} | {:.0} | {:.2} |", m.name, med[i], m.rows as f64 / med[i], med[i] / med[0])
            .unwrap();
    }
    writeln!(
        report,
        "\n- ingest_jsonl / Citus COPY csv, time: **{:.2}** (target ≤ 1.0)\n\
         - skip mode with 1% bad lines ({bad}: a third each broken JSON and an out-of-range epoch, refused by the \
         parse threads, and a missing NOT NULL key, refused on the coordinator) / the clean load (stop): **{:.2}** \
         (target ≤ 1.3); with {dups} lines more repeating the id before them, which the workers refuse: **{:.2}**; \
         skip mode, clean / stop: {:.2}\n\
         - upsert (every line an update) / ingest_jsonl: {:.2}; / the upsert by hand (COPY csv into a co-located \
         table, then INSERT … SELECT … ON CONFLICT): {:.2}\n\
         - INSERT … SELECT FROM read_jsonl / ingest_jsonl: {:.2}; writers => 2 / one: {:.2}; reference table: \
         ingest_jsonl / Citus COPY csv: {:.2}\n\
         - the distributed load / the same load into a local table on the coordinator: ingest_jsonl {:.2}, COPY csv {:.2}\n",
        med[1] / med[0],
        med[3] / med[1],
        med[4] / med[1],
        med[2] / med[1],
        med[7] / med[1],
        med[7] / med[8],
        med[6] / med[1],
        med[5] / med[1],
        med[10] / med[9],
        med[1] / med[12],
        med[0] / med[11],
    )
    .unwrap();
}
