//! The applied pool: [`apply`], [`release`] and [`show`], and the `pool.json` record of
//! exactly what was changed on the host so that it can be undone.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::cgroup::{find_cpuset_mount, CgroupVersion, CpusetMount};
use super::claim::{load_claims, reclaim_dead_locked};
use super::config::{online_cpus, HugepagePolicy, PoolConfig, Sharing};
use super::cpulist::CpuList;
use super::error::{PoolError, Result};
use super::hugepages::{self, Reservation, HUGEPAGE_MIB};
use super::process::is_same_live_process;
use super::{create_dir, read_json, remove_file, write_json, PoolLock, PoolPaths};

/// How the pool memory is backed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemoryBacking {
    /// 2 MiB hugepages reserved in `nr_hugepages`; VMMs map them with `MAP_HUGETLB`.
    #[serde(rename = "hugepages-2M")]
    HugePages2M,
    /// No reservation; VMMs lock anonymous 4 KiB pages.
    #[serde(rename = "locked-4K")]
    Locked4K,
}

/// What `apply` did, as recorded in `<run_root>/pool.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolState {
    /// Pool CPUs.
    pub cpus: CpuList,
    /// Pool memory in MiB.
    pub memory_mib: u64,
    /// How the memory is backed.
    pub backing: MemoryBacking,
    /// Hugepages we added to `nr_hugepages` (and will remove on release).
    pub hugepages_reserved: u64,
    /// Whether enclaves may share pool CPUs.
    pub sharing: Sharing,
    /// The pool cpuset cgroup directory.
    pub cgroup: PathBuf,
    /// The cpuset controller the cgroup lives in.
    pub cgroup_mount: CpusetMount,
    /// Isolation level: `"v1-exclusive-cpuset"` or `"v2-isolated-partition"`.
    pub isolation: String,
}

/// One claim as seen by [`show`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClaimStatus {
    /// The enclave.
    pub enclave_id: String,
    /// Its VMM process.
    pub pid: u32,
    /// CPUs it holds.
    pub cpus: CpuList,
    /// MiB it holds.
    pub memory_mib: u64,
    /// Whether the VMM is still running (dead claims are reclaimed by the next command).
    pub alive: bool,
}

/// The pool and who holds what, for `enclave allocator show`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PoolStatus {
    /// The applied pool.
    pub pool: PoolState,
    /// Isolation level (`"v1-exclusive-cpuset"` or `"v2-isolated-partition"`).
    pub isolation: String,
    /// What the isolation level does and does not guarantee.
    pub isolation_note: String,
    /// Claims, live and dead.
    pub claims: Vec<ClaimStatus>,
    /// Pool CPUs no live claim holds.
    pub free_cpus: CpuList,
    /// MiB held by live claims.
    pub claimed_memory_mib: u64,
    /// Pool MiB not held by live claims.
    pub free_memory_mib: u64,
}

const V1_ISOLATION: &str = "v1-exclusive-cpuset";
const V2_ISOLATION: &str = "v2-isolated-partition";

fn isolation_note(isolation: &str) -> String {
    if isolation == V1_ISOLATION {
        "cgroup v1 exclusive cpuset: no other cpuset may overlap the pool CPUs, but host tasks in the \
         root cpuset are not migrated and may still run on them; boot with isolcpus= for full isolation"
            .into()
    } else {
        "cgroup v2 isolated partition: pool CPUs are removed from the rest of the host's cpusets"
            .into()
    }
}

/// Reads the config, reserves CPUs and memory and creates the pool cpuset. A pool applied
/// before is released first (which fails while live enclaves hold claims).
pub fn apply(paths: &PoolPaths) -> Result<PoolState> {
    paths.check_cgroup_name()?;
    let config = PoolConfig::load(&paths.config)?;
    let cpus = config.select_cpus(&online_cpus()?, &paths.config)?;
    let mount = find_cpuset_mount()?;
    let _lock = PoolLock::acquire(paths)?;
    release_locked(paths, false)?;

    let (backing, hugepages_reserved) = reserve_memory(&config, paths)?;
    let cgroup = mount.root.join(&paths.cgroup_name);
    let isolation = match mount.version {
        CgroupVersion::V1 => V1_ISOLATION,
        CgroupVersion::V2 => V2_ISOLATION,
    };
    let state = PoolState {
        cpus,
        memory_mib: config.memory_mib,
        backing,
        hugepages_reserved,
        sharing: config.sharing,
        cgroup,
        cgroup_mount: mount,
        isolation: isolation.into(),
    };
    let result = state
        .cgroup_mount
        .create(&state.cgroup, &state.cpus, true, true)
        .and_then(|()| create_dir(&paths.claims_dir()))
        .and_then(|()| write_json(&paths.state_file(), &state));
    if let Err(e) = result {
        let _ = state.cgroup_mount.remove_tree(&state.cgroup);
        let _ = hugepages::unreserve(state.hugepages_reserved);
        return Err(e);
    }
    tracing::info!(cpus = %state.cpus, memory_mib = state.memory_mib, backing = ?state.backing, "pool applied");
    Ok(state)
}

fn reserve_memory(config: &PoolConfig, paths: &PoolPaths) -> Result<(MemoryBacking, u64)> {
    if config.hugepages == HugepagePolicy::Never {
        return Ok((MemoryBacking::Locked4K, 0));
    }
    let wanted = hugepages::pages_for(config.memory_mib);
    let outcome = match hugepages::reserve(wanted) {
        Ok(outcome) => outcome,
        Err(e) if config.hugepages == HugepagePolicy::Auto => {
            tracing::warn!(error = %e, "cannot reserve hugepages; using locked 4 KiB pages");
            Reservation::Short { wanted, got: 0 }
        }
        Err(e) => return Err(e),
    };
    match outcome {
        Reservation::Added(pages) => Ok((MemoryBacking::HugePages2M, pages)),
        Reservation::Short { wanted, got } if config.hugepages == HugepagePolicy::Require => {
            Err(PoolError::HugepagesShort {
                wanted,
                mib: wanted.saturating_mul(HUGEPAGE_MIB),
                got,
                config: paths.config.clone(),
            })
        }
        Reservation::Short { .. } => Ok((MemoryBacking::Locked4K, 0)),
    }
}

/// Undoes [`apply`]: removes the pool cpuset, lowers `nr_hugepages` by the pages we added and
/// removes `pool.json`. Fails while live enclaves hold claims. Nothing applied is not an error.
pub fn release(paths: &PoolPaths) -> Result<()> {
    let _lock = PoolLock::acquire(paths)?;
    release_locked(paths, false)
}

/// Like [`release`], but also drops the claims of live enclaves (their cgroups are removed,
/// their threads moved to the parent cpuset, their run directories left alone). Works with a
/// corrupt `pool.json` too, except that hugepages we added cannot then be counted back.
pub fn release_force(paths: &PoolPaths) -> Result<()> {
    let _lock = PoolLock::acquire(paths)?;
    release_locked(paths, true)
}

fn release_locked(paths: &PoolPaths, force: bool) -> Result<()> {
    let state = match read_json::<PoolState>(&paths.state_file()) {
        Ok(Some(state)) => state,
        Ok(None) => return Ok(()),
        Err(e) if force => {
            tracing::warn!(error = %e, "pool.json is unreadable; removing the cgroup by name, hugepages we added (if any) stay reserved");
            paths.check_cgroup_name()?;
            let mount = find_cpuset_mount()?;
            mount.remove_tree(&mount.root.join(&paths.cgroup_name))?;
            for record in load_claims(paths)? {
                remove_file(&paths.claim_file(&record.enclave_id))?;
            }
            return remove_file(&paths.state_file());
        }
        Err(e) => return Err(e),
    };
    reclaim_dead_locked(paths)?;
    let live = load_claims(paths)?;
    if !live.is_empty() && !force {
        let ids: Vec<&str> = live.iter().map(|c| c.enclave_id.as_str()).collect();
        return Err(PoolError::LiveClaims {
            count: live.len(),
            ids: ids.join(", "),
        });
    }
    for record in &live {
        state
            .cgroup_mount
            .remove_tree(&state.cgroup.join(&record.enclave_id))?;
        remove_file(&paths.claim_file(&record.enclave_id))?;
    }
    state.cgroup_mount.remove_tree(&state.cgroup)?;
    hugepages::unreserve(state.hugepages_reserved)?;
    remove_file(&paths.state_file())?;
    tracing::info!(cpus = %state.cpus, hugepages = state.hugepages_reserved, "pool released");
    Ok(())
}

/// The applied pool, its claims and what is free.
pub fn show(paths: &PoolPaths) -> Result<PoolStatus> {
    let _lock = PoolLock::acquire(paths)?;
    let state_file = paths.state_file();
    let pool: PoolState =
        read_json(&state_file)?.ok_or(PoolError::NotApplied { path: state_file })?;
    let mut claims = Vec::new();
    let mut held = CpuList::new();
    let mut claimed_memory_mib = 0u64;
    for record in load_claims(paths)? {
        let alive = is_same_live_process(record.pid, record.start_time);
        if alive {
            record.cpus.iter().for_each(|c| held.insert(c));
            claimed_memory_mib = claimed_memory_mib.saturating_add(record.memory_mib);
        }
        claims.push(ClaimStatus {
            enclave_id: record.enclave_id,
            pid: record.pid,
            cpus: record.cpus,
            memory_mib: record.memory_mib,
            alive,
        });
    }
    Ok(PoolStatus {
        free_cpus: pool.cpus.difference(&held),
        free_memory_mib: pool.memory_mib.saturating_sub(claimed_memory_mib),
        claimed_memory_mib,
        isolation: pool.isolation.clone(),
        isolation_note: isolation_note(&pool.isolation),
        claims,
        pool,
    })
}
