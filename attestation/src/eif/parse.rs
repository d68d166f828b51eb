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

        let sections = located
            .into_iter()
            .map(|l| Section {
                kind: l.kind,
                flags: l.flags,
                data: bytes.get(l.data).map(<[u8]>::to_vec).unwrap_or_default(),
            })
            .collect();
        Ok(Eif {
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
