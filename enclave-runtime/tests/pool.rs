//! Integration tests of the carve-out against the real host: cpuset cgroups and 2 MiB
//! hugepages. Every test uses its own run root and cgroup name and cleans up through a drop
//! guard, also when it fails. Tests that touch host-global state (the pool CPUs' exclusive
//! cpuset, `nr_hugepages`) serialize through a static mutex plus a lock file shared with other
//! test binaries. Tests that need root or a cpuset controller are ignored (with the reason) where
//! build.rs finds the host lacking them.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};

use enclave_runtime::pool::{
    self, claim, new_enclave_id, reclaim_dead, validate_enclave_id, Claim, ClaimRequest, CpuList,
    CpuRequest, MemoryBacking, PoolError, PoolPaths, HUGEPAGES_2M_DIR,
};

/// Lock file serializing host-global pool tests across test binaries.
const HOST_LOCK_FILE: &str = "/tmp/enclave-pool-tests.lock";

static HOST_MUTEX: Mutex<()> = Mutex::new(());
static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Holds the in-process mutex and an exclusive flock on [`HOST_LOCK_FILE`].
struct HostLock {
    _file: std::fs::File,
    _guard: MutexGuard<'static, ()>,
}

impl HostLock {
    fn acquire() -> HostLock {
        let guard = HOST_MUTEX
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(HOST_LOCK_FILE)
            .expect("open test lock file");
        // SAFETY: the fd belongs to `file`, alive for the call; flock touches no memory.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(
            rc,
            0,
            "flock {HOST_LOCK_FILE}: {}",
            std::io::Error::last_os_error()
        );
        HostLock {
            _file: file,
            _guard: guard,
        }
    }
}

/// A temporary run root, config and unique cgroup name; releases everything on drop.
struct TestPool {
    dir: PathBuf,
    paths: PoolPaths,
}

impl TestPool {
    fn new(config: &str) -> TestPool {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let dir = std::env::temp_dir().join(format!("enclave-pool-test-{pid}-{n}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        let paths = PoolPaths {
            config: dir.join("allocator.toml"),
            run_root: dir.join("run"),
            cgroup_name: format!("enclave-test-{pid}-{n}"),
        };
        let pool = TestPool { dir, paths };
        pool.write_config(config);
        pool
    }

    fn write_config(&self, config: &str) {
        std::fs::write(&self.paths.config, config).expect("write config");
    }

    fn cgroup_dir(&self) -> Option<PathBuf> {
        pool::find_cpuset_mount()
            .ok()
            .map(|m| m.root.join(&self.paths.cgroup_name))
    }
}

impl Drop for TestPool {
    fn drop(&mut self) {
        if let Err(e) = pool::release_force(&self.paths) {
            eprintln!("cleanup: release_force failed: {e}");
        }
        // Belt and braces: a cgroup left by a half-done apply.
        if let Some(dir) = self.cgroup_dir() {
            if let Ok(entries) = std::fs::read_dir(&dir) {
                for entry in entries.flatten() {
                    if entry.path().is_dir() {
                        let _ = std::fs::remove_dir(entry.path());
                    }
                }
                let _ = std::fs::remove_dir(&dir);
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Why host tests cannot run here, if they cannot.
fn host_unsupported() -> Option<String> {
    // SAFETY: geteuid has no preconditions and touches no memory.
    if unsafe { libc::geteuid() } != 0 {
        return Some("needs root to create cpuset cgroups".into());
    }
    if let Err(e) = pool::find_cpuset_mount() {
        return Some(format!("no cpuset controller: {e}"));
    }
    match pool::online_cpus() {
        Ok(cpus) if cpus.len() >= 2 => None,
        Ok(cpus) => Some(format!("needs at least 2 online CPUs, host has {cpus}")),
        Err(e) => Some(format!("cannot read online CPUs: {e}")),
    }
}

/// Applies the pool; any failure fails the test (the host lock keeps other pools away).
fn apply_pool(test: &str, pool: &TestPool) -> pool::PoolState {
    match pool::apply(&pool.paths) {
        Ok(state) => state,
        Err(e) => panic!("{test}: apply failed: {}", chain(&e)),
    }
}

macro_rules! host_test_prelude {
    ($name:literal) => {{
        // The cfg gate (build.rs) ignores these tests where the host cannot run them; a host
        // that passed the gate but cannot run them is a failure, not a skip.
        if let Some(why) = host_unsupported() {
            panic!("{}: {why}", $name);
        }
        HostLock::acquire()
    }};
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

fn read_trim(path: &Path) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

fn request(id: &str, pid: u32, cpus: CpuRequest, memory_mib: u64) -> ClaimRequest {
    ClaimRequest {
        enclave_id: id.to_owned(),
        pid,
        cpus,
        memory_mib,
        cid: None,
    }
}

const ONE_CPU_NEVER: &str = "memory_mib = 8\ncpu_count = 1\nhugepages = \"never\"\n";

#[test]
fn pool_config_validation_errors() {
    let online = pool::online_cpus().expect("online cpus");
    let max = online.iter().next_back().unwrap_or(0);
    let unknown = max + 1000;
    let cases = [
        (
            "memory_mib = 8\ncpu_pool = \"0-1\"\n".to_owned(),
            "CPU 0 stays with the parent".to_owned(),
        ),
        (
            format!("memory_mib = 8\ncpu_pool = \"1,{unknown}\"\n"),
            format!("CPUs {unknown} that do not exist or are offline"),
        ),
        (
            "memory_mib = 8\ncpu_pool = \"1\"\ncpu_count = 1\n".to_owned(),
            "both cpu_count and cpu_pool".to_owned(),
        ),
        (
            "memory_mib = 8\n".to_owned(),
            "neither cpu_count nor cpu_pool".to_owned(),
        ),
        (
            "memory_mib = 0\ncpu_count = 1\n".to_owned(),
            "memory_mib = 0".to_owned(),
        ),
        (
            format!("memory_mib = 8\ncpu_count = {}\n", online.len()),
            format!("the host has {} online CPUs", online.len()),
        ),
    ];
    for (config, needle) in cases {
        let pool = TestPool::new(&config);
        let err = pool::apply(&pool.paths).expect_err(&config);
        assert!(
            matches!(err, PoolError::ConfigInvalid { .. }),
            "{config}: {err:?}"
        );
        assert!(
            err.to_string().contains(&needle),
            "{err} should mention {needle:?}"
        );
        assert!(!pool.paths.state_file().exists());
    }
    let pool = TestPool::new("memory_mib = 8\ncpu_count = 1\nsharing = \"sometimes\"\n");
    assert!(matches!(
        pool::apply(&pool.paths),
        Err(PoolError::ConfigParse { .. })
    ));
}

#[test]
fn pool_claim_without_pool_says_apply() {
    let pool = TestPool::new(ONE_CPU_NEVER);
    let err = claim(
        &pool.paths,
        &request(
            &new_enclave_id(),
            std::process::id(),
            CpuRequest::Count(1),
            2,
        ),
    )
    .expect_err("no pool applied");
    assert!(matches!(err, PoolError::NotApplied { .. }), "{err:?}");
    assert!(err.to_string().contains("enclave allocator apply"), "{err}");
    assert!(matches!(
        pool::show(&pool.paths),
        Err(PoolError::NotApplied { .. })
    ));
}

#[test]
fn pool_enclave_ids() {
    for bad in [
        "../x",
        "enc-../../../etc",
        "enc-0123456789ABCDEF",
        "enc-0123",
        "",
    ] {
        assert!(
            matches!(
                validate_enclave_id(bad),
                Err(PoolError::BadEnclaveId { .. })
            ),
            "{bad}"
        );
    }
    let id = new_enclave_id();
    validate_enclave_id(&id).expect("fresh id is valid");
    let pool = TestPool::new(ONE_CPU_NEVER);
    let err = claim(
        &pool.paths,
        &request("../x", std::process::id(), CpuRequest::Count(1), 2),
    )
    .expect_err("bad id");
    assert!(matches!(err, PoolError::BadEnclaveId { .. }));
}

#[test]
#[cfg_attr(not(enclave_host), ignore = "needs /dev/kvm, root and a cpuset cgroup")]
fn pool_apply_show_release_round_trip() {
    let _host = host_test_prelude!("pool_apply_show_release_round_trip");
    let pool = TestPool::new(ONE_CPU_NEVER);
    let state = apply_pool("pool_apply_show_release_round_trip", &pool);
    let online = pool::online_cpus().expect("online");
    let highest = online.iter().next_back().expect("a CPU");
    assert_eq!(state.cpus, [highest].into_iter().collect::<CpuList>());
    assert_eq!(state.backing, MemoryBacking::Locked4K);
    assert_eq!(state.hugepages_reserved, 0);
    let cgroup = pool.cgroup_dir().expect("cpuset mount");
    assert_eq!(state.cgroup, cgroup);
    assert!(cgroup.is_dir(), "{} should exist", cgroup.display());
    assert_eq!(read_trim(&cgroup.join("cpuset.cpus")), highest.to_string());
    if state.isolation == "v1-exclusive-cpuset" {
        assert_eq!(read_trim(&cgroup.join("cpuset.cpu_exclusive")), "1");
    }
    assert!(pool.paths.state_file().is_file());

    let status = pool::show(&pool.paths).expect("show");
    assert_eq!(status.free_cpus, state.cpus);
    assert_eq!(status.free_memory_mib, 8);
    assert!(status.claims.is_empty());
    assert!(!status.isolation.is_empty());
    let json = serde_json::to_value(&status).expect("status serializes");
    assert_eq!(json["pool"]["backing"], "locked-4K");
    assert_eq!(json["pool"]["cpus"], highest.to_string());

    // Re-applying releases the previous state first.
    let again = pool::apply(&pool.paths).expect("re-apply");
    assert_eq!(again, state);
    assert!(cgroup.is_dir());

    pool::release(&pool.paths).expect("release");
    assert!(!cgroup.exists(), "{} should be gone", cgroup.display());
    assert!(!pool.paths.state_file().exists());
    pool::release(&pool.paths).expect("releasing nothing is fine");
}

fn hugepage_count(name: &str) -> u64 {
    read_trim(&Path::new(HUGEPAGES_2M_DIR).join(name))
        .parse()
        .expect("hugepage counter")
}

#[test]
#[cfg_attr(
    not(enclave_hugepages),
    ignore = "needs root, a cpuset cgroup and 2 MiB hugepages"
)]
fn pool_hugepages_require() {
    let _host = host_test_prelude!("pool_hugepages_require");
    let pool = TestPool::new("memory_mib = 4\ncpu_count = 1\nhugepages = \"require\"\n");
    let before = hugepage_count("nr_hugepages");
    let state = match pool::apply(&pool.paths) {
        Ok(state) => state,
        Err(e @ PoolError::HugepagesShort { .. }) => {
            assert_eq!(
                hugepage_count("nr_hugepages"),
                before,
                "a short reservation must be undone"
            );
            panic!("the kernel could not give 2 hugepages here: {}", chain(&e));
        }
        Err(e) => panic!("apply: {}", chain(&e)),
    };
    assert_eq!(state.backing, MemoryBacking::HugePages2M);
    assert_eq!(state.hugepages_reserved, 2);
    assert_eq!(hugepage_count("nr_hugepages"), before + 2);

    // Claims on hugepages are rounded up to 2 MiB.
    let c = claim(
        &pool.paths,
        &request(
            &new_enclave_id(),
            std::process::id(),
            CpuRequest::Count(1),
            3,
        ),
    )
    .expect("claim");
    assert_eq!(c.memory_mib(), 4);
    assert_eq!(c.backing(), MemoryBacking::HugePages2M);
    c.release().expect("release claim");

    pool::release(&pool.paths).expect("release");
    assert_eq!(hugepage_count("nr_hugepages"), before);
}

#[test]
#[cfg_attr(not(enclave_host), ignore = "needs /dev/kvm, root and a cpuset cgroup")]
fn pool_claim_cpu_exhaustion_and_sharing() {
    let _host = host_test_prelude!("pool_claim_cpu_exhaustion_and_sharing");
    let pool = TestPool::new(ONE_CPU_NEVER);
    let state = apply_pool("pool_claim_cpu_exhaustion_and_sharing", &pool);
    let cpu = state.cpus.iter().next().expect("one pool CPU");
    let me = std::process::id();

    let a_id = new_enclave_id();
    let a = claim(&pool.paths, &request(&a_id, me, CpuRequest::Count(1), 2)).expect("first claim");
    assert_eq!(a.cpus(), &state.cpus);
    assert!(!a.shared());
    let child = a.cgroup_dir();
    assert_eq!(child, state.cgroup.join(&a_id));
    assert_eq!(read_trim(&child.join("cpuset.cpus")), cpu.to_string());
    assert!(pool.paths.claim_file(&a_id).is_file());
    assert!(matches!(
        claim(&pool.paths, &request(&a_id, me, CpuRequest::Count(1), 2)),
        Err(PoolError::ClaimExists { .. })
    ));

    // A vCPU-like thread is moved into the child cpuset and pinned.
    let attached = {
        let a = a.clone();
        std::thread::spawn(move || {
            // SAFETY: gettid has no preconditions.
            let tid = unsafe { libc::gettid() };
            a.attach_thread(tid).map_err(|e| chain(&e))?;
            let tasks = read_trim(&a.cgroup_dir().join("tasks"));
            // SAFETY: all-zero is a valid empty cpu_set_t.
            let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
            // SAFETY: `set` is a live cpu_set_t of the size passed; the kernel writes into it.
            let rc = unsafe {
                libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set)
            };
            // SAFETY: `set` was filled by sched_getaffinity; CPU_COUNT only reads it.
            let count = unsafe { libc::CPU_COUNT(&set) };
            let cpu_index = usize::try_from(cpu).expect("cpu fits usize");
            // SAFETY: `cpu_index` is far below the 1024-CPU capacity of cpu_set_t.
            let has_cpu = unsafe { libc::CPU_ISSET(cpu_index, &set) };
            Ok::<_, String>((tid, tasks, rc, count, has_cpu))
        })
        .join()
        .expect("thread")
    };
    let (tid, tasks, rc, count, has_cpu) = attached.expect("attach_thread");
    if state.isolation == "v1-exclusive-cpuset" {
        assert!(
            tasks.split_whitespace().any(|t| t == tid.to_string()),
            "tid {tid} not in tasks {tasks:?}"
        );
    }
    assert_eq!((rc, count, has_cpu), (0, 1, true));

    let b_id = new_enclave_id();
    let err = claim(&pool.paths, &request(&b_id, me, CpuRequest::Count(1), 2))
        .expect_err("pool exhausted");
    let text = err.to_string();
    assert!(
        matches!(
            err,
            PoolError::NotEnoughCpus {
                requested: 1,
                free: 0,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        text.contains("Requested 1 CPUs but the pool has 0 free"),
        "{text}"
    );
    assert!(text.contains(&a_id) && text.contains("cpu_count"), "{text}");
    let err = claim(
        &pool.paths,
        &request(&b_id, me, CpuRequest::Ids(vec![cpu]), 2),
    )
    .expect_err("cpu held");
    assert!(matches!(err, PoolError::CpusBusy { .. }), "{err:?}");
    let err = claim(
        &pool.paths,
        &request(&b_id, me, CpuRequest::Ids(vec![0]), 2),
    )
    .expect_err("cpu 0");
    assert!(matches!(err, PoolError::CpusNotInPool { .. }), "{err:?}");
    assert!(matches!(
        pool::release(&pool.paths),
        Err(PoolError::LiveClaims { count: 1, .. })
    ));

    let status = pool::show(&pool.paths).expect("show");
    assert!(status.free_cpus.is_empty());
    assert_eq!(status.claims.len(), 1);
    assert!(status.claims[0].alive);

    a.release().expect("release a");
    assert!(!child.exists());
    let b = claim(&pool.paths, &request(&b_id, me, CpuRequest::Count(1), 2))
        .expect("claim after release");
    b.release().expect("release b");

    // Shared mode: two enclaves on the one pool CPU.
    pool.write_config(
        "memory_mib = 8\ncpu_count = 1\nhugepages = \"never\"\nsharing = \"shared\"\n",
    );
    pool::apply(&pool.paths).expect("re-apply shared");
    let a = claim(&pool.paths, &request(&a_id, me, CpuRequest::Count(1), 2)).expect("shared a");
    let b = claim(&pool.paths, &request(&b_id, me, CpuRequest::Count(1), 2)).expect("shared b");
    assert!(a.shared() && b.shared());
    assert_eq!(a.cpus(), b.cpus());
    // CIDs are handed out under the pool lock: the lowest free from 16, never one a live
    // enclave holds; reserved and 64-bit ones are refused.
    assert_eq!((a.cid(), b.cid()), (pool::FIRST_CID, pool::FIRST_CID + 1));
    let wants = |cid: u64| {
        let mut r = request(&new_enclave_id(), me, CpuRequest::Count(1), 2);
        r.cid = Some(cid);
        claim(&pool.paths, &r)
    };
    let err = wants(pool::FIRST_CID).expect_err("CID held by a");
    assert!(
        matches!(&err, PoolError::CidTaken { cid: 16, holder } if holder == &a_id),
        "{err:?}"
    );
    assert!(err.to_string().contains("--enclave-cid"), "{err}");
    for bad in [0, 3, u64::from(u32::MAX), 1 << 40] {
        let err = wants(bad).expect_err("invalid CID");
        assert!(
            matches!(err, PoolError::CidInvalid(c) if c == bad),
            "{err:?}"
        );
    }
    let c = wants(4).expect("a free CID of its own");
    assert_eq!(c.cid(), 4);
    c.release().expect("release c");
    let err = claim(
        &pool.paths,
        &request(&new_enclave_id(), me, CpuRequest::Count(2), 2),
    )
    .expect_err("more than pool");
    assert!(
        err.to_string()
            .contains("Requested 2 CPUs but the pool has 1 free"),
        "{err}"
    );
    let reopened = Claim::open(&pool.paths, &a_id)
        .expect("open")
        .expect("claim exists");
    assert_eq!(reopened.cpus(), a.cpus());
    a.release().expect("release shared a");
    b.release().expect("release shared b");
}

#[test]
#[cfg_attr(not(enclave_host), ignore = "needs /dev/kvm, root and a cpuset cgroup")]
fn pool_claim_memory_exhaustion() {
    let _host = host_test_prelude!("pool_claim_memory_exhaustion");
    let pool = TestPool::new(
        "memory_mib = 8\ncpu_count = 1\nhugepages = \"never\"\nsharing = \"shared\"\n",
    );
    apply_pool("pool_claim_memory_exhaustion", &pool);
    let me = std::process::id();
    let a_id = new_enclave_id();
    let a = claim(&pool.paths, &request(&a_id, me, CpuRequest::Count(1), 6)).expect("6 of 8 MiB");
    let err = claim(
        &pool.paths,
        &request(&new_enclave_id(), me, CpuRequest::Count(1), 4),
    )
    .expect_err("only 2 MiB left");
    assert!(
        matches!(
            err,
            PoolError::NotEnoughMemory {
                requested: 4,
                free: 2,
                pool: 8,
                ..
            }
        ),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("Requested 4 MiB but the pool has 2 MiB free (pool: 8 MiB"),
        "{text}"
    );
    assert!(
        text.contains(&a_id) && text.contains("memory_mib"),
        "{text}"
    );
    let status = pool::show(&pool.paths).expect("show");
    assert_eq!((status.claimed_memory_mib, status.free_memory_mib), (6, 2));
    let b = claim(
        &pool.paths,
        &request(&new_enclave_id(), me, CpuRequest::Count(1), 2),
    )
    .expect("exactly the rest");
    b.release().expect("release b");
    a.release().expect("release a");
}

#[test]
#[cfg_attr(not(enclave_host), ignore = "needs /dev/kvm, root and a cpuset cgroup")]
fn pool_reclaim_dead_vmm() {
    let _host = host_test_prelude!("pool_reclaim_dead_vmm");
    let pool = TestPool::new(
        "memory_mib = 8\ncpu_count = 1\nhugepages = \"never\"\nsharing = \"shared\"\n",
    );
    let state = apply_pool("pool_reclaim_dead_vmm", &pool);

    // A "VMM" that will die while holding its claim.
    let mut child = Command::new("sleep")
        .arg("60")
        .spawn()
        .expect("spawn sleep");
    let id = new_enclave_id();
    let c = claim(
        &pool.paths,
        &request(&id, child.id(), CpuRequest::Count(1), 2),
    );
    let c = match c {
        Ok(c) => c,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("claim for the child: {}", chain(&e));
        }
    };
    let run_dir = pool.paths.run_dir(&id);
    std::fs::create_dir_all(&run_dir).expect("run dir");
    std::fs::write(run_dir.join("state.json"), "{}").expect("run dir file");
    assert!(c.cgroup_dir().is_dir());

    // A live, honest claim survives.
    let live = claim(
        &pool.paths,
        &request(
            &new_enclave_id(),
            std::process::id(),
            CpuRequest::Count(1),
            2,
        ),
    )
    .expect("claim");
    // A live claim whose recorded start time is wrong (pid reuse) is reclaimed.
    let reused_id = new_enclave_id();
    let reused = claim(
        &pool.paths,
        &request(&reused_id, std::process::id(), CpuRequest::Count(1), 2),
    )
    .expect("claim");
    let mut record = reused.record().clone();
    record.start_time += 1;
    std::fs::write(
        pool.paths.claim_file(&reused_id),
        serde_json::to_string(&record).expect("json"),
    )
    .expect("rewrite");

    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        pool::show(&pool.paths)
            .expect("show")
            .claims
            .iter()
            .filter(|c| !c.alive)
            .count(),
        2
    );

    let mut reclaimed = reclaim_dead(&pool.paths).expect("reclaim");
    reclaimed.sort();
    let mut expected = vec![id.clone(), reused_id.clone()];
    expected.sort();
    assert_eq!(reclaimed, expected);
    assert!(!c.cgroup_dir().exists());
    assert!(!state.cgroup.join(&reused_id).exists());
    assert!(!run_dir.exists());
    assert!(!pool.paths.claim_file(&id).exists());
    assert!(live.cgroup_dir().is_dir());
    assert!(reclaim_dead(&pool.paths).expect("reclaim again").is_empty());
    let status = pool::show(&pool.paths).expect("show");
    assert_eq!(status.claims.len(), 1);
    live.release().expect("release live");

    // A claim for a process that is already gone is refused.
    let mut gone = Command::new("true").spawn().expect("spawn true");
    let gone_pid = gone.id();
    let _ = gone.wait();
    let err = claim(
        &pool.paths,
        &request(&new_enclave_id(), gone_pid, CpuRequest::Count(1), 2),
    )
    .expect_err("dead pid");
    assert!(matches!(err, PoolError::NoSuchProcess { .. }), "{err:?}");
}
