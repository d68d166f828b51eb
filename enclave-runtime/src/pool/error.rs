//! The carve-out's error type. Every message names the numbers involved and the fix.

use std::io;
use std::path::PathBuf;

use super::cpulist::{CpuList, CpuListError};

/// Errors of the carve-out (pool, hugepages, cpusets, claims).
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// A host file could not be read, written or created.
    #[error("Cannot {what} {path}")]
    Io {
        /// What we tried to do ("read", "write", "create directory", ...).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// There is no allocator config.
    #[error("No allocator config at {path}; write one (e.g. `memory_mib = 512` and `cpu_count = 1`) or point ENCLAVE_ALLOCATOR_CONFIG at it")]
    ConfigMissing {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// The allocator config is not valid TOML or has unknown keys.
    #[error("Cannot parse allocator config {path}")]
    ConfigParse {
        /// The config file.
        path: PathBuf,
        /// The TOML error.
        #[source]
        source: toml::de::Error,
    },
    /// The allocator config parses but asks for something impossible.
    #[error("Invalid allocator config {path}: {reason}")]
    ConfigInvalid {
        /// The config file.
        path: PathBuf,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// A cpulist read from the host or the config is malformed.
    #[error("Bad CPU list in {path}")]
    CpuList {
        /// Where the list came from.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: CpuListError,
    },
    /// `ENCLAVE_CGROUP_NAME` is not a single safe path component.
    #[error("Cgroup name {name:?} is not a plain name; use letters, digits, '.', '_' and '-' only (ENCLAVE_CGROUP_NAME)")]
    BadCgroupName {
        /// The rejected name.
        name: String,
    },
    /// No pool has been applied.
    #[error("No CPU pool is applied ({path} is missing); run `enclave allocator apply`")]
    NotApplied {
        /// The missing state file.
        path: PathBuf,
    },
    /// A JSON state or claim file is corrupt.
    #[error("Corrupt state file {path}; run `enclave allocator release --force` and `enclave allocator apply`")]
    StateCorrupt {
        /// The file.
        path: PathBuf,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// No cpuset controller is mounted.
    #[error("No cpuset cgroup controller in /proc/self/mountinfo (neither a v1 `cpuset` mount nor cgroup2 with `cpuset` in cgroup.controllers); mount one, e.g. `mount -t cgroup -o cpuset cpuset /sys/fs/cgroup/cpuset`")]
    NoCpuset,
    /// A cgroup control file refused a value.
    #[error("Cannot write {value:?} to {path}")]
    CgroupWrite {
        /// The control file.
        path: PathBuf,
        /// The value.
        value: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The pool CPUs overlap another exclusive or sibling cpuset.
    #[error("Cannot make CPUs {cpus} exclusive in {path}: {holders}; stop or shrink that cpuset, or pick other CPUs with cpu_pool in the allocator config")]
    ExclusiveConflict {
        /// The pool CPUs.
        cpus: CpuList,
        /// The cgroup we tried to make exclusive.
        path: PathBuf,
        /// Which sibling cpusets overlap (or why we could not tell).
        holders: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The kernel gave fewer hugepages than asked for under `hugepages = "require"`.
    #[error("Asked the kernel for {wanted} more 2 MiB hugepages ({mib} MiB) but free_hugepages rose by only {got}; free or compact memory (`echo 1 > /proc/sys/vm/compact_memory`), lower memory_mib, or set hugepages = \"auto\" in {config}")]
    HugepagesShort {
        /// Pages asked for.
        wanted: u64,
        /// MiB asked for.
        mib: u64,
        /// Pages the kernel actually added.
        got: u64,
        /// The allocator config.
        config: PathBuf,
    },
    /// Live enclaves still hold claims, so the pool cannot be released or re-applied.
    #[error("{count} running enclave(s) still hold pool claims ({ids}); terminate them first, or use `enclave allocator release --force`")]
    LiveClaims {
        /// Number of live claims.
        count: usize,
        /// Their enclave ids.
        ids: String,
    },
    /// Not a valid enclave id.
    #[error(
        "Invalid enclave id {id:?}: ids look like \"enc-\" followed by 16 lowercase hex digits"
    )]
    BadEnclaveId {
        /// The rejected id.
        id: String,
    },
    /// The enclave already has a claim.
    #[error("Enclave {id} already holds a pool claim ({path}); release it first")]
    ClaimExists {
        /// The enclave id.
        id: String,
        /// The claim file.
        path: PathBuf,
    },
    /// The claiming process does not exist.
    #[error(
        "Process {pid} does not exist (or is a zombie); claims must name the live VMM process"
    )]
    NoSuchProcess {
        /// The pid.
        pid: u32,
    },
    /// A CID another live enclave holds.
    #[error(
        "CID {cid} is already used by enclave {holder}; pick another --enclave-cid or leave it out"
    )]
    CidTaken {
        /// The CID.
        cid: u64,
        /// The enclave holding it.
        holder: String,
    },
    /// A CID no enclave can have.
    #[error("CID {0} cannot be an enclave's: 0-3 are reserved (hypervisor, local, host) and CIDs are 32-bit; use 4 to 4294967294")]
    CidInvalid(u64),
    /// A claim asked for zero CPUs or zero memory.
    #[error("Claim for {id} asks for {cpus} CPUs and {memory_mib} MiB; ask for at least 1 CPU and 1 MiB")]
    EmptyClaim {
        /// The enclave id.
        id: String,
        /// Requested CPUs.
        cpus: usize,
        /// Requested MiB.
        memory_mib: u64,
    },
    /// Not enough free CPUs.
    #[error("Requested {requested} CPUs but the pool has {free} free (pool: {pool}, {held}); lower --cpu-count, or raise cpu_count in {config} and run `enclave allocator apply`")]
    NotEnoughCpus {
        /// CPUs requested.
        requested: usize,
        /// CPUs free.
        free: usize,
        /// The pool.
        pool: CpuList,
        /// Who holds what.
        held: String,
        /// The allocator config.
        config: PathBuf,
    },
    /// Requested CPU ids outside the pool.
    #[error("Requested CPUs {requested} but {outside} are not in the pool ({pool}); pick CPUs from the pool, or add them to cpu_pool in {config} and run `enclave allocator apply`")]
    CpusNotInPool {
        /// CPUs requested.
        requested: CpuList,
        /// The ones outside the pool.
        outside: CpuList,
        /// The pool.
        pool: CpuList,
        /// The allocator config.
        config: PathBuf,
    },
    /// Requested CPU ids held by other enclaves in exclusive mode.
    #[error("Requested CPUs {requested} but {busy} are held by other enclaves ({held}); pick free CPUs ({free}), or set sharing = \"shared\" in {config} and run `enclave allocator apply`")]
    CpusBusy {
        /// CPUs requested.
        requested: CpuList,
        /// The ones already held.
        busy: CpuList,
        /// Free pool CPUs.
        free: CpuList,
        /// Who holds what.
        held: String,
        /// The allocator config.
        config: PathBuf,
    },
    /// Not enough free pool memory.
    #[error("Requested {requested} MiB but the pool has {free} MiB free (pool: {pool} MiB, {held}); lower --memory, or raise memory_mib in {config} and run `enclave allocator apply`")]
    NotEnoughMemory {
        /// MiB requested (rounded up to 2 MiB on hugepages).
        requested: u64,
        /// MiB free.
        free: u64,
        /// Pool MiB.
        pool: u64,
        /// Who holds what.
        held: String,
        /// The allocator config.
        config: PathBuf,
    },
    /// `getrandom(2)` failed.
    #[error("Cannot read random bytes for an enclave id")]
    Random(#[source] io::Error),
    /// `sched_setaffinity(2)` failed.
    #[error("Cannot pin thread {tid} to CPUs {cpus}")]
    Affinity {
        /// The thread.
        tid: i32,
        /// The CPUs.
        cpus: CpuList,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// Result alias of the carve-out.
pub type Result<T, E = PoolError> = std::result::Result<T, E>;

/// Builds a [`PoolError::Io`] mapper for `?`.
pub(crate) fn io_err(
    what: &'static str,
    path: &std::path::Path,
) -> impl FnOnce(io::Error) -> PoolError {
    let path = path.to_owned();
    move |source| PoolError::Io { what, path, source }
}
