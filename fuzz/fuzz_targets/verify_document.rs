//! Fuzzes the attestation document verifier with arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    attestation::fuzzing::verify_document(data);
});
