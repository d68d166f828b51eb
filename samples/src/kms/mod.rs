//! A KMS-style key service for enclaves (`kms-server`, `kms` CLI) and the pieces the enclave
//! program shares with it. Keys are released only to an enclave that proves what it runs: its
//! attestation document must satisfy the key's policy, carry a fresh nonce from this service
//! and hold the enclave's ephemeral P-384 key, to which the key is sealed with HPKE.
//!
//! - [`protocol`]: JSON lines, AWS KMS field names (shared with the enclave program).
//! - [`recipient`]: HPKE sealing to the attested public key (shared with the enclave program).
//! - [`crypto`]: AES-256-GCM ciphertext blobs and envelope messages.
//! - [`policy`], [`nonce`], [`store`], [`audit`]: key policies, nonces, state directory, log.
//! - [`service`], [`server`], [`client`]: decisions, the TCP server, a blocking client.
//! - [`process`]: `kms-server` as a child process.

pub mod audit;
pub mod client;
pub mod crypto;
pub mod nonce;
pub mod policy;
pub mod process;
pub mod protocol;
pub mod recipient;
pub mod server;
pub mod service;
pub mod store;

#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::Arc;

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The state directory.
    #[error("Cannot open the key store")]
    Store(#[from] store::StoreError),
    /// The audit log.
    #[error("Cannot open the audit log")]
    Audit(#[from] audit::AuditError),
}

/// Opens the service on the state directory `dir` (created if needed).
pub fn open_service(dir: &Path) -> Result<Arc<service::Service>, OpenError> {
    let store = store::Store::open(dir)?;
    let audit = audit::AuditLog::open(dir)?;
    let keys = store::Keyring::new(store)?;
    Ok(Arc::new(service::Service::new(
        keys,
        nonce::Nonces::default(),
        audit,
    )))
}
