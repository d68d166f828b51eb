//! Sealing a released key to an attested recipient: HPKE (RFC 9180) mode Base with
//! DHKEM(P-384, HKDF-SHA384), HKDF-SHA384 and AES-256-GCM; info
//! [`RECIPIENT_INFO`], AAD = the key id. The recipient's public key is the attestation
//! document's `public_key`: the SEC1 uncompressed P-384 point (97 bytes). A sealed value is
//! the encapsulated key (97 bytes) followed by the AEAD ciphertext.
//!
//! This file depends only on `hpke` (no `crate::` paths): the enclave program includes it with
//! `#[path]`.

use std::fmt;

use hpke::aead::AesGcm256;
use hpke::kdf::HkdfSha384;
use hpke::kem::DhP384HkdfSha384;
use hpke::{Deserializable, Kem as _, OpModeR, OpModeS, Serializable};

/// HPKE `info` of every recipient seal.
pub const RECIPIENT_INFO: &[u8] = b"enclave-kms recipient v1";
/// Length of a SEC1 uncompressed P-384 point, the encapsulated key and the public key.
pub const PUBLIC_KEY_LEN: usize = 97;
/// Shortest input keying material [`RecipientKey::from_ikm`] accepts (Nsk of P-384).
pub const MIN_IKM_LEN: usize = 48;

type Kem = DhP384HkdfSha384;

/// Why a seal or open failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecipientError {
    /// The public key is not a SEC1 uncompressed P-384 point.
    BadPublicKey(usize),
    /// The sealed value is shorter than an encapsulated key plus a tag.
    TooShort(usize),
    /// HPKE refused (wrong key, tampered ciphertext or AAD).
    Hpke(String),
    /// Too little keying material.
    ShortIkm(usize),
}

impl fmt::Display for RecipientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadPublicKey(n) => write!(
                f,
                "The public key ({n} bytes) is not a valid SEC1 uncompressed P-384 point ({PUBLIC_KEY_LEN} bytes)"
            ),
            Self::TooShort(n) => write!(
                f,
                "The sealed value is {n} bytes, shorter than an encapsulated key and a tag"
            ),
            Self::ShortIkm(n) => write!(
                f,
                "Key derivation needs at least {MIN_IKM_LEN} random bytes, got {n}"
            ),
            Self::Hpke(e) => write!(
                f,
                "HPKE failed ({e}): sealed to another key, for another key id, or tampered with"
            ),
        }
    }
}

impl std::error::Error for RecipientError {}

/// Checks that `public_key` is a valid recipient key.
pub fn check_public_key(public_key: &[u8]) -> Result<(), RecipientError> {
    <Kem as hpke::Kem>::PublicKey::from_bytes(public_key)
        .map(|_| ())
        .map_err(|_| RecipientError::BadPublicKey(public_key.len()))
}

/// Seals `plaintext` to `public_key` with AAD `key_id`.
pub fn seal(public_key: &[u8], key_id: &str, plaintext: &[u8]) -> Result<Vec<u8>, RecipientError> {
    let pk = <Kem as hpke::Kem>::PublicKey::from_bytes(public_key)
        .map_err(|_| RecipientError::BadPublicKey(public_key.len()))?;
    let (encapped, ciphertext) = hpke::single_shot_seal::<AesGcm256, HkdfSha384, Kem>(
        &OpModeS::Base,
        &pk,
        RECIPIENT_INFO,
        plaintext,
        key_id.as_bytes(),
    )
    .map_err(|e| RecipientError::Hpke(e.to_string()))?;
    let mut out = encapped.to_bytes().to_vec();
    out.extend_from_slice(&ciphertext);
    Ok(out)
}

/// An ephemeral recipient key pair (lives only in memory).
pub struct RecipientKey {
    secret: <Kem as hpke::Kem>::PrivateKey,
    public: Vec<u8>,
}

impl fmt::Debug for RecipientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecipientKey")
            .field("public", &self.public.len())
            .finish_non_exhaustive()
    }
}

impl RecipientKey {
    /// A fresh key pair from the OS random source (through the `getrandom` crate).
    pub fn generate() -> Self {
        let (secret, public) = Kem::gen_keypair();
        Self {
            secret,
            public: public.to_bytes().to_vec(),
        }
    }

    /// The key pair RFC 9180's `DeriveKeyPair` makes from `ikm`, which must be at least
    /// [`MIN_IKM_LEN`] fresh random bytes. For programs that draw randomness themselves (a
    /// static glibc program in an enclave, where the `getrandom` crate looks for
    /// `/dev/urandom`).
    pub fn from_ikm(ikm: &[u8]) -> Result<Self, RecipientError> {
        if ikm.len() < MIN_IKM_LEN {
            return Err(RecipientError::ShortIkm(ikm.len()));
        }
        let (secret, public) = Kem::derive_keypair(ikm);
        Ok(Self {
            secret,
            public: public.to_bytes().to_vec(),
        })
    }

    /// The public key: SEC1 uncompressed, 97 bytes, for the document's `public_key`.
    pub fn public_key(&self) -> &[u8] {
        &self.public
    }

    /// Opens a value sealed to this key with AAD `key_id`.
    pub fn open(&self, key_id: &str, sealed: &[u8]) -> Result<Vec<u8>, RecipientError> {
        if sealed.len() < PUBLIC_KEY_LEN + 16 {
            return Err(RecipientError::TooShort(sealed.len()));
        }
        let (enc, ciphertext) = sealed.split_at(PUBLIC_KEY_LEN);
        let encapped = <Kem as hpke::Kem>::EncappedKey::from_bytes(enc)
            .map_err(|e| RecipientError::Hpke(e.to_string()))?;
        hpke::single_shot_open::<AesGcm256, HkdfSha384, Kem>(
            &OpModeR::Base,
            &self.secret,
            &encapped,
            RECIPIENT_INFO,
            ciphertext,
            key_id.as_bytes(),
        )
        .map_err(|e| RecipientError::Hpke(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_and_open_round_trip_bound_to_key_id() {
        let r = RecipientKey::generate();
        assert_eq!(r.public_key().len(), PUBLIC_KEY_LEN);
        assert_eq!(r.public_key()[0], 4, "SEC1 uncompressed");
        let sealed = seal(r.public_key(), "demo", b"data key").unwrap();
        assert_eq!(r.open("demo", &sealed).unwrap(), b"data key");
        assert!(matches!(
            r.open("other", &sealed),
            Err(RecipientError::Hpke(_))
        ));
        let other = RecipientKey::generate();
        assert!(other.open("demo", &sealed).is_err());
        let mut tampered = sealed.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(r.open("demo", &tampered).is_err());
        assert_eq!(
            r.open("demo", &sealed[..50]),
            Err(RecipientError::TooShort(50))
        );
    }

    #[test]
    fn derived_keys_are_deterministic_and_work() {
        let a = RecipientKey::from_ikm(&[7; 64]).unwrap();
        let b = RecipientKey::from_ikm(&[7; 64]).unwrap();
        let c = RecipientKey::from_ikm(&[8; 64]).unwrap();
        assert_eq!(a.public_key(), b.public_key());
        assert_ne!(a.public_key(), c.public_key());
        let sealed = seal(a.public_key(), "k", b"x").unwrap();
        assert_eq!(b.open("k", &sealed).unwrap(), b"x");
        assert_eq!(
            RecipientKey::from_ikm(&[1; 47]).map(|_| ()),
            Err(RecipientError::ShortIkm(47))
        );
    }

    #[test]
    fn bad_public_keys_are_refused() {
        assert_eq!(
            check_public_key(&[4; 97]),
            Err(RecipientError::BadPublicKey(97))
        );
        assert_eq!(check_public_key(b""), Err(RecipientError::BadPublicKey(0)));
        assert!(seal(&[1, 2, 3], "k", b"x").is_err());
        check_public_key(RecipientKey::generate().public_key()).unwrap();
    }
}
