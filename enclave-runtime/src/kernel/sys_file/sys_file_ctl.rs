//! Descriptor control: ioctl, fcntl, poll and ppoll.

use std::time::{Duration, Instant};

use super::{fd_arg, int_arg, FD_LIMIT};
use crate::kernel::file::Descriptor;
use crate::kernel::{Args, Ctx, Errno, Kernel, SysResult};

/// Largest `nfds` for poll (RLIMIT_NOFILE).
const POLL_MAX_FDS: u64 = 1024;
/// Bytes of one `struct pollfd`.
const POLLFD_SIZE: u64 = 8;
/// Longest host wait before the stop flag is checked again.
const SLICE_MS: u64 = 50;
/// [`SLICE_MS`] as the `int` poll takes.
const SLICE_MS_I32: i32 = 50;
/// `FIOCLEX`.
const FIOCLEX: u64 = 0x5451;
/// `FIONCLEX`.
const FIONCLEX: u64 = 0x5450;
/// `FIONBIO`.
const FIONBIO: u64 = 0x5421;
/// `TCGETS`.
const TCGETS: u64 = 0x5401;
/// `TIOCGWINSZ`.
const TIOCGWINSZ: u64 = 0x5413;

/// Sets or clears close-on-exec of `fd`.
fn set_cloexec(k: &Kernel, fd: u64, on: bool) -> SysResult {
    let d = k.fds().get(fd)?.clone();
    k.fds().insert_at(fd, Descriptor { cloexec: on, ..d })?;
    Ok(0)
}

pub(crate) fn sys_ioctl(k: &Kernel, ctx: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    let fd = fd_arg(a[0]);
    let file = k.fds().get(fd)?.file.clone();
    // The command is an `unsigned int`.
    match a[1] & 0xffff_ffff {
        FIOCLEX => set_cloexec(k, fd, true),
        FIONCLEX => set_cloexec(k, fd, false),
        FIONBIO => {
            let on = ctx.mem.read_u32(a[2])? != 0;
            let flags = file.status_flags();
            file.set_status_flags(if on {
                flags | libc::O_NONBLOCK
            } else {
                flags & !libc::O_NONBLOCK
            });
            Ok(0)
        }
        // No terminals in an enclave.
        TCGETS | TIOCGWINSZ => Err(Errno::ENOTTY),
        cmd => file.ioctl(cmd, a[2], ctx.mem),
    }
}

pub(crate) fn sys_fcntl(k: &Kernel, _ctx: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    let fd = fd_arg(a[0]);
    let d = k.fds().get(fd)?.clone();
    match int_arg(a[1]) {
        libc::F_DUPFD | libc::F_DUPFD_CLOEXEC => {
            let min = usize::try_from(fd_arg(a[2]))
                .ok()
                .filter(|&m| m < FD_LIMIT)
                .ok_or(Errno::EINVAL)?;
            let cloexec = int_arg(a[1]) == libc::F_DUPFD_CLOEXEC;
            k.fds().insert_from(min, Descriptor { cloexec, ..d })
        }
        libc::F_GETFD => Ok(if d.cloexec {
            u64::from(libc::FD_CLOEXEC.cast_unsigned())
        } else {
            0
        }),
        libc::F_SETFD => set_cloexec(k, fd, int_arg(a[2]) & libc::FD_CLOEXEC != 0),
        libc::F_GETFL => Ok(u64::from(d.file.status_flags().cast_unsigned())),
        libc::F_SETFL => {
            d.file.set_status_flags(int_arg(a[2]));
            Ok(0)
        }
        _ => Err(Errno::EINVAL),
    }
}

/// Fills the `revents` of a `struct pollfd` array; returns how many are non-zero.
fn poll_once(k: &Kernel, ctx: &Ctx<'_, '_>, addr: u64, nfds: u64) -> SysResult {
    if nfds > POLL_MAX_FDS {
        return Err(Errno::EINVAL);
    }
    let len = usize::try_from(nfds * POLLFD_SIZE).map_err(|_| Errno::EINVAL)?;
    let mut raw = ctx.mem.copy_in_vec(addr, len)?;
    let mut ready = 0u64;
    for p in raw.chunks_exact_mut(8) {
        let fd = i32::from_le_bytes([p[0], p[1], p[2], p[3]]);
        let events = i16::from_le_bytes([p[4], p[5]]);
        let revents = if fd < 0 {
            0
        } else {
            match k.fds().get(u64::from(fd.cast_unsigned())) {
                Err(_) => libc::POLLNVAL,
                Ok(d) => d.file.poll_ready() & (events | libc::POLLERR | libc::POLLHUP),
            }
        };
        if revents != 0 {
            ready += 1;
        }
        p[6..8].copy_from_slice(&revents.to_le_bytes());
    }
    ctx.mem.copy_out(addr, &raw)?;
    Ok(ready)
}

/// Host descriptors (with the events asked) of the polled files that have one.
fn host_set(
    k: &Kernel,
    ctx: &Ctx<'_, '_>,
    addr: u64,
    nfds: u64,
) -> Result<Vec<libc::pollfd>, Errno> {
    let len = usize::try_from(nfds * POLLFD_SIZE).map_err(|_| Errno::EINVAL)?;
    let raw = ctx.mem.copy_in_vec(addr, len)?;
    let fds = k.fds();
    Ok(raw
        .chunks_exact(8)
        .filter_map(|p| {
            let fd = i32::from_le_bytes([p[0], p[1], p[2], p[3]]);
            let events = i16::from_le_bytes([p[4], p[5]]);
            let file = fds.get(u64::try_from(fd).ok()?).ok()?;
            Some(libc::pollfd {
                fd: file.file.host_fd()?,
                events,
                revents: 0,
            })
        })
        .collect())
}

/// poll/ppoll: checks readiness, then waits (in slices, interruptible) on the host descriptors
/// behind the polled files until one is ready or `timeout_ms` (None = forever) passes.
fn poll_wait(
    k: &Kernel,
    ctx: &Ctx<'_, '_>,
    addr: u64,
    nfds: u64,
    timeout_ms: Option<u64>,
) -> SysResult {
    let deadline = timeout_ms.map(|ms| Instant::now() + Duration::from_millis(ms));
    loop {
        let ready = poll_once(k, ctx, addr, nfds)?;
        if ready > 0 {
            return Ok(ready);
        }
        let left = match deadline {
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(0);
                }
                left
            }
            None => Duration::from_millis(SLICE_MS),
        };
        if k.stopping() {
            return Err(Errno::EINTR);
        }
        let slice = i32::try_from(left.as_millis())
            .unwrap_or(SLICE_MS_I32)
            .clamp(1, SLICE_MS_I32);
        let mut set = host_set(k, ctx, addr, nfds)?;
        if set.is_empty() {
            // Nothing that can become ready: just let the timeout pass.
            if !k.sleep(Duration::from_millis(u64::from(slice.cast_unsigned()))) {
                return Err(Errno::EINTR);
            }
            continue;
        }
        let n = libc::nfds_t::try_from(set.len()).map_err(|_| Errno::EINVAL)?;
        // SAFETY: `set` is a valid array of `n` pollfds for the duration of the call.
        unsafe { libc::poll(set.as_mut_ptr(), n, slice) };
    }
}

pub(crate) fn sys_poll(k: &Kernel, ctx: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    let timeout = int_arg(a[2]);
    let ms = if timeout < 0 {
        None
    } else {
        Some(u64::from(timeout.cast_unsigned()))
    };
    poll_wait(k, ctx, a[0], a[1], ms)
}

pub(crate) fn sys_ppoll(k: &Kernel, ctx: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    let timeout_ms = if a[2] == 0 {
        None
    } else {
        let sec = ctx.mem.read_u64(a[2])?.cast_signed();
        let nsec = ctx
            .mem
            .read_u64(a[2].checked_add(8).ok_or(Errno::EFAULT)?)?
            .cast_signed();
        if sec < 0 || !(0..1_000_000_000).contains(&nsec) {
            return Err(Errno::EINVAL);
        }
        let sec = u64::try_from(sec).map_err(|_| Errno::EINVAL)?;
        let nsec = u64::try_from(nsec).map_err(|_| Errno::EINVAL)?;
        Some(
            sec.saturating_mul(1000)
                .saturating_add(nsec.div_ceil(1_000_000)),
        )
    };
    if a[3] != 0 && a[4] != 8 {
        return Err(Errno::EINVAL);
    }
    poll_wait(k, ctx, a[0], a[1], timeout_ms)
}
