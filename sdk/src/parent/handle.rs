//! A launched (or attached) enclave: describe, terminate, wait, and its vsock channels.

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use enclave_runtime::control::client::{ClientError, Control};
use enclave_runtime::control::protocol::EnclaveInfo;
use enclave_runtime::vcpu::Outcome;

use super::channel::{self, Listener};
use super::error::SdkError;
use super::launch::Enclaves;

/// How long [`EnclaveHandle::terminate`] waits for the VMM to clean up before it falls back to
/// `enclave terminate-enclave` (which kills an unresponsive VMM).
const TERMINATE_GRACE: Duration = Duration::from_secs(10);
/// Pause between attempts of [`EnclaveHandle::connect_retry`].
const RETRY_PAUSE: Duration = Duration::from_millis(10);

/// One enclave. Dropping the handle leaves the enclave running; call
/// [`EnclaveHandle::terminate`] to end it.
#[derive(Debug, Clone)]
pub struct EnclaveHandle {
    enclaves: Enclaves,
    info: EnclaveInfo,
    run_dir: PathBuf,
}

impl EnclaveHandle {
    pub(crate) fn new(enclaves: Enclaves, info: EnclaveInfo) -> Self {
        let run_dir = enclaves.run_root().join(&info.enclave_id);
        Self {
            enclaves,
            info,
            run_dir,
        }
    }

    /// `enc-<16 hex>`.
    pub fn id(&self) -> &str {
        &self.info.enclave_id
    }

    /// The enclave's vsock CID.
    pub fn cid(&self) -> u64 {
        self.info.enclave_cid
    }

    /// The description `run-enclave` printed.
    pub fn info(&self) -> &EnclaveInfo {
        &self.info
    }

    /// `<run root>/<enclave id>/`.
    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    fn control(&self) -> Control {
        Control::new(&self.run_dir)
    }

    fn control_err(&self, source: ClientError) -> SdkError {
        SdkError::Control {
            enclave_id: self.id().to_owned(),
            source,
        }
    }

    /// Asks the VMM for a fresh description; once the enclave has ended by itself, its record
    /// (state `EXITED` or `CRASHED`, with the outcome).
    pub fn describe(&self) -> Result<EnclaveInfo, SdkError> {
        self.control().describe().or_else(|e| {
            enclave_runtime::records::read(&self.run_dir).ok_or_else(|| self.control_err(e))
        })
    }

    /// Blocks until the program ends; returns how it ended (also when it ended before the
    /// call: from the enclave's record).
    pub fn wait(&self) -> Result<Outcome, SdkError> {
        let recorded = || enclave_runtime::records::read(&self.run_dir).and_then(|i| i.outcome);
        self.control()
            .waiter()
            .and_then(|w| w.wait())
            .or_else(|e| recorded().ok_or(e))
            .map_err(|e| self.control_err(e))
    }

    /// The console of a debug-mode enclave: the output so far (a bounded history), then live
    /// output until the enclave ends.
    pub fn console(&self) -> Result<UnixStream, SdkError> {
        self.control().console().map_err(|e| self.control_err(e))
    }

    /// Terminates the enclave and waits until its VMM has given everything back (its run
    /// directory is gone). An enclave that already ended is not an error.
    pub fn terminate(&self) -> Result<(), SdkError> {
        if !self.run_dir.exists() {
            return Ok(());
        }
        if self.control().terminate().is_ok() {
            let deadline = Instant::now() + TERMINATE_GRACE;
            while Instant::now() < deadline {
                if !self.run_dir.exists() {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        if !self.run_dir.exists() {
            return Ok(());
        }
        // The VMM does not answer: the CLI kills it and reclaims what it held.
        self.enclaves
            .cli(["terminate-enclave", "--enclave-id", self.id()])
            .map(|_| ())
    }

    /// `<run dir>/vsock.sock`, the enclave's hybrid vsock socket.
    pub fn vsock_socket(&self) -> PathBuf {
        self.run_dir.join(channel::VSOCK_SOCKET)
    }

    /// A byte stream to the enclave program's socket accepted on `port`.
    ///
    /// Fails with [`SdkError::PortNotListening`] when no program socket listens there (yet).
    pub fn connect(&self, port: u32) -> Result<UnixStream, SdkError> {
        channel::connect(&self.vsock_socket(), port).map_err(|e| self.name_port(e))
    }

    /// [`EnclaveHandle::connect`], retried while the port is not listened on yet, for up to
    /// `timeout` (a freshly launched program may not have called `listen` yet).
    pub fn connect_retry(&self, port: u32, timeout: Duration) -> Result<UnixStream, SdkError> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.connect(port) {
                Err(SdkError::PortNotListening { .. }) if Instant::now() < deadline => {
                    std::thread::sleep(RETRY_PAUSE);
                }
                other => return other,
            }
        }
    }

    fn name_port(&self, e: SdkError) -> SdkError {
        match e {
            SdkError::PortNotListening { port, .. } => SdkError::PortNotListening {
                enclave_id: self.id().to_owned(),
                port,
            },
            other => other,
        }
    }

    /// Listens for this enclave's connections to CID 3 `port` at `<run dir>/vsock.sock_<port>`.
    pub fn listen(&self, port: u32) -> Result<Listener, SdkError> {
        Listener::bind(&self.run_dir, port)
    }
}
