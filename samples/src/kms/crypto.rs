//! Symmetric sealing of the key service: AES-256-GCM with a fresh 12-byte IV. A
//! `CiphertextBlob` is `version (1) ‖ key-id length (u8) ‖ key id ‖ IV ‖ ciphertext` with the
//! key id as AAD, so `Decrypt` finds the key from the blob. Envelope messages are sealed with a
//! fresh 32-byte data key (no AAD).

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};

/// Version byte of [`seal_blob`]'s format.
pub const BLOB_VERSION: u8 = 1;
/// IV length.
pub const IV_LEN: usize = 12;
/// Key length (AES-256).
pub const KEY_LEN: usize = 32;
/// GCM tag length.
pub const TAG_LEN: usize = 16;

/// Why sealing or opening failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// The OS random source failed.
    #[error("The OS random source failed: {0}")]
    Random(String),
    /// A key is not 32 bytes.
    #[error("An AES-256 key must be {KEY_LEN} bytes, got {0}")]
    KeyLength(usize),
    /// An IV is not 12 bytes.
    #[error("An AES-GCM IV must be {IV_LEN} bytes, got {0}")]
    IvLength(usize),
    /// A key id does not fit the blob format.
    #[error("Key id is {0} bytes; at most 255 fit in a ciphertext blob")]
    KeyIdLength(usize),
    /// The blob is not in the format.
    #[error("Ciphertext blob is malformed: {0}")]
    Malformed(String),
    /// Authentication failed.
    #[error(
        "AES-GCM authentication failed: wrong key or key id, or the ciphertext was tampered with"
    )]
    Authentication,
}

/// `n` random bytes from the OS.
pub fn random_bytes(n: usize) -> Result<Vec<u8>, CryptoError> {
    let mut v = vec![0; n];
    getrandom::fill(&mut v).map_err(|e| CryptoError::Random(e.to_string()))?;
    Ok(v)
}

fn cipher(key: &[u8]) -> Result<Aes256Gcm, CryptoError> {
    Aes256Gcm::new_from_slice(key).map_err(|_| CryptoError::KeyLength(key.len()))
}

/// AES-256-GCM with a fresh IV: `(iv, ciphertext ‖ tag)`.
pub fn seal(key: &[u8], aad: &[u8], plaintext: &[u8]) -> Result<(Vec<u8>, Vec<u8>), CryptoError> {
    let iv = random_bytes(IV_LEN)?;
    let nonce = Nonce::try_from(iv.as_slice()).map_err(|_| CryptoError::IvLength(iv.len()))?;
    let ct = cipher(key)?
        .encrypt(
            &nonce,
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| CryptoError::Authentication)?;
    Ok((iv, ct))
}

/// Opens what [`seal`] made.
pub fn open(key: &[u8], aad: &[u8], iv: &[u8], ciphertext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let nonce = Nonce::try_from(iv).map_err(|_| CryptoError::IvLength(iv.len()))?;
    cipher(key)?
        .decrypt(
            &nonce,
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .map_err(|_| CryptoError::Authentication)
}

/// The parts of a ciphertext blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob<'a> {
    /// Key the blob is sealed under.
    pub key_id: String,
    /// IV.
    pub iv: &'a [u8],
    /// Ciphertext and tag.
    pub ciphertext: &'a [u8],
}

/// Seals `plaintext` under `key` (named `key_id`) into a ciphertext blob.
pub fn seal_blob(key: &[u8], key_id: &str, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let id_len = u8::try_from(key_id.len()).map_err(|_| CryptoError::KeyIdLength(key_id.len()))?;
    let (iv, ct) = seal(key, key_id.as_bytes(), plaintext)?;
    let mut blob = Vec::with_capacity(2 + key_id.len() + IV_LEN + ct.len());
    blob.push(BLOB_VERSION);
    blob.push(id_len);
    blob.extend_from_slice(key_id.as_bytes());
    blob.extend_from_slice(&iv);
    blob.extend_from_slice(&ct);
    Ok(blob)
}

/// Splits a ciphertext blob without opening it.
pub fn parse_blob(blob: &[u8]) -> Result<Blob<'_>, CryptoError> {
    let (&version, rest) = blob
        .split_first()
        .ok_or_else(|| CryptoError::Malformed("empty".into()))?;
    if version != BLOB_VERSION {
        return Err(CryptoError::Malformed(format!(
            "version {version}, expected {BLOB_VERSION}"
        )));
    }
    let (&id_len, rest) = rest
        .split_first()
        .ok_or_else(|| CryptoError::Malformed("no key id length".into()))?;
    let id_len = usize::from(id_len);
    if rest.len() < id_len + IV_LEN + TAG_LEN {
        return Err(CryptoError::Malformed(format!(
            "{} bytes, too short for its key id, IV and tag",
            blob.len()
        )));
    }
    let (id, rest) = rest.split_at(id_len);
    let key_id = std::str::from_utf8(id)
        .map_err(|_| CryptoError::Malformed("key id is not UTF-8".into()))?
        .to_owned();
    let (iv, ciphertext) = rest.split_at(IV_LEN);
    Ok(Blob {
        key_id,
        iv,
        ciphertext,
    })
}

/// Opens a parsed blob with `key`.
pub fn open_blob(key: &[u8], blob: &Blob<'_>) -> Result<Vec<u8>, CryptoError> {
    open(key, blob.key_id.as_bytes(), blob.iv, blob.ciphertext)
}

/// A message sealed with a fresh data key.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedMessage {
    /// The fresh 32-byte data key (to be sealed by the key service, then dropped).
    pub data_key: Vec<u8>,
    /// IV.
    pub iv: Vec<u8>,
    /// Ciphertext and tag.
    pub ciphertext: Vec<u8>,
}

impl std::fmt::Debug for SealedMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedMessage")
            .field("ciphertext", &self.ciphertext.len())
            .finish_non_exhaustive()
    }
}

/// Seals `plaintext` with a fresh data key (AES-256-GCM, no AAD).
pub fn seal_message(plaintext: &[u8]) -> Result<SealedMessage, CryptoError> {
    let data_key = random_bytes(KEY_LEN)?;
    let (iv, ciphertext) = seal(&data_key, b"", plaintext)?;
    Ok(SealedMessage {
        data_key,
        iv,
        ciphertext,
    })
}

/// Opens an envelope message with its data key.
pub fn open_message(data_key: &[u8], iv: &[u8], ciphertext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    open(data_key, b"", iv, ciphertext)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_round_trip_names_its_key() {
        let key = random_bytes(KEY_LEN).unwrap();
        let blob = seal_blob(&key, "demo", b"secret").unwrap();
        let parts = parse_blob(&blob).unwrap();
        assert_eq!(parts.key_id, "demo");
        assert_eq!(open_blob(&key, &parts).unwrap(), b"secret");
        let other = random_bytes(KEY_LEN).unwrap();
        assert_eq!(open_blob(&other, &parts), Err(CryptoError::Authentication));
    }

    #[test]
    fn tampered_or_truncated_blobs_fail() {
        let key = random_bytes(KEY_LEN).unwrap();
        let blob = seal_blob(&key, "demo", b"secret").unwrap();
        for i in 0..blob.len() {
            let mut t = blob.clone();
            t[i] ^= 0x40;
            let opened = parse_blob(&t).and_then(|p| open_blob(&key, &p));
            assert!(opened.is_err(), "flipping byte {i} went unnoticed");
        }
        for n in 0..blob.len() {
            assert!(parse_blob(&blob[..n])
                .and_then(|p| open_blob(&key, &p))
                .is_err());
        }
        assert!(matches!(
            parse_blob(&[9, 0]),
            Err(CryptoError::Malformed(_))
        ));
        assert_eq!(
            seal_blob(&key, &"k".repeat(256), b"x"),
            Err(CryptoError::KeyIdLength(256))
        );
    }

    #[test]
    fn messages_open_only_with_their_data_key() {
        let m = seal_message(b"hello").unwrap();
        assert_eq!(m.data_key.len(), KEY_LEN);
        assert_eq!(
            open_message(&m.data_key, &m.iv, &m.ciphertext).unwrap(),
            b"hello"
        );
        assert!(open_message(&[0; 32], &m.iv, &m.ciphertext).is_err());
        assert_eq!(
            open_message(&m.data_key, &[0; 5], &m.ciphertext),
            Err(CryptoError::IvLength(5))
        );
    }
}
