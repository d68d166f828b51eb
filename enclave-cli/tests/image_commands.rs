//! `enclave build-enclave`, `describe-eif` and `allocator`, run as the real binary, and its
//! output into a pipe whose reader went away.
//!
//! The image tests compile a tiny C program with `gcc -static` (and a dynamic one with plain
//! `gcc`), which `scripts/setup.sh` installs; without it they fail with that advice.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_enclave");

const HELLO_C: &str = r#"#include <stdio.h>
int main(int argc, char **argv) { printf("hello %d\n", argc); return 0; }
"#;

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("enclave-cli-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn enclave(args: &[&str]) -> Output {
    enclave_env(args, &[])
}

fn enclave_env(args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args).env_remove("SOURCE_DATE_EPOCH");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run the enclave binary")
}

fn stdout_json(out: &Output) -> Value {
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {text}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts a clean failure: non-zero exit, a message mentioning `needle`, no panic.
fn assert_refused(out: &Output, needle: &str) {
    let err = stderr(out);
    assert!(
        !out.status.success(),
        "expected failure, got success; stderr: {err}"
    );
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert!(!err.contains("panicked"), "panicked: {err}");
    assert!(
        err.to_lowercase().contains(&needle.to_lowercase()),
        "stderr lacks {needle:?}: {err}"
    );
}

/// Compiles `HELLO_C` into `dir` with the given extra gcc flags; `None` if gcc cannot.
fn compile(dir: &TempDir, name: &str, flags: &[&str]) -> Option<PathBuf> {
    let src = dir.path("hello.c");
    std::fs::write(&src, HELLO_C).unwrap();
    let out_path = dir.path(name);
    let out = Command::new("gcc")
        .args(flags)
        .arg("-O2")
        .arg("-o")
        .arg(&out_path)
        .arg(&src)
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!("gcc failed: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    Some(out_path)
}

/// The static test program. gcc with a static libc is a requirement of the test suite
/// (`scripts/setup.sh` installs it), so its absence fails the test rather than skipping it.
fn static_program(dir: &TempDir) -> Option<PathBuf> {
    let p = compile(dir, "hello-static", &["-static"]);
    assert!(
        p.is_some(),
        "cannot build a static C program: install gcc and a static libc (bash scripts/setup.sh)"
    );
    p
}

fn pcrs(v: &Value) -> [String; 3] {
    ["PCR0", "PCR1", "PCR2"].map(|k| {
        let s = v[k]
            .as_str()
            .unwrap_or_else(|| panic!("no {k} in {v}"))
            .to_owned();
        assert_eq!(s.len(), 96, "{k} is not 96 hex chars: {s}");
        assert!(s.bytes().all(|b| b.is_ascii_hexdigit()), "{k}: {s}");
        s
    })
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn build_is_reproducible_and_described() {
    let dir = TempDir::new("build");
    let Some(prog) = static_program(&dir) else {
        return;
    };
    let cfg = dir.path("app.conf");
    std::fs::write(&cfg, "key = value\n").unwrap();
    let file_arg = format!("{}:/etc/app/app.conf", cfg.display());
    let build = |out: &Path| {
        enclave(&[
            "build-enclave",
            "--binary",
            path_str(&prog),
            "--file",
            &file_arg,
            "--cmd",
            "--serve",
            "--cmd",
            "8000",
            "--env",
            "RUST_LOG=info",
            "--output-file",
            path_str(out),
            "--name",
            "hello",
            "--version",
            "2.1",
        ])
    };
    let (a, b) = (dir.path("a.eif"), dir.path("b.eif"));
    let out_a = build(&a);
    assert!(out_a.status.success(), "build failed: {}", stderr(&out_a));
    let built = stdout_json(&out_a);
    let m = &built["Measurements"];
    assert_eq!(m["HashAlgorithm"], "Sha384 { ... }");
    let built_pcrs = pcrs(m);

    let out_b = build(&b);
    assert!(out_b.status.success(), "{}", stderr(&out_b));
    assert_eq!(stdout_json(&out_b), built);
    assert_eq!(
        std::fs::read(&a).unwrap(),
        std::fs::read(&b).unwrap(),
        "builds differ"
    );
    // No temporary file left next to the output.
    let leftovers: Vec<_> = std::fs::read_dir(&dir.0)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp."))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");

    let desc = enclave(&["describe-eif", "--eif-path", path_str(&a)]);
    assert!(desc.status.success(), "{}", stderr(&desc));
    let d = stdout_json(&desc);
    assert_eq!(d["EifVersion"], 4);
    assert_eq!(d["CheckCRC"], true);
    assert_eq!(d["IsSigned"], false);
    assert_eq!(pcrs(&d["Measurements"]), built_pcrs);
    assert_eq!(d["ImageName"], "hello");
    assert_eq!(d["ImageVersion"], "2.1");
    assert_eq!(
        d["InitSpec"]["argv"],
        serde_json::json!(["/init", "--serve", "8000"])
    );
    assert_eq!(d["InitSpec"]["env"], serde_json::json!(["RUST_LOG=info"]));
    assert_eq!(
        d["Metadata"]["BuildMetadata"]["BuildTime"],
        "1970-01-01T00:00:00+00:00"
    );
    let abi = enclave_runtime::guest_abi::ABI_VERSION;
    assert_eq!(
        d["Metadata"]["BuildMetadata"]["KernelVersion"],
        format!("enclave-guest-abi-{abi}")
    );
    assert_eq!(d["GuestAbi"]["Compatible"], true, "{}", d["GuestAbi"]);
    assert_eq!(d["GuestAbi"]["Version"], abi);
    let files = d["Files"].as_array().expect("Files list");
    let conf = files
        .iter()
        .find(|f| f["Path"] == "/etc/app/app.conf")
        .unwrap_or_else(|| panic!("app.conf not in {files:?}"));
    assert_eq!(conf["Size"], 12);
    assert!(files
        .iter()
        .any(|f| f["Path"] == "/init" && f["Mode"] == "100755"));
}

#[test]
fn build_honours_source_date_epoch_and_default_name() {
    let dir = TempDir::new("epoch");
    let Some(prog) = static_program(&dir) else {
        return;
    };
    let eif = dir.path("e.eif");
    let out = Command::new(BIN)
        .args([
            "build-enclave",
            "--binary",
            path_str(&prog),
            "--output-file",
            path_str(&eif),
        ])
        .env("SOURCE_DATE_EPOCH", "86400")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let d = stdout_json(&enclave(&["describe-eif", "--eif-path", path_str(&eif)]));
    assert_eq!(
        d["Metadata"]["BuildMetadata"]["BuildTime"],
        "1970-01-02T00:00:00+00:00"
    );
    assert_eq!(d["ImageName"], "hello-static");
    assert_eq!(d["InitSpec"]["argv"], serde_json::json!(["/init"]));

    let bad = Command::new(BIN)
        .args([
            "build-enclave",
            "--binary",
            path_str(&prog),
            "--output-file",
            path_str(&eif),
        ])
        .env("SOURCE_DATE_EPOCH", "yesterday")
        .output()
        .unwrap();
    assert_refused(&bad, "SOURCE_DATE_EPOCH");
}

#[test]
fn build_refuses_dynamic_programs_without_libs_and_non_elf_programs() {
    let dir = TempDir::new("refuse");
    let out_eif = dir.path("x.eif");
    if let Some(dynamic) = compile(&dir, "hello-dynamic", &[]) {
        let out = enclave(&[
            "build-enclave",
            "--binary",
            path_str(&dynamic),
            "--output-file",
            path_str(&out_eif),
        ]);
        assert_refused(&out, "static");
        assert_refused(&out, "dynamically linked");
        assert_refused(&out, "--with-libs");
    } else {
        panic!("gcc cannot build a C program: install gcc (bash scripts/setup.sh)");
    }
    let text = dir.path("script.sh");
    std::fs::write(&text, "#!/bin/sh\necho hi\n").unwrap();
    let out = enclave(&[
        "build-enclave",
        "--binary",
        path_str(&text),
        "--output-file",
        path_str(&out_eif),
    ]);
    assert_refused(&out, "not an ELF");
    assert_refused(&out, "static");
    let missing = enclave(&[
        "build-enclave",
        "--binary",
        path_str(&dir.path("nope")),
        "--output-file",
        path_str(&out_eif),
    ]);
    assert_refused(&missing, "Cannot read the program");
    assert!(!out_eif.exists(), "a refused build wrote an image");
}

#[test]
fn build_refuses_bad_file_and_env_arguments() {
    let dir = TempDir::new("badargs");
    let Some(prog) = static_program(&dir) else {
        return;
    };
    let out_eif = dir.path("x.eif");
    let cfg = dir.path("c");
    std::fs::write(&cfg, "x").unwrap();
    let base = [
        "build-enclave",
        "--binary",
        path_str(&prog),
        "--output-file",
        path_str(&out_eif),
    ];
    let run = |extra: &[&str]| {
        let mut args: Vec<&str> = base.to_vec();
        args.extend_from_slice(extra);
        enclave(&args)
    };
    let relative = format!("{}:etc/c", cfg.display());
    assert_refused(&run(&["--file", &relative]), "SRC:DST");
    assert_refused(
        &run(&["--file", "/definitely/not/here:/etc/c"]),
        "Cannot read --file source",
    );
    let dir_src = format!("{}:/etc/d", dir.0.display());
    assert_refused(&run(&["--file", &dir_src]), "not a regular file");
    let init = format!("{}:/init", cfg.display());
    assert_refused(&run(&["--file", &init]), "/init");
    assert_refused(&run(&["--env", "NOEQUALS"]), "NAME=value");
    assert!(!out_eif.exists());
}

#[test]
fn describe_refuses_damaged_images_without_panicking() {
    let dir = TempDir::new("damaged");
    let Some(prog) = static_program(&dir) else {
        return;
    };
    let good = dir.path("good.eif");
    let out = enclave(&[
        "build-enclave",
        "--binary",
        path_str(&prog),
        "--output-file",
        path_str(&good),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let bytes = std::fs::read(&good).unwrap();

    let truncated = dir.path("truncated.eif");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let short_header = dir.path("short.eif");
    std::fs::write(&short_header, &bytes[..100]).unwrap();
    let flipped = dir.path("flipped.eif");
    let mut f = bytes.clone();
    let last = f.len() - 1;
    f[last] ^= 0x40;
    std::fs::write(&flipped, &f).unwrap();
    let magic = dir.path("magic.eif");
    let mut m = bytes.clone();
    m[..4].copy_from_slice(b"ELF!");
    std::fs::write(&magic, &m).unwrap();
    let empty = dir.path("empty.eif");
    std::fs::write(&empty, b"").unwrap();

    for (path, needle) in [
        (&truncated, "not a valid EIF"),
        (&short_header, "not a valid EIF"),
        (&flipped, "CRC"),
        (&magic, "magic"),
        (&empty, "not a valid EIF"),
        (&dir.path("missing.eif"), "Cannot open"),
    ] {
        let out = enclave(&["describe-eif", "--eif-path", path_str(path)]);
        assert_refused(&out, needle);
        assert!(
            out.stdout.is_empty(),
            "{}: printed on stdout",
            path.display()
        );
    }
    // --json: the error goes to stdout as JSON.
    let out = enclave(&["--json", "describe-eif", "--eif-path", path_str(&flipped)]);
    assert_eq!(out.status.code(), Some(1));
    let e = stdout_json(&out);
    assert!(
        e["Error"].as_str().unwrap().contains("not a valid EIF"),
        "{e}"
    );
    assert!(!e["Causes"].as_array().unwrap().is_empty(), "{e}");
}

/// Holds the machine-wide lock that every test applying a pool takes (the pool CPU is the
/// same for all of them and exclusive cpusets cannot overlap).
struct PoolLock {
    /// The open lock file; holding it holds the lock.
    _file: std::fs::File,
}

impl PoolLock {
    fn take() -> Self {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open("/tmp/enclave-pool-tests.lock")
            .expect("open the pool test lock");
        // SAFETY: flock on a descriptor we own; blocks until the lock is ours.
        let rc = unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&f), libc::LOCK_EX) };
        assert_eq!(rc, 0, "flock on the pool test lock");
        Self { _file: f }
    }
}

/// Releases the pool on drop, so a failed assertion never leaves a cpuset behind.
struct ReleaseGuard<'a> {
    env: &'a [(&'a str, &'a Path)],
}

impl Drop for ReleaseGuard<'_> {
    fn drop(&mut self) {
        let out = enclave_env(&["allocator", "release"], self.env);
        if !out.status.success() {
            eprintln!("allocator release in cleanup failed: {}", stderr(&out));
        }
    }
}

#[test]
#[cfg_attr(not(enclave_host), ignore = "needs /dev/kvm, root and a cpuset cgroup")]
fn allocator_apply_show_release() {
    let _lock = PoolLock::take();
    let dir = TempDir::new("pool");
    let config = dir.path("allocator.toml");
    std::fs::write(
        &config,
        "memory_mib = 8\ncpu_count = 1\nhugepages = \"never\"\n",
    )
    .unwrap();
    let run_root = dir.path("run");
    let name = PathBuf::from(format!("enclave-cli-test-{}", std::process::id()));
    let env: [(&str, &Path); 3] = [
        ("ENCLAVE_ALLOCATOR_CONFIG", &config),
        ("ENCLAVE_RUN_ROOT", &run_root),
        ("ENCLAVE_CGROUP_NAME", &name),
    ];

    // Show before apply: a clear error, no panic.
    let before = enclave_env(&["allocator", "show"], &env);
    assert_refused(&before, "allocator apply");

    let guard = ReleaseGuard { env: &env };
    let applied = enclave_env(&["allocator", "apply"], &env);
    assert!(
        applied.status.success(),
        "allocator apply failed: {}",
        stderr(&applied)
    );
    let state = stdout_json(&applied);
    assert_eq!(state["memory_mib"], 8, "{state}");
    assert_eq!(state["backing"], "locked-4K", "{state}");
    assert_eq!(state["hugepages_reserved"], 0, "{state}");
    let cgroup = PathBuf::from(state["cgroup"].as_str().expect("cgroup path"));
    assert!(cgroup.ends_with(&name), "{state}");
    assert!(
        cgroup.is_dir(),
        "pool cgroup {} not created",
        cgroup.display()
    );
    assert!(run_root.join("pool.json").is_file());

    let shown = enclave_env(&["allocator", "show"], &env);
    assert!(shown.status.success(), "{}", stderr(&shown));
    let status = stdout_json(&shown);
    assert_eq!(status["pool"], state);
    assert_eq!(status["free_memory_mib"], 8);
    assert_eq!(status["claimed_memory_mib"], 0);
    assert_eq!(status["claims"], serde_json::json!([]));
    assert_eq!(status["free_cpus"], state["cpus"]);

    drop(guard);
    let released = enclave_env(&["allocator", "release"], &env);
    assert!(released.status.success(), "{}", stderr(&released));
    assert_eq!(
        stdout_json(&released),
        serde_json::json!({ "Released": true })
    );
    assert!(
        !cgroup.exists(),
        "pool cgroup {} left behind",
        cgroup.display()
    );
    assert!(!run_root.join("pool.json").exists());
}

#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    // `enclave describe-enclaves | head -c0`: the reader is gone before anything is written.
    let dir = TempDir::new("pipe");
    for json in [false, true] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let mut cmd = Command::new(BIN);
        if json {
            cmd.arg("--json");
        }
        let out = cmd
            .arg("describe-enclaves")
            .env("ENCLAVE_RUN_ROOT", dir.path("run"))
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap();
        let err = stderr(&out);
        assert!(!err.contains("panicked"), "json={json}: {err}");
        assert_eq!(out.status.code(), Some(0), "json={json}: {err}");
    }
}
