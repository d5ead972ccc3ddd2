//! The command line, as clap derives it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "pg-ingest",
    version,
    about = "Load JSON-lines files into PostgreSQL with pg_ingest, and run query batches"
)]
pub struct Cli {
    #[command(flatten)]
    pub connection: ConnectionArgs,

    /// Print machine-readable JSON instead of text
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: Command,
}

/// Where to connect. Without `--dsn`, the libpq environment (PGHOST, PGPORT, PGUSER,
/// PGDATABASE, PGPASSWORD, PGSSLMODE, ...) decides, as for psql.
#[derive(Debug, Args)]
pub struct ConnectionArgs {
    /// Connection string: a URL (postgresql://user@host:port/db) or key=value pairs
    #[arg(long, global = true, env = "DATABASE_URL", hide_env_values = true)]
    pub dsn: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Connect, and report the server version and whether pg_ingest is installed there
    Ping,
    /// Load JSON-lines files (paths on the database server) with ingest_jsonl, showing progress
    Load(LoadArgs),
    /// Run the SQL statements of a file through run_batch, in background workers on the server
    Batch(BatchArgs),
    /// Show the most recent loads (ingest.loads)
    Loads(LoadsArgs),
    /// Show the lines a load rejected (ingest.rejects)
    Rejects(RejectsArgs),
    /// Write a deterministic sample chat log (JSON lines) for demos, tests and benchmarks
    Sample(SampleArgs),
}

#[derive(Debug, Args)]
pub struct SampleArgs {
    /// How many lines
    #[arg(long, default_value_t = 1000)]
    pub lines: u64,
    /// Seed: the same seed and line count give the same bytes
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Output file (default: standard output)
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnError {
    /// The first bad line fails the load; nothing is kept
    Stop,
    /// Bad lines are left out and recorded in ingest.rejects
    Skip,
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Files on this machine, streamed to the server (which parses them); `-` is standard
    /// input. With --server: paths on the database server, read by the server (globs too)
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<String>,
    /// The files are paths on the database server: the server reads them itself
    #[arg(long)]
    pub server: bool,
    /// Target table (default: the file's name without extension)
    #[arg(long, value_name = "TABLE")]
    pub into: Option<String>,
    /// Column to JSON path mapping, e.g. '{"user_id": "user.id"}'
    #[arg(long, value_name = "JSON", value_parser = parse_json_object)]
    pub columns: Option<serde_json::Value>,
    /// What a bad line does
    #[arg(long, value_enum, default_value = "stop")]
    pub on_error: OnError,
    /// With --on-error skip: fail the load if more lines than this are rejected
    #[arg(long, value_name = "N")]
    pub max_errors: Option<i64>,
    /// Load the whole file even if the ledger says it is loaded already
    #[arg(long)]
    pub force: bool,
    /// Parse threads on the server (per writer)
    #[arg(long, value_name = "N")]
    pub threads: Option<i32>,
    /// Background workers writing ranges of each file at once (each range commits on its own)
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub writers: i32,
    /// No progress, no notices: only the summary (or errors)
    #[arg(long, short)]
    pub quiet: bool,
    /// Seconds between progress updates
    #[arg(long, value_name = "SECONDS", default_value_t = 1.0, value_parser = parse_interval)]
    pub progress_interval: f64,
    /// How many rejected lines to show after a load that had some
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub show_rejects: i64,
}

#[derive(Debug, Args)]
pub struct BatchArgs {
    /// File of SQL statements separated by semicolons; - or nothing reads standard input
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Background workers running statements at once
    #[arg(long, short, value_name = "N", default_value_t = 4)]
    pub workers: i32,
    /// After a failed statement start no more, and cancel those running
    #[arg(long)]
    pub stop_on_error: bool,
    /// Cancel a statement that runs longer than this many seconds
    #[arg(long, value_name = "SECONDS", value_parser = parse_interval)]
    pub timeout: Option<f64>,
    /// Print each statement's rows (a table; with --json, under "result")
    #[arg(long)]
    pub results: bool,
}

#[derive(Debug, Args)]
pub struct LoadsArgs {
    /// How many loads, most recent first
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub limit: i64,
    /// Only loads of files whose path contains this
    #[arg(long, value_name = "TEXT")]
    pub file: Option<String>,
}

#[derive(Debug, Args)]
pub struct RejectsArgs {
    /// The load, as shown by `pg-ingest load` and `pg-ingest loads`
    pub load_id: i64,
    /// How many rejected lines, in file order
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub limit: i64,
}

fn parse_json_object(s: &str) -> Result<serde_json::Value, String> {
    match serde_json::from_str::<serde_json::Value>(s) {
        Ok(v @ serde_json::Value::Object(_)) => Ok(v),
        Ok(_) => Err("must be a JSON object of column name to JSON path".into()),
        Err(e) => Err(format!("invalid JSON: {e}")),
    }
}

fn parse_interval(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
        _ => Err(format!("expected a positive number of seconds, not {s:?}")),
    }
}
