//! `pg-ingest loads` and `pg-ingest rejects`: what the ledger recorded.

use serde_json::json;

use super::load::{first_rejects, Reject};
use crate::cli::{ConnectionArgs, LoadsArgs, RejectsArgs};
use crate::{conn, exit};

pub fn loads(connection: &ConnectionArgs, args: &LoadsArgs, json: bool) -> anyhow::Result<u8> {
    let mut client = conn::Settings::resolve(connection.dsn.as_deref())?.connect()?;
    let rows = client.query(
        "SELECT load_id, file, target, loaded_by::text, to_char(started_at, 'YYYY-MM-DD HH24:MI:SS'), status, \
                coalesce(lines, 0), coalesce(rows_inserted, 0), coalesce(rows_rejected, 0), \
                coalesce(lines_skipped, 0), coalesce(bytes, 0), coalesce(seconds, 0) \
           FROM ingest.loads \
          WHERE ($1::text IS NULL OR strpos(file, $1) > 0) AND status <> 'range' \
          ORDER BY load_id DESC LIMIT $2",
        &[&args.file, &args.limit],
    )?;
    if json {
        let loads: Vec<_> = rows
            .iter()
            .map(|r| {
                json!({
                    "load_id": r.get::<_, i64>(0), "file": r.get::<_, String>(1), "target": r.get::<_, String>(2),
                    "loaded_by": r.get::<_, String>(3), "started_at": r.get::<_, String>(4),
                    "status": r.get::<_, String>(5), "lines": r.get::<_, i64>(6),
                    "rows_inserted": r.get::<_, i64>(7), "rows_rejected": r.get::<_, i64>(8),
                    "lines_skipped": r.get::<_, i64>(9), "bytes": r.get::<_, i64>(10),
                    "seconds": r.get::<_, f64>(11),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&json!({ "loads": loads }))?);
        return Ok(exit::SUCCESS);
    }
    if rows.is_empty() {
        println!("no loads recorded");
        return Ok(exit::SUCCESS);
    }
    println!(
        "{:>6}  {:<19}  {:<9}  {:>10}  {:>10}  {:>8}  {:>8}  {:<24}  file",
        "load", "started", "status", "lines", "inserted", "rejected", "seconds", "target"
    );
    for r in &rows {
        println!(
            "{:>6}  {:<19}  {:<9}  {:>10}  {:>10}  {:>8}  {:>8.2}  {:<24}  {}",
            r.get::<_, i64>(0),
            r.get::<_, String>(4),
            r.get::<_, String>(5),
            r.get::<_, i64>(6),
            r.get::<_, i64>(7),
            r.get::<_, i64>(8),
            r.get::<_, f64>(11),
            r.get::<_, String>(2),
            r.get::<_, String>(1),
        );
    }
    Ok(exit::SUCCESS)
}

pub fn rejects(connection: &ConnectionArgs, args: &RejectsArgs, json: bool) -> anyhow::Result<u8> {
    let mut client = conn::Settings::resolve(connection.dsn.as_deref())?.connect()?;
    let load = client
        .query_opt("SELECT file, coalesce(rows_rejected, 0) FROM ingest.loads WHERE load_id = $1", &[&args.load_id])?;
    let Some(load) = load else {
        eprintln!("pg-ingest: no load {} in ingest.loads (pg-ingest loads lists them)", args.load_id);
        return Ok(exit::FAILURE);
    };
    let (file, total): (String, i64) = (load.get(0), load.get(1));
    let rejects: Vec<Reject> = first_rejects(&mut client, args.load_id, args.limit)?;
    if json {
        let list: Vec<_> = rejects.iter().map(Reject::to_json).collect();
        println!(
            "{}",
            serde_json::to_string_pretty(
                &json!({"load_id": args.load_id, "file": file, "rows_rejected": total, "rejects": list})
            )?
        );
        return Ok(exit::SUCCESS);
    }
    println!("load {} of {file}: {total} lines rejected", args.load_id);
    for r in &rejects {
        println!("  {}", r.describe());
    }
    if (rejects.len() as i64) < total {
        println!(
            "  ... {} more (--limit, or SELECT * FROM ingest.rejects WHERE load_id = {})",
            total - rejects.len() as i64,
            args.load_id
        );
    }
    Ok(exit::SUCCESS)
}
