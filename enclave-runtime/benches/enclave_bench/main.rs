//! `enclave_bench`: launch time and system-call round trip of enclaves, each as a ratio to a
//! baseline measured in the same run (medians over many repetitions: machines are shared
//! and noisy).
//!
//! 1. Launch: `vmm::prepare` → exit of a static glibc program that returns 0, in process
//!    (prepare and run split), and `enclave run-enclave --debug-mode --attach-console` wall
//!    time; baseline: fork+exec+wait of the same binary natively.
//! 2. System call: `getppid` from a libc-free guest, served by the enclave kernel vs bare mode
//!    (the doorbell round trip with no work); native `getppid` for context.
//!
//! `cargo bench -p enclave-runtime --bench enclave_bench` runs the full version (see
//! scripts/bench.sh, which builds the release CLI first); `-- --quick` a smoke test of a few
//! seconds. Run without `--bench` (as `cargo test --benches` does) it is the quick smoke
//! test, and it skips with a reason where KVM or gcc is missing. The last line of the output
//! is JSON with every number.

mod cli_pool;
mod guest;
mod launch;
mod machine;
mod report;
mod stats;
mod syscall;

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;

use crate::machine::Machine;
use crate::report::Results;

/// Raised by SIGINT/SIGTERM/SIGHUP: loops stop, drop guards release the pool.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_signal: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn stopped() -> bool {
    STOP.load(Ordering::SeqCst)
}

fn catch_signals() {
    let handler: extern "C" fn(libc::c_int) = on_signal;
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic (async-signal-safe); signal() touches
        // no memory of ours.
        unsafe { libc::signal(signal, handler as libc::sighandler_t) };
    }
}

/// Repetition counts of one mode.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// "full" or "quick".
    pub name: &'static str,
    /// Untimed launches first.
    pub warmup: usize,
    /// In-process launches (and as many fork+execs).
    pub launch_runs: usize,
    /// CLI launches.
    pub cli_runs: usize,
    /// Length of one getppid run.
    pub syscall_run: Duration,
    /// Served and bare runs, each.
    pub syscall_reps: usize,
    /// Native getppid calls per sample.
    pub native_calls: u64,
}

const FULL: Plan = Plan {
    name: "full",
    warmup: 3,
    launch_runs: 50,
    cli_runs: 30,
    syscall_run: Duration::from_millis(400),
    syscall_reps: 7,
    native_calls: 1_000_000,
};

const QUICK: Plan = Plan {
    name: "quick",
    warmup: 1,
    launch_runs: 5,
    cli_runs: 3,
    syscall_run: Duration::from_millis(30),
    syscall_reps: 2,
    native_calls: 100_000,
};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!(
            "enclave_bench [--quick]: launch and system-call benchmarks of enclaves\n\
             run it with `bash scripts/bench.sh` or \
             `cargo bench -p enclave-runtime --bench enclave_bench [-- --quick]`"
        );
        return ExitCode::SUCCESS;
    }
    // `cargo bench` passes --bench; `cargo test --benches` runs the binary without it.
    let benching = args.iter().any(|a| a == "--bench");
    let plan = if args.iter().any(|a| a == "--quick") || !benching {
        QUICK
    } else {
        FULL
    };
    for a in args.iter().filter(|a| *a != "--bench" && *a != "--quick") {
        eprintln!("bench: ignoring argument {a:?}");
    }
    let machine = Machine::probe();
    if let Some(why) = machine::kvm_unusable() {
        println!("SKIPPED: enclave_bench: {why}");
        return if benching {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        };
    }
    catch_signals();
    match run(plan, machine) {
        Ok(results) => {
            results.print();
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("enclave_bench: error: {e:#}");
            if stopped() {
                ExitCode::from(130)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn run(plan: Plan, machine: Machine) -> anyhow::Result<Results> {
    eprintln!(
        "bench: {} run on {}, {} CPUs, {}",
        plan.name,
        machine.cpu_model,
        machine.cores,
        machine.kvm_kind()
    );
    let target = guest::target_dir()?;
    let out = target.join("enclave-bench");
    let minimal = guest::compile(guest::MINIMAL, &out)?;
    let looper = guest::compile(guest::GETPPID_LOOP, &out)?;
    let minimal_eif = guest::eif(&minimal, &[])?;

    eprintln!(
        "bench: launch, in process and fork+exec, {} runs each",
        plan.launch_runs
    );
    let first_eif = guest::eif(&looper, &["0".to_owned()])?;
    let first = launch::Launchable {
        eif: &first_eif,
        binary: &looper,
        args: &["0"],
    };
    let launch = launch::measure(
        &minimal_eif,
        &minimal,
        &first,
        plan.warmup,
        plan.launch_runs,
        &stopped,
    )
    .context("launch benchmark")?;

    eprintln!("bench: launch through the CLI, {} runs", plan.cli_runs);
    // Its first system call makes the heartbeat, then it loops for hours: terminated.
    let idle_eif = guest::eif(&looper, &["10000000000".to_owned()])?;
    let cli = cli_pool::measure(
        &target,
        &minimal_eif,
        &idle_eif,
        plan.warmup.min(2),
        plan.cli_runs,
        &stopped,
    )
    .context("CLI launch benchmark")?;
    if let Err(why) = &cli {
        eprintln!("bench: SKIPPED the CLI launch: {why}");
    }

    eprintln!(
        "bench: system calls, served and bare, {} runs each of ~{:?}",
        plan.syscall_reps, plan.syscall_run
    );
    let syscall = syscall::measure(
        &looper,
        plan.syscall_run,
        plan.syscall_reps,
        plan.native_calls,
        &stopped,
    )
    .context("system-call benchmark")?;
    Ok(Results {
        plan,
        machine,
        launch,
        cli,
        syscall,
    })
}
