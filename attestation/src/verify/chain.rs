//! Certificate chain checks: `cabundle[0]` is the pinned root (byte-equal DER), each
//! certificate is signed (ecdsa-with-SHA384, P-384) by the one before it and names it as
//! issuer, CA certificates have basicConstraints CA:true (and respect pathLen) and keyUsage
//! keyCertSign, the leaf has CA:false and digitalSignature, no unknown critical extensions.

use p384::ecdsa::signature::Verifier;
use p384::ecdsa::{DerSignature, VerifyingKey};
use p384::pkcs8::DecodePublicKey;
use x509_cert::der::oid::db::rfc5280::{
    ID_CE_AUTHORITY_KEY_IDENTIFIER, ID_CE_BASIC_CONSTRAINTS, ID_CE_EXT_KEY_USAGE, ID_CE_KEY_USAGE,
    ID_CE_SUBJECT_KEY_IDENTIFIER,
};
use x509_cert::der::oid::ObjectIdentifier;
use x509_cert::der::{Decode, Encode};
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage};
use x509_cert::Certificate;

use super::cache::VerifiedChain;
use super::VerifyError;

/// ecdsa-with-SHA384.
const ECDSA_WITH_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");

/// Extensions we understand (so may be critical).
const KNOWN_EXTENSIONS: [ObjectIdentifier; 5] = [
    ID_CE_BASIC_CONSTRAINTS,
    ID_CE_KEY_USAGE,
    ID_CE_SUBJECT_KEY_IDENTIFIER,
    ID_CE_AUTHORITY_KEY_IDENTIFIER,
    ID_CE_EXT_KEY_USAGE,
];

fn subject(cert: &Certificate) -> String {
    cert.tbs_certificate().subject().to_string()
}

/// The P-384 public key of a certificate.
pub fn public_key(cert: &Certificate) -> Result<VerifyingKey, String> {
    let spki = cert
        .tbs_certificate()
        .subject_public_key_info()
        .to_der()
        .map_err(|e| e.to_string())?;
    VerifyingKey::from_public_key_der(&spki).map_err(|_| "its key is not a P-384 EC key".into())
}

/// Parses the leaf and returns its key.
pub fn leaf_key(leaf_der: &[u8]) -> Result<VerifyingKey, VerifyError> {
    let cert =
        Certificate::from_der(leaf_der).map_err(|e| VerifyError::LeafCertificate(e.to_string()))?;
    public_key(&cert).map_err(VerifyError::LeafCertificate)
}

/// Checks the whole chain (all but validity times, which depend on the document).
pub fn verify_chain(
    root_der: &[u8],
    cabundle: &[Vec<u8>],
    leaf_der: &[u8],
) -> Result<VerifiedChain, VerifyError> {
    if cabundle.first().map(Vec::as_slice) != Some(root_der) {
        return Err(VerifyError::UntrustedRoot);
    }
    let ders: Vec<&[u8]> = cabundle
        .iter()
        .map(Vec::as_slice)
        .chain(std::iter::once(leaf_der))
        .collect();
    let certs = ders
        .iter()
        .enumerate()
        .map(|(index, der)| {
            Certificate::from_der(der).map_err(|e| VerifyError::ChainCertificate {
                index,
                reason: e.to_string(),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let keys = certs
        .iter()
        .enumerate()
        .map(|(index, c)| {
            public_key(c).map_err(|reason| VerifyError::ChainCertificate { index, reason })
        })
        .collect::<Result<Vec<_>, _>>()?;

    // Signatures: the root by itself, every other by its predecessor.
    for (index, cert) in certs.iter().enumerate() {
        let issuer_index = index.saturating_sub(1);
        let (Some(issuer), Some(issuer_key)) = (certs.get(issuer_index), keys.get(issuer_index))
        else {
            return Err(VerifyError::ChainSignature {
                index,
                reason: "no issuer".into(),
            });
        };
        check_signature(cert, issuer, issuer_key).map_err(|reason| {
            VerifyError::ChainSignature {
                index,
                reason: format!("{} ({reason})", subject(cert)),
            }
        })?;
    }

    let last = certs.len().saturating_sub(1);
    for (index, cert) in certs.iter().enumerate() {
        let is_leaf = index == last;
        // CA certificates strictly between this one and the leaf.
        let below = last.saturating_sub(index).saturating_sub(1);
        check_constraints(cert, is_leaf, below).map_err(|reason| {
            VerifyError::BasicConstraints {
                subject: subject(cert),
                reason,
            }
        })?;
        check_key_usage(cert, is_leaf).map_err(|reason| VerifyError::KeyUsage {
            subject: subject(cert),
            reason,
        })?;
    }

    let windows = certs
        .iter()
        .map(|c| {
            let v = c.tbs_certificate().validity();
            (
                subject(c),
                millis(v.not_before.to_unix_duration()),
                millis(v.not_after.to_unix_duration()),
            )
        })
        .collect();
    let leaf_key = keys
        .get(last)
        .copied()
        .ok_or(VerifyError::LeafCertificate("missing".into()))?;
    Ok(VerifiedChain { leaf_key, windows })
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Checks each certificate's validity at `timestamp_ms`.
pub fn check_validity(chain: &VerifiedChain, timestamp_ms: u64) -> Result<(), VerifyError> {
    for (subject, not_before, not_after) in &chain.windows {
        if timestamp_ms < *not_before {
            return Err(VerifyError::CertificateNotYetValid {
                subject: subject.clone(),
                not_before_ms: *not_before,
                timestamp_ms,
            });
        }
        if timestamp_ms > *not_after {
            return Err(VerifyError::CertificateExpired {
                subject: subject.clone(),
                not_after_ms: *not_after,
                timestamp_ms,
            });
        }
    }
    Ok(())
}

fn check_signature(
    cert: &Certificate,
    issuer: &Certificate,
    key: &VerifyingKey,
) -> Result<(), String> {
    if cert.signature_algorithm().oid != ECDSA_WITH_SHA384
        || cert.tbs_certificate().signature().oid != ECDSA_WITH_SHA384
    {
        return Err("signature algorithm is not ecdsa-with-SHA384".into());
    }
    if cert.tbs_certificate().issuer() != issuer.tbs_certificate().subject() {
        return Err(format!(
            "issuer name is {}, but the previous certificate is {}",
            cert.tbs_certificate().issuer(),
            subject(issuer)
        ));
    }
    let tbs = cert.tbs_certificate().to_der().map_err(|e| e.to_string())?;
    let sig_bytes = cert
        .signature()
        .as_bytes()
        .ok_or("signature bit string is not whole bytes")?;
    let sig = DerSignature::from_bytes(sig_bytes)
        .map_err(|_| "signature is not a DER ECDSA signature")?;
    key.verify(&tbs, &sig)
        .map_err(|_| "signature does not verify with the issuer's key".into())
}

fn check_constraints(cert: &Certificate, is_leaf: bool, cas_below: usize) -> Result<(), String> {
    let tbs = cert.tbs_certificate();
    if let Some(exts) = tbs.extensions() {
        if let Some(e) = exts
            .iter()
            .find(|e| e.critical && !KNOWN_EXTENSIONS.contains(&e.extn_id))
        {
            return Err(format!("unknown critical extension {}", e.extn_id));
        }
    }
    let bc = tbs
        .get_extension::<BasicConstraints>()
        .map_err(|e| format!("basicConstraints unreadable: {e}"))?;
    match (is_leaf, bc) {
        (true, None) => Ok(()),
        (true, Some((_, bc))) if !bc.ca => Ok(()),
        (true, Some(_)) => Err("the leaf is a CA (CA:true); it must be CA:false".into()),
        (false, None) => Err("a CA certificate has no basicConstraints".into()),
        (false, Some((_, bc))) if !bc.ca => Err("a CA certificate has CA:false".into()),
        (false, Some((_, bc))) => match bc.path_len_constraint {
            Some(n) if usize::from(n) < cas_below => Err(format!(
                "pathLen {n} but {cas_below} CA certificates follow"
            )),
            _ => Ok(()),
        },
    }
}

fn check_key_usage(cert: &Certificate, is_leaf: bool) -> Result<(), String> {
    let ku = cert
        .tbs_certificate()
        .get_extension::<KeyUsage>()
        .map_err(|e| format!("keyUsage unreadable: {e}"))?;
    let Some((_, ku)) = ku else {
        return Err("no keyUsage extension".into());
    };
    if is_leaf && !ku.digital_signature() {
        return Err("the leaf's keyUsage lacks digitalSignature".into());
    }
    if !is_leaf && !ku.key_cert_sign() {
        return Err("a CA certificate's keyUsage lacks keyCertSign".into());
    }
    Ok(())
}
