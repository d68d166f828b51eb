//! `host_bench`: what enclaves cost the host.
//!
//! 1. VMM memory beyond guest memory: for every running 64 MiB enclave, `/proc/PID/smaps` of
//!    its VMM process, resident and private kB of every mapping but the guest memory; target
//!    ≤ 3 MiB private (Firecracker's bar is 5 MiB).
//! 2. Density: 64 MiB enclaves (an idle vsock listener each) launched one after another into
//!    a pool with `sharing = "shared"` (every enclave on the same pool CPU) until a launch
//!    fails or the cap is reached; reports the number and what limited it, then terminates
//!    them all and releases the pool (hugepages back to the kernel).
//!
//! The pool is carved under the host-wide pool lock with its own temporary run root, allocator
//! config and cgroup name (`samples::scratch::Scratch`). `cargo bench -p samples --bench
//! host_bench [-- --quick]`; run without `--bench` (as `cargo test --all-targets` does) it is
//! a smoke test of 2 enclaves that skips with a reason where enclaves cannot run. Prints
//! `SERIES {json}` lines for `scripts/bench_report.py`.

use std::process::ExitCode;
use std::time::Instant;

use samples::scratch::{host_unsupported, Scratch};
use sdk::{EnclaveHandle, LaunchOptions};

#[path = "host_bench/smaps.rs"]
mod smaps;

/// Guest memory of each enclave, MiB.
const ENCLAVE_MIB: u64 = 64;

fn series(id: &str, label: &str, unit: &str, samples: &[f64]) {
    let line = serde_json::json!({"id": id, "label": label, "unit": unit, "samples": samples});
    println!("SERIES {line}");
}

fn hugepages() -> u64 {
    std::fs::read_to_string("/proc/sys/vm/nr_hugepages")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

fn kb_to_mib(kb: u64) -> f64 {
    // kB counts of one process stay far below 2^52: exact as f64.
    #[allow(clippy::cast_precision_loss)]
    let v = kb as f64;
    v / 1024.0
}

fn run(cap: usize) -> Result<(), String> {
    let bin = sdk::Enclaves::new().map_err(|e| e.to_string())?;
    let bin = bin.binary().to_owned();
    let peer = samples::enclave_apps::program("vsock-bench")?;
    let mut huge_before = 0;
    let pool_mib = (u64::try_from(cap).unwrap_or(64) + 1) * ENCLAVE_MIB;
    let toml = format!("memory_mib = {pool_mib}\ncpu_count = 1\nsharing = \"shared\"\n");
    eprintln!(
        "bench: pool of {pool_mib} MiB, one shared CPU, up to {cap} enclaves of {ENCLAVE_MIB} MiB"
    );
    let scratch = Scratch::with_pool_after_lock(&bin, &toml, || huge_before = hugepages())?;
    let huge_pool = hugepages();
    let eif = scratch.build_eif(&peer, "idle", &[])?;
    let mut running: Vec<EnclaveHandle> = Vec::new();
    let mut launch_ms = Vec::new();
    let mut limit = format!("the cap of {cap} enclaves");
    for i in 0..cap {
        let t = Instant::now();
        match scratch.enclaves().launch(
            &LaunchOptions::new(&eif)
                .memory_mib(ENCLAVE_MIB)
                .name(format!("density-{i}")),
        ) {
            Ok(e) => {
                launch_ms.push(t.elapsed().as_secs_f64() * 1e3);
                running.push(e);
            }
            Err(e) => {
                limit = format!("launch {} failed: {e}", i + 1);
                break;
            }
        }
    }
    // Every enclave must still be alive and answering.
    let mut alive = 0usize;
    for e in &running {
        if e.connect(5000).is_ok() {
            alive += 1;
        }
    }
    let (mut private, mut rss, mut guest) = (Vec::new(), Vec::new(), Vec::new());
    let mut smaps_err = None;
    for e in &running {
        match smaps::overhead(e.info().process_id, ENCLAVE_MIB) {
            Ok(o) => {
                private.push(kb_to_mib(o.private_kb));
                rss.push(kb_to_mib(o.rss_kb));
                guest.push(kb_to_mib(o.guest_rss_kb));
            }
            Err(why) => smaps_err = Some(why),
        }
    }
    let n = running.len();
    for e in running {
        let _ = e.terminate();
    }
    // Released while the host lock is still held, so no other pool user changes
    // nr_hugepages before it is read; the drop then only removes the directory.
    let released = scratch
        .enclaves()
        .cli(["allocator", "release", "--force"])
        .map_err(|e| format!("cannot release the pool: {e}"));
    let huge_after = hugepages();
    drop(scratch);
    released?;
    if let Some(why) = smaps_err {
        eprintln!("bench: some VMMs could not be measured: {why}");
    }
    println!("host benchmark: {n} concurrent {ENCLAVE_MIB} MiB enclaves ({alive} answering), limited by {limit}");
    println!(
        "hugepages: {huge_before} before, {huge_pool} with the pool, {huge_after} after release"
    );
    series(
        "vmm_private_mib",
        "VMM private memory beyond guest memory",
        "MiB",
        &private,
    );
    series(
        "vmm_rss_mib",
        "VMM resident memory beyond guest memory",
        "MiB",
        &rss,
    );
    series(
        "vmm_guest_rss_mib",
        "guest memory resident in the VMM (4 KiB pages; hugetlb pages are not in Rss)",
        "MiB",
        &guest,
    );
    series(
        "density_launch_ms",
        "launch time of each enclave while the pool fills",
        "ms",
        &launch_ms,
    );
    #[allow(clippy::cast_precision_loss)]
    let count = [n as f64];
    series(
        "density_count",
        "concurrent 64 MiB enclaves (shared CPU)",
        "enclaves",
        &count,
    );
    let note = serde_json::json!({
        "id": "density",
        "count": n,
        "alive": alive,
        "cap": cap,
        "limit": limit,
        "pool_mib": pool_mib,
        "hugepages_before": huge_before,
        "hugepages_with_pool": huge_pool,
        "hugepages_after": huge_after,
    });
    println!("NOTE {note}");
    if huge_after != huge_before {
        return Err(format!(
            "hugepages not returned: {huge_before} before, {huge_after} after"
        ));
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let benching = args.iter().any(|a| a == "--bench");
    let quick = args.iter().any(|a| a == "--quick") || !benching;
    let cap = if quick { 2 } else { 64 };
    let skip = host_unsupported().or_else(|| {
        sdk::Enclaves::new().err().map(|_| {
            "no `enclave` binary (cargo build --release -p enclave-cli, or ENCLAVE_BIN)".into()
        })
    });
    if let Some(why) = skip {
        println!("SKIPPED: host_bench: {why}");
        return if benching {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        };
    }
    match run(cap) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("host_bench: error: {e}");
            ExitCode::FAILURE
        }
    }
}
