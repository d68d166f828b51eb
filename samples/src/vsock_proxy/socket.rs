//! The proxy's listening socket: where it lives (the parent-wide `$ENCLAVE_RUN_ROOT/vsock.sock_P`,
//! a given directory, or an enclave's run directory), binding it without stealing it from a live
//! listener, and removing it on drop when it is still ours.

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use enclave_runtime::pool::PoolPaths;
use sdk::VSOCK_SOCKET;

/// Errors of placing or binding the socket.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// The enclave id is not a plain name.
    #[error("invalid enclave id {id:?}: give the EnclaveID that run-enclave printed (enc-…)")]
    BadEnclaveId {
        /// The id given.
        id: String,
    },
    /// The enclave has no run directory.
    #[error(
        "no run directory {dir} for enclave {id}: is it running, under this ENCLAVE_RUN_ROOT?"
    )]
    NoEnclave {
        /// The id given.
        id: String,
        /// Where its run directory would be.
        dir: PathBuf,
    },
    /// Another process listens on the socket.
    #[error(
        "{path} already has a live listener (another vsock-proxy?): stop it or use another port"
    )]
    InUse {
        /// The socket.
        path: PathBuf,
    },
    /// Something that is not a socket is in the way.
    #[error("{path} exists and is not a socket: remove it or choose another directory")]
    NotASocket {
        /// The path.
        path: PathBuf,
    },
    /// An I/O error while creating, probing or binding.
    #[error("cannot {what} {path}")]
    Io {
        /// The operation.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

fn io_err<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> SocketError + 'a {
    move |source| SocketError::Io {
        what,
        path: path.to_owned(),
        source,
    }
}

/// Where the proxy listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// `$ENCLAVE_RUN_ROOT` (default `/run/enclave`): every enclave without its own listener on
    /// the port reaches it; may exist before any launch.
    RunRoot,
    /// A directory given explicitly (created if missing).
    Dir(PathBuf),
    /// The run directory of a running enclave (`$ENCLAVE_RUN_ROOT/<id>`): only that enclave.
    Enclave(String),
}

impl Place {
    /// The directory the socket goes in (checked to exist for [`Place::Enclave`]).
    pub fn dir(&self) -> Result<PathBuf, SocketError> {
        let paths = PoolPaths::from_env();
        match self {
            Self::RunRoot => Ok(paths.run_root),
            Self::Dir(d) => Ok(d.clone()),
            Self::Enclave(id) => {
                let plain = !id.is_empty()
                    && id
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b));
                if !plain {
                    return Err(SocketError::BadEnclaveId { id: id.clone() });
                }
                let dir = paths.run_dir(id);
                if !dir.is_dir() {
                    return Err(SocketError::NoEnclave {
                        id: id.clone(),
                        dir,
                    });
                }
                Ok(dir)
            }
        }
    }

    /// `<dir>/vsock.sock_<port>`.
    pub fn socket_path(&self, port: u32) -> Result<PathBuf, SocketError> {
        Ok(self.dir()?.join(format!("{VSOCK_SOCKET}_{port}")))
    }
}

/// A bound listening socket, removed on drop if the file is still the one bound.
#[derive(Debug)]
pub struct ProxySocket {
    listener: UnixListener,
    path: PathBuf,
    identity: (u64, u64),
}

fn identity(path: &Path) -> Option<(u64, u64)> {
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

impl ProxySocket {
    /// Binds `path` (mode 0600), creating its directory. An existing socket nobody accepts on
    /// is stale and replaced; one with a live listener is [`SocketError::InUse`] (probing it
    /// opens and closes one connection to that listener).
    pub fn bind(path: &Path) -> Result<Self, SocketError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io_err("create directory", dir))?;
        }
        match std::fs::symlink_metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("inspect", path)(e)),
            Ok(m) if !m.file_type().is_socket() => {
                return Err(SocketError::NotASocket {
                    path: path.to_owned(),
                })
            }
            Ok(_) => match UnixStream::connect(path) {
                Ok(_) => {
                    return Err(SocketError::InUse {
                        path: path.to_owned(),
                    })
                }
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    tracing::info!(path = %path.display(), "replacing a stale socket");
                    std::fs::remove_file(path).map_err(io_err("remove stale socket", path))?;
                }
                Err(e) => return Err(io_err("probe", path)(e)),
            },
        }
        let listener = UnixListener::bind(path).map_err(io_err("bind", path))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(io_err("chmod", path))?;
        let identity = identity(path).ok_or_else(|| SocketError::Io {
            what: "inspect",
            path: path.to_owned(),
            source: std::io::ErrorKind::NotFound.into(),
        })?;
        Ok(Self {
            listener,
            path: path.to_owned(),
            identity,
        })
    }

    /// The listener.
    pub fn listener(&self) -> &UnixListener {
        &self.listener
    }

    /// The socket file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the file at the path is still the socket bound here (not removed or replaced,
    /// e.g. with the run directory of an enclave that ended).
    pub fn still_ours(&self) -> bool {
        identity(&self.path) == Some(self.identity)
    }
}

impl Drop for ProxySocket {
    fn drop(&mut self) {
        if self.still_ours() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
