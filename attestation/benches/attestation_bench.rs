//! Attestation benchmark: document generation latency (target: median ≤ 2 ms) and
//! verification throughput with a cached chain (target: ≥ 1000 documents/s on one core),
//! printed next to `openssl speed -seconds 1 ecdsap384` run by this process.
//!
//! `cargo bench -p attestation --bench attestation_bench [-- --quick]`

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use attestation::ca::{now_ms, Ca, LeafAttester};
use attestation::verify::{verify, Policy};

const GEN_TARGET_MS: f64 = 2.0;
const VERIFY_TARGET_PER_S: f64 = 1000.0;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

/// `(sign/s, verify/s)` from `openssl speed -seconds 1 ecdsap384`, or why not.
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

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (gen_iters, verify_time) = if quick {
        (50, Duration::from_millis(300))
    } else {
        (500, Duration::from_secs(2))
    };

    let ca = match Ca::generate() {
        Ok(n) => n.ca,
        Err(e) => {
            eprintln!("cannot create a CA: {e}");
            std::process::exit(1);
        }
    };
    let leaf = match ca.issue_leaf("enc-bench", Duration::from_secs(3600)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot issue a leaf: {e}");
            std::process::exit(1);
        }
    };
    let attester = LeafAttester::new(leaf, "enc-bench", false);
    let pcrs: BTreeMap<u16, [u8; 48]> = (0u16..16).map(|i| (i, [0x5a; 48])).collect();
    let nonce = [7u8; 32];

    let mut times = Vec::with_capacity(gen_iters);
    let mut document = Vec::new();
    for _ in 0..gen_iters {
        let t = Instant::now();
        match attester.attest_at(now_ms(), &pcrs, Some(b"user data"), Some(&nonce), None) {
            Ok(d) => document = d,
            Err(e) => {
                eprintln!("attestation failed: {e}");
                std::process::exit(1);
            }
        }
        times.push(t.elapsed());
    }
    let gen_median = median(times);

    let policy = Policy::new(ca.root_der().to_vec()).expect_nonce(nonce.to_vec());
    if let Err(e) = verify(&document, &policy) {
        eprintln!("document does not verify: {e}");
        std::process::exit(1);
    }
    let start = Instant::now();
    let mut count = 0u32;
    while start.elapsed() < verify_time {
        if verify(&document, &policy).is_err() {
            eprintln!("verification failed during the run");
            std::process::exit(1);
        }
        count = count.saturating_add(1);
    }
    let per_s = f64::from(count) / start.elapsed().as_secs_f64();
    let gen_ms = gen_median.as_secs_f64() * 1e3;

    println!(
        "attestation benchmark ({} mode, one thread)",
        if quick { "quick" } else { "full" }
    );
    println!(
        "  document generation  median {gen_ms:8.3} ms   (target ≤ {GEN_TARGET_MS} ms: {})   {} bytes",
        if gen_ms <= GEN_TARGET_MS { "met" } else { "MISSED" },
        document.len()
    );
    println!(
        "  verification (cached chain) {per_s:8.0} docs/s (target ≥ {VERIFY_TARGET_PER_S}: {})",
        if per_s >= VERIFY_TARGET_PER_S {
            "met"
        } else {
            "MISSED"
        }
    );
    match openssl_speed(1) {
        Ok((sign, ver)) => println!(
            "  openssl speed ecdsap384     {sign:8.0} sign/s   {ver:8.0} verify/s (same machine, same run)"
        ),
        Err(why) => println!("  openssl speed ecdsap384     skipped: {why}"),
    }
}
