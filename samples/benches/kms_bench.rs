//! `kms_bench`: the time from `run-enclave` to a released key, split into launch, attestation
//! (the `/dev/nsm` call inside the enclave), verification (the key service's, from its audit
//! log) and key release (the parent's `Provision` round trip: nonce, attestation, Decrypt,
//! HPKE); and key releases per second with N enclaves asking at once. Baselines measured in
//! the same run: fork+exec of `/bin/true` (for launch) and an in-process
//! `attestation::verify` of one of the enclave's documents (for verification).
//!
//! `cargo bench -p samples --bench kms_bench` runs the full version; `-- --quick`, and a run
//! without `--bench` (as `cargo test --all-targets` does), is a smoke test of seconds that
//! skips with a reason where enclaves cannot run. Medians; the last line is JSON.

use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use samples::scenario::{build_kms_enclave, Bins, Image, ScenarioError, World, WorldOptions};
use samples::scratch::host_unsupported;
use serde_json::{json, Value};

const KEY_ID: &str = "bench-key";

#[derive(Clone, Copy)]
struct Plan {
    name: &'static str,
    rounds: usize,
    enclave_counts: &'static [usize],
    window: Duration,
}

const FULL: Plan = Plan {
    name: "full",
    rounds: 15,
    enclave_counts: &[1, 2, 4],
    window: Duration::from_secs(3),
};
const QUICK: Plan = Plan {
    name: "quick",
    rounds: 2,
    enclave_counts: &[1, 2],
    window: Duration::from_millis(500),
};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn fork_exec_ms(n: usize) -> f64 {
    median(
        (0..n)
            .filter_map(|_| {
                let t = Instant::now();
                Command::new("/bin/true").status().ok()?;
                Some(ms(t.elapsed()))
            })
            .collect(),
    )
}

/// The newest audit entry's VerifyMicros.
fn last_verify_us(world: &World) -> Result<f64, ScenarioError> {
    Ok(world
        .audit()?
        .iter()
        .rev()
        .find_map(|e| e.get("VerifyMicros").and_then(Value::as_f64))
        .unwrap_or(0.0))
}

struct Figures {
    launch_ms: Vec<f64>,
    release_ms: Vec<f64>,
    attest_ms: Vec<f64>,
    kms_ms: Vec<f64>,
    verify_ms: Vec<f64>,
    total_ms: Vec<f64>,
    local_verify_ms: Vec<f64>,
    rates: Vec<(usize, f64)>,
}

fn run(plan: Plan) -> Result<(Figures, f64), ScenarioError> {
    let bins = Bins::build_for_current_profile()?;
    let program = build_kms_enclave()?;
    let base_fork = fork_exec_ms(50);

    let mut options = WorldOptions::new(bins);
    options.shared_cpus = true;
    options.pool_memory_mib = 64 * 4 + 64;
    let mut world = World::new(options)?;
    world.ensure_ca()?;
    let image: Image = world.build_image("bench", &program, &[], &[])?;
    world.start_kms()?;
    world.start_proxy()?;
    world.create_key(KEY_ID, &world.policy(&[(0, image.pcr(0))], 300)?)?;
    let envelope = world.encrypt_envelope(KEY_ID, b"bench message")?;
    let root = std::fs::read(world.root_certificate())
        .map_err(ScenarioError::io("read the root certificate"))?;
    let root_der = attestation::ca::keys::cert_from_pem_or_der(&root)
        .ok()
        .and_then(|c| attestation::ca::keys::cert_to_der(&c).ok())
        .unwrap_or_default();

    let mut f = Figures {
        launch_ms: Vec::new(),
        release_ms: Vec::new(),
        attest_ms: Vec::new(),
        kms_ms: Vec::new(),
        verify_ms: Vec::new(),
        total_ms: Vec::new(),
        local_verify_ms: Vec::new(),
        rates: Vec::new(),
    };
    for _ in 0..plan.rounds {
        let t0 = Instant::now();
        let enclave = world.launch(&image, false)?;
        let launched = t0.elapsed();
        let t1 = Instant::now();
        let timings = world.app(&enclave)?.provision(&envelope)?;
        let released = t1.elapsed();
        f.launch_ms.push(ms(launched));
        f.release_ms.push(ms(released));
        f.total_ms.push(ms(t0.elapsed()));
        f.attest_ms.push(timings.attest_us as f64 / 1000.0);
        f.kms_ms.push(timings.kms_us as f64 / 1000.0);
        f.verify_ms.push(last_verify_us(&world)? / 1000.0);
        // Baseline: verifying one of this enclave's documents in-process (cold chain cache:
        // a fresh policy each time, as the key service sees a new enclave's chain).
        let doc = world.app(&enclave)?.attest(b"bench")?;
        let policy = attestation::Policy::new(root_der.clone()).expect_nonce(b"bench".to_vec());
        let t = Instant::now();
        attestation::verify(&doc, &policy).map_err(|e| ScenarioError::Protocol {
            peer: "verifier".into(),
            detail: e.to_string(),
        })?;
        f.local_verify_ms.push(ms(t.elapsed()));
        enclave.terminate()?;
    }

    for &n in plan.enclave_counts {
        let enclaves = (0..n)
            .map(|_| world.launch(&image, false))
            .collect::<Result<Vec<_>, _>>()?;
        let mut apps = enclaves
            .iter()
            .map(|e| world.app(e))
            .collect::<Result<Vec<_>, _>>()?;
        let done = AtomicU64::new(0);
        let failed = AtomicU64::new(0);
        let deadline = Instant::now() + plan.window;
        let started = Instant::now();
        std::thread::scope(|s| {
            for app in &mut apps {
                let (done, failed, envelope) = (&done, &failed, &envelope);
                s.spawn(move || {
                    while Instant::now() < deadline {
                        match app.provision(envelope) {
                            Ok(_) => done.fetch_add(1, Ordering::Relaxed),
                            Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                        };
                    }
                });
            }
        });
        let secs = started.elapsed().as_secs_f64();
        let failures = failed.load(Ordering::Relaxed);
        if failures > 0 {
            return Err(ScenarioError::Protocol {
                peer: "kms-enclave".into(),
                detail: format!("{failures} key releases failed with {n} enclaves"),
            });
        }
        f.rates
            .push((n, done.load(Ordering::Relaxed) as f64 / secs));
        for e in enclaves {
            e.terminate()?;
        }
    }
    Ok((f, base_fork))
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
    let machine = format!(
        "{} CPUs, {}",
        std::thread::available_parallelism().map_or(0, usize::from),
        if kvm_pvm {
            "software KVM (kvm_pvm)"
        } else {
            "hardware KVM"
        }
    );
    if let Some(why) = host_unsupported() {
        println!("SKIPPED: kms_bench: {why}");
        return if benching {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        };
    }
    eprintln!(
        "bench: kms, {} run ({} rounds, enclaves {:?}, {:?} windows), {machine}",
        plan.name, plan.rounds, plan.enclave_counts, plan.window
    );
    let (f, base_fork) = match run(plan) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("kms_bench: error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let launch = median(f.launch_ms.clone());
    let verify = median(f.verify_ms.clone());
    let local_verify = median(f.local_verify_ms.clone());
    let rows = [
        (
            "launch (run-enclave until RUNNING)",
            launch,
            Some(("fork+exec", base_fork)),
        ),
        (
            "attestation (/dev/nsm, inside)",
            median(f.attest_ms.clone()),
            None,
        ),
        (
            "verification (key service)",
            verify,
            Some(("in-process verify", local_verify)),
        ),
        (
            "key service round trips (inside)",
            median(f.kms_ms.clone()),
            None,
        ),
        (
            "key release (parent Provision round trip)",
            median(f.release_ms.clone()),
            None,
        ),
        (
            "run-enclave → key released",
            median(f.total_ms.clone()),
            None,
        ),
    ];
    println!(
        "{:<44} {:>10} {:>28}",
        "figure (median, ms)", "enclave", "baseline (ratio)"
    );
    for (name, v, base) in rows {
        match base {
            Some((bname, b)) => println!(
                "{name:<44} {v:>10.2} {:>28}",
                format!("{bname} {b:.2} ({:.1}x)", v / b.max(1e-9))
            ),
            None => println!("{name:<44} {v:>10.2}"),
        }
    }
    for (n, rate) in &f.rates {
        println!(
            "{:<44} {rate:>10.1}",
            format!("key releases/s with {n} enclave(s)")
        );
    }
    println!(
        "{}",
        json!({
            "bench": "kms",
            "plan": plan.name,
            "kvm_pvm": kvm_pvm,
            "launch_ms": launch,
            "fork_exec_ms": base_fork,
            "attest_ms": median(f.attest_ms),
            "verify_ms": verify,
            "local_verify_ms": local_verify,
            "kms_roundtrips_ms": median(f.kms_ms),
            "release_ms": median(f.release_ms),
            "total_ms": median(f.total_ms),
            "releases_per_s": f.rates.iter().map(|(n, r)| json!({"enclaves": n, "per_s": r})).collect::<Vec<_>>(),
        })
    );
    ExitCode::SUCCESS
}
