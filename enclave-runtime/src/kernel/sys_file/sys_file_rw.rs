//! read/write and their positioned and vectored forms, and lseek.
//!
//! Transfers are clamped at `MAX_RW_COUNT` and move through a host buffer of at most
//! [`CHUNK`] bytes. A destination is checked before the file is read, so no data is consumed
//! that cannot be delivered; on a fault after some bytes moved, the count so far is returned.

use super::{fd_arg, int_arg};
use crate::kernel::file::FileOps;
use crate::kernel::{Args, Ctx, Errno, Kernel, SysResult};
use crate::memory::UserMemory;

/// Linux's largest single transfer (`MAX_RW_COUNT`).
pub(crate) const MAX_RW_COUNT: u64 = 0x7fff_f000;
/// Largest host buffer used for one step of a transfer.
const CHUNK: u64 = 1 << 20;
/// Largest iovec count (`UIO_MAXIOV`).
pub(crate) const UIO_MAXIOV: u64 = 1024;
/// Bytes of one `struct iovec`.
const IOVEC_SIZE: u64 = 16;

/// A guest buffer: (address, length).
type Seg = (u64, u64);

/// Returns `total` if something moved, else the error.
fn partial(total: u64, e: Errno) -> SysResult {
    if total > 0 {
        Ok(total)
    } else {
        Err(e)
    }
}

/// Reads from `file` (at `pos`, or at its offset when `None`) into the guest segments.
fn read_segs(
    file: &dyn FileOps,
    mem: &UserMemory<'_>,
    segs: &[Seg],
    pos: Option<u64>,
) -> SysResult {
    if segs.iter().all(|&(_, l)| l == 0) {
        // Still ask the file, for its errors (EISDIR, EBADF…).
        return match pos {
            None => file.read(&mut []),
            Some(p) => file.pread(&mut [], p),
        };
    }
    let mut total = 0u64;
    let mut buf = Vec::new();
    for &(base, len) in segs {
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(CHUNK);
            let Some(addr) = base.checked_add(done) else {
                return partial(total, Errno::EFAULT);
            };
            if mem.check_writable(addr, n).is_err() {
                return partial(total, Errno::EFAULT);
            }
            if pos.is_none() {
                if let Some(got) = file.read_guest(mem, addr, n, total > 0) {
                    let got = match got {
                        Ok(g) => g.min(n),
                        Err(e) => return partial(total, e),
                    };
                    total += got;
                    done += got;
                    if got < n {
                        return Ok(total);
                    }
                    continue;
                }
            }
            let n_us = usize::try_from(n).map_err(|_| Errno::EINVAL)?;
            buf.resize(n_us, 0);
            let got = match pos {
                None if total > 0 => file.read_more(&mut buf),
                None => file.read(&mut buf),
                Some(p) => match p.checked_add(total) {
                    Some(at) => file.pread(&mut buf, at),
                    None => Err(Errno::EINVAL),
                },
            };
            let got = match got {
                Ok(g) => g.min(n),
                Err(e) => return partial(total, e),
            };
            let got_us = usize::try_from(got).map_err(|_| Errno::EINVAL)?;
            if mem
                .copy_out(addr, buf.get(..got_us).unwrap_or_default())
                .is_err()
            {
                return partial(total, Errno::EFAULT);
            }
            total += got;
            done += got;
            if got < n {
                return Ok(total);
            }
        }
    }
    Ok(total)
}

/// Writes the guest segments to `file` (at `pos`, or at its offset when `None`).
fn write_segs(
    file: &dyn FileOps,
    mem: &UserMemory<'_>,
    segs: &[Seg],
    pos: Option<u64>,
) -> SysResult {
    if segs.iter().all(|&(_, l)| l == 0) {
        return match pos {
            None => file.write(&[]),
            Some(p) => file.pwrite(&[], p),
        };
    }
    let mut total = 0u64;
    let mut buf = Vec::new();
    for &(base, len) in segs {
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(CHUNK);
            let Some(addr) = base.checked_add(done) else {
                return partial(total, Errno::EFAULT);
            };
            if pos.is_none() {
                if let Some(put) = file.write_guest(mem, addr, n) {
                    let put = match put {
                        Ok(w) => w.min(n),
                        Err(e) => return partial(total, e),
                    };
                    total += put;
                    done += put;
                    if put < n {
                        return Ok(total);
                    }
                    continue;
                }
            }
            let n_us = usize::try_from(n).map_err(|_| Errno::EINVAL)?;
            buf.resize(n_us, 0);
            if mem.copy_in(addr, &mut buf).is_err() {
                return partial(total, Errno::EFAULT);
            }
            let put = match pos {
                None => file.write(&buf),
                Some(p) => match p.checked_add(total) {
                    Some(at) => file.pwrite(&buf, at),
                    None => Err(Errno::EINVAL),
                },
            };
            let put = match put {
                Ok(w) => w.min(n),
                Err(e) => return partial(total, e),
            };
            total += put;
            done += put;
            if put < n {
                return Ok(total);
            }
        }
    }
    Ok(total)
}

/// Reads a `struct iovec` array: `EINVAL` for a count over `UIO_MAXIOV` or lengths past
/// `isize::MAX`, `EFAULT` for a bad array; the total is clamped at `MAX_RW_COUNT`.
pub(crate) fn read_iovecs(mem: &UserMemory<'_>, addr: u64, count: u64) -> Result<Vec<Seg>, Errno> {
    if count > UIO_MAXIOV {
        return Err(Errno::EINVAL);
    }
    let bytes = usize::try_from(count * IOVEC_SIZE).map_err(|_| Errno::EINVAL)?;
    let raw = mem.copy_in_vec(addr, bytes)?;
    let limit = u64::try_from(isize::MAX).unwrap_or(u64::MAX);
    let mut sum = 0u64;
    let mut left = MAX_RW_COUNT;
    let mut segs = Vec::with_capacity(raw.len() / 16);
    for iov in raw.chunks_exact(16) {
        let mut base = [0u8; 8];
        let mut len = [0u8; 8];
        base.copy_from_slice(&iov[..8]);
        len.copy_from_slice(&iov[8..]);
        let (base, len) = (u64::from_le_bytes(base), u64::from_le_bytes(len));
        sum = sum
            .checked_add(len)
            .filter(|&s| s <= limit)
            .ok_or(Errno::EINVAL)?;
        let take = len.min(left);
        left -= take;
        segs.push((base, take));
    }
    Ok(segs)
}

/// A position argument (`loff_t`): negative → `EINVAL`.
fn pos_arg(a: u64) -> Result<u64, Errno> {
    if a.cast_signed() < 0 {
        return Err(Errno::EINVAL);
    }
    Ok(a)
}

pub(crate) fn sys_read(k: &Kernel, ctx: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    let file = k.fds().get(fd_arg(a[0]))?.file.clone();
    read_segs(
        file.as_ref(),
        ctx.mem,
        &[(a[1], a[2].min(MAX_RW_COUNT))],
        None,
    )
}

pub(crate) fn sys_write(k: &Kernel, ctx: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    let file = k.fds().get(fd_arg(a[0]))?.file.clone();
    let written = write_segs(
        file.as_ref(),
        ctx.mem,
        &[(a[1], a[2].min(MAX_RW_COUNT))],
        None,
    )?;
    k.after_slow_send(a[0], file.as_ref());
    Ok(written)
}

pub(crate) fn sys_pread64(k: &Kernel, ctx: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    let pos = pos_arg(a[3])?;
    let file = k.fds().get(fd_arg(a[0]))?.file.clone();
    read_segs(
        file.as_ref(),
        ctx.mem,
        &[(a[1], a[2].min(MAX_RW_COUNT))],
        Some(pos),
    )
}

pub(crate) fn sys_pwrite64(k: &Kernel, ctx: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    let pos = pos_arg(a[3])?;
    let file = k.fds().get(fd_arg(a[0]))?.file.clone();
    write_segs(
        file.as_ref(),
        ctx.mem,
        &[(a[1], a[2].min(MAX_RW_COUNT))],
        Some(pos),
    )
}

pub(crate) fn sys_readv(k: &Kernel, ctx: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    let file = k.fds().get(fd_arg(a[0]))?.file.clone();
    let segs = read_iovecs(ctx.mem, a[1], a[2])?;
    if segs.iter().all(|&(_, l)| l == 0) {
        return Ok(0);
    }
    read_segs(file.as_ref(), ctx.mem, &segs, None)
}

pub(crate) fn sys_writev(k: &Kernel, ctx: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    let file = k.fds().get(fd_arg(a[0]))?.file.clone();
    let segs = read_iovecs(ctx.mem, a[1], a[2])?;
    if segs.iter().all(|&(_, l)| l == 0) {
        return Ok(0);
    }
    write_segs(file.as_ref(), ctx.mem, &segs, None)
}

pub(crate) fn sys_preadv(k: &Kernel, ctx: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    // x86_64: the whole offset is in pos_l (a[3]).
    let pos = pos_arg(a[3])?;
    let file = k.fds().get(fd_arg(a[0]))?.file.clone();
    let segs = read_iovecs(ctx.mem, a[1], a[2])?;
    if segs.iter().all(|&(_, l)| l == 0) {
        // Linux still refuses unseekable files.
        file.pread(&mut [], pos)?;
        return Ok(0);
    }
    read_segs(file.as_ref(), ctx.mem, &segs, Some(pos))
}

pub(crate) fn sys_lseek(k: &Kernel, _ctx: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    let file = k.fds().get(fd_arg(a[0]))?.file.clone();
    file.lseek(a[1].cast_signed(), int_arg(a[2]))
}
