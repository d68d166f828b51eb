//! The carve-out ("allocator"), modelled on aws nitro-enclaves-allocator.
//!
//! `enclave allocator apply` reads `allocator.toml` ([`PoolConfig`]), picks the pool CPUs (never
//! CPU 0, which stays with the parent), reserves the pool memory (2 MiB hugepages when the
//! kernel gives them all, else the VMMs lock 4 KiB pages), creates a cpuset cgroup for the pool
//! and records what it did in `<run_root>/pool.json` ([`PoolState`]). [`release`] undoes exactly
//! that: `nr_hugepages` is lowered by the pages we added, not set to a value.
//!
//! Every enclave VMM then [`claim`]s CPUs and MiB from the pool under an exclusive `flock` on
//! `<run_root>/pool.lock`. A claim is a file `<run_root>/claims/<enclave-id>.json` naming the
//! VMM pid and its start time, plus a child cpuset `<pool cgroup>/<enclave-id>` with the
//! claim's CPUs; [`Claim::attach_thread`] moves each vCPU thread there and pins it with
//! `sched_setaffinity`. Claims of VMMs that died (or whose pid was reused) are reclaimed by
//! [`reclaim_dead`], which every command calls first, so a crashed VMM never leaks its share.
//!
//! # Isolation, and what it does not do
//!
//! On cgroup v1 the pool cpuset has `cpuset.cpu_exclusive = 1`: no *sibling* cpuset may
//! overlap it, and in exclusive mode the per-enclave cpusets are exclusive among themselves.
//! But the root cpuset keeps all CPUs, so host processes already running in it (or that start
//! there later) may still be scheduled on pool CPUs: an exclusive cpuset does not move the
//! root's tasks away. We deliberately do **not** migrate host processes: the machine is shared
//! and moving other people's tasks is not ours to do. [`PoolStatus::isolation`] says
//! `"v1-exclusive-cpuset"` for this level. Full isolation needs the operator to boot with
//! `isolcpus=`/`nohz_full=` or move host tasks into a non-pool cpuset themselves. On cgroup v2
//! the pool is an isolated partition (`cpuset.cpus.partition = isolated`), which does take the
//! CPUs away from the rest of the host (`"v2-isolated-partition"`); that path is untested here.

mod cgroup;
mod claim;
mod config;
mod cpulist;
mod error;
mod hugepages;
mod id;
mod process;
mod state;

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

pub use cgroup::{find_cpuset_mount, CgroupVersion, CpusetMount};
pub use claim::{
    claim, reclaim_dead, Claim, ClaimRecord, ClaimRequest, CpuRequest, HostCpus, FIRST_CID,
    LAST_CID,
};
pub use config::{online_cpus, HugepagePolicy, PoolConfig, Sharing, ONLINE_CPUS};
pub use cpulist::{CpuList, CpuListError, MAX_CPU_ID};
pub use error::{PoolError, Result};
pub use hugepages::{counts as hugepage_counts, HugepageCounts, HUGEPAGES_2M_DIR};
pub use id::{new_enclave_id, validate_enclave_id, ENCLAVE_ID_PREFIX};
pub use process::kill_same_process;
pub use state::{
    apply, release, release_force, show, ClaimStatus, MemoryBacking, PoolState, PoolStatus,
};

use error::io_err;

/// Default allocator config.
pub const DEFAULT_CONFIG: &str = "/etc/enclave/allocator.toml";
/// Default run root (pool state, claims, per-enclave run directories).
pub const DEFAULT_RUN_ROOT: &str = "/run/enclave";
/// Default name of the pool cpuset cgroup.
pub const DEFAULT_CGROUP_NAME: &str = "enclave";
/// Environment variable overriding [`PoolPaths::config`].
pub const ENV_CONFIG: &str = "ENCLAVE_ALLOCATOR_CONFIG";
/// Environment variable overriding [`PoolPaths::run_root`].
pub const ENV_RUN_ROOT: &str = "ENCLAVE_RUN_ROOT";
/// Environment variable overriding [`PoolPaths::cgroup_name`].
pub const ENV_CGROUP_NAME: &str = "ENCLAVE_CGROUP_NAME";

/// Where the carve-out keeps its config, state and cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolPaths {
    /// The allocator config (`allocator.toml`).
    pub config: PathBuf,
    /// The run root: `pool.json`, `pool.lock`, `claims/`, `<enclave-id>/`.
    pub run_root: PathBuf,
    /// Name of the pool cpuset cgroup under the cpuset mount.
    pub cgroup_name: String,
}

impl Default for PoolPaths {
    fn default() -> Self {
        Self {
            config: PathBuf::from(DEFAULT_CONFIG),
            run_root: PathBuf::from(DEFAULT_RUN_ROOT),
            cgroup_name: DEFAULT_CGROUP_NAME.to_owned(),
        }
    }
}

impl PoolPaths {
    /// Defaults, overridden by `ENCLAVE_ALLOCATOR_CONFIG`, `ENCLAVE_RUN_ROOT` and
    /// `ENCLAVE_CGROUP_NAME` when set and non-empty.
    pub fn from_env() -> Self {
        let mut paths = Self::default();
        if let Some(v) = std::env::var_os(ENV_CONFIG).filter(|v| !v.is_empty()) {
            paths.config = PathBuf::from(v);
        }
        if let Some(v) = std::env::var_os(ENV_RUN_ROOT).filter(|v| !v.is_empty()) {
            paths.run_root = PathBuf::from(v);
        }
        if let Some(v) = std::env::var(ENV_CGROUP_NAME)
            .ok()
            .filter(|v| !v.is_empty())
        {
            paths.cgroup_name = v;
        }
        paths
    }

    /// `<run_root>/pool.json`.
    pub fn state_file(&self) -> PathBuf {
        self.run_root.join("pool.json")
    }

    /// `<run_root>/pool.lock`.
    pub fn lock_file(&self) -> PathBuf {
        self.run_root.join("pool.lock")
    }

    /// `<run_root>/claims`.
    pub fn claims_dir(&self) -> PathBuf {
        self.run_root.join("claims")
    }

    /// `<run_root>/claims/<enclave_id>.json`.
    pub fn claim_file(&self, enclave_id: &str) -> PathBuf {
        self.claims_dir().join(format!("{enclave_id}.json"))
    }

    /// `<run_root>/<enclave_id>`: the enclave's run directory.
    pub fn run_dir(&self, enclave_id: &str) -> PathBuf {
        self.run_root.join(enclave_id)
    }

    fn check_cgroup_name(&self) -> Result<()> {
        let name = &self.cgroup_name;
        let ok = !name.is_empty()
            && name != "."
            && name != ".."
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if ok {
            Ok(())
        } else {
            Err(PoolError::BadCgroupName { name: name.clone() })
        }
    }
}

/// An exclusive `flock` on `<run_root>/pool.lock`, released on drop.
struct PoolLock {
    _file: std::fs::File,
}

impl PoolLock {
    fn acquire(paths: &PoolPaths) -> Result<Self> {
        create_dir(&paths.run_root)?;
        let path = paths.lock_file();
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err("open lock file", &path))?;
        loop {
            // SAFETY: the fd belongs to `file`, which is alive for the whole call; flock only
            // takes an advisory lock on it and touches no memory.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
            if rc == 0 {
                return Ok(Self { _file: file });
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(io_err("lock", &path)(e));
            }
        }
    }
}

fn create_dir(path: &Path) -> Result<()> {
    std::fs::create_dir_all(path).map_err(io_err("create directory", path))
}

/// Writes `value` as JSON to `path` atomically (temporary file, then rename).
fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|source| PoolError::StateCorrupt {
        path: path.to_owned(),
        source,
    })?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, text).map_err(io_err("write", &tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err("rename into place", path))
}

/// Reads JSON from `path`; `Ok(None)` if it does not exist.
fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("read", path)(e)),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|source| PoolError::StateCorrupt {
            path: path.to_owned(),
            source,
        })
}

/// Removes a file; a missing file is fine.
fn remove_file(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err("remove", path)(e)),
        _ => Ok(()),
    }
}
