//! Enclave programs of `samples/enclave-apps` through the real CLI and the SDK: the enclave has
//! no channel besides vsock (isolation probe), a multi-threaded std program serves vsock, and
//! enclave programs reach parent listeners (per enclave and parent-wide, bound before launch).

mod vsock_support;

use std::io::{BufRead, BufReader, Read, Write};
use std::time::{Duration, Instant};

use sdk::LaunchOptions;
use tests::{PoolSpec, TestEnv};
use vsock_support::{build_eif, enclaves, launch, MEMORY_MIB};

/// The errno line the isolation probe printed for `what`.
fn errno_of<'a>(console: &'a str, what: &str) -> &'a str {
    console
        .lines()
        .find_map(|l| l.strip_prefix(what)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no line for {what} in\n{console}"))
}

#[test]
#[cfg_attr(not(enclave_host), ignore = "needs /dev/kvm, root and a cpuset cgroup")]
fn no_channel_but_vsock() {
    let env = TestEnv::new().expect("test env");
    env.apply_pool(&PoolSpec::new(MEMORY_MIB, 1));
    let eif = build_eif(&env, "vsock-isolation", &[]);
    let out = env.run_debug(&eif);
    out.ok();
    let console = &out.stdout;
    assert!(console.contains("isolation probe done"), "{out}");
    for what in [
        "tcp",
        "udp",
        "tcp6",
        "unix",
        "netlink",
        "std-tcp-connect",
        "std-udp-bind",
    ] {
        assert_eq!(errno_of(console, what), "EAFNOSUPPORT 97", "{what}");
    }
    for what in ["create-file", "write-existing", "append-existing"] {
        assert_eq!(errno_of(console, what), "EROFS 30", "{what}");
    }
    // Only the parent (CID 3) is reachable.
    assert_eq!(errno_of(console, "vsock-other-cid"), "ECONNRESET 104");
}

#[test]
#[cfg_attr(not(enclave_host), ignore = "needs /dev/kvm, root and a cpuset cgroup")]
fn mkdir_and_unlink_are_erofs() {
    let env = TestEnv::new().expect("test env");
    env.apply_pool(&PoolSpec::new(MEMORY_MIB, 1));
    let eif = build_eif(&env, "vsock-isolation", &[]);
    let out = env.run_debug(&eif);
    for what in ["mkdir", "remove"] {
        assert_eq!(errno_of(&out.stdout, what), "EROFS 30", "{what}");
    }
}

#[test]
#[cfg_attr(not(enclave_host), ignore = "needs /dev/kvm, root and a cpuset cgroup")]
fn threaded_program_serves_vsock() {
    let r = launch("vsock-threads", &[]);
    let conns = 8;
    let handles: Vec<_> = (0..conns)
        .map(|c| {
            let s = r.connect();
            std::thread::spawn(move || {
                let mut out = s.try_clone().expect("clone");
                let mut lines = BufReader::new(s).lines();
                for i in 0..50 {
                    writeln!(out, "conn {c} line {i} abc").expect("write");
                    let got = lines.next().expect("answer").expect("read");
                    assert_eq!(got, format!("CONN {c} LINE {i} ABC"));
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("a connection failed");
    }
    // The workers count a connection once it has ended.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = r.connect();
        let mut out = s.try_clone().expect("clone");
        writeln!(out, "STATS").expect("write");
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).expect("read");
        assert!(line.ends_with("sum 500000500000\n"), "{line}");
        let served: u64 = line
            .split_whitespace()
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{line}"));
        if served >= conns {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {served} connections counted"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let console = r.console_until(|c| c.contains("listening"), Duration::from_secs(5));
    assert!(
        console.contains("4 threads summed 1..=1000000 = 500000500000"),
        "{console}"
    );
}

/// Asks the vsock-bench program to connect to the parent on `port` and send `bytes`; returns
/// what the parent listener `accept` received.
fn push(
    r: &vsock_support::Running,
    accept: impl FnOnce() -> std::os::unix::net::UnixStream + Send + 'static,
    port: u32,
    bytes: usize,
) -> Vec<u8> {
    let receiver = std::thread::spawn(move || {
        let mut s = accept();
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let mut got = Vec::new();
        s.read_to_end(&mut got).expect("read from the enclave");
        got
    });
    let s = r.connect();
    let mut out = s.try_clone().expect("clone");
    writeln!(out, "PUSH {port} {bytes} 65536").expect("write");
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).expect("read");
    assert_eq!(line, "DONE\n");
    receiver.join().expect("receiver")
}

#[test]
#[cfg_attr(not(enclave_host), ignore = "needs /dev/kvm, root and a cpuset cgroup")]
fn enclave_connects_to_parent_listeners() {
    let env = TestEnv::new().expect("test env");
    env.apply_pool(&PoolSpec::new(MEMORY_MIB, 1));
    let eif = build_eif(&env, "vsock-bench", &[]);
    let sdk = enclaves(&env);
    // Parent-wide listeners exist before the enclave does.
    let wide = sdk.listen(6000).expect("parent-wide listen");
    let shadowed = sdk.listen(6002).expect("parent-wide listen");
    let enclave = sdk
        .launch(&LaunchOptions::new(&eif).memory_mib(MEMORY_MIB).debug(true))
        .expect("launch");
    let r = vsock_support::Running {
        enclave,
        enclaves: sdk,
        env,
    };
    let got = push(&r, move || wide.accept().expect("accept"), 6000, 3 << 20);
    assert_eq!(got.len(), 3 << 20);
    assert!(got.iter().all(|b| *b == 0x5a), "content");

    let own = r.enclave.listen(6001).expect("per-enclave listen");
    assert!(own.path().starts_with(r.enclave.run_dir()));
    let got = push(&r, move || own.accept().expect("accept"), 6001, 1);
    assert_eq!(got, [0x5a]);

    // A per-enclave listener wins over a parent-wide one on the same port.
    let own = r.enclave.listen(6002).expect("per-enclave listen");
    let got = push(&r, move || own.accept().expect("accept"), 6002, 4096);
    assert_eq!(got.len(), 4096);
    shadowed
        .as_unix()
        .set_nonblocking(true)
        .expect("nonblocking");
    assert!(
        shadowed.accept().is_err(),
        "the parent-wide listener got it"
    );

    // Nobody listens on 6003: the enclave's connect is refused, the program reports it.
    let s = r.connect();
    let mut out = s.try_clone().expect("clone");
    writeln!(out, "PUSH 6003 1 1").expect("write");
    let mut rest = String::new();
    BufReader::new(s).read_to_string(&mut rest).expect("read");
    assert!(rest.is_empty(), "{rest}");
    let console = r.console_until(|c| c.contains("reset"), Duration::from_secs(5));
    assert!(console.contains("Connection reset"), "{console}");
}
