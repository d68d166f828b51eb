//! The enclave VMM: one process per enclave. It carves guest memory, boots a static Linux
//! program directly in 64-bit ring 3 and serves its system calls (the enclave kernel).
pub mod pool;

pub mod attest;
pub mod boot;
pub mod control;
pub mod daemon;
pub mod elf;
pub mod error_chain;
pub mod fuzzing;
pub mod guest_abi;
pub mod harden;
pub mod heartbeat_host;
pub mod host_caps;
pub mod image;
pub mod kernel;
pub mod layout;
pub mod memory;
pub mod preflight;
pub mod program;
pub mod records;
pub mod seccomp;
pub mod stack;
pub mod syscall_stub;
pub mod threads;
pub mod vcpu;
pub mod vmm;
pub mod vsock_host;
