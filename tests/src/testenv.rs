//! A per-test sandbox for the CLI: its own run root, allocator config and cgroup name, and
//! the host-wide lock that serializes tests which carve a pool out of the host.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::cli;
use crate::error::{io_err, HarnessError};
use crate::host;

/// Lock file that serializes every test (in any test binary or crate, e.g. the pool crate's
/// own tests) that applies a pool: pool CPUs are exclusive cpusets, which cannot overlap, and
/// on a small machine every pool is the same CPU.
pub const HOST_LOCK_FILE: &str = "/tmp/enclave-pool-tests.lock";

/// How long teardown commands may run before they are killed.
const TEARDOWN_TIMEOUT: Duration = Duration::from_secs(30);

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Whether enclaves may share pool CPUs (`sharing` in `allocator.toml`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sharing {
    /// Every enclave gets CPUs no other enclave holds.
    Exclusive,
    /// Enclaves may share pool CPUs.
    Shared,
}

impl Sharing {
    pub(crate) fn as_toml(self) -> &'static str {
        match self {
            Sharing::Exclusive => "exclusive",
            Sharing::Shared => "shared",
        }
    }
}

/// A temporary directory tree for one test and the environment that points the CLI at it:
/// `ENCLAVE_RUN_ROOT=<tmp>/run`, `ENCLAVE_ALLOCATOR_CONFIG=<tmp>/allocator.toml`,
/// `ENCLAVE_CGROUP_NAME=enclave-test-<pid>-<n>`, plus any [`TestEnv::set_env`] extras.
///
/// It holds an exclusive `flock` on [`HOST_LOCK_FILE`] for its whole lifetime, so never keep
/// two `TestEnv`s alive at once in one thread (the second would wait for the first forever).
///
/// Dropping it runs `enclave terminate-enclave --all` and `enclave allocator release --force`
/// (errors ignored, each bounded by a timeout), removes what is left of its cpuset cgroup,
/// removes the directory and only then releases the lock.
#[derive(Debug)]
pub struct TestEnv {
    root: PathBuf,
    cgroup_name: String,
    extra: Vec<(OsString, OsString)>,
    /// Declared last: dropped (unlocked) after `Drop::drop` has cleaned up.
    _host_lock: HostLock,
}

/// An exclusive `flock` on [`HOST_LOCK_FILE`]; closing the file releases it.
#[derive(Debug)]
struct HostLock {
    _file: File,
}

impl HostLock {
    fn acquire() -> Result<Self, HarnessError> {
        let path = Path::new(HOST_LOCK_FILE);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(io_err("open lock file", path))?;
        loop {
            // SAFETY: the fd belongs to `file`, which outlives the call; flock takes an
            // advisory lock and touches no memory of ours.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
            if rc == 0 {
                return Ok(Self { _file: file });
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(io_err("lock", path)(e));
            }
        }
    }
}

impl TestEnv {
    /// Takes the host lock (waiting for other pool tests), then creates
    /// `<temp>/enclave-test-<pid>-<n>/` with an empty `run/` inside.
    pub fn new() -> Result<Self, HarnessError> {
        let host_lock = HostLock::acquire()?;
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("enclave-test-{}-{n}", std::process::id());
        let root = std::env::temp_dir().join(&name);
        // A leftover from an earlier process with the same pid.
        if root.exists() {
            std::fs::remove_dir_all(&root).map_err(io_err("remove stale directory", &root))?;
        }
        let run = root.join("run");
        std::fs::create_dir_all(&run).map_err(io_err("create directory", &run))?;
        Ok(Self {
            root,
            cgroup_name: name,
            extra: Vec::new(),
            _host_lock: host_lock,
        })
    }

    /// The temporary directory; tests may put their own files here.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `ENCLAVE_RUN_ROOT`.
    pub fn run_root(&self) -> PathBuf {
        self.root.join("run")
    }

    /// `ENCLAVE_ALLOCATOR_CONFIG`.
    pub fn allocator_config(&self) -> PathBuf {
        self.root.join("allocator.toml")
    }

    /// `ENCLAVE_CGROUP_NAME`.
    pub fn cgroup_name(&self) -> &str {
        &self.cgroup_name
    }

    /// The pool's cpuset cgroup directory, where the pool puts one child per enclave
    /// (`None` without a cpuset controller).
    pub fn cgroup_dir(&self) -> Option<PathBuf> {
        host::cpuset_root().map(|root| root.join(&self.cgroup_name))
    }

    /// Adds (or replaces) an environment variable passed to every CLI run.
    pub fn set_env(&mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) {
        let key = key.as_ref().to_owned();
        self.extra.retain(|(k, _)| *k != key);
        self.extra.push((key, value.as_ref().to_owned()));
    }

    /// The environment variables to pass to the CLI.
    pub fn envs(&self) -> Vec<(OsString, OsString)> {
        let mut vars = vec![
            ("ENCLAVE_RUN_ROOT".into(), self.run_root().into_os_string()),
            (
                "ENCLAVE_ALLOCATOR_CONFIG".into(),
                self.allocator_config().into_os_string(),
            ),
            (
                "ENCLAVE_CGROUP_NAME".into(),
                self.cgroup_name.clone().into(),
            ),
        ];
        vars.extend(self.extra.iter().cloned());
        vars
    }

    /// A command for `program` with this environment applied.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.envs(self.envs());
        cmd
    }

    /// Writes `allocator.toml` with the given pool.
    pub fn write_allocator(
        &self,
        memory_mib: u64,
        cpu_count: u32,
        sharing: Sharing,
    ) -> Result<(), HarnessError> {
        self.write_allocator_toml(&format!(
            "memory_mib = {memory_mib}\ncpu_count = {cpu_count}\nsharing = \"{}\"\n",
            sharing.as_toml()
        ))
    }

    /// Writes `allocator.toml` verbatim (for invalid-config tests).
    pub fn write_allocator_toml(&self, text: &str) -> Result<(), HarnessError> {
        let path = self.allocator_config();
        std::fs::write(&path, text).map_err(io_err("write", &path))
    }

    /// Runs `bin args` with this environment, output discarded, killed after a timeout.
    fn run_quietly(&self, bin: &Path, args: &[&str]) {
        let Ok(mut child) = self
            .command(bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        else {
            return;
        };
        let deadline = Instant::now() + TEARDOWN_TIMEOUT;
        loop {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        // Never build the CLI during teardown: without a binary no enclave was launched by it.
        if let Some(bin) = cli::existing_enclave_bin() {
            self.run_quietly(&bin, &["terminate-enclave", "--all"]);
            self.run_quietly(&bin, &["allocator", "release", "--force"]);
        }
        // Last resort, so that one broken test does not block the pool CPUs for all others:
        // a leftover cpuset (empty ones only; rmdir refuses busy cgroups).
        if let Some(dir) = self.cgroup_dir() {
            if let Ok(children) = std::fs::read_dir(&dir) {
                for child in children.filter_map(Result::ok) {
                    if child.path().is_dir() {
                        let _ = std::fs::remove_dir(child.path());
                    }
                }
            }
            let _ = std::fs::remove_dir(&dir);
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}
