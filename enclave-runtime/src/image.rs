//! Unpacking an enclave image (EIF) into what the VMM boots: the checked guest ABI, the init
//! program, its arguments and environment, and the read-only file tree.

use attestation::cpio;
use attestation::eif::{Eif, EifError, EifView};
use attestation::image::{InitSpec, InitSpecError};
use attestation::pcr::{Measurements, PCR_ZERO};

use crate::guest_abi::{self, AbiError};
use crate::kernel::fs::TreeEntry;

/// Why an image cannot be booted.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// Not a valid EIF.
    #[error("the enclave image is not a valid EIF")]
    Eif(#[source] EifError),
    /// The Kernel section is missing.
    #[error("the enclave image has no kernel section; build it with `enclave build-enclave`")]
    NoKernel,
    /// The Kernel section is not this runtime's guest ABI.
    #[error("the enclave image was not built for this runtime")]
    Abi(#[source] AbiError),
    /// The Cmdline section is missing or malformed.
    #[error("the enclave image's init arguments (cmdline section) are invalid")]
    InitSpec(#[source] InitSpecError),
    /// No cmdline section.
    #[error("the enclave image has no cmdline section; build it with `enclave build-enclave`")]
    NoCmdline,
    /// No ramdisk.
    #[error("the enclave image has no root ramdisk")]
    NoRamdisk,
    /// A ramdisk is not a valid cpio archive.
    #[error("ramdisk {index} of the enclave image is not a valid cpio newc archive")]
    Ramdisk {
        /// Ramdisk index.
        index: usize,
        /// Cause.
        #[source]
        source: cpio::CpioError,
    },
    /// `/init` missing or not a regular file.
    #[error("the enclave image has no /init program (a regular file)")]
    NoInit,
    /// The image is signed, but the signature does not check.
    #[error("the enclave image's signature does not check (see `enclave describe-eif`); re-sign it with `enclave sign-eif`")]
    Signature(#[source] attestation::signing::SigError),
}

/// An image ready to boot.
pub struct BootImage {
    /// Where the static ELF to run (`/init`) is in `tree`.
    init_index: usize,
    /// argv and envp.
    pub spec: InitSpec,
    /// Every entry of every ramdisk, in order (later ramdisks win on duplicates).
    pub tree: Vec<TreeEntry>,
    /// PCR0/1/2 of the image, and PCR8 when it is signed.
    pub measurements: Measurements,
}

impl BootImage {
    /// The static ELF to run (`/init`).
    pub fn init(&self) -> &[u8] {
        self.tree
            .get(self.init_index)
            .map_or(&[][..], |e| e.data.as_slice())
    }
}

/// Parses and checks an EIF for booting.
pub fn unpack(bytes: &[u8]) -> Result<BootImage, ImageError> {
    let mut img = unpack_unmeasured(bytes)?;
    img.measurements = measure(bytes)?;
    Ok(img)
}

/// The measurements of an EIF (PCR0/1/2, PCR8 when signed; a signature that does not check is
/// an error). The hashing is most of [`unpack`]'s time, so launchers may run it on another
/// thread beside [`unpack_unmeasured`].
pub fn measure(bytes: &[u8]) -> Result<Measurements, ImageError> {
    let view = EifView::parse(bytes).map_err(ImageError::Eif)?;
    if view.signature().is_none() {
        return Ok(Measurements::of_sections(
            view.sections.iter().map(|s| (s.kind, s.data)),
        ));
    }
    let eif = Eif::parse(bytes).map_err(ImageError::Eif)?;
    crate::attest::image_measurements(&eif).map_err(ImageError::Signature)
}

/// [`unpack`] without hashing: `measurements` are all zero until set from [`measure`], which
/// also checks the file's CRC32 (a launch runs both; this one makes every other check, and
/// when one fails, says so only if the CRC matches: a corrupted file is named as such).
pub fn unpack_unmeasured(bytes: &[u8]) -> Result<BootImage, ImageError> {
    unpack_layout(bytes).map_err(|e| match EifView::parse(bytes) {
        Err(whole) => ImageError::Eif(whole),
        Ok(_) => e,
    })
}

fn unpack_layout(bytes: &[u8]) -> Result<BootImage, ImageError> {
    let eif = EifView::parse_layout(bytes).map_err(ImageError::Eif)?;
    let kernel = eif.kernel().ok_or(ImageError::NoKernel)?;
    guest_abi::check_kernel_blob(kernel).map_err(ImageError::Abi)?;
    let spec = InitSpec::parse(eif.cmdline().ok_or(ImageError::NoCmdline)?)
        .map_err(ImageError::InitSpec)?;
    let ramdisks = eif.ramdisks();
    if ramdisks.is_empty() {
        return Err(ImageError::NoRamdisk);
    }
    let mut by_path = std::collections::BTreeMap::new();
    for (index, rd) in ramdisks.iter().enumerate() {
        for e in cpio::read(rd).map_err(|source| ImageError::Ramdisk { index, source })? {
            by_path.insert(e.path.clone(), e);
        }
    }
    if by_path
        .get(attestation::image::INIT_PATH)
        .is_none_or(|e| e.file_type() != cpio::S_IFREG)
    {
        return Err(ImageError::NoInit);
    }
    let tree: Vec<TreeEntry> = by_path
        .into_values()
        .map(|e| TreeEntry {
            path: e.path,
            mode: e.mode,
            data: e.data,
        })
        .collect();
    let init_index = tree
        .iter()
        .position(|e| e.path == attestation::image::INIT_PATH)
        .ok_or(ImageError::NoInit)?;
    Ok(BootImage {
        init_index,
        spec,
        tree,
        measurements: Measurements {
            pcr0: PCR_ZERO,
            pcr1: PCR_ZERO,
            pcr2: PCR_ZERO,
            pcr8: None,
        },
    })
}
