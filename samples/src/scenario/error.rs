//! The error of the scenario library: which step failed, and why.

use std::path::PathBuf;

/// A failed step of the KMS scenario.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// A file or process operation failed.
    #[error("Cannot {what}")]
    Io {
        /// What was attempted, naming the path or program.
        what: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A binary the scenario needs is missing.
    #[error("{name} not found at {}: build it with `cargo build --release -p samples -p enclave-cli`", path.display())]
    MissingBinary {
        /// Binary name.
        name: String,
        /// Where it was expected.
        path: PathBuf,
    },
    /// Building a program or image failed.
    #[error("Building {what} failed: {reason}")]
    Build {
        /// What was being built.
        what: String,
        /// The builder's message.
        reason: String,
    },
    /// A command of the `enclave` or `kms` CLI failed.
    #[error("`{command}` failed: {message}")]
    Command {
        /// The command line, shortened.
        command: String,
        /// Its standard error.
        message: String,
    },
    /// A helper service (key service, vsock-proxy) did not start or died.
    #[error("{service} {reason}")]
    Service {
        /// Which service.
        service: String,
        /// What went wrong, with its last output.
        reason: String,
    },
    /// The enclave application refused a request; KMS refusals are passed through unchanged.
    #[error("{code}: {message}")]
    Refused {
        /// Error code (AWS KMS style, e.g. `AccessDeniedException`).
        code: String,
        /// The reason.
        message: String,
    },
    /// A reply that does not follow the protocol.
    #[error("Unexpected reply from {peer}: {detail}")]
    Protocol {
        /// Who replied.
        peer: String,
        /// What was wrong.
        detail: String,
    },
    /// The SDK failed to launch or reach an enclave.
    #[error("Enclave operation failed")]
    Sdk(#[from] sdk::SdkError),
}

impl ScenarioError {
    /// An [`ScenarioError::Io`] for `what`.
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| Self::Io { what, source }
    }

    /// The error code of a refusal, if this is one.
    pub fn refusal_code(&self) -> Option<&str> {
        match self {
            Self::Refused { code, .. } => Some(code),
            _ => None,
        }
    }
}
