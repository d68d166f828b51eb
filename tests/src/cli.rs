//! Finding and running the `enclave` CLI.
//!
//! `CARGO_BIN_EXE_enclave` exists only in the CLI crate's own tests, so the binary is looked
//! up next to the test binary (`<target>/debug/enclave`) and built with
//! `cargo build -p enclave-cli` when it is missing. `ENCLAVE_BIN` overrides the lookup;
//! The binary is rebuilt once per test process (cargo makes that a no-op when it is current);
//! `ENCLAVE_TEST_REBUILD=0` uses whatever binary exists.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::OnceLock;

use crate::paths;
use crate::testenv::TestEnv;

static ENCLAVE_BIN: OnceLock<PathBuf> = OnceLock::new();

/// The `enclave` binary the tests run; built once per process if missing.
///
/// # Panics
/// When the binary is missing and `cargo build -p enclave-cli` fails.
pub fn enclave_bin() -> PathBuf {
    ENCLAVE_BIN.get_or_init(locate_or_build).clone()
}

/// The `enclave` binary if [`enclave_bin`] already resolved it or it exists; never builds.
pub(crate) fn existing_enclave_bin() -> Option<PathBuf> {
    if let Some(path) = ENCLAVE_BIN.get() {
        return Some(path.clone());
    }
    let candidate = std::env::var_os("ENCLAVE_BIN")
        .map_or_else(|| paths::profile_dir().join("enclave"), PathBuf::from);
    candidate.is_file().then_some(candidate)
}

fn locate_or_build() -> PathBuf {
    if let Some(path) = std::env::var_os("ENCLAVE_BIN") {
        return PathBuf::from(path);
    }
    let profile = paths::profile_dir();
    let bin = profile.join("enclave");
    // Rebuild by default (a no-op when up to date): `cargo test -p tests` does not build the
    // CLI itself, and a stale binary would test old code. ENCLAVE_TEST_REBUILD=0 skips it.
    let rebuild = std::env::var_os("ENCLAVE_TEST_REBUILD").is_none_or(|v| v != "0");
    if bin.is_file() && !rebuild {
        return bin;
    }
    // `<top>/debug` or `<top>/<triple>/debug`: cargo keeps `.rustc_info.json` at the top.
    let parent = profile
        .parent()
        .map_or_else(|| profile.clone(), PathBuf::from);
    let is_top = |dir: &std::path::Path| {
        dir.join(".rustc_info.json").is_file() || dir.join("CACHEDIR.TAG").is_file()
    };
    let (top, triple) = match parent.parent() {
        Some(grand) if !is_top(&parent) && is_top(grand) => {
            (grand.to_owned(), parent.file_name().map(OsStr::to_owned))
        }
        _ => (parent, None),
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(&cargo);
    cmd.args([
        "build",
        "--quiet",
        "-p",
        "enclave-cli",
        "--bin",
        "enclave",
        "--manifest-path",
    ])
    .arg(paths::workspace_root().join("Cargo.toml"))
    .arg("--target-dir")
    .arg(&top);
    if let Some(triple) = triple {
        cmd.arg("--target").arg(triple);
    }
    if paths::is_release() {
        cmd.arg("--release");
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", cargo.to_string_lossy()));
    assert!(
        status.success(),
        "cargo build -p enclave-cli failed ({status})"
    );
    assert!(
        bin.is_file(),
        "cargo build -p enclave-cli did not produce {}",
        bin.display()
    );
    bin
}

/// Runs `enclave <args>` with the environment of `env` and returns its output.
///
/// # Panics
/// When the binary cannot be started.
pub fn run_cli<I, S>(env: &TestEnv, args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let bin = enclave_bin();
    env.command(&bin)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()))
}
