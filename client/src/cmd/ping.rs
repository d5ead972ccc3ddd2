//! `pg-ingest ping`: can we connect, what server is it, is pg_ingest there.

use serde::Serialize;

use crate::cli::ConnectionArgs;
use crate::{conn, exit};

#[derive(Debug, Serialize)]
struct PingReport {
    server: String,
    server_version: String,
    database: String,
    user: String,
    /// Whether the connection is encrypted (TLS).
    ssl: bool,
    /// The version of pg_ingest created in this database, if it is.
    pg_ingest_installed: Option<String>,
    /// The default version the server could create, if its files are installed.
    pg_ingest_available: Option<String>,
}

pub fn run(args: &ConnectionArgs, json: bool) -> anyhow::Result<u8> {
    let settings = conn::Settings::resolve(args.dsn.as_deref())?;
    let mut client = settings.connect()?;
    let row = client.query_one(
        "SELECT current_setting('server_version'), current_database()::text, current_user::text, \
                (SELECT extversion FROM pg_extension WHERE extname = 'pg_ingest'), \
                (SELECT default_version FROM pg_available_extensions WHERE name = 'pg_ingest'), \
                coalesce((SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), false)",
        &[],
    )?;
    let report = PingReport {
        server: settings.describe(),
        server_version: row.get(0),
        database: row.get(1),
        user: row.get(2),
        pg_ingest_installed: row.get(3),
        pg_ingest_available: row.get(4),
        ssl: row.get(5),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("connected to {} (PostgreSQL {})", report.server, report.server_version);
        println!(
            "database {} as {}, {}",
            report.database,
            report.user,
            if report.ssl { "TLS encrypted" } else { "not encrypted" }
        );
        match (&report.pg_ingest_installed, &report.pg_ingest_available) {
            (Some(v), _) => println!("pg_ingest {v} installed"),
            (None, Some(v)) => println!(
                "pg_ingest not installed in this database (version {v} is available: CREATE EXTENSION pg_ingest)"
            ),
            (None, None) => println!("pg_ingest not installed, and not available on this server"),
        }
    }
    Ok(exit::SUCCESS)
}
