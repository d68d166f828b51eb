//! Moving bytes both ways between the enclave's stream and the remote's, one thread per
//! direction with one fixed buffer each: a slow reader blocks the writer (back-pressure, no
//! queue grows). End of stream on one side shuts down writing on the other (half-close); an
//! error on either direction shuts both sockets down so the other direction ends too.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;

/// Bytes buffered per direction.
pub const BUFFER: usize = 64 * 1024;

/// What happened on one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    /// Bytes from the enclave to the remote.
    pub to_remote: u64,
    /// Bytes from the remote to the enclave.
    pub from_remote: u64,
    /// Why it ended: `both sides closed`, or the first error.
    pub reason: String,
}

/// A stream that can be shut down, by shared reference.
trait Half {
    fn shut(&self, how: Shutdown) -> std::io::Result<()>;
}

impl Half for UnixStream {
    fn shut(&self, how: Shutdown) -> std::io::Result<()> {
        self.shutdown(how)
    }
}

impl Half for TcpStream {
    fn shut(&self, how: Shutdown) -> std::io::Result<()> {
        self.shutdown(how)
    }
}

/// Copies `src` to `dst` until end of stream, then shuts `dst` for writing. Returns the bytes
/// copied and, on failure, which side failed and how.
fn copy<S, D>(src: &S, dst: &D, names: (&str, &str)) -> (u64, Result<(), String>)
where
    S: Half,
    D: Half,
    for<'a> &'a S: Read,
    for<'a> &'a D: Write,
{
    let mut buf = vec![0u8; BUFFER];
    let mut total = 0u64;
    loop {
        let n = match (&mut &*src).read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return (total, Err(format!("reading from the {}: {e}", names.0))),
        };
        if let Err(e) = (&mut &*dst).write_all(&buf[..n]) {
            return (total, Err(format!("writing to the {}: {e}", names.1)));
        }
        total = total.saturating_add(u64::try_from(n).unwrap_or(u64::MAX));
    }
    match dst.shut(Shutdown::Write) {
        Err(e) if e.kind() != ErrorKind::NotConnected => {
            (total, Err(format!("half-closing the {}: {e}", names.1)))
        }
        _ => (total, Ok(())),
    }
}

/// Forwards between `enclave` and `remote` until both directions end.
pub fn forward(enclave: &UnixStream, remote: &TcpStream) -> Transfer {
    let stop_both = || {
        let _ = enclave.shutdown(Shutdown::Both);
        let _ = remote.shutdown(Shutdown::Both);
    };
    std::thread::scope(|s| {
        let down = std::thread::Builder::new()
            .name("proxy-down".into())
            .spawn_scoped(s, || {
                let r = copy(remote, enclave, ("remote", "enclave"));
                if r.1.is_err() {
                    stop_both();
                }
                r
            });
        let Ok(down) = down else {
            stop_both();
            return Transfer {
                to_remote: 0,
                from_remote: 0,
                reason: "cannot start a forwarding thread".into(),
            };
        };
        let (to_remote, up) = copy(enclave, remote, ("enclave", "remote"));
        if up.is_err() {
            stop_both();
        }
        let (from_remote, down) = down
            .join()
            .unwrap_or_else(|_| (0, Err("the forwarding thread panicked".into())));
        let reason = match (up, down) {
            (Ok(()), Ok(())) => "both sides closed".to_owned(),
            (Err(e), _) | (Ok(()), Err(e)) => e,
        };
        Transfer {
            to_remote,
            from_remote,
            reason,
        }
    })
}
