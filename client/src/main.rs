//! `pg-ingest`: triggers pg_ingest's work on a PostgreSQL server and reports what happened.

mod cli;
mod cmd;
mod conn;
mod interrupt;
mod pgpass;
mod progress;
mod statements;
mod tls;

use std::process::ExitCode;

use clap::Parser;

/// Exit codes, documented in the README.
pub mod exit {
    pub const SUCCESS: u8 = 0;
    /// The work failed (connection, server error, a failed batch statement).
    pub const FAILURE: u8 = 1;
    /// Bad arguments or connection settings.
    pub const USAGE: u8 = 2;
    /// A load finished, but some lines were rejected (`--on-error skip`).
    pub const REJECTS: u8 = 3;
    /// Ctrl-C: the server cancelled and rolled back the running work.
    pub const INTERRUPTED: u8 = 130;
}

fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { exit::USAGE } else { exit::SUCCESS };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let json = cli.json;
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("pg-ingest: {}", conn::describe_error(&e));
            if json {
                println!("{}", serde_json::json!({ "error": conn::error_json(&e) }));
            }
            let usage = e.chain().any(|c| c.is::<conn::InvalidSettings>());
            ExitCode::from(if usage { exit::USAGE } else { exit::FAILURE })
        }
    }
}

fn run(cli: cli::Cli) -> anyhow::Result<u8> {
    interrupt::install()?;
    match &cli.command {
        cli::Command::Ping => cmd::ping::run(&cli.connection, cli.json),
        cli::Command::Sample(args) => cmd::sample::run(args),
        cli::Command::Load(args) => cmd::load::run(&cli.connection, args, cli.json),
        cli::Command::Batch(args) => cmd::batch::run(&cli.connection, args, cli.json),
        cli::Command::Loads(args) => cmd::history::loads(&cli.connection, args, cli.json),
        cli::Command::Rejects(args) => cmd::history::rejects(&cli.connection, args, cli.json),
    }
}
