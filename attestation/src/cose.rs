//! COSE_Sign1 with ES384 (RFC 9052), as Nitro attestation documents and EIF signatures use it:
//! protected header `{1: -35}` and nothing else, empty unprotected header, attached payload,
//! signature = raw `r ‖ s` (96 bytes) over the `Signature1` Sig_structure with empty AAD.

use ciborium::value::Value;
use coset::{iana, CborSerializable, CoseSign1, CoseSign1Builder, Header, HeaderBuilder};
use p384::ecdsa::signature::{Signer, Verifier};
use p384::ecdsa::{Signature, SigningKey, VerifyingKey};

/// CBOR tag of COSE_Sign1.
pub const COSE_SIGN1_TAG: u64 = 18;
/// Length of a raw ES384 signature.
pub const ES384_SIGNATURE_LEN: usize = 96;

/// Why a COSE_Sign1 was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoseError {
    /// Not CBOR, or trailing bytes.
    #[error("Not a COSE_Sign1: the CBOR is unusable")]
    Cbor(#[source] crate::cbor::CborError),
    /// Tagged, but not with 18.
    #[error("CBOR tag {0} is not COSE_Sign1 (18)")]
    WrongTag(u64),
    /// Not a 4-element array of the right types.
    #[error("Not a COSE_Sign1 structure (a 4-element array: protected, unprotected, payload, signature): {0}")]
    Structure(String),
    /// Protected header has no ES384 alg.
    #[error("Protected header algorithm is {0}, not ES384 (-35)")]
    WrongAlgorithm(String),
    /// Protected header carries more than the algorithm.
    #[error("Protected header has entries besides the algorithm: only {{1: -35}} is accepted")]
    ExtraProtected,
    /// The algorithm is in the unprotected header (where it is not signed).
    #[error("The algorithm is in the unprotected header, where it is not authenticated")]
    AlgInUnprotected,
    /// Unprotected header not empty.
    #[error("Unprotected header is not empty")]
    UnprotectedNotEmpty,
    /// No payload.
    #[error("COSE_Sign1 has a detached (nil) payload; the payload must be attached")]
    NoPayload,
    /// Signature not 96 bytes.
    #[error("ES384 signature is {0} bytes, expected 96 (r ‖ s)")]
    SignatureLength(usize),
    /// Signature does not verify.
    #[error("ES384 signature does not verify with the signer's public key")]
    BadSignature,
    /// Signing failed.
    #[error("Could not sign")]
    Sign,
}

/// A structurally valid ES384 COSE_Sign1, not yet verified.
#[derive(Debug, Clone)]
pub struct ParsedSign1 {
    inner: CoseSign1,
}

impl ParsedSign1 {
    /// The (attached) payload.
    pub fn payload(&self) -> &[u8] {
        self.inner.payload.as_deref().unwrap_or_default()
    }

    /// Verifies the signature with `key`.
    pub fn verify(&self, key: &VerifyingKey) -> Result<(), CoseError> {
        self.inner.verify_signature(b"", |sig, tbs| {
            let sig = Signature::from_slice(sig).map_err(|_| CoseError::BadSignature)?;
            key.verify(tbs, &sig).map_err(|_| CoseError::BadSignature)
        })
    }
}

/// Signs `payload` into a COSE_Sign1, tagged (18) or not.
pub fn sign(payload: Vec<u8>, key: &SigningKey, tagged: bool) -> Result<Vec<u8>, CoseError> {
    let protected = HeaderBuilder::new()
        .algorithm(iana::Algorithm::ES384)
        .build();
    let sign1 = CoseSign1Builder::new()
        .protected(protected)
        .payload(payload)
        .try_create_signature(b"", |tbs| {
            Signer::<Signature>::try_sign(key, tbs)
                .map(|s| s.to_bytes().to_vec())
                .map_err(|_| CoseError::Sign)
        })?
        .build();
    let bytes = if tagged {
        coset::TaggedCborSerializable::to_tagged_vec(sign1)
    } else {
        sign1.to_vec()
    };
    bytes.map_err(|_| CoseError::Sign)
}

/// Parses and checks the structure of an ES384 COSE_Sign1 (tag 18 optional), at most
/// `max` bytes; the signature is checked later with [`ParsedSign1::verify`].
pub fn parse(bytes: &[u8], max: usize) -> Result<ParsedSign1, CoseError> {
    let mut value = crate::cbor::decode_exact(bytes, max).map_err(CoseError::Cbor)?;
    if let Value::Tag(tag, inner) = value {
        if tag != COSE_SIGN1_TAG {
            return Err(CoseError::WrongTag(tag));
        }
        value = *inner;
    }
    match &value {
        Value::Array(a) if a.len() == 4 => {}
        Value::Array(a) => {
            return Err(CoseError::Structure(format!(
                "array of {} elements",
                a.len()
            )))
        }
        _ => return Err(CoseError::Structure("not an array".into())),
    }
    let inner = <CoseSign1 as coset::AsCborValue>::from_cbor_value(value)
        .map_err(|e| CoseError::Structure(e.to_string()))?;
    check_headers(&inner)?;
    if inner.payload.is_none() {
        return Err(CoseError::NoPayload);
    }
    if inner.signature.len() != ES384_SIGNATURE_LEN {
        return Err(CoseError::SignatureLength(inner.signature.len()));
    }
    Ok(ParsedSign1 { inner })
}

fn check_headers(s: &CoseSign1) -> Result<(), CoseError> {
    let es384 = coset::Algorithm::Assigned(iana::Algorithm::ES384);
    match &s.protected.header.alg {
        Some(alg) if *alg == es384 => {}
        Some(other) => return Err(CoseError::WrongAlgorithm(format!("{other:?}"))),
        None if s.unprotected.alg.is_some() => return Err(CoseError::AlgInUnprotected),
        None => return Err(CoseError::WrongAlgorithm("absent".into())),
    }
    let mut rest = s.protected.header.clone();
    rest.alg = None;
    if rest != Header::default() {
        return Err(CoseError::ExtraProtected);
    }
    if s.unprotected.alg.is_some() {
        return Err(CoseError::AlgInUnprotected);
    }
    if s.unprotected != Header::default() {
        return Err(CoseError::UnprotectedNotEmpty);
    }
    Ok(())
}
