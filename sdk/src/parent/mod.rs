//! Parent side: launching enclaves through the CLI and hybrid vsock channels to them.

pub mod channel;
pub mod error;
pub mod handle;
pub mod launch;
#[cfg(feature = "tokio")]
pub mod tokio_channel;
