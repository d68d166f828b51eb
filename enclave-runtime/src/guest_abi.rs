//! The guest ABI: the machine code the VMM places in the guest (syscall and exception stubs),
//! versioned and stored in the image's Kernel section so it is measured into PCR0 and PCR1.
//!
//! An image names the ABI it was built for; the VMM runs it only if that blob is exactly the
//! one it would install, so a measured image always describes the code that actually runs.

use crate::layout;

/// Current guest ABI version.
pub const ABI_VERSION: u32 = 2;
/// Magic at the start of the Kernel section.
pub const MAGIC: &[u8; 16] = b"ENCLAVE-GUESTABI";

/// Why an image's Kernel section is not acceptable.
#[derive(Debug, thiserror::Error)]
pub enum AbiError {
    /// Not our blob at all (e.g. an AWS image with a Linux kernel).
    #[error("the image's kernel section is not an enclave guest ABI blob (it may hold a Linux kernel, which this runtime does not boot); rebuild the image with `enclave build-enclave`")]
    NotOurs,
    /// Built for another version of the runtime.
    #[error("the image was built for guest ABI {found}, this runtime runs ABI {ABI_VERSION}; rebuild it with this version's `enclave build-enclave`")]
    Version {
        /// Version in the image.
        found: u32,
    },
    /// Right version, different bytes.
    #[error("the image's guest stubs differ from this runtime's ABI {ABI_VERSION} stubs; rebuild the image")]
    Mismatch,
}

/// The syscall stub (see [`crate::syscall_stub`]). Under kvm_pvm `syscall` reaches it at CPL 3
/// and under hardware KVM at CPL 0; its doorbell write exits to the VMM, which returns to the
/// caller itself (no `sysretq`); at CPL 3 its vsock fast path returns by itself.
pub fn syscall_stub() -> &'static [u8] {
    crate::syscall_stub::syscall_stub()
}

/// `mov al, v; movabs [imm64], al; hlt; jmp <hlt>`: the stub for exception vector `v`.
pub fn exception_stub(vector: u8) -> [u8; 14] {
    let mut s = [0xb0, vector, 0xa2, 0, 0, 0, 0, 0, 0, 0, 0, 0xf4, 0xeb, 0xfd];
    s[3..11].copy_from_slice(&layout::DOORBELL_EXCEPTION.to_le_bytes());
    s
}

/// The stub page contents: syscall stub at offset 0, exception stubs at their offsets.
pub fn stub_page() -> Vec<u8> {
    let size = usize::try_from(layout::PAGE_SIZE).unwrap_or(4096);
    let mut page = vec![0xccu8; size];
    let s = syscall_stub();
    page[..s.len()].copy_from_slice(s);
    for v in 0..layout::IDT_VECTORS {
        let off = usize::try_from(
            layout::EXCEPTION_STUBS - layout::STUB_PAGE + v * layout::EXCEPTION_STUB_SIZE,
        )
        .unwrap_or(0);
        let stub = exception_stub(u8::try_from(v).unwrap_or(0));
        page[off..off + stub.len()].copy_from_slice(&stub);
    }
    page
}

/// The Kernel-section blob for the current ABI: magic, version (LE u32), stub page.
pub fn kernel_blob() -> Vec<u8> {
    let mut b = Vec::with_capacity(4096 + 20);
    b.extend_from_slice(MAGIC);
    b.extend_from_slice(&ABI_VERSION.to_le_bytes());
    b.extend_from_slice(&stub_page());
    b
}

/// Checks an image's Kernel section against this runtime's ABI.
pub fn check_kernel_blob(blob: &[u8]) -> Result<(), AbiError> {
    if blob.len() < 20 || &blob[..16] != MAGIC {
        return Err(AbiError::NotOurs);
    }
    let found = u32::from_le_bytes([blob[16], blob[17], blob[18], blob[19]]);
    if found != ABI_VERSION {
        return Err(AbiError::Version { found });
    }
    if blob != kernel_blob().as_slice() {
        return Err(AbiError::Mismatch);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_round_trips_and_rejects_others() {
        let b = kernel_blob();
        assert!(check_kernel_blob(&b).is_ok());
        assert!(matches!(
            check_kernel_blob(b"\x7fELF"),
            Err(AbiError::NotOurs)
        ));
        let mut v = b.clone();
        v[16] = 9;
        assert!(matches!(
            check_kernel_blob(&v),
            Err(AbiError::Version { found: 9 })
        ));
        let mut m = b.clone();
        let last = m.len() - 1;
        m[last] ^= 1;
        assert!(matches!(check_kernel_blob(&m), Err(AbiError::Mismatch)));
    }

    #[test]
    fn stubs_target_the_doorbell() {
        let s = syscall_stub();
        assert!(s.len() as u64 <= layout::EXCEPTION_STUBS - layout::SYSCALL_STUB);
        // It ends with the doorbell write: `movabs [DOORBELL_SYSCALL], al`.
        let tail = &s[s.len() - 9..];
        assert_eq!(tail[0], 0xa2);
        assert_eq!(
            u64::from_le_bytes(tail[1..9].try_into().unwrap()),
            layout::DOORBELL_SYSCALL
        );
        let e = exception_stub(14);
        assert_eq!(&e[..2], &[0xb0, 14]);
        assert_eq!(
            u64::from_le_bytes(e[3..11].try_into().unwrap()),
            layout::DOORBELL_EXCEPTION
        );
        assert!(e.len() as u64 <= layout::EXCEPTION_STUB_SIZE);
    }
}
