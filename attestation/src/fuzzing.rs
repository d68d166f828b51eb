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

/// `eif_reader` target: parse; a parsed image re-encodes, and the encoding parses back to the
/// same sections. The description (what `describe-eif` prints) never panics.
pub fn eif_reader(data: &[u8]) {
    let Ok(eif) = crate::eif::Eif::parse(data) else {
        return;
    };
    let _ = (eif.version(), eif.kernel(), eif.cmdline(), eif.ramdisks());
    let _ = (eif.signature(), eif.metadata(), eif.encoded_len());
    let _ = crate::image::describe(&eif);
    if let Ok(bytes) = eif.to_bytes() {
        let again = crate::eif::Eif::parse(&bytes);
        assert!(again.is_ok(), "re-encoded EIF does not parse");
        if let Ok(again) = again {
            assert_eq!(again.kernel(), eif.kernel(), "kernel changed on round trip");
            assert_eq!(
                again.ramdisks(),
                eif.ramdisks(),
                "ramdisks changed on round trip"
            );
        }
    }
}

/// `cpio_reader` target: read; entries that were read write back into an archive that reads
/// as the same entries (plus the parent directories the writer adds).
pub fn cpio_reader(data: &[u8]) {
    let Ok(entries) = crate::cpio::read(data) else {
        return;
    };
    if let Ok(bytes) = crate::cpio::write(&entries) {
        let again = crate::cpio::read(&bytes);
        assert!(again.is_ok(), "re-written cpio archive does not read");
        if let Ok(again) = again {
            let by_path: std::collections::HashMap<&str, &crate::cpio::CpioEntry> =
                again.iter().map(|e| (e.path.as_str(), e)).collect();
            for e in &entries {
                let back = by_path.get(e.path.as_str());
                assert!(
                    back.is_some_and(|b| b.mode == e.mode && b.data == e.data),
                    "entry {:?} changed on round trip",
                    e.path
                );
            }
        }
    }
}
