//! The per-enclave control channel: a Unix socket in the enclave's run directory through which
//! the CLI and the SDK describe, wait for, terminate and read the console of an enclave.
//!
//! Protocol: one JSON request line (`{"op":"describe"}`, `terminate`, `wait`, `console`), one
//! JSON response line; after a successful `console` response the connection carries the raw
//! console stream until the enclave ends.

pub mod client;
pub mod console;
pub mod protocol;
pub mod server;
