//! The enclave SDK.
//!
//! **Parent side** (feature `parent`, on by default): [`Enclaves`] launches enclaves from EIF
//! images through the `enclave` CLI (the same options as `enclave run-enclave`), and an
//! [`EnclaveHandle`] describes, terminates and waits for one, and reaches its vsock ports over
//! the hybrid vsock sockets of its run directory (DESIGN.md, "Channels"):
//! [`EnclaveHandle::connect`] is a stream to a port the enclave program listens on,
//! [`EnclaveHandle::listen`] (or the parent-wide [`Enclaves::listen`]) accepts the enclave's
//! connections to CID 3. Feature `tokio` adds async versions ([`tokio_channel`]).
//!
//! **Enclave side** (feature `enclave`, for programs that run inside an enclave): [`enclave`]
//! gives plain `AF_VSOCK` sockets over the `vsock` crate, exactly as on AWS Nitro Enclaves;
//! `enclave-tokio` adds `tokio-vsock` versions.
//!
//! ```no_run
//! # #[cfg(feature = "parent")]
//! # fn main() -> Result<(), sdk::SdkError> {
//! use std::io::{Read, Write};
//! let enclaves = sdk::Enclaves::new()?;
//! let enclave = enclaves.launch(&sdk::LaunchOptions::new("hello.eif").memory_mib(64))?;
//! let mut s = enclave.connect_retry(5000, std::time::Duration::from_secs(5))?;
//! s.write_all(b"ping")?;
//! let mut buf = [0u8; 4];
//! s.read_exact(&mut buf)?;
//! enclave.terminate()?;
//! # Ok(()) }
//! # #[cfg(not(feature = "parent"))]
//! # fn main() {}
//! ```

#[cfg(feature = "enclave")]
pub mod enclave;
#[cfg(feature = "parent")]
mod parent;

#[cfg(feature = "parent")]
pub use enclave_runtime::control::protocol::EnclaveInfo;
#[cfg(feature = "parent")]
pub use enclave_runtime::vcpu::Outcome;
#[cfg(feature = "parent")]
pub use parent::channel::{handshake, Listener, VSOCK_SOCKET};
#[cfg(feature = "parent")]
pub use parent::error::SdkError;
#[cfg(feature = "parent")]
pub use parent::handle::EnclaveHandle;
#[cfg(feature = "parent")]
pub use parent::launch::{Enclaves, LaunchOptions};
#[cfg(feature = "tokio")]
pub use parent::tokio_channel;

/// The parent's CID as seen from an enclave (`VMADDR_CID_HOST`).
pub const PARENT_CID: u32 = 3;
