//! EIF signing as AWS's `eif_signer`: the signature section holds the signing certificate
//! (PEM) and a COSE_Sign1 ES384 over `{register_index: 0, register_value: PCR0}`; PCR8 is
//! `SHA384(48 zero bytes ‖ SHA384(certificate DER))`.

pub mod section;

use p384::ecdsa::SigningKey;
use x509_cert::der::{Encode, EncodePem};
use x509_cert::Certificate;

use crate::ca::cert::CertError;
use crate::ca::keys::cert_from_pem_or_der;
use crate::cbor::CborError;
use crate::cose::{self, CoseError};
use crate::eif::{Eif, Section, SectionType};
use crate::pcr::{measure, Measurements, Pcr};
use section::{PcrInfo, PcrSignature};

/// Why an image could not be signed, or its signature does not check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigError {
    /// No signature section.
    #[error("The image has no signature section: sign it with `enclave sign-eif` or build with --signing-certificate/--private-key")]
    NotSigned,
    /// Section unreadable.
    #[error("The signature section is not valid CBOR of PCR signatures")]
    Section(#[source] CborError),
    /// Section has no entry.
    #[error("The signature section holds no signature")]
    Empty,
    /// Certificate unreadable.
    #[error("The signing certificate is not an X.509 certificate (PEM or DER): {0}")]
    Certificate(String),
    /// Certificate key unusable.
    #[error("The signing certificate's key is not P-384: sign with a P-384 (secp384r1) key")]
    CertificateKey,
    /// Key does not match certificate.
    #[error("The private key does not belong to the signing certificate: give the matching pair")]
    KeyMismatch,
    /// COSE problem (structure, algorithm, signature).
    #[error("The PCR0 signature does not check")]
    Cose(#[source] CoseError),
    /// Signed payload unreadable.
    #[error("The signed payload is not a PCR record")]
    Payload(#[source] CborError),
    /// Signed a different register.
    #[error("The signature covers PCR{0}, not PCR0")]
    WrongRegister(i32),
    /// Signed PCR0 differs from the image's.
    #[error("The signature is for PCR0 {signed}, but the image's PCR0 is {actual}: the image was changed after signing")]
    Pcr0Mismatch {
        /// Signed value, hex.
        signed: String,
        /// Image value, hex.
        actual: String,
    },
    /// Encoding failure.
    #[error("Cannot encode the signing certificate")]
    Encode,
}

impl From<CertError> for SigError {
    fn from(e: CertError) -> Self {
        Self::Certificate(e.to_string())
    }
}

/// A verified image signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignatureInfo {
    /// PCR8: measurement of the signing certificate.
    pub pcr8: Pcr,
    /// The signed PCR0.
    pub pcr0: Pcr,
    /// Signing certificate subject.
    pub subject: String,
    /// Signing certificate issuer.
    pub issuer: String,
}

fn parse_cert(bytes: &[u8]) -> Result<(Certificate, Vec<u8>), SigError> {
    let cert = cert_from_pem_or_der(bytes).map_err(SigError::Certificate)?;
    let der = cert.to_der().map_err(|_| SigError::Encode)?;
    Ok((cert, der))
}

/// PCR8 of a signing certificate given as PEM or DER (nitro-cli's `pcr --signing-certificate`).
pub fn pcr8_of_certificate(cert: &[u8]) -> Result<Pcr, SigError> {
    Ok(measure(&parse_cert(cert)?.1))
}

/// Signs an image with a certificate (PEM or DER; stored as PEM like AWS) and its key.
/// Replaces an existing signature section, else appends one. Returns the signed image and
/// its PCR8.
pub fn sign_eif(eif: &Eif, cert: &[u8], key: &SigningKey) -> Result<(Eif, Pcr), SigError> {
    let (parsed, der) = parse_cert(cert)?;
    let cert_key = crate::verify::certificate_key(&parsed).map_err(|_| SigError::CertificateKey)?;
    if cert_key != *key.verifying_key() {
        return Err(SigError::KeyMismatch);
    }
    let pem = parsed
        .to_pem(p384::pkcs8::LineEnding::LF)
        .map_err(|_| SigError::Encode)?;
    let pcr0 = Measurements::of(eif).pcr0;
    let payload = PcrInfo {
        register_index: 0,
        register_value: pcr0.to_vec(),
    }
    .to_cbor();
    let signature = cose::sign(payload, key, false).map_err(SigError::Cose)?;
    let data = section::encode(&[PcrSignature {
        signing_certificate: pem.into_bytes(),
        signature,
    }]);
    let mut signed = eif.clone();
    match signed
        .sections
        .iter_mut()
        .find(|s| s.kind == SectionType::Signature)
    {
        Some(s) => s.data = data,
        None => signed.sections.push(Section {
            kind: SectionType::Signature,
            flags: 0,
            data,
        }),
    }
    Ok((signed, measure(&der)))
}

/// Checks an image's signature: the first entry's COSE_Sign1 verifies with its certificate's
/// key and covers the image's PCR0. Returns PCR8 and the certificate's names.
pub fn check_signature(eif: &Eif) -> Result<SignatureInfo, SigError> {
    let bytes = eif.signature().ok_or(SigError::NotSigned)?;
    let entries = section::decode(bytes).map_err(SigError::Section)?;
    let first = entries.first().ok_or(SigError::Empty)?;
    let (cert, der) = parse_cert(&first.signing_certificate)?;
    let key = crate::verify::certificate_key(&cert).map_err(|_| SigError::CertificateKey)?;
    let sign1 = cose::parse(&first.signature, section::MAX_SECTION_SIZE).map_err(SigError::Cose)?;
    sign1.verify(&key).map_err(SigError::Cose)?;
    let info = PcrInfo::from_cbor(sign1.payload()).map_err(SigError::Payload)?;
    if info.register_index != 0 {
        return Err(SigError::WrongRegister(info.register_index));
    }
    let actual = Measurements::of(eif).pcr0;
    if info.register_value != actual {
        return Err(SigError::Pcr0Mismatch {
            signed: hex::encode(&info.register_value),
            actual: hex::encode(actual),
        });
    }
    Ok(SignatureInfo {
        pcr8: measure(&der),
        pcr0: actual,
        subject: cert.tbs_certificate().subject().to_string(),
        issuer: cert.tbs_certificate().issuer().to_string(),
    })
}
