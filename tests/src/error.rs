//! The harness error.

use std::path::PathBuf;
use std::process::ExitStatus;

/// What went wrong while preparing a test.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// A file operation failed.
    #[error("Cannot {what} {path}")]
    Io {
        /// The operation, e.g. "create directory".
        what: &'static str,
        /// The file it was applied to.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A build tool could not be started.
    #[error("Cannot run {tool}")]
    Spawn {
        /// The program that was started.
        tool: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A build finished unsuccessfully.
    #[error("Building {what} failed ({status}):\n{stderr}")]
    Build {
        /// What was being built.
        what: String,
        /// How the build tool exited.
        status: ExitStatus,
        /// Its standard error.
        stderr: String,
    },
    /// No guest program has that name.
    #[error("No guest program named {0:?} (known: C programs in tests/guest/c, and rust-hello)")]
    UnknownProgram(String),
    /// The file is not a 64-bit little-endian ELF we can read.
    #[error("{path} is not a readable ELF64 file: {reason}")]
    Elf {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// Shorthand for an [`HarnessError::Io`] constructor, for `map_err`.
pub(crate) fn io_err(
    what: &'static str,
    path: &std::path::Path,
) -> impl FnOnce(std::io::Error) -> HarnessError {
    let path = path.to_owned();
    move |source| HarnessError::Io { what, path, source }
}
