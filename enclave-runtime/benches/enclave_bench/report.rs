//! The report: a table for people, then one JSON line with every number for scripts.

use serde_json::{json, Value};

use crate::cli_pool::CliSamples;
use crate::launch::{LaunchSamples, MEMORY_MIB};
use crate::machine::Machine;
use crate::stats::{summarize, Summary};
use crate::syscall::SyscallSamples;
use crate::Plan;

/// Target: launch (prepare → exit) at most this many milliseconds.
const LAUNCH_MS_MAX: f64 = 10.0;
/// Target: launch at most this many times native fork+exec.
const LAUNCH_RATIO_MAX: f64 = 10.0;
/// Target: a served system call at most this many times the bare round trip.
const SYSCALL_RATIO_MAX: f64 = 1.2;

/// Whether the bench (and the VMM code in it) was built optimized (`cargo bench`).
const OPTIMIZED: bool = !cfg!(debug_assertions);

/// Everything measured in one run.
pub struct Results {
    /// Repetition counts.
    pub plan: Plan,
    /// The host.
    pub machine: Machine,
    /// In-process launches and the fork+exec baseline.
    pub launch: LaunchSamples,
    /// CLI launches (ms), or why they were skipped.
    pub cli: Result<CliSamples, String>,
    /// System-call round trips.
    pub syscall: SyscallSamples,
}

fn row(label: &str, s: Option<Summary>, unit: &str) {
    match s {
        Some(s) => println!(
            "  {label:<46} {:>10.3} {unit:<3} {:>10.3} {:>10.3} {:>6}",
            s.median, s.p10, s.p90, s.runs
        ),
        None => println!("  {label:<46} {:>10}", "-"),
    }
}

fn ratio(a: Option<Summary>, b: Option<Summary>) -> Option<f64> {
    let (a, b) = (a?, b?);
    (b.median > 0.0).then(|| a.median / b.median)
}

/// Ratio of the 10th percentiles: steadier than medians when a busy machine makes one side
/// bimodal (e.g. a fork+exec child waiting a scheduler tick for a CPU).
fn ratio_p10(a: Option<Summary>, b: Option<Summary>) -> Option<f64> {
    let (a, b) = (a?, b?);
    (b.p10 > 0.0).then(|| a.p10 / b.p10)
}

fn verdict(ok: Option<bool>) -> &'static str {
    match ok {
        Some(true) => "met",
        Some(false) => "MISSED",
        None => "n/a",
    }
}

fn check(label: &str, value: Option<f64>, unit: &str, max: f64) -> Option<bool> {
    let ok = value.map(|v| v <= max);
    match value {
        Some(v) => println!(
            "  {label:<46} {v:>10.3} {unit:<3} target <= {max} {unit:<3} {}",
            verdict(ok)
        ),
        None => println!(
            "  {label:<46} {:>10}     target <= {max} {unit:<3} n/a",
            "-"
        ),
    }
    ok
}

/// A ratio printed for context, without a target.
fn context(label: &str, value: Option<f64>) {
    if let Some(v) = value {
        println!("  {label:<46} {v:>10.3} x   (context, no target)");
    }
}

fn median(s: Option<Summary>) -> Value {
    s.map_or(Value::Null, |s| json!(s.median))
}

impl Results {
    /// Prints the table and the JSON line.
    pub fn print(&self) {
        let m = &self.machine;
        let l = &self.launch;
        let launch = summarize(&l.launch);
        let prepare = summarize(&l.prepare);
        let unpack = summarize(&l.unpack);
        let build = summarize(&l.build);
        let run = summarize(&l.run);
        let teardown = summarize(&l.teardown);
        let fork_exec = summarize(&l.fork_exec);
        let cli = self.cli.as_ref().ok().and_then(|v| summarize(&v.to_exit));
        let cli_heartbeat = self
            .cli
            .as_ref()
            .ok()
            .and_then(|v| summarize(&v.to_heartbeat));
        let first_call = summarize(&l.first_call);
        let first_call_fork_exec = summarize(&l.first_call_fork_exec);
        let served = summarize(&self.syscall.served_us);
        let bare = summarize(&self.syscall.bare_us);
        let native = summarize(&self.syscall.native_us);
        let access = l.access.map(|a| format!("{a:?}"));

        println!();
        println!("enclave_bench ({} run)", self.plan.name);
        println!(
            "machine: {}, {} CPUs, {}, kernel {}, vCPU registers {}",
            m.cpu_model,
            m.cores,
            m.kvm_kind(),
            m.kernel,
            access.as_deref().unwrap_or("?")
        );
        println!("in-process enclaves: {MEMORY_MIB} MiB anonymous memory, 1 vCPU, production mode");
        if self.plan.name == "quick" {
            println!("NOTE: quick run: few repetitions, the ratios are indicative only");
        }
        if !OPTIMIZED {
            println!(
                "NOTE: unoptimized build (cargo test): a smoke test only, the numbers and \
                 targets mean nothing; use cargo bench"
            );
        }
        println!();
        println!(
            "  {:<46} {:>10} {:<3} {:>10} {:>10} {:>6}",
            "measurement", "median", "", "p10", "p90", "runs"
        );
        row("launch in process (prepare -> exit)", launch, "ms");
        row("  prepare (vmm::prepare)", prepare, "ms");
        row("    unpack and check the image", unpack, "ms");
        row("    memory, program load, VM and vCPU", build, "ms");
        row(&format!("  run ({} system calls)", l.calls), run, "ms");
        row("  teardown after exit (not in launch)", teardown, "ms");
        match &self.cli {
            Ok(_) => {
                row("launch via CLI (run-enclave --attach-console)", cli, "ms");
                row(
                    "launch via CLI to heartbeat (run-enclave)",
                    cli_heartbeat,
                    "ms",
                );
            }
            Err(why) => println!("  {:<46} SKIPPED: {why}", "launch via CLI"),
        }
        row("fork+exec+wait natively (baseline)", fork_exec, "ms");
        row("launch in process to first system call", first_call, "ms");
        row(
            "  fork+exec+wait of that program (baseline)",
            first_call_fork_exec,
            "ms",
        );
        row(
            &format!("getppid served (N = {})", self.syscall.calls),
            served,
            "us",
        );
        row("getppid bare doorbell round trip", bare, "us");
        row(
            &format!(
                "getppid native on the host (N = {})",
                self.syscall.native_calls
            ),
            native,
            "us",
        );
        println!(
            "  (shortest timed getppid run: {:.3} s)",
            self.syscall.shortest_run_s
        );

        let launch_ratio = ratio(launch, fork_exec);
        let cli_ratio = ratio(cli, fork_exec);
        let launch_ratio_p10 = ratio_p10(launch, fork_exec);
        let cli_ratio_p10 = ratio_p10(cli, fork_exec);
        let syscall_ratio = ratio(served, bare);
        let native_ratio = ratio(served, native);
        println!();
        println!("  {:<46} {:>10}", "ratio / target", "value");
        let launch_ms_ok = check(
            "launch in process",
            launch.map(|s| s.median),
            "ms",
            LAUNCH_MS_MAX,
        );
        let launch_ratio_ok = check(
            "launch in process / fork+exec",
            launch_ratio,
            "x",
            LAUNCH_RATIO_MAX,
        );
        context("  same, ratio of the p10s", launch_ratio_p10);
        let cli_ms_ok = check("launch via CLI", cli.map(|s| s.median), "ms", LAUNCH_MS_MAX);
        let cli_ratio_ok = check(
            "launch via CLI / fork+exec",
            cli_ratio,
            "x",
            LAUNCH_RATIO_MAX,
        );
        context("  same, ratio of the p10s", cli_ratio_p10);
        let syscall_ok = check(
            "getppid served / bare",
            syscall_ratio,
            "x",
            SYSCALL_RATIO_MAX,
        );
        context("getppid served / native", native_ratio);
        println!();

        let cli_exit = self.cli.as_ref().map(|c| c.to_exit.as_slice());
        let cli_hb = self.cli.as_ref().map(|c| c.to_heartbeat.as_slice());
        for (id, label, unit, samples) in [
            (
                "launch_exit",
                "launch in process to exit (static glibc)",
                "ms",
                Ok(&l.launch[..]),
            ),
            (
                "launch_exit_fork_exec",
                "fork+exec+wait (static glibc)",
                "ms",
                Ok(&l.fork_exec[..]),
            ),
            (
                "launch_first_call",
                "launch in process to first system call",
                "ms",
                Ok(&l.first_call[..]),
            ),
            (
                "launch_first_call_fork_exec",
                "fork+exec+wait (libc-free, exits at once)",
                "ms",
                Ok(&l.first_call_fork_exec[..]),
            ),
            (
                "cli_exit",
                "CLI run-enclave --attach-console to exit",
                "ms",
                cli_exit,
            ),
            (
                "cli_heartbeat",
                "CLI run-enclave to heartbeat (RUNNING)",
                "ms",
                cli_hb,
            ),
            (
                "syscall_served",
                "getppid served by the enclave kernel",
                "us",
                Ok(&self.syscall.served_us[..]),
            ),
            (
                "syscall_bare",
                "bare syscall->doorbell->return",
                "us",
                Ok(&self.syscall.bare_us[..]),
            ),
            (
                "syscall_native",
                "getppid natively on the host",
                "us",
                Ok(&self.syscall.native_us[..]),
            ),
        ] {
            crate::stats::print_series(id, label, unit, samples);
        }
        let line = json!({
            "mode": self.plan.name,
            "optimized": OPTIMIZED,
            "machine": {
                "cpu_model": m.cpu_model,
                "cores": m.cores,
                "kvm_pvm": m.kvm_pvm,
                "kernel": m.kernel,
                "register_access": access,
            },
            "launch_ms": median(launch),
            "launch_prepare_ms": median(prepare),
            "launch_unpack_ms": median(unpack),
            "launch_build_ms": median(build),
            "launch_run_ms": median(run),
            "launch_teardown_ms": median(teardown),
            "launch_runs": l.launch.len(),
            "launch_syscalls": l.calls,
            "fork_exec_ms": median(fork_exec),
            "launch_ratio": launch_ratio,
            "launch_ratio_p10": launch_ratio_p10,
            "cli_launch_ms": median(cli),
            "cli_launch_ratio": cli_ratio,
            "cli_launch_ratio_p10": cli_ratio_p10,
            "cli_runs": cli.map_or(0, |s| s.runs),
            "cli_skipped": self.cli.as_ref().err(),
            "syscall_served_us": median(served),
            "syscall_bare_us": median(bare),
            "syscall_ratio": syscall_ratio,
            "syscall_calls_per_run": self.syscall.calls,
            "syscall_runs": self.syscall.served_us.len(),
            "syscall_shortest_run_s": self.syscall.shortest_run_s,
            "native_getppid_us": median(native),
            "targets": {
                "launch_ms_max": LAUNCH_MS_MAX,
                "launch_ratio_max": LAUNCH_RATIO_MAX,
                "syscall_ratio_max": SYSCALL_RATIO_MAX,
                "launch_ms_met": launch_ms_ok,
                "launch_ratio_met": launch_ratio_ok,
                "cli_launch_ms_met": cli_ms_ok,
                "cli_launch_ratio_met": cli_ratio_ok,
                "syscall_ratio_met": syscall_ok,
            },
        });
        println!("{line}");
    }
}
