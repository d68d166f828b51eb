//! The allow-list of each kind of VMM thread, as data. Derived from what the threads do (see
//! the module comment of `seccomp`) and checked by running the end-to-end tests with
//! `ENCLAVE_SECCOMP=log` and reading the kernel's audit records: a list that misses a call
//! shows up there as `type=1326 … comm="<thread>" syscall=<nr>`.

use super::common;
use super::kvm_ioctls;
use super::rules::{all, arg_eq, when, Allow};
use super::ThreadKind;

fn int(v: i32) -> u64 {
    u64::try_from(v).unwrap_or(u64::MAX)
}

/// Stream I/O on sockets the thread already holds (accepted or handed over): reads, writes,
/// time-outs (`SO_RCVTIMEO`/`SO_SNDTIMEO`), `try_clone` (`F_DUPFD_CLOEXEC`), shutdown.
fn socket_io() -> Vec<Allow> {
    all(&[
        libc::SYS_recvfrom,
        libc::SYS_sendto,
        libc::SYS_shutdown,
        libc::SYS_setsockopt,
        libc::SYS_fcntl,
    ])
}

/// vCPU threads (and the threads they create for new guest threads): run the guest, serve its
/// system calls against host pipes, eventfds, epolls and Unix sockets, connect to parent
/// listeners (`AF_UNIX` only), create vCPUs for new guest threads, scrub and unmap guest
/// memory at the end. No `open`: nothing a guest asks for reaches the host file system.
pub fn vcpu(pid: u32) -> Vec<Allow> {
    let mut v = common::base(pid);
    v.extend(common::spawn());
    v.extend(socket_io());
    v.extend(all(&[
        libc::SYS_recvmsg,
        libc::SYS_sendmsg,
        libc::SYS_getsockopt,
        libc::SYS_poll,
        libc::SYS_ppoll,
        libc::SYS_epoll_create1,
        libc::SYS_epoll_ctl,
        libc::SYS_epoll_wait,
        libc::SYS_epoll_pwait,
        libc::SYS_eventfd2,
        libc::SYS_pipe2,
        libc::SYS_connect,
        libc::SYS_mincore,
    ]));
    v.push(when(libc::SYS_socket, &[arg_eq(0, int(libc::AF_UNIX))]));
    v.push(when(libc::SYS_socketpair, &[arg_eq(0, int(libc::AF_UNIX))]));
    for (_, request) in kvm_ioctls::run_time() {
        v.push(when(libc::SYS_ioctl, &[arg_eq(1, request)]));
    }
    v.push(when(libc::SYS_ioctl, &[arg_eq(1, libc::FIONBIO)]));
    // The vsock transmit drainer pins itself to the parent's CPUs (`HostCpus::enter`): only
    // the calling thread; the enclave's cpuset still bounds the vCPU threads.
    v.push(when(libc::SYS_sched_setaffinity, &[arg_eq(0, 0)]));
    v
}

/// The control server: accepts on `control.sock`, one thread per connection reads a request
/// line and answers; console clients are handed to the console hub.
pub fn control(pid: u32) -> Vec<Allow> {
    let mut v = common::base(pid);
    v.extend(common::spawn());
    v.extend(socket_io());
    v.extend(all(&[libc::SYS_accept4]));
    v
}

/// The hybrid-vsock server: accepts on `vsock.sock`, one thread per handshake, hands the
/// stream to the guest's listener queue (an eventfd write wakes the guest).
pub fn vsock(pid: u32) -> Vec<Allow> {
    let mut v = common::base(pid);
    v.extend(common::spawn());
    v.extend(socket_io());
    v.extend(all(&[libc::SYS_accept4]));
    v
}

/// The main thread after set-up (and the short-lived cgroup mover): waits for the end, then
/// tears down: releases the pool claim (lock file, cgroup `tasks` writes and `rmdir`, claim
/// file), writes the final state and removes the run directory. Creates no threads, opens no
/// sockets, issues no ioctl.
pub fn daemon(pid: u32) -> Vec<Allow> {
    let mut v = common::base(pid);
    v.extend(all(&[
        libc::SYS_openat,
        libc::SYS_newfstatat,
        libc::SYS_fstat,
        libc::SYS_statx,
        libc::SYS_lseek,
        libc::SYS_getdents64,
        libc::SYS_unlink,
        libc::SYS_unlinkat,
        libc::SYS_rmdir,
        libc::SYS_rename,
        libc::SYS_renameat,
        libc::SYS_renameat2,
        libc::SYS_flock,
        libc::SYS_fcntl,
        libc::SYS_shutdown,
        libc::SYS_pread64,
        // `create_dir_all` of the run root before taking the pool lock (EEXIST by then).
        libc::SYS_mkdir,
        // Scrubbing guest memory when the last handle to it goes (`GuestRam::scrub`).
        libc::SYS_mincore,
    ]));
    v
}

/// The list of `kind`.
pub fn list(kind: ThreadKind, pid: u32) -> Vec<Allow> {
    match kind {
        ThreadKind::Vcpu => vcpu(pid),
        ThreadKind::Control => control(pid),
        ThreadKind::Vsock => vsock(pid),
        ThreadKind::Daemon => daemon(pid),
    }
}
