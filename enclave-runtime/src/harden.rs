//! Process hardening of the VMM besides seccomp: not dumpable (no core dumps, no
//! `/proc/<pid>/mem` or `environ` for processes without `CAP_SYS_PTRACE`), no inherited file
//! descriptors, and no capabilities once a thread is set up.
//!
//! Why capabilities and not a uid change (as Firecracker's jailer does): teardown must still
//! move tasks out of the enclave's cpuset, `rmdir` it and remove the claim and run directory,
//! all root-owned. As uid 0 the VMM passes those checks as the files' owner, without any
//! capability, so dropping every capability keeps teardown working while a hijacked VMM can no
//! longer load modules, mount, trace other processes, override file permissions, etc. A
//! switch to another uid would need the cgroup and run directories handed over to it first.

/// Capability-set layout of `capset(2)` version 3.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
/// Highest capability number the bounding-set loop tries (the kernel answers EINVAL past its
/// last one).
const MAX_CAP: u64 = 63;

/// Drops every capability of the calling thread: bounding set, ambient set, then the
/// effective, permitted and inheritable sets. Threads created afterwards inherit the empty
/// sets. Failures are logged (they can only leave capabilities in place, never add any).
pub fn drop_capabilities() {
    for cap in 0..=MAX_CAP {
        // SAFETY: prctl with integer arguments only; an unknown capability gives EINVAL.
        let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) };
        if rc != 0 {
            break;
        }
    }
    // SAFETY: prctl with integer arguments only.
    unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        )
    };
    let header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [CapData::default(); 2];
    // SAFETY: `header` and `data` are valid for the duration of the call and laid out as the
    // kernel's version-3 structures (one header, two data words); capset only reads them.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &header, data.as_ptr()) };
    if rc != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "cannot drop capabilities");
    }
}

/// Marks the process not dumpable (`PR_SET_DUMPABLE` 0).
pub fn set_not_dumpable() {
    // SAFETY: prctl with integer arguments only.
    let rc = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    if rc != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "cannot mark the VMM not dumpable");
    }
}

/// Whether the process is dumpable.
pub fn is_dumpable() -> bool {
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) == 1 }
}

/// Closes every descriptor from 3 up except `keep` (the status pipe, the launcher's console
/// stream): whatever the launcher's own parent leaked into it. Must run before this process
/// opens anything itself.
pub fn close_inherited_fds(keep: &[i32]) {
    for (first, last) in ranges_to_close(keep) {
        // SAFETY: close_range only closes descriptors; at VMM start none of them is owned by
        // Rust code of this process (the caller runs before anything is opened).
        let rc = unsafe { libc::syscall(libc::SYS_close_range, first, last, 0u32) };
        if rc != 0 {
            tracing::warn!(error = %std::io::Error::last_os_error(), "cannot close inherited descriptors");
        }
    }
}

/// The inclusive descriptor ranges from 3 up that leave out every descriptor in `keep`
/// (negative ones and 0..=2 are never closed anyway).
fn ranges_to_close(keep: &[i32]) -> Vec<(u32, u32)> {
    let mut keep: Vec<u32> = keep
        .iter()
        .filter_map(|&k| u32::try_from(k).ok())
        .filter(|&k| k >= 3)
        .collect();
    keep.sort_unstable();
    keep.dedup();
    let mut ranges = Vec::with_capacity(keep.len() + 1);
    let mut first = 3u32;
    for k in keep {
        if k > first {
            ranges.push((first, k - 1));
        }
        first = k + 1;
    }
    ranges.push((first, u32::MAX));
    ranges
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inherited_descriptors_are_closed_around_the_kept_ones() {
        let all = u32::MAX;
        assert_eq!(ranges_to_close(&[]), vec![(3, all)]);
        assert_eq!(ranges_to_close(&[-1, 1]), vec![(3, all)]);
        assert_eq!(ranges_to_close(&[3]), vec![(4, all)]);
        assert_eq!(ranges_to_close(&[5]), vec![(3, 4), (6, all)]);
        assert_eq!(
            ranges_to_close(&[9, 5, 6, 5]),
            vec![(3, 4), (7, 8), (10, all)]
        );
    }

    #[test]
    fn capabilities_drop_in_a_thread_only() {
        let before = cap_eff("self");
        let tid = std::thread::spawn(|| {
            drop_capabilities();
            // SAFETY: gettid has no preconditions.
            let tid = unsafe { libc::gettid() };
            let after = cap_eff(&format!("self/task/{tid}"));
            assert_eq!(after, Some(0), "the thread holds no capability");
            tid
        })
        .join()
        .unwrap();
        assert!(tid > 0);
        assert_eq!(cap_eff("self"), before, "other threads keep theirs");
    }

    fn cap_eff(which: &str) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{which}/status")).ok()?;
        let line = status.lines().find(|l| l.starts_with("CapEff:"))?;
        u64::from_str_radix(line.split_whitespace().nth(1)?, 16).ok()
    }
}
