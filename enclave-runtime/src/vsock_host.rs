//! The parent side of the enclave's vsock: serves `<run dir>/vsock.sock` with Firecracker's
//! hybrid-vsock handshake. A parent process connects, sends `CONNECT <port>\n` and, if the
//! program listens on that port, reads `OK <port>\n` and then owns a byte stream to the
//! program's accepted socket. Unknown ports, malformed or slow handshakes and full backlogs
//! get the connection closed. The host never opens `AF_VSOCK`.

use std::io::Read;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::kernel::vsock::VsockHub;
use crate::pool::HostCpus;

/// Name of the hybrid vsock socket in a run directory.
pub const VSOCK_SOCKET: &str = "vsock.sock";
/// Longest handshake line accepted.
const MAX_LINE: usize = 64;
/// Time a parent has to send its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Handshakes served at once.
const MAX_HANDSHAKES: usize = 64;

/// Parses `CONNECT <port>\n`.
pub fn parse_connect(line: &[u8]) -> Option<u32> {
    let text = std::str::from_utf8(line).ok()?;
    let rest = text.strip_prefix("CONNECT ")?.strip_suffix('\n')?;
    if rest.is_empty() || rest.len() > 10 || !rest.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    rest.parse().ok()
}

/// Reads one handshake line (at most [`MAX_LINE`] bytes, ending in `\n`) from `s` and parses
/// it: the whole handshake parser, over any byte source (the fuzz target feeds it bytes).
pub fn read_handshake(s: &mut impl Read) -> Option<u32> {
    read_line(s).as_deref().and_then(parse_connect)
}

fn read_line(s: &mut impl Read) -> Option<Vec<u8>> {
    let mut line = Vec::with_capacity(MAX_LINE);
    let mut b = [0u8; 1];
    while line.len() < MAX_LINE {
        match s.read(&mut b) {
            Ok(1) => {
                line.push(b[0]);
                if b[0] == b'\n' {
                    return Some(line);
                }
            }
            _ => return None,
        }
    }
    None
}

fn handshake(mut s: UnixStream, hub: &VsockHub, next_port: &AtomicU32) {
    let _ = s.set_read_timeout(Some(HANDSHAKE_TIMEOUT));
    let Some(port) = read_handshake(&mut s) else {
        return;
    };
    let Some(queue) = hub.listener(port) else {
        return;
    };
    let _ = s.set_read_timeout(None);
    let peer_port = next_port.fetch_add(1, Ordering::Relaxed);
    // `OK` only once the connection sits in the listener's backlog (Firecracker answers only
    // after the guest accepted the request); a full backlog or a closed listener gets the
    // connection closed without a word.
    if !queue.push(s, peer_port, format!("OK {port}\n").as_bytes()) {
        tracing::debug!(
            port,
            "vsock connection refused: backlog full or listener closed"
        );
    }
}

/// Serves the hybrid vsock socket at `dir/vsock.sock` for `hub` on a background thread that
/// runs on `host_cpus`.
pub fn serve(dir: &Path, hub: Arc<VsockHub>, host_cpus: HostCpus) -> std::io::Result<()> {
    let path = dir.join(VSOCK_SOCKET);
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    let active = Arc::new(AtomicUsize::new(0));
    let next_port = Arc::new(AtomicU32::new(1024));
    std::thread::Builder::new()
        .name("vsock-host".into())
        .spawn(move || {
            host_cpus.enter();
            crate::seccomp::enter(crate::seccomp::ThreadKind::Vsock);
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                if active.fetch_add(1, Ordering::AcqRel) >= MAX_HANDSHAKES {
                    active.fetch_sub(1, Ordering::AcqRel);
                    continue;
                }
                let (hub, active2, next) = (hub.clone(), active.clone(), next_port.clone());
                let spawned = std::thread::Builder::new()
                    .name("vsock-handshake".into())
                    .spawn(move || {
                        handshake(conn, &hub, &next);
                        active2.fetch_sub(1, Ordering::AcqRel);
                    });
                if spawned.is_err() {
                    active.fetch_sub(1, Ordering::AcqRel);
                }
            }
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_lines() {
        assert_eq!(parse_connect(b"CONNECT 5000\n"), Some(5000));
        assert_eq!(parse_connect(b"CONNECT 4294967295\n"), Some(u32::MAX));
        for bad in [
            &b"CONNECT 4294967296\n"[..],
            b"CONNECT\n",
            b"CONNECT -1\n",
            b"connect 1\n",
            b"CONNECT 1",
            b"CONNECT 1 2\n",
            b"CONNECT +1\n",
        ] {
            assert_eq!(parse_connect(bad), None, "{bad:?}");
        }
    }

    /// A fresh directory under the system temp dir for one test.
    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("vsock-host-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    /// Connects to `dir/vsock.sock`, asks for `port` and returns everything the VMM sends
    /// before it closes the connection or goes quiet for a moment.
    fn ask(dir: &Path, port: u32) -> (UnixStream, String) {
        let mut s = UnixStream::connect(dir.join(VSOCK_SOCKET)).expect("connect vsock.sock");
        std::io::Write::write_all(&mut s, format!("CONNECT {port}\n").as_bytes()).expect("send");
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .expect("timeout");
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        (s, String::from_utf8_lossy(&got).into_owned())
    }

    #[test]
    fn ok_only_once_the_connection_is_in_the_backlog() {
        use crate::kernel::socket::{Socket, VsockAddr, VMADDR_CID_ANY};
        use crate::kernel::vsock::VsockSocket;
        use std::sync::atomic::AtomicBool;

        let dir = temp_dir("backlog");
        let hub = Arc::new(VsockHub::new(16, vec![]));
        serve(&dir, hub.clone(), HostCpus::default()).expect("serve");
        let listener = VsockSocket::new(hub, 0, Arc::new(AtomicBool::new(false)));
        listener
            .bind(VsockAddr {
                cid: VMADDR_CID_ANY,
                port: 5000,
            })
            .expect("bind");
        listener.listen(1).expect("listen");

        // The first connection fills the backlog of one: OK, and it stays open.
        let (_first, reply) = ask(&dir, 5000);
        assert_eq!(reply, "OK 5000\n");
        // The backlog is full: no OK, just the end of the connection.
        let (_second, reply) = ask(&dir, 5000);
        assert_eq!(reply, "", "a refused connection got an answer");
        // Once the program accepts, there is room again.
        let (_accepted, peer) = listener.accept(true).expect("accept the first");
        assert_eq!(peer.cid, crate::kernel::socket::PARENT_CID);
        let (_third, reply) = ask(&dir, 5000);
        assert_eq!(reply, "OK 5000\n");
        // Nobody listens on 5001; a closed listener refuses too.
        assert_eq!(ask(&dir, 5001).1, "");
        drop(listener);
        assert_eq!(ask(&dir, 5000).1, "");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn handshake_reads_one_bounded_line() {
        assert_eq!(read_handshake(&mut &b"CONNECT 7\ndata after"[..]), Some(7));
        assert_eq!(read_handshake(&mut &b"CONNECT 7"[..]), None, "no newline");
        let long = format!("CONNECT {}7\n", "0".repeat(MAX_LINE));
        assert_eq!(read_handshake(&mut long.as_bytes()), None, "over MAX_LINE");
        assert_eq!(read_handshake(&mut &b""[..]), None);
    }
}
