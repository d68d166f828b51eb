//! `Eif::parse`: strict, bounded reading of an EIF from bytes. Every offset and size is
//! checked against the input with checked arithmetic before anything is sliced or copied.

use std::ops::Range;

use super::header::{Header, SectionHeader, HEADER_SIZE_U64, SECTION_HEADER_SIZE_U64};
use super::{
    compute_crc, Eif, EifError, Section, SectionType, EIF_MAGIC, EIF_VERSION, HEADER_SIZE,
    MAX_EIF_SIZE, MAX_SECTIONS, SECTION_HEADER_SIZE,
};

/// Where one section was found: its type, flags and the byte range of its data.
struct Located {
    kind: SectionType,
    flags: u16,
    data: Range<usize>,
}

impl Eif {
    /// Parses and validates an EIF v4: magic, version, section tables, every section header,
    /// contiguous layout with no trailing bytes, and the CRC32.
    pub fn parse(bytes: &[u8]) -> Result<Eif, EifError> {
        let view = EifView::parse(bytes)?;
        Ok(Eif {
            flags: view.flags,
            default_mem: view.default_mem,
            default_cpus: view.default_cpus,
            sections: view
                .sections
                .iter()
                .map(|s| Section {
                    kind: s.kind,
                    flags: s.flags,
                    data: s.data.to_vec(),
                })
                .collect(),
        })
    }
}

/// One section of an [`EifView`]: its type, flags and data, borrowed from the file's bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SectionView<'a> {
    /// Section type.
    pub kind: SectionType,
    /// Section header flags.
    pub flags: u16,
    /// Section data.
    pub data: &'a [u8],
}

/// An EIF checked exactly as [`Eif::parse`] checks it, whose sections borrow the input instead
/// of copying it (a launch reads a whole image once and copying it costs page faults).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EifView<'a> {
    /// Header flags.
    pub flags: u16,
    /// Default enclave memory, bytes.
    pub default_mem: u64,
    /// Default enclave vCPU count.
    pub default_cpus: u64,
    /// Sections in file order.
    pub sections: Vec<SectionView<'a>>,
}

impl<'a> EifView<'a> {
    /// The data of the first section of `kind`.
    fn first(&self, kind: SectionType) -> Option<&'a [u8]> {
        self.sections
            .iter()
            .find(|s| s.kind == kind)
            .map(|s| s.data)
    }

    /// The kernel section's data.
    pub fn kernel(&self) -> Option<&'a [u8]> {
        self.first(SectionType::Kernel)
    }

    /// The cmdline section's data.
    pub fn cmdline(&self) -> Option<&'a [u8]> {
        self.first(SectionType::Cmdline)
    }

    /// The signature section's data (CBOR).
    pub fn signature(&self) -> Option<&'a [u8]> {
        self.first(SectionType::Signature)
    }

    /// The ramdisks' data, in file order.
    pub fn ramdisks(&self) -> Vec<&'a [u8]> {
        self.sections
            .iter()
            .filter(|s| s.kind == SectionType::Ramdisk)
            .map(|s| s.data)
            .collect()
    }

    /// Parses and validates `bytes` as [`Eif::parse`] does, without copying section data.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, EifError> {
        Self::parse_inner(bytes, true)
    }

    /// [`EifView::parse`] without the CRC32, for a reader that checks it elsewhere (it is a
    /// pass over every byte of the file): every other check is made, so the views are as
    /// safe to use.
    pub fn parse_layout(bytes: &'a [u8]) -> Result<Self, EifError> {
        Self::parse_inner(bytes, false)
    }

    fn parse_inner(bytes: &'a [u8], check_crc: bool) -> Result<Self, EifError> {
        let too_large = |len: u64| EifError::TooLarge {
            len,
            max: MAX_EIF_SIZE,
        };
        let file_len = u64::try_from(bytes.len()).map_err(|_| too_large(u64::MAX))?;
        if file_len > MAX_EIF_SIZE {
            return Err(too_large(file_len));
        }
        let header = Header::decode(bytes)?;
        if header.magic != EIF_MAGIC {
            return Err(EifError::BadMagic {
                found: header.magic,
            });
        }
        if header.version != EIF_VERSION {
            return Err(EifError::UnsupportedVersion {
                version: header.version,
                supported: EIF_VERSION,
            });
        }
        let count = usize::from(header.section_cnt);
        if count > MAX_SECTIONS {
            return Err(EifError::TooManySections {
                count,
                max: MAX_SECTIONS,
            });
        }
        let tables = header.section_offsets.iter().zip(&header.section_sizes);
        if let Some((index, _)) = tables
            .clone()
            .enumerate()
            .skip(count)
            .find(|(_, (&o, &s))| o != 0 || s != 0)
        {
            return Err(EifError::UnusedSlotNotZero { index });
        }

        let mut located: Vec<Located> = Vec::with_capacity(count);
        let mut cursor = HEADER_SIZE_U64;
        for (index, (&offset, &size)) in tables.take(count).enumerate() {
            let end = offset
                .checked_add(SECTION_HEADER_SIZE_U64)
                .and_then(|v| v.checked_add(size))
                .ok_or(EifError::SectionOverflow {
                    index,
                    offset,
                    size,
                })?;
            if end > file_len {
                return Err(EifError::SectionOutOfBounds {
                    index,
                    offset,
                    size,
                    file_len,
                });
            }
            if offset != cursor {
                return Err(EifError::SectionNotContiguous {
                    index,
                    offset,
                    expected: cursor,
                });
            }
            located.push(locate(bytes, index, offset, size, end)?);
            cursor = end;
        }
        reject_duplicates(&located)?;
        if cursor != file_len {
            return Err(EifError::TrailingBytes {
                count: file_len.saturating_sub(cursor),
                end: cursor,
            });
        }
        if check_crc {
            let actual = compute_crc(bytes).ok_or(EifError::TooShort {
                len: bytes.len(),
                header: HEADER_SIZE,
            })?;
            if actual != header.eif_crc32 {
                return Err(EifError::CrcMismatch {
                    expected: header.eif_crc32,
                    actual,
                });
            }
        }

        let sections = located
            .into_iter()
            .map(|l| SectionView {
                kind: l.kind,
                flags: l.flags,
                data: bytes.get(l.data).unwrap_or_default(),
            })
            .collect();
        Ok(EifView {
            flags: header.flags,
            default_mem: header.default_mem,
            default_cpus: header.default_cpus,
            sections,
        })
    }
}

/// Reads and checks the section header at `offset`; `end` has been checked to lie in `bytes`.
fn locate(
    bytes: &[u8],
    index: usize,
    offset: u64,
    size: u64,
    end: u64,
) -> Result<Located, EifError> {
    let out_of_bounds = || EifError::SectionOutOfBounds {
        index,
        offset,
        size,
        file_len: u64::try_from(bytes.len()).unwrap_or(u64::MAX),
    };
    let start = usize::try_from(offset).map_err(|_| out_of_bounds())?;
    let end = usize::try_from(end).map_err(|_| out_of_bounds())?;
    let data_start = start
        .checked_add(SECTION_HEADER_SIZE)
        .ok_or_else(out_of_bounds)?;
    let raw: &[u8; SECTION_HEADER_SIZE] = bytes
        .get(start..data_start)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(out_of_bounds)?;
    let sh = SectionHeader::decode(raw);
    let kind = match SectionType::from_u16(sh.kind) {
        Some(SectionType::Invalid) | None => {
            return Err(EifError::InvalidSectionType {
                index,
                raw: sh.kind,
            })
        }
        Some(kind) => kind,
    };
    if sh.size != size {
        return Err(EifError::SectionSizeMismatch {
            index,
            header_size: sh.size,
            table_size: size,
        });
    }
    Ok(Located {
        kind,
        flags: sh.flags,
        data: data_start..end,
    })
}

/// Every kind but Ramdisk may appear at most once.
fn reject_duplicates(located: &[Located]) -> Result<(), EifError> {
    for (index, l) in located.iter().enumerate() {
        if l.kind == SectionType::Ramdisk {
            continue;
        }
        if located.iter().take(index).any(|p| p.kind == l.kind) {
            return Err(EifError::DuplicateSection {
                index,
                kind: l.kind,
            });
        }
    }
    Ok(())
}
