//! `run-enclave`: starts a VMM process for the enclave and reports it like nitro-cli (once the
//! enclave's heartbeat on port 9000 was answered); with
//! `--attach-console`, streams the console and exits with the program's status. Also the
//! hidden `__vmm` entry that the VMM process runs.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use anyhow::{bail, Context};
use enclave_runtime::control::protocol::{LaunchRequest, LaunchStatus};
use enclave_runtime::daemon;
use enclave_runtime::heartbeat_host::BoundHeartbeat;
use enclave_runtime::pool::{self, CpuRequest, PoolPaths};
use enclave_runtime::vcpu::Outcome;

use crate::args::{RunArgs, VmmArgs};
use crate::output;

/// How long `run-enclave` waits for the VMM to report.
const LAUNCH_TIMEOUT: Duration = Duration::from_secs(60);

/// Exit code for an outcome, as a shell reports a process: status, 128+signal, 139 for a crash.
pub fn exit_code(o: &Outcome) -> i32 {
    match o {
        Outcome::Exited { status } => *status,
        Outcome::Signaled { signal } => 128 + signal,
        Outcome::Crashed(_) => 139,
        Outcome::Terminated => 143,
    }
}

/// Creates a pipe: (read end with CLOEXEC, write end without, to be inherited by the VMM).
fn status_pipe() -> anyhow::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0i32; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("cannot create the status pipe");
    }
    // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// `run-enclave`.
pub fn run(a: &RunArgs, _json: bool) -> anyhow::Result<i32> {
    // The VMM's claim reclaims what dead VMMs held, and a VMM that keeps a record prunes the
    // oldest beyond the cap: nothing to scan here before the launch.
    let paths = PoolPaths::from_env();
    if !a.eif_path.is_file() {
        bail!(
            "the enclave image {} does not exist; build one with `enclave build-enclave`",
            a.eif_path.display()
        );
    }
    let eif_path = std::fs::canonicalize(&a.eif_path)
        .with_context(|| format!("cannot resolve {}", a.eif_path.display()))?;
    // The size is checked before anything is claimed, so a bad value is named as such.
    enclave_runtime::preflight::memory_bytes(a.memory)?;
    let cpus = match (&a.cpu_ids, a.cpu_count) {
        (Some(ids), _) => CpuRequest::Ids(ids.clone()),
        (None, Some(n)) if n > 0 => CpuRequest::Count(n),
        _ => bail!("--cpu-count must be at least 1 (or give --cpu-ids)"),
    };
    let enclave_id = pool::new_enclave_id();
    let name = a.enclave_name.clone().unwrap_or_else(|| {
        a.eif_path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "enclave".into())
    });
    let mut request = LaunchRequest {
        enclave_id: enclave_id.clone(),
        eif_path,
        cpus,
        memory_mib: a.memory,
        cid: a.enclave_cid,
        name,
        debug: a.debug_mode,
        console_fd: None,
    };
    let run_dir = paths.run_dir(&enclave_id);
    std::fs::create_dir_all(&run_dir)
        .with_context(|| format!("cannot create the run directory {}", run_dir.display()))?;
    let log = std::fs::File::create(run_dir.join("vmm.log"))
        .with_context(|| format!("cannot create {}", run_dir.join("vmm.log").display()))?;
    // Nitro's heartbeat: the enclave connects to our port 9000 when its program is up, and the
    // VMM reports it only once we have answered. Listening before the VMM starts; the listener
    // lives until this command returns (with --attach-console the program starts later).
    // The answering thread starts after the VMM: the CLI forks the VMM while single-threaded.
    let heartbeat = BoundHeartbeat::bind(&run_dir).with_context(|| {
        format!(
            "cannot listen for the enclave's heartbeat in {}",
            run_dir.display()
        )
    })?;
    let (read_end, write_end) = status_pipe()?;
    // `--attach-console`: the VMM gets one end of a socket pair as its first console client,
    // attached before the program starts; the outcome then follows on the status pipe.
    let console = if a.attach_console {
        let (ours, theirs) = UnixStream::pair().context("cannot create the console stream")?;
        request.console_fd = Some(theirs.as_raw_fd());
        Some((ours, theirs))
    } else {
        None
    };
    let started = super::vmm_process::start(&request, log, &write_end);
    drop(write_end);
    let console = console.map(|(ours, _theirs)| ours);
    let _heartbeat = heartbeat.start(LAUNCH_TIMEOUT);
    let mut child = match started {
        Ok(c) => c,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&run_dir);
            return Err(e);
        }
    };
    let mut status = StatusPipe::new(read_end);
    let first = status.next(LAUNCH_TIMEOUT).inspect_err(|_| {
        child.kill();
    });
    // The VMM is a session leader of its own now; reap it in the background if it exits early.
    child.reap_in_background();
    let first = match first {
        Ok(s) => s,
        Err(e) => {
            // The VMM died (or was killed) before reporting: nothing else will remove the run
            // directory made for it; its claim, if it made one, goes with the next command's
            // reclaim of dead VMMs.
            let _ = std::fs::remove_dir_all(&run_dir);
            return Err(e);
        }
    };
    let info = match first {
        LaunchStatus::Ready(info) => info,
        LaunchStatus::Ended(_) => {
            bail!("the VMM reported an end before the launch; see vmm.log in the run directory")
        }
        LaunchStatus::Failed(msg) => {
            let _ = std::fs::remove_dir_all(&run_dir);
            bail!(
                "{msg}\n(check the image and this host: `enclave validate-eif --eif-path {} --memory {}`, `enclave doctor`)",
                a.eif_path.display(),
                a.memory
            );
        }
    };
    let Some(mut console) = console else {
        output::print_json(&info)?;
        return Ok(0);
    };
    eprintln!("{}", serde_json::to_string_pretty(&info)?);
    let mut out = std::io::stdout().lock();
    let _ = crate::stream::pump(&mut console, &mut out);
    let _ = out.flush();
    let outcome = match status.next(Duration::MAX) {
        Ok(LaunchStatus::Ended(outcome)) => outcome,
        Ok(other) => bail!("the VMM reported {other:?} instead of the enclave's end"),
        Err(e) => return Err(e.context("the enclave ended without reporting its outcome")),
    };
    report_outcome(&outcome);
    Ok(exit_code(&outcome))
}

/// Prints how the program ended on stderr.
pub fn report_outcome(o: &Outcome) {
    match o {
        Outcome::Exited { status } => eprintln!("enclave program exited with status {status}"),
        Outcome::Signaled { signal } => eprintln!("enclave program killed by signal {signal}"),
        Outcome::Crashed(r) => eprintln!("enclave program crashed: {r}"),
        Outcome::Terminated => eprintln!("enclave terminated"),
    }
}

/// The launcher's end of the status pipe: the VMM's lines, read on a thread so that waiting
/// for one can time out.
struct StatusPipe {
    lines: std::sync::mpsc::Receiver<std::io::Result<String>>,
}

impl StatusPipe {
    fn new(read_end: OwnedFd) -> Self {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(std::fs::File::from(read_end));
            loop {
                let mut line = String::new();
                let r = reader.read_line(&mut line);
                let end = !matches!(r, Ok(n) if n > 0);
                if tx.send(r.map(|_| line)).is_err() || end {
                    return;
                }
            }
        });
        Self { lines: rx }
    }

    /// The next report, waiting up to `limit`.
    fn next(&mut self, limit: Duration) -> anyhow::Result<LaunchStatus> {
        let line = match self.lines.recv_timeout(limit) {
            Ok(line) => line.context("cannot read the VMM's status")?,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                bail!("the VMM did not report within {limit:?}; see vmm.log in the run directory")
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => String::new(),
        };
        if line.trim().is_empty() {
            bail!("the VMM process ended before reporting; see its log in the run directory (ENCLAVE_RUN_ROOT)");
        }
        serde_json::from_str(line.trim()).context("the VMM reported something unreadable")
    }
}

/// The hidden `__vmm` command.
pub fn vmm(a: &VmmArgs) -> anyhow::Result<i32> {
    let request: LaunchRequest =
        serde_json::from_str(&a.request).context("invalid launch request")?;
    Ok(daemon::run_vmm(&request, a.status_fd))
}
