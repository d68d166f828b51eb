//! The bare KVM exit round trip, mirrored from enclave-runtime's `enclave_bench`: its libc-free
//! guest (`enclave-runtime/benches/guest/getppid_loop.c`) makes N `getppid` calls in an
//! enclave run in this process in bare mode, where the enclave kernel answers every call with 0
//! and no work: one doorbell exit and return per call, nothing else. Only the run phase is
//! timed; the per-call time is what a vsock round trip is compared with.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use enclave_runtime::memory::Backing;
use enclave_runtime::vcpu::Outcome;
use enclave_runtime::vmm::{prepare, LaunchConfig};

/// The guest source, shared with enclave-runtime's bench.
fn source() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../enclave-runtime/benches/guest/getppid_loop.c")
}

/// Compiles the guest into `dir` (flags as enclave_bench's).
pub fn build(dir: &Path) -> Result<PathBuf, String> {
    let out = dir.join("getppid_loop");
    let status = Command::new("gcc")
        .args(["-static", "-nostdlib", "-O2", "-fno-stack-protector", "-o"])
        .arg(&out)
        .arg(source())
        .status()
        .map_err(|e| format!("cannot run gcc for the bare-exit guest: {e}"))?;
    if !status.success() {
        return Err(format!("gcc {} failed: {status}", source().display()));
    }
    Ok(out)
}

/// Microseconds per bare exit round trip: `eif` (the guest packed with argument `calls`) run
/// once in bare mode.
pub fn per_exit_us(eif: &[u8], calls: u64) -> Result<f64, String> {
    let config = LaunchConfig {
        memory_mib: 64,
        cpu_count: 1,
        debug: false,
        backing: Backing::Anonymous,
        console: None,
        hostname: "bench".into(),
        bare: true,
        vsock: None,
        attestation: None,
        host_cpus: Default::default(),
    };
    let mut enclave = prepare(eif, &config).map_err(|e| format!("bare enclave: {e}"))?;
    let start = Instant::now();
    let outcome = enclave.run();
    let took = start.elapsed();
    let served = enclave
        .kernel()
        .calls
        .load(std::sync::atomic::Ordering::Relaxed);
    if outcome != (Outcome::Exited { status: 0 }) || served != calls + 1 {
        return Err(format!(
            "the bare-exit guest ended with {outcome:?} after {served} calls, expected {}",
            calls + 1
        ));
    }
    // Call counts here stay far below 2^52: exact as f64.
    #[allow(clippy::cast_precision_loss)]
    let n = calls as f64;
    Ok(took.as_secs_f64() * 1e6 / n)
}
