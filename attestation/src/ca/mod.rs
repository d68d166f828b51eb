//! The local CA: `ca init` makes a P-384 root and a host intermediate in a directory;
//! the VMM loads the intermediate and issues each enclave a fresh leaf key and certificate,
//! whose [`LeafAttester`] signs that enclave's attestation documents.

mod attester;
pub mod cert;
pub mod keys;

pub use attester::{now_ms, LeafAttester};
pub use cert::{CertError, CertProfile};
pub use keys::KeyFileError;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use p384::ecdsa::SigningKey;
use p384::elliptic_curve::Generate;
use x509_cert::Certificate;

/// Default CA directory.
pub const DEFAULT_CA_DIR: &str = "/var/lib/enclave/ca";
/// Environment variable overriding the CA directory.
pub const CA_DIR_ENV: &str = "ENCLAVE_CA_DIR";
/// Root certificate file.
pub const ROOT_CERT: &str = "root.pem";
/// Root key file (may be removed after `ca init`).
pub const ROOT_KEY: &str = "root.key";
/// Intermediate certificate file.
pub const INTERMEDIATE_CERT: &str = "intermediate.pem";
/// Intermediate key file.
pub const INTERMEDIATE_KEY: &str = "intermediate.key";
/// Root lifetime.
pub const ROOT_LIFETIME: Duration = Duration::from_secs(20 * 365 * 24 * 3600);
/// Intermediate lifetime.
pub const INTERMEDIATE_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// Backdating of every certificate, for clock skew.
pub const BACKDATE: Duration = Duration::from_secs(60);

/// Why the CA could not be created, loaded or used.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// Key or certificate file problem.
    #[error("CA key material")]
    KeyFile(#[from] KeyFileError),
    /// Certificate building problem.
    #[error("Cannot issue a certificate")]
    Cert(#[from] CertError),
    /// Key generation failed.
    #[error("Cannot generate a P-384 key: the OS random source failed")]
    KeyGen,
    /// Directory problem.
    #[error("Cannot create the CA directory {path}: check the parent exists and is writable (or set {CA_DIR_ENV})")]
    Dir {
        /// Directory.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A CA already exists.
    #[error(
        "{0} already holds a CA ({ROOT_CERT}): remove the directory first or pass another --dir"
    )]
    Exists(PathBuf),
    /// Time arithmetic overflow.
    #[error("Certificate lifetime overflows the clock: choose a shorter lifetime")]
    Lifetime,
}

/// The CA directory: `ENCLAVE_CA_DIR` or [`DEFAULT_CA_DIR`].
pub fn default_dir() -> PathBuf {
    std::env::var_os(CA_DIR_ENV)
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from(DEFAULT_CA_DIR), PathBuf::from)
}

/// A fresh P-384 signing key from the OS random source.
pub fn generate_key() -> Result<SigningKey, CaError> {
    SigningKey::try_generate().map_err(|_| CaError::KeyGen)
}

/// A leaf: its key, certificate and the chain to present with it.
#[derive(Clone, Debug)]
pub struct Leaf {
    /// The leaf's private key (lives only in the VMM).
    pub key: SigningKey,
    /// The leaf certificate, DER.
    pub certificate: Vec<u8>,
    /// `[root, intermediate]`, DER, root first.
    pub cabundle: Vec<Vec<u8>>,
}

/// The host's issuing CA: root certificate, intermediate certificate and key.
#[derive(Clone, Debug)]
pub struct Ca {
    root_der: Vec<u8>,
    intermediate: Certificate,
    intermediate_der: Vec<u8>,
    intermediate_key: SigningKey,
}

/// A freshly generated CA, with the root key (for `ca init` to write, then forget).
pub struct NewCa {
    /// The CA.
    pub ca: Ca,
    /// The root certificate.
    pub root: Certificate,
    /// The root key.
    pub root_key: SigningKey,
}

impl Ca {
    /// Generates a root and an intermediate in memory.
    pub fn generate() -> Result<NewCa, CaError> {
        let now = SystemTime::now();
        let start = now.checked_sub(BACKDATE).ok_or(CaError::Lifetime)?;
        let root_key = generate_key()?;
        let root = cert::issue(
            CertProfile::root(),
            "CN=enclave root CA,O=enclave",
            root_key.verifying_key(),
            None,
            Some(&root_key),
            start,
            now.checked_add(ROOT_LIFETIME).ok_or(CaError::Lifetime)?,
        )?;
        let intermediate_key = generate_key()?;
        let intermediate = cert::issue(
            CertProfile::intermediate(),
            "CN=enclave host intermediate CA,O=enclave",
            intermediate_key.verifying_key(),
            Some((&root, &root_key)),
            None,
            start,
            now.checked_add(INTERMEDIATE_LIFETIME)
                .ok_or(CaError::Lifetime)?,
        )?;
        let ca = Self {
            root_der: keys::cert_to_der(&root)?,
            intermediate_der: keys::cert_to_der(&intermediate)?,
            intermediate,
            intermediate_key,
        };
        Ok(NewCa { ca, root, root_key })
    }

    /// Creates a CA in `dir`: root.pem, root.key (0600), intermediate.pem, intermediate.key
    /// (0600). Refuses a directory that already holds one.
    pub fn init(dir: &Path) -> Result<Self, CaError> {
        if dir.join(ROOT_CERT).exists() {
            return Err(CaError::Exists(dir.to_path_buf()));
        }
        std::fs::create_dir_all(dir).map_err(|source| CaError::Dir {
            path: dir.to_path_buf(),
            source,
        })?;
        let new = Self::generate()?;
        keys::write_new(
            &dir.join(ROOT_KEY),
            keys::key_to_pem(&new.root_key)?.as_bytes(),
            0o600,
        )?;
        keys::write_new(
            &dir.join(INTERMEDIATE_KEY),
            keys::key_to_pem(&new.ca.intermediate_key)?.as_bytes(),
            0o600,
        )?;
        keys::write_new(
            &dir.join(INTERMEDIATE_CERT),
            keys::cert_to_pem(&new.ca.intermediate)?.as_bytes(),
            0o644,
        )?;
        // The root certificate last: its presence marks a complete CA.
        keys::write_new(
            &dir.join(ROOT_CERT),
            keys::cert_to_pem(&new.root)?.as_bytes(),
            0o644,
        )?;
        Ok(new.ca)
    }

    /// Loads the CA from `dir` (the root key is not needed).
    pub fn load(dir: &Path) -> Result<Self, CaError> {
        CaFiles::read(dir)?.load()
    }

    /// The root certificate, DER: what verifiers pin.
    pub fn root_der(&self) -> &[u8] {
        &self.root_der
    }

    /// The intermediate certificate, DER.
    pub fn intermediate_der(&self) -> &[u8] {
        &self.intermediate_der
    }

    /// `[root, intermediate]`.
    pub fn cabundle(&self) -> Vec<Vec<u8>> {
        vec![self.root_der.clone(), self.intermediate_der.clone()]
    }

    /// A fresh leaf for `enclave_id`, valid from a minute ago for `valid_for`.
    pub fn issue_leaf(&self, enclave_id: &str, valid_for: Duration) -> Result<Leaf, CaError> {
        let now = SystemTime::now();
        self.issue_leaf_at(
            enclave_id,
            now.checked_sub(BACKDATE).ok_or(CaError::Lifetime)?,
            now.checked_add(valid_for).ok_or(CaError::Lifetime)?,
        )
    }

    /// A fresh leaf valid over `[not_before, not_after]`.
    pub fn issue_leaf_at(
        &self,
        enclave_id: &str,
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> Result<Leaf, CaError> {
        let key = generate_key()?;
        let subject = format!("CN={},O=enclave", escape_rdn(enclave_id));
        let cert = cert::issue(
            CertProfile::leaf(),
            &subject,
            key.verifying_key(),
            Some((&self.intermediate, &self.intermediate_key)),
            None,
            not_before,
            not_after,
        )?;
        Ok(Leaf {
            key,
            certificate: keys::cert_to_der(&cert)?,
            cabundle: self.cabundle(),
        })
    }
}

/// The CA's files read and checked, with the intermediate key not decoded yet. Reading is
/// cheap and says whether the directory holds a usable CA; [`CaFiles::load`] then makes the
/// P-384 arithmetic of decoding the key (about a millisecond) where the caller likes: the VMM
/// reads the files during the launch and loads the key after it.
pub struct CaFiles {
    root_der: Vec<u8>,
    intermediate: Certificate,
    intermediate_der: Vec<u8>,
    intermediate_key: keys::KeyFile,
}

impl CaFiles {
    /// Reads the root and intermediate certificates and the intermediate key file from `dir`.
    pub fn read(dir: &Path) -> Result<Self, CaError> {
        let (_, root_der) = keys::read_certificate(&dir.join(ROOT_CERT))?;
        let (intermediate, intermediate_der) =
            keys::read_certificate(&dir.join(INTERMEDIATE_CERT))?;
        let intermediate_key = keys::KeyFile::read(&dir.join(INTERMEDIATE_KEY))?;
        Ok(Self {
            root_der,
            intermediate,
            intermediate_der,
            intermediate_key,
        })
    }

    /// Decodes the intermediate key: the CA, ready to issue leaves.
    pub fn load(self) -> Result<Ca, CaError> {
        Ok(Ca {
            root_der: self.root_der,
            intermediate: self.intermediate,
            intermediate_der: self.intermediate_der,
            intermediate_key: self.intermediate_key.decode()?,
        })
    }
}

/// Keeps an RFC 4514 attribute value to safe characters.
fn escape_rdn(value: &str) -> String {
    let cleaned: String = value
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ' '))
        .take(64)
        .collect();
    if cleaned.trim().is_empty() {
        "enclave".to_owned()
    } else {
        cleaned.trim().to_owned()
    }
}
