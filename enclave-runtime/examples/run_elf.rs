//! Runs a static ELF directly in an enclave VM (development aid): `run_elf PROGRAM [ARGS...]`.
//! Debug mode, console to stdout, no pool.

use std::sync::Arc;

use attestation::image::{build_eif, ImageInputs, ImageMetadata, InitSpec, EPOCH_BUILD_TIME};
use enclave_runtime::kernel::console::{ConsoleSink, Stream};
use enclave_runtime::memory::Backing;
use enclave_runtime::vmm::{prepare, LaunchConfig};

struct Stdout;
impl ConsoleSink for Stdout {
    fn write(&self, _s: Stream, data: &[u8]) {
        use std::io::Write;
        let _ = std::io::stdout().write_all(data);
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(path) = args.first() else {
        return Err("usage: run_elf PROGRAM [ARGS...]".into());
    };
    let init = std::fs::read(path)?;
    let mut argv = vec!["/init".to_string()];
    argv.extend(args[1..].iter().cloned());
    let env: Vec<String> = std::env::vars()
        .filter(|(k, _)| k.starts_with("G_"))
        .map(|(k, v)| format!("{}={v}", &k[2..]))
        .collect();
    let img = build_eif(&ImageInputs {
        kernel: enclave_runtime::guest_abi::kernel_blob(),
        init,
        files: vec![("/etc/motd".into(), b"hello file\n".to_vec(), 0o644)],
        init_spec: InitSpec {
            argv,
            env,
            cwd: None,
        },
        metadata: ImageMetadata::new("run_elf", "1", EPOCH_BUILD_TIME, "abi-1"),
    })?;
    let t = std::time::Instant::now();
    let mut enclave = prepare(
        &img.bytes,
        &LaunchConfig {
            memory_mib: 64,
            cpu_count: 1,
            debug: true,
            backing: Backing::Anonymous,
            console: Some(Arc::new(Stdout)),
            hostname: "enclave".into(),
            bare: std::env::var_os("BARE").is_some(),
            vsock: None,
            attestation: None,
            host_cpus: Default::default(),
        },
    )?;
    let prep = t.elapsed();
    if let Some(ms) = std::env::var("STOP_AFTER_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        let stopper = enclave.stopper();
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(ms));
            let t = std::time::Instant::now();
            stopper.stop();
            eprintln!("stop requested ({:?})", t.elapsed());
        });
    }
    let access = enclave.register_access();
    let outcome = enclave.run();
    eprintln!(
        "outcome: {outcome:?}; prepare {prep:?}, total {:?}, {} syscalls, regs {:?}, unknown {:?}",
        t.elapsed(),
        enclave
            .kernel()
            .calls
            .load(std::sync::atomic::Ordering::Relaxed),
        access,
        enclave.kernel().unknown_calls()
    );
    Ok(())
}
