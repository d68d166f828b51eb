//! Building an enclave image from its parts, reproducibly: the runtime's kernel blob, the
//! static init ELF and extra files (ramdisk 0, a cpio `newc` with `/init`), the init spec
//! (Cmdline section) and identity metadata (Metadata section); optionally a whole root tree
//! (an unpacked container image). Same inputs → same bytes.

mod describe;
mod init_spec;
mod metadata;

pub use describe::{describe, Description, SectionInfo};
pub use init_spec::{InitSpec, InitSpecError, MAX_INIT_SPEC_SIZE};
pub use metadata::{
    build_time_from_epoch, BuildMetadata, ImageMetadata, MetadataError, EPOCH_BUILD_TIME,
};

use std::collections::BTreeSet;

use crate::cpio::{self, normalize_path, CpioEntry, CpioError};
use crate::eif::{EifError, EifWriter};
use crate::pcr::Measurements;

/// Path of the init binary inside the image.
pub const INIT_PATH: &str = "init";
/// Mode of the init binary.
pub const INIT_MODE: u32 = 0o100_755;

/// Why an image could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// Kernel blob missing.
    #[error("Kernel blob is empty: the runtime must supply its guest stub")]
    EmptyKernel,
    /// Init binary missing.
    #[error("Init binary is empty: give the static ELF to run as /init")]
    EmptyInit,
    /// Init spec invalid.
    #[error("Invalid init spec")]
    InitSpec(#[source] InitSpecError),
    /// A file's destination path is unusable.
    #[error("File destination {path:?} is not usable")]
    FilePath {
        /// The path given.
        path: String,
        /// Why.
        #[source]
        source: CpioError,
    },
    /// A file would replace /init.
    #[error("File destination {path:?} would replace /init: the init binary is given separately, as `init`")]
    InitPathTaken {
        /// The path given.
        path: String,
    },
    /// Two files with the same normalized destination.
    #[error("Two files go to /{path}: each destination may be given once")]
    DuplicateFile {
        /// Normalized path.
        path: String,
    },
    /// Permission bits outside 0o7777.
    #[error(
        "File /{path} has permission bits {perm:#o}: give only bits within 0o7777 (e.g. 0o644)"
    )]
    BadPermission {
        /// Normalized path.
        path: String,
        /// Bits given.
        perm: u32,
    },
    /// The root ramdisk could not be written.
    #[error("Could not build the root ramdisk")]
    Ramdisk(#[source] CpioError),
    /// The EIF could not be written.
    #[error("Could not write the EIF")]
    Eif(#[source] EifError),
}

/// Everything an image is built from.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageInputs {
    /// Opaque guest ABI blob supplied by the runtime (the Kernel section).
    pub kernel: Vec<u8>,
    /// The static init ELF, stored as `/init` mode 0o100755.
    pub init: Vec<u8>,
    /// Extra files: destination path in the image, contents, permission bits.
    pub files: Vec<(String, Vec<u8>, u32)>,
    /// Init argv/env (the Cmdline section).
    pub init_spec: InitSpec,
    /// Identity metadata (the Metadata section).
    pub metadata: ImageMetadata,
}

/// A built image: the EIF bytes and their PCRs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuiltImage {
    /// The EIF.
    pub bytes: Vec<u8>,
    /// Its measurements.
    pub measurements: Measurements,
}

/// Builds the EIF: kernel, cmdline (init spec JSON), metadata, ramdisk 0 (cpio of `/init`
/// and the files). Reproducible: same inputs give byte-identical output.
pub fn build_eif(inputs: &ImageInputs) -> Result<BuiltImage, ImageError> {
    build_eif_with_tree(inputs, &[])
}

/// [`build_eif`] with a whole root tree besides `/init` and the files: directories, regular
/// files and symlinks (an unpacked container image). A tree entry may not be `init` nor
/// share a path with a file.
pub fn build_eif_with_tree(
    inputs: &ImageInputs,
    tree: &[CpioEntry],
) -> Result<BuiltImage, ImageError> {
    if inputs.kernel.is_empty() {
        return Err(ImageError::EmptyKernel);
    }
    if inputs.init.is_empty() {
        return Err(ImageError::EmptyInit);
    }
    inputs.init_spec.validate().map_err(ImageError::InitSpec)?;
    let ramdisk = root_ramdisk(inputs, tree)?;
    let mut writer = EifWriter::new(inputs.kernel.clone(), inputs.init_spec.to_bytes());
    writer.metadata = Some(inputs.metadata.to_bytes());
    writer.ramdisks = vec![ramdisk];
    let eif = writer.into_eif();
    let bytes = eif.to_bytes().map_err(ImageError::Eif)?;
    Ok(BuiltImage {
        bytes,
        measurements: Measurements::of(&eif),
    })
}

/// The cpio of `/init` plus the files, paths normalized, duplicates refused.
fn root_ramdisk(inputs: &ImageInputs, tree: &[CpioEntry]) -> Result<Vec<u8>, ImageError> {
    let mut entries = vec![CpioEntry {
        path: INIT_PATH.to_owned(),
        mode: INIT_MODE,
        data: inputs.init.clone(),
    }];
    let mut seen = BTreeSet::new();
    for (dst, data, perm) in &inputs.files {
        let path = normalize_path(dst).map_err(|source| ImageError::FilePath {
            path: dst.clone(),
            source,
        })?;
        if path == INIT_PATH {
            return Err(ImageError::InitPathTaken { path: dst.clone() });
        }
        if *perm > 0o7777 {
            return Err(ImageError::BadPermission { path, perm: *perm });
        }
        if !seen.insert(path.clone()) {
            return Err(ImageError::DuplicateFile { path });
        }
        entries.push(CpioEntry::file(path, *perm, data.clone()));
    }
    for entry in tree {
        let path = normalize_path(&entry.path).map_err(|source| ImageError::FilePath {
            path: entry.path.clone(),
            source,
        })?;
        if path == INIT_PATH {
            return Err(ImageError::InitPathTaken {
                path: entry.path.clone(),
            });
        }
        if !seen.insert(path.clone()) {
            return Err(ImageError::DuplicateFile { path });
        }
        entries.push(CpioEntry {
            path,
            mode: entry.mode,
            data: entry.data.clone(),
        });
    }
    cpio::write(&entries).map_err(ImageError::Ramdisk)
}
