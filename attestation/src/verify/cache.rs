//! Cache of verified certificate chains, keyed by SHA-384 of the cabundle and the leaf, so a
//! verifier seeing many documents from one enclave checks its chain once. What is cached is
//! time-independent: the leaf key and every certificate's validity window, which is checked
//! against each document's own timestamp.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use p384::ecdsa::VerifyingKey;
use sha2::{Digest, Sha384};

/// Chains kept before the cache is emptied.
pub const CACHE_CAPACITY: usize = 1024;

/// A chain whose signatures and extensions have been verified.
#[derive(Clone, Debug)]
pub struct VerifiedChain {
    /// The leaf's public key.
    pub leaf_key: VerifyingKey,
    /// Subject and validity window (ms since the epoch) of each certificate, root first.
    pub windows: Vec<(String, u64, u64)>,
}

/// Key of a chain: SHA-384 over each certificate, length-prefixed, cabundle then leaf.
pub fn chain_key(cabundle: &[Vec<u8>], leaf: &[u8]) -> [u8; 48] {
    let mut h = Sha384::new();
    for cert in cabundle
        .iter()
        .map(Vec::as_slice)
        .chain(std::iter::once(leaf))
    {
        h.update(u64::try_from(cert.len()).unwrap_or(u64::MAX).to_be_bytes());
        h.update(cert);
    }
    h.finalize().into()
}

/// Verified chains by [`chain_key`].
#[derive(Debug, Default)]
pub struct ChainCache {
    map: Mutex<HashMap<[u8; 48], Arc<VerifiedChain>>>,
}

impl ChainCache {
    /// A cached chain.
    pub fn get(&self, key: &[u8; 48]) -> Option<Arc<VerifiedChain>> {
        self.map.lock().ok()?.get(key).cloned()
    }

    /// Remembers a verified chain.
    pub fn insert(&self, key: [u8; 48], chain: Arc<VerifiedChain>) {
        if let Ok(mut map) = self.map.lock() {
            if map.len() >= CACHE_CAPACITY {
                map.clear();
            }
            map.insert(key, chain);
        }
    }

    /// Number of chains cached.
    pub fn len(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
