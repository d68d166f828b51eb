//! The KMS story as a library, shared by `kms-demo` (the README's main command), the tests
//! harness (`tests/src/kms.rs`) and the KMS benchmark: a [`World`] with a pool, a CA, the key
//! service, `vsock-proxy` and `kms-enclave` images; an [`AppClient`] that drives the enclave
//! program (key release, decryption, attestation documents).

pub mod app;
pub mod bins;
mod error;
pub mod service;
mod world;

pub use app::{AppClient, ReleaseTimings, APP_PORT, KMS_PORT};
pub use bins::Bins;
pub use error::ScenarioError;
pub use world::{build_kms_enclave, Image, World, WorldOptions};
