//! The one error type of the `eif` module: everything that can be wrong with an EIF file, or
//! with sections we are asked to write.

use super::SectionType;

/// Why an EIF could not be parsed or written.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EifError {
    /// Input shorter than the fixed header.
    #[error(
        "EIF is {len} bytes, shorter than the {header}-byte header: the file is truncated or is not an EIF"
    )]
    TooShort {
        /// Bytes given.
        len: usize,
        /// Header size.
        header: usize,
    },
    /// Input (or output) larger than [`super::MAX_EIF_SIZE`].
    #[error(
        "EIF is {len} bytes, over the {max}-byte limit: split the payload or shrink the image"
    )]
    TooLarge {
        /// Size found or required.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// First four bytes are not `.eif`.
    #[error(
        "Bad EIF magic {found:02x?}: expected \".eif\" (2e 65 69 66); this is not an EIF file"
    )]
    BadMagic {
        /// Bytes found.
        found: [u8; 4],
    },
    /// Header version is not 4.
    #[error(
        "EIF version {version} is not supported: only version {supported} is; rebuild the image with a current builder"
    )]
    UnsupportedVersion {
        /// Version found.
        version: u16,
        /// Version we read.
        supported: u16,
    },
    /// More sections than the header tables can hold.
    #[error(
        "EIF declares {count} sections, more than the maximum of {max}: the header is corrupt"
    )]
    TooManySections {
        /// Count declared (or asked to write).
        count: usize,
        /// The maximum.
        max: usize,
    },
    /// A header table slot past the section count is not zero.
    #[error(
        "EIF header table slot {index} is past the section count but not zero: the header is corrupt"
    )]
    UnusedSlotNotZero {
        /// Slot index.
        index: usize,
    },
    /// Offset + section header + size overflows u64.
    #[error(
        "Section {index}: offset {offset} plus size {size} overflows a 64-bit integer: the header is corrupt"
    )]
    SectionOverflow {
        /// Section index.
        index: usize,
        /// Recorded offset.
        offset: u64,
        /// Recorded size.
        size: u64,
    },
    /// Section extends past the end of the input.
    #[error(
        "Section {index} (offset {offset}, 12-byte section header, {size} bytes of data) ends past the end of the {file_len}-byte file: the file is truncated or the header is corrupt"
    )]
    SectionOutOfBounds {
        /// Section index.
        index: usize,
        /// Recorded offset.
        offset: u64,
        /// Recorded size.
        size: u64,
        /// Input length.
        file_len: u64,
    },
    /// Section does not start where the previous one ended.
    #[error(
        "Section {index} starts at offset {offset} but the previous section ends at {expected}: EIF sections must be contiguous"
    )]
    SectionNotContiguous {
        /// Section index.
        index: usize,
        /// Recorded offset.
        offset: u64,
        /// Where it should start.
        expected: u64,
    },
    /// Section header carries an unknown or invalid type.
    #[error(
        "Section {index} has type {raw}, which is not a valid EIF section type (1 kernel, 2 cmdline, 3 ramdisk, 4 signature, 5 metadata)"
    )]
    InvalidSectionType {
        /// Section index.
        index: usize,
        /// Raw type value.
        raw: u16,
    },
    /// Section header size disagrees with the EIF header tables.
    #[error(
        "Section {index}: its section header says {header_size} bytes but the EIF header table says {table_size}: the file is corrupt"
    )]
    SectionSizeMismatch {
        /// Section index.
        index: usize,
        /// Size in the section header.
        header_size: u64,
        /// Size in the EIF header table.
        table_size: u64,
    },
    /// Two sections of a kind that may appear only once.
    #[error("Section {index} is a second {kind} section; an EIF holds at most one")]
    DuplicateSection {
        /// Section index.
        index: usize,
        /// Its kind.
        kind: SectionType,
    },
    /// Bytes after the last section.
    #[error(
        "{count} trailing bytes after the last section (which ends at offset {end}): the file is corrupt or was appended to"
    )]
    TrailingBytes {
        /// Number of extra bytes.
        count: u64,
        /// End of the last section.
        end: u64,
    },
    /// CRC32 does not match.
    #[error(
        "EIF CRC32 mismatch: the header records {expected:#010x} but the contents hash to {actual:#010x}; the file is corrupt"
    )]
    CrcMismatch {
        /// CRC recorded in the header.
        expected: u32,
        /// CRC computed over the contents.
        actual: u32,
    },
    /// Asked to write a section of type Invalid.
    #[error("Section {index} has type Invalid and cannot be written; give it a real section type")]
    InvalidSectionToWrite {
        /// Section index.
        index: usize,
    },
}
