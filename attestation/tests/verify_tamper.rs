//! The verifier against valid documents and a table of tampered ones, each of which must fail
//! with the check that names the tampering.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use attestation::ca::{cert, Ca, CertProfile, LeafAttester};
use attestation::cose::CoseError;
use attestation::document::{AttestationDocument, PayloadError};
use attestation::verify::{verify, Policy, VerifyError};
use attestation::CborError;
use ciborium::value::Value;
use coset::{iana, CoseSign1Builder, HeaderBuilder, TaggedCborSerializable};
use p384::ecdsa::signature::Signer;
use p384::ecdsa::{Signature, SigningKey};
use x509_cert::der::Encode;
use x509_cert::ext::pkix::KeyUsages;

const NONCE: &[u8] = b"nonce-0123";

struct World {
    ca: Ca,
    root_key: SigningKey,
    root: x509_cert::Certificate,
    other: Ca,
    attester: LeafAttester,
    now: SystemTime,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let new = Ca::generate().unwrap();
        let other = Ca::generate().unwrap().ca;
        let leaf = new
            .ca
            .issue_leaf("enc-00000000000000aa", Duration::from_secs(3600))
            .unwrap();
        World {
            attester: LeafAttester::new(leaf, "enc-00000000000000aa", false),
            ca: new.ca,
            root_key: new.root_key,
            root: new.root,
            other,
            now: SystemTime::now(),
        }
    })
}

fn now_ms() -> u64 {
    u64::try_from(world().now.duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap()
}

fn pcrs() -> BTreeMap<u16, [u8; 48]> {
    (0u16..16)
        .map(|i| (i, [u8::try_from(i).unwrap() + 1; 48]))
        .collect()
}

fn policy() -> Policy {
    Policy::new(world().ca.root_der().to_vec())
        .at_time(world().now)
        .expect_nonce(NONCE)
        .expect_pcr(0, vec![1u8; 48])
}

/// A valid document's fields.
fn doc() -> AttestationDocument {
    let leaf = world().attester.leaf();
    let mut d = AttestationDocument::new(
        "enc-00000000000000aa",
        now_ms(),
        &pcrs(),
        false,
        leaf.certificate.clone(),
        leaf.cabundle.clone(),
    );
    d.nonce = Some(NONCE.to_vec());
    d.user_data = Some(b"user".to_vec());
    d.public_key = Some(b"pk".to_vec());
    d
}

fn key() -> &'static SigningKey {
    &world().attester.leaf().key
}

fn sign_raw(payload: Vec<u8>) -> Vec<u8> {
    attestation::cose::sign(payload, key(), true).unwrap()
}

fn sign_doc(d: &AttestationDocument) -> Vec<u8> {
    sign_raw(d.to_cbor_unchecked())
}

fn with_doc(f: impl FnOnce(&mut AttestationDocument)) -> Vec<u8> {
    let mut d = doc();
    f(&mut d);
    sign_doc(&d)
}

/// Mutates the payload as a CBOR map, then signs it.
fn with_map(f: impl FnOnce(&mut Vec<(Value, Value)>)) -> Vec<u8> {
    let Value::Map(mut m) =
        ciborium::from_reader::<Value, _>(&doc().to_cbor().unwrap()[..]).unwrap()
    else {
        panic!("payload is a map")
    };
    f(&mut m);
    let mut out = Vec::new();
    ciborium::into_writer(&Value::Map(m), &mut out).unwrap();
    sign_raw(out)
}

fn set(m: &mut [(Value, Value)], key: &str, v: Value) {
    for (k, val) in m.iter_mut() {
        if *k == Value::Text(key.into()) {
            *val = v;
            return;
        }
    }
    panic!("no field {key}");
}

fn remove(m: &mut Vec<(Value, Value)>, key: &str) {
    m.retain(|(k, _)| *k != Value::Text(key.into()));
}

/// Mutates the COSE array of a valid document (keeps its signature).
fn with_cose(f: impl FnOnce(&mut Vec<Value>)) -> Vec<u8> {
    let bytes = sign_doc(&doc());
    let Value::Tag(18, inner) = ciborium::from_reader::<Value, _>(&bytes[..]).unwrap() else {
        panic!("tagged")
    };
    let Value::Array(mut a) = *inner else {
        panic!("array")
    };
    f(&mut a);
    let mut out = Vec::new();
    ciborium::into_writer(&Value::Tag(18, Box::new(Value::Array(a))), &mut out).unwrap();
    out
}

/// Replaces the payload after signing (signature no longer matches).
fn resigned_payload_swap(f: impl FnOnce(&mut AttestationDocument)) -> Vec<u8> {
    let mut d = doc();
    f(&mut d);
    let payload = d.to_cbor_unchecked();
    with_cose(|a| a[2] = Value::Bytes(payload))
}

/// COSE with custom headers, correctly signed.
fn with_headers(protected: coset::Header, unprotected: coset::Header) -> Vec<u8> {
    CoseSign1Builder::new()
        .protected(protected)
        .unprotected(unprotected)
        .payload(doc().to_cbor().unwrap())
        .create_signature(b"", |tbs| {
            let s: Signature = key().sign(tbs);
            s.to_bytes().to_vec()
        })
        .build()
        .to_tagged_vec()
        .unwrap()
}

/// Root → intermediate(spec_i) → leaf(spec_l) built from the world's root key, signed doc.
fn custom_chain(
    inter_spec: CertProfile,
    leaf_spec: CertProfile,
    leaf_window: (SystemTime, SystemTime),
) -> Vec<u8> {
    let w = world();
    let day = Duration::from_secs(86400);
    let inter_key = attestation::ca::generate_key().unwrap();
    let inter = cert::issue(
        inter_spec,
        "CN=test intermediate",
        inter_key.verifying_key(),
        Some((&w.root, &w.root_key)),
        None,
        w.now - day,
        w.now + day,
    )
    .unwrap();
    let leaf_key = attestation::ca::generate_key().unwrap();
    let leaf = cert::issue(
        leaf_spec,
        "CN=test leaf",
        leaf_key.verifying_key(),
        Some((&inter, &inter_key)),
        None,
        leaf_window.0,
        leaf_window.1,
    )
    .unwrap();
    let mut d = doc();
    d.certificate = leaf.to_der().unwrap();
    d.cabundle = vec![w.ca.root_der().to_vec(), inter.to_der().unwrap()];
    attestation::cose::sign(d.to_cbor().unwrap(), &leaf_key, true).unwrap()
}

fn ok_window() -> (SystemTime, SystemTime) {
    let w = world();
    (
        w.now - Duration::from_secs(60),
        w.now + Duration::from_secs(3600),
    )
}

type Check = fn(&VerifyError) -> bool;

fn cases() -> Vec<(&'static str, Vec<u8>, Policy, Check)> {
    let w = world();
    let p = policy;
    let hour = Duration::from_secs(3600);
    let big = vec![7u8; 1025];
    let mut v: Vec<(&'static str, Vec<u8>, Policy, Check)> = vec![
        (
            "signature byte flipped",
            with_cose(|a| {
                if let Value::Bytes(s) = &mut a[3] {
                    s[10] ^= 1
                }
            }),
            p(),
            |e| matches!(e, VerifyError::Signature),
        ),
        (
            "module_id changed",
            resigned_payload_swap(|d| d.module_id = "enc-evil".into()),
            p(),
            |e| matches!(e, VerifyError::Signature),
        ),
        (
            "timestamp changed",
            resigned_payload_swap(|d| d.timestamp -= 1),
            p(),
            |e| matches!(e, VerifyError::Signature),
        ),
        (
            "pcr0 changed",
            resigned_payload_swap(|d| {
                d.pcrs.insert(0, vec![9; 48]);
            }),
            p(),
            |e| matches!(e, VerifyError::Signature),
        ),
        (
            "nonce changed",
            resigned_payload_swap(|d| d.nonce = Some(b"other".to_vec())),
            p(),
            |e| matches!(e, VerifyError::Signature),
        ),
        (
            "user_data changed",
            resigned_payload_swap(|d| d.user_data = None),
            p(),
            |e| matches!(e, VerifyError::Signature),
        ),
        (
            "public_key changed",
            resigned_payload_swap(|d| d.public_key = Some(b"evil".to_vec())),
            p(),
            |e| matches!(e, VerifyError::Signature),
        ),
        (
            "certificate swapped for another leaf",
            resigned_payload_swap(|d| {
                d.certificate = w.ca.issue_leaf("x", hour).unwrap().certificate;
            }),
            p(),
            |e| matches!(e, VerifyError::Signature),
        ),
        (
            "cabundle changed",
            resigned_payload_swap(|d| d.cabundle.reverse()),
            p(),
            |e| matches!(e, VerifyError::Signature),
        ),
        (
            "wrong root (other CA)",
            {
                let leaf = w.other.issue_leaf("x", hour).unwrap();
                let mut d = doc();
                d.certificate = leaf.certificate.clone();
                d.cabundle = leaf.cabundle.clone();
                attestation::cose::sign(d.to_cbor().unwrap(), &leaf.key, true).unwrap()
            },
            p(),
            |e| matches!(e, VerifyError::UntrustedRoot),
        ),
        (
            "root replaced in cabundle",
            with_doc(|d| d.cabundle[0] = w.other.root_der().to_vec()),
            p(),
            |e| matches!(e, VerifyError::UntrustedRoot),
        ),
        (
            "chain order swapped",
            with_doc(|d| d.cabundle.reverse()),
            p(),
            |e| matches!(e, VerifyError::UntrustedRoot),
        ),
        (
            "intermediate missing",
            with_doc(|d| d.cabundle.truncate(1)),
            p(),
            |e| matches!(e, VerifyError::ChainSignature { index: 1, .. }),
        ),
        (
            "intermediate from other CA",
            with_doc(|d| d.cabundle[1] = w.other.intermediate_der().to_vec()),
            p(),
            |e| matches!(e, VerifyError::ChainSignature { index: 1, .. }),
        ),
        (
            "expired leaf",
            custom_chain(
                CertProfile::intermediate(),
                CertProfile::leaf(),
                (w.now - 2 * hour, w.now - hour),
            ),
            p(),
            |e| matches!(e, VerifyError::CertificateExpired { .. }),
        ),
        (
            "not-yet-valid leaf",
            custom_chain(
                CertProfile::intermediate(),
                CertProfile::leaf(),
                (w.now + hour, w.now + 2 * hour),
            ),
            p(),
            |e| matches!(e, VerifyError::CertificateNotYetValid { .. }),
        ),
        (
            "leaf is a CA",
            custom_chain(
                CertProfile::intermediate(),
                CertProfile {
                    ca: true,
                    path_len: None,
                    key_usage: KeyUsages::DigitalSignature.into(),
                },
                ok_window(),
            ),
            p(),
            |e| matches!(e, VerifyError::BasicConstraints { .. }),
        ),
        (
            "intermediate is not a CA",
            custom_chain(
                CertProfile {
                    ca: false,
                    ..CertProfile::intermediate()
                },
                CertProfile::leaf(),
                ok_window(),
            ),
            p(),
            |e| matches!(e, VerifyError::BasicConstraints { .. }),
        ),
        (
            "leaf lacks digitalSignature",
            custom_chain(
                CertProfile::intermediate(),
                CertProfile {
                    key_usage: KeyUsages::KeyAgreement.into(),
                    ..CertProfile::leaf()
                },
                ok_window(),
            ),
            p(),
            |e| matches!(e, VerifyError::KeyUsage { .. }),
        ),
        (
            "intermediate lacks keyCertSign",
            custom_chain(
                CertProfile {
                    key_usage: KeyUsages::DigitalSignature.into(),
                    ..CertProfile::intermediate()
                },
                CertProfile::leaf(),
                ok_window(),
            ),
            p(),
            |e| matches!(e, VerifyError::KeyUsage { .. }),
        ),
        (
            "missing module_id",
            with_map(|m| remove(m, "module_id")),
            p(),
            |e| {
                matches!(
                    e,
                    VerifyError::Payload(PayloadError::Cbor(CborError::Missing("module_id")))
                )
            },
        ),
        ("missing pcrs", with_map(|m| remove(m, "pcrs")), p(), |e| {
            matches!(
                e,
                VerifyError::Payload(PayloadError::Cbor(CborError::Missing("pcrs")))
            )
        }),
        (
            "missing certificate",
            with_map(|m| remove(m, "certificate")),
            p(),
            |e| {
                matches!(
                    e,
                    VerifyError::Payload(PayloadError::Cbor(CborError::Missing("certificate")))
                )
            },
        ),
        (
            "missing cabundle",
            with_map(|m| remove(m, "cabundle")),
            p(),
            |e| {
                matches!(
                    e,
                    VerifyError::Payload(PayloadError::Cbor(CborError::Missing("cabundle")))
                )
            },
        ),
        (
            "timestamp as text",
            with_map(|m| set(m, "timestamp", Value::Text("now".into()))),
            p(),
            |e| {
                matches!(
                    e,
                    VerifyError::Payload(PayloadError::Cbor(CborError::WrongType {
                        field: "timestamp",
                        ..
                    }))
                )
            },
        ),
        (
            "unknown field",
            with_map(|m| m.push((Value::Text("extra".into()), Value::Null))),
            p(),
            |e| {
                matches!(
                    e,
                    VerifyError::Payload(PayloadError::Cbor(CborError::UnknownField(_)))
                )
            },
        ),
        (
            "duplicate field",
            with_map(|m| m.push((Value::Text("nonce".into()), Value::Null))),
            p(),
            |e| {
                matches!(
                    e,
                    VerifyError::Payload(PayloadError::Cbor(CborError::Duplicate(_)))
                )
            },
        ),
        (
            "digest SHA256",
            with_doc(|d| d.digest = "SHA256".into()),
            p(),
            |e| matches!(e, VerifyError::Payload(PayloadError::Digest(_))),
        ),
        (
            "short PCR",
            with_doc(|d| {
                d.pcrs.insert(3, vec![0; 32]);
            }),
            p(),
            |e| {
                matches!(
                    e,
                    VerifyError::Payload(PayloadError::PcrLength { index: 3, len: 32 })
                )
            },
        ),
        (
            "PCR index 40",
            with_doc(|d| {
                d.pcrs.insert(40, vec![0; 48]);
            }),
            p(),
            |e| matches!(e, VerifyError::Payload(PayloadError::PcrIndex(40))),
        ),
        ("no PCRs", with_doc(|d| d.pcrs.clear()), p(), |e| {
            matches!(e, VerifyError::Payload(PayloadError::PcrCount(0)))
        }),
        (
            "empty certificate",
            with_doc(|d| d.certificate.clear()),
            p(),
            |e| matches!(e, VerifyError::Payload(PayloadError::Certificate(0))),
        ),
        (
            "empty cabundle",
            with_doc(|d| d.cabundle.clear()),
            p(),
            |e| matches!(e, VerifyError::Payload(PayloadError::CabundleCount(0))),
        ),
        (
            "oversized user_data",
            with_doc(|d| d.user_data = Some(big.clone())),
            p(),
            |e| {
                matches!(
                    e,
                    VerifyError::Payload(PayloadError::UserField {
                        field: "user_data",
                        ..
                    })
                )
            },
        ),
        (
            "oversized nonce",
            with_doc(|d| d.nonce = Some(big.clone())),
            p(),
            |e| {
                matches!(
                    e,
                    VerifyError::Payload(PayloadError::UserField { field: "nonce", .. })
                )
            },
        ),
        (
            "oversized public_key",
            with_doc(|d| d.public_key = Some(big.clone())),
            p(),
            |e| {
                matches!(
                    e,
                    VerifyError::Payload(PayloadError::UserField {
                        field: "public_key",
                        ..
                    })
                )
            },
        ),
        (
            "oversized certificate",
            with_doc(|d| d.certificate = vec![0x30; 4096]),
            p(),
            |e| matches!(e, VerifyError::Payload(PayloadError::Certificate(4096))),
        ),
        (
            "trailing CBOR in payload",
            {
                let mut payload = doc().to_cbor().unwrap();
                payload.push(0);
                sign_raw(payload)
            },
            p(),
            |e| {
                matches!(
                    e,
                    VerifyError::Payload(PayloadError::Cbor(CborError::Trailing(1)))
                )
            },
        ),
        (
            "truncated COSE",
            {
                let mut b = sign_doc(&doc());
                b.truncate(b.len() - 10);
                b
            },
            p(),
            |e| {
                matches!(
                    e,
                    VerifyError::Cose(CoseError::Cbor(CborError::Malformed(_)))
                )
            },
        ),
        (
            "trailing COSE",
            {
                let mut b = sign_doc(&doc());
                b.extend_from_slice(&[0xf6]);
                b
            },
            p(),
            |e| {
                matches!(
                    e,
                    VerifyError::Cose(CoseError::Cbor(CborError::Trailing(1)))
                )
            },
        ),
        ("document too large", vec![0u8; 20_000], p(), |e| {
            matches!(
                e,
                VerifyError::Cose(CoseError::Cbor(CborError::TooLarge { .. }))
            )
        }),
        (
            "wrong tag",
            with_cose(|_| {})
                .into_iter()
                .enumerate()
                .map(|(i, b)| if i == 0 { 0xd8 } else { b })
                .collect::<Vec<u8>>()
                .pipe(|mut b| {
                    b.insert(1, 98);
                    b
                }),
            p(),
            |e| matches!(e, VerifyError::Cose(CoseError::WrongTag(98))),
        ),
        (
            "three-element array",
            with_cose(|a| {
                a.pop();
            }),
            p(),
            |e| matches!(e, VerifyError::Cose(CoseError::Structure(_))),
        ),
        (
            "short signature",
            with_cose(|a| {
                if let Value::Bytes(s) = &mut a[3] {
                    s.pop();
                }
            }),
            p(),
            |e| matches!(e, VerifyError::Cose(CoseError::SignatureLength(95))),
        ),
        ("nil payload", with_cose(|a| a[2] = Value::Null), p(), |e| {
            matches!(e, VerifyError::Cose(CoseError::NoPayload))
        }),
        (
            "wrong alg ES256",
            with_headers(
                HeaderBuilder::new()
                    .algorithm(iana::Algorithm::ES256)
                    .build(),
                Default::default(),
            ),
            p(),
            |e| matches!(e, VerifyError::Cose(CoseError::WrongAlgorithm(_))),
        ),
        (
            "no alg",
            with_headers(Default::default(), Default::default()),
            p(),
            |e| matches!(e, VerifyError::Cose(CoseError::WrongAlgorithm(_))),
        ),
        (
            "alg in unprotected",
            with_headers(
                Default::default(),
                HeaderBuilder::new()
                    .algorithm(iana::Algorithm::ES384)
                    .build(),
            ),
            p(),
            |e| matches!(e, VerifyError::Cose(CoseError::AlgInUnprotected)),
        ),
        (
            "alg in both headers",
            with_headers(
                HeaderBuilder::new()
                    .algorithm(iana::Algorithm::ES384)
                    .build(),
                HeaderBuilder::new()
                    .algorithm(iana::Algorithm::ES384)
                    .build(),
            ),
            p(),
            |e| matches!(e, VerifyError::Cose(CoseError::AlgInUnprotected)),
        ),
        (
            "extra protected header",
            with_headers(
                HeaderBuilder::new()
                    .algorithm(iana::Algorithm::ES384)
                    .key_id(b"k".to_vec())
                    .build(),
                Default::default(),
            ),
            p(),
            |e| matches!(e, VerifyError::Cose(CoseError::ExtraProtected)),
        ),
        (
            "unprotected not empty",
            with_headers(
                HeaderBuilder::new()
                    .algorithm(iana::Algorithm::ES384)
                    .build(),
                HeaderBuilder::new().key_id(b"k".to_vec()).build(),
            ),
            p(),
            |e| matches!(e, VerifyError::Cose(CoseError::UnprotectedNotEmpty)),
        ),
        (
            "stale",
            with_doc(|d| d.timestamp = now_ms() - 30_000),
            p().with_max_age(Some(Duration::from_secs(10))),
            |e| matches!(e, VerifyError::Stale { .. }),
        ),
        (
            "from the future",
            with_doc(|d| d.timestamp = now_ms() + 600_000),
            p(),
            |e| matches!(e, VerifyError::FromTheFuture { .. }),
        ),
        (
            "wrong nonce",
            with_doc(|d| d.nonce = Some(b"replayed".to_vec())),
            p(),
            |e| matches!(e, VerifyError::NonceMismatch),
        ),
        ("missing nonce", with_doc(|d| d.nonce = None), p(), |e| {
            matches!(e, VerifyError::NonceMismatch)
        }),
        (
            "debug document",
            {
                let leaf = w.attester.leaf();
                let mut d = AttestationDocument::new(
                    "m",
                    now_ms(),
                    &pcrs(),
                    true,
                    leaf.certificate.clone(),
                    leaf.cabundle.clone(),
                );
                d.nonce = Some(NONCE.to_vec());
                sign_doc(&d)
            },
            Policy::new(w.ca.root_der().to_vec()).at_time(w.now),
            |e| matches!(e, VerifyError::DebugDocument),
        ),
        (
            "PCR0 mismatch",
            with_doc(|d| {
                d.pcrs.insert(0, vec![2; 48]);
            }),
            p(),
            |e| matches!(e, VerifyError::PcrMismatch { index: 0, .. }),
        ),
        (
            "PCR8 expected but absent",
            sign_doc(&doc()),
            p().expect_pcr(20, vec![0; 48]),
            |e| matches!(e, VerifyError::PcrMissing(20)),
        ),
        (
            "PCR8 signer mismatch",
            sign_doc(&doc()),
            p().expect_pcr(8, vec![0xaa; 48]),
            |e| matches!(e, VerifyError::PcrMismatch { index: 8, .. }),
        ),
    ];
    v.shrink_to_fit();
    v
}

trait Pipe: Sized {
    fn pipe<T>(self, f: impl FnOnce(Self) -> T) -> T {
        f(self)
    }
}
impl<T> Pipe for T {}

#[test]
fn valid_documents_pass() {
    let w = world();
    let bytes = sign_doc(&doc());
    let v = verify(&bytes, &policy()).unwrap();
    assert_eq!(v.document, doc());
    assert!(!v.debug);
    // Same chain again: served from the cache.
    assert_eq!(policy().cached_chains(), 0);
    let p = policy();
    verify(&bytes, &p).unwrap();
    verify(&bytes, &p).unwrap();
    assert_eq!(p.cached_chains(), 1);
    // Untagged COSE_Sign1 (as AWS's NSM emits) is accepted too.
    let untagged = attestation::cose::sign(doc().to_cbor().unwrap(), key(), false).unwrap();
    verify(&untagged, &policy()).unwrap();
    // The attester's own documents verify, with PCR8 expectations.
    let real = w
        .attester
        .attest_at(now_ms(), &pcrs(), None, Some(NONCE), None)
        .unwrap();
    let v = verify(&real, &policy().expect_pcr(8, vec![9u8; 48])).unwrap();
    assert_eq!(v.document.pcrs.len(), 16);
    // Debug documents pass when allowed.
    let leaf = w.attester.leaf();
    let d = AttestationDocument::new(
        "m",
        now_ms(),
        &pcrs(),
        true,
        leaf.certificate.clone(),
        leaf.cabundle.clone(),
    );
    let v = verify(
        &sign_doc(&d),
        &Policy::new(w.ca.root_der().to_vec())
            .at_time(w.now)
            .allow_debug(true),
    )
    .unwrap();
    assert!(v.debug);
    assert_eq!(v.document.pcrs[&8], vec![0u8; 48]);
    assert_eq!(v.document.pcrs[&3], vec![4u8; 48]);
}

#[test]
fn tampered_documents_fail_with_the_right_reason() {
    let cases = cases();
    assert!(cases.len() >= 25, "only {} cases", cases.len());
    let mut failures = Vec::new();
    for (name, bytes, policy, check) in &cases {
        match verify(bytes, policy) {
            Ok(_) => failures.push(format!("{name}: verified")),
            Err(e) if check(&e) => {}
            Err(e) => failures.push(format!("{name}: wrong error {e:?}")),
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn cached_chain_still_checks_everything_per_document() {
    let p = policy();
    verify(&sign_doc(&doc()), &p).unwrap();
    assert_eq!(p.cached_chains(), 1);
    // With the chain cached, per-document checks still run.
    let stale = with_doc(|d| d.timestamp = now_ms() - 30_000);
    let strict = p.clone().with_max_age(Some(Duration::from_secs(10)));
    assert!(matches!(
        verify(&stale, &strict),
        Err(VerifyError::Stale { .. })
    ));
    let bad = resigned_payload_swap(|d| d.module_id = "x".into());
    assert!(matches!(verify(&bad, &p), Err(VerifyError::Signature)));
    // A cached chain with a different pinned root (shared cache via clone) is refused.
    let other = Policy::new(world().other.root_der().to_vec()).at_time(world().now);
    assert!(matches!(
        verify(&sign_doc(&doc()), &other),
        Err(VerifyError::UntrustedRoot)
    ));
}
