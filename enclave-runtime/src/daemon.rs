//! The VMM process of one enclave: claims its CPUs and memory from the pool, builds the VM,
//! serves the control socket, runs the program on a pinned vCPU thread, and on any ending
//! (exit, crash, terminate request, SIGTERM) scrubs guest memory and gives everything back.
//! An enclave whose program ended by itself leaves a record in its run directory (state JSON
//! with the outcome, and a debug-mode enclave's console log; see [`crate::records`]); one
//! terminated on request leaves nothing.

use std::io::Write;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use vmm_sys_util::signal::register_signal_handler;

use crate::attest::Attestation;
use crate::control::client::CONTROL_SOCKET;
use crate::control::console::ConsoleHub;
use crate::control::protocol::{EnclaveInfo, LaunchRequest, LaunchStatus};
use crate::control::server::{self, Event, Shared};
use crate::kernel::heartbeat::Heartbeat;
use crate::kernel::vsock::VsockHub;
use crate::memory::Backing;
use crate::pool::{self, Claim, ClaimRequest, MemoryBacking, PoolPaths};
use crate::seccomp::{self, ThreadKind};
use crate::vmm::{self, LaunchConfig};

mod vcpu0;
use vcpu0::Vcpu0;

/// Name of the state file in a run directory.
pub const STATE_FILE: &str = crate::records::STATE_FILE;
/// How long an enclave runs before its vCPU threads move into the enclave's cpuset.
const CGROUP_MOVE_DELAY: Duration = Duration::from_millis(50);
/// How long a launch waits for the enclave's heartbeat (made at the program's first system call).
const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(10);
/// Hidden override of [`HEARTBEAT_TIMEOUT`] in milliseconds, for tests of the timeout path.
const HEARTBEAT_TIMEOUT_ENV: &str = "ENCLAVE_HEARTBEAT_TIMEOUT_MS";

/// Why a launch failed.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The pool refused the request (or the enclave id is malformed).
    #[error("cannot take CPUs and memory for the enclave from the pool")]
    Pool(#[from] pool::PoolError),
    /// Reading the image.
    #[error("cannot read the enclave image {path}")]
    ReadEif {
        /// Path.
        path: std::path::PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Building the VM.
    #[error("cannot start the enclave")]
    Vmm(#[from] vmm::VmmError),
    /// Run directory or control socket.
    #[error("cannot set up the run directory {path}")]
    RunDir {
        /// Path.
        path: std::path::PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The program never made a system call, so the heartbeat never came.
    #[error("the enclave did not send its heartbeat within {0:?}: the program may be stuck before its first system call (check that /init is a static x86_64 program with `enclave describe-eif`, and that the host is not overloaded); run with --debug-mode --attach-console to see its output")]
    NoHeartbeat(Duration),
    /// The heartbeat went out but nobody answered it.
    #[error("the launcher did not answer the enclave's heartbeat on vsock.sock_9000 in the run directory within {0:?}; launch enclaves with `enclave run-enclave` or the SDK")]
    Unanswered(Duration),
    /// The heartbeat failed.
    #[error("the enclave's heartbeat failed")]
    Heartbeat(#[from] crate::kernel::heartbeat::HeartbeatError),
    /// vCPU thread.
    #[error("cannot start the vCPU thread")]
    Thread(#[source] std::io::Error),
    /// The vCPU thread ended before it took the enclave (its seccomp filter failed, or it
    /// was killed).
    #[error("the vCPU thread ended before the program could start; see vmm.log")]
    VcpuThread,
    /// Seccomp filters.
    #[error("cannot set up the VMM's seccomp filters")]
    Seccomp(#[from] seccomp::SeccompError),
}

static TERM: AtomicBool = AtomicBool::new(false);

extern "C" fn on_term(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    TERM.store(true, Ordering::Release);
}

fn backing_of(b: MemoryBacking) -> Backing {
    match b {
        MemoryBacking::HugePages2M => Backing::HugePages2M,
        MemoryBacking::Locked4K => Backing::Locked4K,
    }
}

fn write_state(dir: &Path, info: &EnclaveInfo) {
    if let Ok(bytes) = serde_json::to_vec_pretty(info) {
        let tmp = dir.join(".state.json.tmp");
        if std::fs::write(&tmp, bytes).is_ok() {
            let _ = std::fs::rename(tmp, dir.join(STATE_FILE));
        }
    }
}

/// Writes one line to the launcher's status pipe (if it is still there).
fn report(status: &mut Option<std::fs::File>, s: &LaunchStatus) {
    if let Some(f) = status.as_mut() {
        if let Ok(mut line) = serde_json::to_vec(s) {
            line.push(b'\n');
            let _ = f.write_all(&line);
        }
    }
}

/// Everything that must be undone when the VMM ends.
struct Resources {
    claim: Option<Claim>,
    cgroup_move: Option<(mpsc::Sender<()>, std::thread::JoinHandle<()>)>,
    run_dir: std::path::PathBuf,
    /// Keep the record (state JSON, console log) when the run directory is cleaned up.
    keep_record: bool,
}

impl Resources {
    fn release_claim(&mut self) {
        if let Some((cancel, h)) = self.cgroup_move.take() {
            let _ = cancel.send(());
            let _ = h.join();
        }
        if let Some(c) = self.claim.take() {
            if let Err(e) = c.release() {
                tracing::warn!(error = %e, "releasing the pool claim failed; the next command reclaims it");
            }
        }
    }
}

impl Drop for Resources {
    fn drop(&mut self) {
        self.release_claim();
        if self.keep_record {
            crate::records::keep_only_record(&self.run_dir);
        } else {
            let _ = std::fs::remove_dir_all(&self.run_dir);
        }
    }
}

/// Entry of the `__vmm` process. Returns the process exit code.
///
/// # Safety-relevant
/// `status_fd` must be a pipe inherited from the launcher (or -1 for none), and
/// `request.console_fd` a socket inherited from it; both are taken over.
pub fn run_vmm(request: &LaunchRequest, status_fd: i32) -> i32 {
    let console_fd = request.console_fd.filter(|&fd| fd >= 0);
    // Before anything is opened: drop whatever the launcher's parent leaked into us, and keep
    // memory out of core dumps and /proc/<pid>/mem of processes without CAP_SYS_PTRACE.
    crate::harden::close_inherited_fds(&[status_fd, console_fd.unwrap_or(-1)]);
    crate::harden::set_not_dumpable();
    let mut status = (status_fd >= 0).then(|| {
        // SAFETY: the launcher passes a pipe write end it created for this process and does not
        // use it otherwise; we become its only owner.
        let fd = unsafe { OwnedFd::from_raw_fd(status_fd) };
        std::fs::File::from(fd)
    });
    let console = console_fd.map(|fd| {
        // SAFETY: as for the status pipe: a socket the launcher made for this process only,
        // kept open by `close_inherited_fds`; we become its only owner.
        UnixStream::from(unsafe { OwnedFd::from_raw_fd(fd) })
    });
    match launch(request, &mut status, console) {
        Ok(()) => 0,
        Err(e) => {
            let msg = crate::error_chain::chain(&e);
            tracing::error!("{msg}");
            report(&mut status, &LaunchStatus::Failed(msg));
            1
        }
    }
}

fn launch(
    req: &LaunchRequest,
    status: &mut Option<std::fs::File>,
    console: Option<UnixStream>,
) -> Result<(), DaemonError> {
    pool::validate_enclave_id(&req.enclave_id)?;
    let paths = PoolPaths::from_env();
    let run_dir = paths.run_dir(&req.enclave_id);
    let mut res = Resources {
        claim: None,
        cgroup_move: None,
        run_dir: run_dir.clone(),
        keep_record: false,
    };
    std::fs::create_dir_all(&run_dir).map_err(|source| DaemonError::RunDir {
        path: run_dir.clone(),
        source,
    })?;
    let seccomp_mode = seccomp::init(seccomp::Mode::from_env())?;
    let _ = register_signal_handler(libc::SIGTERM, on_term);
    let _ = register_signal_handler(libc::SIGINT, on_term);

    let eif = Arc::new(
        crate::memory::read_populated(&req.eif_path).map_err(|source| DaemonError::ReadEif {
            path: req.eif_path.clone(),
            source,
        })?,
    );
    let claim = pool::claim(
        &paths,
        &ClaimRequest {
            enclave_id: req.enclave_id.clone(),
            pid: std::process::id(),
            cpus: req.cpus.clone(),
            memory_mib: req.memory_mib,
            cid: req.cid,
        },
    )?;
    // Host-side threads run on the parent's CPUs, beside this thread, which builds the enclave
    // pinned to the claim's CPUs.
    let host_cpus = pool::HostCpus::outside(claim.cpus())?;
    // vCPU 0's thread measures the image on the parent's CPUs while this thread builds the
    // VM (see `vcpu0`). The enclave's leaf (a P-384 key and certificate, ~2 ms) is issued by
    // its first Attestation request.
    let (events_tx, events_rx) = mpsc::channel();
    let vcpu0 = Vcpu0::start(vcpu0::Start {
        eif: Arc::clone(&eif),
        enclave_id: req.enclave_id.clone(),
        debug: req.debug,
        host_cpus,
        ended: events_tx.clone(),
    })?;
    let cpu_ids: Vec<u32> = claim.cpus().iter().collect();
    let backing = claim.backing();
    let shared_cpus = claim.shared();
    // Pin this thread to the claim's CPUs right away; the move into the cpuset comes later.
    claim.pin(0)?;
    let mover = claim.cgroup_mover();
    let cid = claim.cid();
    res.claim = Some(claim);

    let hub = Arc::new(ConsoleHub::default());
    // The launcher's console stream (`run-enclave --attach-console`) is attached before the
    // program can write, so nothing is missed; the launcher hears of the end on the status pipe.
    let streams_to_launcher = console.is_some();
    if let Some(c) = console.filter(|_| req.debug) {
        hub.attach(c);
    }
    let heartbeat = Arc::new(Heartbeat::new());
    let vsock = Arc::new(
        VsockHub::new(
            u32::try_from(cid).map_err(|_| pool::PoolError::CidInvalid(cid))?,
            vec![run_dir.clone(), paths.run_root.clone()],
        )
        .with_heartbeat(heartbeat.clone()),
    );
    let unpacked = vmm::unpack_unmeasured(&eif)?;
    let config = LaunchConfig {
        memory_mib: req.memory_mib,
        cpu_count: u32::try_from(cpu_ids.len()).unwrap_or(1),
        debug: req.debug,
        backing: backing_of(backing),
        console: Some(hub.clone()),
        hostname: req.name.clone(),
        bare: false,
        vsock: Some(vsock.clone()),
        attestation: None,
        host_cpus,
    };
    // The measurements and the attestation identity (its leaf comes with the first
    // Attestation request), from the measuring thread.
    let mut identity: Option<Arc<Attestation>> = None;
    let enclave = vmm::build_unpacked_with(unpacked, &config, || {
        let (measurements, attestation) = vcpu0.measured()?;
        let attestation = Arc::new(attestation);
        identity = Some(Arc::clone(&attestation));
        Ok(vmm::LateParts {
            measurements: Some(measurements?),
            attestation: Some(attestation),
        })
    })?;
    drop(eif);
    // The move of the vCPU threads into the enclave's cpuset (host-side threads stay on the
    // parent's CPUs) costs ~13 ms of RCU synchronisation per thread on cgroup v1, so it
    // happens beside the enclave, once it has lived CGROUP_MOVE_DELAY (short-lived enclaves
    // end before and skip it). Its thread is started after the image was measured, so its
    // seccomp filter (a BPF JIT) does not slow the measuring.
    let (cancel_tx, cancel_rx) = mpsc::channel::<()>();
    let moving = std::thread::Builder::new()
        .name("cgroup-mover".into())
        .spawn(move || {
            host_cpus.enter();
            seccomp::enter_keeping_capabilities(ThreadKind::Daemon);
            if cancel_rx.recv_timeout(CGROUP_MOVE_DELAY) == Err(mpsc::RecvTimeoutError::Timeout) {
                if let Err(e) = mover.attach_vcpus() {
                    tracing::warn!(error = %e, "cannot move the vCPU threads into the enclave's cpuset");
                }
            }
        })
        .map_err(DaemonError::Thread)?;
    res.cgroup_move = Some((cancel_tx, moving));
    let attestation = identity.unwrap_or_else(|| {
        Arc::new(Attestation::unavailable(
            &req.enclave_id,
            "no attestation identity was made",
        ))
    });
    if !attestation.available() {
        tracing::warn!(status = %attestation.status(), "attestation documents cannot be signed");
    }
    let info = EnclaveInfo {
        enclave_name: req.name.clone(),
        enclave_id: req.enclave_id.clone(),
        process_id: std::process::id(),
        enclave_cid: cid,
        number_of_cpus: u32::try_from(cpu_ids.len()).unwrap_or(0),
        cpu_ids: cpu_ids.clone(),
        memory_mib: req.memory_mib,
        state: "RUNNING".into(),
        flags: if req.debug { "DEBUG_MODE" } else { "NONE" }.into(),
        cpu_sharing: if shared_cpus { "shared" } else { "exclusive" }.into(),
        memory_backing: match backing {
            MemoryBacking::HugePages2M => "hugepages-2M",
            MemoryBacking::Locked4K => "locked-4K",
        }
        .into(),
        measurements: enclave.measurements.to_json(),
        attested_measurements: attestation.attested_pcrs_json(&enclave.measurements, req.debug),
        attestation: attestation.status(),
        seccomp: seccomp_mode.as_str().into(),
        outcome: None,
        end_reason: None,
    };
    write_state(&run_dir, &info);
    let shared = Shared::new(info.clone(), hub.clone(), events_tx);
    server::serve(&run_dir.join(CONTROL_SOCKET), shared.clone(), host_cpus).map_err(|source| {
        DaemonError::RunDir {
            path: run_dir.clone(),
            source,
        }
    })?;
    crate::vsock_host::serve(&run_dir, vsock, host_cpus).map_err(|source| DaemonError::RunDir {
        path: run_dir.clone(),
        source,
    })?;

    let stopper = enclave.stopper();
    let kernel = enclave.kernel_handle();
    let vm_handles = enclave.vm_handles();
    // vCPU 0's thread has its filter in: into the claim's CPUs with it. Then this thread, which
    // only waits and tears down from here, goes to the parent's CPUs and is locked down too,
    // the last one before the program may run.
    vcpu0.arm(res.claim.as_ref())?;
    host_cpus.enter();
    seccomp::enter(ThreadKind::Daemon);
    let started = Instant::now();
    vcpu0.run(enclave)?;
    // RUNNING means the program is up: its heartbeat was answered (or it already ended).
    if let Err(e) = wait_for_heartbeat(&heartbeat, &kernel, started, heartbeat_timeout()) {
        let _ = vcpu0.stop(&stopper);
        return Err(e);
    }
    report(status, &LaunchStatus::Ready(Box::new(info)));
    if !streams_to_launcher {
        *status = None;
    }
    // Whether the end was asked for (terminate request, SIGTERM): then no record is kept.
    let mut requested = false;
    let outcome = loop {
        match events_rx.recv_timeout(Duration::from_millis(50)) {
            Ok(Event::Ended(o)) => break o,
            Ok(Event::Terminate) => {
                requested = true;
                break vcpu0.stop(&stopper);
            }
            _ => {}
        }
        if TERM.load(Ordering::Acquire) {
            requested = true;
            break vcpu0.stop(&stopper);
        }
    };
    tracing::info!(?outcome, "enclave ended");
    // Give everything back before anyone hears of the end, so that a launch right after a
    // waiter returns finds the CPUs and memory free. The vCPU thread dropped the enclave, but
    // the stopper and kernel handles still keep guest memory alive: dropping them scrubs and
    // unmaps it; then the claim goes.
    vcpu0.join();
    drop(stopper);
    drop(kernel);
    res.release_claim();
    shared.finish(outcome.clone());
    // The launcher's console stream just ended; the outcome follows it on the status pipe.
    report(status, &LaunchStatus::Ended(outcome.clone()));
    *status = None;
    // The VM itself goes after the end was announced: destroying it holds no pool resource
    // and costs the host kernel ~0.6 ms on kvm_pvm.
    drop(vm_handles);
    if let Some(mut i) = shared.info() {
        i.outcome = Some(outcome);
        write_state(&run_dir, &i);
    }
    if req.debug && !requested {
        if let Err(e) = crate::records::write_console_log(&run_dir, &hub.snapshot()) {
            tracing::warn!(error = %e, "cannot keep the console log");
        }
    }
    // Let waiters read the outcome before the socket disappears with the run directory.
    shared.drain_waiters(Duration::from_millis(500));
    res.keep_record = !requested;
    drop(res);
    // The record just kept may be one too many: the oldest go (off the launch path of the
    // next enclave, which no longer prunes).
    if !requested {
        let _ = crate::records::prune(&paths.run_root);
    }
    Ok(())
}

/// The heartbeat timeout: [`HEARTBEAT_TIMEOUT`] unless tests override it.
fn heartbeat_timeout() -> Duration {
    std::env::var(HEARTBEAT_TIMEOUT_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(HEARTBEAT_TIMEOUT, Duration::from_millis)
}

/// Waits for the enclave's heartbeat: `Ok` once answered (or once the program ended before it
/// made one); past `limit` after `since`, says whether it never went out or went unanswered.
fn wait_for_heartbeat(
    hb: &Heartbeat,
    kernel: &crate::kernel::Kernel,
    since: Instant,
    limit: Duration,
) -> Result<(), DaemonError> {
    loop {
        let left = limit.saturating_sub(since.elapsed());
        match hb.wait(left.min(Duration::from_millis(5))) {
            Some(r) => return r.map_err(DaemonError::from),
            None if kernel.stopping() => return Ok(()),
            None if since.elapsed() >= limit => {
                return Err(if kernel.calls.load(Ordering::Acquire) == 0 {
                    DaemonError::NoHeartbeat(limit)
                } else {
                    DaemonError::Unanswered(limit)
                })
            }
            None => {}
        }
    }
}
