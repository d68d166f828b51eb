//! Threads: `clone`/`clone3` for threads (not processes), `futex`, `set_tid_address`,
//! `sched_yield`. Each new thread gets its own vCPU from the VMM's spawner.

use std::time::{Duration, Instant};

use super::errno::{Errno, SysResult};
use super::futex::WaitResult;
use super::table::Syscall;
use super::{reg, Args, Ctx, Kernel, ThreadStart};

/// This family's table.
pub const TABLE: &[Syscall] = &[
    Syscall {
        nr: 24,
        name: "sched_yield",
        handler: sys_sched_yield,
    },
    Syscall {
        nr: 56,
        name: "clone",
        handler: sys_clone,
    },
    Syscall {
        nr: 202,
        name: "futex",
        handler: sys_futex,
    },
    Syscall {
        nr: 218,
        name: "set_tid_address",
        handler: sys_set_tid_address,
    },
    Syscall {
        nr: 435,
        name: "clone3",
        handler: sys_clone3,
    },
];

const CLONE_VM: u64 = 0x100;
const CLONE_FS: u64 = 0x200;
const CLONE_FILES: u64 = 0x400;
const CLONE_SIGHAND: u64 = 0x800;
const CLONE_PIDFD: u64 = 0x1000;
const CLONE_VFORK: u64 = 0x4000;
const CLONE_THREAD: u64 = 0x1_0000;
const CLONE_SYSVSEM: u64 = 0x4_0000;
const CLONE_SETTLS: u64 = 0x8_0000;
const CLONE_PARENT_SETTID: u64 = 0x10_0000;
const CLONE_CHILD_CLEARTID: u64 = 0x20_0000;
const CLONE_DETACHED: u64 = 0x40_0000;
const CLONE_CHILD_SETTID: u64 = 0x100_0000;
/// The flags a thread (as created by glibc, musl and Rust std) must carry.
const THREAD_FLAGS: u64 = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD;
/// Flags we accept besides those.
const OPTIONAL_FLAGS: u64 = CLONE_SYSVSEM
    | CLONE_SETTLS
    | CLONE_PARENT_SETTID
    | CLONE_CHILD_CLEARTID
    | CLONE_DETACHED
    | CLONE_CHILD_SETTID;

const FUTEX_WAIT: u64 = 0;
const FUTEX_WAKE: u64 = 1;
const FUTEX_REQUEUE: u64 = 3;
const FUTEX_CMP_REQUEUE: u64 = 4;
const FUTEX_WAIT_BITSET: u64 = 9;
const FUTEX_WAKE_BITSET: u64 = 10;
const FUTEX_PRIVATE_FLAG: u64 = 128;
const FUTEX_CLOCK_REALTIME: u64 = 256;

/// What a clone request asks for, validated.
struct CloneRequest {
    flags: u64,
    stack: u64,
    parent_tid: u64,
    child_tid: u64,
    tls: u64,
}

fn do_clone(k: &Kernel, c: &mut Ctx<'_, '_>, r: CloneRequest) -> SysResult {
    if r.flags & CLONE_VFORK != 0 || r.flags & CLONE_VM == 0 {
        // fork/vfork: a second process cannot exist in an enclave.
        return Err(Errno::ENOSYS);
    }
    if r.flags & THREAD_FLAGS != THREAD_FLAGS
        || r.flags & !(THREAD_FLAGS | OPTIONAL_FLAGS | 0xff) != 0
        || r.flags & CLONE_PIDFD != 0
    {
        return Err(Errno::EINVAL);
    }
    if r.stack == 0 {
        return Err(Errno::EINVAL);
    }
    let spawner = k.spawner().ok_or(Errno::ENOSYS)?.clone();
    // Validate the user pointers before anything is created.
    if r.flags & CLONE_PARENT_SETTID != 0 {
        c.mem.check_writable(r.parent_tid, 4)?;
    }
    if r.flags & (CLONE_CHILD_SETTID | CLONE_CHILD_CLEARTID) != 0 {
        c.mem.check_writable(r.child_tid, 4)?;
    }
    let tid = k.reserve_thread().ok_or(Errno::EAGAIN)?;
    let tid32 = u32::try_from(tid).map_err(|_| Errno::EAGAIN)?;
    let mut regs = c.cpu.user_regs();
    regs.gpr[reg::RAX] = 0;
    regs.gpr[reg::RSP] = r.stack;
    regs.gpr[reg::RIP] = regs.gpr[reg::RCX];
    regs.gpr[reg::RFLAGS] = regs.gpr[reg::R11];
    let start = ThreadStart {
        tid,
        regs,
        fs_base: if r.flags & CLONE_SETTLS != 0 {
            r.tls
        } else {
            c.cpu.fs_base()
        },
        gs_base: c.cpu.gs_base(),
        clear_child_tid: if r.flags & CLONE_CHILD_CLEARTID != 0 {
            r.child_tid
        } else {
            0
        },
    };
    if r.flags & CLONE_PARENT_SETTID != 0 {
        c.mem.write_u32(r.parent_tid, tid32)?;
    }
    if r.flags & CLONE_CHILD_SETTID != 0 {
        c.mem.write_u32(r.child_tid, tid32)?;
    }
    if let Err(e) = spawner.spawn(start) {
        k.thread_ended();
        return Err(e);
    }
    Ok(tid)
}

fn sys_clone(k: &Kernel, c: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    // x86_64 order: flags, stack, parent_tid, child_tid, tls.
    do_clone(
        k,
        c,
        CloneRequest {
            flags: a[0],
            stack: a[1],
            parent_tid: a[2],
            child_tid: a[3],
            tls: a[4],
        },
    )
}

fn sys_clone3(k: &Kernel, c: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    // struct clone_args: flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size,
    // tls, set_tid, set_tid_size, cgroup (u64 each).
    let size = a[1];
    if !(64..=4096).contains(&size) {
        return Err(Errno::EINVAL);
    }
    let mut b = [0u8; 88];
    let n = usize::try_from(size.min(88)).map_err(|_| Errno::EINVAL)?;
    c.mem.copy_in(a[0], &mut b[..n])?;
    let field = |i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&b[i * 8..i * 8 + 8]);
        u64::from_le_bytes(w)
    };
    if field(4) != 0 || field(8) != 0 || field(9) != 0 {
        // exit_signal (a child process), set_tid: not for threads.
        return Err(Errno::EINVAL);
    }
    let stack = field(5).checked_add(field(6)).ok_or(Errno::EINVAL)?;
    do_clone(
        k,
        c,
        CloneRequest {
            flags: field(0),
            stack,
            parent_tid: field(3),
            child_tid: field(2),
            tls: field(7),
        },
    )
}

fn sys_set_tid_address(_k: &Kernel, c: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    c.thread.clear_child_tid = a[0];
    Ok(c.thread.tid)
}

fn sys_sched_yield(_k: &Kernel, _c: &mut Ctx<'_, '_>, _a: &Args) -> SysResult {
    std::thread::yield_now();
    Ok(0)
}

/// Reads a relative or absolute `struct timespec` timeout into a deadline.
fn deadline(
    c: &Ctx<'_, '_>,
    at: u64,
    absolute: bool,
    realtime: bool,
) -> Result<Option<Instant>, Errno> {
    if at == 0 {
        return Ok(None);
    }
    let mut b = [0u8; 16];
    c.mem.copy_in(at, &mut b)?;
    let sec = i64::from_le_bytes(b[..8].try_into().map_err(|_| Errno::EFAULT)?);
    let nsec = i64::from_le_bytes(b[8..].try_into().map_err(|_| Errno::EFAULT)?);
    let sec = u64::try_from(sec).map_err(|_| Errno::EINVAL)?;
    let nsec = u32::try_from(nsec)
        .ok()
        .filter(|n| *n < 1_000_000_000)
        .ok_or(Errno::EINVAL)?;
    let want = Duration::new(sec, nsec);
    let rel = if absolute {
        let clock = if realtime {
            libc::CLOCK_REALTIME
        } else {
            libc::CLOCK_MONOTONIC
        };
        let (s, n) = super::sys_time::now(clock)?;
        let now = Duration::new(u64::try_from(s).unwrap_or(0), u32::try_from(n).unwrap_or(0));
        want.saturating_sub(now)
    } else {
        want
    };
    // A far-future deadline is the same as none (Instant cannot represent it).
    Ok(Instant::now().checked_add(rel))
}

fn sys_futex(k: &Kernel, c: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    let [uaddr, op, val, timeout, uaddr2, val3] = *a;
    if uaddr % 4 != 0 {
        return Err(Errno::EINVAL);
    }
    let cmd = op & !(FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME);
    let realtime = op & FUTEX_CLOCK_REALTIME != 0;
    let val32 = u32::try_from(val & 0xffff_ffff).map_err(|_| Errno::EINVAL)?;
    let mem = c.mem;
    let read = || mem.read_u32(uaddr).map_err(Errno::from);
    let wait = |bitset: u32, deadline: Option<Instant>| -> SysResult {
        match k
            .futexes
            .wait(uaddr, val32, bitset, read, deadline, || k.stopping())?
        {
            WaitResult::Woken => Ok(0),
            WaitResult::TimedOut => Err(Errno::ETIMEDOUT),
            WaitResult::Interrupted => Err(Errno::EINTR),
        }
    };
    match cmd {
        FUTEX_WAIT => {
            if realtime {
                return Err(Errno::ENOSYS);
            }
            let d = deadline(c, timeout, false, false)?;
            wait(u32::MAX, d)
        }
        FUTEX_WAIT_BITSET => {
            let d = deadline(c, timeout, true, realtime)?;
            wait(
                u32::try_from(val3 & 0xffff_ffff).map_err(|_| Errno::EINVAL)?,
                d,
            )
        }
        FUTEX_WAKE => k.futexes.wake(uaddr, val32, u32::MAX),
        FUTEX_WAKE_BITSET => k.futexes.wake(
            uaddr,
            val32,
            u32::try_from(val3 & 0xffff_ffff).map_err(|_| Errno::EINVAL)?,
        ),
        FUTEX_REQUEUE | FUTEX_CMP_REQUEUE => {
            if uaddr2 % 4 != 0 {
                return Err(Errno::EINVAL);
            }
            if cmd == FUTEX_CMP_REQUEUE
                && read()? != u32::try_from(val3 & 0xffff_ffff).map_err(|_| Errno::EINVAL)?
            {
                return Err(Errno::EAGAIN);
            }
            // For requeue the timeout argument carries the number to move.
            let n = u32::try_from(timeout.min(u64::from(u32::MAX))).map_err(|_| Errno::EINVAL)?;
            k.futexes.requeue(uaddr, uaddr2, val32, n)
        }
        _ => Err(Errno::ENOSYS),
    }
}
