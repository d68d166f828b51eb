//! The system-call round trip: a libc-free guest doing `getppid` N times, run in an
//! in-process enclave with each call served by the enclave kernel and in bare mode (every call
//! answered 0 with no work: the doorbell round trip alone). Only the run phase is timed.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::guest;
use crate::launch::run_in_process;

/// Calls in the first calibration run.
const CALIBRATION_CALLS: u64 = 2_000;
/// Largest N the calibration may choose.
const MAX_CALLS: u64 = 500_000_000;

/// Per-call samples, microseconds.
#[derive(Debug, Default)]
pub struct SyscallSamples {
    /// Served by the enclave kernel.
    pub served_us: Vec<f64>,
    /// Bare doorbell round trip.
    pub bare_us: Vec<f64>,
    /// Shortest timed run, seconds.
    pub shortest_run_s: f64,
    /// Calls per run.
    pub calls: u64,
    /// Native `getppid` on the host.
    pub native_us: Vec<f64>,
    /// Native calls per sample.
    pub native_calls: u64,
}

/// Runs the guest with `calls` iterations; returns the run phase.
fn run(binary: &Path, calls: u64, bare: bool) -> anyhow::Result<Duration> {
    let eif = guest::eif(binary, &[calls.to_string()])?;
    let r = run_in_process(&eif, bare)?;
    // N getppid + exit_group.
    if r.calls != calls + 1 {
        bail!(
            "the enclave kernel served {} calls, expected {} (bare: {bare})",
            r.calls,
            calls + 1
        );
    }
    Ok(r.run)
}

/// An N for which a bare run (the faster kind) lasted at least `target` with a 25 % margin.
/// The first calls of a run cost more than the rest, so N is grown from measured runs until
/// one is long enough rather than extrapolated from a short one.
fn calibrate(binary: &Path, target: Duration) -> anyhow::Result<u64> {
    let want = target.as_nanos() * 5 / 4;
    let mut calls = CALIBRATION_CALLS;
    loop {
        let took = run(binary, calls, true)?.as_nanos().max(1);
        if took >= want || calls >= MAX_CALLS {
            return Ok(calls);
        }
        // Aim 20 % past the mark; grow by at least a quarter.
        let aimed = u128::from(calls) * want * 6 / 5 / took;
        let next = u64::try_from(aimed).unwrap_or(MAX_CALLS);
        calls = next.max(calls + calls / 4).min(MAX_CALLS);
    }
}

fn per_call_us(d: Duration, calls: u64) -> f64 {
    d.as_secs_f64() * 1e6 / calls as f64
}

/// `reps` served and `reps` bare runs, alternating, each about `target` long.
pub fn measure(
    binary: &Path,
    target: Duration,
    reps: usize,
    native_calls: u64,
    stop: &dyn Fn() -> bool,
) -> anyhow::Result<SyscallSamples> {
    let calls = calibrate(binary, target).context("calibrating the getppid loop")?;
    let mut s = SyscallSamples {
        calls,
        shortest_run_s: f64::INFINITY,
        native_calls,
        ..Default::default()
    };
    for i in 0..reps {
        if stop() {
            bail!("interrupted");
        }
        let order = if i % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for bare in order {
            let took = run(binary, calls, bare)?;
            s.shortest_run_s = s.shortest_run_s.min(took.as_secs_f64());
            let us = per_call_us(took, calls);
            if bare {
                s.bare_us.push(us);
            } else {
                s.served_us.push(us);
            }
        }
        s.native_us.push(native_getppid_us(native_calls));
    }
    Ok(s)
}

/// Microseconds per raw `getppid` system call on the host.
fn native_getppid_us(calls: u64) -> f64 {
    let t = Instant::now();
    for _ in 0..calls {
        // SAFETY: getppid takes no arguments and touches no memory.
        let ppid = unsafe { libc::syscall(libc::SYS_getppid) };
        std::hint::black_box(ppid);
    }
    per_call_us(t.elapsed(), calls.max(1))
}
