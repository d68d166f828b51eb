//! The programs the scenario runs: the `enclave` CLI, the key service (`kms-server`), its
//! client CLI (`kms`) and `vsock-proxy` — found next to each other in a cargo profile
//! directory, built there on request.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::error::ScenarioError;

/// The workspace binaries the scenario needs.
pub const NAMES: [&str; 4] = ["enclave", "kms-server", "kms", "vsock-proxy"];

/// Paths of the scenario's binaries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bins {
    /// `enclave` (the CLI).
    pub enclave: PathBuf,
    /// `kms-server`.
    pub kms_server: PathBuf,
    /// `kms`.
    pub kms: PathBuf,
    /// `vsock-proxy`.
    pub vsock_proxy: PathBuf,
}

impl Bins {
    /// The binaries in `dir`; every one must exist.
    pub fn in_dir(dir: &Path) -> Result<Self, ScenarioError> {
        let find = |name: &str| {
            let path = dir.join(name);
            if path.is_file() {
                Ok(path)
            } else {
                Err(ScenarioError::MissingBinary {
                    name: name.to_owned(),
                    path,
                })
            }
        };
        Ok(Self {
            enclave: find("enclave")?,
            kms_server: find("kms-server")?,
            kms: find("kms")?,
            vsock_proxy: find("vsock-proxy")?,
        })
    }

    /// The binaries next to the running program (how `kms-demo` finds them).
    pub fn beside_current_exe() -> Result<Self, ScenarioError> {
        let exe = std::env::current_exe().map_err(ScenarioError::io("find the running program"))?;
        let dir = exe.parent().unwrap_or(Path::new("."));
        Self::in_dir(dir)
    }

    /// Builds the binaries into the target directory and profile of the running program (a
    /// test or bench binary in `<target>/<profile>/deps/`).
    pub fn build_for_current_profile() -> Result<Self, ScenarioError> {
        let release = std::env::current_exe()
            .ok()
            .and_then(|exe| {
                exe.ancestors()
                    .nth(2)
                    .and_then(|p| p.file_name())
                    .map(|n| n == "release")
            })
            .unwrap_or(false);
        Self::build(&crate::enclave_apps::target_dir(), release)
    }

    /// Builds the binaries with cargo into `target_dir` (`--release` when `release`) and
    /// returns them. Cargo does nothing when they are up to date.
    pub fn build(target_dir: &Path, release: bool) -> Result<Self, ScenarioError> {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let manifest = crate::enclave_apps::samples_dir().join("../Cargo.toml");
        let mut cmd = Command::new(&cargo);
        cmd.args([
            "build",
            "--quiet",
            "-p",
            "enclave-cli",
            "-p",
            "samples",
            "--bins",
        ])
        .arg("--manifest-path")
        .arg(&manifest)
        .arg("--target-dir")
        .arg(target_dir);
        if release {
            cmd.arg("--release");
        }
        let out = cmd
            .env_remove("CARGO_TARGET_DIR")
            .output()
            .map_err(ScenarioError::io(format!(
                "run {}",
                cargo.to_string_lossy()
            )))?;
        if !out.status.success() {
            return Err(ScenarioError::Build {
                what: "the enclave CLI and the sample binaries".into(),
                reason: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            });
        }
        Self::in_dir(&target_dir.join(if release { "release" } else { "debug" }))
    }
}
