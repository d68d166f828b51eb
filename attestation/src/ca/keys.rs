//! Private and public key material on disk: PEM certificates, PKCS#8 (or SEC1) PEM P-384
//! keys written 0600 and refused when readable by group or others.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use p384::ecdsa::SigningKey;
use p384::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use x509_cert::der::{Decode, DecodePem, Encode, EncodePem};
use x509_cert::Certificate;

/// Largest key or certificate file read.
const MAX_PEM_FILE: u64 = 64 * 1024;

/// Why key material could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// I/O failure.
    #[error("Cannot {action} {path}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// File.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Private key readable by others.
    #[error(
        "Private key {path} has mode {mode:o}, readable by group or others: run `chmod 600 {path}`"
    )]
    Permissions {
        /// File.
        path: PathBuf,
        /// Its mode bits.
        mode: u32,
    },
    /// File too large.
    #[error("{0} is larger than {MAX_PEM_FILE} bytes: it is not a key or certificate")]
    TooLarge(PathBuf),
    /// Not a P-384 key.
    #[error(
        "{0} is not a P-384 private key in PEM (PKCS#8 \"PRIVATE KEY\" or SEC1 \"EC PRIVATE KEY\")"
    )]
    BadKey(PathBuf),
    /// Not a certificate.
    #[error("{path} is not an X.509 certificate in PEM or DER: {reason}")]
    BadCertificate {
        /// File.
        path: PathBuf,
        /// Parser message.
        reason: String,
    },
    /// Encoding failure.
    #[error("Cannot encode {0}")]
    Encode(&'static str),
    /// Refusing to overwrite.
    #[error("{0} already exists: remove it or choose another directory")]
    Exists(PathBuf),
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> KeyFileError {
    let path = path.to_path_buf();
    move |source| KeyFileError::Io {
        action,
        path,
        source,
    }
}

fn read_bounded(path: &Path) -> Result<Vec<u8>, KeyFileError> {
    let meta = std::fs::metadata(path).map_err(io("read", path))?;
    if meta.len() > MAX_PEM_FILE {
        return Err(KeyFileError::TooLarge(path.to_path_buf()));
    }
    std::fs::read(path).map_err(io("read", path))
}

/// Writes `bytes` to a new file with `mode` (refuses to overwrite).
pub fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), KeyFileError> {
    if path.exists() {
        return Err(KeyFileError::Exists(path.to_path_buf()));
    }
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io("create", path))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(io("write", path))?;
    // The umask may have cleared bits; set exactly what was asked.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io("chmod", path))
}

/// PKCS#8 PEM of a key.
pub fn key_to_pem(key: &SigningKey) -> Result<String, KeyFileError> {
    key.to_pkcs8_pem(LineEnding::LF)
        .map(|s| s.to_string())
        .map_err(|_| KeyFileError::Encode("the private key"))
}

/// Parses a P-384 private key from PEM (PKCS#8 or SEC1).
pub fn key_from_pem(pem: &str) -> Option<SigningKey> {
    if let Ok(k) = SigningKey::from_pkcs8_pem(pem) {
        return Some(k);
    }
    p384::SecretKey::from_sec1_pem(pem)
        .ok()
        .map(SigningKey::from)
}

/// Reads a private key file, refusing one readable by group or others.
pub fn read_private_key(path: &Path) -> Result<SigningKey, KeyFileError> {
    KeyFile::read(path)?.decode()
}

/// PEM labels of the private keys [`key_from_pem`] accepts.
const KEY_PEM_LABELS: [&str; 2] = [
    "-----BEGIN PRIVATE KEY-----",
    "-----BEGIN EC PRIVATE KEY-----",
];

/// A private key file read and checked (permissions, size, PEM label) but not decoded yet:
/// decoding checks the stored public key and derives the signing key's own, two P-384 scalar
/// multiplications that a caller may want to make elsewhere (see [`KeyFile::decode`]).
pub struct KeyFile {
    path: PathBuf,
    pem: String,
}

impl KeyFile {
    /// Reads `path`, refusing a file readable by group or others, larger than a key file can
    /// be, or without a private-key PEM block.
    pub fn read(path: &Path) -> Result<Self, KeyFileError> {
        let meta = std::fs::metadata(path).map_err(io("read", path))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyFileError::Permissions {
                path: path.to_path_buf(),
                mode,
            });
        }
        let bytes = read_bounded(path)?;
        let pem = String::from_utf8(bytes).map_err(|_| KeyFileError::BadKey(path.to_path_buf()))?;
        if !KEY_PEM_LABELS.iter().any(|label| pem.contains(label)) {
            return Err(KeyFileError::BadKey(path.to_path_buf()));
        }
        Ok(Self {
            path: path.to_path_buf(),
            pem,
        })
    }

    /// The P-384 signing key (PKCS#8 or SEC1).
    pub fn decode(self) -> Result<SigningKey, KeyFileError> {
        key_from_pem(&self.pem).ok_or(KeyFileError::BadKey(self.path))
    }
}

/// PEM of a certificate.
pub fn cert_to_pem(cert: &Certificate) -> Result<String, KeyFileError> {
    cert.to_pem(LineEnding::LF)
        .map_err(|_| KeyFileError::Encode("the certificate"))
}

/// DER of a certificate.
pub fn cert_to_der(cert: &Certificate) -> Result<Vec<u8>, KeyFileError> {
    cert.to_der()
        .map_err(|_| KeyFileError::Encode("the certificate"))
}

/// Parses a certificate given as PEM or DER.
pub fn cert_from_pem_or_der(bytes: &[u8]) -> Result<Certificate, String> {
    if bytes.starts_with(b"-----BEGIN") || bytes.first().is_some_and(u8::is_ascii_whitespace) {
        Certificate::from_pem(bytes).map_err(|e| e.to_string())
    } else {
        Certificate::from_der(bytes).map_err(|e| e.to_string())
    }
}

/// Reads a certificate file (PEM or DER).
pub fn read_certificate(path: &Path) -> Result<(Certificate, Vec<u8>), KeyFileError> {
    let bytes = read_bounded(path)?;
    let cert = cert_from_pem_or_der(&bytes).map_err(|reason| KeyFileError::BadCertificate {
        path: path.to_path_buf(),
        reason,
    })?;
    let der = cert_to_der(&cert)?;
    Ok((cert, der))
}
