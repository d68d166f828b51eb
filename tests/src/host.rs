//! Looking at host state the carve-out changes: the cpuset mount, 2 MiB hugepages, processes.

use std::path::PathBuf;

/// `nr_hugepages` of the default hugepage size.
pub const NR_HUGEPAGES: &str = "/proc/sys/vm/nr_hugepages";

/// Where the cpuset controller is mounted: the cgroup v1 `cpuset` hierarchy if there is one,
/// else the cgroup v2 root if it offers `cpuset`.
pub fn cpuset_root() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mut v2 = None;
    for line in mounts.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let Some(mount_point) = left.split(' ').nth(4) else {
            continue;
        };
        let mut right = right.split(' ');
        let fstype = right.next().unwrap_or_default();
        let options = right.nth(1).unwrap_or_default();
        if fstype == "cgroup" && options.split(',').any(|o| o == "cpuset") {
            return Some(PathBuf::from(mount_point));
        }
        if fstype == "cgroup2" {
            let controllers =
                std::fs::read_to_string(PathBuf::from(mount_point).join("cgroup.controllers"))
                    .unwrap_or_default();
            if controllers.split_whitespace().any(|c| c == "cpuset") {
                v2 = Some(PathBuf::from(mount_point));
            }
        }
    }
    v2
}

/// The current `nr_hugepages`.
///
/// # Panics
/// When the file cannot be read or holds no number.
pub fn nr_hugepages() -> u64 {
    let text = std::fs::read_to_string(NR_HUGEPAGES)
        .unwrap_or_else(|e| panic!("cannot read {NR_HUGEPAGES}: {e}"));
    text.trim()
        .parse()
        .unwrap_or_else(|e| panic!("{NR_HUGEPAGES} holds {text:?}: {e}"))
}

/// Whether a process with this pid exists (and is not a zombie).
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name in parentheses, which may contain spaces.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Sends SIGKILL to `pid`.
///
/// # Panics
/// When the pid does not fit a `pid_t` or the signal cannot be sent.
pub fn kill9(pid: u32) {
    let pid = i32::try_from(pid).unwrap_or_else(|_| panic!("pid {pid} out of range"));
    assert!(pid > 0, "refusing to kill pid {pid}");
    // SAFETY: kill has no memory-safety preconditions; `pid` names one process (> 0).
    let rc = unsafe { libc::kill(pid, libc::SIGKILL) };
    assert_eq!(rc, 0, "kill -9 {pid}: {}", std::io::Error::last_os_error());
}

/// Waits up to `timeout` for `pid` to end; whether it did.
pub fn wait_for_exit(pid: u32, timeout: std::time::Duration) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    while process_alive(pid) {
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    true
}
