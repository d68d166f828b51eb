//! Fuzzes the cpio reader (parse, re-encode, parse again) with arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    attestation::fuzzing::cpio_reader(data);
});
