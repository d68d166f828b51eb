//! The fixed 548-byte EIF header and the 12-byte section header, big-endian, laid out as
//! AWS's `aws-nitro-enclaves-image-format` (`src/defs/mod.rs`) defines them.

use super::EifError;

/// Magic bytes at offset 0.
pub const EIF_MAGIC: [u8; 4] = *b".eif";
/// The only EIF version we read and write.
pub const EIF_VERSION: u16 = 4;
/// Capacity of the header's section tables.
pub const MAX_SECTIONS: usize = 32;
/// Size of the EIF header in bytes.
pub const HEADER_SIZE: usize = 548;
/// Size of a section header in bytes.
pub const SECTION_HEADER_SIZE: usize = 12;
/// Header flag: the image is for aarch64 (cleared for x86_64).
pub const FLAG_ARCH_ARM64: u16 = 0x1;

/// [`HEADER_SIZE`] as u64.
pub(crate) const HEADER_SIZE_U64: u64 = 548;
/// [`SECTION_HEADER_SIZE`] as u64.
pub(crate) const SECTION_HEADER_SIZE_U64: u64 = 12;
/// Offset of the trailing `eif_crc32` field, which the CRC does not cover.
pub(crate) const CRC_FIELD_OFFSET: usize = HEADER_SIZE - 4;

/// The EIF header, field for field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub magic: [u8; 4],
    pub version: u16,
    pub flags: u16,
    pub default_mem: u64,
    pub default_cpus: u64,
    pub reserved: u16,
    pub section_cnt: u16,
    pub section_offsets: [u64; MAX_SECTIONS],
    pub section_sizes: [u64; MAX_SECTIONS],
    pub unused: u32,
    pub eif_crc32: u32,
}

/// Reads big-endian fields off the front of a slice; running short is `TooShort`.
struct Reader<'a> {
    rest: &'a [u8],
    total: usize,
}

impl<'a> Reader<'a> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], EifError> {
        let (head, rest) = self
            .rest
            .split_first_chunk::<N>()
            .ok_or(EifError::TooShort {
                len: self.total,
                header: HEADER_SIZE,
            })?;
        self.rest = rest;
        Ok(*head)
    }
    fn u16(&mut self) -> Result<u16, EifError> {
        self.take().map(u16::from_be_bytes)
    }
    fn u32(&mut self) -> Result<u32, EifError> {
        self.take().map(u32::from_be_bytes)
    }
    fn u64(&mut self) -> Result<u64, EifError> {
        self.take().map(u64::from_be_bytes)
    }
}

impl Header {
    /// Decodes the header from the start of `bytes`.
    pub fn decode(bytes: &[u8]) -> Result<Self, EifError> {
        let mut r = Reader {
            rest: bytes,
            total: bytes.len(),
        };
        let magic = r.take()?;
        let version = r.u16()?;
        let flags = r.u16()?;
        let default_mem = r.u64()?;
        let default_cpus = r.u64()?;
        let reserved = r.u16()?;
        let section_cnt = r.u16()?;
        let mut section_offsets = [0u64; MAX_SECTIONS];
        for slot in &mut section_offsets {
            *slot = r.u64()?;
        }
        let mut section_sizes = [0u64; MAX_SECTIONS];
        for slot in &mut section_sizes {
            *slot = r.u64()?;
        }
        let unused = r.u32()?;
        let eif_crc32 = r.u32()?;
        Ok(Self {
            magic,
            version,
            flags,
            default_mem,
            default_cpus,
            reserved,
            section_cnt,
            section_offsets,
            section_sizes,
            unused,
            eif_crc32,
        })
    }

    /// Encodes the header, big-endian, [`HEADER_SIZE`] bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_SIZE);
        out.extend_from_slice(&self.magic);
        out.extend_from_slice(&self.version.to_be_bytes());
        out.extend_from_slice(&self.flags.to_be_bytes());
        out.extend_from_slice(&self.default_mem.to_be_bytes());
        out.extend_from_slice(&self.default_cpus.to_be_bytes());
        out.extend_from_slice(&self.reserved.to_be_bytes());
        out.extend_from_slice(&self.section_cnt.to_be_bytes());
        for v in &self.section_offsets {
            out.extend_from_slice(&v.to_be_bytes());
        }
        for v in &self.section_sizes {
            out.extend_from_slice(&v.to_be_bytes());
        }
        out.extend_from_slice(&self.unused.to_be_bytes());
        out.extend_from_slice(&self.eif_crc32.to_be_bytes());
        out
    }
}

/// A section header: raw type, flags, data size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SectionHeader {
    pub kind: u16,
    pub flags: u16,
    pub size: u64,
}

impl SectionHeader {
    /// Decodes a section header from exactly [`SECTION_HEADER_SIZE`] bytes.
    pub fn decode(bytes: &[u8; SECTION_HEADER_SIZE]) -> Self {
        let [k0, k1, f0, f1, s @ ..] = *bytes;
        Self {
            kind: u16::from_be_bytes([k0, k1]),
            flags: u16::from_be_bytes([f0, f1]),
            size: u64::from_be_bytes(s),
        }
    }

    /// Encodes the section header, big-endian.
    pub fn encode(&self) -> [u8; SECTION_HEADER_SIZE] {
        let mut out = [0u8; SECTION_HEADER_SIZE];
        let (k, rest) = out.split_at_mut(2);
        let (f, s) = rest.split_at_mut(2);
        k.copy_from_slice(&self.kind.to_be_bytes());
        f.copy_from_slice(&self.flags.to_be_bytes());
        s.copy_from_slice(&self.size.to_be_bytes());
        out
    }
}
