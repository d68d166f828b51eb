//! Files backed by a host descriptor: vsock streams (host Unix sockets), pipes and eventfds.
//!
//! The host descriptor is always non-blocking; the guest's blocking semantics are made here:
//! an operation that would block waits for readiness with `poll` in short slices, checking the
//! enclave's stop flag, so a blocked guest thread never keeps the enclave from ending and never
//! holds a kernel lock while it waits.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::errno::{Errno, SysResult};
use super::fastio::{Drained, TxRing};
use super::file::{FileOps, Stat};

/// Longest single wait before the stop flag is checked again.
const WAIT_SLICE_MS: i32 = 50;

/// The errno of the last failed libc call.
pub fn last_errno() -> Errno {
    Errno(
        std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO),
    )
}

/// Puts a host descriptor in non-blocking mode.
pub fn set_nonblocking(fd: RawFd) -> Result<(), Errno> {
    // SAFETY: fcntl on a descriptor we own; no memory is passed.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(last_errno());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(last_errno());
    }
    Ok(())
}

/// Polls host descriptors, at most `timeout_ms`; their `revents` are filled in. Returns how
/// many are ready (0 on a time-out or an error).
pub fn poll_fds(fds: &mut [libc::pollfd], timeout_ms: i32) -> usize {
    let Ok(n) = libc::nfds_t::try_from(fds.len()) else {
        return 0;
    };
    // SAFETY: `fds` is a valid, exclusively borrowed array of `n` pollfds for the duration of
    // the call.
    let ready = unsafe { libc::poll(fds.as_mut_ptr(), n, timeout_ms) };
    usize::try_from(ready).unwrap_or(0)
}

/// Polls one host descriptor for `events`, at most `timeout_ms`; returns `revents`.
pub fn poll_one(fd: RawFd, events: i16, timeout_ms: i32) -> i16 {
    let mut p = [libc::pollfd {
        fd,
        events,
        revents: 0,
    }];
    if poll_fds(&mut p, timeout_ms) > 0 {
        p[0].revents
    } else {
        0
    }
}

/// Waits until `fd` reports one of `events` (or an error/hang-up); `EINTR` when the enclave is
/// stopping, `ETIMEDOUT` past `deadline`.
pub fn wait_ready(
    fd: RawFd,
    events: i16,
    stop: &AtomicBool,
    deadline: Option<Instant>,
) -> Result<i16, Errno> {
    loop {
        if stop.load(Ordering::Acquire) {
            return Err(Errno::EINTR);
        }
        let mut slice = WAIT_SLICE_MS;
        if let Some(d) = deadline {
            let left = d.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Errno::ETIMEDOUT);
            }
            slice = slice.min(
                i32::try_from(left.as_millis())
                    .unwrap_or(WAIT_SLICE_MS)
                    .max(1),
            );
        }
        let r = poll_one(fd, events | libc::POLLERR | libc::POLLHUP, slice);
        if r != 0 {
            return Ok(r);
        }
    }
}

/// What a host-backed file is, for `fstat` and error choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKind {
    /// A vsock stream (host Unix stream socket).
    Socket,
    /// One end of a pipe.
    Pipe,
    /// An eventfd.
    EventFd,
}

/// A file backed by a non-blocking host descriptor.
pub struct HostFile {
    fd: OwnedFd,
    kind: HostKind,
    /// Guest-visible status flags (`O_NONBLOCK`, access mode).
    flags: AtomicI32,
    stop: Arc<AtomicBool>,
    /// Receive/send timeouts (SO_RCVTIMEO / SO_SNDTIMEO), none when zero.
    pub recv_timeout: std::sync::Mutex<Option<Duration>>,
    /// See `recv_timeout`.
    pub send_timeout: std::sync::Mutex<Option<Duration>>,
    /// The vsock transmit ring the program's stub fills for this stream, if it has one.
    tx: std::sync::Mutex<Option<Arc<TxRing>>>,
}

impl HostFile {
    /// Wraps `fd` (made non-blocking) with guest status `flags`.
    pub fn new(
        fd: OwnedFd,
        kind: HostKind,
        flags: i32,
        stop: Arc<AtomicBool>,
    ) -> Result<Self, Errno> {
        set_nonblocking(fd.as_raw_fd())?;
        Ok(Self {
            fd,
            kind,
            flags: AtomicI32::new(flags),
            stop,
            recv_timeout: std::sync::Mutex::new(None),
            send_timeout: std::sync::Mutex::new(None),
            tx: std::sync::Mutex::new(None),
        })
    }

    fn tx(&self) -> std::sync::MutexGuard<'_, Option<Arc<TxRing>>> {
        self.tx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The transmit ring of this stream (vsock fast path), if any.
    pub fn tx_ring(&self) -> Option<Arc<TxRing>> {
        self.tx().clone()
    }

    /// Attaches or detaches the transmit ring (`kernel::fastio`).
    pub fn set_tx_ring(&self, ring: Option<Arc<TxRing>>) {
        *self.tx() = ring;
    }

    /// The host socket, for a stream.
    pub fn host_socket(&self) -> Option<RawFd> {
        (self.kind == HostKind::Socket).then(|| self.fd.as_raw_fd())
    }

    /// Sends what the program's stub left in this stream's transmit ring, without blocking:
    /// every other write, send or shutdown comes after it. `EAGAIN` while bytes remain.
    pub fn flush_tx(&self) -> Result<(), Errno> {
        let Some(ring) = self.tx_ring() else {
            return Ok(());
        };
        match ring.drain(self.fd.as_raw_fd())? {
            Drained::Empty => Ok(()),
            Drained::Pending => Err(Errno::EAGAIN),
        }
    }

    /// [`HostFile::flush_tx`], waiting for room (whatever the guest's blocking mode) until the
    /// enclave stops or `limit` passes: before a shutdown, whose FIN must follow the bytes.
    pub fn flush_tx_wait(&self, limit: Duration) -> Result<(), Errno> {
        let deadline = Instant::now().checked_add(limit);
        loop {
            match self.flush_tx() {
                Err(e) if e == Errno::EAGAIN => {
                    wait_ready(self.fd.as_raw_fd(), libc::POLLOUT, &self.stop, deadline)?;
                }
                r => return r,
            }
        }
    }

    /// The kind of file.
    pub fn kind(&self) -> HostKind {
        self.kind
    }

    /// True when the guest asked for non-blocking operation.
    pub fn nonblocking(&self) -> bool {
        self.flags.load(Ordering::Acquire) & libc::O_NONBLOCK != 0
    }

    fn deadline(t: &std::sync::Mutex<Option<Duration>>) -> Option<Instant> {
        t.lock()
            .ok()
            .and_then(|g| *g)
            .and_then(|d| Instant::now().checked_add(d))
    }

    /// One non-blocking host read.
    pub fn try_read(&self, buf: &mut [u8]) -> SysResult {
        // SAFETY: `buf` is a valid writable buffer of `buf.len()` bytes; the fd is ours.
        let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        u64::try_from(n).map_err(|_| last_errno())
    }

    /// One non-blocking host write (no SIGPIPE: sockets use send with MSG_NOSIGNAL).
    pub fn try_write(&self, data: &[u8]) -> SysResult {
        let fd = self.fd.as_raw_fd();
        let n = if self.kind == HostKind::Socket {
            self.flush_tx()?;
            // SAFETY: `data` is valid for reads of its length; the fd is ours.
            unsafe { libc::send(fd, data.as_ptr().cast(), data.len(), libc::MSG_NOSIGNAL) }
        } else {
            // SAFETY: as above.
            unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) }
        };
        u64::try_from(n).map_err(|_| last_errno())
    }

    /// Sends the program's `addr..addr+len` on this socket straight from guest memory (no copy
    /// in the VMM), waiting for room unless `dontwait` or the guest's non-blocking mode.
    pub fn send_guest(
        &self,
        mem: &crate::memory::UserMemory<'_>,
        addr: u64,
        len: u64,
        dontwait: bool,
    ) -> SysResult {
        let fd = self.fd.as_raw_fd();
        let once = || {
            self.flush_tx()?;
            mem.with_host_range(addr, len, |ptr, n| {
                // SAFETY: `ptr..ptr+n` is mapped guest memory, valid during this closure
                // (`with_host_range`); the kernel only reads it. The fd is ours.
                let sent = unsafe { libc::send(fd, ptr.cast(), n, libc::MSG_NOSIGNAL) };
                u64::try_from(sent).map_err(|_| last_errno())
            })
            .map_err(|_| Errno::EFAULT)?
        };
        let r = if dontwait {
            once()
        } else {
            self.blocking(libc::POLLOUT, Self::deadline(&self.send_timeout), once)
        };
        if r == Err(Errno(libc::ECONNRESET)) {
            return Err(Errno::EPIPE);
        }
        r
    }

    /// Receives into the program's `addr..addr+len` straight from this socket (no copy in the
    /// VMM), waiting for data unless `dontwait` or the guest's non-blocking mode.
    pub fn recv_guest(
        &self,
        mem: &crate::memory::UserMemory<'_>,
        addr: u64,
        len: u64,
        dontwait: bool,
    ) -> SysResult {
        let fd = self.fd.as_raw_fd();
        let once = || {
            mem.with_host_range_mut(addr, len, |ptr, n| {
                // SAFETY: `ptr..ptr+n` is mapped, writable guest memory, valid during this
                // closure (`with_host_range_mut`); the kernel writes at most `n` bytes there.
                let got = unsafe { libc::recv(fd, ptr.cast(), n, libc::MSG_DONTWAIT) };
                u64::try_from(got).map_err(|_| last_errno())
            })
            .map_err(|_| Errno::EFAULT)?
        };
        if dontwait {
            return once();
        }
        self.blocking(libc::POLLIN, Self::deadline(&self.recv_timeout), once)
    }

    /// Runs `op` until it stops returning `EAGAIN`, waiting for `events` in between (unless the
    /// guest asked for non-blocking mode).
    pub fn blocking<F: FnMut() -> SysResult>(
        &self,
        events: i16,
        deadline: Option<Instant>,
        mut op: F,
    ) -> SysResult {
        loop {
            match op() {
                Err(e) if e == Errno::EAGAIN && !self.nonblocking() => {
                    match wait_ready(self.fd.as_raw_fd(), events, &self.stop, deadline) {
                        Ok(_) => continue,
                        Err(e) if e == Errno::ETIMEDOUT => return Err(Errno::EAGAIN),
                        Err(e) => return Err(e),
                    }
                }
                r => return r,
            }
        }
    }
}

impl FileOps for HostFile {
    fn read(&self, buf: &mut [u8]) -> SysResult {
        let deadline = Self::deadline(&self.recv_timeout);
        self.blocking(libc::POLLIN, deadline, || self.try_read(buf))
    }

    fn read_more(&self, buf: &mut [u8]) -> SysResult {
        match self.try_read(buf) {
            Err(e) if e == Errno::EAGAIN => Ok(0),
            r => r,
        }
    }

    fn write(&self, data: &[u8]) -> SysResult {
        let deadline = Self::deadline(&self.send_timeout);
        let r = self.blocking(libc::POLLOUT, deadline, || self.try_write(data));
        if r == Err(Errno(libc::ECONNRESET)) && self.kind == HostKind::Socket {
            return Err(Errno::EPIPE);
        }
        r
    }

    fn read_guest(
        &self,
        mem: &crate::memory::UserMemory<'_>,
        addr: u64,
        len: u64,
        more: bool,
    ) -> Option<SysResult> {
        if self.kind != HostKind::Socket {
            return None;
        }
        Some(match self.recv_guest(mem, addr, len, more) {
            Err(e) if more && e == Errno::EAGAIN => Ok(0),
            r => r,
        })
    }

    fn write_guest(
        &self,
        mem: &crate::memory::UserMemory<'_>,
        addr: u64,
        len: u64,
    ) -> Option<SysResult> {
        (self.kind == HostKind::Socket).then(|| self.send_guest(mem, addr, len, false))
    }

    fn stat(&self) -> Result<Stat, Errno> {
        let mode = match self.kind {
            HostKind::Socket => libc::S_IFSOCK | 0o777,
            HostKind::Pipe => libc::S_IFIFO | 0o600,
            HostKind::EventFd => 0o600,
        };
        Ok(Stat {
            mode,
            nlink: 1,
            blksize: 4096,
            ..Stat::default()
        })
    }

    fn poll_ready(&self) -> i16 {
        poll_one(
            self.fd.as_raw_fd(),
            libc::POLLIN | libc::POLLOUT | libc::POLLRDHUP,
            0,
        )
    }

    fn status_flags(&self) -> i32 {
        self.flags.load(Ordering::Acquire)
    }

    fn set_status_flags(&self, flags: i32) {
        let keep = self.flags.load(Ordering::Acquire) & !(libc::O_NONBLOCK | libc::O_APPEND);
        self.flags.store(
            keep | (flags & (libc::O_NONBLOCK | libc::O_APPEND)),
            Ordering::Release,
        );
    }

    fn host_fd(&self) -> Option<RawFd> {
        Some(self.fd.as_raw_fd())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    fn pair(flags: i32) -> (HostFile, UnixStream, Arc<AtomicBool>) {
        let (a, b) = UnixStream::pair().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let f = HostFile::new(OwnedFd::from(a), HostKind::Socket, flags, stop.clone()).unwrap();
        (f, b, stop)
    }

    #[test]
    fn nonblocking_read_says_eagain_and_blocking_read_waits() {
        use std::io::Write;
        let (f, mut peer, _) = pair(libc::O_RDWR | libc::O_NONBLOCK);
        let mut buf = [0u8; 8];
        assert_eq!(f.read(&mut buf), Err(Errno::EAGAIN));
        peer.write_all(b"hi").unwrap();
        assert_eq!(f.read(&mut buf), Ok(2));
        f.set_status_flags(0);
        assert!(!f.nonblocking());
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            peer.write_all(b"later").unwrap();
            peer
        });
        assert_eq!(f.read(&mut buf), Ok(5));
        drop(t.join().unwrap());
        assert_eq!(f.read(&mut buf), Ok(0), "peer closed: end of file");
        assert_eq!(f.write(b"x"), Err(Errno::EPIPE));
    }

    #[test]
    fn blocked_read_returns_when_stopping() {
        let (f, _peer, stop) = pair(libc::O_RDWR);
        let s = stop.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            s.store(true, Ordering::Release);
        });
        let mut buf = [0u8; 8];
        assert_eq!(f.read(&mut buf), Err(Errno::EINTR));
    }

    #[test]
    fn receive_timeout_gives_eagain() {
        let (f, _peer, _) = pair(libc::O_RDWR);
        *f.recv_timeout.lock().unwrap() = Some(Duration::from_millis(20));
        let mut buf = [0u8; 8];
        assert_eq!(f.read(&mut buf), Err(Errno::EAGAIN));
    }
}
