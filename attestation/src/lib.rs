//! Formats, measurement and trust for enclave images and attestation: EIF v4 read/write, the
//! cpio `newc` root tree, PCR computation, building an image from its parts, the NSM API and
//! its device logic, attestation documents in COSE_Sign1 ES384, the local CA, the verifier
//! and EIF signing. Pure Rust, no KVM; file I/O only in the CA's key store.

pub mod ca;
mod cbor;
pub mod cose;
pub mod cpio;
pub mod document;
pub mod eif;
pub mod fuzzing;
pub mod image;
pub mod nsm;
pub mod pcr;
pub mod signing;
pub mod verify;

pub use cbor::CborError;
pub use verify::{verify, Policy, VerifiedDocument, VerifyError};
