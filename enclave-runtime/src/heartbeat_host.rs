//! The launcher's side of Nitro's boot heartbeat (the enclave's side is
//! `crate::kernel::heartbeat`): before the VMM starts, the launcher listens on
//! `<run dir>/vsock.sock_9000` (the parent's vsock port 9000 for this enclave), answers the one
//! 0xB7 it receives with 0xB7, then closes and removes its listener, as nitro-cli does.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::kernel::heartbeat::{HEARTBEAT_BYTE, HEARTBEAT_PORT};
use crate::kernel::hostfd::poll_one;

/// How often the answering thread checks whether it was cancelled.
const TICK: Duration = Duration::from_millis(50);

/// A listener answering one enclave heartbeat; stops and removes its socket when dropped.
pub struct HeartbeatListener {
    path: PathBuf,
    cancel: Arc<AtomicBool>,
    thread: Option<JoinHandle<bool>>,
}

/// The parent-side socket path of the heartbeat for the enclave whose run directory is `dir`.
pub fn socket_path(dir: &Path) -> PathBuf {
    dir.join(format!("vsock.sock_{HEARTBEAT_PORT}"))
}

/// The heartbeat socket, bound but not yet answered: a launcher binds it before the VMM
/// exists and starts the answering thread afterwards (a launcher that forks the VMM must still
/// be single-threaded when it forks).
pub struct BoundHeartbeat {
    path: PathBuf,
    listener: UnixListener,
}

impl BoundHeartbeat {
    /// Binds `<run_dir>/vsock.sock_9000` (mode 0600).
    pub fn bind(run_dir: &Path) -> std::io::Result<Self> {
        let path = socket_path(run_dir);
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path)?;
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        listener.set_nonblocking(true)?;
        Ok(Self { path, listener })
    }

    /// Answers the first heartbeat that arrives within `limit` on a background thread.
    pub fn start(self, limit: Duration) -> std::io::Result<HeartbeatListener> {
        let Self { path, listener } = self;
        let cancel = Arc::new(AtomicBool::new(false));
        let (stop, file) = (cancel.clone(), path.clone());
        let thread = std::thread::Builder::new()
            .name("heartbeat".into())
            .spawn(move || {
                let answered = answer(&listener, limit, &stop);
                drop(listener);
                let _ = std::fs::remove_file(&file);
                answered
            })?;
        Ok(HeartbeatListener {
            path,
            cancel,
            thread: Some(thread),
        })
    }
}

impl HeartbeatListener {
    /// Listens in `run_dir` and answers the first heartbeat that arrives within `limit` on a
    /// background thread.
    pub fn start(run_dir: &Path, limit: Duration) -> std::io::Result<Self> {
        BoundHeartbeat::bind(run_dir)?.start(limit)
    }

    /// Waits for the answering thread; true when a heartbeat was answered.
    pub fn finish(mut self) -> bool {
        self.thread
            .take()
            .is_some_and(|t| t.join().unwrap_or(false))
    }
}

impl Drop for HeartbeatListener {
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::Release);
        if self.thread.take().is_some() {
            // The thread notices the flag within a tick and removes the socket itself; the
            // file goes now so nobody connects in between.
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Accepts one connection, reads the heartbeat and answers it. False on timeout, cancel or a
/// wrong byte (the enclave then reports the failure itself).
fn answer(listener: &UnixListener, limit: Duration, cancel: &AtomicBool) -> bool {
    let deadline = Instant::now() + limit;
    let mut conn = loop {
        if cancel.load(Ordering::Acquire) {
            return false;
        }
        match listener.accept() {
            Ok((c, _)) => break c,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return false,
        }
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            return false;
        };
        let wait = i32::try_from(left.min(TICK).as_millis()).unwrap_or(50);
        poll_one(listener.as_raw_fd(), libc::POLLIN, wait);
    };
    let left = deadline
        .checked_duration_since(Instant::now())
        .unwrap_or(TICK);
    if conn.set_nonblocking(false).is_err() || conn.set_read_timeout(Some(left)).is_err() {
        return false;
    }
    let mut byte = [0u8; 1];
    if conn.read_exact(&mut byte).is_err() || byte[0] != HEARTBEAT_BYTE {
        tracing::warn!("the enclave's heartbeat was not 0xb7");
        return false;
    }
    conn.write_all(&[HEARTBEAT_BYTE]).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::heartbeat::{Heartbeat, HeartbeatError};
    use crate::kernel::vsock::VsockHub;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("heartbeat-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    fn beat(dir: &Path) -> Option<Result<(), HeartbeatError>> {
        let hb = Arc::new(Heartbeat::new());
        let hub = Arc::new(VsockHub::new(16, vec![dir.to_path_buf()]).with_heartbeat(hb.clone()));
        let stop = Arc::new(AtomicBool::new(false));
        let h = hb.clone();
        std::thread::spawn(move || h.beat(&hub, &stop));
        hb.wait(Duration::from_secs(5))
    }

    #[test]
    fn the_launcher_answers_one_heartbeat_then_port_9000_is_closed() {
        let dir = temp_dir("answer");
        let listener = HeartbeatListener::start(&dir, Duration::from_secs(5)).expect("listen");
        assert_eq!(beat(&dir), Some(Ok(())));
        assert!(listener.finish(), "the launcher saw no heartbeat");
        assert!(!socket_path(&dir).exists(), "the listener stayed");
        // As on Nitro once nitro-cli is done: nobody listens on port 9000 any more.
        assert_eq!(beat(&dir), Some(Err(HeartbeatError::Refused)));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_wrong_or_missing_answer_is_an_error() {
        let dir = temp_dir("wrong");
        let listener = UnixListener::bind(socket_path(&dir)).expect("bind");
        let t = std::thread::spawn(move || {
            let (mut c, _) = listener.accept().expect("accept");
            let mut b = [0u8; 1];
            c.read_exact(&mut b).expect("read");
            assert_eq!(b[0], HEARTBEAT_BYTE);
            c.write_all(&[0x42]).expect("write");
            let (c, _) = listener.accept().expect("accept");
            drop(c);
        });
        assert_eq!(beat(&dir), Some(Err(HeartbeatError::WrongReply(0x42))));
        assert!(matches!(beat(&dir), Some(Err(HeartbeatError::Io(_)))));
        t.join().expect("parent side");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_dropped_listener_stops_and_removes_its_socket() {
        let dir = temp_dir("drop");
        let listener = HeartbeatListener::start(&dir, Duration::from_secs(60)).expect("listen");
        assert!(socket_path(&dir).exists());
        let started = Instant::now();
        drop(listener);
        assert!(!socket_path(&dir).exists());
        assert!(started.elapsed() < Duration::from_secs(1));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
