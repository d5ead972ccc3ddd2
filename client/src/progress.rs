//! Shows what the server says while it works: progress NOTICEs become a bar on a terminal,
//! plain lines elsewhere, nothing with `--quiet`; other NOTICEs and WARNINGs are printed.
//! Everything goes to stderr, so stdout carries only results.

use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use postgres::error::DbError;

use pg_ingest_core::report::ProgressReport;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Bar,
    Lines,
    Quiet,
}

impl Style {
    /// A bar when stderr is a terminal, else lines; `quiet` wins.
    pub fn detect(quiet: bool) -> Self {
        if quiet {
            Self::Quiet
        } else if std::io::stderr().is_terminal() {
            Self::Bar
        } else {
            Self::Lines
        }
    }
}

/// The display; shared with the connection's notice callback.
pub struct ProgressView {
    style: Style,
    bar: Mutex<Option<ProgressBar>>,
}

impl ProgressView {
    pub fn new(style: Style) -> Arc<Self> {
        Arc::new(Self { style, bar: Mutex::new(None) })
    }

    /// A load of `file` begins.
    pub fn start(&self, file: &str) {
        if self.style != Style::Bar {
            return;
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(4));
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} {prefix} [{bar:30}] {percent:>3}% {bytes}/{total_bytes} {msg} ETA {eta}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_prefix(file_name(file).to_owned());
        bar.enable_steady_tick(Duration::from_millis(250));
        *self.bar.lock().unwrap() = Some(bar);
    }

    /// The load ended (or failed): the bar goes away.
    pub fn finish(&self) {
        if let Some(bar) = self.bar.lock().unwrap().take() {
            bar.finish_and_clear();
        }
    }

    /// A NOTICE or WARNING from the server.
    pub fn notice(&self, n: DbError) {
        if self.style == Style::Quiet {
            return;
        }
        let report = n.detail().and_then(ProgressReport::from_detail);
        let bar = self.bar.lock().unwrap();
        match (report, bar.as_ref()) {
            (Some(r), Some(bar)) => {
                bar.set_length(r.bytes_total.saturating_sub(r.start_offset));
                bar.set_position(r.bytes_done.saturating_sub(r.start_offset));
                let rate = if r.seconds > 0.0 { r.rows as f64 / r.seconds } else { 0.0 };
                bar.set_message(format!("{} rows ({:.0}/s), {} rejected", r.rows, rate, r.rejected));
            }
            (Some(_), None) => eprintln!("progress: {}", n.message()),
            (None, bar) => {
                let line = format!("{}: {}", n.severity(), crate::conn::db_line(&n));
                match bar {
                    Some(bar) => bar.suspend(|| eprintln!("{line}")),
                    None => eprintln!("{line}"),
                }
            }
        }
    }
}

/// The last part of a path, for a short label.
pub fn file_name(path: &str) -> &str {
    path.rsplit('/').next().filter(|s| !s.is_empty()).unwrap_or(path)
}
