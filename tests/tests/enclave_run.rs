//! Guest programs run in debug-mode enclaves through the real CLI (`run-enclave --debug-mode
//! --attach-console`): the console carries the program's stdout and stderr, the CLI exits
//! with the program's status, a crash is reported on stderr, nothing is left behind.

use tests::expect::{self, HelloRun};
use tests::{ImageSpec, PoolSpec, TestEnv};

/// Every console line (stdout and stderr merged) of a `hello`/`rust-hello` run: `expected`
/// with the stderr line just before the last ("exiting with N"), where the program writes it.
fn with_stderr_line(mut expected: Vec<String>) -> Vec<String> {
    let at = expected.len().saturating_sub(1);
    expected.insert(at, expect::STDERR_LINE.to_owned());
    expected
}

/// A `motd` for the image: a few lines and every byte value, so that the sum means something.
fn motd_bytes() -> Vec<u8> {
    let mut data = b"Welcome to the enclave.\nNothing here is writable.\n".to_vec();
    data.extend((0..=255u8).rev());
    data
}

/// Builds `program` with the inputs every `hello` run gets, runs it in debug mode with
/// `EXIT_CODE=exit_code` and checks the console, the exit status and the clean-up.
fn run_hello(env: &TestEnv, program: &str, exit_code: i32, list_dir: bool) {
    let motd = env.root().join("motd");
    let data = motd_bytes();
    std::fs::write(&motd, &data).expect("write motd");
    let exit_env = format!("EXIT_CODE={exit_code}");
    let mut env_vars = vec!["READ_FILE=/etc/motd", "GREETING=hi there"];
    if list_dir {
        env_vars.push("LIST_DIR=/");
    }
    env_vars.push(&exit_env);
    let mut spec = ImageSpec::default()
        .file(&motd, "/etc/motd")
        .arg("first")
        .arg("two words")
        .arg("--dash");
    for e in &env_vars {
        spec = spec.env(e);
    }
    let eif = env.build_eif(program, &spec);

    let out = env.run_debug(&eif);
    let run = HelloRun {
        argv: &["/init", "first", "two words", "--dash"],
        env: &env_vars,
        file: Some(&data),
        // The image root: /init, /etc from --file, and the enclave kernel's /dev.
        dir: list_dir.then_some(&["init", "etc", "dev"][..]),
        exit_code,
    };
    let expected = if program == "hello" {
        expect::hello_lines(&run)
    } else {
        expect::rust_hello_lines(&run)
    };
    assert_eq!(out.stdout_lines(), with_stderr_line(expected), "{out}");
    assert_eq!(out.code(), Some(exit_code), "{out}");
    assert!(out.stderr.contains("\"Flags\": \"DEBUG_MODE\""), "{out}");
    assert!(
        out.stderr
            .contains(&format!("enclave program exited with status {exit_code}")),
        "{out}"
    );
    env.assert_no_leftovers(&format!("{program} with EXIT_CODE={exit_code}"));
}

#[test]
#[cfg_attr(not(enclave_host), ignore = "needs /dev/kvm, root and a cpuset cgroup")]
fn c_hello_prints_its_inputs_and_exits_with_exit_code() {
    let env = TestEnv::new().expect("test env");
    env.apply_pool(&PoolSpec::new(256, 1));
    run_hello(&env, "hello", 0, true);
    run_hello(&env, "hello", 7, true);
}

#[test]
#[cfg_attr(not(enclave_host), ignore = "needs /dev/kvm, root and a cpuset cgroup")]
fn rust_static_pie_hello_prints_its_inputs_and_exits_with_exit_code() {
    let env = TestEnv::new().expect("test env");
    env.apply_pool(&PoolSpec::new(256, 1));
    run_hello(&env, "rust-hello", 0, false);
    run_hello(&env, "rust-hello", 7, false);
}

/// Whether `text` contains `needle` not followed by another hex digit.
fn contains_number(text: &str, needle: &str) -> bool {
    text.match_indices(needle).any(|(at, _)| {
        !text[at + needle.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_hexdigit())
    })
}

#[test]
#[cfg_attr(not(enclave_host), ignore = "needs /dev/kvm, root and a cpuset cgroup")]
fn faulting_programs_end_with_139_and_a_crash_report() {
    let env = TestEnv::new().expect("test env");
    env.apply_pool(&PoolSpec::new(256, 1));
    for (program, needles) in [
        ("fault_null", &["page fault", "address 0x0"][..]),
        ("fault_ud", &["invalid opcode"][..]),
        ("fault_div", &["divide error"][..]),
        ("fault_gp", &["general protection"][..]),
    ] {
        let eif = env.build_eif(program, &ImageSpec::default());
        let out = env.run_debug(&eif);
        assert_eq!(out.code(), Some(139), "{program}: {out}");
        assert!(
            out.stderr.contains("enclave program crashed"),
            "{program}: {out}"
        );
        for needle in needles {
            assert!(
                contains_number(&out.stderr, needle),
                "{program}: no {needle:?} in the crash report: {out}"
            );
        }
        assert!(out.stdout.is_empty(), "{program} printed: {out}");
        assert!(!out.stderr.contains("panicked"), "{program}: {out}");
        env.assert_no_leftovers(program);
    }
}

#[test]
#[cfg_attr(not(enclave_host), ignore = "needs /dev/kvm, root and a cpuset cgroup")]
fn exit_code_status_becomes_the_cli_exit_code() {
    let env = TestEnv::new().expect("test env");
    env.apply_pool(&PoolSpec::new(256, 1));
    let eif = env.build_eif("exit_code", &ImageSpec::default());
    let out = env.run_debug(&eif);
    assert_eq!(out.code(), Some(expect::EXIT_CODE_STATUS), "{out}");
    assert!(out.stdout.is_empty(), "{out}");
    assert!(
        out.stderr.contains("enclave program exited with status 42"),
        "{out}"
    );
    env.assert_no_leftovers("exit_code");
}

#[test]
#[cfg_attr(not(enclave_host), ignore = "needs /dev/kvm, root and a cpuset cgroup")]
fn hostile_program_gets_errors_for_every_wild_call() {
    let env = TestEnv::new().expect("test env");
    env.apply_pool(&PoolSpec::new(256, 1));
    let eif = env.build_eif("hostile", &ImageSpec::default());
    let out = env.run_debug(&eif);
    // The console merges stdout and stderr; hostile's short writes to stderr are newlines
    // only, so without empty lines the console is exactly its native stdout.
    let lines: Vec<&str> = out
        .stdout_lines()
        .into_iter()
        .filter(|l| !l.is_empty())
        .collect();
    let expected = expect::hostile_stdout();
    let expected: Vec<&str> = expected.lines().collect();
    assert_eq!(lines, expected, "{out}");
    assert_eq!(out.code(), Some(0), "{out}");
    assert!(!out.stderr.contains("panicked"), "{out}");
    env.assert_no_leftovers("hostile");
}

#[test]
fn attach_console_without_debug_mode_is_refused() {
    let env = TestEnv::new().expect("test env");
    let eif = env.root().join("never-read.eif");
    let out = env.cli([
        "run-enclave",
        "--cpu-count",
        "1",
        "--memory",
        "64",
        "--attach-console",
        "--eif-path",
        eif.to_str().expect("utf-8 path"),
    ]);
    // clap's usage error.
    assert_eq!(out.code(), Some(2), "{out}");
    assert!(out.stderr.contains("--debug-mode"), "{out}");
    assert!(out.stdout.is_empty(), "{out}");
    assert!(env.leftovers().is_empty(), "{}", env.leftovers());
}
