//! Parse-thread speed, one core, no PostgreSQL: a sample set is generated in memory, framed
//! into chunks and encoded as the extension encodes it for its table, and the CPU time per GB
//! of input is printed (the figure issue 20's "parser twice as fast" is measured by).
//!
//!   cargo run --release -p pg_ingest_core --example parse_speed -- chat|events [LINES] [ROUNDS]

use std::sync::atomic::AtomicBool;
use std::time::Instant;

use pg_ingest_core::encode::{ColumnKind, ColumnSpec, DefaultValue, EncodeOptions, RowEncoder, TAG_RECEIVE};
use pg_ingest_core::framing::LineFramer;
use pg_ingest_core::mapping::{parse_path, Source};
use pg_ingest_core::sample;

fn column(name: &str, kind: ColumnKind, finished: bool) -> ColumnSpec {
    ColumnSpec {
        name: name.into(),
        kind,
        default: DefaultValue::Null,
        source: Source::Key,
        finished,
        typmod: -1,
        element: None,
    }
}

/// The columns the extension encodes for the set's table (finished where it would finish them).
fn columns(set: &str) -> Vec<ColumnSpec> {
    match set {
        "chat" => vec![
            column("id", ColumnKind::Text, true),
            column("from", ColumnKind::Text, true),
            column("type", ColumnKind::Text, true),
            column("site_id", ColumnKind::Text, true),
            ColumnSpec {
                default: DefaultValue::Const(Some(vec![TAG_RECEIVE])),
                ..column("data", ColumnKind::Text, true)
            },
            column("timestamp", ColumnKind::Timestamptz, true),
            column("meta", ColumnKind::Jsonb, true),
        ],
        _ => vec![
            column("event_id", ColumnKind::Uuid, false),
            column("ts", ColumnKind::Timestamptz, true),
            ColumnSpec { typmod: ((12 << 16) | 2) + 4, ..column("amount", ColumnKind::Numeric, true) },
            column("type", ColumnKind::Text, true),
            ColumnSpec { source: parse_path("user.id").unwrap(), ..column("user_id", ColumnKind::Int8, false) },
            column("props", ColumnKind::Jsonb, true),
            column("context", ColumnKind::Jsonb, true),
        ],
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let set = args.first().map(String::as_str).unwrap_or("chat");
    let lines: u64 = args.get(1).and_then(|v| v.parse().ok()).unwrap_or(500_000);
    let rounds: usize = args.get(2).and_then(|v| v.parse().ok()).unwrap_or(3);
    let mut data = Vec::new();
    match set {
        "chat" => sample::write_chat_lines(&mut data, lines, 42).unwrap(),
        "events" => sample::write_event_lines(&mut data, lines, 11).unwrap(),
        _ => panic!("chat or events"),
    };
    let encoder = RowEncoder::new(columns(set), EncodeOptions::default()).unwrap();
    let cancel = AtomicBool::new(false);
    let mut best = f64::MAX;
    for _ in 0..rounds {
        let start = Instant::now();
        let mut framer = LineFramer::new(&data[..], 1 << 20, 64 << 20);
        let mut rows = 0;
        while let Some(chunk) = framer.next_chunk().unwrap() {
            let out = encoder.encode_chunk(&chunk, &cancel);
            assert!(out.errors.is_empty(), "{:?}", out.errors.first());
            rows += out.rows;
        }
        assert_eq!(rows, lines);
        best = best.min(start.elapsed().as_secs_f64());
    }
    let gb = data.len() as f64 / 1e9;
    println!(
        "{set}: {lines} lines, {:.0} MB: {best:.3} s, {:.2} s per GB, {:.0} MB/s",
        gb * 1e3,
        best / gb,
        gb * 1e3 / best
    );
}
