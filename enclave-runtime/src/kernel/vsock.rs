//! `AF_VSOCK` stream sockets, the enclave's only channel.
//!
//! The parent side uses hybrid vsock over Unix sockets (Firecracker's convention, DESIGN.md):
//! a connection from the enclave to CID 3 port P is a host connection to the parent listener
//! `<run dir>/vsock.sock_P`; a parent connecting to the enclave's `<run dir>/vsock.sock` and
//! sending `CONNECT P\n` is queued on the enclave's listener for port P (see
//! `crate::vsock_host`). Either way the established stream is a host Unix stream, so data
//! moves between guest memory and that socket with the host kernel's own back-pressure.

use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::errno::{Errno, SysResult};
use super::file::{FileOps, Stat};

/// Longest a `shutdown` waits for the transmit ring to drain before its FIN.
const SHUTDOWN_FLUSH_LIMIT: Duration = Duration::from_secs(5);
use super::heartbeat::Heartbeat;
use super::hostfd::{last_errno, poll_one, wait_ready, HostFile, HostKind};
use super::socket::{Shutdown, Socket, VsockAddr, PARENT_CID, VMADDR_CID_ANY, VMADDR_PORT_ANY};

/// Most connections waiting on one listener.
pub const MAX_BACKLOG: u32 = 128;
/// First ephemeral port handed out.
const EPHEMERAL_START: u32 = 49152;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Connections accepted by the host side and waiting for the program's `accept`.
pub struct ListenQueue {
    pending: Mutex<VecDeque<(UnixStream, u32)>>,
    /// Semaphore eventfd: readable while connections are pending (for poll/epoll).
    event: OwnedFd,
    backlog: AtomicU32,
    closed: AtomicBool,
}

impl ListenQueue {
    fn new(backlog: u32) -> Result<Self, Errno> {
        // SAFETY: eventfd creates a new descriptor; no memory is passed.
        let fd = unsafe {
            libc::eventfd(
                0,
                libc::EFD_NONBLOCK | libc::EFD_SEMAPHORE | libc::EFD_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(last_errno());
        }
        Ok(Self {
            pending: Mutex::new(VecDeque::new()),
            // SAFETY: `fd` was just created and is owned by nobody else.
            event: unsafe { OwnedFd::from_raw_fd(fd) },
            backlog: AtomicU32::new(backlog.clamp(1, MAX_BACKLOG)),
            closed: AtomicBool::new(false),
        })
    }

    /// Queues a connection from the parent (source port `peer_port`); false when full/closed.
    ///
    /// `reply` is sent on the stream once the connection has a place in the backlog and before
    /// the program can accept it (so it precedes anything the program writes): the parent's
    /// `OK` is the truth. A reply that does not fit the fresh socket's buffer at once (never for
    /// a short line) refuses the connection rather than block the queue.
    pub fn push(&self, stream: UnixStream, peer_port: u32, reply: &[u8]) -> bool {
        let mut q = lock(&self.pending);
        if self.closed.load(Ordering::Acquire)
            || q.len() >= usize::try_from(self.backlog.load(Ordering::Acquire)).unwrap_or(1)
        {
            return false;
        }
        // SAFETY: sends `reply`, a live slice, on a socket descriptor `stream` owns.
        let sent = unsafe {
            libc::send(
                stream.as_raw_fd(),
                reply.as_ptr().cast(),
                reply.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        if usize::try_from(sent).ok() != Some(reply.len()) {
            return false;
        }
        q.push_back((stream, peer_port));
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from a live array to our eventfd.
        unsafe { libc::write(self.event.as_raw_fd(), one.as_ptr().cast(), 8) };
        true
    }

    fn pop(&self) -> Option<(UnixStream, u32)> {
        let mut n = [0u8; 8];
        // SAFETY: reads 8 bytes into a live array from our eventfd (semaphore mode: -1).
        let r = unsafe { libc::read(self.event.as_raw_fd(), n.as_mut_ptr().cast(), 8) };
        if r != 8 {
            return None;
        }
        lock(&self.pending).pop_front()
    }

    fn close(&self) {
        let mut q = lock(&self.pending);
        self.closed.store(true, Ordering::Release);
        q.clear();
    }
}

/// The enclave's vsock endpoint: its CID, the parent's socket directory, its listeners.
pub struct VsockHub {
    /// The enclave's CID.
    pub cid: u32,
    /// Where parent listeners live (`vsock.sock_<port>`), searched in order: the enclave's run
    /// directory (listeners for this enclave), then the run root (listeners for every enclave,
    /// which can exist before the enclave starts). Empty: the parent is unreachable.
    pub parent_dirs: Vec<PathBuf>,
    listeners: Mutex<HashMap<u32, Arc<ListenQueue>>>,
    next_ephemeral: AtomicU32,
    bound: Mutex<std::collections::HashSet<u32>>,
    heartbeat: Option<Arc<Heartbeat>>,
}

impl VsockHub {
    /// A hub for an enclave with `cid` whose parent sockets are in `parent_dirs`.
    pub fn new(cid: u32, parent_dirs: Vec<PathBuf>) -> Self {
        Self {
            cid,
            parent_dirs,
            listeners: Mutex::new(HashMap::new()),
            next_ephemeral: AtomicU32::new(EPHEMERAL_START),
            bound: Mutex::new(std::collections::HashSet::new()),
            heartbeat: None,
        }
    }

    /// The same hub, making Nitro's boot heartbeat `hb` at the program's first system call.
    #[must_use]
    pub fn with_heartbeat(mut self, hb: Arc<Heartbeat>) -> Self {
        self.heartbeat = Some(hb);
        self
    }

    /// The heartbeat to make at the program's first system call, if any.
    pub fn heartbeat(&self) -> Option<&Arc<Heartbeat>> {
        self.heartbeat.as_ref()
    }

    /// The listener for `port`, if the program listens there.
    pub fn listener(&self, port: u32) -> Option<Arc<ListenQueue>> {
        lock(&self.listeners).get(&port).cloned()
    }

    fn ephemeral(&self) -> u32 {
        let bound = lock(&self.bound);
        for _ in 0..16384 {
            let p = self.next_ephemeral.fetch_add(1, Ordering::AcqRel);
            let p = EPHEMERAL_START + (p - EPHEMERAL_START) % 16384;
            if !bound.contains(&p) {
                return p;
            }
        }
        EPHEMERAL_START
    }

    fn claim_port(&self, port: u32) -> Result<u32, Errno> {
        let port = if port == VMADDR_PORT_ANY {
            self.ephemeral()
        } else {
            port
        };
        if !lock(&self.bound).insert(port) {
            return Err(Errno(libc::EADDRINUSE));
        }
        Ok(port)
    }

    fn release_port(&self, port: u32) {
        lock(&self.bound).remove(&port);
        if let Some(q) = lock(&self.listeners).remove(&port) {
            q.close();
        }
    }
}

enum State {
    Fresh {
        bound: Option<u32>,
    },
    Listening {
        port: u32,
        queue: Arc<ListenQueue>,
    },
    Connected {
        stream: Arc<HostFile>,
        local: VsockAddr,
        peer: VsockAddr,
    },
    Closed,
}

/// An `AF_VSOCK` stream socket.
pub struct VsockSocket {
    hub: Arc<VsockHub>,
    state: Mutex<State>,
    flags: AtomicI32,
    stop: Arc<AtomicBool>,
}

impl VsockSocket {
    /// A new, unbound socket with status `flags`.
    pub fn new(hub: Arc<VsockHub>, flags: i32, stop: Arc<AtomicBool>) -> Self {
        Self {
            hub,
            state: Mutex::new(State::Fresh { bound: None }),
            flags: AtomicI32::new(flags),
            stop,
        }
    }

    fn connected(
        hub: Arc<VsockHub>,
        stream: UnixStream,
        local: VsockAddr,
        peer: VsockAddr,
        flags: i32,
        stop: Arc<AtomicBool>,
    ) -> Result<Self, Errno> {
        let file = HostFile::new(OwnedFd::from(stream), HostKind::Socket, flags, stop.clone())?;
        Ok(Self {
            hub,
            state: Mutex::new(State::Connected {
                stream: Arc::new(file),
                local,
                peer,
            }),
            flags: AtomicI32::new(flags),
            stop,
        })
    }

    fn stream(&self) -> Result<Arc<HostFile>, Errno> {
        match &*lock(&self.state) {
            State::Connected { stream, .. } => Ok(stream.clone()),
            _ => Err(Errno(libc::ENOTCONN)),
        }
    }

    fn nonblocking(&self) -> bool {
        self.flags.load(Ordering::Acquire) & libc::O_NONBLOCK != 0
    }
}

impl Drop for VsockSocket {
    fn drop(&mut self) {
        let port = match &*lock(&self.state) {
            State::Fresh { bound: Some(p) } => Some(*p),
            State::Listening { port, .. } => Some(*port),
            State::Connected { local, .. } => Some(local.port),
            _ => None,
        };
        if let Some(p) = port {
            self.hub.release_port(p);
        }
    }
}

impl Socket for VsockSocket {
    fn bind(&self, addr: VsockAddr) -> Result<(), Errno> {
        if addr.cid != VMADDR_CID_ANY && addr.cid != self.hub.cid {
            return Err(Errno(libc::EADDRNOTAVAIL));
        }
        let mut st = lock(&self.state);
        match &*st {
            State::Fresh { bound: None } => {
                let port = self.hub.claim_port(addr.port)?;
                *st = State::Fresh { bound: Some(port) };
                Ok(())
            }
            _ => Err(Errno::EINVAL),
        }
    }

    fn listen(&self, backlog: u32) -> Result<(), Errno> {
        let mut st = lock(&self.state);
        match &*st {
            State::Fresh { bound: Some(port) } => {
                let port = *port;
                let queue = Arc::new(ListenQueue::new(backlog)?);
                lock(&self.hub.listeners).insert(port, queue.clone());
                *st = State::Listening { port, queue };
                Ok(())
            }
            State::Listening { queue, .. } => {
                queue
                    .backlog
                    .store(backlog.clamp(1, MAX_BACKLOG), Ordering::Release);
                Ok(())
            }
            // Linux: listen on an unbound vsock socket is EINVAL.
            State::Fresh { bound: None } => Err(Errno::EINVAL),
            _ => Err(Errno::EINVAL),
        }
    }

    fn accept(&self, nonblock: bool) -> Result<(Arc<dyn FileOps>, VsockAddr), Errno> {
        let (queue, port) = match &*lock(&self.state) {
            State::Listening { queue, port } => (queue.clone(), *port),
            _ => return Err(Errno::EINVAL),
        };
        loop {
            if let Some((stream, peer_port)) = queue.pop() {
                let local = VsockAddr {
                    cid: self.hub.cid,
                    port,
                };
                let peer = VsockAddr {
                    cid: PARENT_CID,
                    port: peer_port,
                };
                let flags = libc::O_RDWR | if nonblock { libc::O_NONBLOCK } else { 0 };
                let sock = VsockSocket::connected(
                    self.hub.clone(),
                    stream,
                    local,
                    peer,
                    flags,
                    self.stop.clone(),
                )?;
                // The accepted socket shares the listener's port: do not release it on drop.
                let sock = AcceptedSocket(sock);
                return Ok((Arc::new(sock), peer));
            }
            if self.nonblocking() {
                return Err(Errno::EAGAIN);
            }
            wait_ready(queue.event.as_raw_fd(), libc::POLLIN, &self.stop, None)?;
        }
    }

    fn connect(&self, addr: VsockAddr) -> Result<(), Errno> {
        let bound = match &*lock(&self.state) {
            State::Fresh { bound } => *bound,
            State::Connected { .. } => return Err(Errno(libc::EISCONN)),
            _ => return Err(Errno::EINVAL),
        };
        if addr.cid != PARENT_CID {
            // Only the parent is reachable; the transport resets anything else.
            return Err(Errno(libc::ECONNRESET));
        }
        let name = format!("vsock.sock_{}", addr.port);
        let stream = self
            .hub
            .parent_dirs
            .iter()
            .find_map(|dir| UnixStream::connect(dir.join(&name)).ok())
            .ok_or(Errno(libc::ECONNRESET))?;
        let port = match bound {
            Some(p) => p,
            None => self.hub.claim_port(VMADDR_PORT_ANY)?,
        };
        let local = VsockAddr {
            cid: self.hub.cid,
            port,
        };
        let flags = self.flags.load(Ordering::Acquire);
        let file = HostFile::new(
            OwnedFd::from(stream),
            HostKind::Socket,
            flags,
            self.stop.clone(),
        )?;
        *lock(&self.state) = State::Connected {
            stream: Arc::new(file),
            local,
            peer: addr,
        };
        Ok(())
    }

    fn shutdown(&self, how: Shutdown) -> Result<(), Errno> {
        let s = self.stream()?;
        let how = match how {
            Shutdown::Read => libc::SHUT_RD,
            Shutdown::Write => libc::SHUT_WR,
            Shutdown::Both => libc::SHUT_RDWR,
        };
        if how != libc::SHUT_RD {
            // The FIN follows what the program's stub already queued.
            s.flush_tx_wait(SHUTDOWN_FLUSH_LIMIT)?;
        }
        let fd = s.host_fd().ok_or(Errno(libc::ENOTCONN))?;
        // SAFETY: shutdown on a socket descriptor we own.
        if unsafe { libc::shutdown(fd, how) } != 0 {
            return Err(last_errno());
        }
        Ok(())
    }

    fn local_addr(&self) -> Result<VsockAddr, Errno> {
        Ok(match &*lock(&self.state) {
            State::Fresh { bound } => VsockAddr {
                cid: self.hub.cid,
                port: bound.unwrap_or(VMADDR_PORT_ANY),
            },
            State::Listening { port, .. } => VsockAddr {
                cid: self.hub.cid,
                port: *port,
            },
            State::Connected { local, .. } => *local,
            State::Closed => return Err(Errno::EBADF),
        })
    }

    fn peer_addr(&self) -> Result<VsockAddr, Errno> {
        match &*lock(&self.state) {
            State::Connected { peer, .. } => Ok(*peer),
            _ => Err(Errno(libc::ENOTCONN)),
        }
    }

    fn recv(&self, buf: &mut [u8], flags: i32) -> Result<u64, Errno> {
        let s = self.stream()?;
        let fd = s.host_fd().ok_or(Errno(libc::ENOTCONN))?;
        let peek = flags & libc::MSG_PEEK;
        let once = || -> SysResult {
            // SAFETY: `buf` is writable for its length; the fd is ours.
            let n = unsafe {
                libc::recv(
                    fd,
                    buf.as_ptr().cast_mut().cast(),
                    buf.len(),
                    peek | libc::MSG_DONTWAIT,
                )
            };
            u64::try_from(n).map_err(|_| last_errno())
        };
        if flags & libc::MSG_DONTWAIT != 0 {
            return once();
        }
        let got = s.blocking(libc::POLLIN, None, once)?;
        if flags & libc::MSG_WAITALL == 0 || got == 0 || peek != 0 {
            return Ok(got);
        }
        // MSG_WAITALL: keep reading until full, end of stream, or an error after some data.
        let mut total = got;
        while total < buf.len() as u64 {
            let at = usize::try_from(total).map_err(|_| Errno::EINVAL)?;
            let rest = &mut buf[at..];
            let n = s.blocking(libc::POLLIN, None, || {
                // SAFETY: `rest` is writable for its length; the fd is ours.
                let n = unsafe {
                    libc::recv(fd, rest.as_mut_ptr().cast(), rest.len(), libc::MSG_DONTWAIT)
                };
                u64::try_from(n).map_err(|_| last_errno())
            });
            match n {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
        Ok(total)
    }

    fn send(&self, data: &[u8], flags: i32) -> Result<u64, Errno> {
        let s = self.stream()?;
        if flags & libc::MSG_DONTWAIT != 0 {
            return s.try_write(data);
        }
        s.write(data)
    }

    fn send_guest(
        &self,
        mem: &crate::memory::UserMemory<'_>,
        addr: u64,
        len: u64,
        flags: i32,
    ) -> Option<Result<u64, Errno>> {
        if flags & !(libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) != 0 {
            return None;
        }
        Some(
            self.stream()
                .and_then(|s| s.send_guest(mem, addr, len, flags & libc::MSG_DONTWAIT != 0)),
        )
    }

    fn recv_guest(
        &self,
        mem: &crate::memory::UserMemory<'_>,
        addr: u64,
        len: u64,
        flags: i32,
    ) -> Option<Result<u64, Errno>> {
        if flags & !libc::MSG_DONTWAIT != 0 {
            return None;
        }
        Some(
            self.stream()
                .and_then(|s| s.recv_guest(mem, addr, len, flags & libc::MSG_DONTWAIT != 0)),
        )
    }

    fn set_option(&self, level: i32, name: i32, value: &[u8]) -> Result<(), Errno> {
        const AF_VSOCK_LEVEL: i32 = 40;
        match (level, name) {
            (libc::SOL_SOCKET, libc::SO_RCVTIMEO | libc::SO_SNDTIMEO) => {
                if value.len() < 16 {
                    return Err(Errno::EINVAL);
                }
                let sec = i64::from_le_bytes(value[..8].try_into().map_err(|_| Errno::EINVAL)?);
                let usec = i64::from_le_bytes(value[8..16].try_into().map_err(|_| Errno::EINVAL)?);
                let sec = u64::try_from(sec).map_err(|_| Errno::EINVAL)?;
                let usec = u64::try_from(usec)
                    .ok()
                    .filter(|u| *u < 1_000_000)
                    .ok_or(Errno::EINVAL)?;
                let d = Duration::from_secs(sec) + Duration::from_micros(usec);
                let d = (!d.is_zero()).then_some(d);
                if let Ok(s) = self.stream() {
                    let slot = if name == libc::SO_RCVTIMEO {
                        &s.recv_timeout
                    } else {
                        &s.send_timeout
                    };
                    *lock(slot) = d;
                }
                Ok(())
            }
            (libc::SOL_SOCKET, _) | (AF_VSOCK_LEVEL, _) => {
                if value.len() > 256 {
                    return Err(Errno::EINVAL);
                }
                // SO_REUSEADDR, SO_KEEPALIVE, SO_RCVBUF/SNDBUF, SO_LINGER…: accepted, no effect.
                Ok(())
            }
            (libc::IPPROTO_TCP, _) => Err(Errno::EOPNOTSUPP),
            _ => Err(Errno(libc::ENOPROTOOPT)),
        }
    }

    fn get_option(&self, level: i32, name: i32) -> Result<Vec<u8>, Errno> {
        let int = |v: i32| v.to_le_bytes().to_vec();
        match (level, name) {
            (libc::SOL_SOCKET, libc::SO_ERROR) => Ok(int(0)),
            (libc::SOL_SOCKET, libc::SO_TYPE) => Ok(int(libc::SOCK_STREAM)),
            (libc::SOL_SOCKET, libc::SO_DOMAIN) => Ok(int(40)),
            (libc::SOL_SOCKET, libc::SO_PROTOCOL) => Ok(int(0)),
            (libc::SOL_SOCKET, libc::SO_ACCEPTCONN) => Ok(int(i32::from(matches!(
                &*lock(&self.state),
                State::Listening { .. }
            )))),
            (libc::SOL_SOCKET, libc::SO_RCVBUF | libc::SO_SNDBUF) => Ok(int(262_144)),
            (libc::SOL_SOCKET, libc::SO_REUSEADDR | libc::SO_KEEPALIVE) => Ok(int(0)),
            (libc::SOL_SOCKET, libc::SO_RCVTIMEO | libc::SO_SNDTIMEO) => Ok(vec![0; 16]),
            (libc::SOL_SOCKET, libc::SO_LINGER) => Ok(vec![0; 8]),
            _ => Err(Errno(libc::ENOPROTOOPT)),
        }
    }
}

impl FileOps for VsockSocket {
    fn read(&self, buf: &mut [u8]) -> SysResult {
        self.stream()?.read(buf)
    }

    fn read_more(&self, buf: &mut [u8]) -> SysResult {
        self.stream()?.read_more(buf)
    }

    fn write(&self, data: &[u8]) -> SysResult {
        self.stream()?.write(data)
    }

    fn read_guest(
        &self,
        mem: &crate::memory::UserMemory<'_>,
        addr: u64,
        len: u64,
        more: bool,
    ) -> Option<SysResult> {
        match self.stream() {
            Ok(s) => s.read_guest(mem, addr, len, more),
            Err(e) => Some(Err(e)),
        }
    }

    fn write_guest(
        &self,
        mem: &crate::memory::UserMemory<'_>,
        addr: u64,
        len: u64,
    ) -> Option<SysResult> {
        match self.stream() {
            Ok(s) => s.write_guest(mem, addr, len),
            Err(e) => Some(Err(e)),
        }
    }

    fn stat(&self) -> Result<Stat, Errno> {
        Ok(Stat {
            mode: libc::S_IFSOCK | 0o777,
            nlink: 1,
            blksize: 4096,
            ..Stat::default()
        })
    }

    fn poll_ready(&self) -> i16 {
        match &*lock(&self.state) {
            State::Connected { stream, .. } => stream.poll_ready(),
            State::Listening { queue, .. } => {
                poll_one(queue.event.as_raw_fd(), libc::POLLIN, 0) & libc::POLLIN
            }
            // An unconnected stream socket polls as hung up and writable (Linux: POLLOUT|POLLHUP).
            _ => libc::POLLOUT | libc::POLLHUP,
        }
    }

    fn status_flags(&self) -> i32 {
        self.flags.load(Ordering::Acquire)
    }

    fn set_status_flags(&self, flags: i32) {
        let keep = self.flags.load(Ordering::Acquire) & !libc::O_NONBLOCK;
        let new = keep | (flags & libc::O_NONBLOCK);
        self.flags.store(new, Ordering::Release);
        if let Ok(s) = self.stream() {
            s.set_status_flags(new);
        }
    }

    fn host_fd(&self) -> Option<std::os::fd::RawFd> {
        match &*lock(&self.state) {
            State::Connected { stream, .. } => stream.host_fd(),
            State::Listening { queue, .. } => Some(queue.event.as_raw_fd()),
            _ => None,
        }
    }

    fn as_socket(&self) -> Option<&dyn Socket> {
        Some(self)
    }

    fn vsock_stream(&self) -> Option<Arc<HostFile>> {
        self.stream().ok()
    }
}

/// A socket returned by `accept`: it shares the listener's port, so dropping it must not free
/// that port (the listener still owns it).
struct AcceptedSocket(VsockSocket);

impl Drop for AcceptedSocket {
    fn drop(&mut self) {
        *lock(&self.0.state) = State::Closed;
    }
}

macro_rules! delegate_file {
    ($($name:ident($($arg:ident: $ty:ty),*) -> $ret:ty;)*) => {
        impl FileOps for AcceptedSocket {
            $(fn $name(&self, $($arg: $ty),*) -> $ret { self.0.$name($($arg),*) })*
            fn as_socket(&self) -> Option<&dyn Socket> {
                Some(&self.0)
            }
            fn vsock_stream(&self) -> Option<Arc<HostFile>> {
                self.0.vsock_stream()
            }
            fn write_guest(
                &self,
                mem: &crate::memory::UserMemory<'_>,
                addr: u64,
                len: u64,
            ) -> Option<SysResult> {
                self.0.write_guest(mem, addr, len)
            }
            fn read_guest(
                &self,
                mem: &crate::memory::UserMemory<'_>,
                addr: u64,
                len: u64,
                more: bool,
            ) -> Option<SysResult> {
                self.0.read_guest(mem, addr, len, more)
            }
        }
    };
}

delegate_file! {
    read(buf: &mut [u8]) -> SysResult;
    read_more(buf: &mut [u8]) -> SysResult;
    write(data: &[u8]) -> SysResult;
    stat() -> Result<Stat, Errno>;
    poll_ready() -> i16;
    status_flags() -> i32;
    set_status_flags(flags: i32) -> ();
    host_fd() -> Option<std::os::fd::RawFd>;
}
