//! The first vCPU thread of a VMM and its hand-over protocol with the main thread.
//!
//! The thread starts on the parent's CPUs as the measuring thread. It hashes the image (PCRs)
//! and reads the CA while the main thread unpacks the image and builds the VM, then hands them
//! over. It then installs its seccomp filter (a BPF JIT, ~0.3 ms on kvm_pvm) while the main
//! thread finishes, reports it is in, and waits. The main thread pins it into the claim and
//! hands it the enclave. Dropping the [`Vcpu0`] before the hand-over ends the thread.

use std::sync::{mpsc, Arc};
use std::time::Duration;

use attestation::pcr::Measurements;

use super::DaemonError;
use crate::attest::Attestation;
use crate::control::server::Event;
use crate::image::ImageError;
use crate::pool::{Claim, HostCpus};
use crate::seccomp::{self, ThreadKind};
use crate::threads::{Stopper, VCPU_THREAD_PREFIX};
use crate::vcpu::Outcome;
use crate::vmm::{self, Enclave};

/// How long the main thread waits for the thread to report its filter in.
const ARM_TIMEOUT: Duration = Duration::from_secs(10);

/// What the thread measured: the image's measurements and the attestation identity.
pub type Measured = (Result<Measurements, ImageError>, Attestation);

/// The main thread's side of vCPU 0's thread.
pub struct Vcpu0 {
    thread: std::thread::JoinHandle<()>,
    measured: mpsc::Receiver<Measured>,
    armed: mpsc::Receiver<i32>,
    enclave: mpsc::Sender<Enclave>,
    outcome: mpsc::Receiver<Outcome>,
}

/// What the thread needs to measure the image and to report the program's end.
pub struct Start {
    /// The image, as read.
    pub eif: Arc<Vec<u8>>,
    /// The enclave.
    pub enclave_id: String,
    /// Debug mode (zero PCRs in attestation documents).
    pub debug: bool,
    /// Where it runs until it is handed the enclave.
    pub host_cpus: HostCpus,
    /// Where it reports the program's end (the main thread's events).
    pub ended: mpsc::Sender<Event>,
}

impl Vcpu0 {
    /// Starts the thread.
    pub fn start(s: Start) -> Result<Self, DaemonError> {
        let (measured_tx, measured) = mpsc::channel();
        let (armed_tx, armed) = mpsc::channel();
        let (enclave, enclave_rx) = mpsc::channel::<Enclave>();
        let (outcome_tx, outcome) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(format!("{VCPU_THREAD_PREFIX}0"))
            .spawn(move || {
                s.host_cpus.enter();
                let measurements = crate::image::measure(&s.eif);
                drop(s.eif);
                let identity =
                    Attestation::deferred(&s.enclave_id, s.debug, &attestation::ca::default_dir());
                let _ = measured_tx.send((measurements, identity));
                // SAFETY: gettid has no preconditions.
                let tid = unsafe { libc::gettid() };
                seccomp::enter(ThreadKind::Vcpu);
                let _ = armed_tx.send(tid);
                let Ok(mut enclave) = enclave_rx.recv() else {
                    let _ = outcome_tx.send(Outcome::Terminated);
                    return;
                };
                let outcome = enclave.run();
                // Dropping the enclave scrubs guest memory before the outcome is announced.
                drop(enclave);
                let _ = outcome_tx.send(outcome.clone());
                let _ = s.ended.send(Event::Ended(outcome));
            })
            .map_err(DaemonError::Thread)?;
        Ok(Self {
            thread,
            measured,
            armed,
            enclave,
            outcome,
        })
    }

    /// The measurements and identity, once the thread has them.
    pub fn measured(&self) -> Result<Measured, vmm::VmmError> {
        self.measured.recv().map_err(|_| vmm::VmmError::Helper)
    }

    /// Waits until the thread's filter is in and pins it into `claim`'s CPUs.
    pub fn arm(&self, claim: Option<&Claim>) -> Result<(), DaemonError> {
        let tid = self
            .armed
            .recv_timeout(ARM_TIMEOUT)
            .map_err(|_| DaemonError::VcpuThread)?;
        if let Some(c) = claim {
            c.pin(tid)?;
        }
        Ok(())
    }

    /// Hands the thread the enclave: the program starts. The caller locks itself down between
    /// [`Vcpu0::arm`] and this.
    pub fn run(&self, enclave: Enclave) -> Result<(), DaemonError> {
        self.enclave
            .send(enclave)
            .map_err(|_| DaemonError::VcpuThread)
    }

    /// Stops the program and waits for its outcome.
    pub fn stop(&self, stopper: &Stopper) -> Outcome {
        stopper.stop();
        self.outcome
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or(Outcome::Terminated)
    }

    /// Waits for the thread to end (after the program's end was reported).
    pub fn join(self) {
        let _ = self.thread.join();
    }
}
