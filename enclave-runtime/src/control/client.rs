//! The client side of the control socket (used by the CLI and the SDK).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::protocol::{EnclaveInfo, Reply, Request};
use crate::vcpu::Outcome;

/// Name of the control socket inside a run directory.
pub const CONTROL_SOCKET: &str = "control.sock";

/// Errors talking to an enclave's VMM.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The VMM does not answer (not running any more).
    #[error("cannot reach the enclave's VMM at {path}: is the enclave still running? (`enclave describe-enclaves`)")]
    Connect {
        /// Socket path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// I/O error mid-conversation.
    #[error("lost the connection to the enclave's VMM")]
    Io(#[source] std::io::Error),
    /// The VMM answered something we do not understand.
    #[error("unexpected answer from the enclave's VMM: {0}")]
    Protocol(String),
    /// The VMM refused the request.
    #[error("{0}")]
    Refused(String),
}

/// A connection to one enclave's control socket.
pub struct Control {
    path: PathBuf,
}

impl Control {
    /// The control socket of the enclave whose run directory is `run_dir`.
    pub fn new(run_dir: &Path) -> Self {
        Self {
            path: run_dir.join(CONTROL_SOCKET),
        }
    }

    fn request(
        &self,
        req: &Request,
        timeout: Option<Duration>,
    ) -> Result<(UnixStream, String), ClientError> {
        let mut s = UnixStream::connect(&self.path).map_err(|source| ClientError::Connect {
            path: self.path.clone(),
            source,
        })?;
        s.set_read_timeout(timeout).map_err(ClientError::Io)?;
        let mut line = serde_json::to_vec(req).map_err(|e| ClientError::Protocol(e.to_string()))?;
        line.push(b'\n');
        s.write_all(&line).map_err(ClientError::Io)?;
        let mut answer = Vec::new();
        let mut byte = [0u8; 1];
        // Read exactly one line byte by byte so that a console stream after it stays unread.
        loop {
            match s.read(&mut byte) {
                Ok(0) => break,
                Ok(_) if byte[0] == b'\n' => break,
                Ok(_) => answer.push(byte[0]),
                Err(e) => return Err(ClientError::Io(e)),
            }
            if answer.len() > 1 << 20 {
                return Err(ClientError::Protocol("answer too long".into()));
            }
        }
        let text = String::from_utf8(answer).map_err(|e| ClientError::Protocol(e.to_string()))?;
        Ok((s, text))
    }

    fn reply(
        &self,
        req: &Request,
        timeout: Option<Duration>,
    ) -> Result<(UnixStream, Reply), ClientError> {
        let (s, text) = self.request(req, timeout)?;
        let r: Reply =
            serde_json::from_str(&text).map_err(|_| ClientError::Protocol(text.clone()))?;
        if let Reply::Error(e) = r {
            return Err(ClientError::Refused(e));
        }
        Ok((s, r))
    }

    /// Describes the enclave.
    pub fn describe(&self) -> Result<EnclaveInfo, ClientError> {
        let (_, text) = self.request(&Request::Describe, Some(Duration::from_secs(5)))?;
        serde_json::from_str(&text).map_err(|_| ClientError::Protocol(text))
    }

    /// Asks the VMM to terminate the enclave (returns once accepted).
    pub fn terminate(&self) -> Result<(), ClientError> {
        self.reply(&Request::Terminate, Some(Duration::from_secs(5)))
            .map(|_| ())
    }

    /// Opens a `wait` request; [`Waiter::wait`] then blocks until the program ends.
    pub fn waiter(&self) -> Result<Waiter, ClientError> {
        let mut s = UnixStream::connect(&self.path).map_err(|source| ClientError::Connect {
            path: self.path.clone(),
            source,
        })?;
        let mut line =
            serde_json::to_vec(&Request::Wait).map_err(|e| ClientError::Protocol(e.to_string()))?;
        line.push(b'\n');
        s.write_all(&line).map_err(ClientError::Io)?;
        Ok(Waiter { stream: s })
    }

    /// Attaches to the console; returns the stream of console bytes.
    pub fn console(&self) -> Result<UnixStream, ClientError> {
        let (s, r) = self.reply(&Request::Console, Some(Duration::from_secs(5)))?;
        if r != Reply::Ok {
            return Err(ClientError::Protocol(format!("{r:?}")));
        }
        s.set_read_timeout(None).map_err(ClientError::Io)?;
        Ok(s)
    }
}

/// A pending `wait` request.
pub struct Waiter {
    stream: UnixStream,
}

impl Waiter {
    /// Blocks until the program ends and returns its outcome.
    pub fn wait(self) -> Result<Outcome, ClientError> {
        let mut line = String::new();
        BufReader::new(self.stream)
            .read_line(&mut line)
            .map_err(ClientError::Io)?;
        match serde_json::from_str::<Reply>(line.trim()) {
            Ok(Reply::Ended(o)) => Ok(o),
            Ok(other) => Err(ClientError::Protocol(format!("{other:?}"))),
            Err(_) if line.is_empty() => Err(ClientError::Protocol(
                "the VMM ended without reporting an outcome".into(),
            )),
            Err(_) => Err(ClientError::Protocol(line)),
        }
    }
}
