//! Ctrl-C: the first one asks the server to cancel the running statement (a cancel request,
//! as psql sends) and lets the statement's error come back, so the client exits after the
//! server has rolled back; a second one exits at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use postgres::{CancelToken, Client};
use postgres_openssl::MakeTlsConnector;

use crate::exit;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
static RUNNING: Mutex<Option<(CancelToken, MakeTlsConnector)>> = Mutex::new(None);

/// Installs the Ctrl-C (SIGINT) handler.
pub fn install() -> anyhow::Result<()> {
    ctrlc::set_handler(|| {
        if INTERRUPTED.swap(true, Ordering::SeqCst) {
            std::process::exit(exit::INTERRUPTED.into());
        }
        let running = RUNNING.lock().unwrap().clone();
        match running {
            Some((token, tls)) => {
                eprintln!("pg-ingest: interrupted: asking the server to cancel (Ctrl-C again to quit at once)");
                if let Err(e) = token.cancel_query(tls) {
                    eprintln!("pg-ingest: could not send the cancel request: {e}");
                }
            }
            None => std::process::exit(exit::INTERRUPTED.into()),
        }
    })?;
    Ok(())
}

/// Whether Ctrl-C was pressed.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// While it lives, Ctrl-C cancels what `client` is running.
pub struct Cancellable(());

impl Cancellable {
    pub fn new(client: &Client, tls: MakeTlsConnector) -> Self {
        *RUNNING.lock().unwrap() = Some((client.cancel_token(), tls));
        Self(())
    }
}

impl Drop for Cancellable {
    fn drop(&mut self) {
        *RUNNING.lock().unwrap() = None;
    }
}

/// Whether `e` is the server's answer to our cancel request.
pub fn was_cancelled(e: &postgres::Error) -> bool {
    interrupted() && e.code() == Some(&postgres::error::SqlState::QUERY_CANCELED)
}
