//! Launch through the CLI: `enclave run-enclave --debug-mode --attach-console` wall time,
//! against a pool of this bench's own (temporary run root, allocator config and cgroup name).
//! The pool is applied under an exclusive flock on the lock file the pool tests use (they
//! share CPU 1) and always released by a drop guard (`allocator release --force`).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// Lock file serializing host-global pool users (the pool tests take it too).
const HOST_LOCK_FILE: &str = "/tmp/enclave-pool-tests.lock";
/// How long one CLI command may take before it is killed.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// The pool: enough for one 64 MiB enclave, one CPU, plain locked pages.
const ALLOCATOR_TOML: &str = "memory_mib = 128\ncpu_count = 1\nhugepages = \"never\"\n";

/// The `enclave` binary: `ENCLAVE_BIN`, else `<target>/release/enclave`; `Err` is why not.
pub fn find_cli(target: &Path) -> Result<PathBuf, String> {
    if let Some(bin) = std::env::var_os("ENCLAVE_BIN") {
        let bin = PathBuf::from(bin);
        return if bin.is_file() {
            Ok(bin)
        } else {
            Err(format!("ENCLAVE_BIN={} does not exist", bin.display()))
        };
    }
    let bin = target.join("release/enclave");
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(format!(
            "{} is missing: build it with `cargo build --release -p enclave-cli` \
             (scripts/bench.sh does) or set ENCLAVE_BIN",
            bin.display()
        ))
    }
}

/// `run-enclave` of `eif` with one CPU and 64 MiB.
fn run_args(eif: &Path) -> anyhow::Result<Vec<&str>> {
    let eif = eif.to_str().context("image path is not UTF-8")?;
    Ok(vec![
        "run-enclave",
        "--eif-path",
        eif,
        "--cpu-count",
        "1",
        "--memory",
        "64",
    ])
}

/// Fails when the CLI `bin` runs another guest ABI than this bench built `eif` for: a CLI
/// left over from an older build would refuse the image, or measure old code.
fn check_same_abi(bin: &Path, eif: &Path) -> anyhow::Result<()> {
    let out = Command::new(bin)
        .args(["describe-eif", "--eif-path"])
        .arg(eif)
        .output()
        .with_context(|| format!("cannot run {}", bin.display()))?;
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "{} describe-eif printed no JSON: {}",
            bin.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )
    })?;
    if report["GuestAbi"]["Compatible"] != serde_json::Value::Bool(true) {
        bail!(
            "the CLI {} runs another guest ABI than this bench (its report: {}): it is older \
             than this source; rebuild it with `cargo build --release -p enclave-cli`",
            bin.display(),
            report["GuestAbi"]
        );
    }
    Ok(())
}

/// Why a pool cannot be carved here, if it cannot.
pub fn pool_unsupported() -> Option<String> {
    // SAFETY: geteuid has no preconditions and touches no memory.
    if unsafe { libc::geteuid() } != 0 {
        return Some("needs root to carve a pool (cpuset cgroups, locked memory)".into());
    }
    None
}

/// A pool applied through the CLI; dropping it releases it and removes its directory.
pub struct CliPool {
    bin: PathBuf,
    dir: PathBuf,
    cgroup_name: String,
    /// Holds the flock on [`HOST_LOCK_FILE`] until the pool is released.
    _lock: File,
}

impl CliPool {
    /// Takes the host lock, writes `allocator.toml` and runs `enclave allocator apply`.
    pub fn apply(bin: &Path) -> anyhow::Result<CliPool> {
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(HOST_LOCK_FILE)
            .with_context(|| format!("cannot open {HOST_LOCK_FILE}"))?;
        // SAFETY: the fd belongs to `lock`, open for the call; flock touches no memory.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            eprintln!("bench: waiting for {HOST_LOCK_FILE} (pool tests running?)");
            // SAFETY: as above.
            if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
                return Err(std::io::Error::last_os_error())
                    .with_context(|| format!("cannot lock {HOST_LOCK_FILE}"));
            }
        }
        let pid = std::process::id();
        let dir = std::env::temp_dir().join(format!("enclave-bench-{pid}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("run"))
            .with_context(|| format!("cannot create {}", dir.display()))?;
        // From here on the guard exists: whatever fails, drop releases the pool.
        let pool = CliPool {
            bin: bin.to_owned(),
            dir,
            cgroup_name: format!("enclave-bench-{pid}"),
            _lock: lock,
        };
        std::fs::write(pool.dir.join("allocator.toml"), ALLOCATOR_TOML)
            .context("cannot write allocator.toml")?;
        pool.cli(&["allocator", "apply"], "allocator-apply")?;
        Ok(pool)
    }

    /// The temporary directory (images may go here).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.env("ENCLAVE_RUN_ROOT", self.dir.join("run"))
            .env("ENCLAVE_ALLOCATOR_CONFIG", self.dir.join("allocator.toml"))
            .env("ENCLAVE_CGROUP_NAME", &self.cgroup_name)
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        cmd
    }

    /// Runs `enclave <args>`; stderr goes to `<dir>/<log>.err`. Returns the wall time.
    fn cli(&self, args: &[&str], log: &str) -> anyhow::Result<Duration> {
        let err_path = self.dir.join(format!("{log}.err"));
        let err_file = File::create(&err_path)
            .with_context(|| format!("cannot create {}", err_path.display()))?;
        let mut cmd = self.command();
        cmd.args(args).stderr(err_file);
        let (status, took) = run_bounded(&mut cmd, COMMAND_TIMEOUT)
            .with_context(|| format!("enclave {}", args.join(" ")))?;
        if !status.success() {
            let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
            bail!(
                "enclave {} failed ({status}): {}",
                args.join(" "),
                stderr.trim()
            );
        }
        Ok(took)
    }

    /// `enclave run-enclave --debug-mode --attach-console` of `eif` (1 CPU, 64 MiB); the
    /// program must exit 0. Returns the wall time of the command.
    pub fn run_enclave(&self, eif: &Path) -> anyhow::Result<Duration> {
        let mut args = run_args(eif)?;
        args.extend(["--debug-mode", "--attach-console"]);
        self.cli(&args, "run-enclave")
    }
}

impl CliPool {
    /// `enclave run-enclave` of `eif` without the console: returns once the enclave's
    /// heartbeat was answered (the enclave is RUNNING); the enclave is then terminated
    /// (untimed). Returns the wall time of `run-enclave`.
    pub fn run_enclave_to_heartbeat(&self, eif: &Path) -> anyhow::Result<Duration> {
        let took = self.cli(&run_args(eif)?, "run-enclave-detached")?;
        self.cli(&["terminate-enclave", "--all"], "terminate")?;
        Ok(took)
    }
}

impl Drop for CliPool {
    fn drop(&mut self) {
        let _ = self.cli(&["terminate-enclave", "--all"], "terminate");
        if let Err(e) = self.cli(&["allocator", "release", "--force"], "release") {
            eprintln!(
                "bench: WARNING: the pool was not released: {e:#}\n  release it by hand: \
                 ENCLAVE_RUN_ROOT={0}/run ENCLAVE_ALLOCATOR_CONFIG={0}/allocator.toml \
                 ENCLAVE_CGROUP_NAME={1} {2} allocator release --force",
                self.dir.display(),
                self.cgroup_name,
                self.bin.display()
            );
            return; // keep the directory: the state file is needed to release
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs `cmd` to completion, killing it after `timeout`; returns its status and wall time.
fn run_bounded(cmd: &mut Command, timeout: Duration) -> anyhow::Result<(ExitStatus, Duration)> {
    let t0 = Instant::now();
    let mut child = cmd.spawn().context("cannot start")?;
    let pid = libc::pid_t::try_from(child.id()).context("pid out of range")?;
    let (tx, rx) = mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let status = child.wait();
        let _ = tx.send((status, Instant::now()));
    });
    let result = match rx.recv_timeout(timeout) {
        Ok(done) => done,
        Err(_) => {
            // SAFETY: kill touches no memory; `pid` is our unreaped child (the waiter has not
            // returned), so it cannot name another process.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            let _ = rx.recv();
            let _ = waiter.join();
            bail!("timed out after {timeout:?} and was killed");
        }
    };
    let _ = waiter.join();
    let (status, end) = result;
    Ok((status.context("cannot wait")?, end.duration_since(t0)))
}

/// CLI launch samples, milliseconds.
#[derive(Debug, Default)]
pub struct CliSamples {
    /// `run-enclave --attach-console` of a program that exits: start to exit.
    pub to_exit: Vec<f64>,
    /// `run-enclave` of a program that keeps running: start to the heartbeat answered.
    pub to_heartbeat: Vec<f64>,
}

/// CLI launch samples, `Err` with the reason when the CLI part was skipped. `idle_eif` is a
/// program that keeps running (for the launch to the heartbeat).
pub fn measure(
    target: &Path,
    eif: &[u8],
    idle_eif: &[u8],
    warmup: usize,
    runs: usize,
    stop: &dyn Fn() -> bool,
) -> anyhow::Result<Result<CliSamples, String>> {
    let bin = match find_cli(target) {
        Ok(bin) => bin,
        Err(why) => return Ok(Err(why)),
    };
    if let Some(why) = pool_unsupported() {
        return Ok(Err(why));
    }
    let pool = match CliPool::apply(&bin) {
        Ok(pool) => pool,
        Err(e) => return Ok(Err(format!("cannot carve a pool: {e:#}"))),
    };
    let eif_path = pool.dir().join("minimal.eif");
    std::fs::write(&eif_path, eif).context("cannot write the image")?;
    let idle_path = pool.dir().join("idle.eif");
    std::fs::write(&idle_path, idle_eif).context("cannot write the image")?;
    check_same_abi(&bin, &eif_path)?;
    for _ in 0..warmup {
        pool.run_enclave(&eif_path)?;
        pool.run_enclave_to_heartbeat(&idle_path)?;
    }
    let mut samples = CliSamples::default();
    for _ in 0..runs {
        if stop() {
            bail!("interrupted");
        }
        samples
            .to_exit
            .push(pool.run_enclave(&eif_path)?.as_secs_f64() * 1e3);
        samples
            .to_heartbeat
            .push(pool.run_enclave_to_heartbeat(&idle_path)?.as_secs_f64() * 1e3);
    }
    drop(pool);
    Ok(Ok(samples))
}
