//! `pg-ingest load`: each file through `ingest_jsonl` on the server, one transaction each, in
//! order; progress while it runs, a summary after, and the first rejects when there were any.
//! A failed file stops the command (the files before it stay loaded; the ledger makes running
//! it again safe).

use postgres::Client;
use serde_json::{json, Value};

use pg_ingest_core::report::LoadSummary;

use crate::cli::{ConnectionArgs, LoadArgs, OnError};
use crate::progress::{ProgressView, Style};
use crate::{conn, exit, interrupt};

const LOAD_SQL: &str = "SELECT * FROM ingest_jsonl($1, target => $2::text::regclass, columns => $3::text::jsonb, \
                        threads => $4, on_error => $5, max_errors => $6, force => $7, writers => $8)";

/// A rejected line, as shown after a load and by `pg-ingest rejects`.
pub struct Reject {
    pub line: i64,
    pub column: Option<String>,
    pub sqlstate: String,
    pub message: String,
}

impl Reject {
    pub fn to_json(&self) -> Value {
        json!({"line": self.line, "column": self.column, "sqlstate": self.sqlstate, "message": self.message})
    }

    pub fn describe(&self) -> String {
        let column = self.column.as_ref().map(|c| format!(", column \"{c}\"")).unwrap_or_default();
        format!("line {}{column}: {} ({})", self.line, self.message, self.sqlstate)
    }
}

pub fn first_rejects(client: &mut Client, load_id: i64, limit: i64) -> anyhow::Result<Vec<Reject>> {
    let rows = client.query(
        "SELECT line, column_name, sqlstate, message FROM ingest.rejects \
          WHERE load_id IN (SELECT load_id FROM ingest.loads WHERE load_id = $1 OR parent_load_id = $1) \
          ORDER BY line LIMIT $2",
        &[&load_id, &limit],
    )?;
    Ok(rows
        .iter()
        .map(|r| Reject { line: r.get(0), column: r.get(1), sqlstate: r.get(2), message: r.get(3) })
        .collect())
}

fn summary_from_row(r: &postgres::Row) -> LoadSummary {
    LoadSummary {
        file: r.get("file"),
        target: r.get("target"),
        status: r.get("status"),
        lines: r.get("lines"),
        rows_inserted: r.get("rows_inserted"),
        rows_rejected: r.get("rows_rejected"),
        lines_skipped: r.get("lines_skipped"),
        bytes: r.get("bytes"),
        seconds: r.get("seconds"),
        load_id: r.get("load_id"),
    }
}

fn megabytes_per_second(s: &LoadSummary) -> f64 {
    if s.seconds > 0.0 {
        s.bytes as f64 / 1e6 / s.seconds
    } else {
        0.0
    }
}

fn summary_json(s: &LoadSummary, rejects: &[Reject]) -> Value {
    json!({
        "file": s.file,
        "target": s.target,
        "status": s.status,
        "load_id": s.load_id,
        "lines": s.lines,
        "rows_inserted": s.rows_inserted,
        "rows_rejected": s.rows_rejected,
        "lines_skipped": s.lines_skipped,
        "bytes": s.bytes,
        "seconds": s.seconds,
        "mb_per_s": (megabytes_per_second(s) * 10.0).round() / 10.0,
        "first_rejects": rejects.iter().map(Reject::to_json).collect::<Vec<_>>(),
    })
}

fn print_summary(s: &LoadSummary, rejects: &[Reject]) {
    println!("{} -> {}: {} (load {})", s.file, s.target, s.status, s.load_id);
    println!(
        "  {} lines: {} inserted, {} rejected, {} skipped; {:.1} MB in {:.2} s ({:.1} MB/s)",
        s.lines,
        s.rows_inserted,
        s.rows_rejected,
        s.lines_skipped,
        s.bytes as f64 / 1e6,
        s.seconds,
        megabytes_per_second(s)
    );
    if s.rows_rejected > 0 {
        let shown = if rejects.len() as i64 == s.rows_rejected { "" } else { "first " };
        println!("  {shown}rejected lines:");
        for r in rejects {
            println!("    {}", r.describe());
        }
        println!(
            "  all {}: pg-ingest rejects {}  (or SELECT * FROM ingest.rejects WHERE load_id = {})",
            s.rows_rejected, s.load_id, s.load_id
        );
    }
}

pub fn run(connection: &ConnectionArgs, args: &LoadArgs, json: bool) -> anyhow::Result<u8> {
    let settings = conn::Settings::resolve(connection.dsn.as_deref())?;
    let view = ProgressView::new(Style::detect(args.quiet));
    let notices = view.clone();
    let mut client = settings.connect_with_notices(move |n| notices.notice(n))?;
    let notices = if args.quiet { "off" } else { "interval" };
    let interval_ms = ((args.progress_interval * 1000.0).round() as i64).max(10);
    client.batch_execute(&format!(
        "SET pg_ingest.progress_notices = '{notices}'; SET pg_ingest.progress_interval = {interval_ms}"
    ))?;

    if !args.server && args.writers > 1 {
        anyhow::bail!(conn::InvalidSettings(
            "--writers cuts files on the server: it needs --server (a client file is streamed by one connection)"
                .into()
        ));
    }
    let on_error = match args.on_error {
        OnError::Stop => "stop",
        OnError::Skip => "skip",
    };
    let mut results = Vec::new();
    let mut code = exit::SUCCESS;
    for file in &args.files {
        view.start(file);
        let columns = args.columns.as_ref().map(|c| c.to_string());
        let result = {
            let _cancellable = interrupt::Cancellable::new(&client, settings.tls_connector()?);
            if args.server {
                client
                    .query(
                        LOAD_SQL,
                        &[
                            &file,
                            &args.into,
                            &columns,
                            &args.threads,
                            &on_error,
                            &args.max_errors,
                            &args.force,
                            &args.writers,
                        ],
                    )
                    .map(|rows| rows.iter().map(summary_from_row).collect::<Vec<_>>())
                    .map_err(anyhow::Error::new)
            } else if file == "-" {
                super::local::load_stdin(&mut client, args).map(|s| vec![s])
            } else {
                super::local::load_file(&mut client, file, args).map(|s| vec![s])
            }
        };
        view.finish();
        let summaries = match result {
            Ok(summaries) => summaries,
            Err(e) => {
                let cancelled = e.downcast_ref::<postgres::Error>().is_some_and(interrupt::was_cancelled);
                let (message, code) = if cancelled {
                    (
                        format!("{file}: cancelled; the server rolled the load back, nothing of it was kept"),
                        exit::INTERRUPTED,
                    )
                } else {
                    (format!("{file}: {}", conn::describe_error(&e)), exit::FAILURE)
                };
                eprintln!("pg-ingest: {message}");
                if json {
                    results.push(json!({"file": file, "cancelled": cancelled, "error": conn::error_json(&e)}));
                    println!("{}", serde_json::to_string_pretty(&json!({ "loads": results }))?);
                }
                return Ok(code);
            }
        };
        if summaries.is_empty() && !json {
            println!("{file}: no file matches; nothing loaded");
        }
        for summary in summaries {
            let rejects = if summary.rows_rejected > 0 {
                first_rejects(&mut client, summary.load_id, args.show_rejects)?
            } else {
                vec![]
            };
            if summary.rows_rejected > 0 {
                code = exit::REJECTS;
            }
            if json {
                results.push(summary_json(&summary, &rejects));
            } else {
                print_summary(&summary, &rejects);
            }
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&json!({ "loads": results }))?);
    }
    Ok(code)
}
