//! Queries: the stat family, statx, access, readlink and getdents64.

use super::{at_fdcwd, dir_start, fd_arg, int_arg, read_path};
use crate::kernel::file::Stat;
use crate::kernel::fs::{NodeKind, IMAGE_DEV};
use crate::kernel::{Args, Ctx, Errno, Kernel, SysResult};

/// Largest `getdents64` buffer served in one call (the program just calls again).
const DIRENT_CHUNK: u64 = 1 << 20;
/// Bytes of `struct statx`.
const STATX_SIZE: usize = 256;
/// `STATX_BASIC_STATS`.
const STATX_BASIC_STATS: u32 = 0x7ff;
/// `STATX__RESERVED`.
const STATX_RESERVED: u32 = 0x8000_0000;
/// `AT_STATX_FORCE_SYNC | AT_STATX_DONT_SYNC`.
const AT_STATX_SYNC_TYPE: i32 = 0x6000;

/// Resolves `dirfd` + path (or the descriptor itself with `AT_EMPTY_PATH` and an empty path)
/// and describes it.
fn stat_at(
    k: &Kernel,
    ctx: &Ctx<'_, '_>,
    dirfd: u64,
    path_addr: u64,
    flags: i32,
) -> Result<Stat, Errno> {
    let empty_ok = flags & libc::AT_EMPTY_PATH != 0;
    let path = if path_addr == 0 && empty_ok {
        Vec::new()
    } else {
        read_path(ctx, path_addr)?
    };
    if path.is_empty() {
        if !empty_ok {
            return Err(Errno::ENOENT);
        }
        if int_arg(dirfd) == libc::AT_FDCWD {
            return k.fs.stat(super::cwd_ino(k)?);
        }
        return k.fds().get(fd_arg(dirfd))?.file.stat();
    }
    let start = dir_start(k, dirfd, &path)?;
    let follow = flags & libc::AT_SYMLINK_NOFOLLOW == 0;
    let ino = k.fs.lookup(start, &path, follow)?;
    k.fs.stat(ino)
}

fn put_stat(ctx: &Ctx<'_, '_>, addr: u64, st: &Stat) -> SysResult {
    ctx.mem.copy_out(addr, &st.to_bytes())?;
    Ok(0)
}

pub(crate) fn sys_stat(k: &Kernel, ctx: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    let st = stat_at(k, ctx, at_fdcwd(), a[0], 0)?;
    put_stat(ctx, a[1], &st)
}

pub(crate) fn sys_lstat(k: &Kernel, ctx: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    let st = stat_at(k, ctx, at_fdcwd(), a[0], libc::AT_SYMLINK_NOFOLLOW)?;
    put_stat(ctx, a[1], &st)
}

pub(crate) fn sys_fstat(k: &Kernel, ctx: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    let st = k.fds().get(fd_arg(a[0]))?.file.stat()?;
    put_stat(ctx, a[1], &st)
}

pub(crate) fn sys_newfstatat(k: &Kernel, ctx: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    let flags = int_arg(a[3]);
    if flags & !(libc::AT_SYMLINK_NOFOLLOW | libc::AT_EMPTY_PATH | libc::AT_NO_AUTOMOUNT) != 0 {
        return Err(Errno::EINVAL);
    }
    let st = stat_at(k, ctx, a[0], a[1], flags)?;
    put_stat(ctx, a[2], &st)
}

/// `(major, minor)` of a user-visible `dev_t` (glibc's `gnu_dev_major`/`minor`).
fn dev_split(dev: u64) -> (u32, u32) {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    (
        u32::try_from(major).unwrap_or(u32::MAX),
        u32::try_from(minor).unwrap_or(u32::MAX),
    )
}

/// Serializes `st` as `struct statx` with the basic-stats mask.
fn statx_bytes(st: &Stat) -> [u8; STATX_SIZE] {
    let mut b = [0u8; STATX_SIZE];
    let blksize = u32::try_from(st.blksize).unwrap_or(u32::MAX);
    let nlink = u32::try_from(st.nlink).unwrap_or(u32::MAX);
    let mode = u16::try_from(st.mode & 0xffff).unwrap_or(0);
    let (rdev_major, rdev_minor) = dev_split(st.rdev);
    let (dev_major, dev_minor) = dev_split(st.dev);
    b[0..4].copy_from_slice(&STATX_BASIC_STATS.to_le_bytes());
    b[4..8].copy_from_slice(&blksize.to_le_bytes());
    b[16..20].copy_from_slice(&nlink.to_le_bytes());
    b[20..24].copy_from_slice(&st.uid.to_le_bytes());
    b[24..28].copy_from_slice(&st.gid.to_le_bytes());
    b[28..30].copy_from_slice(&mode.to_le_bytes());
    b[32..40].copy_from_slice(&st.ino.to_le_bytes());
    b[40..48].copy_from_slice(&st.size.to_le_bytes());
    b[48..56].copy_from_slice(&st.blocks.to_le_bytes());
    // Timestamps (64..128) are all zero.
    b[128..132].copy_from_slice(&rdev_major.to_le_bytes());
    b[132..136].copy_from_slice(&rdev_minor.to_le_bytes());
    b[136..140].copy_from_slice(&dev_major.to_le_bytes());
    b[140..144].copy_from_slice(&dev_minor.to_le_bytes());
    b
}

pub(crate) fn sys_statx(k: &Kernel, ctx: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    let flags = int_arg(a[2]);
    let mask = u32::try_from(a[3] & 0xffff_ffff).unwrap_or(u32::MAX);
    let allowed = libc::AT_SYMLINK_NOFOLLOW
        | libc::AT_EMPTY_PATH
        | libc::AT_NO_AUTOMOUNT
        | AT_STATX_SYNC_TYPE;
    if flags & !allowed != 0 || flags & AT_STATX_SYNC_TYPE == AT_STATX_SYNC_TYPE {
        return Err(Errno::EINVAL);
    }
    if mask & STATX_RESERVED != 0 {
        return Err(Errno::EINVAL);
    }
    let st = stat_at(k, ctx, a[0], a[1], flags)?;
    ctx.mem.copy_out(a[4], &statx_bytes(&st))?;
    Ok(0)
}

fn access_at(
    k: &Kernel,
    ctx: &Ctx<'_, '_>,
    dirfd: u64,
    path: u64,
    mode: i32,
    flags: i32,
) -> SysResult {
    if mode & !(libc::R_OK | libc::W_OK | libc::X_OK) != 0 {
        return Err(Errno::EINVAL);
    }
    if flags & !(libc::AT_EACCESS | libc::AT_SYMLINK_NOFOLLOW | libc::AT_EMPTY_PATH) != 0 {
        return Err(Errno::EINVAL);
    }
    let st = stat_at(k, ctx, dirfd, path, flags)?;
    let fmt = st.mode & libc::S_IFMT;
    let in_tree =
        st.dev == IMAGE_DEV && matches!(fmt, libc::S_IFREG | libc::S_IFDIR | libc::S_IFLNK);
    if mode & libc::W_OK != 0 && in_tree {
        return Err(Errno::EROFS);
    }
    // The program runs as root: only execute needs a permission bit (or a directory).
    if mode & libc::X_OK != 0 && fmt != libc::S_IFDIR && st.mode & 0o111 == 0 {
        return Err(Errno::EACCES);
    }
    Ok(0)
}

pub(crate) fn sys_access(k: &Kernel, ctx: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    access_at(k, ctx, at_fdcwd(), a[0], int_arg(a[1]), 0)
}

pub(crate) fn sys_faccessat(k: &Kernel, ctx: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    access_at(k, ctx, a[0], a[1], int_arg(a[2]), 0)
}

pub(crate) fn sys_faccessat2(k: &Kernel, ctx: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    access_at(k, ctx, a[0], a[1], int_arg(a[2]), int_arg(a[3]))
}

fn readlink_at(
    k: &Kernel,
    ctx: &Ctx<'_, '_>,
    dirfd: u64,
    path_addr: u64,
    buf: u64,
    size: u64,
) -> SysResult {
    let size = int_arg(size);
    if size <= 0 {
        return Err(Errno::EINVAL);
    }
    let path = read_path(ctx, path_addr)?;
    if path.is_empty() {
        return Err(Errno::ENOENT);
    }
    let start = dir_start(k, dirfd, &path)?;
    let ino = match k.fs.lookup(start, &path, false) {
        Ok(ino) => ino,
        // There is no /proc, but ld.so resolves $ORIGIN of the program through this link.
        Err(Errno::ENOENT) if path.as_slice() == PROC_SELF_EXE => {
            return copy_link(ctx, buf, size, crate::stack::EXECFN.as_bytes());
        }
        Err(e) => return Err(e),
    };
    let Some(NodeKind::Symlink(target)) = k.fs.node(ino).map(|n| &n.kind) else {
        return Err(Errno::EINVAL);
    };
    copy_link(ctx, buf, size, target)
}

/// The link `/proc/self/exe` reads as (the program's path) when the image has no such file.
const PROC_SELF_EXE: &[u8] = b"/proc/self/exe";

/// Copies up to `size` (> 0) bytes of a link target to the guest, as readlink does.
fn copy_link(ctx: &Ctx<'_, '_>, buf: u64, size: i32, target: &[u8]) -> SysResult {
    let n = target
        .len()
        .min(usize::try_from(size).map_err(|_| Errno::EINVAL)?);
    let out = target.get(..n).unwrap_or_default();
    ctx.mem.copy_out(buf, out)?;
    u64::try_from(n).map_err(|_| Errno::EINVAL)
}

pub(crate) fn sys_readlink(k: &Kernel, ctx: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    readlink_at(k, ctx, at_fdcwd(), a[0], a[1], a[2])
}

pub(crate) fn sys_readlinkat(k: &Kernel, ctx: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    readlink_at(k, ctx, a[0], a[1], a[2], a[3])
}

pub(crate) fn sys_getdents64(k: &Kernel, ctx: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    let file = k.fds().get(fd_arg(a[0]))?.file.clone();
    let count = (a[2] & 0xffff_ffff).min(DIRENT_CHUNK);
    // Check the whole buffer first so no entry is consumed that cannot be delivered.
    ctx.mem.check_writable(a[1], count)?;
    let max = usize::try_from(count).map_err(|_| Errno::EINVAL)?;
    let mut out = Vec::new();
    let n = file.getdents64(&mut out, max)?;
    ctx.mem.copy_out(a[1], &out)?;
    Ok(n)
}
