//! Verifying attestation documents: COSE structure and algorithm, payload schema, the ES384
//! signature by the leaf certificate, the chain to a pinned root, freshness, nonce, debug
//! mode and expected PCRs — in that order, failing with one error naming the first failed
//! check.

mod cache;
mod chain;
mod policy;

pub use cache::{chain_key, ChainCache, VerifiedChain, CACHE_CAPACITY};
pub use policy::{Policy, DEFAULT_FUTURE_SKEW, DEFAULT_MAX_AGE};

/// The P-384 public key of a certificate.
pub fn certificate_key(
    cert: &x509_cert::Certificate,
) -> Result<p384::ecdsa::VerifyingKey, VerifyError> {
    chain::public_key(cert).map_err(VerifyError::LeafCertificate)
}

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::cose::{self, CoseError};
use crate::document::{AttestationDocument, PayloadError, MAX_DOCUMENT_SIZE};

/// The first check a document failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// COSE structure, algorithm or headers.
    #[error("COSE_Sign1 check failed")]
    Cose(#[source] CoseError),
    /// Payload not a valid document.
    #[error("Attestation document payload is not valid")]
    Payload(#[source] PayloadError),
    /// The leaf certificate cannot be used.
    #[error("The document's certificate is unusable: {0}")]
    LeafCertificate(String),
    /// The document's signature does not verify.
    #[error("The document's ES384 signature does not verify with its certificate's key")]
    Signature,
    /// cabundle[0] is not the pinned root.
    #[error(
        "cabundle[0] is not the trusted root certificate: the document was issued by another CA"
    )]
    UntrustedRoot,
    /// A chain certificate cannot be parsed.
    #[error("Chain certificate {index} (0 = root) is unusable: {reason}")]
    ChainCertificate {
        /// Position, root = 0, leaf last.
        index: usize,
        /// Why.
        reason: String,
    },
    /// A chain signature does not verify.
    #[error("Chain certificate {index} (0 = root) is not signed by its predecessor: {reason}")]
    ChainSignature {
        /// Position, root = 0, leaf last.
        index: usize,
        /// Why.
        reason: String,
    },
    /// Certificate not yet valid at the document's time.
    #[error("Certificate {subject} is not valid until {not_before_ms} ms, after the document's time {timestamp_ms} ms")]
    CertificateNotYetValid {
        /// Subject.
        subject: String,
        /// Start of validity, ms.
        not_before_ms: u64,
        /// Document time, ms.
        timestamp_ms: u64,
    },
    /// Certificate expired at the document's time.
    #[error("Certificate {subject} expired at {not_after_ms} ms, before the document's time {timestamp_ms} ms")]
    CertificateExpired {
        /// Subject.
        subject: String,
        /// End of validity, ms.
        not_after_ms: u64,
        /// Document time, ms.
        timestamp_ms: u64,
    },
    /// basicConstraints wrong.
    #[error("Certificate {subject} fails basicConstraints: {reason}")]
    BasicConstraints {
        /// Subject.
        subject: String,
        /// Why.
        reason: String,
    },
    /// keyUsage wrong.
    #[error("Certificate {subject} fails keyUsage: {reason}")]
    KeyUsage {
        /// Subject.
        subject: String,
        /// Why.
        reason: String,
    },
    /// Too old.
    #[error("Document is {age_ms} ms old, over the policy's maximum of {max_ms} ms: request a fresh one")]
    Stale {
        /// Age.
        age_ms: u64,
        /// Limit.
        max_ms: u64,
    },
    /// Timestamp in the future.
    #[error("Document timestamp is {ahead_ms} ms in the future: check the clocks")]
    FromTheFuture {
        /// How far ahead.
        ahead_ms: u64,
    },
    /// Nonce differs or is missing.
    #[error("Document nonce does not match the expected nonce (replayed or for another request)")]
    NonceMismatch,
    /// Debug-mode document.
    #[error("Document is from a debug-mode enclave (PCR0 all zero), which the policy refuses")]
    DebugDocument,
    /// An expected PCR is absent.
    #[error("Document has no PCR{0}, which the policy requires")]
    PcrMissing(u16),
    /// An expected PCR differs.
    #[error("PCR{index} is {actual}, the policy expects {expected}")]
    PcrMismatch {
        /// PCR index.
        index: u16,
        /// Value in the document, hex.
        actual: String,
        /// Expected value, hex.
        expected: String,
    },
}

/// A verified document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedDocument {
    /// Its fields.
    pub document: AttestationDocument,
    /// Whether it comes from a debug-mode enclave.
    pub debug: bool,
}

fn now_ms(policy: &Policy) -> u64 {
    policy
        .now
        .unwrap_or_else(SystemTime::now)
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Verifies a COSE_Sign1 attestation document against `policy`.
pub fn verify(document: &[u8], policy: &Policy) -> Result<VerifiedDocument, VerifyError> {
    let sign1 = cose::parse(document, MAX_DOCUMENT_SIZE).map_err(VerifyError::Cose)?;
    let doc = AttestationDocument::from_cbor(sign1.payload()).map_err(VerifyError::Payload)?;

    let key = cache::chain_key(&doc.cabundle, &doc.certificate);
    let cached = policy.cache.get(&key);
    let leaf_key = match &cached {
        Some(c) => c.leaf_key,
        None => chain::leaf_key(&doc.certificate)?,
    };
    sign1
        .verify(&leaf_key)
        .map_err(|_| VerifyError::Signature)?;

    if doc.cabundle.first().map(Vec::as_slice) != Some(policy.root_der.as_slice()) {
        return Err(VerifyError::UntrustedRoot);
    }
    let chain = match cached {
        Some(c) => c,
        None => {
            let c = Arc::new(chain::verify_chain(
                &policy.root_der,
                &doc.cabundle,
                &doc.certificate,
            )?);
            policy.cache.insert(key, Arc::clone(&c));
            c
        }
    };
    chain::check_validity(&chain, doc.timestamp)?;

    let now = now_ms(policy);
    if doc.timestamp > now.saturating_add(millis(policy.future_skew)) {
        return Err(VerifyError::FromTheFuture {
            ahead_ms: doc.timestamp.saturating_sub(now),
        });
    }
    if let Some(max) = policy.max_age {
        let age_ms = now.saturating_sub(doc.timestamp);
        if age_ms > millis(max) {
            return Err(VerifyError::Stale {
                age_ms,
                max_ms: millis(max),
            });
        }
    }
    if let Some(expected) = &policy.nonce {
        if doc.nonce.as_ref() != Some(expected) {
            return Err(VerifyError::NonceMismatch);
        }
    }
    let debug = doc.is_debug();
    if debug && !policy.allow_debug {
        return Err(VerifyError::DebugDocument);
    }
    for (index, expected) in &policy.pcrs {
        let actual = doc.pcrs.get(index).ok_or(VerifyError::PcrMissing(*index))?;
        if actual != expected {
            return Err(VerifyError::PcrMismatch {
                index: *index,
                actual: hex::encode(actual),
                expected: hex::encode(expected),
            });
        }
    }
    Ok(VerifiedDocument {
        document: doc,
        debug,
    })
}
