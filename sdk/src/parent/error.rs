//! Errors of the parent-side SDK.

use std::path::PathBuf;

use enclave_runtime::control::client::ClientError;

/// What went wrong in the SDK.
#[derive(Debug, thiserror::Error)]
pub enum SdkError {
    /// No `enclave` binary was found.
    #[error(
        "cannot find the `enclave` binary: set ENCLAVE_BIN, put it next to this program or on PATH"
    )]
    NoBinary,
    /// The CLI could not be started.
    #[error("cannot run {bin}")]
    Spawn {
        /// Binary.
        bin: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The CLI reported a failure.
    #[error("`enclave {command}` failed ({status}): {message}")]
    Cli {
        /// Subcommand.
        command: String,
        /// Exit status.
        status: std::process::ExitStatus,
        /// What it printed on stderr (its error chain).
        message: String,
    },
    /// The CLI printed something that is not the expected JSON.
    #[error("`enclave {command}` printed unexpected output: {output}")]
    Output {
        /// Subcommand.
        command: String,
        /// The output.
        output: String,
        /// Cause.
        #[source]
        source: serde_json::Error,
    },
    /// Talking to the enclave's VMM over its control socket.
    #[error("enclave {enclave_id}")]
    Control {
        /// Enclave.
        enclave_id: String,
        /// Cause.
        #[source]
        source: ClientError,
    },
    /// The enclave's hybrid vsock socket cannot be reached.
    #[error("cannot reach the vsock socket {path}: is the enclave still running?")]
    Connect {
        /// `<run dir>/vsock.sock`.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The enclave program does not listen on the port.
    #[error("enclave {enclave_id} does not listen on vsock port {port} (connection closed during the CONNECT handshake)")]
    PortNotListening {
        /// Enclave.
        enclave_id: String,
        /// Port.
        port: u32,
    },
    /// The handshake answer was not `OK <port>`.
    #[error("unexpected hybrid vsock answer {answer:?} to CONNECT {port}")]
    Handshake {
        /// Port.
        port: u32,
        /// What came back.
        answer: String,
    },
    /// Binding a parent listener.
    #[error("cannot listen at {path}")]
    Bind {
        /// `vsock.sock_<port>`.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Other I/O.
    #[error("I/O error")]
    Io(#[from] std::io::Error),
    /// The enclave did not end in time.
    #[error("enclave {0} did not end in time")]
    Timeout(String),
}
