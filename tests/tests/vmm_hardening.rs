//! The VMM process is locked down (THREAT_MODEL.md): every thread runs under a seccomp
//! filter with no capabilities, the process is not dumpable, holds only the descriptors it
//! opened itself and sits in its enclave's cpuset; a system call outside its filter kills it,
//! and the next command reclaims everything it held.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use tests::host;
use tests::launch::{str_field, u64_field};
use tests::{ImageSpec, PoolSpec, TestEnv};

/// A test env whose VMMs run with the production filters whatever the caller's environment.
fn env_with_filters() -> TestEnv {
    let mut env = TestEnv::new().expect("test env");
    env.set_env("ENCLAVE_SECCOMP", "kill");
    env
}

fn status_field(status: &str, key: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .map(|v| v.trim().to_owned())
        .unwrap_or_else(|| panic!("no {key} in {status}"))
}

/// `(tid, comm, status)` of every thread of `pid`.
fn threads(pid: u32) -> Vec<(String, String, String)> {
    let dir = format!("/proc/{pid}/task");
    let mut out = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{dir}: {e}")) {
        let tid = e
            .expect("task entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        let base = format!("{dir}/{tid}");
        let (Ok(comm), Ok(status)) = (
            std::fs::read_to_string(format!("{base}/comm")),
            std::fs::read_to_string(format!("{base}/status")),
        ) else {
            continue; // the thread ended meanwhile
        };
        out.push((tid, comm.trim().to_owned(), status));
    }
    out
}

/// Makes `cmd` run without any capability (uid 0 stays).
fn without_capabilities(cmd: &mut Command) -> &mut Command {
    // SAFETY: the closure runs between fork and exec and makes only raw system calls (prctl,
    // capset) on memory of its own stack.
    unsafe {
        cmd.pre_exec(|| {
            for cap in 0..64 {
                if libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 {
                    break;
                }
            }
            let header = [0x2008_0522u32, 0];
            let data = [0u32; 6];
            if libc::syscall(libc::SYS_capset, header.as_ptr(), data.as_ptr()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

/// Whether a process that holds no capability (same uid 0) may read `/proc/<pid>/environ` of
/// another capability-less process: the kernel allows it only when the target is dumpable.
fn readable_without_capabilities(pid: u32) -> bool {
    without_capabilities(
        Command::new("cat")
            .arg(format!("/proc/{pid}/environ"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null()),
    )
    .status()
    .expect("run cat")
    .success()
}

fn fd_links(pid: u32) -> Vec<(u32, String, u64)> {
    let dir = format!("/proc/{pid}/fd");
    let mut out = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{dir}: {e}")) {
        let e = e.expect("fd entry");
        let fd: u32 = e.file_name().to_string_lossy().parse().expect("fd number");
        let Ok(target) = std::fs::read_link(e.path()) else {
            continue;
        };
        let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).unwrap_or_default();
        let flags = info
            .lines()
            .find_map(|l| l.strip_prefix("flags:"))
            .and_then(|f| u64::from_str_radix(f.trim(), 8).ok())
            .unwrap_or(0);
        out.push((fd, target.to_string_lossy().into_owned(), flags));
    }
    out
}

/// Opens `path` as a descriptor that children inherit (no `FD_CLOEXEC`); closed on drop.
fn leaked_fd(path: &Path) -> std::fs::File {
    let f = std::fs::File::create(path).expect("marker file");
    // SAFETY: clears FD_CLOEXEC on a descriptor `f` owns.
    let rc = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_SETFD, 0) };
    assert_eq!(rc, 0);
    f
}

#[test]
#[cfg_attr(not(enclave_host), ignore = "needs /dev/kvm, root and cpusets")]
fn every_vmm_thread_is_filtered_without_capabilities_and_holds_only_its_own_fds() {
    let env = env_with_filters();
    env.apply_pool(&PoolSpec::new(256, 1));
    let eif = env.build_eif("spin", &ImageSpec::default());
    let marker = env.root().join("leaked-into-the-vmm");
    let leaked = leaked_fd(&marker);
    let info = env.start(&eif);
    drop(leaked);
    assert_eq!(str_field(&info, "Seccomp"), "kill", "{info:#}");
    let id = str_field(&info, "EnclaveID").to_owned();
    let pid = u32::try_from(u64_field(&info, "ProcessID")).expect("pid");

    // The cgroup mover has done its work (and ended) once the vCPU thread sits in the
    // enclave's cpuset; the host-side threads stay in the parent's.
    let in_enclave_cpuset = |tid: &str| {
        let text =
            std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/cgroup")).unwrap_or_default();
        text.lines()
            .any(|l| l.contains("cpuset") && l.ends_with(&id))
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    let threads = loop {
        let threads = threads(pid);
        let vcpu_moved = threads
            .iter()
            .any(|(tid, comm, _)| comm == "vcpu0" && in_enclave_cpuset(tid));
        let mover_ended = threads.iter().all(|(_, comm, _)| comm != "cgroup-mover");
        if vcpu_moved && mover_ended {
            break threads;
        }
        assert!(
            Instant::now() < deadline,
            "the vCPU thread of VMM {pid} never moved into its cpuset: {threads:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    for (tid, comm, _) in &threads {
        if comm == "control" || comm == "vsock-host" {
            assert!(
                !in_enclave_cpuset(tid),
                "{comm} ({tid}) in the enclave's cpuset"
            );
        }
    }

    let names: Vec<&str> = threads.iter().map(|(_, c, _)| c.as_str()).collect();
    for want in ["control", "vsock-host", "vcpu0"] {
        assert!(names.contains(&want), "no {want} thread in {names:?}");
    }
    for (tid, comm, status) in &threads {
        assert_eq!(
            status_field(status, "Seccomp:"),
            "2",
            "thread {tid} ({comm})"
        );
        assert_eq!(
            status_field(status, "NoNewPrivs:"),
            "1",
            "thread {tid} ({comm})"
        );
        for caps in ["CapEff:", "CapPrm:", "CapBnd:"] {
            assert_eq!(
                status_field(status, caps),
                "0000000000000000",
                "{caps} of thread {tid} ({comm})"
            );
        }
    }

    // Not dumpable: a capability-less process of the same uid is refused what it may read of
    // a dumpable one (this test process).
    let mut dumpable = without_capabilities(Command::new("sleep").arg("30"))
        .spawn()
        .expect("sleep");
    let control_case = readable_without_capabilities(dumpable.id());
    let _ = dumpable.kill();
    let _ = dumpable.wait();
    assert!(
        control_case,
        "a dumpable capability-less process is readable"
    );
    assert!(
        !readable_without_capabilities(pid),
        "the VMM {pid} is dumpable"
    );

    let expected = |t: &str| {
        t == "/dev/null"
            || t.ends_with("/vmm.log")
            || t == "/dev/kvm"
            || t == "anon_inode:kvm-vm"
            || t.starts_with("anon_inode:kvm-vcpu:")
            // The vsock fast path's kick (KVM_IOEVENTFD).
            || t == "anon_inode:[eventfd]"
            || t.starts_with("socket:[")
    };
    let fds = fd_links(pid);
    for (fd, target, flags) in &fds {
        assert!(
            expected(target),
            "unexpected fd {fd} -> {target} in {fds:?}"
        );
        assert!(
            !target.contains("leaked-into-the-vmm"),
            "inherited fd {fd} kept"
        );
        if *fd >= 3 {
            assert!(
                flags & 0o2_000_000 != 0,
                "fd {fd} -> {target} lacks O_CLOEXEC"
            );
        }
    }
    let kvm = |t: &str| fds.iter().filter(|(_, l, _)| l.starts_with(t)).count();
    assert_eq!(kvm("/dev/kvm"), 1, "{fds:?}");
    assert_eq!(kvm("anon_inode:kvm-vm"), 1, "{fds:?}");
    assert_eq!(kvm("anon_inode:kvm-vcpu:"), 1, "{fds:?}");

    env.terminate(&id).ok();
    env.assert_no_leftovers("after terminate");
}

#[test]
#[cfg_attr(not(enclave_host), ignore = "needs /dev/kvm, root and cpusets")]
fn a_forbidden_system_call_kills_the_vmm_and_everything_is_reclaimed() {
    let env = env_with_filters();
    let pool = env.apply_pool(&PoolSpec::new(256, 1));
    let eif = env.build_eif("spin", &ImageSpec::default());
    let info = env.start(&eif);
    let id = str_field(&info, "EnclaveID").to_owned();
    let pid = u32::try_from(u64_field(&info, "ProcessID")).expect("pid");
    let run_dir = env.run_root().join(&id);
    assert_eq!(
        env.pool_status()["claims"][0]["enclave_id"],
        info["EnclaveID"]
    );

    // The hidden control request makes the control thread call socket(AF_INET, ...).
    let mut conn = UnixStream::connect(run_dir.join("control.sock")).expect("control socket");
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    conn.write_all(b"{\"op\":\"__seccomp_selftest\"}\n")
        .expect("request");
    let mut reply = String::new();
    let _ = conn.read_to_string(&mut reply);
    assert_eq!(reply, "", "the VMM answered instead of dying: {reply}");
    assert!(
        host::wait_for_exit(pid, Duration::from_secs(10)),
        "VMM {pid} survived a forbidden system call"
    );

    // Killed: it cleaned nothing up itself.
    let before = env.leftovers();
    assert_eq!(before.claims, [format!("{id}.json")], "{before}");
    // The next command reclaims it: claim, cgroup and sockets gone; listed as a record of a
    // dead VMM (pointing at the kernel's seccomp log) until removed.
    let listed = env.describe();
    assert_eq!(listed.len(), 1, "{listed:#?}");
    assert_eq!(str_field(&listed[0], "State"), "VMM_DIED", "{listed:#?}");
    assert!(
        str_field(&listed[0], "EndReason").contains("seccomp"),
        "{listed:#?}"
    );
    assert!(
        !run_dir.join("control.sock").exists(),
        "control socket {} left",
        run_dir.display()
    );
    let status = env.pool_status();
    assert_eq!(status["claims"], Value::Array(vec![]), "{status:#}");
    assert_eq!(status["free_cpus"], pool["cpus"], "{status:#}");
    assert_eq!(status["free_memory_mib"], pool["memory_mib"], "{status:#}");
    env.assert_no_leftovers("after the seccomp kill");
}
