//! Records of enclaves that ended by themselves (issue 9): `describe-enclaves` keeps listing
//! them (`EXITED` with the exit status, `CRASHED` with the crash report) and `console` prints a
//! debug-mode enclave's kept output after it ended, until `terminate-enclave` removes the
//! record; every resource (VMM process, claim, cgroup, sockets) is still gone at the end.
//! Also: `AttestedPCRs` shows the PCRs `/dev/nsm` really attests (zeros in debug mode).

use std::time::{Duration, Instant};

use serde_json::Value;
use tests::launch::{str_field, u64_field};
use tests::{host, ImageSpec, PoolSpec, TestEnv};

const ZERO_PCR: &str = "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000";

/// Waits until `describe-enclaves` lists `id` as ended; returns its entry.
#[track_caller]
fn ended(env: &TestEnv, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let listed = env.describe();
        if let Some(e) = listed.iter().find(|e| e["EnclaveID"] == id) {
            if !e["Outcome"].is_null() && e["State"] != "RUNNING" {
                return e.clone();
            }
        }
        assert!(Instant::now() < deadline, "{id} never ended: {listed:#?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The VMM is gone and only the record is left of the enclave.
#[track_caller]
fn only_the_record_is_left(env: &TestEnv, info: &Value, id: &str) {
    let pid = u32::try_from(u64_field(info, "ProcessID")).expect("pid");
    assert!(
        host::wait_for_exit(pid, Duration::from_secs(10)),
        "VMM {pid} still runs"
    );
    env.assert_no_leftovers("after the enclave ended");
    let left = env.leftovers();
    assert_eq!(left.records, [id.to_owned()], "{left}");
    let status = env.pool_status();
    assert_eq!(status["claims"], Value::Array(vec![]), "{status:#}");
}

#[test]
#[cfg_attr(not(enclave_host), ignore = "needs /dev/kvm, root and a cpuset cgroup")]
fn exited_debug_enclave_keeps_its_status_and_console_until_removed() {
    let env = TestEnv::new().expect("test env");
    env.apply_pool(&PoolSpec::new(256, 1));
    let spec = ImageSpec::default()
        .arg("kept")
        .env("GREETING=from the record")
        .env("EXIT_CODE=5");
    let eif = env.build_eif("hello", &spec);
    let run = env.run_debug(&eif);
    assert_eq!(run.code(), Some(5), "{run}");
    assert!(run.stdout.contains("from the record"), "{run}");

    let listed = env.describe();
    assert_eq!(listed.len(), 1, "{listed:#?}");
    let info = &listed[0];
    let id = str_field(info, "EnclaveID").to_owned();
    assert_eq!(str_field(info, "State"), "EXITED", "{info:#}");
    assert_eq!(info["Outcome"]["kind"], "Exited", "{info:#}");
    assert_eq!(info["Outcome"]["status"], 5, "{info:#}");
    // Debug mode: the image's PCRs are shown, but zeros are what it attests.
    assert_ne!(
        str_field(&info["Measurements"], "PCR0"),
        ZERO_PCR,
        "{info:#}"
    );
    assert_eq!(
        str_field(&info["AttestedPCRs"], "PCR0"),
        ZERO_PCR,
        "{info:#}"
    );
    assert!(
        str_field(&info["AttestedPCRs"], "Mode").starts_with("debug"),
        "{info:#}"
    );
    only_the_record_is_left(&env, info, &id);

    // The console after the end: exactly what the attached run streamed.
    let console = env.cli(["console", "--enclave-id", &id]);
    assert_eq!(console.ok().stdout, run.stdout, "{console}");

    // terminate-enclave removes the record; a second time there is nothing.
    let removed = env.terminate(&id).ok().json();
    assert_eq!(removed["RecordRemoved"], true, "{removed:#}");
    assert_eq!(removed["State"], "EXITED", "{removed:#}");
    assert_eq!(env.describe(), Vec::<Value>::new());
    assert!(env.leftovers().records.is_empty(), "{}", env.leftovers());
    env.terminate(&id).fails_with(1, &["no enclave", &id]);
    env.cli(["console", "--enclave-id", &id])
        .fails_with(1, &["no enclave", &id]);
}

#[test]
#[cfg_attr(not(enclave_host), ignore = "needs /dev/kvm, root and a cpuset cgroup")]
fn crashed_production_enclave_is_listed_with_its_crash_report() {
    let env = TestEnv::new().expect("test env");
    env.apply_pool(&PoolSpec::new(256, 1));
    let eif = env.build_eif("fault_null", &ImageSpec::default());
    let launch = env.try_start(&eif);
    // The program may crash before or after the launch is reported: both are fine here.
    let id = if launch.code() == Some(0) {
        let info = launch.json();
        // Production mode: what it attests is the image's PCR0.
        assert_eq!(
            info["AttestedPCRs"]["PCR0"], info["Measurements"]["PCR0"],
            "{info:#}"
        );
        str_field(&info, "EnclaveID").to_owned()
    } else {
        let listed = env.describe();
        assert_eq!(listed.len(), 1, "{launch}: {listed:#?}");
        str_field(&listed[0], "EnclaveID").to_owned()
    };
    let info = ended(&env, &id);
    assert_eq!(str_field(&info, "State"), "CRASHED", "{info:#}");
    let crash = &info["Outcome"];
    assert_eq!(crash["kind"], "Crashed", "{info:#}");
    assert_eq!(crash["vector"], 14, "page fault expected: {info:#}");
    assert_eq!(crash["fault_address"], 0, "{info:#}");
    assert!(u64_field(crash, "rip") >= 0x40_0000, "{info:#}");
    assert_eq!(str_field(&info, "Flags"), "NONE", "{info:#}");
    only_the_record_is_left(&env, &info, &id);

    // Production mode has no console, not even after the end.
    env.cli(["console", "--enclave-id", &id])
        .fails_with(1, &["no console log", "--debug-mode"]);

    // `terminate-enclave --all` removes records too.
    let all = env.cli(["terminate-enclave", "--all"]).ok().json();
    assert_eq!(all[0]["EnclaveID"], id.as_str(), "{all:#}");
    assert_eq!(all[0]["RecordRemoved"], true, "{all:#}");
    assert_eq!(env.describe(), Vec::<Value>::new());
    env.assert_no_leftovers("after terminate --all");
    assert!(env.leftovers().records.is_empty(), "{}", env.leftovers());
}

#[test]
#[cfg_attr(not(enclave_host), ignore = "needs /dev/kvm, root and a cpuset cgroup")]
fn records_beyond_the_cap_go_oldest_first() {
    use enclave_runtime::records::MAX_RECORDS;
    let env = TestEnv::new().expect("test env");
    env.apply_pool(&PoolSpec::new(256, 1));
    let eif = env.build_eif("exit_code", &ImageSpec::default());
    let mut ids = Vec::new();
    for _ in 0..MAX_RECORDS + 2 {
        let out = env.try_start(&eif);
        // exit_code may end before its launch is reported; either way it leaves a record.
        let id = if out.code() == Some(0) {
            str_field(&out.json(), "EnclaveID").to_owned()
        } else {
            let listed = env.describe();
            let newest = listed
                .iter()
                .map(|e| str_field(e, "EnclaveID").to_owned())
                .find(|id| !ids.contains(id));
            newest.unwrap_or_else(|| panic!("{out}: {listed:#?}"))
        };
        ended(&env, &id);
        ids.push(id);
    }
    let listed = env.describe();
    let listed_ids: Vec<&str> = listed.iter().map(|e| str_field(e, "EnclaveID")).collect();
    assert_eq!(listed.len(), MAX_RECORDS, "{listed:#?}");
    for gone in &ids[..2] {
        assert!(
            !listed_ids.contains(&gone.as_str()),
            "{gone} kept: {listed_ids:?}"
        );
    }
    for kept in &ids[2..] {
        assert!(
            listed_ids.contains(&kept.as_str()),
            "{kept} pruned: {listed_ids:?}"
        );
    }
    assert!(
        listed.iter().all(|e| e["Outcome"]["status"] == 42),
        "{listed:#?}"
    );
    // The VMM that leaves a record prunes the oldest beyond the cap itself, after it told its
    // launcher the outcome: no describe in between here.
    for _ in 0..2 {
        let out = env.run_debug(&eif);
        assert_eq!(out.code(), Some(42), "{out}");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let kept = enclave_runtime::records::list(&env.run_root()).len();
        if kept == MAX_RECORDS {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{kept} records kept, not {MAX_RECORDS}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    env.assert_no_leftovers("with a full set of records");
    let all = env.cli(["terminate-enclave", "--all"]).ok().json();
    assert_eq!(all.as_array().map(Vec::len), Some(MAX_RECORDS), "{all:#}");
    assert!(env.leftovers().records.is_empty(), "{}", env.leftovers());
}

#[test]
#[cfg_attr(not(enclave_host), ignore = "needs /dev/kvm, root and a cpuset cgroup")]
fn the_sdk_reads_the_outcome_of_an_enclave_that_already_ended() {
    let env = TestEnv::new().expect("test env");
    env.apply_pool(&PoolSpec::new(256, 1));
    let eif = env.build_eif("exit_code", &ImageSpec::default());
    let enclaves = env.envs().into_iter().fold(
        sdk::Enclaves::with_binary(tests::enclave_bin()),
        |e, (k, v)| e.env(k, v),
    );
    let handle = enclaves
        .launch(&sdk::LaunchOptions::new(&eif).memory_mib(tests::launch::MEMORY_MIB))
        .expect("launch");
    let info = ended(&env, handle.id());
    let pid = u32::try_from(u64_field(&info, "ProcessID")).expect("pid");
    assert!(
        host::wait_for_exit(pid, Duration::from_secs(10)),
        "VMM {pid} runs"
    );
    // The VMM and its control socket are gone: wait and describe answer from the record.
    assert_eq!(
        handle.wait().expect("wait after the end"),
        sdk::Outcome::Exited { status: 42 }
    );
    assert_eq!(handle.describe().expect("describe").state, "EXITED");
    // terminate removes the record.
    handle.terminate().expect("terminate");
    assert_eq!(env.describe(), Vec::<Value>::new());
    assert!(env.leftovers().records.is_empty(), "{}", env.leftovers());
}
