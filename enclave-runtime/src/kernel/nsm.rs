//! `/dev/nsm`: the Nitro Secure Module as an enclave program sees it, with the ABI of Linux's
//! `drivers/misc/nsm.c` so that AWS's `aws-nitro-enclaves-nsm-api` driver works unchanged.
//!
//! One ioctl, `NSM_IOCTL_RAW = _IOWR(0x0A, 0, struct nsm_raw)`, where `nsm_raw` is two
//! `{u64 addr; u64 len}` iovecs: the CBOR request and the buffer for the CBOR response. As the
//! Linux driver: another command is `EINVAL`, a request over 4 KiB `EMSGSIZE` (which the nsm-api
//! crate reports as `InputTooLarge`), a bad pointer `EFAULT`; on success the response is copied
//! out and `response.len` set to the bytes written. The CBOR itself is served by
//! [`attestation::nsm::handle_with_limit`] against the enclave's PCR bank, which all threads
//! share behind one lock.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use attestation::nsm::{self, Attester, PcrBank};

use super::dev::{device_stat, DevFlags};
use super::errno::{Errno, SysResult};
use super::file::{FileOps, Stat};
use super::fs::Device;
use crate::memory::UserMemory;

#[cfg(test)]
mod nsm_tests;

/// `_IOWR(0x0A, 0, struct nsm_raw)`: direction 3 (read|write), size 32, type 0x0A, number 0.
pub const NSM_IOCTL_RAW: u64 = 0xC020_0A00;
/// Bytes of `struct nsm_raw`.
pub const NSM_RAW_SIZE: u64 = 32;
/// Offset of `response.len` in `struct nsm_raw`.
const RESPONSE_LEN_OFFSET: u64 = 24;
/// `EMSGSIZE`: the request is over [`nsm::MAX_REQUEST_SIZE`].
const EMSGSIZE: Errno = Errno(libc::EMSGSIZE);

/// An attester for an enclave without a CA: it describes itself, but every Attestation
/// request fails (the device answers `InternalError`).
#[derive(Debug, Clone)]
pub struct NoAttester {
    module_id: String,
}

impl NoAttester {
    /// An attester reporting `module_id` and refusing to sign.
    pub fn new(module_id: impl Into<String>) -> Self {
        Self {
            module_id: module_id.into(),
        }
    }
}

impl Attester for NoAttester {
    fn module_id(&self) -> &str {
        &self.module_id
    }

    fn attest(
        &self,
        _pcrs: &std::collections::BTreeMap<u16, attestation::pcr::Pcr>,
        _user_data: Option<&[u8]>,
        _nonce: Option<&[u8]>,
        _public_key: Option<&[u8]>,
    ) -> Result<Vec<u8>, attestation::document::DocumentError> {
        // No leaf certificate to sign with.
        Err(attestation::document::DocumentError::Invalid(
            attestation::document::PayloadError::Certificate(0),
        ))
    }
}

/// The enclave's NSM: its PCR bank and the attester that signs its documents.
pub struct NsmDevice {
    bank: Mutex<PcrBank>,
    attester: Arc<dyn Attester + Send + Sync>,
    attestation_available: bool,
}

impl std::fmt::Debug for NsmDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NsmDevice")
            .field("module_id", &self.attester.module_id())
            .field("attestation_available", &self.attestation_available)
            .finish_non_exhaustive()
    }
}

impl NsmDevice {
    /// A device over `bank` whose documents `attester` signs.
    pub fn new(bank: PcrBank, attester: Arc<dyn Attester + Send + Sync>) -> Self {
        Self {
            bank: Mutex::new(bank),
            attester,
            attestation_available: true,
        }
    }

    /// A device over `bank` that cannot sign: Attestation requests get `InternalError`, every
    /// other request works.
    pub fn without_attestation(bank: PcrBank, module_id: impl Into<String>) -> Self {
        Self {
            bank: Mutex::new(bank),
            attester: Arc::new(NoAttester::new(module_id)),
            attestation_available: false,
        }
    }

    /// Whether Attestation requests can succeed.
    pub fn attestation_available(&self) -> bool {
        self.attestation_available
    }

    /// The module id reported by DescribeNSM and in documents.
    pub fn module_id(&self) -> &str {
        self.attester.module_id()
    }

    fn bank(&self) -> MutexGuard<'_, PcrBank> {
        self.bank.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A copy of the PCR bank now (reports and tests).
    pub fn pcrs(&self) -> PcrBank {
        self.bank().clone()
    }

    /// Serves one CBOR request for a caller whose response buffer holds `capacity` bytes.
    pub fn request(&self, request: &[u8], capacity: usize) -> Vec<u8> {
        let mut bank = self.bank();
        nsm::handle_with_limit(request, &mut bank, self.attester.as_ref(), capacity)
    }

    /// `ioctl(fd, cmd, arg)` on an open `/dev/nsm`.
    pub fn ioctl(&self, cmd: u64, arg: u64, mem: &UserMemory<'_>) -> SysResult {
        if cmd != NSM_IOCTL_RAW {
            return Err(Errno::EINVAL);
        }
        let mut raw = [0u8; 32];
        mem.copy_in(arg, &mut raw)?;
        // The struct is written back at the end: refuse a read-only one before any effect.
        mem.check_writable(arg, NSM_RAW_SIZE)?;
        let field = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&raw[i * 8..i * 8 + 8]);
            u64::from_le_bytes(b)
        };
        let (req_addr, req_len, resp_addr, resp_len) = (field(0), field(1), field(2), field(3));
        let req_len = usize::try_from(req_len)
            .ok()
            .filter(|&n| n <= nsm::MAX_REQUEST_SIZE)
            .ok_or(EMSGSIZE)?;
        let request = mem.copy_in_vec(req_addr, req_len)?;
        let capacity = usize::try_from(resp_len).unwrap_or(usize::MAX);
        let response = self.request(&request, capacity);
        // As the Linux driver: truncate what does not fit (only an error response can, in a
        // buffer smaller than a few dozen bytes) and report the length written.
        let n = response.len().min(capacity);
        let out = response.get(..n).unwrap_or_default();
        mem.copy_out(resp_addr, out)?;
        let written = u64::try_from(n).map_err(|_| Errno::EINVAL)?;
        let len_at = arg.checked_add(RESPONSE_LEN_OFFSET).ok_or(Errno::EFAULT)?;
        mem.write_u64(len_at, written)?;
        Ok(0)
    }
}

/// An open `/dev/nsm`.
#[derive(Debug)]
pub struct NsmFile {
    device: Arc<NsmDevice>,
    flags: DevFlags,
}

impl NsmFile {
    /// Opens the enclave's device with the `open` flags `flags`.
    pub fn new(device: Arc<NsmDevice>, flags: i32) -> Self {
        Self {
            device,
            flags: DevFlags::new(flags),
        }
    }
}

impl FileOps for NsmFile {
    // The Linux driver has neither read nor write: the VFS answers EINVAL.
    fn read(&self, _buf: &mut [u8]) -> SysResult {
        Err(Errno::EINVAL)
    }

    fn write(&self, _data: &[u8]) -> SysResult {
        Err(Errno::EINVAL)
    }

    fn stat(&self) -> Result<Stat, Errno> {
        Ok(device_stat(Device::Nsm))
    }

    fn ioctl(&self, cmd: u64, arg: u64, mem: &UserMemory<'_>) -> SysResult {
        self.device.ioctl(cmd, arg, mem)
    }

    fn path(&self) -> Option<&str> {
        Some("/dev/nsm")
    }

    fn status_flags(&self) -> i32 {
        self.flags.get()
    }

    fn set_status_flags(&self, flags: i32) {
        self.flags.set(flags);
    }
}
