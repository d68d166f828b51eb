//! The carve-out seen through the CLI: an exhausted pool refuses launches with the numbers,
//! a shared pool runs two enclaves on one CPU, hugepage-backed pools back guest memory with
//! hugepages and give `nr_hugepages` back on release.

use serde_json::Value;
use tests::host;
use tests::launch::{str_field, u64_field, MEMORY_MIB};
use tests::{Hugepages, ImageSpec, PoolSpec, Sharing, TestEnv};

#[test]
#[cfg_attr(not(enclave_host), ignore = "needs /dev/kvm, root and a cpuset cgroup")]
fn exclusive_pool_refuses_a_second_enclave_on_its_only_cpu() {
    let env = TestEnv::new().expect("test env");
    env.apply_pool(&PoolSpec::new(256, 1));
    let eif = env.build_eif("spin", &ImageSpec::default());
    let first = env.start(&eif);
    let first_id = str_field(&first, "EnclaveID").to_owned();
    assert_eq!(str_field(&first, "CpuSharing"), "exclusive", "{first:#}");

    let second = env.try_start(&eif);
    second.fails_with(1, &["Requested 1 CPUs", "pool has 0 free", &first_id]);
    // Only the first enclave holds anything.
    let left = env.leftovers();
    assert_eq!(left.run_dirs, std::slice::from_ref(&first_id), "{left}");
    assert_eq!(left.claims, [format!("{first_id}.json")], "{left}");
    assert_eq!(env.describe().len(), 1);

    // More CPUs than the pool has at all.
    let too_many = env.cli([
        "run-enclave",
        "--cpu-count",
        "2",
        "--memory",
        "64",
        "--eif-path",
        eif.to_str().expect("utf-8 path"),
    ]);
    too_many.fails_with(1, &["Requested 2 CPUs", "pool has 0 free"]);

    let all = env.cli(["terminate-enclave", "--all"]).ok().json();
    assert_eq!(all[0]["EnclaveID"], first["EnclaveID"], "{all:#}");
    assert_eq!(all[0]["Terminated"], Value::Bool(true), "{all:#}");
    env.assert_no_leftovers("after terminate --all");
}

#[test]
#[cfg_attr(not(enclave_host), ignore = "needs /dev/kvm, root and a cpuset cgroup")]
fn pool_memory_is_not_overcommitted() {
    let env = TestEnv::new().expect("test env");
    env.apply_pool(&PoolSpec::new(64, 1));
    let eif = env.build_eif("spin", &ImageSpec::default());
    let out = env.cli([
        "run-enclave",
        "--cpu-count",
        "1",
        "--memory",
        "128",
        "--eif-path",
        eif.to_str().expect("utf-8 path"),
    ]);
    out.fails_with(1, &["Requested 128 MiB", "pool has 64 MiB free"]);
    env.assert_no_leftovers("after the refused launch");
    // The whole pool still fits one enclave.
    let info = env.start(&eif);
    assert_eq!(u64_field(&info, "MemoryMiB"), MEMORY_MIB);
    env.terminate(str_field(&info, "EnclaveID")).ok();
    env.assert_no_leftovers("after terminate");
}

#[test]
#[cfg_attr(not(enclave_host), ignore = "needs /dev/kvm, root and a cpuset cgroup")]
fn shared_pool_runs_two_enclaves_on_one_cpu() {
    let env = TestEnv::new().expect("test env");
    let pool = env.apply_pool(&PoolSpec {
        sharing: Sharing::Shared,
        ..PoolSpec::new(256, 1)
    });
    assert_eq!(str_field(&pool, "sharing"), "shared", "{pool:#}");
    let eif = env.build_eif("spin", &ImageSpec::default());
    let a = env.start(&eif);
    let b = env.start(&eif);
    assert_ne!(a["EnclaveID"], b["EnclaveID"]);
    assert_ne!(
        a["EnclaveCID"], b["EnclaveCID"],
        "two enclaves with one CID"
    );
    assert_eq!(a["CPUIDs"], b["CPUIDs"], "{a:#}\n{b:#}");

    // CIDs stay unique even when CPUs are shared; 0-3 are never an enclave's.
    let eif_arg = eif.to_str().expect("utf-8 path");
    let taken = a["EnclaveCID"].to_string();
    let run_with = |extra: &[&str]| {
        let mut args = vec!["run-enclave", "--memory", "64", "--eif-path", eif_arg];
        args.extend_from_slice(extra);
        env.cli(args)
    };
    run_with(&["--cpu-count", "1", "--enclave-cid", &taken])
        .fails_with(1, &[&format!("CID {taken}"), "already used"]);
    run_with(&["--cpu-count", "1", "--enclave-cid", "3"]).fails_with(1, &["CID 3", "reserved"]);
    // A CPU outside the pool.
    run_with(&["--cpu-ids", "0"]).fails_with(1, &["not in the pool"]);
    // The pool cannot go while enclaves hold it.
    env.cli(["allocator", "release"])
        .fails_with(1, &["running enclave", "--force"]);

    let listed = env.describe();
    assert_eq!(listed.len(), 2, "{listed:#?}");
    for info in &listed {
        assert_eq!(str_field(info, "CpuSharing"), "shared", "{info:#}");
        assert_eq!(str_field(info, "State"), "RUNNING", "{info:#}");
        let pid = u32::try_from(u64_field(info, "ProcessID")).expect("pid");
        assert!(host::process_alive(pid), "VMM {pid} is not running");
    }
    let status = env.pool_status();
    assert_eq!(
        u64_field(&status, "claimed_memory_mib"),
        2 * MEMORY_MIB,
        "{status:#}"
    );

    let all = env.cli(["terminate-enclave", "--all"]).ok().json();
    assert_eq!(all.as_array().map(Vec::len), Some(2), "{all:#}");
    assert_eq!(env.describe(), Vec::<Value>::new());
    env.assert_no_leftovers("after terminate --all");
}

#[test]
#[cfg_attr(not(enclave_host), ignore = "needs /dev/kvm, root and a cpuset cgroup")]
fn hugepage_pool_backs_enclaves_and_returns_its_pages() {
    let env = TestEnv::new().expect("test env");
    let before = host::nr_hugepages();
    let pool = env.apply_pool(&PoolSpec {
        hugepages: Some(Hugepages::Require),
        ..PoolSpec::new(64, 1)
    });
    assert_eq!(str_field(&pool, "backing"), "hugepages-2M", "{pool:#}");
    let reserved = u64_field(&pool, "hugepages_reserved");
    assert_eq!(host::nr_hugepages(), before + reserved, "{pool:#}");

    let eif = env.build_eif("exit_code", &ImageSpec::default());
    let out = env.run_debug(&eif);
    assert_eq!(out.code(), Some(42), "{out}");
    assert!(
        out.stderr.contains("\"MemoryBacking\": \"hugepages-2M\""),
        "{out}"
    );
    env.assert_no_leftovers("after the hugepage-backed run");

    env.cli(["allocator", "release"]).ok();
    assert_eq!(
        host::nr_hugepages(),
        before,
        "release did not give the pages back"
    );

    // With hugepages = "never", guest memory is locked 4 KiB pages and nr_hugepages stays.
    let pool = env.apply_pool(&PoolSpec {
        hugepages: Some(Hugepages::Never),
        ..PoolSpec::new(64, 1)
    });
    assert_eq!(str_field(&pool, "backing"), "locked-4K", "{pool:#}");
    assert_eq!(host::nr_hugepages(), before);
    let out = env.run_debug(&eif);
    assert_eq!(out.code(), Some(42), "{out}");
    assert!(
        out.stderr.contains("\"MemoryBacking\": \"locked-4K\""),
        "{out}"
    );
    env.cli(["allocator", "release"]).ok();
    assert_eq!(host::nr_hugepages(), before);
}
