//! cpio `newc` ("070701"), the format of Linux initramfs: a reproducible writer and a strict,
//! bounded reader. Only regular files, directories and symlinks are represented.

mod error;
mod path;
mod read;
mod write;

pub use error::CpioError;
pub use path::normalize_path;
pub use read::read;
pub use write::write;

/// File-type bits of a regular file in `st_mode`.
pub const S_IFREG: u32 = 0o100_000;
/// File-type bits of a directory in `st_mode`.
pub const S_IFDIR: u32 = 0o040_000;
/// File-type bits of a symbolic link in `st_mode`.
pub const S_IFLNK: u32 = 0o120_000;
/// Mask of the file-type bits of `st_mode`.
pub const S_IFMT: u32 = 0o170_000;
/// Longest name (including its NUL) the reader accepts.
pub const MAX_NAME_SIZE: usize = 4096;
/// Magic of the `newc` format.
pub const NEWC_MAGIC: &[u8; 6] = b"070701";
/// Name of the end-of-archive entry.
pub const TRAILER: &str = "TRAILER!!!";
/// Size of a `newc` header: magic and 13 eight-digit hex fields.
pub const HEADER_LEN: usize = 110;

/// One archive member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpioEntry {
    /// Path inside the archive, relative (no leading '/'), no "." or ".." components.
    pub path: String,
    /// Full `st_mode`, file-type bits included ([`S_IFREG`], [`S_IFDIR`], [`S_IFLNK`]).
    pub mode: u32,
    /// File contents, or the target of a symlink; empty for a directory.
    pub data: Vec<u8>,
}

impl CpioEntry {
    /// A regular file with the given permission bits.
    pub fn file(path: impl Into<String>, perm: u32, data: Vec<u8>) -> Self {
        Self {
            path: path.into(),
            mode: S_IFREG | (perm & 0o7777),
            data,
        }
    }

    /// A directory with the given permission bits.
    pub fn dir(path: impl Into<String>, perm: u32) -> Self {
        Self {
            path: path.into(),
            mode: S_IFDIR | (perm & 0o7777),
            data: Vec::new(),
        }
    }

    /// A symlink pointing at `target`.
    pub fn symlink(path: impl Into<String>, target: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            mode: S_IFLNK | 0o777,
            data: target.into().into_bytes(),
        }
    }

    /// The file-type bits of the mode.
    pub fn file_type(&self) -> u32 {
        self.mode & S_IFMT
    }
}
