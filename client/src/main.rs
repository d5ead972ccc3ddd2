//! `pg-ingest`: triggers pg_ingest's work on a PostgreSQL server and reports what happened.

mod cli;
mod cmd;
mod conn;

use std::process::ExitCode;

use clap::Parser;

/// Exit codes, documented in the README.
pub mod exit {
    pub const SUCCESS: u8 = 0;
    pub const FAILURE: u8 = 1;
    pub const USAGE: u8 = 2;
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
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("pg-ingest: {}", conn::describe_error(&e));
            ExitCode::from(exit::FAILURE)
        }
    }
}

fn run(cli: cli::Cli) -> anyhow::Result<u8> {
    match cli.command {
        cli::Command::Ping => cmd::ping::run(&cli.connection, cli.json),
        cli::Command::Sample(args) => cmd::sample::run(&args),
    }
}
