//! The console hub of a debug-mode enclave: keeps the last output in a bounded buffer and copies
//! new output to every attached client. A slow client is dropped after a send timeout so the
//! program never waits on it for long.

use std::collections::VecDeque;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::Mutex;
use std::time::Duration;

use crate::kernel::console::{ConsoleSink, Stream};

/// Bytes of history replayed to a client that attaches late.
pub const HISTORY_BYTES: usize = 64 << 10;
/// How long a console write may block on one client before it is dropped.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Default)]
struct Inner {
    history: VecDeque<u8>,
    clients: Vec<UnixStream>,
    closed: bool,
}

/// Console output fan-out.
#[derive(Default)]
pub struct ConsoleHub {
    inner: Mutex<Inner>,
}

impl ConsoleHub {
    /// Attaches a client: replays the history, then streams. Returns false once closed.
    pub fn attach(&self, mut client: UnixStream) -> bool {
        let _ = client.set_write_timeout(Some(SEND_TIMEOUT));
        let Ok(mut g) = self.inner.lock() else {
            return false;
        };
        let (a, b) = g.history.as_slices();
        if client
            .write_all(a)
            .and_then(|_| client.write_all(b))
            .is_err()
        {
            return !g.closed;
        }
        if g.closed {
            return false;
        }
        g.clients.push(client);
        true
    }

    /// Ends every stream (the program has ended).
    pub fn close(&self) {
        if let Ok(mut g) = self.inner.lock() {
            g.closed = true;
            for c in g.clients.drain(..) {
                let _ = c.shutdown(std::net::Shutdown::Both);
            }
        }
    }
}

impl ConsoleSink for ConsoleHub {
    fn write(&self, _stream: Stream, data: &[u8]) {
        let Ok(mut g) = self.inner.lock() else {
            return;
        };
        let keep = data.len().min(HISTORY_BYTES);
        let over = (g.history.len() + keep).saturating_sub(HISTORY_BYTES);
        g.history.drain(..over);
        g.history.extend(&data[data.len() - keep..]);
        g.clients.retain_mut(|c| c.write_all(data).is_ok());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn replays_bounded_history_and_streams() {
        let hub = ConsoleHub::default();
        hub.write(Stream::Stdout, &vec![b'a'; HISTORY_BYTES]);
        hub.write(Stream::Stdout, b"tail");
        let (a, mut b) = UnixStream::pair().unwrap();
        let reader = std::thread::spawn(move || {
            let mut v = Vec::new();
            b.read_to_end(&mut v).unwrap();
            v
        });
        assert!(hub.attach(a));
        hub.write(Stream::Stderr, b"live");
        hub.close();
        let got = reader.join().unwrap();
        assert_eq!(got.len(), HISTORY_BYTES + 4);
        assert!(got.ends_with(b"taillive"));
        let (c, _d) = UnixStream::pair().unwrap();
        assert!(!hub.attach(c), "attach after close is refused");
    }
}
