//! The event-log set: the shape real event logs have (a uuid key, ISO 8601 timestamps with
//! offsets and fractions, decimal amounts as strings and as numbers into numeric(12,2), an id
//! as a string under a nested key into bigint, two nested objects into jsonb), no indexes.
//! ingest_jsonl against COPY csv and COPY binary of the same finished rows, and the
//! client-side peers.

use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;

use pg_ingest_core::sample::{write_event_lines, EVENTS_COLUMNS, EVENTS_TABLE_DDL};
use pg_ingest_tests::connect;

use super::peers::{Peers, PEERS};
use super::{cpus, time_methods, Method};

pub fn event_log(db: &str, dir: &std::path::Path, lines: u64, runs: usize, report: &mut String) {
    let mut admin = connect(db);
    let path = |name: &str| dir.join(name).to_str().unwrap().to_owned();
    let (jsonl, csv, bin) = (path("events.jsonl"), path("events.csv"), path("events.bin"));
    eprintln!("generating {lines} event-log lines into {jsonl}");
    let file = std::fs::File::create(&jsonl).unwrap();
    let bytes = write_event_lines(std::io::BufWriter::new(file), lines, 11).unwrap();
    std::fs::set_permissions(&jsonl, std::fs::Permissions::from_mode(0o644)).unwrap();
    admin.batch_execute(&EVENTS_TABLE_DDL.replace("TABLE events", "TABLE bench_events")).unwrap();
    let ingest = |extra: &str| {
        format!("SELECT * FROM ingest_jsonl('{jsonl}', 'bench_events', columns => '{EVENTS_COLUMNS}'{extra})")
    };
    admin.batch_execute(&ingest("")).unwrap();
    admin
        .batch_execute(&format!(
            "COPY bench_events TO '{csv}' (FORMAT csv); COPY bench_events TO '{bin}' (FORMAT binary)"
        ))
        .unwrap();
    let peers = Peers::from_env();
    if peers.available() {
        admin.batch_execute("CREATE TABLE bench_events_ref AS TABLE bench_events").unwrap();
        peers.verify("events", &jsonl, db, "bench_events", "bench_events_ref");
        admin.batch_execute("DROP TABLE bench_events_ref").unwrap();
    }
    let sql = |sql: String| Method { name: "", sql: vec![sql], rows: lines, parallel: false, stdin: None, peer: None };
    let mut methods: Vec<(&str, Method)> = vec![
        ("COPY csv", sql(format!("COPY bench_events FROM '{csv}' (FORMAT csv)"))),
        ("COPY binary", sql(format!("COPY bench_events FROM '{bin}' (FORMAT binary)"))),
        ("ingest_jsonl", sql(ingest(", force => true"))),
        ("ingest_jsonl threads => CPUs", sql(ingest(&format!(", force => true, threads => {}", cpus())))),
    ];
    if peers.available() {
        for (name, tool) in PEERS {
            let peer = Some((tool, "events", jsonl.clone(), "bench_events"));
            methods.push((name, Method { peer, ..sql(String::new()) }));
        }
    }
    let timed = time_methods(db, "event log", "bench_events", &methods, lines, runs);
    let med: Vec<f64> = timed.iter().map(|t| t.secs).collect();
    writeln!(
        report,
        "### Event log ({lines} lines, {:.0} MB: uuid, timestamptz from ISO 8601 strings, numeric(12,2), text, \
         bigint from a nested string, 2 jsonb; no indexes)\n",
        bytes as f64 / 1e6
    )
    .unwrap();
    writeln!(
        report,
        "| method | median s | MB/s | rows/s | × COPY csv time | × COPY binary time | backend main thread CPU s | parse threads CPU s | backend peak MB |"
    )
    .unwrap();
    writeln!(report, "|---|---:|---:|---:|---:|---:|---:|---:|---:|").unwrap();
    for (i, (name, _)) in methods.iter().enumerate() {
        writeln!(
            report,
            "| {name} | {:.2} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.0} |",
            med[i],
            bytes as f64 / 1e6 / med[i],
            lines as f64 / med[i],
            med[i] / med[0],
            med[i] / med[1],
            timed[i].main_cpu,
            timed[i].thread_cpu,
            timed[i].peak_mb
        )
        .unwrap();
    }
    writeln!(
        report,
        "\n- ingest_jsonl / COPY binary time: **{:.2}** (target ≤ 1.0); / COPY csv: {:.2}",
        med[2] / med[1],
        med[2] / med[0]
    )
    .unwrap();
    if med.len() > 4 {
        writeln!(
            report,
            "- ingest_jsonl / DuckDB → ADBC time: **{:.2}** (target ≤ 0.6); / polars → ADBC: {:.2}",
            med[2] / med[4],
            med[2] / med[5]
        )
        .unwrap();
    }
    writeln!(report, "- parse CPU per GB of input: {:.2} s\n", timed[2].thread_cpu / (bytes as f64 / 1e9)).unwrap();
}
