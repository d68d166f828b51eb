//! Nitro-style PCR measurement of an EIF. A PCR is a SHA-384 register extended as a TPM does
//! (`new = SHA384(old ‖ data)`); Nitro measures a region by extending the zero register once
//! with the SHA-384 of its raw section data: `PCR = SHA384(48 zero bytes ‖ SHA384(data))`.
//! As AWS's `EifBuilder`/`EifReader`: PCR0 = kernel ‖ cmdline ‖ all ramdisks, PCR1 = kernel ‖
//! cmdline ‖ ramdisk 0, PCR2 = ramdisks 1.., PCR8 = the signing certificate (DER).

use serde::ser::{Serialize, SerializeMap, Serializer};
use sha2::{Digest, Sha384};

use crate::eif::{Eif, SectionType};

/// A SHA-384 PCR value.
pub type Pcr = [u8; 48];

/// The reset value of a PCR.
pub const PCR_ZERO: Pcr = [0; 48];

/// What nitro-cli prints as `HashAlgorithm` (the `Debug` of sha2's `Sha384`).
pub const HASH_ALGORITHM: &str = "Sha384 { ... }";

/// TPM extend: `SHA384(old ‖ data)`.
pub fn extend(old: &Pcr, data: &[u8]) -> Pcr {
    Sha384::new()
        .chain_update(old)
        .chain_update(data)
        .finalize()
        .into()
}

/// Streaming Nitro measurement: feed data, then `SHA384(zeros ‖ SHA384(all data))`.
#[derive(Clone, Debug, Default)]
pub struct PcrHasher {
    inner: Sha384,
}

impl PcrHasher {
    /// A hasher over no data yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends data to the measured region.
    pub fn update(&mut self, data: &[u8]) {
        self.inner.update(data);
    }

    /// The PCR value: the zero register extended with the digest of everything fed.
    pub fn finalize(self) -> Pcr {
        let digest: [u8; 48] = self.inner.finalize().into();
        extend(&PCR_ZERO, &digest)
    }
}

/// Nitro measurement of one region of data.
pub fn measure(data: &[u8]) -> Pcr {
    let mut h = PcrHasher::new();
    h.update(data);
    h.finalize()
}

/// The PCRs of an enclave image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Measurements {
    /// Whole image: kernel, cmdline, all ramdisks.
    pub pcr0: Pcr,
    /// Bootstrap: kernel, cmdline, ramdisk 0.
    pub pcr1: Pcr,
    /// Application: ramdisks 1...
    pub pcr2: Pcr,
    /// Signing certificate (DER), when the image is signed.
    pub pcr8: Option<Pcr>,
}

impl Measurements {
    /// Measures an EIF as AWS's `EifReader` does: sections in file order, raw data only
    /// (no section headers). Metadata and signature sections are not measured into PCR0-2.
    /// `pcr8` is left `None`: set it with [`Measurements::with_signing_certificate`].
    pub fn of(eif: &Eif) -> Self {
        Self::of_sections(eif.sections.iter().map(|s| (s.kind, s.data.as_slice())))
    }

    /// [`Measurements::of`] over sections given as `(type, data)` in file order (e.g. from an
    /// [`crate::eif::EifView`]).
    pub fn of_sections<'a>(sections: impl IntoIterator<Item = (SectionType, &'a [u8])>) -> Self {
        // PCR0 and PCR1 hash the same bytes up to the second ramdisk: hash them once and fork
        // the PCR1 state (`boot`) only where the two diverge.
        let (mut image, mut app) = (PcrHasher::new(), PcrHasher::new());
        let mut boot: Option<PcrHasher> = None;
        let mut ramdisk_index = 0usize;
        for (kind, data) in sections {
            let both = match kind {
                SectionType::Kernel | SectionType::Cmdline => true,
                SectionType::Ramdisk => {
                    ramdisk_index = ramdisk_index.saturating_add(1);
                    ramdisk_index == 1
                }
                SectionType::Invalid | SectionType::Signature | SectionType::Metadata => continue,
            };
            if both {
                if let Some(b) = boot.as_mut() {
                    b.update(data);
                }
            } else {
                boot.get_or_insert_with(|| image.clone());
                app.update(data);
            }
            image.update(data);
        }
        let boot = boot.unwrap_or_else(|| image.clone());
        Self {
            pcr0: image.finalize(),
            pcr1: boot.finalize(),
            pcr2: app.finalize(),
            pcr8: None,
        }
    }

    /// These measurements with PCR8 set to the measurement of a DER signing certificate.
    pub fn with_signing_certificate(mut self, certificate_der: &[u8]) -> Self {
        self.pcr8 = Some(measure(certificate_der));
        self
    }

    /// nitro-cli's JSON shape: `{"HashAlgorithm": "Sha384 { ... }", "PCR0": "<hex>", ...}`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut map = serde_json::Map::new();
        map.insert("HashAlgorithm".into(), HASH_ALGORITHM.into());
        for (name, pcr) in self.named() {
            map.insert(name.into(), hex::encode(pcr).into());
        }
        serde_json::Value::Object(map)
    }

    fn named(&self) -> Vec<(&'static str, &Pcr)> {
        let mut out = vec![
            ("PCR0", &self.pcr0),
            ("PCR1", &self.pcr1),
            ("PCR2", &self.pcr2),
        ];
        out.extend(self.pcr8.as_ref().map(|p| ("PCR8", p)));
        out
    }
}

impl Serialize for Measurements {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let named = self.named();
        let mut map = serializer.serialize_map(Some(named.len().saturating_add(1)))?;
        map.serialize_entry("HashAlgorithm", HASH_ALGORITHM)?;
        for (name, pcr) in named {
            map.serialize_entry(name, &hex::encode(pcr))?;
        }
        map.end()
    }
}
