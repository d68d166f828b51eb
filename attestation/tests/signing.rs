//! EIF signing: round trip, PCR8 computed independently, tampering detected, AWS's section
//! encoding (integer arrays, PEM certificate, untagged COSE_Sign1).

use std::time::{Duration, SystemTime};

use attestation::ca::{cert, keys, CertProfile};
use attestation::eif::{Eif, EifWriter, SectionType};
use attestation::pcr::Measurements;
use attestation::signing::{check_signature, pcr8_of_certificate, section, sign_eif, SigError};
use ciborium::value::Value;
use sha2::{Digest, Sha384};
use x509_cert::der::Encode;

fn image() -> Eif {
    let mut w = EifWriter::new(b"kernel".to_vec(), b"cmdline".to_vec());
    w.metadata = Some(b"{}".to_vec());
    w.ramdisks = vec![b"ramdisk0".to_vec(), b"ramdisk1".to_vec()];
    w.into_eif()
}

fn signer() -> (p384::ecdsa::SigningKey, x509_cert::Certificate) {
    let key = attestation::ca::generate_key().unwrap();
    let now = SystemTime::now();
    let c = cert::issue(
        CertProfile::leaf(),
        "CN=image signer,O=example",
        key.verifying_key(),
        None,
        Some(&key),
        now - Duration::from_secs(60),
        now + Duration::from_secs(86400),
    )
    .unwrap();
    (key, c)
}

fn independent_pcr8(der: &[u8]) -> [u8; 48] {
    let inner = Sha384::digest(der);
    let mut h = Sha384::new();
    h.update([0u8; 48]);
    h.update(inner);
    h.finalize().into()
}

#[test]
fn sign_then_check_round_trip() {
    let (key, c) = signer();
    let pem = keys::cert_to_pem(&c).unwrap();
    let der = c.to_der().unwrap();
    let (signed, pcr8) = sign_eif(&image(), pem.as_bytes(), &key).unwrap();
    assert_eq!(pcr8, independent_pcr8(&der));
    assert_eq!(pcr8_of_certificate(pem.as_bytes()).unwrap(), pcr8);
    assert_eq!(pcr8_of_certificate(&der).unwrap(), pcr8);

    // Survives encoding, and PCR0-2 are unchanged by the signature section.
    let bytes = signed.to_bytes().unwrap();
    let parsed = Eif::parse(&bytes).unwrap();
    assert_eq!(Measurements::of(&parsed), Measurements::of(&image()));
    let info = check_signature(&parsed).unwrap();
    assert_eq!(info.pcr8, pcr8);
    assert_eq!(info.pcr0, Measurements::of(&image()).pcr0);
    assert!(info.subject.contains("image signer"));

    // Re-signing replaces the section rather than adding one.
    let (again, _) = sign_eif(&parsed, &der, &key).unwrap();
    let count = again
        .sections
        .iter()
        .filter(|s| s.kind == SectionType::Signature)
        .count();
    assert_eq!(count, 1);
    check_signature(&again).unwrap();
}

#[test]
fn section_is_encoded_as_aws_writes_it() {
    let (key, c) = signer();
    let pem = keys::cert_to_pem(&c).unwrap();
    let (signed, _) = sign_eif(&image(), pem.as_bytes(), &key).unwrap();
    let raw: Value = ciborium::from_reader(signed.signature().unwrap()).unwrap();
    let Value::Array(entries) = raw else {
        panic!("array")
    };
    let Value::Map(fields) = &entries[0] else {
        panic!("map")
    };
    assert_eq!(fields[0].0, Value::Text("signing_certificate".into()));
    assert_eq!(fields[1].0, Value::Text("signature".into()));
    // Vec<u8> without serde_bytes: an array of integers; the certificate is the PEM text.
    let Value::Array(cert_ints) = &fields[0].1 else {
        panic!("integer array")
    };
    let cert_bytes: Vec<u8> = cert_ints
        .iter()
        .map(|v| u8::try_from(v.as_integer().unwrap()).unwrap())
        .collect();
    assert!(cert_bytes.starts_with(b"-----BEGIN CERTIFICATE-----"));
    let entries = section::decode(signed.signature().unwrap()).unwrap();
    // The COSE_Sign1 is untagged (aws-nitro-enclaves-cose `as_bytes(false)`): a 4-array.
    assert_eq!(entries[0].signature[0], 0x84);
}

#[test]
fn tampering_is_detected() {
    let (key, c) = signer();
    let der = c.to_der().unwrap();
    let (signed, _) = sign_eif(&image(), &der, &key).unwrap();

    // Image changed after signing.
    let mut changed = signed.clone();
    let ramdisk = changed
        .sections
        .iter_mut()
        .find(|s| s.kind == SectionType::Ramdisk)
        .unwrap();
    ramdisk.data.push(0);
    assert!(matches!(
        check_signature(&changed),
        Err(SigError::Pcr0Mismatch { .. })
    ));

    // Signature bytes flipped.
    let mut entries = section::decode(signed.signature().unwrap()).unwrap();
    let last = entries[0].signature.len() - 1;
    entries[0].signature[last] ^= 1;
    let mut flipped = signed.clone();
    flipped
        .sections
        .iter_mut()
        .find(|s| s.kind == SectionType::Signature)
        .unwrap()
        .data = section::encode(&entries);
    assert!(matches!(check_signature(&flipped), Err(SigError::Cose(_))));

    // Certificate swapped for another signer's.
    let (_, other) = signer();
    let mut entries = section::decode(signed.signature().unwrap()).unwrap();
    entries[0].signing_certificate = keys::cert_to_pem(&other).unwrap().into_bytes();
    let mut swapped = signed.clone();
    swapped
        .sections
        .iter_mut()
        .find(|s| s.kind == SectionType::Signature)
        .unwrap()
        .data = section::encode(&entries);
    assert!(matches!(check_signature(&swapped), Err(SigError::Cose(_))));

    // Garbage section, unsigned image, mismatched key.
    let mut garbage = signed.clone();
    garbage
        .sections
        .iter_mut()
        .find(|s| s.kind == SectionType::Signature)
        .unwrap()
        .data = vec![0xff, 0x00];
    assert!(matches!(
        check_signature(&garbage),
        Err(SigError::Section(_))
    ));
    assert!(matches!(
        check_signature(&image()),
        Err(SigError::NotSigned)
    ));
    let (other_key, _) = signer();
    assert!(matches!(
        sign_eif(&image(), &der, &other_key),
        Err(SigError::KeyMismatch)
    ));
}
