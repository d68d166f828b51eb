//! Outstanding nonces: 32 random bytes each, single use, valid for a limited time; at most a
//! bounded number outstanding (the oldest is evicted first).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Nonce length.
pub const NONCE_LEN: usize = 32;
/// How long a nonce stays valid.
pub const NONCE_TTL: Duration = Duration::from_secs(300);
/// Most nonces outstanding at once.
pub const MAX_OUTSTANDING: usize = 65_536;

/// Why a nonce was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NonceError {
    /// The document carries no nonce.
    #[error("document has no nonce: get one with GetNonce and put it in the attestation request")]
    Missing,
    /// Unknown or used.
    #[error("nonce was not issued by this service or was already used (replay)")]
    Unknown,
    /// Too old.
    #[error(
        "nonce was issued {age_secs} s ago; nonces are valid for {ttl_secs} s: get a fresh one"
    )]
    Expired {
        /// Age.
        age_secs: u64,
        /// Validity.
        ttl_secs: u64,
    },
    /// The OS random source failed.
    #[error("The OS random source failed: {0}")]
    Random(String),
}

#[derive(Debug, Default)]
struct Book {
    issued: HashMap<[u8; NONCE_LEN], Instant>,
    order: VecDeque<([u8; NONCE_LEN], Instant)>,
}

/// The set of outstanding nonces.
#[derive(Debug)]
pub struct Nonces {
    book: Mutex<Book>,
    ttl: Duration,
    capacity: usize,
}

impl Default for Nonces {
    fn default() -> Self {
        Self::new(NONCE_TTL, MAX_OUTSTANDING)
    }
}

impl Nonces {
    /// A set with validity `ttl` and at most `capacity` outstanding.
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            book: Mutex::new(Book::default()),
            ttl,
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Issues a fresh nonce.
    pub fn issue(&self) -> Result<[u8; NONCE_LEN], NonceError> {
        let mut nonce = [0; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| NonceError::Random(e.to_string()))?;
        let now = Instant::now();
        let mut book = self.lock();
        // Drop expired and consumed entries from the front, then evict the oldest if full.
        while let Some((n, at)) = book.order.front().copied() {
            let stale = now.duration_since(at) > self.ttl || book.issued.get(&n) != Some(&at);
            let full = book.issued.len() >= self.capacity;
            if !stale && !full {
                break;
            }
            book.order.pop_front();
            if book.issued.get(&n) == Some(&at) {
                book.issued.remove(&n);
            }
        }
        if book.order.len() >= self.capacity.saturating_mul(2) {
            // Consumed entries pile up behind a live front: drop them all at once.
            let Book { issued, order } = &mut *book;
            order.retain(|(n, at)| issued.get(n) == Some(at));
        }
        book.issued.insert(nonce, now);
        book.order.push_back((nonce, now));
        Ok(nonce)
    }

    /// Consumes `nonce`: valid once, if issued here and not expired.
    pub fn consume(&self, nonce: Option<&[u8]>) -> Result<(), NonceError> {
        let nonce = nonce.ok_or(NonceError::Missing)?;
        let key: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| NonceError::Unknown)?;
        let at = self.lock().issued.remove(&key).ok_or(NonceError::Unknown)?;
        let age = at.elapsed();
        if age > self.ttl {
            return Err(NonceError::Expired {
                age_secs: age.as_secs(),
                ttl_secs: self.ttl.as_secs(),
            });
        }
        Ok(())
    }

    /// Number outstanding (expired ones included until evicted).
    pub fn outstanding(&self) -> usize {
        self.lock().issued.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_are_single_use() {
        let n = Nonces::default();
        let a = n.issue().unwrap();
        let b = n.issue().unwrap();
        assert_ne!(a, b);
        n.consume(Some(&a)).unwrap();
        assert_eq!(n.consume(Some(&a)), Err(NonceError::Unknown));
        assert_eq!(n.consume(Some(&[7; 32])), Err(NonceError::Unknown));
        assert_eq!(n.consume(Some(&[7; 3])), Err(NonceError::Unknown));
        assert_eq!(n.consume(None), Err(NonceError::Missing));
        n.consume(Some(&b)).unwrap();
    }

    #[test]
    fn expired_nonces_are_refused() {
        let n = Nonces::new(Duration::from_millis(1), 10);
        let a = n.issue().unwrap();
        std::thread::sleep(Duration::from_millis(20));
        assert!(matches!(
            n.consume(Some(&a)),
            Err(NonceError::Expired { .. })
        ));
    }

    #[test]
    fn the_oldest_is_evicted_when_full() {
        let n = Nonces::new(NONCE_TTL, 3);
        let first = n.issue().unwrap();
        let rest: Vec<_> = (0..3).map(|_| n.issue().unwrap()).collect();
        assert_eq!(n.outstanding(), 3);
        assert_eq!(n.consume(Some(&first)), Err(NonceError::Unknown));
        for r in rest {
            n.consume(Some(&r)).unwrap();
        }
    }
}
