//! The per-enclave attester: the leaf key and chain, the module id and the debug flag; it
//! turns the NSM's Attestation request into a signed document.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use super::Leaf;
use crate::document::{AttestationDocument, DocumentError};
use crate::nsm::Attester;
use crate::pcr::Pcr;

/// Signs attestation documents for one enclave with its leaf key.
#[derive(Clone, Debug)]
pub struct LeafAttester {
    leaf: Leaf,
    module_id: String,
    debug: bool,
}

impl LeafAttester {
    /// An attester for the enclave whose leaf is `leaf`; `debug` zeroes PCR0/1/2/8.
    pub fn new(leaf: Leaf, module_id: impl Into<String>, debug: bool) -> Self {
        Self {
            leaf,
            module_id: module_id.into(),
            debug,
        }
    }

    /// The leaf (certificate and chain).
    pub fn leaf(&self) -> &Leaf {
        &self.leaf
    }

    /// A signed document with an explicit timestamp (ms since the epoch).
    pub fn attest_at(
        &self,
        timestamp_ms: u64,
        pcrs: &BTreeMap<u16, Pcr>,
        user_data: Option<&[u8]>,
        nonce: Option<&[u8]>,
        public_key: Option<&[u8]>,
    ) -> Result<Vec<u8>, DocumentError> {
        let mut doc = AttestationDocument::new(
            self.module_id.clone(),
            timestamp_ms,
            pcrs,
            self.debug,
            self.leaf.certificate.clone(),
            self.leaf.cabundle.clone(),
        );
        doc.user_data = user_data.map(<[u8]>::to_vec);
        doc.nonce = nonce.map(<[u8]>::to_vec);
        doc.public_key = public_key.map(<[u8]>::to_vec);
        doc.sign(&self.leaf.key)
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl Attester for LeafAttester {
    fn module_id(&self) -> &str {
        &self.module_id
    }

    fn attest(
        &self,
        pcrs: &BTreeMap<u16, Pcr>,
        user_data: Option<&[u8]>,
        nonce: Option<&[u8]>,
        public_key: Option<&[u8]>,
    ) -> Result<Vec<u8>, DocumentError> {
        self.attest_at(now_ms(), pcrs, user_data, nonce, public_key)
    }
}
