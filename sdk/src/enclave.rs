//! Enclave side: plain `AF_VSOCK` stream sockets over the `vsock` crate, exactly as a program
//! on AWS Nitro Enclaves uses them. Listen on a port for the parent's connections; connect to
//! CID 3 (the parent) to reach a parent listener.
//!
//! ```no_run
//! use std::io::{Read, Write};
//! let listener = sdk::enclave::listen(5000)?;
//! for stream in listener.incoming() {
//!     let mut stream = stream?;
//!     let mut buf = [0u8; 4096];
//!     let n = stream.read(&mut buf)?;
//!     stream.write_all(&buf[..n])?;
//! }
//! # Ok::<(), std::io::Error>(())
//! ```

pub use vsock::{VsockAddr, VsockListener, VsockStream, VMADDR_CID_ANY};

use crate::PARENT_CID;

/// Listens on `port` of this enclave (any local CID).
pub fn listen(port: u32) -> std::io::Result<VsockListener> {
    VsockListener::bind(&VsockAddr::new(VMADDR_CID_ANY, port))
}

/// Connects to the parent's listener on `port` (CID 3).
pub fn connect_parent(port: u32) -> std::io::Result<VsockStream> {
    VsockStream::connect(&VsockAddr::new(PARENT_CID, port))
}

/// This enclave's CID (`IOCTL_VM_SOCKETS_GET_LOCAL_CID` on `/dev/vsock`), where available;
/// otherwise ask a connected socket's `local_addr`.
pub fn local_cid() -> std::io::Result<u32> {
    vsock::get_local_cid()
}

/// Async (tokio) versions over `tokio-vsock`.
#[cfg(feature = "enclave-tokio")]
pub mod tokio {
    pub use tokio_vsock::{VsockListener, VsockStream};

    use super::{VsockAddr, VMADDR_CID_ANY};
    use crate::PARENT_CID;

    /// Listens on `port` of this enclave. Needs a tokio runtime with I/O enabled.
    pub fn listen(port: u32) -> std::io::Result<VsockListener> {
        VsockListener::bind(VsockAddr::new(VMADDR_CID_ANY, port))
    }

    /// Connects to the parent's listener on `port` (CID 3).
    pub async fn connect_parent(port: u32) -> std::io::Result<VsockStream> {
        VsockStream::connect(VsockAddr::new(PARENT_CID, port)).await
    }
}
