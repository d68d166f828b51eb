//! What the VMM needs from the host's KVM, asked of `/dev/kvm` the way the VMM asks it (for
//! `enclave doctor`): the capabilities it uses, which of them it cannot do without, and which
//! kind of KVM this is (hardware `kvm_intel`/`kvm_amd`, or the software `kvm_pvm`).

use std::path::Path;

use kvm_ioctls::{Cap, Kvm};

/// One KVM capability the VMM uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvmCap {
    /// `KVM_CAP_…` name.
    pub name: &'static str,
    /// Whether this KVM has it (for sync regs: both the register and system-register sets).
    pub present: bool,
    /// Whether a launch fails without it (else it is slower or less capable).
    pub required: bool,
    /// What the VMM uses it for.
    pub used_for: &'static str,
}

/// The capabilities the VMM uses, as this host's KVM reports them. Opens `/dev/kvm`.
pub fn kvm_caps() -> Result<Vec<KvmCap>, kvm_ioctls::Error> {
    let kvm = Kvm::new()?;
    let sync_wanted =
        i32::try_from(kvm_bindings::KVM_SYNC_X86_REGS | kvm_bindings::KVM_SYNC_X86_SREGS)
            .unwrap_or(i32::MAX);
    Ok(vec![
        KvmCap {
            name: "KVM_CAP_USER_MEMORY",
            present: kvm.check_extension(Cap::UserMemory),
            required: true,
            used_for: "guest memory from the VMM's own mapping",
        },
        KvmCap {
            name: "KVM_CAP_EXT_CPUID",
            present: kvm.check_extension(Cap::ExtCpuid),
            required: true,
            used_for: "KVM_GET_SUPPORTED_CPUID / KVM_SET_CPUID2 for each vCPU",
        },
        KvmCap {
            name: "KVM_CAP_SYNC_REGS",
            present: kvm.check_extension_int(Cap::SyncRegs) & sync_wanted == sync_wanted,
            required: false,
            used_for:
                "registers through kvm_run on every exit (without it: two ioctls per system call)",
        },
        KvmCap {
            name: "KVM_CAP_IMMEDIATE_EXIT",
            present: kvm.check_extension(Cap::ImmediateExit),
            required: false,
            used_for: "stopping vCPUs at terminate without a lost wake-up",
        },
    ])
}

/// How many vCPUs one VM may have (`KVM_CAP_MAX_VCPUS`, else `KVM_CAP_NR_VCPUS`).
pub fn max_vcpus() -> Result<usize, kvm_ioctls::Error> {
    let kvm = Kvm::new()?;
    Ok(kvm.get_max_vcpus())
}

/// The kind of KVM: `kvm_pvm` (software: guest ring 0 emulated, ring 3 native), `kvm_intel`
/// or `kvm_amd` (hardware), or `None` when no KVM module is loaded (or KVM is built in).
pub fn kvm_kind() -> Option<&'static str> {
    ["kvm_pvm", "kvm_intel", "kvm_amd"]
        .into_iter()
        .find(|m| Path::new("/sys/module").join(m).is_dir())
}
