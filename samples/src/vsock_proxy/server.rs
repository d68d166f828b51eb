//! The accept loop: each enclave connection gets a worker (at most `num_workers` at once; more
//! are refused), which resolves the remote afresh, checks the result against the allowlist,
//! connects over TCP and forwards. Every connection is logged once when it opens and once when
//! it closes or is refused, with its peer, the remote, the bytes each way and the reason.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::allowlist::{system_resolve, Allowlist, AllowlistError, Resolve};
use super::forward::forward;
use super::socket::ProxySocket;

/// How often the accept loop checks that its socket file is still there.
const CHECK_INTERVAL_MS: i32 = 1000;

/// Errors of starting or running the proxy.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The remote is not allowlisted.
    #[error("refusing to start")]
    NotAllowed(#[source] AllowlistError),
    /// `num_workers` is 0.
    #[error("the worker limit must be at least 1")]
    NoWorkers,
    /// Polling or accepting on the socket failed.
    #[error("cannot accept on {path}")]
    Accept {
        /// The socket.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The socket file was removed or replaced by someone else.
    #[error("{path} was removed or replaced (did the enclave's run directory go away?); stopping")]
    SocketGone {
        /// The socket.
        path: String,
    },
}

/// What the proxy forwards to and how much at once.
pub struct ProxyConfig {
    /// Remote host name or IP.
    pub remote_host: String,
    /// Remote TCP port.
    pub remote_port: u16,
    /// The allowlist the remote is checked against at start and per connection.
    pub allowlist: Allowlist,
    /// Connections served at once; more are refused.
    pub num_workers: usize,
    /// Time allowed for the TCP connect to the remote.
    pub connect_timeout: Duration,
    /// The resolver (the system's by default).
    pub resolve: Arc<Resolve>,
}

impl std::fmt::Debug for ProxyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyConfig")
            .field("remote_host", &self.remote_host)
            .field("remote_port", &self.remote_port)
            .field("allowlist", &self.allowlist)
            .field("num_workers", &self.num_workers)
            .field("connect_timeout", &self.connect_timeout)
            .finish_non_exhaustive()
    }
}

impl ProxyConfig {
    /// A configuration with the defaults (64 workers, 10 s connect timeout, system resolver).
    pub fn new(remote_host: impl Into<String>, remote_port: u16, allowlist: Allowlist) -> Self {
        Self {
            remote_host: remote_host.into(),
            remote_port,
            allowlist,
            num_workers: 64,
            connect_timeout: Duration::from_secs(10),
            resolve: Arc::new(system_resolve),
        }
    }

    /// `host:port` (IPv6 literals bracketed).
    pub fn remote(&self) -> String {
        if self.remote_host.contains(':') && !self.remote_host.starts_with('[') {
            format!("[{}]:{}", self.remote_host, self.remote_port)
        } else {
            format!("{}:{}", self.remote_host, self.remote_port)
        }
    }

    /// The start-up check: the remote must be allowlisted and the limit positive.
    pub fn check(&self) -> Result<(), ProxyError> {
        if self.num_workers == 0 {
            return Err(ProxyError::NoWorkers);
        }
        self.allowlist
            .check(&self.remote_host, self.remote_port, &*self.resolve)
            .map_err(ProxyError::NotAllowed)
    }
}

/// Stops a running [`Proxy::run`] from another thread (e.g. a signal handler thread).
#[derive(Debug, Clone)]
pub struct Stopper(Arc<UnixStream>);

impl Stopper {
    /// Asks the accept loop to return; connections in flight are left to their workers.
    pub fn stop(&self) {
        let _ = (&*self.0).write_all(b"x");
    }
}

/// A proxy bound to its socket.
#[derive(Debug)]
pub struct Proxy {
    socket: ProxySocket,
    config: Arc<ProxyConfig>,
    wake: UnixStream,
    stopper: Stopper,
    active: Arc<AtomicUsize>,
}

/// Counters of a finished run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunStats {
    /// Connections accepted and handed to a worker.
    pub served: u64,
    /// Connections refused at the worker limit.
    pub refused_at_limit: u64,
}

/// The peer process of an accepted connection (`SO_PEERCRED`), e.g. the enclave's VMM.
fn peer_pid(s: &UnixStream) -> Option<i32> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = libc::socklen_t::try_from(std::mem::size_of::<libc::ucred>()).ok()?;
    // SAFETY: `cred` and `len` are live locals of the right sizes for SO_PEERCRED, and the fd
    // belongs to `s`, which outlives the call.
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            std::ptr::addr_of_mut!(cred).cast(),
            &mut len,
        )
    };
    (rc == 0).then_some(cred.pid)
}

/// Decrements the active count when a worker ends, however it ends.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Proxy {
    /// Checks `config` (see [`ProxyConfig::check`]) and takes `socket`.
    pub fn new(socket: ProxySocket, config: ProxyConfig) -> Result<Self, ProxyError> {
        config.check()?;
        let (wake, tx) = UnixStream::pair().map_err(|source| ProxyError::Accept {
            path: socket.path().display().to_string(),
            source,
        })?;
        Ok(Self {
            socket,
            config: Arc::new(config),
            wake,
            stopper: Stopper(Arc::new(tx)),
            active: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// The socket this proxy listens on.
    pub fn socket(&self) -> &ProxySocket {
        &self.socket
    }

    /// A handle that stops [`Proxy::run`].
    pub fn stopper(&self) -> Stopper {
        self.stopper.clone()
    }

    /// Connections being served now.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }

    fn accept_error(&self, source: std::io::Error) -> ProxyError {
        ProxyError::Accept {
            path: self.socket.path().display().to_string(),
            source,
        }
    }

    /// Accepts until stopped (or until the socket file disappears). The socket file is
    /// removed when the proxy is dropped.
    pub fn run(&self) -> Result<RunStats, ProxyError> {
        let listener = self.socket.listener();
        listener
            .set_nonblocking(true)
            .map_err(|e| self.accept_error(e))?;
        let mut stats = RunStats {
            served: 0,
            refused_at_limit: 0,
        };
        let next_id = AtomicU64::new(1);
        loop {
            let mut fds = [
                libc::pollfd {
                    fd: listener.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: self.wake.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            // SAFETY: `fds` is a live array of two pollfd whose descriptors are owned by
            // `self` for the whole call; the length passed is the array's.
            let rc = unsafe { libc::poll(fds.as_mut_ptr(), 2, CHECK_INTERVAL_MS) };
            if rc < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == ErrorKind::Interrupted {
                    continue;
                }
                return Err(self.accept_error(e));
            }
            if fds[1].revents != 0 {
                let mut b = [0u8; 16];
                let _ = (&self.wake).read(&mut b);
                return Ok(stats);
            }
            if !self.socket.still_ours() {
                return Err(ProxyError::SocketGone {
                    path: self.socket.path().display().to_string(),
                });
            }
            if fds[0].revents == 0 {
                continue;
            }
            let conn = match listener.accept() {
                Ok((c, _)) => c,
                Err(e) if e.kind() == ErrorKind::WouldBlock => continue,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Out of descriptors and the like: log, back off, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
            };
            let id = next_id.fetch_add(1, Ordering::Relaxed);
            if self.dispatch(conn, id) {
                stats.served += 1;
            } else {
                stats.refused_at_limit += 1;
            }
        }
    }

    /// Hands `conn` to a worker; false when refused at the limit (or no thread could start).
    fn dispatch(&self, conn: UnixStream, id: u64) -> bool {
        let peer = peer_pid(&conn).unwrap_or(0);
        let remote = self.config.remote();
        let limit = self.config.num_workers;
        if self.active.fetch_add(1, Ordering::AcqRel) >= limit {
            self.active.fetch_sub(1, Ordering::AcqRel);
            tracing::warn!(
                conn = id,
                peer_pid = peer,
                remote = %remote,
                to_remote = 0,
                from_remote = 0,
                reason = %format!("worker limit reached ({limit} connections at once)"),
                "connection refused"
            );
            return false;
        }
        let slot = Slot(self.active.clone());
        let config = self.config.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("proxy-conn-{id}"))
            .spawn(move || {
                let _slot = slot;
                serve(&conn, &config, id, peer);
            });
        if let Err(e) = spawned {
            tracing::warn!(
                conn = id,
                peer_pid = peer,
                remote = %remote,
                reason = %format!("cannot start a worker thread: {e}"),
                "connection refused"
            );
            return false;
        }
        true
    }
}

/// Resolves the remote, keeps the allowlisted addresses, connects to the first that answers.
fn connect(config: &ProxyConfig) -> Result<(TcpStream, SocketAddr), String> {
    let (host, port) = (&config.remote_host, config.remote_port);
    let resolved =
        (config.resolve)(host, port).map_err(|e| format!("cannot resolve {host}: {e}"))?;
    let permitted = config
        .allowlist
        .permitted(host, port, &resolved, &*config.resolve);
    if permitted.is_empty() {
        let list: Vec<String> = resolved.iter().map(|a| a.ip().to_string()).collect();
        return Err(format!(
            "{host} now resolves to [{}], which the allowlist does not allow",
            list.join(", ")
        ));
    }
    let mut last = String::new();
    for addr in permitted {
        match TcpStream::connect_timeout(&addr, config.connect_timeout) {
            Ok(s) => return Ok((s, addr)),
            Err(e) => last = format!("remote {addr} unreachable: {e}"),
        }
    }
    Err(last)
}

/// One worker: connect, forward, log.
fn serve(conn: &UnixStream, config: &ProxyConfig, id: u64, peer: i32) {
    let remote = config.remote();
    let _ = conn.set_nonblocking(false);
    let (tcp, addr) = match connect(config) {
        Ok(c) => c,
        Err(reason) => {
            tracing::warn!(
                conn = id,
                peer_pid = peer,
                remote = %remote,
                to_remote = 0,
                from_remote = 0,
                %reason,
                "connection refused"
            );
            return;
        }
    };
    let _ = tcp.set_nodelay(true);
    tracing::info!(conn = id, peer_pid = peer, remote = %remote, address = %addr, "connection opened");
    let t = forward(conn, &tcp);
    tracing::info!(
        conn = id,
        peer_pid = peer,
        remote = %remote,
        address = %addr,
        to_remote = t.to_remote,
        from_remote = t.from_remote,
        reason = %t.reason,
        "connection closed"
    );
}
