//! File system calls over the read-only image tree and the standard streams: open/close, the
//! dup family and the working directory here; reads and writes in [`sys_file_rw`], stat-like
//! queries in [`sys_file_stat`], ioctl/fcntl/poll in [`sys_file_ctl`].
//!
//! Paths come from the program through [`UserMemory::read_cstr`](crate::memory::UserMemory)
//! bounded by `PATH_MAX`; descriptor numbers are looked up fallibly; every write-like open of the
//! tree fails with `EROFS`, as on a read-only mount.

mod sys_file_ctl;
mod sys_file_rw;
pub(crate) use sys_file_rw::read_iovecs;
mod sys_file_stat;
#[cfg(test)]
mod sys_file_tests;

use std::sync::Arc;

use super::file::{Descriptor, MAX_FDS};
use super::fs::{ImageFile, Ino, NodeKind, PATH_MAX, ROOT_INO};
use super::table::Syscall;
use super::{Args, Ctx, Errno, Kernel, SysResult};

/// A `libc::SYS_*` number as a table key (all are small and positive).
pub(crate) const fn nr(n: libc::c_long) -> u64 {
    n.unsigned_abs()
}

/// This family's table.
pub const TABLE: &[Syscall] = &[
    sc(libc::SYS_read, "read", sys_file_rw::sys_read),
    sc(libc::SYS_write, "write", sys_file_rw::sys_write),
    sc(libc::SYS_open, "open", sys_open),
    sc(libc::SYS_close, "close", sys_close),
    sc(libc::SYS_stat, "stat", sys_file_stat::sys_stat),
    sc(libc::SYS_fstat, "fstat", sys_file_stat::sys_fstat),
    sc(libc::SYS_lstat, "lstat", sys_file_stat::sys_lstat),
    sc(libc::SYS_poll, "poll", sys_file_ctl::sys_poll),
    sc(libc::SYS_lseek, "lseek", sys_file_rw::sys_lseek),
    sc(libc::SYS_ioctl, "ioctl", sys_file_ctl::sys_ioctl),
    sc(libc::SYS_pread64, "pread64", sys_file_rw::sys_pread64),
    sc(libc::SYS_pwrite64, "pwrite64", sys_file_rw::sys_pwrite64),
    sc(libc::SYS_readv, "readv", sys_file_rw::sys_readv),
    sc(libc::SYS_writev, "writev", sys_file_rw::sys_writev),
    sc(libc::SYS_access, "access", sys_file_stat::sys_access),
    sc(libc::SYS_dup, "dup", sys_dup),
    sc(libc::SYS_dup2, "dup2", sys_dup2),
    sc(libc::SYS_fcntl, "fcntl", sys_file_ctl::sys_fcntl),
    sc(libc::SYS_getcwd, "getcwd", sys_getcwd),
    sc(libc::SYS_chdir, "chdir", sys_chdir),
    sc(libc::SYS_fchdir, "fchdir", sys_fchdir),
    sc(libc::SYS_readlink, "readlink", sys_file_stat::sys_readlink),
    sc(
        libc::SYS_getdents64,
        "getdents64",
        sys_file_stat::sys_getdents64,
    ),
    sc(libc::SYS_openat, "openat", sys_openat),
    sc(
        libc::SYS_newfstatat,
        "newfstatat",
        sys_file_stat::sys_newfstatat,
    ),
    sc(
        libc::SYS_readlinkat,
        "readlinkat",
        sys_file_stat::sys_readlinkat,
    ),
    sc(
        libc::SYS_faccessat,
        "faccessat",
        sys_file_stat::sys_faccessat,
    ),
    sc(libc::SYS_ppoll, "ppoll", sys_file_ctl::sys_ppoll),
    sc(libc::SYS_dup3, "dup3", sys_dup3),
    sc(libc::SYS_preadv, "preadv", sys_file_rw::sys_preadv),
    sc(libc::SYS_statx, "statx", sys_file_stat::sys_statx),
    sc(
        libc::SYS_faccessat2,
        "faccessat2",
        sys_file_stat::sys_faccessat2,
    ),
];

const fn sc(n: libc::c_long, name: &'static str, handler: super::table::Handler) -> Syscall {
    Syscall {
        nr: nr(n),
        name,
        handler,
    }
}

/// A descriptor argument (`int`/`unsigned int`): its low 32 bits, so -1 and huge values are
/// simply numbers no descriptor has.
pub(crate) fn fd_arg(a: u64) -> u64 {
    a & 0xffff_ffff
}

/// An `int` argument: the low 32 bits, signed.
pub(crate) fn int_arg(a: u64) -> i32 {
    u32::try_from(a & 0xffff_ffff).unwrap_or(0).cast_signed()
}

/// Reads a path argument (`EFAULT`, `ENAMETOOLONG` past `PATH_MAX`).
pub(crate) fn read_path(ctx: &Ctx<'_, '_>, addr: u64) -> Result<Vec<u8>, Errno> {
    Ok(ctx.mem.read_cstr(addr, PATH_MAX)?)
}

/// The inode of the working directory.
pub(crate) fn cwd_ino(k: &Kernel) -> Result<Ino, Errno> {
    k.fs.lookup(ROOT_INO, k.cwd().as_bytes(), true)
}

/// The directory a `*at` path starts from: `/` for absolute paths, the working directory for
/// `AT_FDCWD`, else the directory open at `dirfd` (`EBADF`, `ENOTDIR`).
pub(crate) fn dir_start(k: &Kernel, dirfd: u64, path: &[u8]) -> Result<Ino, Errno> {
    if path.first() == Some(&b'/') {
        return Ok(ROOT_INO);
    }
    if int_arg(dirfd) == libc::AT_FDCWD {
        return cwd_ino(k);
    }
    let d = k.fds().get(fd_arg(dirfd))?.clone();
    let p = d.file.path().ok_or(Errno::ENOTDIR)?;
    let ino = k.fs.lookup(ROOT_INO, p.as_bytes(), true)?;
    if !k.fs.is_dir(ino) {
        return Err(Errno::ENOTDIR);
    }
    Ok(ino)
}

fn sys_open(k: &Kernel, ctx: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    do_open(k, ctx, at_fdcwd(), a[0], int_arg(a[1]))
}

fn sys_openat(k: &Kernel, ctx: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    do_open(k, ctx, a[0], a[1], int_arg(a[2]))
}

/// `AT_FDCWD` as a raw argument.
pub(crate) fn at_fdcwd() -> u64 {
    u64::from(libc::AT_FDCWD.cast_unsigned())
}

fn do_open(k: &Kernel, ctx: &Ctx<'_, '_>, dirfd: u64, path_addr: u64, flags: i32) -> SysResult {
    let path = read_path(ctx, path_addr)?;
    if path.is_empty() {
        return Err(Errno::ENOENT);
    }
    let start = dir_start(k, dirfd, &path)?;
    let path_only = flags & libc::O_PATH != 0;
    let creat = flags & libc::O_CREAT != 0 && !path_only;
    let excl = creat && flags & libc::O_EXCL != 0;
    let follow = flags & libc::O_NOFOLLOW == 0 && !excl;
    let found = if creat {
        k.fs.lookup_for_create(start, &path, follow)?
    } else {
        Some(k.fs.lookup(start, &path, follow)?)
    };
    // Creating anything on a read-only mount.
    let ino = found.ok_or(Errno::EROFS)?;
    if excl {
        return Err(Errno::EEXIST);
    }
    let node = k.fs.node(ino).ok_or(Errno::ENOENT)?;
    let is_dir = matches!(node.kind, NodeKind::Dir(_));
    if matches!(node.kind, NodeKind::Symlink(_)) && !path_only {
        return Err(Errno::ELOOP);
    }
    if flags & libc::O_DIRECTORY != 0 && !is_dir {
        return Err(Errno::ENOTDIR);
    }
    if let (NodeKind::Device(dev), false) = (&node.kind, path_only) {
        return super::dev::open(k, *dev, flags);
    }
    if !path_only {
        let wants_write = flags & libc::O_ACCMODE != libc::O_RDONLY || flags & libc::O_TRUNC != 0;
        if is_dir && (wants_write || creat) {
            return Err(Errno::EISDIR);
        }
        if wants_write {
            return Err(Errno::EROFS);
        }
    }
    let kept = if path_only {
        flags & (libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW)
    } else {
        flags
    };
    let file = Arc::new(ImageFile::new(k.fs.clone(), ino, kept));
    k.fds().insert(Descriptor {
        file,
        cloexec: flags & libc::O_CLOEXEC != 0,
    })
}

fn sys_close(k: &Kernel, _ctx: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    k.fds().remove(fd_arg(a[0]))?;
    Ok(0)
}

fn sys_dup(k: &Kernel, _ctx: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    let d = k.fds().get(fd_arg(a[0]))?.clone();
    k.fds().insert(Descriptor {
        cloexec: false,
        ..d
    })
}

fn sys_dup2(k: &Kernel, _ctx: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    let (old, new) = (fd_arg(a[0]), fd_arg(a[1]));
    let d = k.fds().get(old)?.clone();
    if old == new {
        return Ok(new);
    }
    k.fds().insert_at(
        new,
        Descriptor {
            cloexec: false,
            ..d
        },
    )
}

fn sys_dup3(k: &Kernel, _ctx: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    let (old, new, flags) = (fd_arg(a[0]), fd_arg(a[1]), int_arg(a[2]));
    if flags & !libc::O_CLOEXEC != 0 || old == new {
        return Err(Errno::EINVAL);
    }
    let d = k.fds().get(old)?.clone();
    k.fds().insert_at(
        new,
        Descriptor {
            cloexec: flags & libc::O_CLOEXEC != 0,
            ..d
        },
    )
}

fn sys_getcwd(k: &Kernel, ctx: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    let mut bytes = k.cwd().as_bytes().to_vec();
    bytes.push(0);
    let len = u64::try_from(bytes.len()).map_err(|_| Errno::ERANGE)?;
    if a[1] < len {
        return Err(Errno::ERANGE);
    }
    ctx.mem.copy_out(a[0], &bytes)?;
    Ok(len)
}

fn change_dir(k: &Kernel, ino: Ino) -> SysResult {
    if !k.fs.is_dir(ino) {
        return Err(Errno::ENOTDIR);
    }
    *k.cwd() = k.fs.path_of(ino);
    Ok(0)
}

fn sys_chdir(k: &Kernel, ctx: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    let path = read_path(ctx, a[0])?;
    let start = cwd_ino(k)?;
    let ino = k.fs.lookup(start, &path, true)?;
    change_dir(k, ino)
}

fn sys_fchdir(k: &Kernel, _ctx: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    let d = k.fds().get(fd_arg(a[0]))?.clone();
    let p = d.file.path().ok_or(Errno::ENOTDIR)?.to_string();
    let ino = k.fs.lookup(ROOT_INO, p.as_bytes(), true)?;
    change_dir(k, ino)
}

/// Descriptor limit, re-exported for the handlers of this family.
pub(crate) const FD_LIMIT: usize = MAX_FDS;
