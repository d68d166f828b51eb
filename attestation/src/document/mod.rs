//! The attestation document: AWS's schema (module_id, digest, timestamp, pcrs, certificate,
//! cabundle, public_key, user_data, nonce) as CBOR, signed into a COSE_Sign1 ES384.

mod codec;
mod limits;

pub use codec::PayloadError;
pub use limits::*;

use std::collections::BTreeMap;

use p384::ecdsa::SigningKey;

use crate::cose::{self, CoseError};
use crate::pcr::{Pcr, PCR_ZERO};

/// The only digest we produce and accept.
pub const DIGEST_SHA384: &str = "SHA384";

/// PCRs that read as all zero in a debug-mode enclave's documents, as on Nitro.
pub const DEBUG_ZEROED_PCRS: [u16; 4] = [0, 1, 2, 8];

/// Why a document could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    /// A field is outside the schema's limits.
    #[error("Attestation document is not valid")]
    Invalid(#[source] PayloadError),
    /// Signing failed.
    #[error("Could not sign the attestation document")]
    Sign(#[source] CoseError),
}

/// An attestation document's fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttestationDocument {
    /// Issuing module: the enclave and runtime version.
    pub module_id: String,
    /// Always "SHA384".
    pub digest: String,
    /// Milliseconds since the Unix epoch.
    pub timestamp: u64,
    /// PCR index → value (48 bytes).
    pub pcrs: BTreeMap<u16, Vec<u8>>,
    /// The leaf certificate that signs the document, DER.
    pub certificate: Vec<u8>,
    /// Issuers, root first, DER.
    pub cabundle: Vec<Vec<u8>>,
    /// Optional public key of the enclave.
    pub public_key: Option<Vec<u8>>,
    /// Optional user data.
    pub user_data: Option<Vec<u8>>,
    /// Optional nonce.
    pub nonce: Option<Vec<u8>>,
}

impl AttestationDocument {
    /// A document over `pcrs` (zeroing PCR0/1/2/8 if `debug`), signed later by the holder of
    /// `certificate`'s key.
    pub fn new(
        module_id: impl Into<String>,
        timestamp: u64,
        pcrs: &BTreeMap<u16, Pcr>,
        debug: bool,
        certificate: Vec<u8>,
        cabundle: Vec<Vec<u8>>,
    ) -> Self {
        let mut pcrs: BTreeMap<u16, Vec<u8>> = pcrs.iter().map(|(i, v)| (*i, v.to_vec())).collect();
        if debug {
            for i in DEBUG_ZEROED_PCRS {
                if let Some(v) = pcrs.get_mut(&i) {
                    *v = PCR_ZERO.to_vec();
                }
            }
        }
        Self {
            module_id: module_id.into(),
            digest: DIGEST_SHA384.to_owned(),
            timestamp,
            pcrs,
            certificate,
            cabundle,
            public_key: None,
            user_data: None,
            nonce: None,
        }
    }

    /// The CBOR payload, fields in AWS's order; checks the schema's limits first.
    pub fn to_cbor(&self) -> Result<Vec<u8>, DocumentError> {
        codec::check(self).map_err(DocumentError::Invalid)?;
        Ok(codec::encode(self))
    }

    /// The CBOR payload without checks: for tests that need out-of-schema documents.
    pub fn to_cbor_unchecked(&self) -> Vec<u8> {
        codec::encode(self)
    }

    /// Strictly decodes a CBOR payload (one item, no trailing bytes, schema limits).
    pub fn from_cbor(bytes: &[u8]) -> Result<Self, PayloadError> {
        codec::decode(bytes)
    }

    /// Signs the document into a tagged COSE_Sign1 ES384 with the leaf key.
    pub fn sign(&self, key: &SigningKey) -> Result<Vec<u8>, DocumentError> {
        cose::sign(self.to_cbor()?, key, true).map_err(DocumentError::Sign)
    }

    /// Whether this is a debug-mode document (PCR0 present and all zero).
    pub fn is_debug(&self) -> bool {
        self.pcrs.get(&0).is_some_and(|v| v.iter().all(|b| *b == 0))
    }
}
