//! Entry points of the cargo-fuzz targets in `fuzz/`: each takes arbitrary bytes and must
//! never panic. They live here so `cargo test` exercises the exact code the fuzzers run.

use std::sync::OnceLock;
use std::time::Duration;

use crate::ca::{Ca, LeafAttester};
use crate::nsm::{decode_request, decode_response, handle, PcrBank};
use crate::verify::{verify, Policy};

struct Fixture {
    attester: LeafAttester,
    policy: Policy,
    valid_document: Vec<u8>,
}

fn fixture() -> Option<&'static Fixture> {
    static F: OnceLock<Option<Fixture>> = OnceLock::new();
    F.get_or_init(|| {
        let ca = Ca::generate().ok()?.ca;
        let leaf = ca.issue_leaf("enc-fuzz", Duration::from_secs(3600)).ok()?;
        let attester = LeafAttester::new(leaf, "enc-fuzz", false);
        let pcrs = [(0u16, [1u8; 48])].into_iter().collect();
        let valid_document = attester
            .attest_at(crate::ca::now_ms(), &pcrs, None, Some(b"n"), None)
            .ok()?;
        let policy = Policy::new(ca.root_der().to_vec()).with_max_age(None);
        Some(Fixture {
            attester,
            policy,
            valid_document,
        })
    })
    .as_ref()
}

/// A valid document, a seed for the verify fuzzer.
pub fn seed_document() -> Vec<u8> {
    fixture()
        .map(|f| f.valid_document.clone())
        .unwrap_or_default()
}

/// `nsm_request` target: decode, and run through the device; the response must decode.
pub fn nsm_request(data: &[u8]) {
    let _ = decode_request(data);
    if let Some(f) = fixture() {
        let mut bank = PcrBank::new();
        let response = handle(data, &mut bank, &f.attester);
        assert!(
            decode_response(&response).is_ok(),
            "device produced an undecodable response"
        );
    }
}

/// `verify_document` target: verification must fail cleanly (or pass) on any input.
pub fn verify_document(data: &[u8]) {
    if let Some(f) = fixture() {
        let _ = verify(data, &f.policy);
    }
}
