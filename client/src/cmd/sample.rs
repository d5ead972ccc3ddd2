//! `pg-ingest sample`: the sample chat log generator, from the shell.

use std::fs::File;
use std::io::{self, BufWriter};

use anyhow::Context;

use crate::cli::SampleArgs;
use crate::exit;

pub fn run(args: &SampleArgs) -> anyhow::Result<u8> {
    let lines = args.lines;
    match &args.output {
        Some(path) => {
            let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
            pg_ingest_core::sample::write_chat_lines(BufWriter::new(file), lines, args.seed)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        None => {
            let stdout = io::stdout().lock();
            pg_ingest_core::sample::write_chat_lines(BufWriter::new(stdout), lines, args.seed)
                .context("cannot write to standard output")?;
        }
    }
    Ok(exit::SUCCESS)
}
