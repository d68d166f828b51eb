//! The console of a debug-mode enclave that runs without `--attach-console`: `enclave
//! console` streams the program's output (with the recent history) and detaching from it
//! leaves the enclave running.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use tests::expect;
use tests::launch::{str_field, MEMORY_MIB};
use tests::{enclave_bin, ImageSpec, PoolSpec, Sharing, TestEnv};

/// Where a console client writes what it streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sink {
    /// A regular file, polled.
    File,
    /// A pipe the test reads.
    Pipe,
}

/// Starts `enclave <args>` (a command that streams a console on stdout) and returns the first
/// line it streams within `timeout` (empty if none); the client is killed afterwards.
fn first_streamed_line(env: &TestEnv, args: &[&str], sink: Sink, timeout: Duration) -> String {
    let mut cmd = env.command(enclave_bin());
    cmd.args(args).stdin(Stdio::null()).stderr(Stdio::null());
    let log = env.root().join("console.log");
    match sink {
        Sink::File => cmd.stdout(std::fs::File::create(&log).expect("create console log")),
        Sink::Pipe => cmd.stdout(Stdio::piped()),
    };
    let mut child = cmd.spawn().expect("start the console client");
    let (tx, rx) = std::sync::mpsc::channel();
    if let Some(stdout) = child.stdout.take() {
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
    } else {
        std::thread::spawn(move || loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(end) = text.find('\n') {
                let _ = tx.send(text[..=end].to_owned());
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        });
    }
    let line = rx.recv_timeout(timeout).unwrap_or_default();
    let _ = child.kill();
    let _ = child.wait();
    line
}

/// Starts `spin` in debug mode without attaching; returns its id.
fn start_debug_spin(env: &TestEnv) -> String {
    let eif = env.build_eif("spin", &ImageSpec::default());
    let out = env.cli([
        "run-enclave",
        "--cpu-count",
        "1",
        "--memory",
        &MEMORY_MIB.to_string(),
        "--debug-mode",
        "--eif-path",
        eif.to_str().expect("utf-8 path"),
    ]);
    let info = out.ok().json();
    assert_eq!(str_field(&info, "Flags"), "DEBUG_MODE", "{info:#}");
    str_field(&info, "EnclaveID").to_owned()
}

#[test]
#[cfg_attr(not(enclave_host), ignore = "needs /dev/kvm, root and a cpuset cgroup")]
fn debug_enclave_console_streams_its_output() {
    let env = TestEnv::new().expect("test env");
    env.apply_pool(&PoolSpec::new(256, 1));
    let id = start_debug_spin(&env);
    let spin_line = format!("{}\n", expect::SPIN_LINE);
    let args = ["console", "--enclave-id", &id];
    // Attached right away and again later (the console keeps its recent history).
    for _ in 0..2 {
        let line = first_streamed_line(&env, &args, Sink::File, Duration::from_secs(30));
        assert_eq!(line, spin_line);
    }
    // The console clients going away does not end the enclave.
    let listed = env.describe();
    assert_eq!(listed.len(), 1, "{listed:#?}");
    assert_eq!(str_field(&listed[0], "State"), "RUNNING");
    assert_eq!(str_field(&listed[0], "Flags"), "DEBUG_MODE");

    env.terminate(&id).ok();
    env.assert_no_leftovers("after terminate");
}

#[test]
#[cfg_attr(not(enclave_host), ignore = "needs /dev/kvm, root and a cpuset cgroup")]
fn console_streams_live_into_a_pipe() {
    let env = TestEnv::new().expect("test env");
    env.apply_pool(&PoolSpec {
        sharing: Sharing::Shared,
        ..PoolSpec::new(256, 1)
    });
    let spin_line = format!("{}\n", expect::SPIN_LINE);
    let id = start_debug_spin(&env);
    let line = first_streamed_line(
        &env,
        &["console", "--enclave-id", &id],
        Sink::Pipe,
        Duration::from_secs(10),
    );
    assert_eq!(line, spin_line, "enclave console | reader");

    let eif = env.build_eif("spin", &ImageSpec::default());
    let memory = MEMORY_MIB.to_string();
    let eif = eif.to_str().expect("utf-8 path");
    let attach = [
        "run-enclave",
        "--cpu-count",
        "1",
        "--memory",
        &memory,
        "--debug-mode",
        "--attach-console",
        "--eif-path",
        eif,
    ];
    let line = first_streamed_line(&env, &attach, Sink::Pipe, Duration::from_secs(10));
    assert_eq!(line, spin_line, "run-enclave --attach-console | reader");
}
