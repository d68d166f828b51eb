//! Hostile guests against the real VMM through the CLI (issue 7): a seeded system-call fuzzer
//! (`tests/guest/c/sysfuzz.c`) and one run per abuse of `tests/guest/c/abuse.c` (descriptor,
//! memory and thread exhaustion, spinning threads, self-modifying code, stack overflow, vsock
//! floods in both directions, pointers into the system pages and the doorbell).
//!
//! For every run: the VMM reports how the enclave ended (program exit, crash report or
//! termination), never panics or logs an error, its peak resident memory stays within the
//! guest memory plus a fixed slack over an idle enclave's, `terminate-enclave` works, and
//! nothing is left behind.
//!
//! `ENCLAVE_FUZZ_SEEDS` (comma-separated, default `1,2,3`) and `ENCLAVE_FUZZ_ITERATIONS`
//! (default 20000) choose the fuzzer's runs.

use std::io::Write;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::Duration;

use tests::watch::Watched;
use tests::{ImageSpec, PoolSpec, TestEnv};

/// Guest memory of every hostile enclave.
const MEMORY_MIB: u64 = 64;
/// What the VMM may use beyond an idle enclave's peak and the guest memory itself.
const SLACK_KIB: u64 = 32 * 1024;
/// How long one hostile run may take before the test gives up on it.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

fn env_list(key: &str, default: &[u64]) -> Vec<u64> {
    std::env::var(key).map_or_else(
        |_| default.to_vec(),
        |v| {
            v.split(',')
                .map(|s| {
                    s.trim()
                        .parse()
                        .unwrap_or_else(|e| panic!("{key}={v}: {e}"))
                })
                .collect()
        },
    )
}

/// A pool for one enclave of [`MEMORY_MIB`].
fn hostile_env() -> TestEnv {
    let env = TestEnv::new().expect("test env");
    env.apply_pool(&PoolSpec::new(128, 1));
    env
}

/// Runs `abuse <mode>` and checks the VMM survived; `at_done` runs at "<mode> done".
fn abuse(env: &TestEnv, mode: &str, at_done: impl FnOnce(&str)) -> Watched {
    let eif = env.build_eif("abuse", &ImageSpec::default().arg(mode));
    let marker = format!("{mode} done");
    let w = env.watch_debug(&eif, MEMORY_MIB, &marker, RUN_TIMEOUT, at_done);
    w.assert_vmm_survived(mode);
    env.assert_no_leftovers(mode);
    w
}

/// The peak of an enclave that only made a few hundred failing system calls.
fn idle_peak_kib(env: &TestEnv) -> u64 {
    let w = abuse(env, "doorbell_args", |_| {});
    assert!(w.reached, "{w}");
    w.vmm_peak_kib
        .unwrap_or_else(|| panic!("no VmHWM of the VMM\n{w}"))
}

#[track_caller]
fn assert_bounded(w: &Watched, idle_kib: u64, context: &str) {
    let peak = w
        .vmm_peak_kib
        .unwrap_or_else(|| panic!("{context}: no VmHWM\n{w}"));
    let bound = idle_kib + MEMORY_MIB * 1024 + SLACK_KIB;
    assert!(
        peak <= bound,
        "{context}: VMM peak {peak} KiB over {bound} KiB (idle {idle_kib} KiB)\n{w}"
    );
}

/// The `key=value` number on the console line that starts with `prefix`.
#[track_caller]
fn field(w: &Watched, prefix: &str, key: &str) -> i64 {
    let line = w
        .console
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line {prefix:?}\n{w}"));
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
}

#[test]
#[cfg_attr(not(enclave_host), ignore = "needs /dev/kvm, root and a cpuset cgroup")]
fn syscall_fuzzer_never_breaks_the_vmm() {
    let env = hostile_env();
    let idle = idle_peak_kib(&env);
    let iterations = env_list("ENCLAVE_FUZZ_ITERATIONS", &[20_000])[0];
    for seed in env_list("ENCLAVE_FUZZ_SEEDS", &[1, 2, 3]) {
        let spec = ImageSpec::default()
            .arg(&seed.to_string())
            .arg(&iterations.to_string());
        let eif = env.build_eif("sysfuzz", &spec);
        let w = env.watch_debug(&eif, MEMORY_MIB, "sysfuzz done", RUN_TIMEOUT, |_| {});
        let context = format!("sysfuzz seed {seed}");
        assert!(w.reached, "{context}: the fuzzer did not finish\n{w}");
        assert!(
            w.console
                .contains(&format!("sysfuzz seed={seed} iterations={iterations}")),
            "{w}"
        );
        let calls = field(&w, "sysfuzz done", "calls");
        assert!(
            calls > i64::try_from(iterations * 9 / 10).expect("iterations"),
            "{w}"
        );
        w.assert_vmm_survived(&context);
        assert_eq!(w.crash_report(), None, "{w}");
        assert_bounded(&w, idle, &context);
        env.assert_no_leftovers(&context);
    }
}

#[test]
#[cfg_attr(not(enclave_host), ignore = "needs /dev/kvm, root and a cpuset cgroup")]
fn exhausting_descriptors_memory_and_threads_hits_limits() {
    let env = hostile_env();
    let idle = idle_peak_kib(&env);

    let w = abuse(&env, "fds", |_| {});
    for kind in ["open", "socket", "eventfd", "pipe", "epoll"] {
        let prefix = format!("fds {kind} ");
        assert!(field(&w, &prefix, "n") >= 1000, "{kind}: {w}");
        assert_eq!(
            field(&w, &prefix, "errno"),
            i64::from(libc::EMFILE),
            "{kind}: {w}"
        );
    }
    assert!(w.console.contains("fds reopen ok"), "{w}");
    assert_bounded(&w, idle, "fds");

    let w = abuse(&env, "memory", |_| {});
    let first = field(&w, "memory mmap", "n");
    // Most of the 64 MiB: everything but the image, the stack and the system area.
    assert!(first >= 40, "{w}");
    assert_eq!(
        field(&w, "memory mmap", "errno"),
        i64::from(libc::ENOMEM),
        "{w}"
    );
    assert_eq!(
        field(&w, "memory again", "n"),
        first,
        "freed memory came back\n{w}"
    );
    assert!(w.console.contains("memory huge refused"), "{w}");
    assert_eq!(
        field(&w, "memory brk", "errno"),
        i64::from(libc::ENOMEM),
        "{w}"
    );
    assert_bounded(&w, idle, "memory");

    let w = abuse(&env, "threads", |_| {});
    // The enclave kernel's MAX_THREADS (512), main included; pthread_create says EAGAIN.
    assert_eq!(field(&w, "threads created", "created"), 511, "{w}");
    assert_eq!(
        field(&w, "threads created", "errno"),
        i64::from(libc::EAGAIN),
        "{w}"
    );
    assert_bounded(&w, idle, "threads");
}

/// Runs `abuse <mode>`, which must end with a crash report containing every needle.
fn crashes(env: &TestEnv, mode: &str, needles: &[&str]) {
    let w = abuse(env, mode, |_| {});
    assert_eq!(w.status.code(), Some(139), "{mode}: {w}");
    let report = w
        .crash_report()
        .unwrap_or_else(|| panic!("{mode}: no crash report\n{w}"));
    for n in needles {
        assert!(report.contains(n), "{mode}: {n:?} not in {report:?}");
    }
    assert!(!w.console.contains("survived"), "{mode}: {w}");
}

#[test]
#[cfg_attr(not(enclave_host), ignore = "needs /dev/kvm, root and a cpuset cgroup")]
fn runaway_and_self_modifying_programs_end_cleanly() {
    let env = hostile_env();

    // Four vCPU-hungry threads on one CPU: terminate still works.
    let eif = env.build_eif("abuse", &ImageSpec::default().arg("spin_threads"));
    let w = env.watch_debug(&eif, MEMORY_MIB, "spinning threads", RUN_TIMEOUT, |_| {
        std::thread::sleep(Duration::from_millis(300));
    });
    assert!(w.reached, "{w}");
    assert!(w.stderr.contains("enclave terminated"), "{w}");
    w.assert_vmm_survived("spin_threads");
    env.assert_no_leftovers("spin_threads");

    // Page tables map the ELF text read-only and everything else non-executable
    // (layout.rs); error codes: 0x7 = user write to a present page, 0x15 = user
    // instruction fetch from a present page.
    crashes(&env, "smc_text", &["page fault", "error code 0x7"]);
    crashes(&env, "smc_heap", &["page fault", "error code 0x15"]);
    // The stack guard (the unmapped page below the 64 MiB guest's 8 MiB stack, 0x37ff000):
    // 0x6 = user write to a page that is not present, at the guard, before the stack reaches
    // the mmap area or the heap.
    crashes(
        &env,
        "stack_overflow",
        &["page fault", "address 0x37ff", "error code 0x6"],
    );
    crashes(&env, "gdt_write", &["page fault", "address 0x1000,"]);
    crashes(&env, "doorbell_read", &["read from the doorbell"]);
    crashes(&env, "doorbell_write", &["unbacked address 0x1000000040"]);
    // A vector written by user code is reported like a real exception.
    crashes(&env, "fake_exception", &["page fault (vector 14)"]);

    let w = abuse(&env, "doorbell_args", |_| {});
    assert!(w.console.contains("doorbell args ok"), "{w}");
}

/// Opens `count` parent connections to the enclave's `port` through `vsock.sock` and writes
/// `bytes` after the handshake to each, never reading; plus as many garbage handshakes.
fn flood_enclave(run_dir: &Path, port: u32, count: usize, bytes: usize) -> Vec<UnixStream> {
    let data = vec![b'y'; bytes];
    let mut kept = Vec::new();
    for i in 0..count {
        let Ok(mut s) = UnixStream::connect(run_dir.join("vsock.sock")) else {
            continue;
        };
        let _ = s.set_nonblocking(true);
        let line = if i % 2 == 0 {
            format!("CONNECT {port}\n")
        } else {
            "CONNECT 99999999999999999999 garbage\n".to_owned()
        };
        let _ = s.write_all(line.as_bytes());
        let _ = s.write(&data);
        kept.push(s);
    }
    kept
}

#[test]
#[cfg_attr(not(enclave_host), ignore = "needs /dev/kvm, root and a cpuset cgroup")]
fn vsock_floods_keep_the_vmm_bounded() {
    let env = hostile_env();
    let idle = idle_peak_kib(&env);
    // A parent-wide listener on port 7001 that accepts and never reads.
    let listener = UnixListener::bind(env.run_root().join("vsock.sock_7001")).expect("bind");
    let acceptor = std::thread::spawn(move || {
        let mut held = Vec::new();
        listener.set_nonblocking(true).expect("nonblocking");
        let until = std::time::Instant::now() + RUN_TIMEOUT;
        while std::time::Instant::now() < until && held.len() < 64 {
            match listener.accept() {
                Ok((s, _)) => held.push(s),
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        held.len()
    });
    let run_root = env.run_root();
    let mut flooded = 0;
    let w = abuse(&env, "vsock_flood", |id| {
        let kept = flood_enclave(&run_root.join(id), 7000, 128, 256 << 10);
        flooded = kept.len();
        std::thread::sleep(Duration::from_millis(500));
    });
    assert!(w.console.contains("vsock listening 7000"), "{w}");
    assert_eq!(field(&w, "vsock flood", "conns"), 16, "{w}");
    assert!(field(&w, "vsock flood", "bytes") > 0, "{w}");
    assert_eq!(
        field(&w, "vsock flood", "errno"),
        i64::from(libc::EAGAIN),
        "{w}"
    );
    assert!(flooded > 0, "no connection reached vsock.sock");
    assert_bounded(&w, idle, "vsock_flood");
    // The listener saw the 16 connections; it ends when its 64 slots are not filled in time,
    // so drop it by leaving the test (the thread holds only sockets of the dead enclave).
    drop(acceptor);
}
