//! The ioctl request numbers a vCPU thread issues once the enclave runs: `KVM_RUN`, register
//! access on hosts without synced registers, and what creating a vCPU for a new guest thread
//! takes, and the one `KVM_IOEVENTFD` of the vsock fast path (registered at the first fast
//! stream, see `kernel::fastio`). Nothing else of KVM (no memory slots, no VM creation, no
//! device creation).

#![allow(clippy::cast_possible_truncation)]

use kvm_bindings::{kvm_cpuid2, kvm_ioeventfd, kvm_msrs, kvm_regs, kvm_sregs, KVMIO};
use vmm_sys_util::{ioctl_io_nr, ioctl_ior_nr, ioctl_iow_nr, ioctl_iowr_nr};

ioctl_io_nr!(KVM_CHECK_EXTENSION, KVMIO, 0x03);
ioctl_io_nr!(KVM_GET_VCPU_MMAP_SIZE, KVMIO, 0x04);
ioctl_iowr_nr!(KVM_GET_SUPPORTED_CPUID, KVMIO, 0x05, kvm_cpuid2);
ioctl_io_nr!(KVM_CREATE_VCPU, KVMIO, 0x41);
ioctl_io_nr!(KVM_RUN, KVMIO, 0x80);
ioctl_ior_nr!(KVM_GET_REGS, KVMIO, 0x81, kvm_regs);
ioctl_iow_nr!(KVM_SET_REGS, KVMIO, 0x82, kvm_regs);
ioctl_ior_nr!(KVM_GET_SREGS, KVMIO, 0x83, kvm_sregs);
ioctl_iow_nr!(KVM_SET_SREGS, KVMIO, 0x84, kvm_sregs);
ioctl_iow_nr!(KVM_SET_MSRS, KVMIO, 0x89, kvm_msrs);
ioctl_iow_nr!(KVM_SET_CPUID2, KVMIO, 0x90, kvm_cpuid2);
ioctl_iow_nr!(KVM_IOEVENTFD, KVMIO, 0x79, kvm_ioeventfd);

/// The request numbers allowed on vCPU threads, with their names.
pub fn run_time() -> Vec<(&'static str, u64)> {
    vec![
        ("KVM_RUN", KVM_RUN()),
        ("KVM_GET_REGS", KVM_GET_REGS()),
        ("KVM_SET_REGS", KVM_SET_REGS()),
        ("KVM_GET_SREGS", KVM_GET_SREGS()),
        ("KVM_SET_SREGS", KVM_SET_SREGS()),
        ("KVM_CREATE_VCPU", KVM_CREATE_VCPU()),
        ("KVM_GET_VCPU_MMAP_SIZE", KVM_GET_VCPU_MMAP_SIZE()),
        ("KVM_CHECK_EXTENSION", KVM_CHECK_EXTENSION()),
        ("KVM_GET_SUPPORTED_CPUID", KVM_GET_SUPPORTED_CPUID()),
        ("KVM_SET_CPUID2", KVM_SET_CPUID2()),
        ("KVM_SET_MSRS", KVM_SET_MSRS()),
        ("KVM_IOEVENTFD", KVM_IOEVENTFD()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_match_the_linux_headers() {
        // Values from <linux/kvm.h> as compiled for x86_64.
        assert_eq!(KVM_RUN(), 0xae80);
        assert_eq!(KVM_CREATE_VCPU(), 0xae41);
        assert_eq!(KVM_GET_REGS(), 0x8090_ae81);
        assert_eq!(KVM_SET_REGS(), 0x4090_ae82);
        assert_eq!(KVM_GET_SREGS(), 0x8138_ae83);
        assert_eq!(KVM_SET_SREGS(), 0x4138_ae84);
        assert_eq!(KVM_SET_MSRS(), 0x4008_ae89);
        assert_eq!(KVM_SET_CPUID2(), 0x4008_ae90);
        assert_eq!(KVM_GET_SUPPORTED_CPUID(), 0xc008_ae05);
        assert_eq!(KVM_IOEVENTFD(), 0x4040_ae79);
    }
}
