//! The socket interface of the enclave kernel. The only family is `AF_VSOCK` (see [`super::vsock`]);
//! every other family is refused with `EAFNOSUPPORT`, as on a kernel built without it.

use super::errno::Errno;
use super::file::FileOps;
use std::sync::Arc;

/// `AF_VSOCK`.
pub const AF_VSOCK: u16 = 40;
/// Size of `struct sockaddr_vm`.
pub const SOCKADDR_VM_SIZE: usize = 16;
/// `VMADDR_CID_ANY`.
pub const VMADDR_CID_ANY: u32 = u32::MAX;
/// `VMADDR_PORT_ANY`.
pub const VMADDR_PORT_ANY: u32 = u32::MAX;
/// The parent instance's CID, as on Nitro.
pub const PARENT_CID: u32 = 3;

/// A vsock address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VsockAddr {
    /// Context id.
    pub cid: u32,
    /// Port.
    pub port: u32,
}

impl VsockAddr {
    /// Encodes as `struct sockaddr_vm`.
    pub fn to_bytes(self) -> [u8; SOCKADDR_VM_SIZE] {
        let mut b = [0u8; SOCKADDR_VM_SIZE];
        b[0..2].copy_from_slice(&AF_VSOCK.to_le_bytes());
        b[4..8].copy_from_slice(&self.port.to_le_bytes());
        b[8..12].copy_from_slice(&self.cid.to_le_bytes());
        b
    }

    /// Decodes a `struct sockaddr_vm` of `len` bytes from the program.
    pub fn from_bytes(b: &[u8]) -> Result<Self, Errno> {
        if b.len() < SOCKADDR_VM_SIZE {
            return Err(Errno::EINVAL);
        }
        let family = u16::from_le_bytes([b[0], b[1]]);
        if family != AF_VSOCK {
            return Err(Errno::EAFNOSUPPORT);
        }
        Ok(Self {
            port: u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
            cid: u32::from_le_bytes([b[8], b[9], b[10], b[11]]),
        })
    }
}

/// How a shutdown applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shutdown {
    /// No more receives.
    Read,
    /// No more sends.
    Write,
    /// Both.
    Both,
}

/// Operations of a socket beyond those of a file.
pub trait Socket: Send + Sync {
    /// `bind`.
    fn bind(&self, addr: VsockAddr) -> Result<(), Errno>;
    /// `listen`.
    fn listen(&self, backlog: u32) -> Result<(), Errno>;
    /// `accept`: the new connection and its peer's address.
    fn accept(&self, nonblock: bool) -> Result<(Arc<dyn FileOps>, VsockAddr), Errno>;
    /// `connect`.
    fn connect(&self, addr: VsockAddr) -> Result<(), Errno>;
    /// `shutdown`.
    fn shutdown(&self, how: Shutdown) -> Result<(), Errno>;
    /// `getsockname`.
    fn local_addr(&self) -> Result<VsockAddr, Errno>;
    /// `getpeername`.
    fn peer_addr(&self) -> Result<VsockAddr, Errno>;
    /// `recv` with flags (`MSG_PEEK`, `MSG_DONTWAIT`, `MSG_WAITALL`).
    fn recv(&self, buf: &mut [u8], flags: i32) -> Result<u64, Errno>;
    /// `send` with flags (`MSG_DONTWAIT`).
    fn send(&self, data: &[u8], flags: i32) -> Result<u64, Errno>;
    /// `send` straight from the program's `addr..addr+len` (no copy in the VMM); `None`: the
    /// socket or the flags need [`Socket::send`].
    fn send_guest(
        &self,
        _mem: &crate::memory::UserMemory<'_>,
        _addr: u64,
        _len: u64,
        _flags: i32,
    ) -> Option<Result<u64, Errno>> {
        None
    }
    /// `recv` straight into the program's `addr..addr+len`; `None`: the socket or the flags
    /// (`MSG_PEEK`, `MSG_WAITALL`) need [`Socket::recv`].
    fn recv_guest(
        &self,
        _mem: &crate::memory::UserMemory<'_>,
        _addr: u64,
        _len: u64,
        _flags: i32,
    ) -> Option<Result<u64, Errno>> {
        None
    }
    /// `setsockopt` for the options std and tokio set; others `ENOPROTOOPT`.
    fn set_option(&self, level: i32, name: i32, value: &[u8]) -> Result<(), Errno>;
    /// `getsockopt`: the value bytes.
    fn get_option(&self, level: i32, name: i32) -> Result<Vec<u8>, Errno>;
}
