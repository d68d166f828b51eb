//! A throw-away enclave environment for benchmarks and demos: its own run root, allocator
//! config and cgroup name in a temporary directory, a carved pool, and the host-wide pool lock
//! (`/tmp/enclave-pool-tests.lock`, taken by every test that applies a pool). Dropping it
//! terminates its enclaves, releases the pool and removes the directory.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use sdk::Enclaves;

/// Lock file serializing everything that carves a pool on this host.
pub const HOST_LOCK_FILE: &str = "/tmp/enclave-pool-tests.lock";

/// Why enclaves cannot run here, if they cannot: `/dev/kvm`, root, a cpuset controller.
pub fn host_unsupported() -> Option<String> {
    if std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_err()
    {
        return Some("/dev/kvm cannot be opened read-write".into());
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("carving a pool needs root (cpusets, locked memory)".into());
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let v1 = mounts
        .lines()
        .any(|l| l.contains(" cgroup ") && l.contains("cpuset"));
    let v2 = std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers")
        .is_ok_and(|c| c.contains("cpuset"));
    (!v1 && !v2).then(|| "no cpuset cgroup controller".into())
}

/// A temporary environment with a pool.
#[derive(Debug)]
pub struct Scratch {
    dir: PathBuf,
    enclaves: Enclaves,
    _lock: File,
}

impl Scratch {
    /// Takes the host lock, then carves a pool of `memory_mib` and one CPU (shared between the
    /// environment's enclaves) with the `enclave` binary `bin`.
    pub fn new(bin: &Path, memory_mib: u64) -> Result<Self, String> {
        Self::with_pool(
            bin,
            &format!(
                "memory_mib = {memory_mib}\ncpu_count = 1\nsharing = \"shared\"\nhugepages = \"never\"\n"
            ),
        )
    }

    /// Takes the host lock, then carves the pool that `allocator_toml` describes.
    pub fn with_pool(bin: &Path, allocator_toml: &str) -> Result<Self, String> {
        Self::with_pool_after_lock(bin, allocator_toml, || {})
    }

    /// [`Scratch::with_pool`], calling `locked` once the host lock is held and before the pool
    /// is carved (e.g. to read host-global state no other pool user changes meanwhile).
    pub fn with_pool_after_lock(
        bin: &Path,
        allocator_toml: &str,
        locked: impl FnOnce(),
    ) -> Result<Self, String> {
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(HOST_LOCK_FILE)
            .map_err(|e| format!("cannot open {HOST_LOCK_FILE}: {e}"))?;
        loop {
            // SAFETY: the fd belongs to `lock`, open for the call; flock touches no memory.
            if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } == 0 {
                break;
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(format!("cannot lock {HOST_LOCK_FILE}: {e}"));
            }
        }
        locked();
        let name = format!("enclave-scratch-{}", std::process::id());
        let dir = std::env::temp_dir().join(&name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("run"))
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let config = dir.join("allocator.toml");
        std::fs::write(&config, allocator_toml)
            .map_err(|e| format!("cannot write {}: {e}", config.display()))?;
        let enclaves = Enclaves::with_binary(bin)
            .env("ENCLAVE_RUN_ROOT", dir.join("run"))
            .env("ENCLAVE_ALLOCATOR_CONFIG", &config)
            .env("ENCLAVE_CGROUP_NAME", &name);
        let scratch = Self {
            dir,
            enclaves,
            _lock: lock,
        };
        scratch
            .enclaves
            .cli(["allocator", "apply"])
            .map_err(|e| format!("{e}"))?;
        Ok(scratch)
    }

    /// The enclaves of this environment.
    pub fn enclaves(&self) -> &Enclaves {
        &self.enclaves
    }

    /// Sets an environment variable for every `enclave` command of this environment.
    pub fn set_env(&mut self, key: &str, value: impl AsRef<std::ffi::OsStr>) {
        self.enclaves = self.enclaves.clone().env(key, value);
    }

    /// The temporary directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Packs `program` into `<dir>/<name>.eif` with `args` as its `--cmd` arguments.
    pub fn build_eif(&self, program: &Path, name: &str, args: &[&str]) -> Result<PathBuf, String> {
        let out = self.dir.join(format!("{name}.eif"));
        let mut cli: Vec<std::ffi::OsString> = vec!["build-enclave".into(), "--binary".into()];
        cli.push(program.into());
        for a in args {
            cli.push("--cmd".into());
            cli.push(a.into());
        }
        cli.push("--output-file".into());
        cli.push(out.clone().into());
        self.enclaves.cli(&cli).map_err(|e| format!("{e}"))?;
        Ok(out)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = self.enclaves.cli(["terminate-enclave", "--all"]);
        let _ = self.enclaves.cli(["allocator", "release", "--force"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
