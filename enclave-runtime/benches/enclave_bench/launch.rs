//! Launch costs: an enclave started in this process (`vmm::prepare` → program exit), and the
//! native baseline, fork+exec+wait of the same static binary.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use enclave_runtime::memory::Backing;
use enclave_runtime::vcpu::{Outcome, RegisterAccess};
use enclave_runtime::vmm::{prepare, LaunchConfig, LaunchTimings};

/// Guest memory of in-process enclaves, MiB.
pub const MEMORY_MIB: u64 = 64;

/// Times of one in-process enclave.
#[derive(Debug, Clone, Copy)]
pub struct InProcessRun {
    /// `vmm::prepare`: unpack the image, map memory, load the program, create VM and vCPU.
    pub prepare: Duration,
    /// `Enclave::run` until the program exited.
    pub run: Duration,
    /// Dropping the enclave (VM, vCPU and guest memory), after the exit.
    pub teardown: Duration,
    /// System calls the enclave kernel served (exit_group included).
    pub calls: u64,
    /// How the vCPU moved registers.
    pub access: Option<RegisterAccess>,
    /// `prepare`'s own split: unpacking the image vs building the VM.
    pub timings: LaunchTimings,
}

impl InProcessRun {
    /// `prepare` start to program exit.
    pub fn launch(&self) -> Duration {
        self.prepare + self.run
    }
}

/// The configuration of every in-process enclave: anonymous memory, 64 MiB, one vCPU,
/// production mode (no console); `bare` answers every call but exit with 0 and no work.
pub fn config(bare: bool) -> LaunchConfig {
    LaunchConfig {
        memory_mib: MEMORY_MIB,
        cpu_count: 1,
        debug: false,
        backing: Backing::Anonymous,
        console: None,
        hostname: "bench".into(),
        bare,
        vsock: None,
        attestation: None,
        host_cpus: Default::default(),
    }
}

/// Prepares and runs `eif` in this process; the program must exit with status 0.
pub fn run_in_process(eif: &[u8], bare: bool) -> anyhow::Result<InProcessRun> {
    let cfg = config(bare);
    let t0 = Instant::now();
    let mut enclave = prepare(eif, &cfg).context("vmm::prepare failed")?;
    let prepared = t0.elapsed();
    let t1 = Instant::now();
    let access = enclave.register_access();
    let outcome = enclave.run();
    let run = t1.elapsed();
    let calls = enclave.kernel().calls.load(Ordering::Relaxed);
    let timings = enclave.timings;
    let t2 = Instant::now();
    drop(enclave);
    let teardown = t2.elapsed();
    if outcome != (Outcome::Exited { status: 0 }) {
        bail!("the benchmark program did not exit with status 0: {outcome:?}");
    }
    Ok(InProcessRun {
        prepare: prepared,
        run,
        teardown,
        calls,
        access,
        timings,
    })
}

/// fork+exec+wait of `binary` natively (`Command::status`), output discarded.
pub fn fork_exec(binary: &Path) -> anyhow::Result<Duration> {
    fork_exec_args(binary, &[])
}

/// Samples of the launch benchmark, in milliseconds.
#[derive(Debug, Default)]
pub struct LaunchSamples {
    /// `prepare` start to exit.
    pub launch: Vec<f64>,
    /// `prepare` only.
    pub prepare: Vec<f64>,
    /// Within `prepare`: unpacking and checking the image.
    pub unpack: Vec<f64>,
    /// Within `prepare`: memory, program load, VM and vCPU.
    pub build: Vec<f64>,
    /// `run` only.
    pub run: Vec<f64>,
    /// Drop of the enclave after exit.
    pub teardown: Vec<f64>,
    /// Native fork+exec+wait.
    pub fork_exec: Vec<f64>,
    /// `prepare` start to the first system call of a libc-free program whose first call is
    /// `exit_group` (so to its first system call, served).
    pub first_call: Vec<f64>,
    /// Native fork+exec+wait of that program.
    pub first_call_fork_exec: Vec<f64>,
    /// System calls the program made in the enclave.
    pub calls: u64,
    /// Register access mode of the vCPU.
    pub access: Option<RegisterAccess>,
}

/// Milliseconds of `d`.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn micros_to_ms(us: u64) -> f64 {
    us as f64 / 1e3
}

/// A program and its image, as the launch benchmark runs it.
pub struct Launchable<'a> {
    /// The image.
    pub eif: &'a [u8],
    /// The same program natively, with its arguments.
    pub binary: &'a Path,
    /// Arguments of the native run.
    pub args: &'a [&'a str],
}

/// fork+exec+wait of `binary args` natively (`Command::status`), output discarded.
pub fn fork_exec_args(binary: &Path, args: &[&str]) -> anyhow::Result<Duration> {
    let t0 = Instant::now();
    let status = Command::new(binary)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .with_context(|| format!("cannot run {}", binary.display()))?;
    let elapsed = t0.elapsed();
    if !status.success() {
        bail!("{} failed natively: {status}", binary.display());
    }
    Ok(elapsed)
}

/// `runs` in-process launches interleaved with `runs` fork+execs (after `warmup` untimed
/// pairs), so that drift of a noisy machine hits both alike; the same for `first`, the
/// program whose first system call is its exit. Stops early when `stop()` says.
pub fn measure(
    eif: &[u8],
    binary: &Path,
    first: &Launchable<'_>,
    warmup: usize,
    runs: usize,
    stop: &dyn Fn() -> bool,
) -> anyhow::Result<LaunchSamples> {
    let mut s = LaunchSamples::default();
    for _ in 0..warmup {
        run_in_process(eif, false)?;
        fork_exec(binary)?;
        run_in_process(first.eif, false)?;
        fork_exec_args(first.binary, first.args)?;
    }
    for i in 0..runs {
        if stop() {
            bail!("interrupted");
        }
        // Alternate which goes first, so neither always follows the other.
        let (r, f) = if i % 2 == 0 {
            let r = run_in_process(eif, false)?;
            (r, fork_exec(binary)?)
        } else {
            let f = fork_exec(binary)?;
            (run_in_process(eif, false)?, f)
        };
        s.launch.push(ms(r.launch()));
        s.prepare.push(ms(r.prepare));
        s.unpack.push(micros_to_ms(r.timings.unpack_us));
        s.build.push(micros_to_ms(r.timings.build_us));
        s.run.push(ms(r.run));
        s.teardown.push(ms(r.teardown));
        s.fork_exec.push(ms(f));
        s.calls = r.calls;
        s.access = r.access;
        let (r, f) = if i % 2 == 0 {
            let r = run_in_process(first.eif, false)?;
            (r, fork_exec_args(first.binary, first.args)?)
        } else {
            let f = fork_exec_args(first.binary, first.args)?;
            (run_in_process(first.eif, false)?, f)
        };
        if r.calls != 1 {
            bail!(
                "the first-call program made {} system calls, expected 1",
                r.calls
            );
        }
        s.first_call.push(ms(r.launch()));
        s.first_call_fork_exec.push(ms(f));
    }
    Ok(s)
}
