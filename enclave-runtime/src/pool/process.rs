//! Telling a live VMM from a dead one: a pid plus its start time (`/proc/<pid>/stat`
//! field 22, clock ticks since boot) identifies a process even after the pid is reused.

/// Start time of `pid`, or `None` if it does not exist or is a zombie.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat)
}

/// Whether `pid` is alive and started at `start`.
pub fn is_same_live_process(pid: u32, start: u64) -> bool {
    start_time(pid) == Some(start)
}

/// Sends SIGKILL to the process `pid` only if it is the one that started at `start`; returns
/// whether it did. The process is pinned with a pidfd first and checked after, so a pid reused
/// by another process in between is never signalled (the pidfd then names the dead one).
pub fn kill_same_process(pid: u32, start: u64) -> std::io::Result<bool> {
    use std::os::fd::{FromRawFd, OwnedFd};
    let Ok(raw_pid) = libc::pid_t::try_from(pid) else {
        return Ok(false);
    };
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, raw_pid, 0u32) };
    if fd < 0 {
        return gone_or_error();
    }
    let fd = i32::try_from(fd).map_err(|_| std::io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: pidfd_open succeeded, so `fd` is a new descriptor nobody else owns.
    let pidfd = unsafe { OwnedFd::from_raw_fd(fd) };
    // The pid named our process when the pidfd was opened if it still does now: a live
    // process keeps its pid.
    if !is_same_live_process(pid, start) {
        return Ok(false);
    }
    let sig = libc::SIGKILL;
    // SAFETY: pidfd_send_signal on a pidfd we own, with no siginfo (null) and no flags.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            std::os::fd::AsRawFd::as_raw_fd(&pidfd),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0u32,
        )
    };
    if rc != 0 {
        return gone_or_error();
    }
    Ok(true)
}

/// After a failed pidfd call: `Ok(false)` if the process is gone (`ESRCH`), else the error.
fn gone_or_error() -> std::io::Result<bool> {
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::ESRCH) => Ok(false),
        _ => Err(e),
    }
}

/// Extracts the start time from a `/proc/<pid>/stat` line; `None` for zombies and dead tasks.
fn parse_stat(stat: &str) -> Option<u64> {
    // comm (field 2) may contain spaces and ')'; fields after the last ')' start at field 3.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?;
    if state == "Z" || state == "X" || state == "x" {
        return None;
    }
    // field 3 was `state`; field 22 is 19 further on.
    fields.nth(18)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kills_only_the_process_that_started_then() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id();
        let start = start_time(pid).unwrap();
        // Another start time: another process under a reused pid, left alone.
        assert!(!kill_same_process(pid, start + 1).unwrap());
        assert!(child.try_wait().unwrap().is_none(), "still running");
        assert!(kill_same_process(pid, start).unwrap());
        let status = child.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGKILL)
        );
        // Gone (and reaped): nothing to kill.
        assert!(!kill_same_process(pid, start).unwrap());
    }

    #[test]
    fn own_start_time() {
        let me = start_time(std::process::id()).unwrap();
        assert!(is_same_live_process(std::process::id(), me));
        assert!(!is_same_live_process(std::process::id(), me + 1));
        let line = "42 (a) b) c) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 1234 20";
        assert_eq!(parse_stat(line), Some(1234));
        assert_eq!(parse_stat(&line.replace(" S ", " Z ")), None);
    }
}
