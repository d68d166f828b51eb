//! The guest programs run natively on the host: the reference behaviour for enclave runs.

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use tests::elf::{self, ET_DYN, ET_EXEC};
use tests::expect::{self, HelloRun};
use tests::{guest_program, TestEnv, C_PROGRAMS};

const SIGILL: i32 = 4;
const SIGFPE: i32 = 8;
const SIGSEGV: i32 = 11;

fn program(name: &str) -> std::path::PathBuf {
    guest_program(name).unwrap_or_else(|e| panic!("building {name}: {e}"))
}

/// Runs `path` with exactly `env` (nothing inherited) and `args`.
fn run(path: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(path)
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", path.display()))
}

fn stdout_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn c_programs_are_static_non_pie() {
    for name in C_PROGRAMS {
        let info = elf::read(&program(name)).expect("read ELF");
        assert!(
            info.is_static(),
            "{name} has PT_INTERP: {:?}",
            info.segment_types
        );
        assert_eq!(info.e_type, ET_EXEC, "{name} is not a non-PIE executable");
    }
}

#[test]
fn rust_hello_is_static_pie() {
    let info = elf::read(&program("rust-hello")).expect("read ELF");
    assert!(
        info.is_static(),
        "rust-hello has PT_INTERP: {:?}",
        info.segment_types
    );
    assert_eq!(info.e_type, ET_DYN, "rust-hello is not a static-pie");
    assert!(info.is_static_pie());
}

#[test]
fn unknown_program_is_an_error() {
    assert!(guest_program("no-such-program").is_err());
    assert!(guest_program("../c/hello").is_err());
}

#[test]
fn hello_prints_args_env_file_dir_and_honours_exit_code() {
    let bin = program("hello");
    let env = TestEnv::new().expect("test env");
    let data: Vec<u8> = (0..5000u32)
        .map(|i| u8::try_from(i % 251).unwrap_or(0))
        .collect();
    let file = env.root().join("data.bin");
    std::fs::write(&file, &data).expect("write data");
    let dir = env.root().join("listing");
    std::fs::create_dir(&dir).expect("mkdir");
    for n in ["zeta", "alpha", "mid.txt"] {
        std::fs::write(dir.join(n), n).expect("write entry");
    }
    let file_s = file.to_str().expect("utf-8 path");
    let dir_s = dir.to_str().expect("utf-8 path");
    let argv0 = bin.to_str().expect("utf-8 path");
    // Command's environment is ordered by key.
    let env_vars = [
        ("EXIT_CODE", "7"),
        ("LIST_DIR", dir_s),
        ("READ_FILE", file_s),
    ];
    let out = run(&bin, &["one", "two words"], &env_vars);
    let env_lines: Vec<String> = env_vars.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let env_refs: Vec<&str> = env_lines.iter().map(String::as_str).collect();
    let expected = expect::hello_lines(&HelloRun {
        argv: &[argv0, "one", "two words"],
        env: &env_refs,
        file: Some(&data),
        dir: Some(&["zeta", "alpha", "mid.txt"]),
        exit_code: 7,
    });
    assert_eq!(
        stdout_lines(&out),
        expected,
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!("{}\n", expect::STDERR_LINE)
    );
    assert_eq!(out.status.code(), Some(7));
}

#[test]
fn hello_defaults_to_exit_zero() {
    let bin = program("hello");
    let out = run(&bin, &[], &[]);
    let expected = expect::hello_lines(&HelloRun {
        argv: &[bin.to_str().expect("utf-8 path")],
        ..HelloRun::default()
    });
    assert_eq!(stdout_lines(&out), expected);
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn hello_fails_with_99_on_a_missing_file() {
    let out = run(
        &program("hello"),
        &[],
        &[("READ_FILE", "/nonexistent/file")],
    );
    assert_eq!(out.status.code(), Some(expect::CHECK_FAILED_STATUS));
    assert!(stdout_lines(&out).contains(&"FAIL: open READ_FILE".to_owned()));
}

#[test]
fn fault_programs_die_with_the_expected_signal() {
    for (name, signal) in [
        ("fault_null", SIGSEGV),
        ("fault_ud", SIGILL),
        ("fault_div", SIGFPE),
        ("fault_gp", SIGSEGV),
    ] {
        let out = run(&program(name), &[], &[]);
        assert_eq!(
            out.status.signal(),
            Some(signal),
            "{name}: {:?}",
            out.status
        );
        assert!(
            out.stdout.is_empty(),
            "{name} printed {:?}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

#[test]
fn exit_code_exits_42_silently() {
    let out = run(&program("exit_code"), &[], &[]);
    assert_eq!(out.status.code(), Some(expect::EXIT_CODE_STATUS));
    assert!(out.stdout.is_empty() && out.stderr.is_empty());
}

#[test]
fn spin_prints_then_spins() {
    let mut child = Command::new(program("spin"))
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn spin");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read line");
    assert_eq!(line, format!("{}\n", expect::SPIN_LINE));
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(child.try_wait().expect("try_wait").is_none(), "spin exited");
    child.kill().expect("kill spin");
    let status = child.wait().expect("wait spin");
    assert_eq!(status.signal(), Some(9));
}

#[test]
fn hostile_gets_errors_for_every_wild_call() {
    let out = run(&program("hostile"), &[], &[]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        expect::hostile_stdout()
    );
    assert_eq!(out.status.code(), Some(0));
    // Short writes that stop at the end of valid memory may reach stderr: newlines only.
    assert!(
        out.stderr.iter().all(|b| *b == b'\n'),
        "stderr: {:?}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn rust_hello_prints_args_env_file_and_honours_exit_code() {
    let bin = program("rust-hello");
    let env = TestEnv::new().expect("test env");
    let data = b"The quick brown fox jumps over the lazy dog\n".repeat(100);
    let file = env.root().join("fox.txt");
    std::fs::write(&file, &data).expect("write data");
    let file_s = file.to_str().expect("utf-8 path");
    let env_vars = [("EXIT_CODE", "3"), ("READ_FILE", file_s)];
    let out = run(&bin, &["x"], &env_vars);
    let env_lines: Vec<String> = env_vars.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let env_refs: Vec<&str> = env_lines.iter().map(String::as_str).collect();
    let expected = expect::rust_hello_lines(&HelloRun {
        argv: &[bin.to_str().expect("utf-8 path"), "x"],
        env: &env_refs,
        file: Some(&data),
        dir: None,
        exit_code: 3,
    });
    assert_eq!(
        stdout_lines(&out),
        expected,
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!("{}\n", expect::STDERR_LINE)
    );
    assert_eq!(out.status.code(), Some(3));

    let out = run(&bin, &[], &[]);
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn test_env_exposes_its_paths_and_cleans_up() {
    let root;
    {
        let env = TestEnv::new().expect("test env");
        root = env.root().to_owned();
        env.write_allocator(64, 1, tests::Sharing::Shared)
            .expect("write allocator");
        let text = std::fs::read_to_string(env.allocator_config()).expect("read allocator");
        assert_eq!(
            text,
            "memory_mib = 64\ncpu_count = 1\nsharing = \"shared\"\n"
        );
        let vars = env.envs();
        let get = |k: &str| {
            vars.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(
            get("ENCLAVE_RUN_ROOT"),
            Some(env.run_root().into_os_string())
        );
        assert!(env.run_root().is_dir());
        assert_eq!(
            get("ENCLAVE_ALLOCATOR_CONFIG"),
            Some(env.allocator_config().into_os_string())
        );
        let cg = get("ENCLAVE_CGROUP_NAME").expect("cgroup name");
        assert!(cg
            .to_string_lossy()
            .starts_with(&format!("enclave-test-{}-", std::process::id())));
    }
    assert!(!root.exists(), "{} left behind", root.display());
}
