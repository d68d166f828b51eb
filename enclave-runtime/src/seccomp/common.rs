//! System calls every VMM thread needs whatever its job: the allocator, locks, time, signals
//! of our own, logging to stderr and ending. Plus the set a thread needs to create threads
//! (glibc's `pthread_create` and Rust's thread start run partly in the child, which inherits
//! its creator's filter).

use super::rules::{all, any, arg_clear, arg_eq, when, Allow};

/// `mmap`/`mprotect` never get `PROT_EXEC`: the VMM maps no code after start, so a hijacked
/// thread cannot make its own.
const NO_EXEC: u64 = libc::PROT_EXEC as u64;

/// The calls of every thread. `pid` is the VMM's own process id (signals stay inside it).
pub fn base(pid: u32) -> Vec<Allow> {
    let mut v = all(&[
        libc::SYS_read,
        libc::SYS_write,
        libc::SYS_writev,
        libc::SYS_close,
        libc::SYS_futex,
        libc::SYS_sched_yield,
        libc::SYS_munmap,
        libc::SYS_mremap,
        libc::SYS_brk,
        libc::SYS_madvise,
        libc::SYS_rt_sigprocmask,
        libc::SYS_rt_sigreturn,
        libc::SYS_sigaltstack,
        libc::SYS_restart_syscall,
        libc::SYS_exit,
        libc::SYS_exit_group,
        libc::SYS_clock_gettime,
        libc::SYS_clock_nanosleep,
        libc::SYS_nanosleep,
        libc::SYS_gettid,
        libc::SYS_getpid,
        libc::SYS_getrandom,
    ]);
    v.push(when(libc::SYS_mmap, &[arg_clear(2, NO_EXEC)]));
    v.push(when(libc::SYS_mprotect, &[arg_clear(2, NO_EXEC)]));
    // Signals only to threads of this process (vCPU kicks, abort).
    v.push(when(libc::SYS_tgkill, &[arg_eq(0, u64::from(pid))]));
    v
}

/// What creating a thread takes, in the creator and in the new thread before its body runs.
pub fn spawn() -> Vec<Allow> {
    let mut v = all(&[
        // glibc >= 2.34 creates threads with clone3, whose flags sit in a struct the filter
        // cannot read; `clone` (the fallback) is held to thread creation below.
        libc::SYS_clone3,
        libc::SYS_set_robust_list,
        libc::SYS_rseq,
        libc::SYS_sched_getaffinity,
    ]);
    let thread = u64::try_from(libc::CLONE_THREAD).unwrap_or(u64::MAX);
    v.push(Allow {
        nr: libc::SYS_clone,
        when: vec![super::rules::ArgCheck {
            index: 0,
            mask: thread,
            value: thread,
        }],
    });
    // Thread names (`PR_SET_NAME`) and nothing else of prctl.
    let set_name = u64::try_from(libc::PR_SET_NAME).unwrap_or(u64::MAX);
    v.push(when(libc::SYS_prctl, &[arg_eq(0, set_name)]));
    v.push(any(libc::SYS_getpid));
    v
}
