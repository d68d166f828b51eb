//! The key service's TCP server: one thread per connection (at most [`MAX_CONNECTIONS`]; more
//! are answered with one error line and closed), an idle read timeout so a stuck client
//! cannot hold a thread, and JSON-lines requests answered in order. Bad input never ends the
//! server: malformed JSON or an over-long line gets a `ValidationException` line and the
//! connection stays usable.

use std::io::{BufReader, BufWriter};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::protocol::{
    read_line, write_message, ErrorBody, ErrorCode, ErrorReply, Line, Request, MAX_LINE,
};
use super::service::Service;

/// Most connections served at once.
pub const MAX_CONNECTIONS: usize = 64;
/// A connection idle this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// A bound server.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    service: Arc<Service>,
    active: Arc<AtomicUsize>,
    max_connections: usize,
    idle_timeout: Duration,
}

struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Server {
    /// Binds `addr` (port 0 picks a free port).
    pub fn bind(addr: &str, service: Arc<Service>) -> std::io::Result<Self> {
        Ok(Self {
            listener: TcpListener::bind(addr)?,
            service,
            active: Arc::new(AtomicUsize::new(0)),
            max_connections: MAX_CONNECTIONS,
            idle_timeout: IDLE_TIMEOUT,
        })
    }

    /// Changes the connection limit.
    #[must_use]
    pub fn with_max_connections(mut self, n: usize) -> Self {
        self.max_connections = n;
        self
    }

    /// Changes the idle timeout.
    #[must_use]
    pub fn with_idle_timeout(mut self, t: Duration) -> Self {
        self.idle_timeout = t;
        self
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accepts connections forever.
    pub fn serve(self) {
        for conn in self.listener.incoming() {
            let stream = match conn {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            };
            let peer = stream
                .peer_addr()
                .map_or_else(|_| "unknown".to_owned(), |a| a.to_string());
            if self.active.fetch_add(1, Ordering::SeqCst) >= self.max_connections {
                self.active.fetch_sub(1, Ordering::SeqCst);
                tracing::warn!(
                    peer,
                    "connection refused: {} connections open",
                    self.max_connections
                );
                let mut s = stream;
                let _ = write_message(
                    &mut s,
                    &ErrorReply {
                        error: ErrorBody::new(
                            ErrorCode::InternalError,
                            format!(
                                "the key service serves at most {} connections at once: retry later",
                                self.max_connections
                            ),
                        ),
                    },
                );
                continue;
            }
            let slot = Slot(Arc::clone(&self.active));
            let service = Arc::clone(&self.service);
            let timeout = self.idle_timeout;
            let spawned = std::thread::Builder::new()
                .name("kms-conn".into())
                .spawn(move || {
                    let _slot = slot;
                    if let Err(e) = serve_connection(&service, stream, &peer, timeout) {
                        tracing::debug!(peer, "connection ended: {e}");
                    }
                });
            if let Err(e) = spawned {
                tracing::error!("cannot start a connection thread: {e}");
            }
        }
    }

    /// Serves on a background thread; returns the bound address.
    pub fn spawn(self) -> std::io::Result<SocketAddr> {
        let addr = self.local_addr()?;
        std::thread::Builder::new()
            .name("kms-accept".into())
            .spawn(move || self.serve())?;
        Ok(addr)
    }
}

/// Serves requests on one connection until EOF, timeout or an I/O error.
pub fn serve_connection(
    service: &Service,
    stream: TcpStream,
    peer: &str,
    idle_timeout: Duration,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(idle_timeout))?;
    stream.set_write_timeout(Some(idle_timeout))?;
    let _ = stream.set_nodelay(true);
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = BufWriter::new(stream);
    tracing::debug!(peer, "connection");
    loop {
        let reply = match read_line(&mut reader)? {
            Line::Eof => return Ok(()),
            Line::TooLong(n) => service.refuse_unparsed(
                &ErrorBody::new(
                    ErrorCode::ValidationException,
                    format!("request line is {n} bytes, over the limit of {MAX_LINE}"),
                ),
                peer,
            ),
            Line::Complete(line) => match serde_json::from_slice::<Request>(&line) {
                Ok(request) => service.handle(&request, peer),
                Err(e) => service.refuse_unparsed(
                    &ErrorBody::new(
                        ErrorCode::ValidationException,
                        format!("request is not a valid JSON request line: {e}"),
                    ),
                    peer,
                ),
            },
        };
        write_message(&mut writer, &reply)?;
    }
}
