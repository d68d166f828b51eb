//! Launching enclaves through the `enclave` CLI (`run-enclave`, JSON output).

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use enclave_runtime::control::protocol::EnclaveInfo;
use enclave_runtime::pool::{DEFAULT_RUN_ROOT, ENV_RUN_ROOT};

use super::channel::Listener;
use super::error::SdkError;
use super::handle::EnclaveHandle;

/// Environment variable naming the `enclave` binary.
pub const ENV_BIN: &str = "ENCLAVE_BIN";

/// The options of `enclave run-enclave`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchOptions {
    /// The EIF to run.
    pub eif_path: PathBuf,
    /// Number of pool CPUs (ignored when `cpu_ids` is set).
    pub cpu_count: u32,
    /// Exact pool CPUs.
    pub cpu_ids: Option<Vec<u32>>,
    /// Guest memory in MiB.
    pub memory_mib: u64,
    /// vsock CID (default: the lowest free ≥ 16).
    pub cid: Option<u64>,
    /// Name (default: the EIF's file stem).
    pub name: Option<String>,
    /// Debug mode: console output, all-zero PCRs in attestation.
    pub debug: bool,
}

impl LaunchOptions {
    /// One CPU, 64 MiB, production mode.
    pub fn new(eif_path: impl Into<PathBuf>) -> Self {
        Self {
            eif_path: eif_path.into(),
            cpu_count: 1,
            cpu_ids: None,
            memory_mib: 64,
            cid: None,
            name: None,
            debug: false,
        }
    }

    /// Number of CPUs.
    pub fn cpu_count(mut self, n: u32) -> Self {
        self.cpu_count = n;
        self
    }

    /// Exact CPUs.
    pub fn cpu_ids(mut self, ids: Vec<u32>) -> Self {
        self.cpu_ids = Some(ids);
        self
    }

    /// Guest memory in MiB.
    pub fn memory_mib(mut self, mib: u64) -> Self {
        self.memory_mib = mib;
        self
    }

    /// vsock CID.
    pub fn cid(mut self, cid: u64) -> Self {
        self.cid = Some(cid);
        self
    }

    /// Name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Debug mode.
    pub fn debug(mut self, on: bool) -> Self {
        self.debug = on;
        self
    }

    /// The `run-enclave` arguments.
    pub fn to_args(&self) -> Vec<OsString> {
        let mut a: Vec<OsString> = vec!["run-enclave".into(), "--eif-path".into()];
        a.push(self.eif_path.clone().into_os_string());
        match &self.cpu_ids {
            Some(ids) => {
                let list: Vec<String> = ids.iter().map(u32::to_string).collect();
                a.push("--cpu-ids".into());
                a.push(list.join(",").into());
            }
            None => {
                a.push("--cpu-count".into());
                a.push(self.cpu_count.to_string().into());
            }
        }
        a.push("--memory".into());
        a.push(self.memory_mib.to_string().into());
        if let Some(cid) = self.cid {
            a.push("--enclave-cid".into());
            a.push(cid.to_string().into());
        }
        if let Some(name) = &self.name {
            a.push("--enclave-name".into());
            a.push(name.into());
        }
        if self.debug {
            a.push("--debug-mode".into());
        }
        a
    }
}

/// The enclaves of one parent: which `enclave` binary to run and with what environment.
#[derive(Debug, Clone)]
pub struct Enclaves {
    bin: PathBuf,
    envs: Vec<(OsString, OsString)>,
}

/// `enclave` in `dir` if it is a file.
fn bin_in(dir: Option<&Path>) -> Option<PathBuf> {
    let p = dir?.join("enclave");
    p.is_file().then_some(p)
}

/// Finds the `enclave` binary: `ENCLAVE_BIN`, next to the current executable (or one level up,
/// as for test binaries in `target/debug/deps`), then `PATH`.
pub fn find_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(ENV_BIN).filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(p));
    }
    if let Ok(exe) = std::env::current_exe() {
        let dir = exe.parent();
        if let Some(p) = bin_in(dir).or_else(|| bin_in(dir.and_then(Path::parent))) {
            return Some(p);
        }
    }
    std::env::split_paths(&std::env::var_os("PATH")?).find_map(|d| bin_in(Some(&d)))
}

impl Enclaves {
    /// Uses the binary [`find_binary`] finds.
    pub fn new() -> Result<Self, SdkError> {
        find_binary()
            .map(Self::with_binary)
            .ok_or(SdkError::NoBinary)
    }

    /// Uses `bin` as the `enclave` binary.
    pub fn with_binary(bin: impl Into<PathBuf>) -> Self {
        Self {
            bin: bin.into(),
            envs: Vec::new(),
        }
    }

    /// Sets an environment variable for every CLI run (e.g. `ENCLAVE_RUN_ROOT`).
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        let key = key.as_ref().to_owned();
        self.envs.retain(|(k, _)| *k != key);
        self.envs.push((key, value.as_ref().to_owned()));
        self
    }

    /// The `enclave` binary.
    pub fn binary(&self) -> &Path {
        &self.bin
    }

    /// The run root: `ENCLAVE_RUN_ROOT` as set by [`Enclaves::env`] or in this process, else
    /// `/run/enclave`.
    pub fn run_root(&self) -> PathBuf {
        self.envs
            .iter()
            .rev()
            .find(|(k, _)| k == ENV_RUN_ROOT)
            .map(|(_, v)| v.clone())
            .or_else(|| std::env::var_os(ENV_RUN_ROOT))
            .filter(|v| !v.is_empty())
            .map_or_else(|| PathBuf::from(DEFAULT_RUN_ROOT), PathBuf::from)
    }

    /// Runs `enclave <args>` and returns its stdout; a non-zero exit is [`SdkError::Cli`].
    pub fn cli<I, S>(&self, args: I) -> Result<String, SdkError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        let command = args
            .first()
            .map(|a| a.to_string_lossy().into_owned())
            .unwrap_or_default();
        let out = Command::new(&self.bin)
            .args(&args)
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .output()
            .map_err(|source| SdkError::Spawn {
                bin: self.bin.clone(),
                source,
            })?;
        if !out.status.success() {
            return Err(SdkError::Cli {
                command,
                status: out.status,
                message: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn cli_json<T: serde::de::DeserializeOwned, S: AsRef<OsStr>>(
        &self,
        args: &[S],
    ) -> Result<T, SdkError> {
        let out = self.cli(args)?;
        let command = args
            .first()
            .map(|a| a.as_ref().to_string_lossy().into_owned())
            .unwrap_or_default();
        serde_json::from_str(&out).map_err(|source| SdkError::Output {
            command,
            output: out,
            source,
        })
    }

    /// Launches an enclave (`enclave run-enclave`); returns once it is RUNNING.
    pub fn launch(&self, options: &LaunchOptions) -> Result<EnclaveHandle, SdkError> {
        let info: EnclaveInfo = self.cli_json(&options.to_args())?;
        Ok(EnclaveHandle::new(self.clone(), info))
    }

    /// Every running enclave, and the records of enclaves that ended by themselves (state
    /// `EXITED` or `CRASHED`, with the outcome) until they are removed (`enclave
    /// describe-enclaves`).
    pub fn list(&self) -> Result<Vec<EnclaveInfo>, SdkError> {
        self.cli_json(&["describe-enclaves"])
    }

    /// A handle on a running enclave by id.
    pub fn attach(&self, enclave_id: &str) -> Result<EnclaveHandle, SdkError> {
        let dir = self.run_root().join(enclave_id);
        let info = enclave_runtime::control::client::Control::new(&dir)
            .describe()
            .map_err(|source| SdkError::Control {
                enclave_id: enclave_id.to_owned(),
                source,
            })?;
        Ok(EnclaveHandle::new(self.clone(), info))
    }

    /// A parent-wide listener for enclave connections to CID 3 `port`, at
    /// `<run root>/vsock.sock_<port>`: it serves every enclave that has no listener of its
    /// own on that port, and may be bound before any launch.
    pub fn listen(&self, port: u32) -> Result<Listener, SdkError> {
        Listener::bind(&self.run_root(), port)
    }
}
