//! Fuzzes the parent-side hybrid-vsock handshake parser (`CONNECT <port>\n`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    enclave_runtime::fuzzing::vsock_handshake(data);
});
