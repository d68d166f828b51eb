//! Running a debug-mode enclave in the background while the test watches it: the console as
//! it streams, the VMM process's memory (`VmHWM`/`VmRSS` from `/proc/<pid>/status`) and its
//! log, then `terminate-enclave` (or the program's own end) and the CLI's report.
//!
//! Hostile guests print a marker line when they are done and then sleep, so that the test can
//! read the VMM's peak memory while it still runs and check that `terminate-enclave` works.

use std::io::Read;
use std::path::Path;
use std::process::{Child, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::cli::enclave_bin;
use crate::run::CliOutput;
use crate::testenv::TestEnv;

/// What the CLI prints when a VMM ended without reporting an outcome (it crashed).
const NO_REPORT: &str = "ended without reporting";

/// One watched run.
#[derive(Debug)]
pub struct Watched {
    /// The console (the program's stdout and stderr).
    pub console: String,
    /// The CLI's stderr: the enclave description, then how the program ended.
    pub stderr: String,
    /// How `run-enclave --attach-console` exited.
    pub status: ExitStatus,
    /// Whether the console showed the marker before the program ended or the deadline.
    pub reached: bool,
    /// The VMM's process id.
    pub vmm_pid: Option<u32>,
    /// `VmHWM` of the VMM (KiB) at the last look while it ran.
    pub vmm_peak_kib: Option<u64>,
    /// The VMM's `vmm.log`, as it was at the last look while it ran.
    pub vmm_log: String,
    /// `terminate-enclave`'s output, if the test had to end the enclave.
    pub terminate: Option<CliOutput>,
}

impl Watched {
    /// Asserts that the VMM reported how the enclave ended (program exit, crash report or
    /// termination) and neither panicked nor logged an error.
    ///
    /// # Panics
    /// Otherwise, with everything that was seen.
    #[track_caller]
    pub fn assert_vmm_survived(&self, context: &str) {
        let reported = [
            "enclave program exited with status",
            "enclave program crashed:",
            "enclave terminated",
        ]
        .iter()
        .any(|s| self.stderr.contains(s));
        assert!(reported, "{context}: no outcome reported\n{self}");
        for bad in ["panicked", NO_REPORT] {
            assert!(!self.stderr.contains(bad), "{context}: {bad}\n{self}");
        }
        for bad in ["panicked", " ERROR "] {
            assert!(
                !self.vmm_log.contains(bad),
                "{context}: VMM log: {bad}\n{self}"
            );
        }
        if let Some(t) = &self.terminate {
            assert_eq!(
                t.code(),
                Some(0),
                "{context}: terminate-enclave failed\n{self}"
            );
        }
    }

    /// The crash report line (after "enclave program crashed: "), if the program crashed.
    pub fn crash_report(&self) -> Option<&str> {
        self.stderr
            .lines()
            .find_map(|l| l.strip_prefix("enclave program crashed: "))
    }
}

impl std::fmt::Display for Watched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tail: String = {
            let lines: Vec<&str> = self.console.lines().collect();
            lines[lines.len().saturating_sub(40)..].join("\n")
        };
        write!(
            f,
            "run-enclave ended with {}; marker reached: {}; VMM pid {:?}, peak {:?} KiB\n\
             --- console (last 40 lines)\n{tail}\n--- stderr\n{}\n--- vmm.log\n{}\n--- terminate\n{:?}",
            self.status,
            self.reached,
            self.vmm_pid,
            self.vmm_peak_kib,
            self.stderr,
            self.vmm_log,
            self.terminate.as_ref().map(ToString::to_string)
        )
    }
}

/// A field of `/proc/<pid>/status` in KiB (`VmHWM`, `VmRSS`).
pub fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(field)?.strip_prefix(':')?;
        rest.trim().strip_suffix("kB")?.trim().parse().ok()
    })
}

fn pump(mut pipe: impl Read + Send + 'static) -> Arc<Mutex<String>> {
    let text = Arc::new(Mutex::new(String::new()));
    let sink = text.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            let chunk = String::from_utf8_lossy(buf.get(..n).unwrap_or_default()).into_owned();
            sink.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push_str(&chunk);
        }
    });
    text
}

fn snapshot(text: &Arc<Mutex<String>>) -> String {
    text.lock().unwrap_or_else(PoisonError::into_inner).clone()
}

/// The number after `"key": ` in pretty JSON text.
fn json_number(text: &str, key: &str) -> Option<u64> {
    let at = text.find(&format!("\"{key}\": "))? + key.len() + 4;
    let digits: String = text
        .get(at..)?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// The string after `"key": ` in pretty JSON text.
fn json_string<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let at = text.find(&format!("\"{key}\": \""))? + key.len() + 5;
    let rest = text.get(at..)?;
    rest.get(..rest.find('"')?)
}

fn wait_child(child: &mut Child, timeout: Duration) -> ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                return child
                    .wait()
                    .unwrap_or_else(|e| panic!("waiting for run-enclave: {e}"));
            }
        }
    }
}

impl TestEnv {
    /// Runs `eif` in a debug-mode enclave (one CPU, `memory_mib`) with the console attached and
    /// watches it until the console shows `marker`, the program ends, or `timeout` passes.
    /// At the marker, `at_marker(enclave_id)` runs (the enclave still running), then the VMM's
    /// peak memory and log are read and the enclave is terminated.
    ///
    /// # Panics
    /// When the CLI cannot be started or does not end after termination.
    pub fn watch_debug(
        &self,
        eif: &Path,
        memory_mib: u64,
        marker: &str,
        timeout: Duration,
        at_marker: impl FnOnce(&str),
    ) -> Watched {
        let mut child = self
            .command(enclave_bin())
            .args(["run-enclave", "--cpu-count", "1", "--memory"])
            .arg(memory_mib.to_string())
            .args(["--debug-mode", "--attach-console", "--eif-path"])
            .arg(eif)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run run-enclave: {e}"));
        let console = pump(child.stdout.take().expect("piped stdout"));
        let stderr = pump(child.stderr.take().expect("piped stderr"));
        let deadline = Instant::now() + timeout;
        let (mut pid, mut id, mut peak, mut log) = (None, None::<String>, None, String::new());
        let mut reached = false;
        let look =
            |pid: Option<u32>, id: Option<&str>, peak: &mut Option<u64>, log: &mut String| {
                if let Some(p) = pid {
                    if let Some(hwm) = proc_status_kib(p, "VmHWM") {
                        *peak = Some(hwm);
                    }
                }
                if let Some(id) = id {
                    if let Ok(text) =
                        std::fs::read_to_string(self.run_root().join(id).join("vmm.log"))
                    {
                        *log = text;
                    }
                }
            };
        loop {
            let err = snapshot(&stderr);
            if pid.is_none() {
                pid = json_number(&err, "ProcessID").and_then(|p| u32::try_from(p).ok());
                id = json_string(&err, "EnclaveID").map(str::to_owned);
            }
            look(pid, id.as_deref(), &mut peak, &mut log);
            if snapshot(&console).contains(marker) {
                reached = true;
                break;
            }
            if matches!(child.try_wait(), Ok(Some(_))) || Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut terminate = None;
        if matches!(child.try_wait(), Ok(None)) {
            if let Some(id) = &id {
                if reached {
                    at_marker(id);
                }
                look(pid, Some(id), &mut peak, &mut log);
                terminate = Some(self.terminate(id));
            }
        }
        let status = wait_child(&mut child, Duration::from_secs(30));
        // The pipes close when the CLI exits; give the readers a moment to drain them.
        let drained = Instant::now() + Duration::from_secs(5);
        while Arc::strong_count(&console) > 1 && Instant::now() < drained {
            std::thread::sleep(Duration::from_millis(10));
        }
        while Arc::strong_count(&stderr) > 1 && Instant::now() < drained {
            std::thread::sleep(Duration::from_millis(10));
        }
        Watched {
            console: snapshot(&console),
            stderr: snapshot(&stderr),
            status,
            reached,
            vmm_pid: pid,
            vmm_peak_kib: peak,
            vmm_log: log,
            terminate,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{json_number, json_string};

    #[test]
    fn reads_numbers_and_strings_from_pretty_json() {
        let text = "{\n  \"EnclaveID\": \"enc-0123456789abcdef\",\n  \"ProcessID\": 4242,\n}";
        assert_eq!(json_number(text, "ProcessID"), Some(4242));
        assert_eq!(json_string(text, "EnclaveID"), Some("enc-0123456789abcdef"));
        assert_eq!(json_number(text, "EnclaveCID"), None);
    }
}
