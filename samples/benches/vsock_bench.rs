//! `vsock_bench`: vsock throughput and round trips between the parent and an enclave, each
//! against a Unix socketpair in this process measured in the same run (medians of several
//! repetitions; shared machines are noisy).
//!
//! - Throughput parent→enclave (`SINK`: the enclave reads and counts), enclave→parent over an
//!   accepted connection (`SOURCE`) and over the enclave's own connection to a parent listener
//!   (`PUSH`), at 4 KiB and 64 KiB messages; baseline: the same transfer over a socketpair.
//! - Round trip of one byte (`ECHO`); baselines: a socketpair with an echo thread, and the bare
//!   KVM exit round trip (a doorbell exit with no work, as in enclave-runtime's bench, measured
//!   in an enclave run in this process while the pool is carved): how many bare exits one vsock
//!   round trip costs.
//!
//! The socketpair baselines run before the pool is carved, with every host CPU; the enclave
//! figures run while the pool holds its CPU(s) (on a 2-CPU host the parent then has one).
//!
//! `cargo bench -p samples --bench vsock_bench` runs the full version (build the release CLI
//! first: `cargo build --release -p enclave-cli`); `-- --quick` is a smoke test of seconds,
//! and so is a run without `--bench` (as `cargo test --all-targets` does), which skips with a
//! reason where enclaves cannot run. The last line of the output is JSON with every number.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use samples::scratch::{host_unsupported, Scratch};
use sdk::{EnclaveHandle, LaunchOptions};

#[path = "vsock_bench/bare_exit.rs"]
mod bare_exit;

/// The vsock port of the enclave's bench peer.
const PORT: u32 = 5000;
/// The parent listener port for `PUSH`.
const PUSH_PORT: u32 = 7000;
/// Message sizes.
const MSGS: [usize; 2] = [4 << 10, 64 << 10];

#[derive(Clone, Copy)]
struct Plan {
    name: &'static str,
    bytes: u64,
    reps: usize,
    round_trips: usize,
    /// Calls per bare-exit run.
    bare_calls: u64,
}

const FULL: Plan = Plan {
    name: "full",
    bytes: 64 << 20,
    reps: 5,
    round_trips: 2000,
    bare_calls: 20_000,
};
const QUICK: Plan = Plan {
    name: "quick",
    bytes: 4 << 20,
    reps: 2,
    round_trips: 100,
    bare_calls: 2_000,
};

/// Prints one `SERIES {json}` line with every sample of a measurement, for
/// `scripts/bench_report.py` to collect.
fn series(id: &str, label: &str, unit: &str, samples: &[f64]) {
    let line = serde_json::json!({"id": id, "label": label, "unit": unit, "samples": samples});
    println!("SERIES {line}");
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn mib_per_s(bytes: u64, d: Duration) -> f64 {
    // Byte counts here stay far below 2^52: exact as f64.
    #[allow(clippy::cast_precision_loss)]
    let b = bytes as f64;
    b / (1024.0 * 1024.0) / d.as_secs_f64().max(1e-9)
}

fn write_msgs(out: &mut impl Write, bytes: u64, msg: usize) -> std::io::Result<()> {
    let buf = vec![0x5au8; msg];
    let mut left = bytes;
    while left > 0 {
        let n = usize::try_from(left.min(msg as u64)).unwrap_or(msg);
        out.write_all(&buf[..n])?;
        left -= n as u64;
    }
    Ok(())
}

fn read_all(s: &mut impl Read) -> std::io::Result<u64> {
    let mut buf = vec![0u8; 256 << 10];
    let mut total = 0u64;
    loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Ok(total);
        }
        total += n as u64;
    }
}

/// Socketpair throughput: a writer thread, this thread reads.
fn socketpair_throughput(bytes: u64, msg: usize) -> std::io::Result<Duration> {
    let (mut a, mut b) = UnixStream::pair()?;
    let start = Instant::now();
    let w = std::thread::spawn(move || write_msgs(&mut a, bytes, msg));
    let got = read_all(&mut b)?;
    w.join()
        .map_err(|_| std::io::Error::other("writer panicked"))??;
    assert_eq!(got, bytes);
    Ok(start.elapsed())
}

fn socketpair_rtt(n: usize) -> std::io::Result<Duration> {
    let (mut a, mut b) = UnixStream::pair()?;
    let echo = std::thread::spawn(move || {
        let mut byte = [0u8; 1];
        while b.read(&mut byte).is_ok_and(|n| n == 1) {
            if b.write_all(&byte).is_err() {
                break;
            }
        }
    });
    let d = ping_pong(&mut a, n)?;
    drop(a);
    let _ = echo.join();
    Ok(d)
}

fn ping_pong(s: &mut UnixStream, n: usize) -> std::io::Result<Duration> {
    let mut byte = [7u8; 1];
    // Warm-up.
    for _ in 0..10 {
        s.write_all(&byte)?;
        s.read_exact(&mut byte)?;
    }
    let start = Instant::now();
    for _ in 0..n {
        s.write_all(&byte)?;
        s.read_exact(&mut byte)?;
    }
    Ok(start.elapsed() / u32::try_from(n.max(1)).unwrap_or(u32::MAX))
}

fn command(e: &EnclaveHandle, line: &str) -> std::io::Result<UnixStream> {
    let mut s = e
        .connect_retry(PORT, Duration::from_secs(10))
        .map_err(std::io::Error::other)?;
    s.write_all(line.as_bytes())?;
    Ok(s)
}

fn to_enclave(e: &EnclaveHandle, bytes: u64, msg: usize) -> std::io::Result<Duration> {
    let mut s = command(e, "SINK\n")?;
    let start = Instant::now();
    write_msgs(&mut s, bytes, msg)?;
    s.shutdown(Shutdown::Write)?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line)?;
    let d = start.elapsed();
    assert_eq!(line.trim(), bytes.to_string(), "the enclave counted");
    Ok(d)
}

fn from_enclave_source(e: &EnclaveHandle, bytes: u64, msg: usize) -> std::io::Result<Duration> {
    let start = Instant::now();
    let mut s = command(e, &format!("SOURCE {bytes} {msg}\n"))?;
    let got = read_all(&mut s)?;
    assert_eq!(got, bytes);
    Ok(start.elapsed())
}

fn from_enclave_push(
    e: &EnclaveHandle,
    l: &sdk::Listener,
    bytes: u64,
    msg: usize,
) -> std::io::Result<Duration> {
    let start = Instant::now();
    let ctl = command(e, &format!("PUSH {PUSH_PORT} {bytes} {msg}\n"))?;
    let mut s = l.accept().map_err(std::io::Error::other)?;
    let got = read_all(&mut s)?;
    let d = start.elapsed();
    assert_eq!(got, bytes);
    let mut line = String::new();
    BufReader::new(ctl).read_line(&mut line)?;
    assert_eq!(line, "DONE\n");
    Ok(d)
}

struct Figure {
    name: String,
    enclave: f64,
    baseline: f64,
    /// What the baseline is.
    against: &'static str,
    unit: &'static str,
}

/// Socketpair baselines, measured before the pool is carved (so with every CPU of the host,
/// as an ordinary process has them): throughput per message size, and the round trip.
fn baselines(plan: Plan) -> std::io::Result<(Vec<f64>, f64)> {
    let mut tput = Vec::new();
    for msg in MSGS {
        let mut v = Vec::new();
        for _ in 0..plan.reps {
            v.push(mib_per_s(
                plan.bytes,
                socketpair_throughput(plan.bytes, msg)?,
            ));
        }
        let kib = msg >> 10;
        series(
            &format!("vsock_socketpair_{kib}k"),
            &format!("Unix socketpair throughput, {kib} KiB messages"),
            "MiB/s",
            &v,
        );
        tput.push(median(v));
    }
    let mut rtt = Vec::new();
    for _ in 0..plan.reps {
        rtt.push(socketpair_rtt(plan.round_trips)?.as_secs_f64() * 1e6);
    }
    series(
        "vsock_socketpair_rtt",
        "Unix socketpair round trip, 1 byte",
        "us",
        &rtt,
    );
    Ok((tput, median(rtt)))
}

fn run(plan: Plan) -> Result<Vec<Figure>, String> {
    let bin = sdk::Enclaves::new().map_err(|e| e.to_string())?;
    let bin = bin.binary().to_owned();
    eprintln!("bench: CLI {}", bin.display());
    let peer = samples::enclave_apps::program("vsock-bench")?;
    let io = |e: std::io::Error| e.to_string();
    let (base_tput, base_rtt) = baselines(plan).map_err(io)?;
    let scratch = Scratch::new(&bin, 128)?;
    let eif = scratch.build_eif(&peer, "vsock-bench", &[])?;
    // The bare exit, with the pool carved and its lock held, as the vsock figures.
    let guest = bare_exit::build(scratch.dir())?;
    let calls = plan.bare_calls.to_string();
    let bare_eif = scratch.build_eif(&guest, "getppid-loop", &[calls.as_str()])?;
    let bare_eif = std::fs::read(&bare_eif).map_err(io)?;
    let mut bare = Vec::new();
    for _ in 0..plan.reps {
        bare.push(bare_exit::per_exit_us(&bare_eif, plan.bare_calls)?);
    }
    let enclave = scratch
        .enclaves()
        .launch(&LaunchOptions::new(&eif).memory_mib(64))
        .map_err(|e| format!("launch: {e}"))?;
    let listener = enclave.listen(PUSH_PORT).map_err(|e| e.to_string())?;
    let mut figures = Vec::new();
    for (msg, baseline) in MSGS.into_iter().zip(base_tput) {
        let kib = msg >> 10;
        let (mut to, mut src, mut push) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..plan.reps {
            to.push(mib_per_s(
                plan.bytes,
                to_enclave(&enclave, plan.bytes, msg).map_err(io)?,
            ));
            src.push(mib_per_s(
                plan.bytes,
                from_enclave_source(&enclave, plan.bytes, msg).map_err(io)?,
            ));
            push.push(mib_per_s(
                plan.bytes,
                from_enclave_push(&enclave, &listener, plan.bytes, msg).map_err(io)?,
            ));
        }
        for (what, id, v) in [
            ("parent→enclave", "to_enclave", to),
            ("enclave→parent (accepted conn)", "from_enclave", src),
            (
                "enclave→parent (enclave connects)",
                "from_enclave_push",
                push,
            ),
        ] {
            series(
                &format!("vsock_{id}_{kib}k"),
                &format!("vsock {what}, {kib} KiB messages"),
                "MiB/s",
                &v,
            );
            figures.push(Figure {
                name: format!("throughput {what}, {kib} KiB messages"),
                enclave: median(v),
                baseline,
                against: "socketpair",
                unit: "MiB/s",
            });
        }
    }
    let mut rtt = Vec::new();
    let mut echo = command(&enclave, "ECHO\n").map_err(io)?;
    for _ in 0..plan.reps {
        rtt.push(
            ping_pong(&mut echo, plan.round_trips)
                .map_err(io)?
                .as_secs_f64()
                * 1e6,
        );
    }
    series("vsock_rtt", "vsock round trip, 1 byte", "us", &rtt);
    series("vsock_bare_exit", "bare KVM exit round trip", "us", &bare);
    let rtt = median(rtt);
    figures.push(Figure {
        name: "round trip, 1 byte".into(),
        enclave: rtt,
        baseline: base_rtt,
        against: "socketpair",
        unit: "µs",
    });
    figures.push(Figure {
        name: "round trip, 1 byte".into(),
        enclave: rtt,
        baseline: median(bare),
        against: "bare KVM exit",
        unit: "µs",
    });
    drop(echo);
    let _ = enclave.terminate();
    Ok(figures)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let benching = args.iter().any(|a| a == "--bench");
    let plan = if args.iter().any(|a| a == "--quick") || !benching {
        QUICK
    } else {
        FULL
    };
    let kvm_pvm = std::path::Path::new("/sys/module/kvm_pvm").exists();
    let machine = if kvm_pvm {
        "software KVM (kvm_pvm)"
    } else {
        "hardware KVM (no kvm_pvm)"
    };
    if let Some(why) = host_unsupported() {
        println!("SKIPPED: vsock_bench: {why}");
        return if benching {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        };
    }
    if sdk::Enclaves::new().is_err() {
        println!("SKIPPED: vsock_bench: no `enclave` binary (cargo build --release -p enclave-cli, or ENCLAVE_BIN)");
        return if benching {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        };
    }
    eprintln!(
        "bench: vsock, {} run ({} MiB per transfer, {} repetitions), {machine}",
        plan.name,
        plan.bytes >> 20,
        plan.reps
    );
    let figures = match run(plan) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("vsock_bench: error: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "{:<52} {:>12} {:>12} {:>8}  baseline",
        "figure (median)", "enclave", "baseline", "ratio"
    );
    let mut json = Vec::new();
    for f in &figures {
        let ratio = f.enclave / f.baseline.max(1e-9);
        println!(
            "{:<52} {:>8.1} {:<4}{:>8.1} {:<4}{:>7.2}x  {}",
            f.name, f.enclave, f.unit, f.baseline, f.unit, ratio, f.against
        );
        json.push(format!(
            "{{\"figure\":\"{}\",\"enclave\":{:.3},\"baseline\":{:.3},\"against\":\"{}\",\"unit\":\"{}\",\"ratio\":{:.4}}}",
            f.name, f.enclave, f.baseline, f.against, f.unit, ratio
        ));
    }
    let target = figures
        .iter()
        .filter(|f| f.name.starts_with("throughput") && f.name.contains("64 KiB"))
        .map(|f| f.enclave / f.baseline.max(1e-9))
        .fold(f64::INFINITY, f64::min);
    println!(
        "target ≥ 0.50 of socketpair throughput at 64 KiB: worst {target:.2} ({})",
        if target >= 0.5 { "met" } else { "NOT met" }
    );
    println!(
        "{{\"bench\":\"vsock\",\"plan\":\"{}\",\"kvm_pvm\":{kvm_pvm},\"figures\":[{}]}}",
        plan.name,
        json.join(",")
    );
    ExitCode::SUCCESS
}
