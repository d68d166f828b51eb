//! `vsock-proxy`: the parent-side forwarder from an enclave's vsock port to an allowlisted
//! TCP `host:port`, modelled on AWS Nitro Enclaves' `vsock-proxy`.
//!
//! An enclave connecting to CID 3 port P reaches the parent's Unix listener
//! `<run dir>/vsock.sock_P`, or the parent-wide `$ENCLAVE_RUN_ROOT/vsock.sock_P` (hybrid vsock,
//! DESIGN.md "Channels"). The proxy listens there ([`socket`]), checks the remote against an
//! AWS-format YAML allowlist at start and for every connection ([`allowlist`]), and forwards
//! each connection both ways with half-close and bounded buffers ([`forward`]) under a limit
//! on concurrent connections ([`server`]).
//!
//! ```no_run
//! use samples::vsock_proxy::{Allowlist, Place, Proxy, ProxyConfig, ProxySocket};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let allowlist = Allowlist::load("/etc/enclave/vsock-proxy.yaml".as_ref())?;
//! let config = ProxyConfig::new("127.0.0.1", 8000, allowlist);
//! config.check()?;
//! let socket = ProxySocket::bind(&Place::RunRoot.socket_path(8000)?)?;
//! let proxy = Proxy::new(socket, config)?;
//! proxy.run()?; // until proxy.stopper().stop() from another thread
//! # Ok(()) }
//! ```

pub mod allowlist;
pub mod forward;
pub mod server;
pub mod socket;

pub use allowlist::{system_resolve, AllowedRemote, Allowlist, AllowlistError, Resolve};
pub use forward::{forward, Transfer};
pub use server::{Proxy, ProxyConfig, ProxyError, RunStats, Stopper};
pub use socket::{Place, ProxySocket, SocketError};

/// Default allowlist file.
pub const DEFAULT_CONFIG: &str = "/etc/enclave/vsock-proxy.yaml";
/// Environment variable overriding [`DEFAULT_CONFIG`].
pub const ENV_CONFIG: &str = "ENCLAVE_VSOCK_PROXY_CONFIG";

/// The allowlist path: `explicit`, else `$ENCLAVE_VSOCK_PROXY_CONFIG` if set and non-empty,
/// else [`DEFAULT_CONFIG`].
pub fn config_path(explicit: Option<&std::path::Path>) -> std::path::PathBuf {
    explicit.map_or_else(
        || {
            std::env::var_os(ENV_CONFIG)
                .filter(|v| !v.is_empty())
                .map_or_else(|| DEFAULT_CONFIG.into(), Into::into)
        },
        ToOwned::to_owned,
    )
}
