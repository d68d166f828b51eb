//! The one error type of the `cpio` module.

/// Why a cpio archive could not be read or written.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CpioError {
    /// Input ended inside a header, name or file.
    #[error("cpio archive truncated at offset {offset}: needed {needed} more bytes for {what}")]
    Truncated {
        /// Where reading stopped.
        offset: usize,
        /// Bytes missing.
        needed: usize,
        /// What was being read.
        what: &'static str,
    },
    /// Header does not start with "070701".
    #[error("Bad cpio magic {found:?} at offset {offset}: only the newc format (\"070701\") is supported")]
    BadMagic {
        /// Where the header starts.
        offset: usize,
        /// Bytes found.
        found: String,
    },
    /// A header field is not 8 hex digits.
    #[error("cpio header field {field} at offset {offset} is {found:?}, not 8 hex digits: the archive is corrupt")]
    BadHexField {
        /// Header offset.
        offset: usize,
        /// Field name.
        field: &'static str,
        /// Text found.
        found: String,
    },
    /// Name size zero or over [`super::MAX_NAME_SIZE`].
    #[error("cpio entry at offset {offset} has name size {size}, outside 1..={max}: the archive is corrupt")]
    BadNameSize {
        /// Header offset.
        offset: usize,
        /// Size declared.
        size: u32,
        /// Limit.
        max: usize,
    },
    /// Name not NUL-terminated, has an interior NUL, or is not UTF-8.
    #[error("cpio entry at offset {offset} has a malformed name: {reason}")]
    BadName {
        /// Header offset.
        offset: usize,
        /// What was wrong.
        reason: &'static str,
    },
    /// Path is absolute, empty, or has "." / ".." / empty components.
    #[error("Unsafe or malformed path {path:?}: {reason}; use a relative path without \".\" or \"..\" components")]
    BadPath {
        /// The path.
        path: String,
        /// What was wrong.
        reason: &'static str,
    },
    /// The same path twice.
    #[error("Duplicate path {path:?} in cpio archive: each path may appear once")]
    Duplicate {
        /// The path.
        path: String,
    },
    /// A file type other than regular file, directory or symlink.
    #[error("Entry {path:?} has mode {mode:#o}: only regular files, directories and symlinks are supported")]
    UnsupportedType {
        /// The path.
        path: String,
        /// Its mode.
        mode: u32,
    },
    /// Directory with data, or symlink without a target.
    #[error("Entry {path:?}: {reason}")]
    BadEntry {
        /// The path.
        path: String,
        /// What was wrong.
        reason: &'static str,
    },
    /// A path that needs a parent directory whose path is taken by a non-directory.
    #[error("Entry {path:?} needs {parent:?} to be a directory, but {parent:?} is not one")]
    ParentNotDirectory {
        /// The entry.
        path: String,
        /// Its parent.
        parent: String,
    },
    /// No "TRAILER!!!" entry.
    #[error("cpio archive has no TRAILER!!! entry: it is truncated")]
    MissingTrailer,
    /// Non-zero bytes after the trailer.
    #[error("cpio archive has non-zero data at offset {offset} after the TRAILER!!! entry")]
    TrailingData {
        /// Offset of the first non-zero byte.
        offset: usize,
    },
    /// An entry or the archive is too large for the format's 32-bit fields.
    #[error("Entry {path:?} is {size} bytes, over the 4 GiB limit of the newc format")]
    TooLarge {
        /// The path.
        path: String,
        /// Its size.
        size: usize,
    },
    /// More entries than 32-bit inode numbers allow.
    #[error("Too many cpio entries: inode numbers exceed 32 bits")]
    TooManyEntries,
}
