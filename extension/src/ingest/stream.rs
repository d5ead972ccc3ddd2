//! Inputs that are not files on the server: COPY FROM STDIN (CopyData messages through this
//! backend's client connection) and COPY FROM PROGRAM (a shell command's output).
//!
//! The client connection is PostgreSQL's: only the backend's main thread reads it. A [`Pump`]
//! moves CopyData from the client to the reader thread through a queue of a few MB, whenever
//! the main thread waits for parsed rows; the reader thread reads the queue as a byte stream.

use std::io::Read;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;

use pgrx::pg_sys;
use pgrx::PgSqlErrorCode;

use crate::error::IngestError;

unsafe extern "C" {
    // src/ingest/copy_state.c
    fn pg_ingest_copy_in_begin(natts: i32);
    fn pg_ingest_copy_in_next(buf: pg_sys::StringInfo) -> i32;
}

/// Bytes received from the client and not yet read by the reader thread, at most.
const QUEUE_BYTES: usize = 8 << 20;

/// Moves CopyData from the client to the reader thread (main thread only).
pub struct Pump {
    tx: Option<Sender<Vec<u8>>>,
    queued: Arc<AtomicUsize>,
    buf: pg_sys::StringInfo,
}

/// The reader thread's end: the client's bytes, in order, then the end at CopyDone.
pub struct ClientBytes {
    rx: Receiver<Vec<u8>>,
    queued: Arc<AtomicUsize>,
    cur: Vec<u8>,
    pos: usize,
}

impl Read for ClientBytes {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.cur.len() {
            match self.rx.recv() {
                Ok(data) => {
                    self.queued.fetch_sub(data.len(), Ordering::Relaxed);
                    self.cur = data;
                    self.pos = 0;
                }
                // CopyDone (or the load is being stopped)
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.cur.len() - self.pos);
        out[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Starts COPY FROM STDIN: tells the client to send its bytes as they are (`natts` columns,
/// binary: see `pg_ingest_copy_in_begin`) and returns both ends.
pub fn from_client(natts: usize) -> (Pump, ClientBytes) {
    let (tx, rx) = mpsc::channel();
    let queued = Arc::new(AtomicUsize::new(0));
    unsafe { pg_ingest_copy_in_begin(natts as i32) };
    let buf = unsafe { pg_sys::makeStringInfo() };
    (Pump { tx: Some(tx), queued: queued.clone(), buf }, ClientBytes { rx, queued, cur: Vec::new(), pos: 0 })
}

impl Pump {
    /// Receives CopyData while the queue has room, until CopyDone. A message not yet sent
    /// by the client is waited for (interrupts are handled as COPY handles them).
    pub fn fill(&mut self) {
        while let Some(tx) = &self.tx {
            if self.queued.load(Ordering::Relaxed) >= QUEUE_BYTES {
                return;
            }
            let buf = self.buf;
            let more = unsafe { pg_sys::ffi::pg_guard_ffi_boundary(|| pg_ingest_copy_in_next(buf)) };
            if more == 0 {
                self.tx = None;
                return;
            }
            let data = unsafe { std::slice::from_raw_parts((*buf).data as *const u8, (*buf).len as usize).to_vec() };
            self.queued.fetch_add(data.len(), Ordering::Relaxed);
            if tx.send(data).is_err() {
                // the reader is gone: the load is being stopped
                self.tx = None;
            }
            pgrx::check_for_interrupts!();
        }
    }
}

/// A shell command whose output is the input (`COPY … FROM PROGRAM`); it runs as the
/// server's operating-system user, as COPY runs it. Killed if the load stops before its end.
pub struct Program {
    command: String,
    child: Option<Child>,
}

impl Program {
    pub fn start(command: &str) -> (Self, ChildStdout) {
        let child = Command::new("/bin/sh")
            .arg("-c")
            .arg(command)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                IngestError::new(
                    PgSqlErrorCode::ERRCODE_IO_ERROR,
                    format!("could not execute command \"{command}\": {e}"),
                )
                .raise()
            });
        let mut child = child;
        let out = child.stdout.take().expect("stdout is piped");
        (Self { command: command.to_owned(), child: Some(child) }, out)
    }

    /// Waits for the command once its output is read to the end: a failed command fails
    /// the load (as COPY FROM PROGRAM does).
    pub fn finish(mut self) {
        let mut child = self.child.take().expect("not finished yet");
        let status = child.wait().unwrap_or_else(|e| {
            IngestError::new(PgSqlErrorCode::ERRCODE_IO_ERROR, format!("could not wait for \"{}\": {e}", self.command))
                .raise()
        });
        if !status.success() {
            use std::os::unix::process::ExitStatusExt;
            let why = match (status.code(), status.signal()) {
                (Some(code), _) => format!("child process exited with exit code {code}"),
                (_, Some(signal)) => format!("child process was terminated by signal {signal}"),
                _ => status.to_string(),
            };
            IngestError::new(
                PgSqlErrorCode::ERRCODE_EXTERNAL_ROUTINE_EXCEPTION,
                format!("program \"{}\" failed", self.command),
            )
            .detail(why)
            .raise()
        }
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
