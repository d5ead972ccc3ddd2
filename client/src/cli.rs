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
