//! X.509 certificates for the local CA, built with `x509-cert`: a self-signed root, a host
//! intermediate (pathlen 0) and per-enclave leaves, all P-384 with ecdsa-with-SHA384,
//! basicConstraints and keyUsage critical, subject and authority key identifiers.

use std::str::FromStr;
use std::time::SystemTime;

use p384::ecdsa::{DerSignature, SigningKey, VerifyingKey};
use x509_cert::builder::profile::BuilderProfile;
use x509_cert::builder::{Builder, CertificateBuilder};
use x509_cert::der::asn1::OctetString;
use x509_cert::der::flagset::FlagSet;
use x509_cert::der::oid::AssociatedOid;
use x509_cert::der::Encode;
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, KeyUsage, KeyUsages, SubjectKeyIdentifier,
};
use x509_cert::ext::Extension;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::{SubjectPublicKeyInfoOwned, SubjectPublicKeyInfoRef};
use x509_cert::time::{Time, Validity};
use x509_cert::Certificate;

/// Why a certificate could not be built.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// The subject name is not a valid RFC 4514 string.
    #[error("Certificate subject {0:?} is not a valid name: use e.g. \"CN=enclave root CA\"")]
    Name(String),
    /// A validity time cannot be represented.
    #[error("Certificate validity time cannot be encoded (before 1970 or after 9999)")]
    Time,
    /// Randomness unavailable.
    #[error("Cannot get random bytes for the serial number: the OS random source failed")]
    Random,
    /// DER or builder failure.
    #[error("Cannot build the certificate: {0}")]
    Build(String),
}

/// What a certificate may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CertProfile {
    /// basicConstraints cA.
    pub ca: bool,
    /// basicConstraints pathLenConstraint.
    pub path_len: Option<u8>,
    /// keyUsage bits.
    pub key_usage: FlagSet<KeyUsages>,
}

impl CertProfile {
    /// Root CA: CA, keyCertSign | cRLSign.
    pub fn root() -> Self {
        Self {
            ca: true,
            path_len: None,
            key_usage: KeyUsages::KeyCertSign | KeyUsages::CRLSign,
        }
    }

    /// Host intermediate: CA with pathlen 0, keyCertSign | cRLSign.
    pub fn intermediate() -> Self {
        Self {
            path_len: Some(0),
            ..Self::root()
        }
    }

    /// Enclave leaf: not a CA, digitalSignature.
    pub fn leaf() -> Self {
        Self {
            ca: false,
            path_len: None,
            key_usage: KeyUsages::DigitalSignature.into(),
        }
    }
}

struct Profile {
    subject: Name,
    issuer: Option<Name>,
    spec: CertProfile,
}

fn ext<T: Encode + AssociatedOid>(value: &T, critical: bool) -> x509_cert::der::Result<Extension> {
    Ok(Extension {
        extn_id: T::OID,
        critical,
        extn_value: OctetString::new(value.to_der()?)?,
    })
}

impl BuilderProfile for Profile {
    fn get_issuer(&self, subject: &Name) -> Name {
        self.issuer.clone().unwrap_or_else(|| subject.clone())
    }

    fn get_subject(&self) -> Name {
        self.subject.clone()
    }

    fn build_extensions(
        &self,
        spk: SubjectPublicKeyInfoRef<'_>,
        issuer_spk: SubjectPublicKeyInfoRef<'_>,
        _tbs: &x509_cert::TbsCertificate,
    ) -> x509_cert::builder::Result<Vec<Extension>> {
        let bc = BasicConstraints {
            ca: self.spec.ca,
            path_len_constraint: self.spec.path_len,
        };
        Ok(vec![
            ext(&bc, true)?,
            ext(&KeyUsage(self.spec.key_usage), true)?,
            ext(&SubjectKeyIdentifier::try_from(spk)?, false)?,
            ext(&AuthorityKeyIdentifier::try_from(issuer_spk)?, false)?,
        ])
    }
}

fn random_serial() -> Result<SerialNumber, CertError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|_| CertError::Random)?;
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    SerialNumber::new(&bytes).map_err(|e| CertError::Build(e.to_string()))
}

fn time(t: SystemTime) -> Result<Time, CertError> {
    Time::try_from(t).map_err(|_| CertError::Time)
}

/// Issues a certificate for `subject_key` named `subject` (RFC 4514, e.g. "CN=x"), signed
/// by `issuer` (its certificate and key), or self-signed by `self_key` when `issuer` is None.
pub fn issue(
    spec: CertProfile,
    subject: &str,
    subject_key: &VerifyingKey,
    issuer: Option<(&Certificate, &SigningKey)>,
    self_key: Option<&SigningKey>,
    not_before: SystemTime,
    not_after: SystemTime,
) -> Result<Certificate, CertError> {
    let subject_name = Name::from_str(subject).map_err(|_| CertError::Name(subject.to_owned()))?;
    let signer = match (issuer, self_key) {
        (Some((_, key)), _) => key,
        (None, Some(key)) => key,
        (None, None) => {
            return Err(CertError::Build(
                "no issuer key: give the issuer or the self-signing key".into(),
            ))
        }
    };
    let profile = Profile {
        subject: subject_name,
        issuer: issuer.map(|(c, _)| c.tbs_certificate().subject().clone()),
        spec,
    };
    let spki = SubjectPublicKeyInfoOwned::from_key(subject_key)
        .map_err(|e| CertError::Build(e.to_string()))?;
    let validity = Validity::new(time(not_before)?, time(not_after)?);
    let builder = CertificateBuilder::new(profile, random_serial()?, validity, spki)
        .map_err(|e| CertError::Build(e.to_string()))?;
    builder
        .build::<_, DerSignature>(signer)
        .map_err(|e| CertError::Build(e.to_string()))
}
