//! Fuzzes the VMM's image reader (EIF, guest ABI, init spec, cpio ramdisks, signature).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    enclave_runtime::fuzzing::image_unpack(data);
});
