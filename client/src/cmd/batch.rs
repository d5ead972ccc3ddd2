//! `pg-ingest batch`: the statements of a SQL file through `run_batch`, each result printed as
//! its statement completes.
//!
//! Rows of a set-returning function in FROM are all computed before the first is sent, so the
//! function is called in the select list and its rows are fetched one at a time from a portal:
//! each fetch returns when the next statement completes on the server.

use std::io::Read;
use std::time::Instant;

use serde_json::json;

use crate::cli::{BatchArgs, ConnectionArgs};
use crate::{conn, exit, interrupt, statements};

const BATCH_SQL: &str = "SELECT (r).query_no, (r).status, (r).rows, (r).seconds, (r).error, (r).sqlstate, \
                         (r).result::text AS result, (r).truncated \
                         FROM (SELECT run_batch($1::text[], workers => $2, stop_on_error => $3, \
                         timeout => make_interval(secs => $4::float8), results => $5) AS r OFFSET 0) AS s";

struct Outcome {
    query_no: i32,
    status: String,
    rows: i64,
    seconds: f64,
    error: Option<String>,
    sqlstate: Option<String>,
    /// With --results: the statement's rows (objects), and whether some were left out.
    result: Option<serde_json::Value>,
    truncated: bool,
}

/// Rows (JSON objects) as an aligned text table, the columns of the first row.
fn print_table(rows: &serde_json::Value, truncated: bool) {
    let Some(rows) = rows.as_array() else { return };
    let Some(first) = rows.first().and_then(|r| r.as_object()) else {
        println!("      (no rows)");
        return;
    };
    let columns: Vec<&String> = first.keys().collect();
    let cell = |v: Option<&serde_json::Value>| match v {
        None | Some(serde_json::Value::Null) => String::new(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    let cells: Vec<Vec<String>> =
        rows.iter().map(|r| columns.iter().map(|c| cell(r.get(c.as_str()))).collect()).collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| cells.iter().map(|r| r[i].chars().count()).max().unwrap_or(0).max(c.chars().count()))
        .collect();
    let line = |values: Vec<&str>| {
        let parts: Vec<String> = values.iter().zip(&widths).map(|(v, w)| format!("{v:<w$}")).collect();
        println!("      {}", parts.join(" | ").trim_end());
    };
    line(columns.iter().map(|c| c.as_str()).collect());
    println!("      {}", widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>().join("-+-"));
    for r in &cells {
        line(r.iter().map(|v| v.as_str()).collect());
    }
    if truncated {
        println!("      (truncated: more rows than pg_ingest.batch_result_bytes allows)");
    }
}

/// A statement on one line, cut to `width` characters.
fn one_line(statement: &str, width: usize) -> String {
    let line = statement.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() <= width {
        line
    } else {
        format!("{}...", line.chars().take(width.saturating_sub(3)).collect::<String>())
    }
}

fn read_script(args: &BatchArgs) -> anyhow::Result<String> {
    use anyhow::Context;
    match args.file.as_deref() {
        None => read_stdin(),
        Some(p) if p.as_os_str() == "-" => read_stdin(),
        Some(p) => std::fs::read_to_string(p).with_context(|| format!("could not read {}", p.display())),
    }
}

fn read_stdin() -> anyhow::Result<String> {
    let mut script = String::new();
    std::io::stdin().read_to_string(&mut script)?;
    Ok(script)
}

pub fn run(connection: &ConnectionArgs, args: &BatchArgs, json: bool) -> anyhow::Result<u8> {
    let script = read_script(args)?;
    let statements = statements::split(&script);
    if statements.is_empty() {
        eprintln!("pg-ingest: no SQL statements in the input");
        return Ok(exit::USAGE);
    }
    let settings = conn::Settings::resolve(connection.dsn.as_deref())?;
    let mut client = settings.connect_with_notices(|n| eprintln!("{}: {}", n.severity(), conn::db_line(&n)))?;
    let started = Instant::now();
    let mut outcomes = Vec::new();
    let tls = settings.tls_connector()?;
    let result: Result<(), postgres::Error> = (|| {
        let _cancellable = interrupt::Cancellable::new(&client, tls);
        let mut tx = client.transaction()?;
        let portal =
            tx.bind(BATCH_SQL, &[&statements, &args.workers, &args.stop_on_error, &args.timeout, &args.results])?;
        loop {
            let rows = tx.query_portal(&portal, 1)?;
            let Some(row) = rows.first() else { break };
            let o = Outcome {
                query_no: row.get("query_no"),
                status: row.get("status"),
                rows: row.get("rows"),
                seconds: row.get("seconds"),
                error: row.get("error"),
                sqlstate: row.get("sqlstate"),
                result: row.get::<_, Option<String>>("result").and_then(|t| serde_json::from_str(&t).ok()),
                truncated: row.get::<_, Option<bool>>("truncated").unwrap_or(false),
            };
            if !json {
                let statement = one_line(&statements[(o.query_no - 1) as usize], 60);
                let what = match (&o.sqlstate, &o.error) {
                    (Some(state), Some(error)) => format!("{state} {error}"),
                    _ if o.rows == 1 => "1 row".to_owned(),
                    _ => format!("{} rows", o.rows),
                };
                println!("[{:>3}] {:<9} {:>8.3} s  {what}  | {statement}", o.query_no, o.status, o.seconds);
                if let Some(rows) = &o.result {
                    print_table(rows, o.truncated);
                }
            }
            outcomes.push(o);
        }
        tx.commit()
    })();
    if let Err(e) = result {
        let cancelled = interrupt::was_cancelled(&e);
        let e = anyhow::Error::new(e);
        if cancelled {
            eprintln!(
                "pg-ingest: batch cancelled; statements not finished were stopped (finished ones stay committed)"
            );
        } else {
            eprintln!("pg-ingest: {}", conn::describe_error(&e));
        }
        if json {
            println!(
                "{}",
                serde_json::to_string_pretty(&json!({"cancelled": cancelled, "error": conn::error_json(&e)}))?
            );
        }
        return Ok(if cancelled { exit::INTERRUPTED } else { exit::FAILURE });
    }
    let ok = outcomes.iter().filter(|o| o.status == "ok").count();
    let seconds = started.elapsed().as_secs_f64();
    if json {
        let results: Vec<_> = outcomes
            .iter()
            .map(|o| {
                json!({
                    "query_no": o.query_no,
                    "statement": statements[(o.query_no - 1) as usize],
                    "status": o.status,
                    "rows": o.rows,
                    "seconds": o.seconds,
                    "error": o.error,
                    "sqlstate": o.sqlstate,
                    "result": o.result,
                    "truncated": args.results.then_some(o.truncated),
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(
                &json!({"statements": statements.len(), "ok": ok, "seconds": seconds, "results": results})
            )?
        );
    } else {
        let mut counts: Vec<(String, usize)> = Vec::new();
        for o in &outcomes {
            match counts.iter_mut().find(|(s, _)| *s == o.status) {
                Some((_, n)) => *n += 1,
                None => counts.push((o.status.clone(), 1)),
            }
        }
        let counts: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
        println!("{} statements in {seconds:.2} s: {}", statements.len(), counts.join(", "));
    }
    Ok(if ok == statements.len() { exit::SUCCESS } else { exit::FAILURE })
}
