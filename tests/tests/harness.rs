//! The harness finds (or builds) the `enclave` CLI without deadlocking on the outer cargo.

#[test]
fn enclave_bin_is_found_or_built() {
    let bin = tests::enclave_bin();
    assert!(bin.is_file(), "{} missing", bin.display());
    assert_eq!(bin.file_name().and_then(|n| n.to_str()), Some("enclave"));
}

/// What a test that panicked with a running enclave had created.
struct Created {
    root: std::path::PathBuf,
    cgroup: std::path::PathBuf,
    vmm_pid: u32,
    hugepages_before: u64,
}

#[test]
#[cfg_attr(not(enclave_host), ignore = "needs /dev/kvm, root and a cpuset cgroup")]
fn test_env_cleans_up_after_a_failing_test() {
    use tests::launch::{str_field, u64_field};
    use tests::{host, ImageSpec, PoolSpec, TestEnv};

    let (tx, rx) = std::sync::mpsc::channel();
    let failing = std::thread::spawn(move || {
        let env = TestEnv::new().expect("test env");
        let hugepages_before = host::nr_hugepages();
        env.apply_pool(&PoolSpec::new(64, 1));
        let eif = env.build_eif("spin", &ImageSpec::default());
        let info = env.start(&eif);
        let id = str_field(&info, "EnclaveID");
        tx.send(Created {
            root: env.root().to_owned(),
            cgroup: env.cgroup_dir().expect("cpuset mount"),
            vmm_pid: u32::try_from(u64_field(&info, "ProcessID")).expect("pid"),
            hugepages_before,
        })
        .expect("send");
        assert!(env.cgroup_dir().expect("cpuset mount").join(id).is_dir());
        panic!("failing on purpose with enclave {id} running");
    });
    assert!(failing.join().is_err(), "the thread did not fail");
    let created = rx.recv().expect("the thread got as far as launching");

    // Hold the pool lock while looking at host-global state.
    let _env = TestEnv::new().expect("test env");
    assert!(
        host::wait_for_exit(created.vmm_pid, std::time::Duration::from_secs(10)),
        "VMM {} still running",
        created.vmm_pid
    );
    assert!(
        !created.cgroup.exists(),
        "{} left",
        created.cgroup.display()
    );
    assert!(!created.root.exists(), "{} left", created.root.display());
    assert_eq!(host::nr_hugepages(), created.hugepages_before);
}
