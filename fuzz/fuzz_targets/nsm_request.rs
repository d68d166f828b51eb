//! Fuzzes the NSM request decoder and device logic with arbitrary guest bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    attestation::fuzzing::nsm_request(data);
});
