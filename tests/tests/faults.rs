//! Fault tests through the CLI (issue 7): `kill -9` of the VMM at random points of launch and
//! teardown, many launch/terminate cycles, launches racing for the pool, `terminate --all`
//! racing with enclaves that end by themselves. Afterwards nothing may be left: no run
//! directories (but the records of enclaves that ended by themselves, until `terminate-enclave
//! --all` removes them), claims, enclave cgroups or VMM processes, `nr_hugepages` as before,
//! and `allocator show` exactly as before.
//!
//! `ENCLAVE_CYCLES` (default 25) sets the number of launch/terminate cycles,
//! `ENCLAVE_KILL_ROUNDS` (default 12) the number of kills per phase, `ENCLAVE_FAULT_SEED` the
//! seed of the kill delays (printed, default from the clock).

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tests::launch::str_field;
use tests::{enclave_bin, host, ImageSpec, PoolSpec, Sharing, TestEnv};

fn env_u64(key: &str, default: u64) -> u64 {
    std::env::var(key).map_or(default, |v| {
        v.parse().unwrap_or_else(|e| panic!("{key}={v}: {e}"))
    })
}

/// xorshift64 for the kill delays; the seed is printed so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn from_env() -> Self {
        let clock = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_secs());
        let seed = env_u64("ENCLAVE_FAULT_SEED", clock).max(1);
        println!("ENCLAVE_FAULT_SEED={seed}");
        Self(seed)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// Pids of the VMM processes (`enclave __vmm`) launched from this test's environment: their
/// launch request names an image inside the environment's directory.
fn vmm_pids(env: &TestEnv) -> Vec<u32> {
    let root = env.root().to_string_lossy().into_owned();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                let c = String::from_utf8_lossy(&c);
                // A VMM is `enclave __vmm …`, or forked from `enclave run-enclave …` (then it
                // leads a session of its own, which the CLI never does).
                c.contains(&root) && (c.contains("__vmm") || session_leader(*pid))
            })
        })
        .filter(|pid| host::process_alive(*pid))
        .collect()
}

/// Whether `pid` leads its own session (field 6 of /proc/<pid>/stat, after the command name).
fn session_leader(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(3)?.parse::<u32>().ok())
            == Some(pid)
    })
}

/// Everything that must be back to the start once no enclave runs.
#[derive(Debug, PartialEq)]
struct HostState {
    pool: Value,
    hugepages: u64,
}

fn host_state(env: &TestEnv) -> HostState {
    HostState {
        pool: env.pool_status(),
        hugepages: host::nr_hugepages(),
    }
}

/// Reclaims what killed VMMs left (`describe-enclaves` does), ends the rest, then checks that
/// nothing is left and the pool is exactly as `before`.
#[track_caller]
fn assert_clean(env: &TestEnv, before: &HostState, context: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !vmm_pids(env).is_empty() && Instant::now() < deadline {
        let _ = env.describe();
        env.cli(["terminate-enclave", "--all"]).ok();
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(vmm_pids(env), Vec::<u32>::new(), "{context}: VMMs left");
    // Enclaves that ended by themselves are listed as records until removed; nothing runs.
    let listed = env.describe();
    assert!(
        listed
            .iter()
            .all(|i| ["EXITED", "CRASHED", "VMM_DIED"].contains(&str_field(i, "State"))),
        "{context}: {listed:#?}"
    );
    env.assert_no_leftovers(context);
    env.cli(["terminate-enclave", "--all"]).ok();
    assert_eq!(env.describe(), Vec::<Value>::new(), "{context}");
    assert!(
        env.leftovers().records.is_empty(),
        "{context}: records left"
    );
    assert_eq!(
        &host_state(env),
        before,
        "{context}: pool or hugepages changed"
    );
}

fn spawn_cli(env: &TestEnv, args: &[&str], eif: Option<&Path>) -> Child {
    let mut cmd = env.command(enclave_bin());
    cmd.args(args);
    if let Some(eif) = eif {
        cmd.arg(eif);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run enclave {args:?}: {e}"))
}

/// Waits for `child` (a CLI run); its output, panicking if it hangs or panicked.
#[track_caller]
fn finish(child: Child, context: &str) -> std::process::Output {
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("{context}: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("panicked"),
        "{context}: CLI panicked: {stderr}"
    );
    out
}

const START: &[&str] = &[
    "run-enclave",
    "--cpu-count",
    "1",
    "--memory",
    "64",
    "--eif-path",
];

#[test]
#[cfg_attr(not(enclave_host), ignore = "needs /dev/kvm, root and a cpuset cgroup")]
fn kill9_of_the_vmm_during_launch_and_teardown_leaks_nothing() {
    let env = TestEnv::new().expect("test env");
    env.apply_pool(&PoolSpec::new(128, 1));
    let eif = env.build_eif("spin", &ImageSpec::default());
    let before = host_state(&env);
    let mut rng = Rng::from_env();
    let rounds = env_u64("ENCLAVE_KILL_ROUNDS", 12);
    let (mut killed_launching, mut launched) = (0, 0);
    for round in 0..rounds {
        // Launch: kill the VMM 0-30 ms after run-enclave started (as soon as it exists).
        let delay = Duration::from_millis(rng.below(31));
        let cli = spawn_cli(&env, START, Some(&eif));
        let t0 = Instant::now();
        std::thread::sleep(delay);
        let mut pid = None;
        while pid.is_none() && t0.elapsed() < Duration::from_secs(10) {
            pid = vmm_pids(&env).first().copied();
            if pid.is_none() {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        let pid = pid.unwrap_or_else(|| panic!("round {round}: no VMM appeared"));
        host::kill9(pid);
        let out = finish(cli, "run-enclave");
        if out.status.success() {
            launched += 1;
        } else {
            killed_launching += 1;
            assert_eq!(out.status.code(), Some(1), "round {round}: {out:?}");
        }
        assert!(host::wait_for_exit(pid, Duration::from_secs(10)));
        assert_clean(&env, &before, &format!("launch kill round {round}"));

        // Teardown: kill the VMM 0-10 ms after terminate-enclave started.
        let info = env.start(&eif);
        let id = str_field(&info, "EnclaveID").to_owned();
        let pid = vmm_pids(&env)[0];
        let delay = Duration::from_micros(rng.below(10_000));
        let term = spawn_cli(&env, &["terminate-enclave", "--enclave-id", &id], None);
        std::thread::sleep(delay);
        if host::process_alive(pid) {
            host::kill9(pid);
        }
        let out = finish(term, "terminate-enclave");
        assert!(out.status.success(), "round {round}: terminate: {out:?}");
        assert_clean(&env, &before, &format!("teardown kill round {round}"));
    }
    println!("{rounds} rounds: {killed_launching} launches failed by the kill, {launched} had reported ready first");
}

#[test]
#[cfg_attr(not(enclave_host), ignore = "needs /dev/kvm, root and a cpuset cgroup")]
fn launch_terminate_cycles_leak_nothing() {
    let env = TestEnv::new().expect("test env");
    env.apply_pool(&PoolSpec::new(128, 1));
    let eif = env.build_eif("spin", &ImageSpec::default());
    let before = host_state(&env);
    let cycles = env_u64("ENCLAVE_CYCLES", 25);
    let t0 = Instant::now();
    for cycle in 0..cycles {
        let info = env.start(&eif);
        let id = str_field(&info, "EnclaveID").to_owned();
        env.terminate(&id).ok();
        let left = env.leftovers();
        assert!(
            left.claims.is_empty() && left.cgroups.is_empty(),
            "cycle {cycle}: {left}"
        );
    }
    let elapsed = t0.elapsed();
    println!(
        "{cycles} launch/terminate cycles in {elapsed:?} ({:?} each)",
        elapsed / u32::try_from(cycles.max(1)).unwrap_or(u32::MAX)
    );
    assert_clean(&env, &before, &format!("after {cycles} cycles"));
}

/// Launches `n` enclaves at once; (successful enclave ids, failed stderrs).
fn race(env: &TestEnv, eif: &Path, n: usize) -> (Vec<String>, Vec<String>) {
    let children: Vec<Child> = (0..n).map(|_| spawn_cli(env, START, Some(eif))).collect();
    let (mut ok, mut failed) = (Vec::new(), Vec::new());
    for child in children {
        let out = finish(child, "racing run-enclave");
        if out.status.success() {
            let info: Value = serde_json::from_slice(&out.stdout).expect("JSON");
            ok.push(str_field(&info, "EnclaveID").to_owned());
        } else {
            assert_eq!(out.status.code(), Some(1), "{out:?}");
            failed.push(String::from_utf8_lossy(&out.stderr).into_owned());
        }
    }
    (ok, failed)
}

#[test]
#[cfg_attr(not(enclave_host), ignore = "needs /dev/kvm, root and a cpuset cgroup")]
fn concurrent_launches_get_exactly_what_the_pool_has() {
    let env = TestEnv::new().expect("test env");
    let eif = env.build_eif("spin", &ImageSpec::default());

    // One exclusive CPU: one launch wins, the others are told the pool is exhausted.
    env.apply_pool(&PoolSpec::new(256, 1));
    let before = host_state(&env);
    let (ok, failed) = race(&env, &eif, 6);
    assert_eq!(ok.len(), 1, "winners {ok:?}, failures {failed:#?}");
    for err in &failed {
        assert!(
            err.contains("Requested 1 CPUs") && err.contains("pool has 0 free"),
            "{err}"
        );
    }
    let status = env.pool_status();
    assert_eq!(
        status["claims"].as_array().map(Vec::len),
        Some(1),
        "{status:#}"
    );
    assert_clean(&env, &before, "CPU race");
    env.cli(["allocator", "release"]).ok();

    // A shared CPU and memory for two: two win, the others are told memory is exhausted.
    env.apply_pool(&PoolSpec {
        sharing: Sharing::Shared,
        ..PoolSpec::new(128, 1)
    });
    let before = host_state(&env);
    let (ok, failed) = race(&env, &eif, 6);
    assert_eq!(ok.len(), 2, "winners {ok:?}, failures {failed:#?}");
    for err in &failed {
        assert!(
            err.contains("Requested 64 MiB") && err.contains("pool has 0 MiB free"),
            "{err}"
        );
    }
    assert_clean(&env, &before, "memory race");
}

#[test]
#[cfg_attr(not(enclave_host), ignore = "needs /dev/kvm, root and a cpuset cgroup")]
fn terminate_all_tolerates_enclaves_ending_by_themselves() {
    // Regression: `terminate-enclave --all` listed run directories, then failed with "no
    // enclave … is running" for one whose program had exited in between.
    let env = TestEnv::new().expect("test env");
    env.apply_pool(&PoolSpec {
        sharing: Sharing::Shared,
        ..PoolSpec::new(192, 1)
    });
    let eif = env.build_eif("exit_code", &ImageSpec::default());
    let before = host_state(&env);
    for round in 0..10 {
        for _ in 0..3 {
            // The program exits right after the launch reports it running.
            let _ = env.try_start(&eif);
        }
        let out = env.cli(["terminate-enclave", "--all"]);
        assert_eq!(out.code(), Some(0), "round {round}: {out}");
        assert!(out.json().is_array(), "{out}");
    }
    assert_clean(&env, &before, "terminate --all races");
}
