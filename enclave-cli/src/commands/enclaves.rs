//! `describe-enclaves`, `terminate-enclave`, `console`: talking to running enclaves' VMMs.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use enclave_runtime::control::client::Control;
use enclave_runtime::control::protocol::EnclaveInfo;
use enclave_runtime::pool::{self, PoolPaths};

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

/// Describes every reachable enclave; removes run directories nobody serves any more.
fn live_enclaves(paths: &PoolPaths) -> Vec<EnclaveInfo> {
    let _ = pool::reclaim_dead(paths);
    let mut out = Vec::new();
    for (id, dir) in run_dirs(paths) {
        match Control::new(&dir).describe() {
            Ok(info) => out.push(info),
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

/// Terminates enclave `id`. An enclave that is already gone is an error, unless `gone_ok`
/// (`--all`: an enclave listed a moment ago may have ended by itself since); returns whether
/// it was still there.
fn terminate_one(paths: &PoolPaths, id: &str, gone_ok: bool) -> anyhow::Result<bool> {
    pool::validate_enclave_id(id)
        .context("not an enclave id (they look like enc-0123456789abcdef)")?;
    let dir = paths.run_dir(id);
    if !dir.exists() {
        if gone_ok {
            return Ok(false);
        }
        bail!("no enclave {id} is running; see `enclave describe-enclaves`");
    }
    let control = Control::new(&dir);
    let pid = control.describe().ok().map(|i| i.process_id);
    if control.terminate().is_ok() {
        let deadline = Instant::now() + TERMINATE_GRACE;
        while Instant::now() < deadline {
            if !dir.exists() {
                return Ok(true);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    // The VMM does not answer or did not finish: kill it and reclaim what it held.
    if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
        // SAFETY: kill has no memory-safety preconditions; the pid comes from the VMM itself.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = pool::reclaim_dead(paths);
    if dir.exists() && !paths.claim_file(id).exists() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(true)
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
        if !terminate_one(&paths, &id, a.all)? {
            continue;
        }
        results.push(serde_json::json!({ "EnclaveID": id, "Terminated": true }));
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
            "no enclave {} is running; see `enclave describe-enclaves`",
            a.enclave_id
        );
    }
    let mut stream = Control::new(&dir).console()?;
    let mut out = std::io::stdout().lock();
    crate::stream::pump(&mut stream, &mut out).context("console stream broke")?;
    Ok(0)
}
