//! `pg-ingest load FILE` of a file on this machine: its bytes are streamed to the server with
//! `COPY … FROM STDIN WITH (FORMAT …)`, and the server parses them on its threads (a thin
//! client). Exactly once, as for server files: under the file's lock in the table
//! (`ingest.client_file_state`), the ledger says how far this file (this host, this resolved
//! path) was loaded, the client checks it is still that file (device, inode, its first bytes
//! and the bytes before that offset) and sends only what is new; the server records the new
//! offset in the same transaction as the rows.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;

use postgres::Client;
use serde_json::json;

use pg_ingest_core::input::{self, Compression, Format, Shape};
use pg_ingest_core::report::LoadSummary;

use crate::cli::LoadArgs;

/// Bytes per CopyData message.
const SEND_BYTES: usize = 256 * 1024;
/// The bytes fingerprinted at a file's start and before the offset a load stopped at.
const FINGERPRINT_BYTES: u64 = 4096;

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The machine's name, as the ledger keys client files by it.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

fn read_at(file: &mut File, from: u64, len: u64) -> anyhow::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(len as usize);
    file.seek(SeekFrom::Start(from))?;
    Read::by_ref(file).take(len).read_to_end(&mut buf)?;
    Ok(buf)
}

fn fingerprint_at(file: &mut File, from: u64, to: u64) -> anyhow::Result<String> {
    Ok(input::fingerprint(&read_at(file, from, to.saturating_sub(from))?))
}

/// The length a stored fingerprint covers (`hash:length`).
fn fingerprint_len(f: &str) -> u64 {
    f.rsplit(':').next().and_then(|n| n.parse().ok()).unwrap_or(0)
}

/// The table a file goes into: `--into`, else the file's name up to its first dot.
fn table_for(path: &str, args: &LoadArgs) -> anyhow::Result<String> {
    if let Some(t) = &args.into {
        return Ok(t.clone());
    }
    let name = crate::progress::file_name(path);
    let stem = name.split('.').next().unwrap_or(name);
    if stem.is_empty() || path == "-" {
        anyhow::bail!(crate::conn::InvalidSettings("reading standard input needs --into TABLE".into()));
    }
    Ok(quote_ident(stem))
}

/// COPY's options for a load with these arguments.
fn copy_options(args: &LoadArgs, format: &str, ledger: Option<serde_json::Value>) -> String {
    let mut o = vec![format!("FORMAT {}", quote_literal(format))];
    if args.on_error == crate::cli::OnError::Skip {
        o.push("ON_ERROR ignore".into());
    }
    if let Some(n) = args.max_errors {
        o.push(format!("REJECT_LIMIT {n}"));
    }
    if let Some(c) = &args.columns {
        o.push(format!("COLUMNS_MAP {}", quote_literal(&c.to_string())));
    }
    if let Some(t) = args.threads {
        o.push(format!("THREADS {t}"));
    }
    if let Some(l) = ledger {
        o.push(format!("LEDGER {}", quote_literal(&l.to_string())));
    }
    o.join(", ")
}

/// The load this transaction recorded.
fn summary_of_this_transaction(client: &mut Client) -> anyhow::Result<LoadSummary> {
    let r = client.query_one(
        "SELECT file, target, status, lines, rows_inserted, rows_rejected, lines_skipped, bytes, seconds, load_id \
           FROM ingest.loads WHERE xmin OPERATOR(pg_catalog.=) pg_catalog.xid(pg_catalog.pg_current_xact_id()) \
          ORDER BY load_id DESC LIMIT 1",
        &[],
    )?;
    Ok(LoadSummary {
        file: r.get(0),
        target: r.get(1),
        status: r.get(2),
        lines: r.get::<_, Option<i64>>(3).unwrap_or(0),
        rows_inserted: r.get::<_, Option<i64>>(4).unwrap_or(0),
        rows_rejected: r.get::<_, Option<i64>>(5).unwrap_or(0),
        lines_skipped: r.get::<_, Option<i64>>(6).unwrap_or(0),
        bytes: r.get::<_, Option<i64>>(7).unwrap_or(0),
        seconds: r.get::<_, Option<f64>>(8).unwrap_or(0.0),
        load_id: r.get(9),
    })
}

/// Sends `len` bytes of `reader` through COPY; the rows the server wrote.
fn send(client: &mut Client, sql: &str, reader: &mut dyn Read, len: Option<u64>) -> anyhow::Result<u64> {
    let mut writer = client.copy_in(sql)?;
    let mut buf = vec![0u8; SEND_BYTES];
    let mut left = len;
    loop {
        let want = left.map_or(buf.len(), |l| (l as usize).min(buf.len()));
        if want == 0 {
            break;
        }
        let n = reader.read(&mut buf[..want])?;
        if n == 0 {
            break;
        }
        writer.write_all(&buf[..n])?;
        left = left.map(|l| l - n as u64);
    }
    Ok(writer.finish()?)
}

/// Loads standard input (no ledger: a stream is loaded as it comes).
pub fn load_stdin(client: &mut Client, args: &LoadArgs) -> anyhow::Result<LoadSummary> {
    let table = table_for("-", args)?;
    in_transaction(client, |tx| {
        let table = resolve_table(tx, &table)?;
        let sql = format!("COPY {table} FROM STDIN WITH ({})", copy_options(args, "auto", None));
        send(tx, &sql, &mut std::io::stdin().lock(), None)?;
        summary_of_this_transaction(tx)
    })
}

/// The table's name as COPY takes it (quoted where needed), looked up as `regclass`.
fn resolve_table(client: &mut Client, table: &str) -> anyhow::Result<String> {
    Ok(client.query_one("SELECT $1::text::pg_catalog.regclass::text", &[&table])?.get(0))
}

/// Runs `work` in a transaction: committed if it succeeds, rolled back if not.
fn in_transaction<T>(client: &mut Client, work: impl FnOnce(&mut Client) -> anyhow::Result<T>) -> anyhow::Result<T> {
    client.batch_execute("BEGIN")?;
    match work(client) {
        Ok(t) => {
            client.batch_execute("COMMIT")?;
            Ok(t)
        }
        Err(e) => {
            let _ = client.batch_execute("ROLLBACK");
            Err(e)
        }
    }
}

/// Loads what is new in a local file.
pub fn load_file(client: &mut Client, path: &str, args: &LoadArgs) -> anyhow::Result<LoadSummary> {
    let mut file = File::open(path).map_err(|e| anyhow::anyhow!("could not open {path}: {e}"))?;
    let meta = file.metadata()?;
    if meta.is_dir() {
        anyhow::bail!("{path} is a directory");
    }
    let resolved = std::fs::canonicalize(path)?.to_string_lossy().into_owned();
    let source = format!("{}:{resolved}", host_name());
    let table = table_for(path, args)?;
    let size = meta.len();
    // how it is laid out: compressed or a JSON document are loaded as a whole
    let head4 = read_at(&mut file, 0, 4)?;
    let compression = Compression::of(&head4);
    file.seek(SeekFrom::Start(0))?;
    let (decompressed, _) = input::decompressed(file.try_clone()?.take(size))?;
    let max_value = 64 << 20;
    let (shape, _, _) = input::shaped(decompressed, Format::Auto, max_value)?;
    let whole = compression != Compression::None || shape == Shape::Values;

    in_transaction(client, |tx| {
        let table = resolve_table(tx, &table)?;
        let entry = tx.query_opt(
            "SELECT byte_offset, lines, size, device, inode, head_fingerprint, tail_fingerprint \
           FROM ingest.client_file_state($1::text::regclass, $2)",
            &[&table, &source],
        )?;
        let head = fingerprint_at(&mut file, 0, size.min(FINGERPRINT_BYTES))?;
        let (mut status, mut offset, mut lines) = ("loaded", 0u64, 0u64);
        if let (Some(e), false) = (&entry, args.force) {
            let (at, done_lines): (i64, i64) = (e.get(0), e.get(1));
            let (was_size, device, inode): (i64, i64, i64) = (e.get(2), e.get(3), e.get(4));
            let (was_head, was_tail): (String, String) = (e.get(5), e.get(6));
            let at = at as u64;
            let same_file = device == meta.dev() as i64 && inode == meta.ino() as i64;
            let same_start = same_file
                && size >= at
                && fingerprint_at(&mut file, 0, fingerprint_len(&was_head).min(size))? == was_head
                && (was_tail.is_empty()
                    || fingerprint_at(&mut file, at.saturating_sub(fingerprint_len(&was_tail)), at)? == was_tail);
            if whole {
                if same_start && was_size as u64 == size {
                    (status, offset, lines) = ("unchanged", size, done_lines as u64);
                } else if same_file {
                    eprintln!("NOTICE: {path} changed since it was loaded and is loaded as a whole again (the earlier rows stay)");
                }
            } else if same_start {
                (status, offset, lines) = (if at == size { "unchanged" } else { "appended" }, at, done_lines as u64);
            } else {
                eprintln!(
                    "NOTICE: {path} is another file, or was rewritten, since it was loaded: loading it as a new file"
                );
            }
        }
        // the line at `offset`: a new one after a newline, else the rest of the line loaded last
        let start_line =
            if offset == 0 || read_at(&mut file, offset - 1, 1)? == b"\n" || lines == 0 { lines + 1 } else { lines };
        let ledger = json!({
            "source": source, "device": meta.dev() as i64, "inode": meta.ino() as i64, "size": size as i64,
            "start_offset": offset as i64, "start_line": start_line as i64, "head_fingerprint": head,
            "whole": whole, "status": status,
        });
        let sql = format!("COPY {table} FROM STDIN WITH ({})", copy_options(args, "auto", Some(ledger)));
        file.seek(SeekFrom::Start(offset))?;
        send(tx, &sql, &mut file, Some(size - offset))?;
        // the server says where it stopped; the bytes before it are fingerprinted from here
        let end: i64 = tx
            .query_one(
                "SELECT byte_offset FROM ingest.client_files \
              WHERE target_oid OPERATOR(pg_catalog.=) $1::text::regclass AND source OPERATOR(pg_catalog.=) $2 \
                AND loaded_by::pg_catalog.oid OPERATOR(pg_catalog.=) \
                    (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) current_user)",
                &[&table, &source],
            )?
            .get(0);
        let tail = fingerprint_at(&mut file, (end as u64).saturating_sub(FINGERPRINT_BYTES), end as u64)?;
        tx.execute("SELECT ingest.client_file_tail($1::text::regclass, $2, $3)", &[&table, &source, &tail])?;
        // reported under the name it was given here (the ledger knows it as host:path)
        let mut summary = summary_of_this_transaction(tx)?;
        summary.file = path.to_owned();
        Ok(summary)
    })
}
