//! Open file descriptions and the descriptor table.
//!
//! Every open file is an `Arc<dyn FileOps>`: image files and directories, the console, and (with
//! the vsock work) sockets, pipes and eventfds. Operations a kind of file does not support get
//! the errno Linux gives for them by default.

use std::sync::Arc;

use super::errno::{Errno, SysResult};
use crate::memory::UserMemory;

/// Largest number of descriptors a program may hold (RLIMIT_NOFILE).
pub const MAX_FDS: usize = 1024;

/// `struct stat` as the x86_64 Linux ABI lays it out (144 bytes).
#[derive(Debug, Clone, Copy, Default)]
pub struct Stat {
    /// Device.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// Link count.
    pub nlink: u64,
    /// File type and permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Device number for special files.
    pub rdev: u64,
    /// Size in bytes.
    pub size: u64,
    /// Preferred I/O block size.
    pub blksize: u64,
    /// 512-byte blocks allocated.
    pub blocks: u64,
}

impl Stat {
    /// Serializes to the x86_64 `struct stat` layout.
    pub fn to_bytes(&self) -> [u8; 144] {
        let mut b = [0u8; 144];
        b[0..8].copy_from_slice(&self.dev.to_le_bytes());
        b[8..16].copy_from_slice(&self.ino.to_le_bytes());
        b[16..24].copy_from_slice(&self.nlink.to_le_bytes());
        b[24..28].copy_from_slice(&self.mode.to_le_bytes());
        b[28..32].copy_from_slice(&self.uid.to_le_bytes());
        b[32..36].copy_from_slice(&self.gid.to_le_bytes());
        b[40..48].copy_from_slice(&self.rdev.to_le_bytes());
        b[48..56].copy_from_slice(&self.size.to_le_bytes());
        b[56..64].copy_from_slice(&self.blksize.to_le_bytes());
        b[64..72].copy_from_slice(&self.blocks.to_le_bytes());
        b
    }
}

/// Operations on an open file description. Offsets live inside the implementation.
pub trait FileOps: Send + Sync {
    /// Reads into `buf` at the current offset.
    fn read(&self, _buf: &mut [u8]) -> SysResult {
        Err(Errno::EINVAL)
    }
    /// Writes `data` at the current offset.
    fn write(&self, _data: &[u8]) -> SysResult {
        Err(Errno::EBADF)
    }
    /// Reads at an explicit offset without moving the current one.
    fn pread(&self, _buf: &mut [u8], _offset: u64) -> SysResult {
        Err(Errno::ESPIPE)
    }
    /// Repositions the offset.
    fn lseek(&self, _offset: i64, _whence: i32) -> SysResult {
        Err(Errno::ESPIPE)
    }
    /// Describes the file.
    fn stat(&self) -> Result<Stat, Errno>;
    /// Writes directory entries (`linux_dirent64`) into `out`; returns bytes written.
    fn getdents64(&self, _out: &mut Vec<u8>, _max: usize) -> SysResult {
        Err(Errno::ENOTDIR)
    }
    /// Device control; most files are not terminals.
    fn ioctl(&self, _cmd: u64, _arg: u64, _mem: &UserMemory<'_>) -> SysResult {
        Err(Errno::ENOTTY)
    }
    /// Poll readiness (`POLLIN`/`POLLOUT` bits) right now.
    fn poll_ready(&self) -> i16 {
        libc::POLLIN | libc::POLLOUT
    }
    /// Path of the file inside the image, if it has one (for `openat` relative to a dir fd).
    fn path(&self) -> Option<&str> {
        None
    }
    /// Writes at an explicit offset without moving the current one.
    fn pwrite(&self, _data: &[u8], _offset: u64) -> SysResult {
        Err(Errno::ESPIPE)
    }
    /// File status flags as `F_GETFL` reports them (access mode, `O_NONBLOCK`, …).
    fn status_flags(&self) -> i32 {
        libc::O_RDWR
    }
    /// Changes the settable status flags (`F_SETFL`, `FIONBIO`: `O_NONBLOCK`, `O_APPEND`).
    fn set_status_flags(&self, _flags: i32) {}
    /// Continues a read that already moved data: must not block (a stream returns what is
    /// there). Files that never block need not override it.
    fn read_more(&self, buf: &mut [u8]) -> SysResult {
        self.read(buf)
    }
    /// The host descriptor whose readiness is this file's (sockets, pipes, eventfds), for
    /// `poll` and `epoll`. Files without one are always ready.
    fn host_fd(&self) -> Option<std::os::fd::RawFd> {
        None
    }
    /// Reads into guest memory `addr..addr+len` at the current offset without a host copy,
    /// for files that can put data straight into guest memory (host streams); `more`: data
    /// already moved in this call, so return 0 instead of waiting (as
    /// [`FileOps::read_more`]). `None`: use [`FileOps::read`] with a copy.
    fn read_guest(
        &self,
        _mem: &crate::memory::UserMemory<'_>,
        _addr: u64,
        _len: u64,
        _more: bool,
    ) -> Option<SysResult> {
        None
    }
    /// Writes guest memory `addr..addr+len` at the current offset without a host copy, for
    /// files that can take it straight from guest memory (host streams); `None`: use
    /// [`FileOps::write`] with a copy.
    fn write_guest(
        &self,
        _mem: &crate::memory::UserMemory<'_>,
        _addr: u64,
        _len: u64,
    ) -> Option<SysResult> {
        None
    }
    /// The socket behind this file, if it is one.
    fn as_socket(&self) -> Option<&dyn super::socket::Socket> {
        None
    }
    /// The host stream of a connected vsock socket (for the transmit fast path).
    fn vsock_stream(&self) -> Option<Arc<super::hostfd::HostFile>> {
        None
    }
}

/// One descriptor slot: the description and its close-on-exec flag.
#[derive(Clone)]
pub struct Descriptor {
    /// The open file description (shared by `dup`).
    pub file: Arc<dyn FileOps>,
    /// `O_CLOEXEC`/`FD_CLOEXEC`.
    pub cloexec: bool,
}

/// The descriptor table.
#[derive(Default)]
pub struct FdTable {
    slots: Vec<Option<Descriptor>>,
    /// Descriptors on the vsock fast path are taken off it before their number changes hands.
    fastio: Option<Arc<super::fastio::FastIo>>,
}

impl FdTable {
    /// Looks up a descriptor number coming from the program.
    pub fn get(&self, fd: u64) -> Result<&Descriptor, Errno> {
        let i = usize::try_from(fd).map_err(|_| Errno::EBADF)?;
        self.slots
            .get(i)
            .and_then(Option::as_ref)
            .ok_or(Errno::EBADF)
    }

    /// Installs `file` at the lowest free number ≥ `min`.
    pub fn insert_from(&mut self, min: usize, d: Descriptor) -> Result<u64, Errno> {
        let free = (min..MAX_FDS).find(|&i| self.slots.get(i).is_none_or(Option::is_none));
        let i = free.ok_or(Errno::EMFILE)?;
        if self.slots.len() <= i {
            self.slots.resize_with(i + 1, || None);
        }
        self.slots[i] = Some(d);
        Ok(i as u64)
    }

    /// Installs `file` at the lowest free number.
    pub fn insert(&mut self, d: Descriptor) -> Result<u64, Errno> {
        self.insert_from(0, d)
    }

    /// Installs at exactly `fd`, replacing what was there (`dup2`).
    pub fn insert_at(&mut self, fd: u64, d: Descriptor) -> Result<u64, Errno> {
        let i = usize::try_from(fd)
            .ok()
            .filter(|&i| i < MAX_FDS)
            .ok_or(Errno::EBADF)?;
        if self.slots.len() <= i {
            self.slots.resize_with(i + 1, || None);
        }
        if self.slots[i].is_some() {
            self.unbind(fd);
        }
        self.slots[i] = Some(d);
        Ok(fd)
    }

    /// Removes a descriptor.
    pub fn remove(&mut self, fd: u64) -> Result<Descriptor, Errno> {
        let i = usize::try_from(fd).map_err(|_| Errno::EBADF)?;
        if self.slots.get(i).is_some_and(Option::is_some) {
            self.unbind(fd);
        }
        self.slots
            .get_mut(i)
            .and_then(Option::take)
            .ok_or(Errno::EBADF)
    }

    /// Installs the enclave's fast-I/O state.
    pub fn set_fastio(&mut self, fastio: Arc<super::fastio::FastIo>) {
        self.fastio = Some(fastio);
    }

    /// Puts descriptor `fd` on the vsock fast path when it is a connected vsock stream.
    pub fn bind_fast(&self, fd: u64) {
        let (Some(f), Ok(d)) = (&self.fastio, self.get(fd)) else {
            return;
        };
        if let Some(stream) = d.file.vsock_stream() {
            f.bind(fd, &stream);
        }
    }

    fn unbind(&self, fd: u64) {
        if let Some(f) = &self.fastio {
            f.unbind(fd);
        }
    }

    /// Number of open descriptors.
    pub fn len(&self) -> usize {
        self.slots.iter().filter(|s| s.is_some()).count()
    }

    /// True when no descriptor is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
