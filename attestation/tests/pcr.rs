//! PCR computation checked against sha2 used directly.

use attestation::eif::{Eif, EifWriter};
use attestation::pcr::{extend, measure, Measurements, Pcr, PCR_ZERO};
use sha2::{Digest, Sha384};

fn sha384(data: &[u8]) -> Vec<u8> {
    Sha384::digest(data).to_vec()
}

/// Nitro measurement, computed by hand: SHA384(48 zeros ‖ SHA384(data)).
fn nitro(data: &[u8]) -> Pcr {
    let mut input = vec![0u8; 48];
    input.extend(sha384(data));
    sha384(&input).try_into().unwrap()
}

fn sample() -> EifWriter {
    let mut w = EifWriter::new(b"kernel".to_vec(), b"cmdline".to_vec());
    w.metadata = Some(b"{}".to_vec());
    w.ramdisks = vec![b"rd0".to_vec(), b"rd1".to_vec(), b"rd2".to_vec()];
    w
}

#[test]
fn extend_is_sha384_of_concatenation() {
    let old: Pcr = [7; 48];
    let mut input = old.to_vec();
    input.extend_from_slice(b"abc");
    assert_eq!(extend(&old, b"abc").to_vec(), sha384(&input));
    assert_eq!(measure(b"abc"), nitro(b"abc"));
}

#[test]
fn empty_region_known_answer() {
    // SHA-384("") from FIPS 180-2 examples.
    let empty = hex::decode(
        "38b060a751ac96384cd9327eb1b1e36a21fdb71114be07434c0cc7bf63f6e1da\
         274edebfe76f65fbd51ad2f14898b95b",
    )
    .unwrap();
    assert_eq!(sha384(b""), empty);
    assert_eq!(measure(b""), extend(&PCR_ZERO, &empty));
}

#[test]
fn measurements_of_eif() {
    let eif = Eif::parse(&sample().to_bytes().unwrap()).unwrap();
    let m = Measurements::of(&eif);
    assert_eq!(m.pcr0, nitro(b"kernelcmdlinerd0rd1rd2"));
    assert_eq!(m.pcr1, nitro(b"kernelcmdlinerd0"));
    assert_eq!(m.pcr2, nitro(b"rd1rd2"));
    assert_eq!(m.pcr8, None);
}

#[test]
fn pcr2_over_no_application_ramdisks() {
    let mut w = sample();
    w.ramdisks.truncate(1);
    let m = Measurements::of(&w.into_eif());
    assert_eq!(m.pcr2, nitro(b""));
    assert_eq!(m.pcr0, m.pcr1);
}

#[test]
fn metadata_and_signature_are_not_measured_but_data_is() {
    let base = Measurements::of(&sample().into_eif());
    let mut w = sample();
    w.metadata = Some(b"{\"other\":1}".to_vec());
    w.signature = Some(b"sig".to_vec());
    assert_eq!(Measurements::of(&w.into_eif()), base);
    let mut w = sample();
    w.cmdline.push(b' ');
    let changed = Measurements::of(&w.into_eif());
    assert_ne!(changed.pcr0, base.pcr0);
    assert_ne!(changed.pcr1, base.pcr1);
    assert_eq!(changed.pcr2, base.pcr2);
}

#[test]
fn json_shape_matches_nitro_cli() {
    let m = Measurements::of(&sample().into_eif());
    let json = m.to_json();
    let obj = json.as_object().unwrap();
    let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    assert_eq!(keys, ["HashAlgorithm", "PCR0", "PCR1", "PCR2"]);
    assert_eq!(obj["HashAlgorithm"], "Sha384 { ... }");
    assert_eq!(obj["PCR0"], hex::encode(nitro(b"kernelcmdlinerd0rd1rd2")));
    for k in ["PCR0", "PCR1", "PCR2"] {
        let v = obj[k].as_str().unwrap();
        assert_eq!(v.len(), 96);
        assert!(v
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)));
    }
    assert_eq!(serde_json::to_value(m).unwrap(), json);

    let signed = m.with_signing_certificate(b"DER");
    let json = serde_json::to_value(signed).unwrap();
    assert_eq!(json["PCR8"], hex::encode(nitro(b"DER")));
}
