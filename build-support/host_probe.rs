// Probes what this machine offers the enclave tests, so that tests which need it are compiled
// as `#[ignore = "reason"]` elsewhere and reported as ignored rather than passing silently.
// `enclave_kvm`: /dev/kvm opens read-write. `enclave_host`: additionally root and a cpuset
// cgroup controller (the carve-out pool), i.e. full enclaves can run. `enclave_hugepages`:
// additionally 2 MiB hugepages can be reserved.

use std::path::Path;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(enclave_kvm)");
    println!("cargo::rustc-check-cfg=cfg(enclave_host)");
    println!("cargo::rustc-check-cfg=cfg(enclave_hugepages)");
    println!("cargo::rerun-if-changed=../build-support/host_probe.rs");
    let kvm = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let cpuset = mounts
        .lines()
        .any(|l| l.contains(" cgroup ") && l.contains("cpuset"))
        || Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
            && std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers")
                .unwrap_or_default()
                .contains("cpuset");
    let root = std::env::var("USER").map(|u| u == "root").unwrap_or(false)
        || std::fs::metadata("/proc/self")
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
            .unwrap_or(false);
    if kvm {
        println!("cargo::rustc-cfg=enclave_kvm");
    }
    if kvm && cpuset && root {
        println!("cargo::rustc-cfg=enclave_host");
        if Path::new("/sys/kernel/mm/hugepages/hugepages-2048kB").is_dir() {
            println!("cargo::rustc-cfg=enclave_hugepages");
        }
    }
}
