//! Claims: the CPUs and MiB one enclave VMM holds from the pool, recorded in
//! `<run_root>/claims/<enclave-id>.json` with a child cpuset `<pool cgroup>/<enclave-id>`,
//! and the reclaiming of claims whose VMM died.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::cgroup::CpusetMount;
use super::config::Sharing;
use super::cpulist::CpuList;
use super::error::{io_err, PoolError, Result};
use super::hugepages::HUGEPAGE_MIB;
use super::id::validate_enclave_id;
use super::process::{is_same_live_process, start_time};
use super::state::{MemoryBacking, PoolState};
use super::{read_json, remove_file, write_json, PoolLock, PoolPaths};
use crate::threads::VCPU_THREAD_PREFIX;

/// Which CPUs an enclave asks for.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum CpuRequest {
    /// Any `n` pool CPUs.
    Count(u32),
    /// Exactly these pool CPUs.
    Ids(Vec<u32>),
}

/// A request for a share of the pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRequest {
    /// The enclave (`enc-` + 16 hex).
    pub enclave_id: String,
    /// The VMM process that holds the claim; the claim dies with it.
    pub pid: u32,
    /// CPUs wanted.
    pub cpus: CpuRequest,
    /// MiB wanted (rounded up to 2 MiB on hugepages).
    pub memory_mib: u64,
    /// The enclave's vsock CID; `None`: the lowest free one from [`FIRST_CID`].
    pub cid: Option<u64>,
}

/// The lowest CID given to an enclave that does not ask for one (as nitro-cli).
pub const FIRST_CID: u64 = 16;
/// The highest CID an enclave may have (`u32::MAX` is `VMADDR_CID_ANY`).
pub const LAST_CID: u64 = u32::MAX as u64 - 1;

/// A claim as recorded in `<run_root>/claims/<enclave-id>.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimRecord {
    /// The enclave.
    pub enclave_id: String,
    /// The VMM process.
    pub pid: u32,
    /// Its start time (`/proc/<pid>/stat` field 22), so a reused pid is not taken for it.
    pub start_time: u64,
    /// CPUs held.
    pub cpus: CpuList,
    /// MiB held.
    pub memory_mib: u64,
    /// How the memory is backed.
    pub backing: MemoryBacking,
    /// Whether the CPUs may be shared with other enclaves.
    pub shared: bool,
    /// The enclave's child cpuset.
    pub cgroup: PathBuf,
    /// The enclave's vsock CID, chosen under the pool lock so no two live enclaves share one
    /// (absent in claims of older VMMs).
    #[serde(default)]
    pub cid: Option<u64>,
}

/// One enclave's share of the pool, held until [`Claim::release`] or the VMM's death.
#[derive(Debug, Clone)]
pub struct Claim {
    record: ClaimRecord,
    mount: CpusetMount,
    paths: PoolPaths,
}

impl Claim {
    /// Opens the existing claim of `enclave_id`, or `None` if it has none.
    pub fn open(paths: &PoolPaths, enclave_id: &str) -> Result<Option<Claim>> {
        validate_enclave_id(enclave_id)?;
        let state_file = paths.state_file();
        let state: PoolState =
            read_json(&state_file)?.ok_or(PoolError::NotApplied { path: state_file })?;
        Ok(
            read_json::<ClaimRecord>(&paths.claim_file(enclave_id))?.map(|record| Claim {
                record,
                mount: state.cgroup_mount,
                paths: paths.clone(),
            }),
        )
    }

    /// The enclave id.
    pub fn enclave_id(&self) -> &str {
        &self.record.enclave_id
    }

    /// CPUs held.
    pub fn cpus(&self) -> &CpuList {
        &self.record.cpus
    }

    /// MiB held.
    pub fn memory_mib(&self) -> u64 {
        self.record.memory_mib
    }

    /// How the memory must be mapped.
    pub fn backing(&self) -> MemoryBacking {
        self.record.backing
    }

    /// Whether other enclaves may run on the same CPUs.
    pub fn shared(&self) -> bool {
        self.record.shared
    }

    /// The enclave's child cpuset directory.
    pub fn cgroup_dir(&self) -> PathBuf {
        self.record.cgroup.clone()
    }

    /// The recorded claim.
    pub fn record(&self) -> &ClaimRecord {
        &self.record
    }

    /// Moves thread `tid` into the enclave's cpuset and pins it to the claim's CPUs with
    /// `sched_setaffinity` (in shared mode too).
    pub fn attach_thread(&self, tid: i32) -> Result<()> {
        self.mount.attach(&self.record.cgroup, tid)?;
        self.pin(tid)
    }

    /// Pins thread `tid` (0: the calling thread) to the claim's CPUs with `sched_setaffinity`;
    /// threads it creates afterwards inherit the pinning. Fast, unlike a cgroup move.
    pub fn pin(&self, tid: i32) -> Result<()> {
        let affinity_err = |source| PoolError::Affinity {
            tid,
            cpus: self.record.cpus.clone(),
            source,
        };
        // SAFETY: cpu_set_t is a plain bit array for which all-zero is the valid empty set.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        let capacity = std::mem::size_of::<libc::cpu_set_t>().saturating_mul(8);
        for cpu in self.record.cpus.iter() {
            let cpu = usize::try_from(cpu).unwrap_or(usize::MAX);
            if cpu >= capacity {
                return Err(affinity_err(std::io::Error::from_raw_os_error(
                    libc::EINVAL,
                )));
            }
            // SAFETY: `cpu` < the bit capacity of `set` (checked just above), so CPU_SET writes
            // inside the live, exclusively borrowed `set`.
            unsafe { libc::CPU_SET(cpu, &mut set) };
        }
        set_affinity(tid, &set).map_err(affinity_err)
    }

    /// The enclave's vsock CID.
    pub fn cid(&self) -> u64 {
        self.record.cid.unwrap_or(FIRST_CID)
    }

    /// A detached copy that can move the VMM's vCPU threads into this claim's cpuset from
    /// another thread.
    pub fn cgroup_mover(&self) -> CgroupMover {
        CgroupMover {
            mount: self.mount.clone(),
            dir: self.record.cgroup.clone(),
        }
    }

    /// Gives the share back: remaining threads move to the pool cpuset, the child cpuset and
    /// the claim file are removed.
    pub fn release(self) -> Result<()> {
        let _lock = PoolLock::acquire(&self.paths)?;
        self.mount.remove_tree(&self.record.cgroup)?;
        remove_file(&self.paths.claim_file(&self.record.enclave_id))
    }
}

/// Moves a VMM's vCPU threads into a claim's cpuset (see [`Claim::cgroup_mover`]).
#[derive(Debug, Clone)]
pub struct CgroupMover {
    mount: CpusetMount,
    dir: PathBuf,
}

impl CgroupMover {
    /// Moves the threads of this process that run guest code (named
    /// [`VCPU_THREAD_PREFIX`]…) into the claim's cpuset (slow on cgroup v1: a few milliseconds
    /// of RCU synchronisation per thread, so callers do it off the launch path). On cgroup v1 threads may live in different cgroups: the VMM's
    /// host-side threads stay with the parent, and the threads a vCPU thread creates later
    /// inherit its cpuset. On cgroup v2 a domain cgroup takes whole processes: every thread
    /// of the process moves.
    pub fn attach_vcpus(&self) -> Result<()> {
        if self.mount.version == super::CgroupVersion::V2 {
            return self.mount.attach_process(&self.dir, std::process::id());
        }
        let own_tasks = std::path::Path::new("/proc/self/task");
        let tasks =
            std::fs::read_dir(own_tasks).map_err(io_err("list the threads in", own_tasks))?;
        for task in tasks.filter_map(std::result::Result::ok) {
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            let Some(tid) = task
                .file_name()
                .to_str()
                .and_then(|t| t.parse::<i32>().ok())
            else {
                continue;
            };
            if comm.starts_with(VCPU_THREAD_PREFIX) {
                // A thread that ended meanwhile is no error.
                let _ = self.mount.attach(&self.dir, tid);
            }
        }
        Ok(())
    }
}

/// Claims CPUs and memory for one enclave (after reclaiming the claims of dead VMMs).
pub fn claim(paths: &PoolPaths, request: &ClaimRequest) -> Result<Claim> {
    let id = request.enclave_id.as_str();
    validate_enclave_id(id)?;
    let requested_cpus = match &request.cpus {
        CpuRequest::Count(n) => usize::try_from(*n).unwrap_or(usize::MAX),
        CpuRequest::Ids(ids) => ids.len(),
    };
    if requested_cpus == 0 || request.memory_mib == 0 {
        return Err(PoolError::EmptyClaim {
            id: id.to_owned(),
            cpus: requested_cpus,
            memory_mib: request.memory_mib,
        });
    }
    let _lock = PoolLock::acquire(paths)?;
    reclaim_dead_locked(paths)?;
    let state_file = paths.state_file();
    let state: PoolState =
        read_json(&state_file)?.ok_or(PoolError::NotApplied { path: state_file })?;
    let claim_file = paths.claim_file(id);
    if claim_file.exists() {
        return Err(PoolError::ClaimExists {
            id: id.to_owned(),
            path: claim_file,
        });
    }
    let start_time =
        start_time(request.pid).ok_or(PoolError::NoSuchProcess { pid: request.pid })?;
    let others = load_claims(paths)?;

    let memory_mib = match state.backing {
        MemoryBacking::HugePages2M => request
            .memory_mib
            .div_ceil(HUGEPAGE_MIB)
            .saturating_mul(HUGEPAGE_MIB),
        MemoryBacking::Locked4K => request.memory_mib,
    };
    let claimed: u64 = others
        .iter()
        .map(|c| c.memory_mib)
        .fold(0, u64::saturating_add);
    let free_memory = state.memory_mib.saturating_sub(claimed);
    if memory_mib > free_memory {
        let held: Vec<String> = others
            .iter()
            .map(|c| format!("{}: {} MiB", c.enclave_id, c.memory_mib))
            .collect();
        return Err(PoolError::NotEnoughMemory {
            requested: memory_mib,
            free: free_memory,
            pool: state.memory_mib,
            held: held_text(held),
            config: paths.config.clone(),
        });
    }

    let cid = pick_cid(&others, request.cid)?;
    let cpus = pick_cpus(&state, &others, &request.cpus, paths)?;
    let exclusive = state.sharing == Sharing::Exclusive;
    let cgroup = state.cgroup.join(id);
    state
        .cgroup_mount
        .create(&cgroup, &cpus, exclusive, false)?;
    let record = ClaimRecord {
        enclave_id: id.to_owned(),
        pid: request.pid,
        start_time,
        cpus,
        memory_mib,
        backing: state.backing,
        shared: !exclusive,
        cgroup,
        cid: Some(cid),
    };
    if let Err(e) = write_json(&claim_file, &record) {
        let _ = state.cgroup_mount.remove_tree(&record.cgroup);
        return Err(e);
    }
    tracing::info!(enclave = id, cpus = %record.cpus, memory_mib, "pool claim");
    Ok(Claim {
        record,
        mount: state.cgroup_mount,
        paths: paths.clone(),
    })
}

/// `wanted` if it is valid and no live enclave holds it, else the lowest free CID.
fn pick_cid(others: &[ClaimRecord], wanted: Option<u64>) -> Result<u64> {
    let holder = |cid: u64| others.iter().find(|c| c.cid == Some(cid));
    match wanted {
        Some(cid) if !(4..=LAST_CID).contains(&cid) => Err(PoolError::CidInvalid(cid)),
        Some(cid) => match holder(cid) {
            Some(c) => Err(PoolError::CidTaken {
                cid,
                holder: c.enclave_id.clone(),
            }),
            None => Ok(cid),
        },
        None => (FIRST_CID..=LAST_CID)
            .find(|&cid| holder(cid).is_none())
            .ok_or(PoolError::CidInvalid(LAST_CID)),
    }
}

fn held_text(held: Vec<String>) -> String {
    if held.is_empty() {
        "none held".into()
    } else {
        format!("held by {}", held.join(", "))
    }
}

fn pick_cpus(
    state: &PoolState,
    others: &[ClaimRecord],
    request: &CpuRequest,
    paths: &PoolPaths,
) -> Result<CpuList> {
    let pool = &state.cpus;
    let mut load: BTreeMap<u32, usize> = pool.iter().map(|c| (c, 0)).collect();
    let mut busy = CpuList::new();
    for c in others.iter().flat_map(|c| c.cpus.iter()) {
        busy.insert(c);
        if let Some(n) = load.get_mut(&c) {
            *n += 1;
        }
    }
    let held = held_text(
        others
            .iter()
            .map(|c| format!("{}: {}", c.enclave_id, c.cpus))
            .collect(),
    );
    let exclusive = state.sharing == Sharing::Exclusive;
    let free = pool.difference(&busy);
    match request {
        CpuRequest::Count(n) => {
            let n = usize::try_from(*n).unwrap_or(usize::MAX);
            let available = if exclusive { free.len() } else { pool.len() };
            if n > available {
                return Err(PoolError::NotEnoughCpus {
                    requested: n,
                    free: available,
                    pool: pool.clone(),
                    held,
                    config: paths.config.clone(),
                });
            }
            // Least-loaded first, then highest-numbered (away from the parent's CPU 0).
            let mut candidates: Vec<u32> = if exclusive {
                free.iter().collect()
            } else {
                pool.iter().collect()
            };
            candidates.sort_by_key(|c| (load.get(c).copied().unwrap_or(0), std::cmp::Reverse(*c)));
            Ok(candidates.into_iter().take(n).collect())
        }
        CpuRequest::Ids(ids) => {
            let requested: CpuList = ids.iter().copied().collect();
            let outside = requested.difference(pool);
            if !outside.is_empty() {
                return Err(PoolError::CpusNotInPool {
                    requested,
                    outside,
                    pool: pool.clone(),
                    config: paths.config.clone(),
                });
            }
            let taken = requested.intersection(&busy);
            if exclusive && !taken.is_empty() {
                return Err(PoolError::CpusBusy {
                    requested,
                    busy: taken,
                    free,
                    held,
                    config: paths.config.clone(),
                });
            }
            Ok(requested)
        }
    }
}

/// Every readable claim record (corrupt or misnamed files are skipped with a warning).
pub(crate) fn load_claims(paths: &PoolPaths) -> Result<Vec<ClaimRecord>> {
    let dir = paths.claims_dir();
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err("list", &dir)(e)),
    };
    let mut claims = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(id) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".json"))
        else {
            continue;
        };
        if validate_enclave_id(id).is_err() {
            continue;
        }
        match read_json::<ClaimRecord>(&path) {
            Ok(Some(record)) if record.enclave_id == id => claims.push(record),
            Ok(Some(_)) => {
                tracing::warn!(path = %path.display(), "claim file names another enclave; ignored")
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "unreadable claim file; ignored"),
        }
    }
    claims.sort_by(|a, b| a.enclave_id.cmp(&b.enclave_id));
    Ok(claims)
}

/// Reclaims the claims whose VMM is gone (or whose pid now belongs to another process):
/// removes the child cpuset, the claim file and the run directory `<run_root>/<id>/` — or,
/// for a VMM that died after its enclave was running, turns the run directory into a record
/// (state `VMM_DIED`, see [`crate::records::mark_vmm_died`]).
/// Returns the reclaimed enclave ids.
pub fn reclaim_dead(paths: &PoolPaths) -> Result<Vec<String>> {
    let _lock = PoolLock::acquire(paths)?;
    reclaim_dead_locked(paths)
}

pub(crate) fn reclaim_dead_locked(paths: &PoolPaths) -> Result<Vec<String>> {
    let state: Option<PoolState> = read_json(&paths.state_file()).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "pool.json unreadable; reclaiming claim files only");
        None
    });
    let mut reclaimed = Vec::new();
    for record in load_claims(paths)? {
        if is_same_live_process(record.pid, record.start_time) {
            continue;
        }
        let id = record.enclave_id;
        if let Some(state) = &state {
            state.cgroup_mount.remove_tree(&state.cgroup.join(&id))?;
        }
        let run_dir = paths.run_dir(&id);
        if crate::records::mark_vmm_died(&run_dir, record.pid) {
            tracing::info!(enclave = %id, "kept the record of an enclave whose VMM died");
        } else if let Err(e) = std::fs::remove_dir_all(&run_dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                return Err(io_err("remove run directory", &run_dir)(e));
            }
        }
        remove_file(&paths.claim_file(&id))?;
        tracing::info!(enclave = %id, pid = record.pid, "reclaimed the pool claim of a dead VMM");
        reclaimed.push(id);
    }
    Ok(reclaimed)
}

/// `sched_setaffinity(tid, set)`.
fn set_affinity(tid: i32, set: &libc::cpu_set_t) -> std::io::Result<()> {
    // SAFETY: `set` is an initialised cpu_set_t living across the call and the size passed is
    // exactly its size; the kernel only reads it.
    let rc = unsafe { libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), set) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The CPUs a VMM's host-side threads run on (the measuring thread, the control and vsock
/// servers, the vCPU thread while it installs its seccomp filter): those the VMM could run on
/// before it pinned itself into its claim, without the claim's. Their set-up work then runs
/// beside the thread that builds the enclave instead of taking turns with it, and their
/// service never takes the enclave's CPUs.
/// The default leaves every thread's affinity alone.
#[derive(Clone, Copy, Default)]
pub struct HostCpus {
    /// `None` when the claim holds every CPU the VMM may use: threads keep their affinity.
    set: Option<libc::cpu_set_t>,
}

impl std::fmt::Debug for HostCpus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // SAFETY: CPU_COUNT only reads the initialised set.
        let count = self.set.map(|s| unsafe { libc::CPU_COUNT(&s) });
        f.debug_struct("HostCpus").field("cpus", &count).finish()
    }
}

impl HostCpus {
    /// The calling thread's CPUs without `claimed` (call it before pinning into the claim).
    pub fn outside(claimed: &CpuList) -> Result<Self> {
        let affinity_err = |source| PoolError::Affinity {
            tid: 0,
            cpus: claimed.clone(),
            source,
        };
        // SAFETY: cpu_set_t is a plain bit array for which all-zero is the valid empty set.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        let size = std::mem::size_of::<libc::cpu_set_t>();
        // SAFETY: `set` is a live, exclusively borrowed cpu_set_t of exactly `size` bytes,
        // which the kernel fills.
        if unsafe { libc::sched_getaffinity(0, size, &mut set) } != 0 {
            return Err(affinity_err(std::io::Error::last_os_error()));
        }
        let capacity = size.saturating_mul(8);
        for cpu in claimed.iter() {
            let cpu = usize::try_from(cpu).unwrap_or(usize::MAX);
            if cpu < capacity {
                // SAFETY: `cpu` < the bit capacity of `set`, so CPU_CLR writes inside `set`.
                unsafe { libc::CPU_CLR(cpu, &mut set) };
            }
        }
        // SAFETY: `set` is an initialised cpu_set_t; CPU_COUNT only reads it.
        let empty = unsafe { libc::CPU_COUNT(&set) } == 0;
        Ok(Self {
            set: (!empty).then_some(set),
        })
    }

    /// Pins the calling thread to these CPUs. A failure only costs speed: it is logged and the
    /// thread keeps its affinity.
    pub fn enter(&self) {
        if let Some(set) = &self.set {
            if let Err(e) = set_affinity(0, set) {
                tracing::debug!(error = %e, "a host-side thread keeps its affinity");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The calling thread's CPUs.
    fn affinity() -> Vec<usize> {
        // SAFETY: all-zero is the valid empty set; the kernel fills `set` of exactly its size.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let rc = unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) };
        assert_eq!(rc, 0);
        // SAFETY: CPU_ISSET reads bits below the set's capacity.
        (0..1024)
            .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
            .collect()
    }

    /// The affinity of a new thread that entered the host CPUs of a claim of `claimed`.
    fn affinity_entered(claimed: &CpuList) -> Vec<usize> {
        let host = HostCpus::outside(claimed).unwrap();
        std::thread::spawn(move || {
            host.enter();
            affinity()
        })
        .join()
        .unwrap()
    }

    #[test]
    fn host_threads_leave_the_claimed_cpus() {
        let mine = affinity();
        // A claim of every allowed CPU leaves a thread's affinity alone.
        let all: CpuList = mine
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(",")
            .parse()
            .unwrap();
        assert_eq!(affinity_entered(&all), mine);
        // With a CPU left over, host threads run on the others only.
        if let [_, claimed_cpu, ..] = mine[..] {
            let claimed: CpuList = claimed_cpu.to_string().parse().unwrap();
            let expected: Vec<usize> = mine.iter().copied().filter(|&c| c != claimed_cpu).collect();
            assert_eq!(affinity_entered(&claimed), expected);
        }
    }
}
