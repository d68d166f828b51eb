//! Builds `samples/enclave-apps/` (a separate cargo project, not a workspace member) as static
//! x86_64 programs: `RUSTFLAGS="-C target-feature=+crt-static"`, its own target directory, so
//! the workspace build never compiles them with the wrong flags.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The only target the guest programs are built for.
pub const TARGET: &str = "x86_64-unknown-linux-gnu";
/// The programs of `samples/enclave-apps/`.
pub const PROGRAMS: &[&str] = &[
    "hello-echo",
    "hello-echo-tokio",
    "vsock-threads",
    "vsock-isolation",
    "vsock-bench",
];

static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();

/// `samples/` in the workspace.
pub fn samples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The cargo target directory of the running program: `<target>` of
/// `<target>/<profile>/deps/<exe>` or `<target>/<profile>/<exe>`, else `CARGO_TARGET_DIR`, else
/// `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    if let Ok(exe) = std::env::current_exe() {
        let mut dir = exe.parent().map(Path::to_owned);
        if dir
            .as_deref()
            .is_some_and(|d| d.file_name().is_some_and(|n| n == "deps"))
        {
            dir = dir.and_then(|d| d.parent().map(Path::to_owned));
        }
        if let Some(top) = dir.as_deref().and_then(Path::parent) {
            if top.join("CACHEDIR.TAG").is_file() || top.join(".rustc_info.json").is_file() {
                return top.to_owned();
            }
        }
    }
    match std::env::var_os("CARGO_TARGET_DIR").filter(|v| !v.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => samples_dir().join("../target"),
    }
}

/// Builds every enclave program (once per process) and returns the directory holding them.
pub fn build() -> Result<PathBuf, String> {
    BUILT.get_or_init(build_now).clone()
}

/// The path of enclave program `name`, built if needed.
pub fn program(name: &str) -> Result<PathBuf, String> {
    if !PROGRAMS.contains(&name) {
        return Err(format!(
            "no enclave program {name:?} in samples/enclave-apps"
        ));
    }
    Ok(build()?.join(name))
}

fn build_now() -> Result<PathBuf, String> {
    build_static_crate(
        &samples_dir().join("enclave-apps/Cargo.toml"),
        &target_dir().join("enclave-apps"),
    )
}

/// Builds the cargo project at `manifest` (outside the workspace) as static x86_64 programs
/// into `target_dir`, as enclave programs must be; returns the directory holding them.
pub fn build_static_crate(manifest: &Path, target_dir: &Path) -> Result<PathBuf, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(&cargo)
        .args(["build", "--release", "--quiet", "--target", TARGET])
        .arg("--manifest-path")
        .arg(manifest)
        .arg("--target-dir")
        .arg(target_dir)
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        // Settings of an outer cargo must not leak into the guest build.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .output()
        .map_err(|e| format!("cannot run {}: {e}", cargo.to_string_lossy()))?;
    if !out.status.success() {
        return Err(format!(
            "building {} failed ({}):\n{}",
            manifest.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(target_dir.join(TARGET).join("release"))
}

static KMS_ENCLAVE: OnceLock<Result<PathBuf, String>> = OnceLock::new();

/// Builds `samples/kms/enclave/` (the KMS sample's enclave program, its own cargo project) as a
/// static program, once per process; returns the path of `kms-enclave`.
pub fn kms_enclave() -> Result<PathBuf, String> {
    KMS_ENCLAVE
        .get_or_init(|| {
            build_static_crate(
                &samples_dir().join("kms/enclave/Cargo.toml"),
                &target_dir().join("kms-enclave"),
            )
            .map(|dir| dir.join("kms-enclave"))
        })
        .clone()
}
