//! A helper service run as a child process (the key service, vsock-proxy): started, awaited
//! until it prints its one-line JSON "ready" announcement on stdout, and stopped (SIGTERM, then
//! SIGKILL) when dropped. Its stderr goes to a log file whose tail explains a failed start.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::error::ScenarioError;

/// How long a service may take to announce itself.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a service may take to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// A running child service.
#[derive(Debug)]
pub struct Service {
    name: String,
    child: Child,
    log: PathBuf,
    ready: serde_json::Value,
}

/// The last lines of `path` (a service's log), for error messages.
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

impl Service {
    /// Starts `program args…` with `envs`, its stderr in `log`, and waits until it prints a JSON
    /// object on stdout.
    pub fn start<I, S>(
        name: &str,
        program: &Path,
        args: I,
        envs: &[(String, PathBuf)],
        log: &Path,
    ) -> Result<Self, ScenarioError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let stderr = std::fs::File::create(log)
            .map_err(ScenarioError::io(format!("create {}", log.display())))?;
        let mut child = Command::new(program)
            .args(args)
            .envs(envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .map_err(ScenarioError::io(format!("start {}", program.display())))?;
        let Some(stdout) = child.stdout.take() else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(ScenarioError::Service {
                service: name.to_owned(),
                reason: "started without a stdout pipe".into(),
            });
        };
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut service = Self {
            name: name.to_owned(),
            child,
            log: log.to_owned(),
            ready: serde_json::Value::Null,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Ok(v @ serde_json::Value::Object(_)) = serde_json::from_str(&line) {
                        service.ready = v;
                        return Ok(service);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    return Err(service.failed(&format!(
                        "did not announce itself within {} s",
                        START_TIMEOUT.as_secs()
                    )))
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = service
                        .child
                        .wait()
                        .map(|s| s.to_string())
                        .unwrap_or_default();
                    return Err(service.failed(&format!("exited during start-up ({status})")));
                }
            }
        }
    }

    fn failed(&self, what: &str) -> ScenarioError {
        ScenarioError::Service {
            service: self.name.clone(),
            reason: format!(
                "{what}; its log {} ends with:\n{}",
                self.log.display(),
                log_tail(&self.log, 15)
            ),
        }
    }

    /// The JSON object the service announced itself with.
    pub fn ready(&self) -> &serde_json::Value {
        &self.ready
    }

    /// The string field `key` of the announcement.
    pub fn ready_field(&self, key: &str) -> Result<String, ScenarioError> {
        self.ready
            .get(key)
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| ScenarioError::Service {
                service: self.name.clone(),
                reason: format!("announced {} without a {key:?} field", self.ready),
            })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The log file.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Whether the process still runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Kills the service at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops the service: SIGTERM, then SIGKILL after a grace period.
    pub fn stop(&mut self) {
        if !self.is_running() {
            return;
        }
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: kill(2) with a pid of our own unreaped child touches no memory.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if !self.is_running() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.kill();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop();
    }
}
