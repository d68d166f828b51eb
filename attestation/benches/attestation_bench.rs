//! Attestation benchmark: document generation latency (target: median ≤ 2 ms) and
//! verification throughput with a cached chain (target: ≥ 1000 documents/s on one core),
//! next to `openssl speed -seconds N ecdsap384` run by this process; and the PCR measurement
//! of a 256 MiB image next to `sha384sum` of the same file.
//!
//! `cargo bench -p attestation --bench attestation_bench [-- --quick]`; run without `--bench`
//! (as `cargo test --all-targets` does) it is the quick smoke test. Every sample is printed
//! as a `SERIES {json}` line for `scripts/bench_report.py`.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use attestation::ca::{now_ms, Ca, LeafAttester};
use attestation::verify::{verify, Policy};

#[path = "attestation_bench/pcr.rs"]
mod pcr;

const GEN_TARGET_MS: f64 = 2.0;
const VERIFY_TARGET_PER_S: f64 = 1000.0;

struct Plan {
    name: &'static str,
    /// Generation windows, and documents per window.
    gen_windows: usize,
    gen_per_window: usize,
    /// Verification windows and the length of each.
    verify_windows: usize,
    verify_window: Duration,
    /// `openssl speed -seconds N` runs and N.
    openssl_runs: usize,
    openssl_seconds: u32,
    /// PCR image size and repetitions.
    pcr_bytes: usize,
    pcr_reps: usize,
}

const FULL: Plan = Plan {
    name: "full",
    gen_windows: 7,
    gen_per_window: 100,
    verify_windows: 7,
    verify_window: Duration::from_millis(500),
    openssl_runs: 3,
    openssl_seconds: 2,
    pcr_bytes: 256 << 20,
    pcr_reps: 5,
};

const QUICK: Plan = Plan {
    name: "quick",
    gen_windows: 2,
    gen_per_window: 10,
    verify_windows: 2,
    verify_window: Duration::from_millis(100),
    openssl_runs: 1,
    openssl_seconds: 1,
    pcr_bytes: 8 << 20,
    pcr_reps: 2,
};

fn series(id: &str, label: &str, unit: &str, samples: Result<&[f64], &str>) {
    let line = match samples {
        Ok(s) => serde_json::json!({"id": id, "label": label, "unit": unit, "samples": s}),
        Err(why) => {
            serde_json::json!({"id": id, "label": label, "unit": unit, "unavailable": why})
        }
    };
    println!("SERIES {line}");
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// `(sign/s, verify/s)` from `openssl speed -seconds N ecdsap384`, or why not.
fn openssl_speed(seconds: u32) -> Result<(f64, f64), String> {
    let out = Command::new("openssl")
        .args(["speed", "-seconds", &seconds.to_string(), "ecdsap384"])
        .output()
        .map_err(|e| format!("openssl not runnable ({e}): install openssl to compare"))?;
    if !out.status.success() {
        return Err(format!("openssl speed failed with {}", out.status));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    // " 384 bits ecdsa (nistp384)   0.0009s   0.0011s   1100.2    950.3"
    text.lines()
        .find(|l| l.contains("ecdsa (nistp384)"))
        .and_then(|l| {
            let nums: Vec<f64> = l
                .split_whitespace()
                .filter_map(|w| w.parse::<f64>().ok())
                .collect();
            match nums.as_slice() {
                [.., sign, verify] => Some((*sign, *verify)),
                _ => None,
            }
        })
        .ok_or_else(|| "openssl output has no nistp384 line".to_owned())
}

fn fail(what: &str, e: impl std::fmt::Display) -> ! {
    eprintln!("attestation_bench: {what}: {e}");
    std::process::exit(1);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let benching = args.iter().any(|a| a == "--bench");
    let plan = if args.iter().any(|a| a == "--quick") || !benching {
        QUICK
    } else {
        FULL
    };

    let ca = Ca::generate()
        .unwrap_or_else(|e| fail("cannot create a CA", e))
        .ca;
    let leaf = ca
        .issue_leaf("enc-bench", Duration::from_secs(3600))
        .unwrap_or_else(|e| fail("cannot issue a leaf", e));
    let attester = LeafAttester::new(leaf, "enc-bench", false);
    let pcrs: BTreeMap<u16, [u8; 48]> = (0u16..16).map(|i| (i, [0x5a; 48])).collect();
    let nonce = [7u8; 32];

    let mut gen_ms = Vec::new();
    let mut gen_per_s = Vec::new();
    let mut document = Vec::new();
    for _ in 0..plan.gen_windows {
        let window = Instant::now();
        for _ in 0..plan.gen_per_window {
            let t = Instant::now();
            document = attester
                .attest_at(now_ms(), &pcrs, Some(b"user data"), Some(&nonce), None)
                .unwrap_or_else(|e| fail("attestation failed", e));
            gen_ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
        let n = u32::try_from(plan.gen_per_window).unwrap_or(u32::MAX);
        gen_per_s.push(f64::from(n) / window.elapsed().as_secs_f64());
    }

    let policy = Policy::new(ca.root_der().to_vec()).expect_nonce(nonce.to_vec());
    if let Err(e) = verify(&document, &policy) {
        fail("the document does not verify", e);
    }
    let mut verify_per_s = Vec::new();
    for _ in 0..plan.verify_windows {
        let start = Instant::now();
        let mut count = 0u32;
        while start.elapsed() < plan.verify_window {
            if let Err(e) = verify(&document, &policy) {
                fail("verification failed during the run", e);
            }
            count = count.saturating_add(1);
        }
        verify_per_s.push(f64::from(count) / start.elapsed().as_secs_f64());
    }

    let mut openssl_sign = Vec::new();
    let mut openssl_verify = Vec::new();
    let mut openssl_err = None;
    for _ in 0..plan.openssl_runs {
        match openssl_speed(plan.openssl_seconds) {
            Ok((s, v)) => {
                openssl_sign.push(s);
                openssl_verify.push(v);
            }
            Err(why) => {
                openssl_err = Some(why);
                break;
            }
        }
    }

    let image = pcr::Image::write(plan.pcr_bytes).unwrap_or_else(|e| fail("PCR image", e));
    let (mut pcr_file, mut pcr_hash, mut sha) = (Vec::new(), Vec::new(), Vec::new());
    let mut sha_err = None;
    // One untimed pass each warms the page cache.
    let _ = pcr::measure_file(image.path());
    let _ = pcr::sha384sum(image.path());
    for _ in 0..plan.pcr_reps {
        let (file, hash) =
            pcr::measure_file(image.path()).unwrap_or_else(|e| fail("PCR measurement", e));
        pcr_file.push(file * 1e3);
        pcr_hash.push(hash * 1e3);
        match pcr::sha384sum(image.path()) {
            Ok(s) => sha.push(s * 1e3),
            Err(why) => sha_err = Some(why),
        }
    }
    drop(image);

    let gen = median(&gen_ms);
    let ver = median(&verify_per_s);
    let mib = plan.pcr_bytes >> 20;
    println!("attestation benchmark ({} mode, one thread)", plan.name);
    println!(
        "  document generation  median {gen:8.3} ms   (target ≤ {GEN_TARGET_MS} ms: {})   {} bytes",
        if gen <= GEN_TARGET_MS {
            "met"
        } else {
            "MISSED"
        },
        document.len()
    );
    println!(
        "  verification (cached chain) {ver:8.0} docs/s (target ≥ {VERIFY_TARGET_PER_S}: {})",
        if ver >= VERIFY_TARGET_PER_S {
            "met"
        } else {
            "MISSED"
        }
    );
    match &openssl_err {
        None => println!(
            "  openssl speed ecdsap384     {:8.0} sign/s   {:8.0} verify/s (same machine, same run)",
            median(&openssl_sign),
            median(&openssl_verify)
        ),
        Some(why) => println!("  openssl speed ecdsap384     skipped: {why}"),
    }
    println!(
        "  PCR0-2 of a {mib} MiB image  {:8.1} ms (hashing alone {:.1} ms); sha384sum {}",
        median(&pcr_file),
        median(&pcr_hash),
        sha_err
            .clone()
            .unwrap_or_else(|| format!("{:.1} ms", median(&sha)))
    );

    let openssl = |v: &[f64]| -> Result<Vec<f64>, String> {
        openssl_err.clone().map_or_else(|| Ok(v.to_vec()), Err)
    };
    let sign = openssl(&openssl_sign);
    let osv = openssl(&openssl_verify);
    let sha = sha_err.map_or_else(|| Ok(sha), Err);
    series(
        "attest_gen_ms",
        "attestation document generation",
        "ms",
        Ok(&gen_ms),
    );
    series(
        "attest_gen_per_s",
        "attestation documents generated per second",
        "1/s",
        Ok(&gen_per_s),
    );
    series(
        "attest_verify_per_s",
        "attestation documents verified per second (cached chain)",
        "1/s",
        Ok(&verify_per_s),
    );
    series(
        "openssl_sign_per_s",
        "openssl speed ecdsap384 sign/s",
        "1/s",
        sign.as_deref().map_err(String::as_str),
    );
    series(
        "openssl_verify_per_s",
        "openssl speed ecdsap384 verify/s",
        "1/s",
        osv.as_deref().map_err(String::as_str),
    );
    let label = format!("PCR0-2 of a {mib} MiB image (read, parse, measure)");
    series("pcr_image", &label, "ms", Ok(&pcr_file));
    let label = format!("PCR0-2 hashing alone, {mib} MiB");
    series("pcr_hash", &label, "ms", Ok(&pcr_hash));
    let label = format!("sha384sum of the same {mib} MiB file");
    series(
        "sha384sum",
        &label,
        "ms",
        sha.as_deref().map_err(String::as_str),
    );
}
