//! The VMM side of the control socket: one thread accepts, one short-lived thread serves each
//! connection (at most [`MAX_CONNECTIONS`] at once; a request line is bounded in size and time).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::Duration;

use super::console::ConsoleHub;
use super::protocol::{EnclaveInfo, Reply, Request};
use crate::pool::HostCpus;
use crate::vcpu::Outcome;

/// Concurrent control connections served.
pub const MAX_CONNECTIONS: usize = 64;
/// Longest request line accepted.
const MAX_REQUEST: u64 = 4096;
/// Time a client has to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Events for the VMM's main thread (from the control server and the vCPU thread).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Someone asked to terminate the enclave.
    Terminate,
    /// The program ended.
    Ended(Outcome),
}

/// State shared between the VMM and its control server.
pub struct Shared {
    info: Mutex<EnclaveInfo>,
    ended: Condvar,
    /// Console fan-out (debug mode).
    pub console: Arc<ConsoleHub>,
    events: Mutex<mpsc::Sender<Event>>,
    active: AtomicUsize,
    pending_waits: AtomicUsize,
}

impl Shared {
    /// Shared state for an enclave described by `info`; events go to `events`.
    pub fn new(
        info: EnclaveInfo,
        console: Arc<ConsoleHub>,
        events: mpsc::Sender<Event>,
    ) -> Arc<Self> {
        Arc::new(Self {
            info: Mutex::new(info),
            ended: Condvar::new(),
            console,
            events: Mutex::new(events),
            active: AtomicUsize::new(0),
            pending_waits: AtomicUsize::new(0),
        })
    }

    /// A snapshot of the description.
    pub fn info(&self) -> Option<EnclaveInfo> {
        self.info.lock().ok().map(|g| g.clone())
    }

    /// Updates the state word.
    pub fn set_state(&self, state: &str) {
        if let Ok(mut g) = self.info.lock() {
            g.state = state.to_string();
        }
    }

    /// Records the outcome and wakes every waiter.
    pub fn finish(&self, outcome: Outcome) {
        if let Ok(mut g) = self.info.lock() {
            g.state = crate::records::state_of(&outcome).into();
            g.outcome = Some(outcome);
        }
        self.ended.notify_all();
        self.console.close();
    }

    /// After [`Shared::finish`]: waits (at most `limit`) until every `wait` client has been
    /// sent the outcome, so the run directory can go.
    pub fn drain_waiters(&self, limit: Duration) {
        let start = std::time::Instant::now();
        while self.pending_waits.load(Ordering::Acquire) > 0 && start.elapsed() < limit {
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn send(&self, e: Event) {
        if let Ok(tx) = self.events.lock() {
            let _ = tx.send(e);
        }
    }

    fn wait_outcome(&self) -> Option<Outcome> {
        let mut g = self.info.lock().ok()?;
        loop {
            if let Some(o) = &g.outcome {
                return Some(o.clone());
            }
            g = self.ended.wait(g).ok()?;
        }
    }
}

/// Binds the control socket at `path` (mode 0600) and serves it on a background thread.
/// The server's threads run on `host_cpus`.
pub fn serve(path: &Path, shared: Arc<Shared>, host_cpus: HostCpus) -> std::io::Result<()> {
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    std::thread::Builder::new()
        .name("control".into())
        .spawn(move || {
            host_cpus.enter();
            crate::seccomp::enter(crate::seccomp::ThreadKind::Control);
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                if shared.active.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
                    shared.active.fetch_sub(1, Ordering::AcqRel);
                    continue;
                }
                let s = shared.clone();
                let spawned = std::thread::Builder::new()
                    .name("control-conn".into())
                    .spawn(move || {
                        handle(conn, &s);
                        s.active.fetch_sub(1, Ordering::AcqRel);
                    });
                if spawned.is_err() {
                    shared.active.fetch_sub(1, Ordering::AcqRel);
                }
            }
        })?;
    Ok(())
}

fn reply<T: serde::Serialize>(conn: &mut UnixStream, value: &T) -> bool {
    let Ok(mut line) = serde_json::to_vec(value) else {
        return false;
    };
    line.push(b'\n');
    conn.write_all(&line).is_ok()
}

fn handle(conn: UnixStream, shared: &Shared) {
    let _ = conn.set_read_timeout(Some(REQUEST_TIMEOUT));
    let Ok(reader_conn) = conn.try_clone() else {
        return;
    };
    let mut line = String::new();
    let mut reader = BufReader::new(reader_conn.take(MAX_REQUEST));
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let mut conn = conn;
    let request: Request = match serde_json::from_str(line.trim()) {
        Ok(r) => r,
        Err(e) => {
            reply(&mut conn, &Reply::Error(format!("bad request: {e}")));
            return;
        }
    };
    match request {
        Request::Describe => {
            if let Some(info) = shared.info() {
                reply(&mut conn, &info);
            }
        }
        Request::Terminate => {
            shared.set_state("TERMINATING");
            shared.send(Event::Terminate);
            reply(&mut conn, &Reply::Ok);
        }
        Request::Wait => {
            let _ = conn.set_read_timeout(None);
            shared.pending_waits.fetch_add(1, Ordering::AcqRel);
            if let Some(o) = shared.wait_outcome() {
                reply(&mut conn, &Reply::Ended(o));
            }
            shared.pending_waits.fetch_sub(1, Ordering::AcqRel);
        }
        Request::SeccompSelftest => {
            tracing::warn!("seccomp self-test requested: making a forbidden system call");
            let passed = crate::seccomp::forbidden_call();
            reply(
                &mut conn,
                &Reply::Error(format!(
                    "the forbidden call did not kill the VMM (seccomp mode {}; it {})",
                    crate::seccomp::mode().map_or("not set up", |m| m.as_str()),
                    if passed { "succeeded" } else { "failed" }
                )),
            );
        }
        Request::Console => {
            let debug = shared.info().is_some_and(|i| i.flags == "DEBUG_MODE");
            if !debug {
                reply(
                    &mut conn,
                    &Reply::Error(
                        "the enclave runs in production mode and has no console; start it with --debug-mode to read its output".into(),
                    ),
                );
                return;
            }
            if reply(&mut conn, &Reply::Ok) {
                shared.console.attach(conn);
            }
        }
    }
}
