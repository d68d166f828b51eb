//! Fuzzes the EIF reader (parse, re-encode, parse again) with arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    attestation::fuzzing::eif_reader(data);
});
