//! Production-mode enclaves through the real CLI: what run-enclave and describe-enclaves
//! report, the console refused, terminate (also of a VMM that does not answer) and recovery
//! after the VMM is killed give every CPU, MiB, run directory and cgroup back.

use std::time::Duration;

use serde_json::Value;
use tests::host;
use tests::launch::{is_enclave_id, str_field, u64_field, MEMORY_MIB};
use tests::{ImageSpec, PoolSpec, TestEnv};

/// The pool CPUs of an applied pool's JSON (`"cpus": "1"` or a cpulist like `"1,3"`).
fn pool_cpus(pool: &Value) -> Vec<u64> {
    str_field(pool, "cpus")
        .split(',')
        .map(|c| {
            c.parse()
                .unwrap_or_else(|_| panic!("pool cpus {pool:#} is not a plain list"))
        })
        .collect()
}

fn cpu_ids(info: &Value) -> Vec<u64> {
    info["CPUIDs"]
        .as_array()
        .unwrap_or_else(|| panic!("no CPUIDs in {info:#}"))
        .iter()
        .map(|c| c.as_u64().expect("CPU id"))
        .collect()
}

fn wait_until_dead(pid: u32) {
    assert!(
        host::wait_for_exit(pid, Duration::from_secs(10)),
        "process {pid} still alive"
    );
}

/// The pool is back to what `apply` gave: no claims, every CPU and MiB free.
fn assert_pool_all_free(env: &TestEnv, pool: &Value) {
    let status = env.pool_status();
    assert_eq!(status["claims"], Value::Array(vec![]), "{status:#}");
    assert_eq!(status["free_cpus"], pool["cpus"], "{status:#}");
    assert_eq!(status["free_memory_mib"], pool["memory_mib"], "{status:#}");
    assert_eq!(u64_field(&status, "claimed_memory_mib"), 0, "{status:#}");
}

/// A production enclave running the `spin` program on a fresh one-CPU pool.
struct Spinning {
    env: TestEnv,
    pool: Value,
    eif: std::path::PathBuf,
    info: Value,
    id: String,
    pid: u32,
}

fn spinning() -> Spinning {
    let env = TestEnv::new().expect("test env");
    let pool = env.apply_pool(&PoolSpec::new(256, 1));
    let eif = env.build_eif("spin", &ImageSpec::default());
    let info = env.start(&eif);
    let id = str_field(&info, "EnclaveID").to_owned();
    let pid = u32::try_from(u64_field(&info, "ProcessID")).expect("pid");
    Spinning {
        env,
        pool,
        eif,
        info,
        id,
        pid,
    }
}

#[test]
#[cfg_attr(not(enclave_host), ignore = "needs /dev/kvm, root and a cpuset cgroup")]
fn production_enclave_is_described_and_has_no_console() {
    let env = TestEnv::new().expect("test env");
    let pool = env.apply_pool(&PoolSpec::new(256, 1));
    let eif = env.build_eif("spin", &ImageSpec::default());
    let info = env.start(&eif);

    let id = str_field(&info, "EnclaveID").to_owned();
    assert!(is_enclave_id(&id), "{info:#}");
    assert_eq!(str_field(&info, "Flags"), "NONE", "{info:#}");
    assert_eq!(str_field(&info, "State"), "RUNNING", "{info:#}");
    assert_eq!(u64_field(&info, "NumberOfCPUs"), 1, "{info:#}");
    assert_eq!(cpu_ids(&info), pool_cpus(&pool), "{info:#}");
    assert_eq!(u64_field(&info, "MemoryMiB"), MEMORY_MIB, "{info:#}");
    assert!(u64_field(&info, "EnclaveCID") >= 16, "{info:#}");
    let pid = u32::try_from(u64_field(&info, "ProcessID")).expect("pid");
    assert!(host::process_alive(pid), "VMM {pid} is not running");
    assert!(env.run_root().join(&id).is_dir());

    let console = env.cli_within(["console", "--enclave-id", &id], Duration::from_secs(30));
    console.fails_with(1, &["production", "debug"]);
    assert!(console.stdout.is_empty(), "{console}");

    let listed = env.describe();
    assert_eq!(listed.len(), 1, "{listed:#?}");
    assert_eq!(str_field(&listed[0], "EnclaveID"), id);
    assert_eq!(str_field(&listed[0], "State"), "RUNNING");
    assert_eq!(str_field(&listed[0], "Flags"), "NONE");
    assert_eq!(listed[0]["CPUIDs"], info["CPUIDs"]);
    assert_eq!(listed[0]["EnclaveCID"], info["EnclaveCID"]);
    // Still running after all that: spin never ends by itself.
    assert!(host::process_alive(pid), "VMM {pid} ended");
}

#[test]
#[cfg_attr(not(enclave_host), ignore = "needs /dev/kvm, root and a cpuset cgroup")]
fn terminate_gives_everything_back() {
    let Spinning {
        env,
        pool,
        info,
        id,
        pid,
        ..
    } = spinning();
    let cgroup = env.cgroup_dir().expect("cpuset mount").join(&id);
    assert!(cgroup.is_dir(), "no enclave cgroup {}", cgroup.display());
    assert_eq!(
        env.pool_status()["claims"][0]["enclave_id"],
        info["EnclaveID"]
    );

    let out = env.terminate(&id);
    let reply = out.ok().json();
    assert_eq!(str_field(&reply, "EnclaveID"), id, "{out}");
    assert_eq!(reply["Terminated"], Value::Bool(true), "{out}");

    assert_eq!(env.describe(), Vec::<Value>::new());
    assert!(!env.run_root().join(&id).exists(), "run dir of {id} left");
    assert!(!cgroup.exists(), "cgroup {} left", cgroup.display());
    assert_pool_all_free(&env, &pool);
    env.assert_no_leftovers("after terminate");
    wait_until_dead(pid);
}

#[test]
#[cfg_attr(not(enclave_host), ignore = "needs /dev/kvm, root and a cpuset cgroup")]
fn killed_vmm_is_reclaimed_by_the_next_command() {
    let Spinning {
        env,
        pool,
        eif,
        info,
        id,
        pid,
    } = spinning();

    host::kill9(pid);
    wait_until_dead(pid);
    // Nothing has cleaned up yet: a SIGKILLed VMM cannot.
    let before = env.leftovers();
    assert_eq!(before.claims, [format!("{id}.json")], "{before}");
    assert_eq!(before.cgroups, std::slice::from_ref(&id), "{before}");

    // The next command reclaims everything; only a record of the dead VMM's enclave stays.
    let listed = env.describe();
    assert_eq!(listed.len(), 1, "{listed:#?}");
    assert_eq!(str_field(&listed[0], "State"), "VMM_DIED", "{listed:#?}");
    assert!(
        str_field(&listed[0], "EndReason").contains(&pid.to_string()),
        "{listed:#?}"
    );
    let left = env.leftovers();
    assert!(left.is_empty(), "describe-enclaves did not reclaim: {left}");
    assert_eq!(left.records, std::slice::from_ref(&id), "{left}");
    assert_pool_all_free(&env, &pool);
    env.terminate(&id).ok();
    assert!(env.leftovers().records.is_empty(), "{}", env.leftovers());

    // The same CPU is usable again.
    let again = env.start(&eif);
    assert_ne!(again["EnclaveID"], info["EnclaveID"]);
    assert_eq!(cpu_ids(&again), cpu_ids(&info), "{again:#}");
    let out = env.terminate(str_field(&again, "EnclaveID"));
    out.ok();
    env.assert_no_leftovers("after the second enclave");
}

#[test]
#[cfg_attr(not(enclave_host), ignore = "needs /dev/kvm, root and a cpuset cgroup")]
fn terminate_kills_a_vmm_that_does_not_answer() {
    let Spinning {
        env, pool, id, pid, ..
    } = spinning();
    let raw = i32::try_from(pid).expect("pid fits");
    // SAFETY: kill has no memory-safety preconditions; `raw` is the VMM this test started.
    assert_eq!(unsafe { libc::kill(raw, libc::SIGSTOP) }, 0);

    // Its control socket accepts but nobody answers: terminate kills the process its claim
    // names (pid and start time) and reclaims everything.
    let out = env.terminate(&id);
    out.ok();
    wait_until_dead(pid);
    env.assert_no_leftovers("after terminating a stopped VMM");
    assert_pool_all_free(&env, &pool);
}

#[test]
fn nothing_running_describes_and_terminates_as_empty() {
    let env = TestEnv::new().expect("test env");
    assert_eq!(env.describe(), Vec::<Value>::new());
    let all = env.cli(["terminate-enclave", "--all"]);
    assert_eq!(all.ok().json(), Value::Array(vec![]), "{all}");

    let unknown = env.terminate("enc-0123456789abcdef");
    unknown.fails_with(1, &["enc-0123456789abcdef"]);
    let bogus = env.terminate("not-an-id");
    bogus.fails_with(1, &["not-an-id"]);
    let console = env.cli(["console", "--enclave-id", "enc-0123456789abcdef"]);
    console.fails_with(1, &["enc-0123456789abcdef"]);
    assert!(env.leftovers().is_empty(), "{}", env.leftovers());
}
