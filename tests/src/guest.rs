//! Builds the guest programs in `tests/guest/` into `<target>/guest-programs/`, once per
//! test process.
//!
//! C programs (`tests/guest/c/<name>.c`) are built with `gcc -static -no-pie -O2`; the Rust
//! program `rust-hello` is a static-pie built by a nested cargo with
//! `RUSTFLAGS="-C target-feature=+crt-static"` into its own target directory
//! (`<target>/guest-rust`), so it never waits on the outer cargo's lock.
//!
//! Dynamically linked programs are built the ordinary way: C ones (`tests/guest/c-dyn/<name>.c`)
//! with `gcc -O2 -lm`, shared libraries there (`lib<name>.c`) with `gcc -shared -fPIC`, and the
//! Rust `rust-dyn-hello` without crt-static (into `<target>/guest-rust-dyn`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use crate::error::{io_err, HarnessError};
use crate::paths;

/// The C guest programs shipped in `tests/guest/c/`.
pub const C_PROGRAMS: &[&str] = &[
    "hello",
    "fault_null",
    "fault_ud",
    "fault_div",
    "fault_gp",
    "spin",
    "exit_code",
    "hostile",
    "sysfuzz",
    "abuse",
    "fastpath",
    "oci_probe",
];

/// The Rust guest programs shipped in `tests/guest/` (each its own cargo project).
pub const RUST_PROGRAMS: &[&str] = &["rust-hello", "rust-dyn-hello"];

/// The dynamically linked C guest programs in `tests/guest/c-dyn/`.
pub const C_DYNAMIC_PROGRAMS: &[&str] = &["dyn_hello", "dyn_dlopen"];

/// The Rust guest programs built dynamically linked (no crt-static).
const RUST_DYNAMIC_PROGRAMS: &[&str] = &["rust-dyn-hello"];

/// The only target the toolchain has; guest programs are x86_64 Linux ELFs.
const RUST_TARGET: &str = "x86_64-unknown-linux-gnu";

/// Programs built by this process, by name.
static BUILT: Mutex<Option<HashMap<String, PathBuf>>> = Mutex::new(None);

/// Where built guest programs go.
pub fn output_dir() -> PathBuf {
    paths::target_dir().join("guest-programs")
}

/// Builds the guest program `name` (once per process) and returns its path.
///
/// `name` is a C program `tests/guest/c/<name>.c` (see [`C_PROGRAMS`]) or a Rust project
/// `tests/guest/<name>/` (see [`RUST_PROGRAMS`]).
pub fn guest_program(name: &str) -> Result<PathBuf, HarnessError> {
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !valid {
        return Err(HarnessError::UnknownProgram(name.to_owned()));
    }
    // Held across the build: concurrent tests wait for one build instead of racing.
    let mut guard = BUILT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let built = guard.get_or_insert_with(HashMap::new);
    if let Some(path) = built.get(name) {
        return Ok(path.clone());
    }
    let out_dir = output_dir();
    std::fs::create_dir_all(&out_dir).map_err(io_err("create directory", &out_dir))?;
    let out = out_dir.join(name);
    let c_source = paths::guest_sources().join("c").join(format!("{name}.c"));
    let c_dyn_source = paths::guest_sources()
        .join("c-dyn")
        .join(format!("{name}.c"));
    let rust_manifest = paths::guest_sources().join(name).join("Cargo.toml");
    if c_source.is_file() {
        build_c(&c_source, &out)?;
    } else if c_dyn_source.is_file() && name.starts_with("lib") {
        build_c_with(
            &c_dyn_source,
            &out,
            &["-shared", "-fPIC", "-O2", "-Wall"],
            &[],
        )?;
    } else if c_dyn_source.is_file() {
        build_c_with(&c_dyn_source, &out, &["-O2", "-Wall"], &["-lm"])?;
    } else if rust_manifest.is_file() {
        build_rust(name, &rust_manifest, &out)?;
    } else {
        return Err(HarnessError::UnknownProgram(name.to_owned()));
    }
    built.insert(name.to_owned(), out.clone());
    Ok(out)
}

/// A temporary name next to `out`, unique to this process, for an atomic rename.
fn temp_output(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_owned();
    name.push(format!(".tmp-{}", std::process::id()));
    out.with_file_name(name)
}

fn run_build(mut cmd: Command, tool: &str, what: &str) -> Result<(), HarnessError> {
    let output = cmd.output().map_err(|source| HarnessError::Spawn {
        tool: tool.to_owned(),
        source,
    })?;
    if output.status.success() {
        Ok(())
    } else {
        Err(HarnessError::Build {
            what: what.to_owned(),
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }
}

fn build_c(source: &Path, out: &Path) -> Result<(), HarnessError> {
    build_c_with(source, out, &["-static", "-no-pie", "-O2", "-Wall"], &[])
}

/// `gcc <flags> -o out source <libs>`.
fn build_c_with(
    source: &Path,
    out: &Path,
    flags: &[&str],
    libs: &[&str],
) -> Result<(), HarnessError> {
    let tmp = temp_output(out);
    let mut cmd = Command::new("gcc");
    cmd.args(flags).arg("-o").arg(&tmp).arg(source).args(libs);
    run_build(cmd, "gcc", &source.display().to_string())?;
    std::fs::rename(&tmp, out).map_err(io_err("rename into place", out))
}

fn build_rust(name: &str, manifest: &Path, out: &Path) -> Result<(), HarnessError> {
    let dynamic = RUST_DYNAMIC_PROGRAMS.contains(&name);
    let (target_dir, rustflags) = if dynamic {
        (paths::target_dir().join("guest-rust-dyn"), "")
    } else {
        (
            paths::target_dir().join("guest-rust"),
            "-C target-feature=+crt-static",
        )
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(&cargo);
    cmd.args([
        "build",
        "--release",
        "--quiet",
        "--target",
        RUST_TARGET,
        "--manifest-path",
    ])
    .arg(manifest)
    .arg("--target-dir")
    .arg(&target_dir)
    .env("RUSTFLAGS", rustflags)
    // Settings of an outer cargo must not leak into the guest build.
    .env_remove("CARGO_ENCODED_RUSTFLAGS")
    .env_remove("CARGO_BUILD_RUSTFLAGS")
    .env_remove("CARGO_TARGET_DIR")
    .env_remove("CARGO_BUILD_TARGET");
    run_build(
        cmd,
        &cargo.to_string_lossy(),
        &manifest.display().to_string(),
    )?;
    let built = target_dir.join(RUST_TARGET).join("release").join(name);
    let tmp = temp_output(out);
    std::fs::copy(&built, &tmp).map_err(io_err("copy", &built))?;
    std::fs::rename(&tmp, out).map_err(io_err("rename into place", out))
}
