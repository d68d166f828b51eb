//! Formats and measurement for enclave images and attestation: EIF v4 read/write, the cpio
//! `newc` root tree, PCR computation and building an image from its parts. Pure Rust, no KVM,
//! no I/O beyond byte slices.

pub mod cpio;
pub mod eif;
pub mod image;
pub mod pcr;
