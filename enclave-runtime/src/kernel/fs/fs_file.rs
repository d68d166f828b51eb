//! Open image files and directories: the [`FileOps`] of the read-only tree.

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use super::{dirent_type, ImageTree, Ino, NodeKind};
use crate::kernel::errno::{Errno, SysResult};
use crate::kernel::file::{FileOps, Stat};

/// Flags `F_SETFL` may change.
const SETTABLE_FLAGS: i32 = libc::O_NONBLOCK | libc::O_APPEND;

/// An open file or directory of the image tree (always read-only).
pub struct ImageFile {
    tree: Arc<ImageTree>,
    ino: Ino,
    path: String,
    /// Byte offset for files, entry index for directories.
    offset: Mutex<u64>,
    flags: AtomicI32,
}

impl ImageFile {
    /// Opens node `ino` with the `open` flags `flags` (the caller checked access).
    pub fn new(tree: Arc<ImageTree>, ino: Ino, flags: i32) -> Self {
        let path = tree.path_of(ino);
        let kept = flags
            & !(libc::O_CREAT | libc::O_EXCL | libc::O_NOCTTY | libc::O_TRUNC | libc::O_CLOEXEC);
        Self {
            tree,
            ino,
            path,
            offset: Mutex::new(0),
            flags: AtomicI32::new(kept | libc::O_LARGEFILE),
        }
    }

    /// The inode this file refers to.
    pub fn ino(&self) -> Ino {
        self.ino
    }

    fn path_only(&self) -> bool {
        self.flags.load(Ordering::Relaxed) & libc::O_PATH != 0
    }

    fn kind(&self) -> Result<&NodeKind, Errno> {
        self.tree
            .node(self.ino)
            .map(|n| &n.kind)
            .ok_or(Errno::EBADF)
    }

    /// Copies file data at `pos` into `buf`; returns the count.
    fn read_at(&self, buf: &mut [u8], pos: u64) -> Result<usize, Errno> {
        if self.path_only() {
            return Err(Errno::EBADF);
        }
        match self.kind()? {
            NodeKind::File(data) => {
                let start = usize::try_from(pos).unwrap_or(usize::MAX).min(data.len());
                let src = data.get(start..).unwrap_or_default();
                let n = src.len().min(buf.len());
                buf[..n].copy_from_slice(&src[..n]);
                Ok(n)
            }
            NodeKind::Dir(_) => Err(Errno::EISDIR),
            // Devices are opened as their own files; only an `O_PATH` descriptor gets here.
            NodeKind::Symlink(_) | NodeKind::Device(_) => Err(Errno::EBADF),
        }
    }

    fn lock_offset(&self) -> std::sync::MutexGuard<'_, u64> {
        self.offset.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Appends one `linux_dirent64` record to `out` if it fits in `max` bytes total.
fn push_dirent(out: &mut Vec<u8>, max: usize, ino: Ino, off: u64, ty: u8, name: &[u8]) -> bool {
    // d_ino (8) + d_off (8) + d_reclen (2) + d_type (1) + name + NUL, 8-byte aligned.
    let reclen = (19 + name.len() + 1).next_multiple_of(8);
    let Ok(reclen16) = u16::try_from(reclen) else {
        return false;
    };
    if out.len().saturating_add(reclen) > max {
        return false;
    }
    let start = out.len();
    out.extend_from_slice(&ino.to_le_bytes());
    out.extend_from_slice(&i64::try_from(off).unwrap_or(i64::MAX).to_le_bytes());
    out.extend_from_slice(&reclen16.to_le_bytes());
    out.push(ty);
    out.extend_from_slice(name);
    out.resize(start + reclen, 0);
    true
}

impl FileOps for ImageFile {
    fn read(&self, buf: &mut [u8]) -> SysResult {
        let mut off = self.lock_offset();
        let n = self.read_at(buf, *off)?;
        let n = u64::try_from(n).map_err(|_| Errno::EOVERFLOW)?;
        *off = off.saturating_add(n);
        Ok(n)
    }

    fn pread(&self, buf: &mut [u8], offset: u64) -> SysResult {
        let n = self.read_at(buf, offset)?;
        u64::try_from(n).map_err(|_| Errno::EOVERFLOW)
    }

    fn pwrite(&self, _data: &[u8], _offset: u64) -> SysResult {
        // Opened read-only (the tree is read-only).
        Err(Errno::EBADF)
    }

    fn lseek(&self, offset: i64, whence: i32) -> SysResult {
        if self.path_only() {
            return Err(Errno::EBADF);
        }
        let mut off = self.lock_offset();
        let size = match self.kind()? {
            NodeKind::File(d) | NodeKind::Symlink(d) => {
                i64::try_from(d.len()).map_err(|_| Errno::EOVERFLOW)?
            }
            NodeKind::Device(_) => 0,
            NodeKind::Dir(_) => {
                // Directory positions are entry indices: only SEEK_SET and SEEK_CUR.
                if whence != libc::SEEK_SET && whence != libc::SEEK_CUR {
                    return Err(Errno::EINVAL);
                }
                0
            }
        };
        let cur = i64::try_from(*off).map_err(|_| Errno::EOVERFLOW)?;
        let new = match whence {
            libc::SEEK_SET => Some(offset),
            libc::SEEK_CUR => cur.checked_add(offset),
            libc::SEEK_END => size.checked_add(offset),
            libc::SEEK_DATA => {
                if offset < 0 {
                    return Err(Errno::EINVAL);
                }
                if offset >= size {
                    return Err(Errno::ENXIO);
                }
                Some(offset)
            }
            libc::SEEK_HOLE => {
                if offset < 0 {
                    return Err(Errno::EINVAL);
                }
                if offset >= size {
                    return Err(Errno::ENXIO);
                }
                Some(size)
            }
            _ => return Err(Errno::EINVAL),
        };
        let new = new
            .and_then(|n| u64::try_from(n).ok())
            .ok_or(Errno::EINVAL)?;
        *off = new;
        Ok(new)
    }

    fn stat(&self) -> Result<Stat, Errno> {
        self.tree.stat(self.ino)
    }

    fn getdents64(&self, out: &mut Vec<u8>, max: usize) -> SysResult {
        if self.path_only() {
            return Err(Errno::EBADF);
        }
        let node = self.tree.node(self.ino).ok_or(Errno::EBADF)?;
        let NodeKind::Dir(children) = &node.kind else {
            return Err(Errno::ENOTDIR);
        };
        let mut off = self.lock_offset();
        let start_len = out.len();
        let mut index = *off;
        // "." and ".." first, then the sorted children.
        while index < 2 {
            let (ino, name): (Ino, &[u8]) = if index == 0 {
                (self.ino, b".")
            } else {
                (node.parent, b"..")
            };
            if !push_dirent(out, max, ino, index + 1, libc::DT_DIR, name) {
                break;
            }
            index += 1;
        }
        if index >= 2 {
            let skip = usize::try_from(index - 2).unwrap_or(usize::MAX);
            for (name, &ino) in children.iter().skip(skip) {
                let ty = self
                    .tree
                    .node(ino)
                    .map_or(libc::DT_UNKNOWN, |n| dirent_type(n.mode));
                if !push_dirent(out, max, ino, index + 1, ty, name.as_bytes()) {
                    break;
                }
                index += 1;
            }
        }
        let written = out.len() - start_len;
        let past_end = index >= 2 && usize::try_from(index - 2).is_ok_and(|i| i >= children.len());
        if written == 0 && !past_end {
            // Not even one entry fits.
            return Err(Errno::EINVAL);
        }
        *off = index;
        u64::try_from(written).map_err(|_| Errno::EOVERFLOW)
    }

    fn path(&self) -> Option<&str> {
        Some(&self.path)
    }

    fn status_flags(&self) -> i32 {
        self.flags.load(Ordering::Relaxed)
    }

    fn set_status_flags(&self, flags: i32) {
        let old = self.flags.load(Ordering::Relaxed);
        let new = (old & !SETTABLE_FLAGS) | (flags & SETTABLE_FLAGS);
        self.flags.store(new, Ordering::Relaxed);
    }
}
