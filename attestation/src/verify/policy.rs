//! What a verifier requires of a document beyond a valid signature: the pinned root, freshness,
//! nonce, PCR values and whether debug enclaves are acceptable.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::cache::ChainCache;

/// Default maximum document age.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(300);
/// Default tolerance for documents timestamped in the future (clock skew).
pub const DEFAULT_FUTURE_SKEW: Duration = Duration::from_secs(60);

/// Verification policy. Build with [`Policy::new`] and the `with_*`/`expect_*` methods;
/// clones share the verified-chain cache.
#[derive(Clone, Debug)]
pub struct Policy {
    pub(super) root_der: Vec<u8>,
    pub(super) max_age: Option<Duration>,
    pub(super) future_skew: Duration,
    pub(super) nonce: Option<Vec<u8>>,
    pub(super) pcrs: BTreeMap<u16, Vec<u8>>,
    pub(super) allow_debug: bool,
    pub(super) now: Option<SystemTime>,
    pub(super) cache: Arc<ChainCache>,
}

impl Policy {
    /// A policy trusting the root certificate `root_der` (DER, compared byte for byte with
    /// the document's `cabundle[0]`): documents at most 5 minutes old, no debug documents.
    pub fn new(root_der: Vec<u8>) -> Self {
        Self {
            root_der,
            max_age: Some(DEFAULT_MAX_AGE),
            future_skew: DEFAULT_FUTURE_SKEW,
            nonce: None,
            pcrs: BTreeMap::new(),
            allow_debug: false,
            now: None,
            cache: Arc::new(ChainCache::default()),
        }
    }

    /// Maximum age of the document (`None`: no freshness check).
    #[must_use]
    pub fn with_max_age(mut self, max_age: Option<Duration>) -> Self {
        self.max_age = max_age;
        self
    }

    /// How far in the future a timestamp may be.
    #[must_use]
    pub fn with_future_skew(mut self, skew: Duration) -> Self {
        self.future_skew = skew;
        self
    }

    /// Requires the document's nonce to equal `nonce`.
    #[must_use]
    pub fn expect_nonce(mut self, nonce: impl Into<Vec<u8>>) -> Self {
        self.nonce = Some(nonce.into());
        self
    }

    /// Requires PCR `index` to equal `value`.
    #[must_use]
    pub fn expect_pcr(mut self, index: u16, value: impl Into<Vec<u8>>) -> Self {
        self.pcrs.insert(index, value.into());
        self
    }

    /// Accepts debug-mode documents (PCR0 all zero).
    #[must_use]
    pub fn allow_debug(mut self, allow: bool) -> Self {
        self.allow_debug = allow;
        self
    }

    /// Verifies as if the time were `now` (tests, replaying old documents).
    #[must_use]
    pub fn at_time(mut self, now: SystemTime) -> Self {
        self.now = Some(now);
        self
    }

    /// The pinned root, DER.
    pub fn root_der(&self) -> &[u8] {
        &self.root_der
    }

    /// Number of verified chains cached.
    pub fn cached_chains(&self) -> usize {
        self.cache.len()
    }
}
