//! Running `kms-server` as a child process (demos, tests, benchmarks): start it on a state
//! directory, learn its address from its `{"Listening":"ADDR"}` line, stop it with SIGTERM.

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long the server may take to print its address.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the server could not be started or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// Spawning failed.
    #[error("Cannot start {bin}: build it with `cargo build -p samples --bin kms-server`")]
    Spawn {
        /// The binary.
        bin: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// No address line.
    #[error("kms-server printed no {{\"Listening\":…}} line within {0:?} (it exited or hangs; see its stderr)")]
    NoAddress(Duration),
    /// The line is not what was expected.
    #[error("kms-server's first line is not {{\"Listening\":\"host:port\"}}: {0:?}")]
    BadAddress(String),
    /// Signalling or waiting failed.
    #[error("Cannot stop kms-server (pid {pid})")]
    Stop {
        /// Its pid.
        pid: u32,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// A running `kms-server`; stopped with SIGTERM when dropped.
#[derive(Debug)]
pub struct ServerProcess {
    child: Option<Child>,
    addr: SocketAddr,
}

impl ServerProcess {
    /// Starts `bin --state-dir state_dir --listen listen` (e.g. `127.0.0.1:0`), its stderr
    /// going to `stderr`, and waits for its address.
    pub fn start(
        bin: &Path,
        state_dir: &Path,
        listen: &str,
        stderr: Stdio,
    ) -> Result<Self, ProcessError> {
        let mut child = Command::new(bin)
            .arg("--state-dir")
            .arg(state_dir)
            .args(["--listen", listen])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .map_err(|source| ProcessError::Spawn {
                bin: bin.display().to_string(),
                source,
            })?;
        let (tx, rx) = mpsc::channel();
        if let Some(out) = child.stdout.take() {
            std::thread::spawn(move || {
                let mut line = String::new();
                let _ = std::io::BufReader::new(out).read_line(&mut line);
                let _ = tx.send(line);
            });
        }
        let mut server = Self {
            child: Some(child),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let line = rx
            .recv_timeout(START_TIMEOUT)
            .map_err(|_| ProcessError::NoAddress(START_TIMEOUT))?;
        server.addr = serde_json::from_str::<serde_json::Value>(&line)
            .ok()
            .and_then(|v| v["Listening"].as_str().and_then(|a| a.parse().ok()))
            .ok_or_else(|| {
                if line.is_empty() {
                    ProcessError::NoAddress(START_TIMEOUT)
                } else {
                    ProcessError::BadAddress(line.clone())
                }
            })?;
        Ok(server)
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its pid.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn stop(mut self) -> Result<ExitStatus, ProcessError> {
        self.terminate()
    }

    fn terminate(&mut self) -> Result<ExitStatus, ProcessError> {
        let Some(mut child) = self.child.take() else {
            return Err(ProcessError::Stop {
                pid: 0,
                source: std::io::Error::other("already stopped"),
            });
        };
        let pid = child.id();
        let stop = |source| ProcessError::Stop { pid, source };
        if child.try_wait().map_err(stop)?.is_none() {
            let raw = libc::pid_t::try_from(pid)
                .map_err(|_| stop(std::io::Error::other("pid out of range")))?;
            // SAFETY: kill(2) with our own child's pid (not yet reaped, so not reused).
            if unsafe { libc::kill(raw, libc::SIGTERM) } != 0 {
                return Err(stop(std::io::Error::last_os_error()));
            }
        }
        child.wait().map_err(stop)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.terminate();
        }
    }
}
