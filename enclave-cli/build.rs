//! Host capability probe shared by the crates whose tests need KVM, root or cpusets.
include!("../build-support/host_probe.rs");
