//! Messages of the control protocol and the launch hand-off between `run-enclave` and the VMM.

use serde::{Deserialize, Serialize};

use crate::pool::CpuRequest;
use crate::vcpu::Outcome;

/// A request on the control socket.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Describe the enclave.
    Describe,
    /// Terminate the enclave.
    Terminate,
    /// Block until the program ends; answer with its outcome.
    Wait,
    /// Stream the console (debug mode only). Also releases a launch held for the console.
    Console,
    /// Hidden test hook: the control thread makes a system call its seccomp filter forbids,
    /// which kills the VMM (see `seccomp::forbidden_call`). Only root reaches the 0600 socket,
    /// and root can end the VMM anyway (`Terminate`, `kill -9`), so this grants nothing new.
    #[serde(rename = "__seccomp_selftest")]
    SeccompSelftest,
}

/// Enclave description, in nitro-cli's `describe-enclaves` shape plus our fields.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct EnclaveInfo {
    /// Name given at launch.
    pub enclave_name: String,
    /// `enc-<16 hex>`.
    #[serde(rename = "EnclaveID")]
    pub enclave_id: String,
    /// PID of the VMM process.
    #[serde(rename = "ProcessID")]
    pub process_id: u32,
    /// vsock CID.
    #[serde(rename = "EnclaveCID")]
    pub enclave_cid: u64,
    /// Number of vCPUs.
    #[serde(rename = "NumberOfCPUs")]
    pub number_of_cpus: u32,
    /// Host CPUs the vCPUs are pinned to.
    #[serde(rename = "CPUIDs")]
    pub cpu_ids: Vec<u32>,
    /// Guest memory.
    #[serde(rename = "MemoryMiB")]
    pub memory_mib: u64,
    /// `RUNNING`; once ended `EXITED` or `CRASHED` (see [`crate::records`]).
    pub state: String,
    /// `NONE` or `DEBUG_MODE`.
    pub flags: String,
    /// `exclusive` or `shared` (pool CPUs shared with other enclaves, development only).
    pub cpu_sharing: String,
    /// How guest memory is backed.
    pub memory_backing: String,
    /// PCRs of the image (what `describe-eif` shows).
    pub measurements: serde_json::Value,
    /// PCRs the enclave's `/dev/nsm` really attests: the image's in production mode, all
    /// zeros in debug mode (as on Nitro).
    #[serde(rename = "AttestedPCRs", default)]
    pub attested_measurements: serde_json::Value,
    /// Whether `/dev/nsm` signs attestation documents: `available`, or `unavailable: <why>`.
    #[serde(default)]
    pub attestation: String,
    /// Seccomp mode of the VMM: `kill`, or `log`/`off` when debugging (`ENCLAVE_SECCOMP`).
    #[serde(default)]
    pub seccomp: String,
    /// Outcome once the program has ended.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub outcome: Option<Outcome>,
    /// Why an enclave ended without an outcome (its VMM died), on its record.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub end_reason: Option<String>,
}

/// What `run-enclave` hands the VMM process.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LaunchRequest {
    /// Enclave id chosen by the launcher.
    pub enclave_id: String,
    /// Path of the EIF.
    pub eif_path: std::path::PathBuf,
    /// CPUs wanted.
    pub cpus: CpuRequest,
    /// Guest memory in MiB.
    pub memory_mib: u64,
    /// Requested CID.
    pub cid: Option<u64>,
    /// Name.
    pub name: String,
    /// Debug mode.
    pub debug: bool,
    /// A console stream the launcher passed to the VMM process (`run-enclave
    /// --attach-console`, debug mode): attached before the program starts, so no output is
    /// missed; the VMM then keeps the status pipe open and reports the outcome on it as well.
    #[serde(default)]
    pub console_fd: Option<i32>,
}

/// The VMM's report to its launcher on the status pipe: one line, and a second one with the
/// outcome when the launcher passed a console stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LaunchStatus {
    /// Running (or held for the console).
    Ready(Box<EnclaveInfo>),
    /// Launch failed; the message carries the whole error chain.
    Failed(String),
    /// The program ended (only after `Ready`, to a launcher that passed a console stream).
    Ended(crate::vcpu::Outcome),
}

/// Response to a request other than `describe`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    /// Request accepted.
    Ok,
    /// The program ended.
    Ended(Outcome),
    /// Request refused.
    Error(String),
}
