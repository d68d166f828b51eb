//! `describe-enclaves`, `terminate-enclave`, `console`: talking to running enclaves' VMMs, and
//! reading the records enclaves that ended by themselves leave behind (state `EXITED` or
//! `CRASHED` with the outcome, and a debug-mode enclave's console log; see
//! `enclave_runtime::records`). `terminate-enclave` on an ended enclave removes its record.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use enclave_runtime::control::client::Control;
use enclave_runtime::control::protocol::EnclaveInfo;
use enclave_runtime::pool::{self, PoolPaths};
use enclave_runtime::records;

use crate::args::{ConsoleArgs, TerminateArgs};
use crate::output;

/// How long a terminate waits for the VMM to clean up before killing it.
const TERMINATE_GRACE: Duration = Duration::from_secs(10);

/// Run directories of enclaves under the run root.
fn run_dirs(paths: &PoolPaths) -> Vec<(String, PathBuf)> {
    let Ok(dir) = std::fs::read_dir(&paths.run_root) else {
        return Vec::new();
    };
    let mut v: Vec<(String, PathBuf)> = dir
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            pool::validate_enclave_id(&name).ok()?;
            Some((name, e.path()))
        })
        .collect();
    v.sort();
    v
}

/// Describes every reachable enclave and every record of an ended one; removes run
/// directories nobody serves any more that hold no record.
fn live_enclaves(paths: &PoolPaths) -> Vec<EnclaveInfo> {
    let _ = pool::reclaim_dead(paths);
    let _ = records::prune(&paths.run_root);
    let mut out = Vec::new();
    for (id, dir) in run_dirs(paths) {
        match Control::new(&dir).describe() {
            Ok(info) => out.push(info),
            Err(_) if records::is_record(&dir) => {
                out.extend(records::read(&dir));
            }
            Err(_) => {
                // Starting (no socket yet) or dead without a claim: remove only stale ones.
                let stale = std::fs::metadata(&dir)
                    .and_then(|m| m.modified())
                    .map(|t| t.elapsed().unwrap_or_default() > Duration::from_secs(120))
                    .unwrap_or(false);
                if stale && !paths.claim_file(&id).exists() {
                    let _ = std::fs::remove_dir_all(&dir);
                }
            }
        }
    }
    out
}

/// `describe-enclaves`.
pub fn describe(_json: bool) -> anyhow::Result<i32> {
    let paths = PoolPaths::from_env();
    output::print_json(&live_enclaves(&paths))?;
    Ok(0)
}

/// What `terminate-enclave` did to one enclave.
enum Terminated {
    /// It was not there (any more).
    Gone,
    /// It was running and was terminated.
    Running,
    /// It had ended by itself: its record (state `state`) was removed.
    Record(String),
}

/// Terminates enclave `id`, or removes its record if it has ended. An enclave that is already
/// gone is an error, unless `gone_ok` (`--all`: an enclave listed a moment ago may have ended
/// by itself since).
fn terminate_one(paths: &PoolPaths, id: &str, gone_ok: bool) -> anyhow::Result<Terminated> {
    pool::validate_enclave_id(id)
        .context("not an enclave id (they look like enc-0123456789abcdef)")?;
    let dir = paths.run_dir(id);
    if !dir.exists() {
        if gone_ok {
            return Ok(Terminated::Gone);
        }
        bail!("no enclave {id} is running or recorded; see `enclave describe-enclaves`");
    }
    if let Some(record) = records::read(&dir).filter(|_| records::is_record(&dir)) {
        std::fs::remove_dir_all(&dir).with_context(|| {
            format!(
                "cannot remove the record of the ended enclave {id} ({}); remove it by hand",
                dir.display()
            )
        })?;
        return Ok(Terminated::Record(record.state));
    }
    let control = Control::new(&dir);
    if control.terminate().is_ok() {
        let deadline = Instant::now() + TERMINATE_GRACE;
        while Instant::now() < deadline {
            if !dir.exists() {
                return Ok(Terminated::Running);
            }
            if records::is_record(&dir) {
                // It ended by itself meanwhile and left a record: terminate removes it too.
                let _ = std::fs::remove_dir_all(&dir);
                return Ok(Terminated::Running);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    // The VMM does not answer or did not finish: kill it and reclaim what it held. Its claim
    // names the process by pid and start time, so a pid reused meanwhile is left alone.
    if let Ok(Some(claim)) = pool::Claim::open(paths, id) {
        let r = claim.record();
        if pool::kill_same_process(r.pid, r.start_time).unwrap_or(false) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let _ = pool::reclaim_dead(paths);
    if dir.exists() && !paths.claim_file(id).exists() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(Terminated::Running)
}

/// `terminate-enclave`.
pub fn terminate(a: &TerminateArgs, _json: bool) -> anyhow::Result<i32> {
    let paths = PoolPaths::from_env();
    let ids: Vec<String> = match (&a.enclave_id, a.all) {
        (Some(id), _) => vec![id.clone()],
        (None, true) => {
            let _ = pool::reclaim_dead(&paths);
            run_dirs(&paths).into_iter().map(|(id, _)| id).collect()
        }
        (None, false) => bail!("give --enclave-id ID or --all"),
    };
    let mut results = Vec::new();
    for id in ids {
        match terminate_one(&paths, &id, a.all)? {
            Terminated::Gone => {}
            Terminated::Running => {
                results.push(serde_json::json!({ "EnclaveID": id, "Terminated": true }));
            }
            Terminated::Record(state) => results.push(serde_json::json!({
                "EnclaveID": id,
                "Terminated": false,
                "State": state,
                "RecordRemoved": true,
            })),
        }
    }
    if a.enclave_id.is_some() {
        output::print_json(&results[0])?;
    } else {
        output::print_json(&results)?;
    }
    Ok(0)
}

/// `console`.
pub fn console(a: &ConsoleArgs) -> anyhow::Result<i32> {
    let paths = PoolPaths::from_env();
    pool::validate_enclave_id(&a.enclave_id)
        .context("not an enclave id (they look like enc-0123456789abcdef)")?;
    let dir = paths.run_dir(&a.enclave_id);
    if !dir.exists() {
        bail!(
            "no enclave {} is running or recorded; see `enclave describe-enclaves`",
            a.enclave_id
        );
    }
    let mut stream = match Control::new(&dir).console() {
        Ok(s) => s,
        // Ended (maybe just now): print what its record kept.
        Err(e) => {
            if !wait_for_record(&dir) {
                return Err(e.into());
            }
            return print_kept_log(&dir, &a.enclave_id);
        }
    };
    let mut out = std::io::stdout().lock();
    crate::stream::pump(&mut stream, &mut out).context("console stream broke")?;
    Ok(0)
}

/// Whether `dir` is (or within a moment becomes) the record of an ended enclave: a VMM that
/// has ended keeps its control socket open a little while for waiters.
fn wait_for_record(dir: &std::path::Path) -> bool {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        if records::is_record(dir) {
            return true;
        }
        if records::read(dir).is_none() || Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Prints the console log an ended debug-mode enclave left in its record.
fn print_kept_log(dir: &std::path::Path, id: &str) -> anyhow::Result<i32> {
    use std::io::Write;
    let path = dir.join(records::CONSOLE_LOG);
    let log = match std::fs::read(&path) {
        Ok(log) => log,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "enclave {id} has ended and kept no console log: only debug-mode enclaves have a console (run with --debug-mode)"
        ),
        Err(e) => {
            return Err(e).with_context(|| format!("cannot read {}", path.display()));
        }
    };
    let mut out = std::io::stdout().lock();
    out.write_all(&log)
        .and_then(|()| out.flush())
        .context("cannot write the console log to stdout")?;
    Ok(0)
}
