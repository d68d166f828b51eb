//! Time: clocks and sleeps, served from the host's clocks.

use std::time::Duration;

use super::errno::{Errno, SysResult};
use super::table::Syscall;
use super::{Args, Ctx, Kernel};

/// This family's table.
pub const TABLE: &[Syscall] = &[
    Syscall {
        nr: 35,
        name: "nanosleep",
        handler: sys_nanosleep,
    },
    Syscall {
        nr: 96,
        name: "gettimeofday",
        handler: sys_gettimeofday,
    },
    Syscall {
        nr: 201,
        name: "time",
        handler: sys_time,
    },
    Syscall {
        nr: 228,
        name: "clock_gettime",
        handler: sys_clock_gettime,
    },
    Syscall {
        nr: 229,
        name: "clock_getres",
        handler: sys_clock_getres,
    },
    Syscall {
        nr: 230,
        name: "clock_nanosleep",
        handler: sys_clock_nanosleep,
    },
];

const NSEC: u64 = 1_000_000_000;
const TIMER_ABSTIME: u64 = 1;

/// Clocks the program may read (realtime, monotonic, process/thread CPU, raw, coarse, boottime).
fn host_clock(id: u64) -> Result<libc::clockid_t, Errno> {
    match id {
        0..=7 => libc::clockid_t::try_from(id).map_err(|_| Errno::EINVAL),
        _ => Err(Errno::EINVAL),
    }
}

/// Reads a host clock as (seconds, nanoseconds).
pub fn now(clock: libc::clockid_t) -> Result<(i64, i64), Errno> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec owned by this frame.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    if rc != 0 {
        return Err(Errno::EINVAL);
    }
    Ok((ts.tv_sec, ts.tv_nsec))
}

fn timespec_bytes(sec: i64, nsec: i64) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&sec.to_le_bytes());
    b[8..].copy_from_slice(&nsec.to_le_bytes());
    b
}

/// Reads a `struct timespec` from the program, validating it as Linux does.
fn read_timespec(c: &Ctx<'_, '_>, at: u64) -> Result<Duration, Errno> {
    let mut b = [0u8; 16];
    c.mem.copy_in(at, &mut b)?;
    let (s, n) = b.split_at(8);
    let sec = i64::from_le_bytes(s.try_into().map_err(|_| Errno::EFAULT)?);
    let nsec = i64::from_le_bytes(n.try_into().map_err(|_| Errno::EFAULT)?);
    let sec = u64::try_from(sec).map_err(|_| Errno::EINVAL)?;
    let nsec = u64::try_from(nsec).map_err(|_| Errno::EINVAL)?;
    if nsec >= NSEC {
        return Err(Errno::EINVAL);
    }
    Ok(Duration::new(
        sec,
        u32::try_from(nsec).map_err(|_| Errno::EINVAL)?,
    ))
}

fn sys_clock_gettime(_k: &Kernel, c: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    let (s, n) = now(host_clock(a[0])?)?;
    c.mem.copy_out(a[1], &timespec_bytes(s, n))?;
    Ok(0)
}

fn sys_clock_getres(_k: &Kernel, c: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    host_clock(a[0])?;
    if a[1] != 0 {
        c.mem.copy_out(a[1], &timespec_bytes(0, 1))?;
    }
    Ok(0)
}

fn sys_gettimeofday(_k: &Kernel, c: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    let (s, n) = now(libc::CLOCK_REALTIME)?;
    if a[0] != 0 {
        c.mem.copy_out(a[0], &timespec_bytes(s, n / 1000))?;
    }
    if a[1] != 0 {
        c.mem.copy_out(a[1], &[0u8; 8])?;
    }
    Ok(0)
}

fn sys_time(_k: &Kernel, c: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    let (s, _) = now(libc::CLOCK_REALTIME)?;
    if a[0] != 0 {
        c.mem.copy_out(a[0], &s.to_le_bytes())?;
    }
    u64::try_from(s).map_err(|_| Errno::EOVERFLOW)
}

fn sys_nanosleep(k: &Kernel, c: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    let d = read_timespec(c, a[0])?;
    if !k.sleep(d) {
        return Err(Errno::EINTR);
    }
    if a[1] != 0 {
        c.mem.copy_out(a[1], &[0u8; 16])?;
    }
    Ok(0)
}

fn sys_clock_nanosleep(k: &Kernel, c: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    let [clock, flags, req, rem, ..] = *a;
    let clock = host_clock(clock)?;
    if clock == libc::CLOCK_PROCESS_CPUTIME_ID || clock == libc::CLOCK_THREAD_CPUTIME_ID {
        return Err(Errno::EOPNOTSUPP);
    }
    let d = read_timespec(c, req)?;
    if flags & TIMER_ABSTIME != 0 {
        let (s, n) = now(clock)?;
        let now = Duration::new(u64::try_from(s).unwrap_or(0), u32::try_from(n).unwrap_or(0));
        if !k.sleep(d.saturating_sub(now)) {
            return Err(Errno::EINTR);
        }
    } else {
        if !k.sleep(d) {
            return Err(Errno::EINTR);
        }
        if rem != 0 {
            c.mem.copy_out(rem, &[0u8; 16])?;
        }
    }
    Ok(0)
}
