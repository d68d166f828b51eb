//! Hybrid vsock over Unix sockets (Firecracker's convention): `CONNECT <port>\n` → `OK <port>\n`
//! on the enclave's `vsock.sock`; parent listeners at `vsock.sock_<port>`.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::error::SdkError;

pub use enclave_runtime::vsock_host::VSOCK_SOCKET;

/// How long the handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest answer line accepted.
const MAX_ANSWER: usize = 64;

/// Performs the client side of the handshake on a fresh connection to `vsock.sock`: sends
/// `CONNECT <port>\n` and reads exactly the answer line (nothing after it), which must be
/// `OK <port>\n`. A connection closed instead is [`SdkError::PortNotListening`] (with an empty
/// enclave id, which the callers fill in).
pub fn handshake(stream: &mut UnixStream, port: u32) -> Result<(), SdkError> {
    stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
    stream.write_all(format!("CONNECT {port}\n").as_bytes())?;
    let mut answer = Vec::with_capacity(MAX_ANSWER);
    let mut byte = [0u8; 1];
    loop {
        match stream.read(&mut byte) {
            Ok(0) => break,
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) if answer.len() < MAX_ANSWER => answer.push(byte[0]),
            Ok(_) => break,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            // A reset during the handshake is the VMM refusing the port too.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                answer.clear();
                break;
            }
            Err(e) => return Err(e.into()),
        }
    }
    if answer.is_empty() {
        return Err(SdkError::PortNotListening {
            enclave_id: String::new(),
            port,
        });
    }
    if answer != format!("OK {port}").as_bytes() {
        return Err(SdkError::Handshake {
            port,
            answer: String::from_utf8_lossy(&answer).into_owned(),
        });
    }
    stream.set_read_timeout(None)?;
    Ok(())
}

/// Connects to the hybrid vsock socket `vsock_sock` and does the handshake for `port`.
pub fn connect(vsock_sock: &Path, port: u32) -> Result<UnixStream, SdkError> {
    let mut s = UnixStream::connect(vsock_sock).map_err(|source| SdkError::Connect {
        path: vsock_sock.to_owned(),
        source,
    })?;
    handshake(&mut s, port)?;
    Ok(s)
}

/// `<dir>/vsock.sock_<port>`.
pub fn listener_path(dir: &Path, port: u32) -> PathBuf {
    dir.join(format!("{VSOCK_SOCKET}_{port}"))
}

/// Binds `<dir>/vsock.sock_<port>`, creating `dir` and replacing a stale socket file.
pub(crate) fn bind_listener(dir: &Path, port: u32) -> Result<(UnixListener, PathBuf), SdkError> {
    let path = listener_path(dir, port);
    let bind = || -> std::io::Result<UnixListener> {
        std::fs::create_dir_all(dir)?;
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        UnixListener::bind(&path)
    };
    let inner = bind().map_err(|source| SdkError::Bind {
        path: path.clone(),
        source,
    })?;
    Ok((inner, path))
}

/// A parent listener for enclave connections to CID 3 on one port. Each accepted stream is
/// one enclave socket's connection. The socket file is removed when the listener is dropped.
#[derive(Debug)]
pub struct Listener {
    inner: UnixListener,
    path: PathBuf,
    port: u32,
}

impl Listener {
    /// Binds `<dir>/vsock.sock_<port>` (replacing a stale socket file).
    pub fn bind(dir: &Path, port: u32) -> Result<Self, SdkError> {
        let (inner, path) = bind_listener(dir, port)?;
        Ok(Self { inner, path, port })
    }

    /// Waits for the next enclave connection.
    pub fn accept(&self) -> Result<UnixStream, SdkError> {
        Ok(self.inner.accept()?.0)
    }

    /// Iterates over incoming connections.
    pub fn incoming(&self) -> impl Iterator<Item = Result<UnixStream, SdkError>> + '_ {
        std::iter::from_fn(move || Some(self.accept()))
    }

    /// The socket file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The vsock port.
    pub fn port(&self) -> u32 {
        self.port
    }

    /// The underlying Unix listener (e.g. for non-blocking use).
    pub fn as_unix(&self) -> &UnixListener {
        &self.inner
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake VMM side: answers one handshake with `reply` (or closes when `None`).
    fn fake(reply: Option<&'static str>) -> (tempdir::Dir, PathBuf) {
        let dir = tempdir::Dir::new();
        let path = dir.0.join(VSOCK_SOCKET);
        let l = UnixListener::bind(&path).expect("bind");
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().expect("accept");
            let mut line = [0u8; 13];
            s.read_exact(&mut line).expect("read");
            assert_eq!(&line, b"CONNECT 5000\n");
            if let Some(r) = reply {
                s.write_all(r.as_bytes()).expect("write");
                s.write_all(b"payload").expect("write");
            }
        });
        (dir, path)
    }

    mod tempdir {
        pub struct Dir(pub std::path::PathBuf);
        impl Dir {
            pub fn new() -> Self {
                static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
                let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let p = std::env::temp_dir().join(format!("sdk-test-{}-{n}", std::process::id()));
                std::fs::create_dir_all(&p).expect("mkdir");
                Self(p)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    #[test]
    fn handshake_ok_leaves_the_stream_unread() {
        let (_d, path) = fake(Some("OK 5000\n"));
        let mut s = connect(&path, 5000).expect("connect");
        let mut rest = String::new();
        s.read_to_string(&mut rest).expect("read");
        assert_eq!(rest, "payload");
    }

    #[test]
    fn closed_handshake_is_port_not_listening() {
        let (_d, path) = fake(None);
        match connect(&path, 5000) {
            Err(SdkError::PortNotListening { port: 5000, .. }) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn wrong_answer_is_reported() {
        let (_d, path) = fake(Some("NO\n"));
        match connect(&path, 5000) {
            Err(SdkError::Handshake { answer, .. }) => assert_eq!(answer, "NO"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn missing_socket_is_a_connect_error() {
        let d = tempdir::Dir::new();
        let err = connect(&d.0.join(VSOCK_SOCKET), 1).expect_err("no socket");
        assert!(matches!(err, SdkError::Connect { .. }), "{err:?}");
    }

    #[test]
    fn listener_removes_its_socket() {
        let d = tempdir::Dir::new();
        let l = Listener::bind(&d.0, 7000).expect("bind");
        let p = l.path().to_owned();
        assert!(p.ends_with("vsock.sock_7000"));
        let _c = UnixStream::connect(&p).expect("connect");
        l.accept().expect("accept");
        drop(l);
        assert!(!p.exists());
    }
}
