//! Process and thread identity, signals, limits, scheduling and exit.
//!
//! The enclave runs one process. Its ids are fixed (pid 1, uid 0); signal handlers are
//! recorded but never delivered (nothing outside can signal the enclave); a program that sends
//! itself a fatal signal (`abort`) ends with that signal.

use super::errno::{Errno, SysResult};
use super::table::Syscall;
use super::{Args, Ctx, ExitRequest, Kernel};

/// This family's table.
pub const TABLE: &[Syscall] = &[
    // Calls that would change the image tree: it is a read-only file system.
    Syscall {
        nr: 76,
        name: "truncate",
        handler: sys_read_only,
    },
    Syscall {
        nr: 77,
        name: "ftruncate",
        handler: sys_read_only,
    },
    Syscall {
        nr: 82,
        name: "rename",
        handler: sys_read_only,
    },
    Syscall {
        nr: 83,
        name: "mkdir",
        handler: sys_read_only,
    },
    Syscall {
        nr: 84,
        name: "rmdir",
        handler: sys_read_only,
    },
    Syscall {
        nr: 85,
        name: "creat",
        handler: sys_read_only,
    },
    Syscall {
        nr: 86,
        name: "link",
        handler: sys_read_only,
    },
    Syscall {
        nr: 87,
        name: "unlink",
        handler: sys_read_only,
    },
    Syscall {
        nr: 88,
        name: "symlink",
        handler: sys_read_only,
    },
    Syscall {
        nr: 90,
        name: "chmod",
        handler: sys_read_only,
    },
    Syscall {
        nr: 91,
        name: "fchmod",
        handler: sys_read_only,
    },
    Syscall {
        nr: 92,
        name: "chown",
        handler: sys_read_only,
    },
    Syscall {
        nr: 93,
        name: "fchown",
        handler: sys_read_only,
    },
    Syscall {
        nr: 94,
        name: "lchown",
        handler: sys_read_only,
    },
    Syscall {
        nr: 133,
        name: "mknod",
        handler: sys_read_only,
    },
    Syscall {
        nr: 258,
        name: "mkdirat",
        handler: sys_read_only,
    },
    Syscall {
        nr: 259,
        name: "mknodat",
        handler: sys_read_only,
    },
    Syscall {
        nr: 260,
        name: "fchownat",
        handler: sys_read_only,
    },
    Syscall {
        nr: 263,
        name: "unlinkat",
        handler: sys_read_only,
    },
    Syscall {
        nr: 264,
        name: "renameat",
        handler: sys_read_only,
    },
    Syscall {
        nr: 265,
        name: "linkat",
        handler: sys_read_only,
    },
    Syscall {
        nr: 266,
        name: "symlinkat",
        handler: sys_read_only,
    },
    Syscall {
        nr: 268,
        name: "fchmodat",
        handler: sys_read_only,
    },
    Syscall {
        nr: 316,
        name: "renameat2",
        handler: sys_read_only,
    },
    Syscall {
        nr: 13,
        name: "rt_sigaction",
        handler: sys_rt_sigaction,
    },
    Syscall {
        nr: 14,
        name: "rt_sigprocmask",
        handler: sys_rt_sigprocmask,
    },
    Syscall {
        nr: 39,
        name: "getpid",
        handler: sys_pid,
    },
    Syscall {
        nr: 60,
        name: "exit",
        handler: sys_exit,
    },
    Syscall {
        nr: 62,
        name: "kill",
        handler: sys_kill,
    },
    Syscall {
        nr: 97,
        name: "getrlimit",
        handler: sys_getrlimit,
    },
    Syscall {
        nr: 102,
        name: "getuid",
        handler: sys_zero,
    },
    Syscall {
        nr: 104,
        name: "getgid",
        handler: sys_zero,
    },
    Syscall {
        nr: 107,
        name: "geteuid",
        handler: sys_zero,
    },
    Syscall {
        nr: 108,
        name: "getegid",
        handler: sys_zero,
    },
    Syscall {
        nr: 110,
        name: "getppid",
        handler: sys_zero,
    },
    Syscall {
        nr: 111,
        name: "getpgrp",
        handler: sys_pid,
    },
    Syscall {
        nr: 118,
        name: "getresuid",
        handler: sys_getres,
    },
    Syscall {
        nr: 120,
        name: "getresgid",
        handler: sys_getres,
    },
    Syscall {
        nr: 121,
        name: "getpgid",
        handler: sys_pid,
    },
    Syscall {
        nr: 124,
        name: "getsid",
        handler: sys_pid,
    },
    Syscall {
        nr: 131,
        name: "sigaltstack",
        handler: sys_sigaltstack,
    },
    Syscall {
        nr: 158,
        name: "arch_prctl",
        handler: sys_arch_prctl,
    },
    Syscall {
        nr: 186,
        name: "gettid",
        handler: sys_gettid,
    },
    Syscall {
        nr: 200,
        name: "tkill",
        handler: sys_tkill,
    },
    Syscall {
        nr: 203,
        name: "sched_setaffinity",
        handler: sys_zero,
    },
    Syscall {
        nr: 204,
        name: "sched_getaffinity",
        handler: sys_sched_getaffinity,
    },
    Syscall {
        nr: 231,
        name: "exit_group",
        handler: sys_exit_group,
    },
    Syscall {
        nr: 234,
        name: "tgkill",
        handler: sys_tgkill,
    },
    Syscall {
        nr: 273,
        name: "set_robust_list",
        handler: sys_set_robust_list,
    },
    Syscall {
        nr: 302,
        name: "prlimit64",
        handler: sys_prlimit64,
    },
    Syscall {
        nr: 334,
        name: "rseq",
        handler: sys_rseq,
    },
];

/// `exit`.
pub const NR_EXIT: u64 = 60;
/// `exit_group`.
pub const NR_EXIT_GROUP: u64 = 231;

/// Soft RLIMIT_STACK reported: the default stack size of new threads in glibc.
pub const THREAD_STACK_DEFAULT: u64 = 2 << 20;

/// The enclave program's pid (and tid of its first thread).
pub const PID: u64 = 1;
const NSIG: u64 = 64;
const ARCH_SET_GS: u64 = 0x1001;
const ARCH_SET_FS: u64 = 0x1002;
const ARCH_GET_FS: u64 = 0x1003;
const ARCH_GET_GS: u64 = 0x1004;

/// The image tree is mounted read-only: every call that would change it fails with `EROFS`.
fn sys_read_only(_k: &Kernel, _c: &mut Ctx<'_, '_>, _a: &Args) -> SysResult {
    Err(Errno::EROFS)
}

fn sys_zero(_k: &Kernel, _c: &mut Ctx<'_, '_>, _a: &Args) -> SysResult {
    Ok(0)
}

fn sys_pid(_k: &Kernel, _c: &mut Ctx<'_, '_>, _a: &Args) -> SysResult {
    Ok(PID)
}

fn sys_gettid(_k: &Kernel, c: &mut Ctx<'_, '_>, _a: &Args) -> SysResult {
    Ok(c.thread.tid)
}

/// Low 8 bits of the exit status, as `wait` reports them.
fn status(v: u64) -> i32 {
    i32::from(v.to_le_bytes()[0])
}

fn sys_exit(_k: &Kernel, c: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    c.exit = Some(ExitRequest::Thread(status(a[0])));
    Ok(0)
}

fn sys_exit_group(_k: &Kernel, c: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    c.exit = Some(ExitRequest::Group(status(a[0])));
    Ok(0)
}

/// Signals whose default action ends the process.
fn is_fatal(sig: u64) -> bool {
    !matches!(sig, 0 | 17 | 18 | 23 | 28) && sig < NSIG
}

fn signal_self(c: &mut Ctx<'_, '_>, pid: u64, sig: u64) -> SysResult {
    if sig > NSIG {
        return Err(Errno::EINVAL);
    }
    // Any thread of the one process: the signal's default action ends the whole program.
    if pid != PID && pid != c.thread.tid {
        return Err(Errno::ESRCH);
    }
    if sig != 0 && is_fatal(sig) {
        c.exit = Some(ExitRequest::Signal(
            i32::try_from(sig).map_err(|_| Errno::EINVAL)?,
        ));
    }
    Ok(0)
}

fn sys_kill(_k: &Kernel, c: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    let pid = if a[0] == 0 { PID } else { a[0] };
    signal_self(c, pid, a[1])
}

fn sys_tkill(_k: &Kernel, c: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    signal_self(c, a[0], a[1])
}

fn sys_tgkill(_k: &Kernel, c: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    if a[0] != PID {
        return Err(Errno::ESRCH);
    }
    signal_self(c, a[1], a[2])
}

fn sys_rt_sigaction(_k: &Kernel, c: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    let [sig, act, oldact, sigsetsize, ..] = *a;
    if sigsetsize != 8 || sig == 0 || sig > NSIG || sig == 9 || sig == 19 {
        return Err(Errno::EINVAL);
    }
    if act != 0 {
        let mut buf = [0u8; 32];
        c.mem.copy_in(act, &mut buf)?;
    }
    if oldact != 0 {
        // Handlers are never delivered; report SIG_DFL.
        c.mem.copy_out(oldact, &[0u8; 32])?;
    }
    Ok(0)
}

fn sys_rt_sigprocmask(_k: &Kernel, c: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    let [how, set, oldset, sigsetsize, ..] = *a;
    if sigsetsize != 8 {
        return Err(Errno::EINVAL);
    }
    if set != 0 {
        if how > 2 {
            return Err(Errno::EINVAL);
        }
        c.mem.read_u64(set)?;
    }
    if oldset != 0 {
        c.mem.write_u64(oldset, 0)?;
    }
    Ok(0)
}

fn sys_sigaltstack(_k: &Kernel, c: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    const SS_ONSTACK: u32 = 1;
    const SS_DISABLE: u32 = 2;
    const SS_AUTODISARM: u32 = 1 << 31;
    const MINSIGSTKSZ: u64 = 2048;
    let [ss, old, ..] = *a;
    if ss != 0 {
        let mut b = [0u8; 24];
        c.mem.copy_in(ss, &mut b)?;
        let flags = u32::from_le_bytes([b[8], b[9], b[10], b[11]]);
        let size = u64::from_le_bytes([b[16], b[17], b[18], b[19], b[20], b[21], b[22], b[23]]);
        if flags & !(SS_ONSTACK | SS_DISABLE | SS_AUTODISARM) != 0 {
            return Err(Errno::EINVAL);
        }
        if flags & SS_DISABLE == 0 && size < MINSIGSTKSZ {
            return Err(Errno::ENOMEM);
        }
    }
    if old != 0 {
        // ss_sp = 0, ss_flags = SS_DISABLE (2), ss_size = 0.
        let mut b = [0u8; 24];
        b[8] = 2;
        c.mem.copy_out(old, &b)?;
    }
    Ok(0)
}

fn sys_arch_prctl(_k: &Kernel, c: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    let [code, addr, ..] = *a;
    match code {
        ARCH_SET_FS | ARCH_SET_GS => {
            if addr >= 0x0000_8000_0000_0000 {
                return Err(Errno::EPERM);
            }
            if code == ARCH_SET_FS {
                c.cpu.set_fs_base(addr);
            } else {
                c.cpu.set_gs_base(addr);
            }
            Ok(0)
        }
        ARCH_GET_FS => {
            let v = c.cpu.fs_base();
            c.mem.write_u64(addr, v)?;
            Ok(0)
        }
        ARCH_GET_GS => {
            let v = c.cpu.gs_base();
            c.mem.write_u64(addr, v)?;
            Ok(0)
        }
        _ => Err(Errno::EINVAL),
    }
}

fn sys_set_robust_list(_k: &Kernel, _c: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    // struct robust_list_head is 24 bytes.
    if a[1] != 24 {
        return Err(Errno::EINVAL);
    }
    Ok(0)
}

fn sys_rseq(_k: &Kernel, _c: &mut Ctx<'_, '_>, _a: &Args) -> SysResult {
    // Restartable sequences need preemption notification; libc falls back without them.
    Err(Errno::ENOSYS)
}

/// (soft, hard) limits reported for a resource; unknown resources are unlimited.
fn limit_of(k: &Kernel, resource: u64) -> Result<(u64, u64), Errno> {
    const INF: u64 = u64::MAX;
    Ok(match resource {
        // RLIMIT_STACK: libcs size new threads' stacks by the soft limit, and every byte of a
        // stack is guest memory here (no overcommit), so the soft limit is kept small.
        3 => (THREAD_STACK_DEFAULT, crate::layout::STACK_SIZE),
        7 => {
            let n = super::file::MAX_FDS as u64;
            (n, n) // RLIMIT_NOFILE
        }
        // RLIMIT_AS and RLIMIT_DATA are bounded by guest memory, which is the real limit.
        9 | 2 => (k.mem_size, k.mem_size),
        r if r < 16 => (INF, INF),
        _ => return Err(Errno::EINVAL),
    })
}

fn write_rlimit(c: &Ctx<'_, '_>, at: u64, (soft, hard): (u64, u64)) -> Result<(), Errno> {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&soft.to_le_bytes());
    b[8..].copy_from_slice(&hard.to_le_bytes());
    c.mem.copy_out(at, &b)?;
    Ok(())
}

fn sys_getrlimit(k: &Kernel, c: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    let lim = limit_of(k, a[0])?;
    write_rlimit(c, a[1], lim)?;
    Ok(0)
}

fn sys_prlimit64(k: &Kernel, c: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    let [pid, resource, new, old, ..] = *a;
    if pid != 0 && pid != PID {
        return Err(Errno::ESRCH);
    }
    let lim = limit_of(k, resource)?;
    if new != 0 {
        let mut b = [0u8; 16];
        c.mem.copy_in(new, &mut b)?;
    }
    if old != 0 {
        write_rlimit(c, old, lim)?;
    }
    Ok(0)
}

fn sys_getres(_k: &Kernel, c: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    for &p in &a[..3] {
        c.mem.write_u32(p, 0)?;
    }
    Ok(0)
}

fn sys_sched_getaffinity(k: &Kernel, c: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    let [pid, len, mask, ..] = *a;
    if pid != 0 && pid != PID {
        return Err(Errno::ESRCH);
    }
    // The kernel's cpumask is 1024 bits here; the buffer must hold it and be 8-byte sized.
    const MASK_BYTES: usize = 128;
    if len < MASK_BYTES as u64 || !len.is_multiple_of(8) {
        return Err(Errno::EINVAL);
    }
    let mut b = [0u8; MASK_BYTES];
    for cpu in 0..k.config.cpu_count.min(1024) {
        let i = usize::try_from(cpu / 8).map_err(|_| Errno::EINVAL)?;
        b[i] |= 1 << (cpu % 8);
    }
    c.mem.copy_out(mask, &b)?;
    Ok(MASK_BYTES as u64)
}
