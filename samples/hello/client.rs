//! `hello-client`: the parent side of the hello sample. Launches the echo enclave from an EIF
//! through the SDK (or talks to a running one), sends a message on a vsock port, half-closes,
//! prints the echo and terminates the enclave it launched.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use sdk::{Enclaves, LaunchOptions};

/// Talk to the hello echo enclave.
#[derive(Parser, Debug)]
struct Args {
    /// Launch this image (samples/README.md shows how to build it).
    #[arg(long, required_unless_present = "enclave_id")]
    eif_path: Option<PathBuf>,
    /// Talk to this running enclave instead of launching one.
    #[arg(long, conflicts_with = "eif_path")]
    enclave_id: Option<String>,
    /// The enclave's vsock port.
    #[arg(long, default_value_t = 5000)]
    port: u32,
    /// What to send.
    #[arg(long, default_value = "hello, enclave")]
    message: String,
    /// Guest memory in MiB (launch only).
    #[arg(long, default_value_t = 64)]
    memory: u64,
    /// CPUs (launch only).
    #[arg(long, default_value_t = 1)]
    cpu_count: u32,
    /// Debug mode (launch only).
    #[arg(long)]
    debug_mode: bool,
    /// Leave the launched enclave running.
    #[arg(long)]
    keep: bool,
}

fn talk(enclave: &sdk::EnclaveHandle, a: &Args) -> Result<String, sdk::SdkError> {
    let mut s = enclave.connect_retry(a.port, Duration::from_secs(10))?;
    s.write_all(a.message.as_bytes())?;
    s.shutdown(Shutdown::Write)?;
    let mut echo = String::new();
    s.read_to_string(&mut echo)?;
    Ok(echo)
}

fn run(a: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let enclaves = Enclaves::new()?;
    let (enclave, launched) = match (&a.eif_path, &a.enclave_id) {
        (_, Some(id)) => (enclaves.attach(id)?, false),
        (Some(eif), None) => {
            let opts = LaunchOptions::new(eif)
                .memory_mib(a.memory)
                .cpu_count(a.cpu_count)
                .debug(a.debug_mode);
            let e = enclaves.launch(&opts)?;
            eprintln!("launched {} (CID {})", e.id(), e.cid());
            (e, true)
        }
        (None, None) => return Err("give --eif-path or --enclave-id".into()),
    };
    let result = talk(&enclave, a);
    if launched && !a.keep {
        enclave.terminate()?;
        eprintln!("terminated {}", enclave.id());
    }
    let echo = result?;
    println!("{echo}");
    if echo != a.message {
        return Err(format!("the echo differs from what was sent: {echo:?}").into());
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprint!("hello-client: error: {e}");
            let mut src = e.source();
            while let Some(s) = src {
                eprint!(": {s}");
                src = s.source();
            }
            eprintln!();
            ExitCode::FAILURE
        }
    }
}
