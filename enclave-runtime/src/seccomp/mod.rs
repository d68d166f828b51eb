//! Seccomp filters for the VMM process, one allow-list per kind of thread (Firecracker's
//! model: the filter goes on right after a thread's set-up, before it handles anything from
//! the guest or a client). Anything outside a thread's list kills the whole VMM
//! (`SECCOMP_RET_KILL_PROCESS`); the launcher and every CLI command then reclaim its CPUs,
//! memory and run directory as for any dead VMM.
//!
//! Who creates whom decides the order, because a new thread inherits its creator's filters
//! (and filters stack: a call must pass all of them):
//!
//! ```text
//! main ──┬─ vcpu0 ── vcpu-t<N> … (guest clone)  (Vcpu, once it measured the image)
//!        │     └─ vsock-tx (first fast stream)  (inherits Vcpu: it polls and sends)
//!        ├─ cgroup mover      (Daemon, at its start)
//!        ├─ control ── control-conn …           (Control, at the start of `control`)
//!        ├─ vsock-host ── vsock-handshake …     (Vsock, at the start of `vsock-host`)
//!        └─ main itself                          (Daemon, after it started the others)
//! ```
//!
//! The main thread installs its filter last, once `vcpu0` reported its own in, so the other
//! threads carry only their own list. `vcpu0` measures the image first (no guest exists yet)
//! and is handed the enclave only after that report.
//! [`init`] compiles all lists once at VMM start; [`enter`] is the one call each thread makes.
//! Outside a VMM process (unit tests, benchmarks) nothing was initialised and [`enter`] does
//! nothing.
//!
//! `ENCLAVE_SECCOMP=off` (debugging only, logged loudly and shown as `Seccomp: "off"` by
//! `describe-enclaves`) skips the filters; `ENCLAVE_SECCOMP=log` installs them with
//! `SECCOMP_RET_LOG` instead of kill, so that a missing entry shows up in the kernel log
//! (`dmesg | grep type=1326`) without ending the enclave: that is how the lists were derived.

mod common;
pub mod kinds;
pub mod kvm_ioctls;
pub mod rules;

use std::sync::OnceLock;

use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, TargetArch};

/// Environment variable that selects the [`Mode`].
pub const MODE_ENV: &str = "ENCLAVE_SECCOMP";

/// What a filter does with a call outside its list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Kill the VMM process (the default).
    Kill,
    /// Allow the call but have the kernel log it (deriving the lists).
    Log,
    /// No filters at all (debugging only).
    Off,
}

impl Mode {
    /// The mode named by `ENCLAVE_SECCOMP`: `off`, `log`, else (unset or anything else) `kill`.
    pub fn from_env() -> Self {
        match std::env::var(MODE_ENV).as_deref() {
            Ok("off") => Self::Off,
            Ok("log") => Self::Log,
            Ok("kill") | Err(_) => Self::Kill,
            Ok(other) => {
                tracing::warn!(
                    value = other,
                    "{MODE_ENV} is not off, log or kill; using kill"
                );
                Self::Kill
            }
        }
    }

    /// `kill`, `log` or `off`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Kill => "kill",
            Self::Log => "log",
            Self::Off => "off",
        }
    }
}

/// The kinds of VMM threads, each with its own allow-list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ThreadKind {
    /// vCPU threads and the threads they create for guest threads.
    Vcpu,
    /// The control-socket server and its connection threads.
    Control,
    /// The hybrid-vsock server and its handshake threads.
    Vsock,
    /// The main thread after set-up, and the cgroup mover.
    Daemon,
}

impl ThreadKind {
    /// Every kind.
    pub const ALL: [ThreadKind; 4] = [Self::Vcpu, Self::Control, Self::Vsock, Self::Daemon];

    /// Short name for logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Vcpu => "vcpu",
            Self::Control => "control",
            Self::Vsock => "vsock",
            Self::Daemon => "daemon",
        }
    }
}

/// Why filters could not be built or installed.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// seccompiler refused a list (a bug in the lists).
    #[error("cannot compile the seccomp filter for {kind} threads")]
    Compile {
        /// Thread kind.
        kind: &'static str,
        /// Cause.
        #[source]
        source: seccompiler::BackendError,
    },
    /// The kernel refused the filter.
    #[error("cannot install the seccomp filter for {kind} threads; set ENCLAVE_SECCOMP=off to debug without filters")]
    Install {
        /// Thread kind.
        kind: &'static str,
        /// Cause.
        #[source]
        source: seccompiler::Error,
    },
}

/// The compiled filters of one VMM process.
struct Filters {
    mode: Mode,
    programs: Vec<(ThreadKind, BpfProgram)>,
}

static FILTERS: OnceLock<Filters> = OnceLock::new();

/// Compiles `list` into a BPF program with the mode's action for calls outside the list.
pub fn compile(kind: ThreadKind, pid: u32, mode: Mode) -> Result<BpfProgram, SeccompError> {
    let err = |source| SeccompError::Compile {
        kind: kind.name(),
        source,
    };
    let map = rules::to_map(&kinds::list(kind, pid)).map_err(err)?;
    let mismatch = if mode == Mode::Log {
        SeccompAction::Log
    } else {
        SeccompAction::KillProcess
    };
    let filter =
        SeccompFilter::new(map, mismatch, SeccompAction::Allow, TargetArch::x86_64).map_err(err)?;
    BpfProgram::try_from(filter).map_err(err)
}

/// Compiles the filters of this VMM process for `mode` (once; later calls keep the first).
/// Returns the mode in force.
pub fn init(mode: Mode) -> Result<Mode, SeccompError> {
    if let Some(f) = FILTERS.get() {
        return Ok(f.mode);
    }
    let pid = std::process::id();
    fix_malloc_arenas();
    let mut programs = Vec::new();
    if mode != Mode::Off {
        for kind in ThreadKind::ALL {
            programs.push((kind, compile(kind, pid, mode)?));
        }
    }
    match mode {
        Mode::Off => tracing::warn!(
            "SECCOMP FILTERS ARE OFF ({MODE_ENV}=off): the VMM runs unconfined; use this for debugging only"
        ),
        Mode::Log => tracing::warn!(
            "seccomp filters only log violations ({MODE_ENV}=log): see `dmesg | grep type=1326`; use this for debugging only"
        ),
        Mode::Kill => {}
    }
    let _ = FILTERS.set(Filters { mode, programs });
    Ok(mode)
}

/// Number of glibc malloc arenas of the VMM.
const MALLOC_ARENAS: i32 = 8;

/// glibc's malloc reads `/sys/devices/system/cpu/online` the first time a thread needs a new
/// arena, to size its arena limit: on whatever thread that happens, after the filters are on
/// (seen on a vsock handshake thread). A fixed limit set now makes it never look.
fn fix_malloc_arenas() {
    // SAFETY: mallopt only changes a malloc tunable; no memory is passed.
    if unsafe { libc::mallopt(libc::M_ARENA_MAX, MALLOC_ARENAS) } != 1 {
        tracing::warn!("cannot fix the number of malloc arenas; a thread may be killed by seccomp");
    }
}

/// The mode in force, if [`init`] ran in this process.
pub fn mode() -> Option<Mode> {
    FILTERS.get().map(|f| f.mode)
}

/// Locks down the calling thread as a `kind` thread: drops every capability it holds (see
/// [`crate::harden::drop_capabilities`]) and installs the kind's filter. Threads it creates
/// later inherit both. Does nothing outside a VMM process (no [`init`]).
///
/// A failure here would leave a thread unconfined that should not be: the VMM aborts (fail
/// closed), and its claim is reclaimed like that of any dead VMM.
pub fn enter(kind: ThreadKind) {
    lock_down(kind, true);
}

/// As [`enter`] but keeps the thread's capabilities: for the short-lived cgroup mover, whose
/// one job (moving the whole VMM into its cpuset) the kernel allows only to a thread whose
/// capabilities cover those of every thread it moves (`cap_task_setscheduler`). It ends
/// right after, taking its capabilities with it.
pub fn enter_keeping_capabilities(kind: ThreadKind) {
    lock_down(kind, false);
}

fn lock_down(kind: ThreadKind, drop_capabilities: bool) {
    let Some(filters) = FILTERS.get() else {
        return;
    };
    if drop_capabilities {
        crate::harden::drop_capabilities();
    }
    if let Err(e) = try_enter(filters, kind) {
        tracing::error!(error = %e, thread = kind.name(), "cannot lock down a VMM thread; aborting");
        std::process::abort();
    }
}

fn try_enter(filters: &Filters, kind: ThreadKind) -> Result<(), SeccompError> {
    let Some((_, program)) = filters.programs.iter().find(|(k, _)| *k == kind) else {
        return Ok(());
    };
    seccompiler::apply_filter(program).map_err(|source| SeccompError::Install {
        kind: kind.name(),
        source,
    })?;
    tracing::debug!(
        thread = kind.name(),
        mode = filters.mode.as_str(),
        "seccomp filter installed"
    );
    Ok(())
}

/// Makes a system call that no thread's list allows (`socket(AF_INET, …)`), for the test of
/// the kill path. Returns only if the filter let it through (modes `log` and `off`): then
/// whether the call succeeded.
pub fn forbidden_call() -> bool {
    // SAFETY: socket has no memory-safety preconditions; the descriptor, if any, is closed
    // right away.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd >= 0 {
        // SAFETY: `fd` was just returned by socket and is owned by nobody else.
        unsafe { libc::close(fd) };
    }
    fd >= 0
}

#[cfg(test)]
mod tests;
