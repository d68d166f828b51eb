//! Running the CLI inside a [`TestEnv`] with a deadline and checking what it printed.

use std::ffi::OsStr;
use std::fmt;
use std::io::Read;
use std::process::{ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::cli::enclave_bin;
use crate::testenv::TestEnv;

/// How long one CLI command may run before the test fails (a launch waits up to 60 s).
pub const CLI_TIMEOUT: Duration = Duration::from_secs(120);

/// What one `enclave …` run did.
#[derive(Debug, Clone)]
pub struct CliOutput {
    /// The arguments, for messages.
    pub args: Vec<String>,
    /// How it exited.
    pub status: ExitStatus,
    /// Standard output, lossily decoded.
    pub stdout: String,
    /// Standard error, lossily decoded.
    pub stderr: String,
}

impl fmt::Display for CliOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`enclave {}` ended with {}\n--- stdout\n{}\n--- stderr\n{}",
            self.args.join(" "),
            self.status,
            self.stdout,
            self.stderr
        )
    }
}

impl CliOutput {
    /// The exit code (`None` if killed by a signal).
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Asserts exit code 0.
    ///
    /// # Panics
    /// Otherwise, with the whole output.
    #[track_caller]
    pub fn ok(&self) -> &Self {
        assert_eq!(self.code(), Some(0), "{self}");
        self
    }

    /// Asserts the command failed cleanly: exit code `code`, no Rust panic, and an error
    /// message on stderr that contains every one of `needles`.
    ///
    /// # Panics
    /// Otherwise, with the whole output.
    #[track_caller]
    pub fn fails_with(&self, code: i32, needles: &[&str]) -> &Self {
        assert_eq!(self.code(), Some(code), "{self}");
        assert!(
            !self.stderr.contains("panicked"),
            "the CLI panicked: {self}"
        );
        for needle in needles {
            assert!(
                self.stderr.contains(needle),
                "stderr lacks {needle:?}: {self}"
            );
        }
        self
    }

    /// Standard output parsed as JSON.
    ///
    /// # Panics
    /// When it is not JSON.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self}"))
    }

    /// Standard output split into lines.
    pub fn stdout_lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }
}

/// How long the CLI's pipes may stay open after it exited (only a leaked descriptor in a
/// process it started, e.g. the VMM, would keep them open).
const PIPE_GRACE: Duration = Duration::from_secs(10);

/// Reads `pipe` to its end on a thread; the text arrives on the returned channel.
fn read_all(mut pipe: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        let _ = tx.send(String::from_utf8_lossy(&buf).into_owned());
    });
    rx
}

fn collect(rx: &mpsc::Receiver<String>, what: &str, args: &[String]) -> String {
    rx.recv_timeout(PIPE_GRACE).unwrap_or_else(|_| {
        panic!(
            "the {what} of `enclave {}` stayed open {PIPE_GRACE:?} after it exited: a process it \
             started inherited the pipe",
            args.join(" ")
        )
    })
}

impl TestEnv {
    /// Runs `enclave <args>` in this environment; fails the test after [`CLI_TIMEOUT`].
    ///
    /// # Panics
    /// When the binary cannot be started or does not end in time (it is killed then).
    pub fn cli<I, S>(&self, args: I) -> CliOutput
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.cli_within(args, CLI_TIMEOUT)
    }

    /// [`TestEnv::cli`] with a chosen deadline.
    ///
    /// # Panics
    /// When the binary cannot be started or does not end in time (it is killed then).
    pub fn cli_within<I, S>(&self, args: I, timeout: Duration) -> CliOutput
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let bin = enclave_bin();
        let args: Vec<String> = args
            .into_iter()
            .map(|a| a.as_ref().to_string_lossy().into_owned())
            .collect();
        let mut child = self
            .command(&bin)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
        let stdout = read_all(child.stdout.take().expect("piped stdout"));
        let stderr = read_all(child.stderr.take().expect("piped stderr"));
        let deadline = Instant::now() + timeout;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "`enclave {}` did not finish within {timeout:?}; killed",
                        args.join(" ")
                    );
                }
                Err(e) => panic!("waiting for `enclave {}`: {e}", args.join(" ")),
            }
        };
        let stdout = collect(&stdout, "stdout", &args);
        let stderr = collect(&stderr, "stderr", &args);
        CliOutput {
            args,
            status,
            stdout,
            stderr,
        }
    }
}
