//! `kms-server`: the KMS-style key service. Serves the JSON-lines protocol of
//! `samples::kms::protocol` on TCP; prints `{"Listening":"ADDR"}` as its only stdout line once
//! bound (so callers passing port 0 learn the port), logs to stderr, and exits cleanly on
//! SIGTERM or SIGINT.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use samples::kms::{open_service, server::Server};

/// Run the key service.
#[derive(Parser, Debug)]
#[command(name = "kms-server")]
struct Args {
    /// State directory: master.key, keys.json, audit.jsonl (created if missing).
    #[arg(long)]
    state_dir: PathBuf,
    /// Address to listen on (port 0 picks a free port; the chosen one is printed).
    #[arg(long, default_value = "127.0.0.1:8000")]
    listen: String,
    /// Errors as JSON on stdout (the Listening line is JSON either way).
    #[arg(long)]
    json: bool,
    /// More logging (-v info, -vv debug; RUST_LOG overrides).
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
}

fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Blocks SIGTERM and SIGINT in this thread (and the threads it starts) so that
/// [`wait_for_signal`] receives them.
fn block_signals() -> anyhow::Result<libc::sigset_t> {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it before use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t owned by this frame for each call.
    let rc = unsafe {
        libc::sigemptyset(&raw mut set);
        libc::sigaddset(&raw mut set, libc::SIGTERM);
        libc::sigaddset(&raw mut set, libc::SIGINT);
        libc::pthread_sigmask(libc::SIG_BLOCK, &raw const set, std::ptr::null_mut())
    };
    anyhow::ensure!(rc == 0, "cannot block SIGTERM/SIGINT: error {rc}");
    Ok(set)
}

/// Waits for SIGTERM or SIGINT; returns its name.
fn wait_for_signal(set: &libc::sigset_t) -> &'static str {
    loop {
        let mut sig: libc::c_int = 0;
        // SAFETY: `set` is an initialised sigset_t and `sig` a valid out pointer.
        let rc = unsafe { libc::sigwait(set, &raw mut sig) };
        if rc == 0 {
            return if sig == libc::SIGTERM {
                "SIGTERM"
            } else {
                "SIGINT"
            };
        }
    }
}

fn run(args: &Args) -> anyhow::Result<()> {
    let signals = block_signals()?;
    let service = open_service(&args.state_dir)
        .with_context(|| format!("cannot start on {}", args.state_dir.display()))?;
    let keys = service.keyring().keys().map(|k| k.len()).unwrap_or(0);
    let server = Server::bind(&args.listen, service)
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = server
        .local_addr()
        .context("cannot read the bound address")?;
    tracing::info!(%addr, keys, state_dir = %args.state_dir.display(), "key service listening");
    server.spawn().context("cannot start the accept thread")?;
    {
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "{}",
            serde_json::json!({ "Listening": addr.to_string() })
        )?;
        out.flush()?;
    }
    let signal = wait_for_signal(&signals);
    tracing::info!(signal, "stopping");
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_tracing(args.verbose);
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            samples::cli_error::print_error("kms-server", e.as_ref(), args.json);
            ExitCode::FAILURE
        }
    }
}
