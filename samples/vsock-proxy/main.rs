//! `vsock-proxy`: forwards the connections an enclave makes to CID 3 `<local_port>` to the
//! allowlisted TCP `<remote_addr>:<remote_port>`, like AWS Nitro Enclaves' `vsock-proxy`.
//!
//! Prints `{"Listening":"<socket>","Remote":"host:port"}` on stdout once it accepts, logs every
//! connection on stderr, and removes its socket on SIGTERM or SIGINT.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use samples::vsock_proxy::{config_path, Allowlist, Place, Proxy, ProxyConfig, ProxySocket};

/// Forward an enclave's vsock port to an allowlisted TCP host:port.
#[derive(Parser, Debug)]
#[command(name = "vsock-proxy")]
struct Args {
    /// The vsock port enclaves connect to on CID 3.
    local_port: u32,
    /// Remote host name or IP.
    remote_addr: String,
    /// Remote TCP port.
    remote_port: u16,
    /// Allowlist file (AWS vsock-proxy YAML). Default: $ENCLAVE_VSOCK_PROXY_CONFIG, else
    /// /etc/enclave/vsock-proxy.yaml.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Listen in this directory instead of $ENCLAVE_RUN_ROOT (created if missing).
    #[arg(long, conflicts_with = "enclave_id")]
    run_dir: Option<PathBuf>,
    /// Listen in this running enclave's run directory: only it reaches the proxy.
    #[arg(long)]
    enclave_id: Option<String>,
    /// Connections served at once; more are refused and logged.
    #[arg(long, short = 'w', default_value_t = 64)]
    num_workers: usize,
    /// Seconds allowed for each TCP connect to the remote.
    #[arg(long, default_value_t = 10)]
    connect_timeout: u64,
    /// Logs as JSON lines on stderr; a fatal error as {"Error":…,"Causes":[…]} on stdout.
    #[arg(long)]
    json: bool,
}

fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}

/// The signals that stop the proxy, as a set.
fn stop_signals() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it before any use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a live, writable sigset_t; SIGTERM and SIGINT are valid signals.
    unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
    }
    set
}

/// Blocks SIGTERM and SIGINT in this thread (and the threads it starts after), so that only
/// the waiting thread of [`on_stop_signal`] receives them.
fn block_stop_signals() -> std::io::Result<()> {
    let set = stop_signals();
    // SAFETY: `set` is an initialised sigset_t; the old mask is not requested (null).
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::from_raw_os_error(rc))
    }
}

/// Runs `f` on a thread once SIGTERM or SIGINT arrives.
fn on_stop_signal(f: impl FnOnce(i32) + Send + 'static) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let set = stop_signals();
            let mut sig: libc::c_int = 0;
            // SAFETY: `set` is initialised and `sig` is a live c_int for sigwait to fill.
            while unsafe { libc::sigwait(&set, &mut sig) } != 0 {}
            f(sig);
        })?;
    Ok(())
}

fn run(a: &Args) -> anyhow::Result<()> {
    block_stop_signals().context("cannot block SIGTERM/SIGINT")?;
    let config_file = config_path(a.config.as_deref());
    let allowlist = Allowlist::load(&config_file)?;
    let mut config = ProxyConfig::new(&a.remote_addr, a.remote_port, allowlist);
    config.num_workers = a.num_workers;
    config.connect_timeout = Duration::from_secs(a.connect_timeout.max(1));
    config.check()?;
    let place = match (&a.run_dir, &a.enclave_id) {
        (Some(d), _) => Place::Dir(d.clone()),
        (None, Some(id)) => Place::Enclave(id.clone()),
        (None, None) => Place::RunRoot,
    };
    let path = place.socket_path(a.local_port)?;
    let socket = ProxySocket::bind(&path)?;
    let proxy = Proxy::new(socket, config)?;
    let stopper = proxy.stopper();
    on_stop_signal(move |sig| {
        tracing::info!(signal = sig, "stopping");
        stopper.stop();
    })
    .context("cannot start the signal thread")?;
    let started = serde_json::json!({
        "Listening": path.display().to_string(),
        "Remote": format!("{}:{}", a.remote_addr, a.remote_port),
    });
    let mut out = std::io::stdout().lock();
    writeln!(out, "{started}").context("cannot write to stdout")?;
    out.flush().context("cannot write to stdout")?;
    drop(out);
    tracing::info!(
        socket = %path.display(),
        remote = %format!("{}:{}", a.remote_addr, a.remote_port),
        allowlist = %config_file.display(),
        workers = a.num_workers,
        "listening"
    );
    let stats = proxy.run()?;
    let removed = proxy.socket().still_ours();
    drop(proxy);
    tracing::info!(
        served = stats.served,
        refused_at_limit = stats.refused_at_limit,
        socket_removed = removed,
        "stopped"
    );
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_tracing(args.json);
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            samples::cli_error::print_error("vsock-proxy", e.as_ref(), args.json);
            ExitCode::FAILURE
        }
    }
}
