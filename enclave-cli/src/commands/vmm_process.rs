//! Starting the VMM process of `run-enclave`. While the CLI is still single-threaded it forks
//! and the child becomes the VMM at once (no exec: saves the exec, dynamic linking and
//! runtime start-up of a second process, about a millisecond of every launch); otherwise it
//! spawns `enclave __vmm --request JSON --status-fd N` (the request names the console stream
//! of `--attach-console`, which the child inherits too). Either way the VMM is a session leader
//! of its own with stdin on /dev/null and stdout/stderr in the run directory's `vmm.log`.

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use anyhow::Context;
use enclave_runtime::control::protocol::LaunchRequest;
use enclave_runtime::daemon;

/// The started VMM process.
pub enum VmmChild {
    /// Forked from this process.
    Forked(libc::pid_t),
    /// Spawned as `enclave __vmm`.
    Spawned(std::process::Child),
}

impl VmmChild {
    /// Kills the VMM (launch gave up on it).
    pub fn kill(&mut self) {
        match self {
            // SAFETY: kill(2) on our own unreaped child; no memory involved.
            Self::Forked(pid) => unsafe {
                libc::kill(*pid, libc::SIGKILL);
            },
            Self::Spawned(c) => {
                let _ = c.kill();
            }
        }
    }

    /// Reaps the VMM on a background thread if it ends while this process lives.
    pub fn reap_in_background(self) {
        std::thread::spawn(move || match self {
            Self::Forked(pid) => {
                let mut status = 0;
                // SAFETY: waitpid on our own child with a valid out-pointer.
                unsafe { libc::waitpid(pid, &mut status, 0) };
            }
            Self::Spawned(mut c) => {
                let _ = c.wait();
            }
        });
    }
}

/// Whether this process has exactly one thread (then fork without exec is sound).
fn single_threaded() -> bool {
    std::fs::read_dir("/proc/self/task").is_ok_and(|d| d.count() == 1)
}

/// Starts the VMM for `request`: its output goes to `log`, its status line to `status_write`.
pub fn start(
    request: &LaunchRequest,
    log: File,
    status_write: &OwnedFd,
) -> anyhow::Result<VmmChild> {
    if single_threaded() {
        return fork_vmm(request, &log, status_write);
    }
    spawn_vmm(request, log, status_write)
}

fn fork_vmm(
    request: &LaunchRequest,
    log: &File,
    status_write: &OwnedFd,
) -> anyhow::Result<VmmChild> {
    let null = File::open("/dev/null").context("cannot open /dev/null")?;
    // SAFETY: this process has a single thread (checked by the caller), so the child is a
    // complete copy in which every lock is free and the allocator is usable; it never returns
    // into the CLI's code: it runs the VMM and exits.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(std::io::Error::last_os_error()).context("cannot fork the VMM process");
    }
    if pid > 0 {
        return Ok(VmmChild::Forked(pid));
    }
    // The child: its own session, stdio redirected.
    // SAFETY: plain system calls on descriptors this process owns; dup2 replaces 0/1/2.
    unsafe {
        libc::setsid();
        libc::dup2(null.as_raw_fd(), 0);
        libc::dup2(log.as_raw_fd(), 1);
        libc::dup2(log.as_raw_fd(), 2);
    }
    // `daemon::run_vmm` starts by closing every other descriptor the launcher had (its end of
    // the status pipe, the heartbeat listener, the log's original).
    // The VMM takes the write end over; the `OwnedFd` that also names it in this copy of the
    // launcher's memory is never dropped, as this function does not return.
    let code = daemon::run_vmm(request, status_write.as_raw_fd());
    std::process::exit(code);
}

fn spawn_vmm(
    request: &LaunchRequest,
    log: File,
    status_write: &OwnedFd,
) -> anyhow::Result<VmmChild> {
    let child_fd = status_write.as_raw_fd();
    let console_fd = request.console_fd;
    let exe = std::env::current_exe().context("cannot find the enclave executable")?;
    let mut cmd = Command::new(exe);
    cmd.arg("__vmm")
        .arg("--request")
        .arg(serde_json::to_string(request)?)
        .arg("--status-fd")
        .arg(child_fd.to_string())
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // SAFETY: the closure runs in the child between fork and exec and only makes
    // async-signal-safe calls (setsid, fcntl) on descriptors that exist in the child (the
    // status pipe and console stream the caller keeps open until the spawn returned).
    unsafe {
        cmd.pre_exec(move || {
            libc::setsid();
            for fd in std::iter::once(child_fd).chain(console_fd) {
                if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let child = cmd.spawn().context("cannot start the VMM process")?;
    Ok(VmmChild::Spawned(child))
}
