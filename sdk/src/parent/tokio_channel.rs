//! Async (tokio) versions of the parent-side channels.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

use super::channel::bind_listener;
use super::error::SdkError;
use super::handle::EnclaveHandle;
use super::launch::Enclaves;

/// How long the handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest answer line accepted.
const MAX_ANSWER: usize = 64;

/// Connects to the hybrid vsock socket `vsock_sock` and does the handshake for `port`.
pub async fn connect(vsock_sock: &Path, port: u32) -> Result<UnixStream, SdkError> {
    let mut s = UnixStream::connect(vsock_sock)
        .await
        .map_err(|source| SdkError::Connect {
            path: vsock_sock.to_owned(),
            source,
        })?;
    s.write_all(format!("CONNECT {port}\n").as_bytes()).await?;
    let read_answer = async {
        let mut answer = Vec::with_capacity(MAX_ANSWER);
        let mut byte = [0u8; 1];
        loop {
            match s.read(&mut byte).await {
                Ok(0) => break,
                Ok(_) if byte[0] == b'\n' => break,
                Ok(_) if answer.len() < MAX_ANSWER => answer.push(byte[0]),
                Ok(_) => break,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                    answer.clear();
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(answer)
    };
    let answer = tokio::time::timeout(HANDSHAKE_TIMEOUT, read_answer)
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
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
    Ok(s)
}

/// An async parent listener at `<dir>/vsock.sock_<port>`; removes its socket file on drop.
#[derive(Debug)]
pub struct AsyncListener {
    inner: UnixListener,
    path: PathBuf,
}

impl AsyncListener {
    /// Binds `<dir>/vsock.sock_<port>` (replacing a stale socket file). Needs a tokio runtime.
    pub fn bind(dir: &Path, port: u32) -> Result<Self, SdkError> {
        let (std_listener, path) = bind_listener(dir, port)?;
        let to_tokio = || -> std::io::Result<UnixListener> {
            std_listener.set_nonblocking(true)?;
            UnixListener::from_std(std_listener)
        };
        let inner = to_tokio().map_err(|source| SdkError::Bind {
            path: path.clone(),
            source,
        })?;
        Ok(Self { inner, path })
    }

    /// Waits for the next enclave connection.
    pub async fn accept(&self) -> Result<UnixStream, SdkError> {
        Ok(self.inner.accept().await?.0)
    }

    /// The socket file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for AsyncListener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl EnclaveHandle {
    /// Async [`EnclaveHandle::connect`].
    pub async fn connect_async(&self, port: u32) -> Result<UnixStream, SdkError> {
        connect(&self.vsock_socket(), port)
            .await
            .map_err(|e| match e {
                SdkError::PortNotListening { port, .. } => SdkError::PortNotListening {
                    enclave_id: self.id().to_owned(),
                    port,
                },
                other => other,
            })
    }

    /// Async [`EnclaveHandle::listen`].
    pub fn listen_async(&self, port: u32) -> Result<AsyncListener, SdkError> {
        AsyncListener::bind(self.run_dir(), port)
    }
}

impl Enclaves {
    /// Async [`Enclaves::listen`] (parent-wide listener).
    pub fn listen_async(&self, port: u32) -> Result<AsyncListener, SdkError> {
        AsyncListener::bind(&self.run_root(), port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn async_handshake_and_listener() {
        let dir = std::env::temp_dir().join(format!("sdk-async-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let vsock = dir.join("vsock.sock");
        let _ = std::fs::remove_file(&vsock);
        let server = UnixListener::bind(&vsock).expect("bind");
        tokio::spawn(async move {
            let (mut s, _) = server.accept().await.expect("accept");
            let mut line = [0u8; 10];
            s.read_exact(&mut line).await.expect("read");
            assert_eq!(&line, b"CONNECT 9\n");
            s.write_all(b"OK 9\nhi").await.expect("write");
        });
        let mut s = connect(&vsock, 9).await.expect("connect");
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).await.expect("read");
        assert_eq!(rest, b"hi");

        let l = AsyncListener::bind(&dir, 77).expect("listen");
        let path = l.path().to_owned();
        let c = tokio::spawn(async move { UnixStream::connect(path).await.expect("connect") });
        l.accept().await.expect("accept");
        c.await.expect("join");
        let path = l.path().to_owned();
        drop(l);
        assert!(!path.exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
