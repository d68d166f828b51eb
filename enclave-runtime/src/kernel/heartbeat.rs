//! Nitro's boot heartbeat, played by the enclave kernel. On AWS Nitro Enclaves the enclave's
//! init connects to CID 3 port 9000, sends 0xB7 and waits for 0xB7 back from nitro-cli, which
//! reports the enclave only then. Here the kernel plays init: at the program's first system
//! call (the program is up) it makes the same exchange over the enclave's real vsock path
//! (a connection to CID 3 port 9000 is the launcher's `<run dir>/vsock.sock_9000`), and the
//! VMM reports the enclave as RUNNING only once the launcher has answered.
//!
//! Port 9000 then behaves as on Nitro: the launcher answers one heartbeat and closes its
//! listener, so a program that connects to CID 3 port 9000 itself is refused (`ECONNRESET`)
//! unless a parent application listens on port 9000 of its own.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::errno::Errno;
use super::file::FileOps;
use super::socket::{Socket, VsockAddr, PARENT_CID};
use super::vsock::{VsockHub, VsockSocket};

/// The parent port the heartbeat goes to (nitro-cli's `ENCLAVE_READY_VSOCK_PORT`).
pub const HEARTBEAT_PORT: u32 = 9000;
/// The byte sent, and expected back.
pub const HEARTBEAT_BYTE: u8 = 0xB7;

/// Why the heartbeat failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeartbeatError {
    /// Nobody listens on the parent's port 9000.
    #[error("nobody listens for the enclave's heartbeat on CID 3 port 9000 (vsock.sock_9000 in the run directory); launch enclaves with `enclave run-enclave` or the SDK")]
    Refused,
    /// The exchange broke off.
    #[error("the heartbeat exchange on CID 3 port 9000 failed: {0}; the launcher went away or the enclave is ending")]
    Io(String),
    /// The launcher answered something else.
    #[error("the launcher answered the heartbeat with {0:#04x} instead of 0xb7")]
    WrongReply(u8),
}

fn io(e: Errno) -> HeartbeatError {
    HeartbeatError::Io(std::io::Error::from_raw_os_error(e.0).to_string())
}

/// The heartbeat of one enclave: made once by the kernel, awaited by the VMM.
#[derive(Default)]
pub struct Heartbeat {
    result: Mutex<Option<Result<(), HeartbeatError>>>,
    done: Condvar,
}

impl Heartbeat {
    /// A heartbeat not made yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes the exchange through `hub` (blocking calls end early once `stop` is raised) and
    /// records its result for [`Heartbeat::wait`].
    pub fn beat(&self, hub: &Arc<VsockHub>, stop: &Arc<AtomicBool>) {
        let result = exchange(hub, stop);
        if let Err(e) = &result {
            tracing::warn!(error = %e, "enclave heartbeat failed");
        }
        *self.result.lock().unwrap_or_else(PoisonError::into_inner) = Some(result);
        self.done.notify_all();
    }

    /// The result once the heartbeat was made, waiting up to `limit` for it.
    pub fn wait(&self, limit: Duration) -> Option<Result<(), HeartbeatError>> {
        let deadline = Instant::now() + limit;
        let mut r = self.result.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(done) = &*r {
                return Some(done.clone());
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            r = self
                .done
                .wait_timeout(r, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

fn exchange(hub: &Arc<VsockHub>, stop: &Arc<AtomicBool>) -> Result<(), HeartbeatError> {
    let s = VsockSocket::new(hub.clone(), libc::O_RDWR, stop.clone());
    s.connect(VsockAddr {
        cid: PARENT_CID,
        port: HEARTBEAT_PORT,
    })
    .map_err(|_| HeartbeatError::Refused)?;
    match FileOps::write(&s, &[HEARTBEAT_BYTE]).map_err(io)? {
        1 => {}
        _ => return Err(io(Errno(libc::EPIPE))),
    }
    let mut reply = [0u8; 1];
    match FileOps::read(&s, &mut reply).map_err(io)? {
        0 => Err(HeartbeatError::Io("end of stream before the reply".into())),
        _ if reply[0] == HEARTBEAT_BYTE => Ok(()),
        _ => Err(HeartbeatError::WrongReply(reply[0])),
    }
}
