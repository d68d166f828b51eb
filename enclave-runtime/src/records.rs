//! Records of enclaves that ended: what stays of a run directory once its VMM is gone.
//!
//! When a program ends by itself (exit, fatal signal, crash) the VMM gives back every resource
//! as before (CPUs, memory, cgroup, sockets), and leaves in its run directory only a record:
//! `state.json` with the outcome (state `EXITED` or `CRASHED`, exit status or crash report) and,
//! for a debug-mode enclave, `console.log`, the last [`CONSOLE_LOG_BYTES`] of its console. A
//! record stays until `enclave terminate-enclave --enclave-id <id>` (or `--all`) removes it;
//! at most [`MAX_RECORDS`] are kept, the oldest go first ([`prune`], which the VMM calls
//! after it kept its record, and `describe-enclaves` after it reclaimed dead VMMs). An
//! enclave terminated on request leaves no record (its run directory goes entirely, as before). A VMM that dies
//! itself (`kill -9`, OOM killer, seccomp) cannot write one: the command that reclaims its
//! claim turns its run directory into a record with state `VMM_DIED` and an `EndReason`
//! ([`mark_vmm_died`]); its console output is lost with it.

use std::path::{Path, PathBuf};

use crate::control::protocol::EnclaveInfo;
use crate::vcpu::Outcome;

/// Name of the state file in a run directory.
pub const STATE_FILE: &str = "state.json";
/// Name of the kept console log of a debug-mode enclave.
pub const CONSOLE_LOG: &str = "console.log";
/// The most console output kept for an ended debug-mode enclave (the newest bytes).
pub const CONSOLE_LOG_BYTES: usize = 1 << 20;
/// The most records of ended enclaves kept under a run root; older ones are removed.
pub const MAX_RECORDS: usize = 16;
/// The files a record is made of; anything else in an ended enclave's run directory is a leak.
pub const RECORD_FILES: [&str; 2] = [STATE_FILE, CONSOLE_LOG];

/// State word of an enclave whose program exited or was killed by a signal of its own.
pub const STATE_EXITED: &str = "EXITED";
/// State word of an enclave whose program crashed (unhandled exception).
pub const STATE_CRASHED: &str = "CRASHED";
/// State word of an enclave whose VMM process died without reporting an outcome.
pub const STATE_VMM_DIED: &str = "VMM_DIED";

/// The state word `describe-enclaves` shows for an ended enclave.
pub fn state_of(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Crashed(_) => STATE_CRASHED,
        _ => STATE_EXITED,
    }
}

/// Removes everything from `dir` except the record's files (sockets, logs, temporaries).
pub fn keep_only_record(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.filter_map(Result::ok) {
        let name = e.file_name();
        if RECORD_FILES.iter().any(|k| name == *k) {
            continue;
        }
        let path = e.path();
        let r = if e.file_type().is_ok_and(|t| t.is_dir()) {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        if let Err(err) = r {
            tracing::warn!(path = %path.display(), error = %err, "cannot remove from the enclave's record");
        }
    }
}

/// Writes the console log of an ended enclave: at most the last [`CONSOLE_LOG_BYTES`] of
/// `bytes`, readable by its owner only (like the control socket that served the console).
pub fn write_console_log(dir: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let start = bytes.len().saturating_sub(CONSOLE_LOG_BYTES);
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(dir.join(CONSOLE_LOG))?
        .write_all(bytes.get(start..).unwrap_or_default())
}

/// The state file in `dir`, whatever it tells.
fn read_state(dir: &Path) -> Option<EnclaveInfo> {
    let bytes = std::fs::read(dir.join(STATE_FILE)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The record in `dir`: its state file, if it tells an ended enclave (one with an outcome, or
/// whose VMM died).
pub fn read(dir: &Path) -> Option<EnclaveInfo> {
    read_state(dir).filter(|i| i.outcome.is_some() || i.state == STATE_VMM_DIED)
}

/// Turns the run directory of an enclave whose VMM (`pid`) died without reporting into a
/// record (state [`STATE_VMM_DIED`] with the reason); returns false, changing nothing, when
/// the directory has no state of a launched enclave (the VMM died during its launch).
pub fn mark_vmm_died(dir: &Path, pid: u32) -> bool {
    let Some(mut info) = read_state(dir) else {
        return false;
    };
    if info.outcome.is_none() {
        info.state = STATE_VMM_DIED.into();
        info.end_reason = Some(format!(
            "the VMM process {pid} died without reporting: killed by a signal (kill -9, the OOM killer) or by its seccomp filter; see `dmesg | grep -e type=1326 -e oom`"
        ));
    }
    let Ok(bytes) = serde_json::to_vec_pretty(&info) else {
        return false;
    };
    let tmp = dir.join(".state.json.tmp");
    if std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, dir.join(STATE_FILE)))
        .is_err()
    {
        return false;
    }
    keep_only_record(dir);
    true
}

/// Whether `dir` holds a finished record: an outcome in its state file and no control socket.
pub fn is_record(dir: &Path) -> bool {
    !dir.join(crate::control::client::CONTROL_SOCKET).exists() && read(dir).is_some()
}

/// Run directories under `run_root` that are finished records, oldest first.
pub fn list(run_root: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(run_root) else {
        return Vec::new();
    };
    let mut v: Vec<(std::time::SystemTime, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter(|e| crate::pool::validate_enclave_id(&e.file_name().to_string_lossy()).is_ok())
        .map(|e| e.path())
        .filter(|p| is_record(p))
        .map(|p| {
            let t = std::fs::metadata(p.join(STATE_FILE))
                .and_then(|m| m.modified())
                .unwrap_or(std::time::UNIX_EPOCH);
            (t, p)
        })
        .collect();
    v.sort();
    v.into_iter().map(|(_, p)| p).collect()
}

/// Removes the oldest records beyond [`MAX_RECORDS`]; returns the removed directories.
pub fn prune(run_root: &Path) -> Vec<PathBuf> {
    let all = list(run_root);
    let over = all.len().saturating_sub(MAX_RECORDS);
    all.into_iter()
        .take(over)
        .filter(|p| std::fs::remove_dir_all(p).is_ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(outcome: Option<Outcome>) -> EnclaveInfo {
        EnclaveInfo {
            enclave_name: "t".into(),
            enclave_id: "enc-0000000000000001".into(),
            process_id: 1,
            enclave_cid: 16,
            number_of_cpus: 1,
            cpu_ids: vec![1],
            memory_mib: 64,
            state: "RUNNING".into(),
            flags: "NONE".into(),
            cpu_sharing: "exclusive".into(),
            memory_backing: "locked-4K".into(),
            measurements: serde_json::Value::Null,
            attested_measurements: serde_json::Value::Null,
            attestation: String::new(),
            seccomp: String::new(),
            outcome,
            end_reason: None,
        }
    }

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("enclave-records-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn record_keeps_only_state_and_console() {
        let dir = tmp("keep");
        std::fs::write(
            dir.join(STATE_FILE),
            serde_json::to_vec(&info(Some(Outcome::Exited { status: 3 }))).unwrap(),
        )
        .unwrap();
        std::fs::write(dir.join("vsock.sock_5000"), b"").unwrap();
        std::fs::write(dir.join("vmm.log"), b"log").unwrap();
        write_console_log(&dir, &vec![b'x'; CONSOLE_LOG_BYTES + 10]).unwrap();
        keep_only_record(&dir);
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, [CONSOLE_LOG, STATE_FILE]);
        assert_eq!(
            std::fs::metadata(dir.join(CONSOLE_LOG)).unwrap().len(),
            u64::try_from(CONSOLE_LOG_BYTES).unwrap()
        );
        assert!(is_record(&dir));
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.join(CONSOLE_LOG))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn running_enclave_is_no_record_and_prune_keeps_the_newest() {
        let root = tmp("prune");
        let running = root.join("enc-00000000000000ff");
        std::fs::create_dir_all(&running).unwrap();
        std::fs::write(
            running.join(STATE_FILE),
            serde_json::to_vec(&info(None)).unwrap(),
        )
        .unwrap();
        assert!(!is_record(&running));
        for i in 0..MAX_RECORDS + 3 {
            let d = root.join(format!("enc-{i:016x}"));
            std::fs::create_dir_all(&d).unwrap();
            let crash = Outcome::Crashed(crate::vcpu::CrashReport {
                vector: Some(14),
                reason: "page fault".into(),
                rip: 0x40_1000,
                fault_address: Some(0),
                error_code: None,
            });
            std::fs::write(
                d.join(STATE_FILE),
                serde_json::to_vec(&info(Some(crash))).unwrap(),
            )
            .unwrap();
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let removed = prune(&root);
        assert_eq!(removed.len(), 3);
        assert!(removed.contains(&root.join("enc-0000000000000000")));
        assert_eq!(list(&root).len(), MAX_RECORDS);
        assert!(
            running.exists(),
            "a running enclave's directory is never pruned"
        );
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_dead_vmms_directory_becomes_a_record_with_the_reason() {
        let dir = tmp("died");
        assert!(!mark_vmm_died(&dir, 42), "no state: nothing to keep");
        std::fs::write(
            dir.join(STATE_FILE),
            serde_json::to_vec(&info(None)).unwrap(),
        )
        .unwrap();
        std::fs::write(dir.join("control.sock"), b"").unwrap();
        assert!(read(&dir).is_none());
        assert!(mark_vmm_died(&dir, 42));
        let rec = read(&dir).unwrap();
        assert_eq!(rec.state, STATE_VMM_DIED);
        assert!(rec.end_reason.unwrap().contains("42"));
        assert!(is_record(&dir), "the socket went");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn crash_is_crashed_and_exit_is_exited() {
        assert_eq!(state_of(&Outcome::Exited { status: 0 }), STATE_EXITED);
        assert_eq!(state_of(&Outcome::Signaled { signal: 6 }), STATE_EXITED);
    }
}
