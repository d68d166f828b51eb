//! What machine the numbers come from: CPU model, core count, and whether KVM is the
//! software `kvm_pvm` (guest exits cost tens of µs there) or hardware KVM.

use std::path::Path;

/// The host, as the report describes it.
#[derive(Debug, Clone)]
pub struct Machine {
    /// `model name` from /proc/cpuinfo.
    pub cpu_model: String,
    /// Online CPUs (processors in /proc/cpuinfo).
    pub cores: usize,
    /// `/sys/module/kvm_pvm` exists: KVM is the software (PVM) implementation.
    pub kvm_pvm: bool,
    /// Host kernel release.
    pub kernel: String,
}

impl Machine {
    /// Reads the host's description; unknown fields say "unknown".
    pub fn probe() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| {
                let (key, value) = l.split_once(':')?;
                (key.trim() == "model name").then(|| value.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".to_owned());
        let listed = cpuinfo
            .lines()
            .filter(|l| {
                l.split_once(':')
                    .is_some_and(|(k, _)| k.trim() == "processor")
            })
            .count();
        let cores = if listed > 0 {
            listed
        } else {
            std::thread::available_parallelism().map_or(0, usize::from)
        };
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| "unknown".to_owned());
        Machine {
            cpu_model,
            cores,
            kvm_pvm: Path::new("/sys/module/kvm_pvm").exists(),
            kernel,
        }
    }

    /// "software KVM (kvm_pvm)" or "hardware KVM".
    pub fn kvm_kind(&self) -> &'static str {
        if self.kvm_pvm {
            "software KVM (kvm_pvm)"
        } else {
            "hardware KVM (no kvm_pvm)"
        }
    }
}

/// Why in-process enclaves cannot run here, if they cannot.
pub fn kvm_unusable() -> Option<String> {
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        Ok(_) => None,
        Err(e) => Some(format!("/dev/kvm is not usable: {e}")),
    }
}
