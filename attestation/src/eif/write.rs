//! Writing an EIF: `Eif::to_bytes` lays sections out contiguously right after the header and
//! fills in the tables and CRC; `EifWriter` assembles sections in the order AWS's
//! `EifBuilder` writes them (kernel, cmdline, metadata, ramdisks, signature).

use super::header::{
    Header, SectionHeader, CRC_FIELD_OFFSET, HEADER_SIZE_U64, SECTION_HEADER_SIZE_U64,
};
use super::{
    compute_crc, Eif, EifError, Section, SectionType, EIF_MAGIC, EIF_VERSION, MAX_EIF_SIZE,
    MAX_SECTIONS,
};

/// Default enclave memory AWS's `EifBuilder` records: 1 GiB.
pub const DEFAULT_MEM: u64 = 1 << 30;
/// Default vCPU count AWS's `EifBuilder` records.
pub const DEFAULT_CPUS: u64 = 2;

impl Eif {
    /// Encodes the EIF: header (with section tables and CRC32), then each section header and
    /// its data, in `self.sections` order, contiguously.
    pub fn to_bytes(&self) -> Result<Vec<u8>, EifError> {
        let count = self.sections.len();
        if count > MAX_SECTIONS {
            return Err(EifError::TooManySections {
                count,
                max: MAX_SECTIONS,
            });
        }
        let too_large = |len: u64| EifError::TooLarge {
            len,
            max: MAX_EIF_SIZE,
        };
        let mut header = Header {
            magic: EIF_MAGIC,
            version: EIF_VERSION,
            flags: self.flags,
            default_mem: self.default_mem,
            default_cpus: self.default_cpus,
            reserved: 0,
            section_cnt: u16::try_from(count).map_err(|_| EifError::TooManySections {
                count,
                max: MAX_SECTIONS,
            })?,
            section_offsets: [0; MAX_SECTIONS],
            section_sizes: [0; MAX_SECTIONS],
            unused: 0,
            eif_crc32: 0,
        };
        let mut cursor = HEADER_SIZE_U64;
        let slots = header
            .section_offsets
            .iter_mut()
            .zip(header.section_sizes.iter_mut());
        for (index, (section, (offset, size))) in self.sections.iter().zip(slots).enumerate() {
            if section.kind == SectionType::Invalid {
                return Err(EifError::InvalidSectionToWrite { index });
            }
            let len = u64::try_from(section.data.len()).map_err(|_| too_large(u64::MAX))?;
            *offset = cursor;
            *size = len;
            cursor = cursor
                .checked_add(SECTION_HEADER_SIZE_U64)
                .and_then(|c| c.checked_add(len))
                .ok_or(too_large(u64::MAX))?;
        }
        if cursor > MAX_EIF_SIZE {
            return Err(too_large(cursor));
        }
        let total = usize::try_from(cursor).map_err(|_| too_large(cursor))?;
        let mut out = Vec::with_capacity(total);
        out.extend_from_slice(&header.encode());
        for section in &self.sections {
            append_section(&mut out, section)?;
        }
        header.eif_crc32 = compute_crc(&out).unwrap_or_default();
        if let Some(field) = out.get_mut(CRC_FIELD_OFFSET..CRC_FIELD_OFFSET + 4) {
            field.copy_from_slice(&header.eif_crc32.to_be_bytes());
        }
        Ok(out)
    }
}

fn append_section(out: &mut Vec<u8>, section: &Section) -> Result<(), EifError> {
    let size = u64::try_from(section.data.len()).map_err(|_| EifError::TooLarge {
        len: u64::MAX,
        max: MAX_EIF_SIZE,
    })?;
    let sh = SectionHeader {
        kind: section.kind.to_u16(),
        flags: section.flags,
        size,
    };
    out.extend_from_slice(&sh.encode());
    out.extend_from_slice(&section.data);
    Ok(())
}

/// Assembles an EIF from its parts in AWS's `EifBuilder` order: kernel, cmdline, metadata,
/// ramdisks in order, signature. Section flags are 0, as AWS writes them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EifWriter {
    /// Kernel section data.
    pub kernel: Vec<u8>,
    /// Cmdline section data.
    pub cmdline: Vec<u8>,
    /// Metadata section data (JSON); AWS always writes one.
    pub metadata: Option<Vec<u8>>,
    /// Ramdisk sections, in order; ramdisk 0 is measured into PCR1, the rest into PCR2.
    pub ramdisks: Vec<Vec<u8>>,
    /// Signature section data (CBOR), if signed.
    pub signature: Option<Vec<u8>>,
    /// Header flags ([`super::FLAG_ARCH_ARM64`] or 0).
    pub flags: u16,
    /// Default enclave memory, bytes.
    pub default_mem: u64,
    /// Default vCPU count.
    pub default_cpus: u64,
}

impl EifWriter {
    /// A writer with the given kernel and cmdline and AWS's default memory and vCPU count.
    pub fn new(kernel: Vec<u8>, cmdline: Vec<u8>) -> Self {
        Self {
            kernel,
            cmdline,
            default_mem: DEFAULT_MEM,
            default_cpus: DEFAULT_CPUS,
            ..Self::default()
        }
    }

    /// The EIF this writer describes, sections in AWS's order.
    pub fn into_eif(self) -> Eif {
        let section = |kind, data| Section {
            kind,
            flags: 0,
            data,
        };
        let mut sections = vec![
            section(SectionType::Kernel, self.kernel),
            section(SectionType::Cmdline, self.cmdline),
        ];
        sections.extend(self.metadata.map(|m| section(SectionType::Metadata, m)));
        sections.extend(
            self.ramdisks
                .into_iter()
                .map(|r| section(SectionType::Ramdisk, r)),
        );
        sections.extend(self.signature.map(|s| section(SectionType::Signature, s)));
        Eif {
            flags: self.flags,
            default_mem: self.default_mem,
            default_cpus: self.default_cpus,
            sections,
        }
    }

    /// Encodes the EIF; see [`Eif::to_bytes`].
    pub fn to_bytes(&self) -> Result<Vec<u8>, EifError> {
        self.clone().into_eif().to_bytes()
    }
}
