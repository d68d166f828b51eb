//! Readiness and in-enclave channels: epoll, eventfd, pipes.
//!
//! All three are host objects: a guest epoll instance is a host epoll over the host
//! descriptors of the guest's sockets, pipes and eventfds (so level/edge/one-shot semantics
//! are the host kernel's own), an eventfd is a host eventfd and a pipe a host pipe. Files
//! without a host descriptor (image files, the console) cannot be added to epoll, as regular
//! files cannot on Linux (`EPERM`).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::errno::{Errno, SysResult};
use super::file::{Descriptor, FileOps, Stat};
use super::hostfd::{last_errno, HostFile, HostKind};
use super::table::Syscall;
use super::{Args, Ctx, Kernel};

/// This family's table.
pub const TABLE: &[Syscall] = &[
    Syscall {
        nr: 22,
        name: "pipe",
        handler: sys_pipe,
    },
    Syscall {
        nr: 213,
        name: "epoll_create",
        handler: sys_epoll_create,
    },
    Syscall {
        nr: 232,
        name: "epoll_wait",
        handler: sys_epoll_wait,
    },
    Syscall {
        nr: 233,
        name: "epoll_ctl",
        handler: sys_epoll_ctl,
    },
    Syscall {
        nr: 281,
        name: "epoll_pwait",
        handler: sys_epoll_pwait,
    },
    Syscall {
        nr: 284,
        name: "eventfd",
        handler: sys_eventfd,
    },
    Syscall {
        nr: 290,
        name: "eventfd2",
        handler: sys_eventfd2,
    },
    Syscall {
        nr: 291,
        name: "epoll_create1",
        handler: sys_epoll_create1,
    },
    Syscall {
        nr: 293,
        name: "pipe2",
        handler: sys_pipe2,
    },
    Syscall {
        nr: 441,
        name: "epoll_pwait2",
        handler: sys_epoll_pwait2,
    },
];

const O_CLOEXEC: u64 = 0o2_000_000;
const O_NONBLOCK: u64 = 0o4000;
const EFD_SEMAPHORE: u64 = 1;
/// Size of `struct epoll_event` on x86_64 (packed: u32 events, u64 data).
const EVENT_SIZE: usize = 12;
/// Most events returned by one wait (fewer than asked is allowed).
const MAX_EVENTS: usize = 1024;
/// Longest host wait before the stop flag is checked.
const SLICE_MS: i32 = 50;

fn int(v: u64) -> i32 {
    u32::try_from(v & 0xffff_ffff).unwrap_or(0).cast_signed()
}

fn owned(fd: i32) -> Result<OwnedFd, Errno> {
    if fd < 0 {
        return Err(last_errno());
    }
    // SAFETY: `fd` was just returned by a successful host call and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A guest epoll instance: a host epoll descriptor.
pub struct EpollFile {
    fd: OwnedFd,
}

impl FileOps for EpollFile {
    fn stat(&self) -> Result<Stat, Errno> {
        Ok(Stat {
            mode: 0o600,
            nlink: 1,
            ..Stat::default()
        })
    }
    fn poll_ready(&self) -> i16 {
        super::hostfd::poll_one(self.fd.as_raw_fd(), libc::POLLIN, 0)
    }
    fn host_fd(&self) -> Option<std::os::fd::RawFd> {
        Some(self.fd.as_raw_fd())
    }
}

fn create_epoll(k: &Kernel, cloexec: bool) -> SysResult {
    // SAFETY: creates a new descriptor; no memory is passed.
    let fd = owned(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
    k.fds().insert(Descriptor {
        file: Arc::new(EpollFile { fd }),
        cloexec,
    })
}

fn sys_epoll_create(k: &Kernel, _c: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    if int(a[0]) <= 0 {
        return Err(Errno::EINVAL);
    }
    create_epoll(k, false)
}

fn sys_epoll_create1(k: &Kernel, _c: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    if a[0] & !O_CLOEXEC != 0 {
        return Err(Errno::EINVAL);
    }
    create_epoll(k, a[0] & O_CLOEXEC != 0)
}

fn epoll_of(k: &Kernel, fd: u64) -> Result<Arc<dyn FileOps>, Errno> {
    let f = k.fds().get(fd)?.file.clone();
    Ok(f)
}

fn epoll_fd(f: &Arc<dyn FileOps>) -> Result<i32, Errno> {
    // Only our epoll files report an epoll host fd; check through the stat mode marker.
    f.host_fd().ok_or(Errno::EINVAL)
}

fn sys_epoll_ctl(k: &Kernel, c: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    let [epfd, op, fd, event, ..] = *a;
    let ep = epoll_of(k, epfd)?;
    let target = k.fds().get(fd)?.file.clone();
    if epfd == fd {
        return Err(Errno::EINVAL);
    }
    let host_ep = epoll_fd(&ep)?;
    let host_fd = target.host_fd().ok_or(Errno::EPERM)?;
    let op = int(op);
    let mut ev = libc::epoll_event { events: 0, u64: 0 };
    if op != libc::EPOLL_CTL_DEL {
        let mut b = [0u8; EVENT_SIZE];
        c.mem.copy_in(event, &mut b)?;
        ev.events = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        ev.u64 = u64::from_le_bytes(b[4..12].try_into().map_err(|_| Errno::EFAULT)?);
    }
    // SAFETY: both descriptors are open host descriptors we own; `ev` lives across the call.
    let rc = unsafe { libc::epoll_ctl(host_ep, op, host_fd, &mut ev) };
    if rc != 0 {
        return Err(last_errno());
    }
    Ok(0)
}

/// Waits on a guest epoll; `deadline` None = forever.
fn epoll_wait(
    k: &Kernel,
    c: &Ctx<'_, '_>,
    epfd: u64,
    events: u64,
    max: u64,
    deadline: Option<Option<Instant>>,
) -> SysResult {
    let max = usize::try_from(max)
        .ok()
        .filter(|m| *m > 0)
        .ok_or(Errno::EINVAL)?;
    let max = max.min(MAX_EVENTS);
    c.mem.check_writable(events, (max * EVENT_SIZE) as u64)?;
    let ep = epoll_of(k, epfd)?;
    let host_ep = epoll_fd(&ep)?;
    let mut out = vec![libc::epoll_event { events: 0, u64: 0 }; max];
    let n = loop {
        if k.stop.load(Ordering::Acquire) {
            return Err(Errno::EINTR);
        }
        let slice = match deadline {
            None => 0,
            Some(None) => SLICE_MS,
            Some(Some(d)) => {
                let left = d.saturating_duration_since(Instant::now());
                i32::try_from(left.as_millis())
                    .unwrap_or(SLICE_MS)
                    .min(SLICE_MS)
            }
        };
        let max_i = i32::try_from(max).unwrap_or(1);
        // SAFETY: `out` has room for `max` events; the epoll descriptor is ours.
        let n = unsafe { libc::epoll_wait(host_ep, out.as_mut_ptr(), max_i, slice) };
        if n < 0 {
            let e = last_errno();
            if e == Errno::EINTR {
                continue;
            }
            return Err(e);
        }
        let done = match deadline {
            None => true,
            Some(None) => false,
            Some(Some(d)) => Instant::now() >= d,
        };
        if n > 0 || done {
            break usize::try_from(n).unwrap_or(0);
        }
    };
    let mut bytes = Vec::with_capacity(n * EVENT_SIZE);
    for e in &out[..n] {
        let (ev, data) = (e.events, e.u64);
        bytes.extend_from_slice(&ev.to_le_bytes());
        bytes.extend_from_slice(&data.to_le_bytes());
    }
    c.mem.copy_out(events, &bytes)?;
    Ok(n as u64)
}

fn ms_deadline(timeout: i32) -> Option<Option<Instant>> {
    match timeout {
        t if t < 0 => Some(None),
        0 => None,
        t => Some(Instant::now().checked_add(Duration::from_millis(u64::from(t.cast_unsigned())))),
    }
}

fn sys_epoll_wait(k: &Kernel, c: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    epoll_wait(k, c, a[0], a[1], a[2], ms_deadline(int(a[3])))
}

fn sys_epoll_pwait(k: &Kernel, c: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    // Signals are never delivered in an enclave: the mask changes nothing.
    epoll_wait(k, c, a[0], a[1], a[2], ms_deadline(int(a[3])))
}

fn sys_epoll_pwait2(k: &Kernel, c: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    let deadline = if a[3] == 0 {
        Some(None)
    } else {
        let sec = c.mem.read_u64(a[3])?.cast_signed();
        let nsec = c.mem.read_u64(a[3] + 8)?.cast_signed();
        let sec = u64::try_from(sec).map_err(|_| Errno::EINVAL)?;
        let nsec = u32::try_from(nsec)
            .ok()
            .filter(|n| *n < 1_000_000_000)
            .ok_or(Errno::EINVAL)?;
        let d = Duration::new(sec, nsec);
        if d.is_zero() {
            None
        } else {
            Some(Instant::now().checked_add(d))
        }
    };
    epoll_wait(k, c, a[0], a[1], a[2], deadline)
}

fn make_eventfd(k: &Kernel, init: u64, flags: u64) -> SysResult {
    if flags & !(O_CLOEXEC | O_NONBLOCK | EFD_SEMAPHORE) != 0 {
        return Err(Errno::EINVAL);
    }
    let init = u32::try_from(init & 0xffff_ffff).map_err(|_| Errno::EINVAL)?;
    let mut host_flags = libc::EFD_NONBLOCK | libc::EFD_CLOEXEC;
    if flags & EFD_SEMAPHORE != 0 {
        host_flags |= libc::EFD_SEMAPHORE;
    }
    // SAFETY: creates a new descriptor; no memory is passed.
    let fd = owned(unsafe { libc::eventfd(init, host_flags) })?;
    let guest_flags = libc::O_RDWR
        | if flags & O_NONBLOCK != 0 {
            libc::O_NONBLOCK
        } else {
            0
        };
    let file = HostFile::new(fd, HostKind::EventFd, guest_flags, k.stop.clone())?;
    k.fds().insert(Descriptor {
        file: Arc::new(file),
        cloexec: flags & O_CLOEXEC != 0,
    })
}

fn sys_eventfd(k: &Kernel, _c: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    make_eventfd(k, a[0], 0)
}

fn sys_eventfd2(k: &Kernel, _c: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    make_eventfd(k, a[0], a[1])
}

fn make_pipe(k: &Kernel, c: &Ctx<'_, '_>, at: u64, flags: u64) -> SysResult {
    if flags & !(O_CLOEXEC | O_NONBLOCK) != 0 {
        return Err(Errno::EINVAL);
    }
    c.mem.check_writable(at, 8)?;
    let mut fds = [0i32; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
        return Err(last_errno());
    }
    let (r, w) = (owned(fds[0])?, owned(fds[1])?);
    let nb = if flags & O_NONBLOCK != 0 {
        libc::O_NONBLOCK
    } else {
        0
    };
    let cloexec = flags & O_CLOEXEC != 0;
    let rf = HostFile::new(r, HostKind::Pipe, libc::O_RDONLY | nb, k.stop.clone())?;
    let wf = HostFile::new(w, HostKind::Pipe, libc::O_WRONLY | nb, k.stop.clone())?;
    let mut table = k.fds();
    let rfd = table.insert(Descriptor {
        file: Arc::new(rf),
        cloexec,
    })?;
    let wfd = match table.insert(Descriptor {
        file: Arc::new(wf),
        cloexec,
    }) {
        Ok(fd) => fd,
        Err(e) => {
            let _ = table.remove(rfd);
            return Err(e);
        }
    };
    drop(table);
    let mut out = [0u8; 8];
    out[..4].copy_from_slice(&u32::try_from(rfd).unwrap_or(0).to_le_bytes());
    out[4..].copy_from_slice(&u32::try_from(wfd).unwrap_or(0).to_le_bytes());
    if let Err(e) = c.mem.copy_out(at, &out) {
        let _ = k.fds().remove(rfd);
        let _ = k.fds().remove(wfd);
        return Err(e.into());
    }
    Ok(0)
}

fn sys_pipe(k: &Kernel, c: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    make_pipe(k, c, a[0], 0)
}

fn sys_pipe2(k: &Kernel, c: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    make_pipe(k, c, a[0], a[1])
}
