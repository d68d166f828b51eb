//! The console hub of a debug-mode enclave: keeps the last output in a bounded buffer (the last
//! [`RETAINED_BYTES`], written to the run directory's `console.log` when the enclave ends; the
//! last [`HISTORY_BYTES`] of it are replayed to a client that attaches late) and copies new
//! output to every attached client. A slow client is dropped after a send timeout so the
//! program never waits on it for long.

use std::collections::VecDeque;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::Mutex;
use std::time::Duration;

use crate::kernel::console::{ConsoleSink, Stream};

/// Bytes of history replayed to a client that attaches late.
pub const HISTORY_BYTES: usize = 64 << 10;
/// Bytes of output kept for the log that outlives the enclave.
pub const RETAINED_BYTES: usize = crate::records::CONSOLE_LOG_BYTES;
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
        let skip = g.history.len().saturating_sub(HISTORY_BYTES);
        let replay: Vec<u8> = g.history.range(skip..).copied().collect();
        if client.write_all(&replay).is_err() {
            return !g.closed;
        }
        if g.closed {
            return false;
        }
        g.clients.push(client);
        true
    }

    /// The retained output (at most [`RETAINED_BYTES`], the newest).
    pub fn snapshot(&self) -> Vec<u8> {
        self.inner
            .lock()
            .map(|g| g.history.iter().copied().collect())
            .unwrap_or_default()
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
        let keep = data.len().min(RETAINED_BYTES);
        let over = (g.history.len() + keep).saturating_sub(RETAINED_BYTES);
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

    #[test]
    fn retains_the_newest_bytes_for_the_log() {
        let hub = ConsoleHub::default();
        hub.write(Stream::Stdout, b"old");
        hub.write(Stream::Stdout, &vec![b'b'; RETAINED_BYTES]);
        hub.write(Stream::Stdout, b"end");
        let kept = hub.snapshot();
        assert_eq!(kept.len(), RETAINED_BYTES);
        assert!(kept.ends_with(b"bend"));
        assert!(!kept.starts_with(b"old"));
    }
}
