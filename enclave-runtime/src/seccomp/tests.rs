//! Unit tests of the allow-lists: what each kind may and may not do, and the kernel's verdict
//! on a real filter in a forked child.

use super::rules::distinct;
use super::*;

fn has(kind: ThreadKind, nr: i64) -> bool {
    distinct(&kinds::list(kind, 1)).contains(&nr)
}

#[test]
fn every_kind_compiles_in_both_modes() {
    for kind in ThreadKind::ALL {
        for mode in [Mode::Kill, Mode::Log] {
            let p = compile(kind, std::process::id(), mode).unwrap();
            assert!(p.len() > 10, "{kind:?} {mode:?}: {} instructions", p.len());
        }
    }
}

#[test]
fn dangerous_calls_are_in_no_list() {
    for kind in ThreadKind::ALL {
        for nr in [
            libc::SYS_execve,
            libc::SYS_execveat,
            libc::SYS_fork,
            libc::SYS_vfork,
            libc::SYS_ptrace,
            libc::SYS_process_vm_readv,
            libc::SYS_process_vm_writev,
            libc::SYS_mount,
            libc::SYS_setuid,
            libc::SYS_capset,
            libc::SYS_init_module,
            libc::SYS_bpf,
            libc::SYS_kill,
            libc::SYS_bind,
            libc::SYS_listen,
        ] {
            assert!(!has(kind, nr), "{kind:?} allows {nr}");
        }
    }
}

#[test]
fn only_the_main_thread_touches_files_and_only_vcpus_use_kvm() {
    for kind in [ThreadKind::Vcpu, ThreadKind::Control, ThreadKind::Vsock] {
        assert!(!has(kind, libc::SYS_openat), "{kind:?} may open files");
        assert!(!has(kind, libc::SYS_unlinkat), "{kind:?} may unlink");
    }
    assert!(has(ThreadKind::Daemon, libc::SYS_openat));
    for kind in [ThreadKind::Daemon, ThreadKind::Control, ThreadKind::Vsock] {
        assert!(!has(kind, libc::SYS_ioctl), "{kind:?} may ioctl");
        assert!(!has(kind, libc::SYS_socket), "{kind:?} may create sockets");
    }
    assert!(
        !has(ThreadKind::Daemon, libc::SYS_clone3),
        "main creates no threads"
    );
    assert!(has(ThreadKind::Vcpu, libc::SYS_ioctl));
}

/// Runs `body` in a forked child under `kind`'s kill filter; returns the wait status.
fn in_filtered_child(kind: ThreadKind, body: fn() -> i32) -> i32 {
    // The filter is compiled before fork: the child only makes system calls (no allocation).
    // Its own pid differs from ours, so tgkill rules are irrelevant here.
    let program = compile(kind, 0, Mode::Kill).unwrap();
    // SAFETY: the child runs only async-signal-safe code (prctl, seccomp, raw system calls,
    // _exit) on memory prepared before the fork.
    let child = unsafe { libc::fork() };
    assert!(child >= 0, "fork failed");
    if child == 0 {
        let code = if seccompiler::apply_filter(&program).is_ok() {
            body()
        } else {
            99
        };
        // SAFETY: ends the forked child without running the parent's atexit handlers.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waits for the child just forked; `status` is a valid out-pointer.
    let rc = unsafe { libc::waitpid(child, &mut status, 0) };
    assert_eq!(rc, child);
    status
}

#[test]
fn allowed_calls_pass_and_a_forbidden_one_kills() {
    let ok = in_filtered_child(ThreadKind::Vcpu, || {
        // SAFETY: plain system calls on descriptors the child creates and closes.
        unsafe {
            let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
            if fd < 0 {
                return 1;
            }
            libc::close(fd);
            let efd = libc::eventfd(0, libc::EFD_CLOEXEC);
            if efd < 0 {
                return 2;
            }
            libc::close(efd);
        }
        0
    });
    assert!(
        libc::WIFEXITED(ok) && libc::WEXITSTATUS(ok) == 0,
        "status {ok:#x}"
    );
    for kind in ThreadKind::ALL {
        let killed = in_filtered_child(kind, || i32::from(!forbidden_call()));
        assert!(
            libc::WIFSIGNALED(killed) && libc::WTERMSIG(killed) == libc::SIGSYS,
            "{kind:?}: status {killed:#x}"
        );
    }
    let opened = in_filtered_child(ThreadKind::Vcpu, || {
        // SAFETY: the path is a NUL-terminated literal; the descriptor is closed if opened.
        let fd = unsafe { libc::open(c"/etc/hostname".as_ptr(), libc::O_RDONLY) };
        if fd >= 0 {
            // SAFETY: `fd` was just opened by this child.
            unsafe { libc::close(fd) };
        }
        0
    });
    assert!(
        libc::WIFSIGNALED(opened) && libc::WTERMSIG(opened) == libc::SIGSYS,
        "vCPU threads cannot open files: status {opened:#x}"
    );
}

#[test]
fn log_mode_lets_a_forbidden_call_through() {
    let program = compile(ThreadKind::Control, 0, Mode::Log).unwrap();
    // SAFETY: as in `in_filtered_child`.
    let child = unsafe { libc::fork() };
    assert!(child >= 0);
    if child == 0 {
        let code = match seccompiler::apply_filter(&program) {
            Ok(()) if forbidden_call() => 0,
            Ok(()) => 1,
            Err(_) => 99,
        };
        // SAFETY: ends the forked child.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waits for our child.
    assert_eq!(unsafe { libc::waitpid(child, &mut status, 0) }, child);
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
}

#[test]
fn lists_stay_small() {
    // A guard against lists growing unnoticed: raising a bound needs a reason in review.
    for (kind, bound) in [
        (ThreadKind::Vcpu, 55),
        (ThreadKind::Control, 40),
        (ThreadKind::Vsock, 40),
        (ThreadKind::Daemon, 45),
    ] {
        let n = distinct(&kinds::list(kind, 1)).len();
        println!("{}: {n} system calls", kind.name());
        assert!(
            n <= bound,
            "{kind:?} allows {n} system calls (bound {bound})"
        );
    }
}
