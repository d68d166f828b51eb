//! Memory system calls: brk, mmap, munmap, mprotect, mremap, madvise and the mlock family.

use super::errno::{Errno, SysResult};
use super::mm::{page_up, Want};
use super::table::Syscall;
use super::{Args, Ctx, Kernel};
use crate::layout::PAGE_SIZE;

/// This family's table.
pub const TABLE: &[Syscall] = &[
    Syscall {
        nr: 9,
        name: "mmap",
        handler: sys_mmap,
    },
    Syscall {
        nr: 10,
        name: "mprotect",
        handler: sys_mprotect,
    },
    Syscall {
        nr: 11,
        name: "munmap",
        handler: sys_munmap,
    },
    Syscall {
        nr: 12,
        name: "brk",
        handler: sys_brk,
    },
    Syscall {
        nr: 25,
        name: "mremap",
        handler: sys_mremap,
    },
    Syscall {
        nr: 26,
        name: "msync",
        handler: sys_accept_range,
    },
    Syscall {
        nr: 28,
        name: "madvise",
        handler: sys_madvise,
    },
    Syscall {
        nr: 149,
        name: "mlock",
        handler: sys_accept_range,
    },
    Syscall {
        nr: 150,
        name: "munlock",
        handler: sys_accept_range,
    },
    Syscall {
        nr: 151,
        name: "mlockall",
        handler: sys_zero,
    },
    Syscall {
        nr: 152,
        name: "munlockall",
        handler: sys_zero,
    },
    Syscall {
        nr: 325,
        name: "mlock2",
        handler: sys_accept_range,
    },
];

const PROT_EXEC: u64 = 0x4;
const MAP_SHARED: u64 = 0x01;
const MAP_PRIVATE: u64 = 0x02;
const MAP_SHARED_VALIDATE: u64 = 0x03;
const MAP_FIXED: u64 = 0x10;
const MAP_ANONYMOUS: u64 = 0x20;
const MAP_FIXED_NOREPLACE: u64 = 0x10_0000;
const MREMAP_MAYMOVE: u64 = 1;
const MADV_DONTNEED: u64 = 4;
const MADV_FREE: u64 = 8;

fn sys_brk(k: &Kernel, ctx: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    Ok(k.mm().set_brk(ctx.mem.ram(), a[0]))
}

fn sys_mmap(k: &Kernel, ctx: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    let [addr, len, prot, flags, fd, offset] = *a;
    let kind = flags & 0x03;
    if kind != MAP_PRIVATE && kind != MAP_SHARED && kind != MAP_SHARED_VALIDATE {
        return Err(Errno::EINVAL);
    }
    if !offset.is_multiple_of(PAGE_SIZE) || len == 0 {
        return Err(Errno::EINVAL);
    }
    let file = if flags & MAP_ANONYMOUS == 0 {
        let d = k.fds().get(fd)?.clone();
        if kind != MAP_PRIVATE {
            // The image is read-only and nothing else is shareable: only private copies.
            return Err(Errno::EACCES);
        }
        Some(d.file.clone())
    } else {
        None
    };
    let fixed = flags & (MAP_FIXED | MAP_FIXED_NOREPLACE) != 0;
    let noreplace = flags & MAP_FIXED_NOREPLACE != 0;
    let ram = ctx.mem.ram();
    let want = if prot & PROT_EXEC != 0 {
        Want::Exec
    } else if file.is_some() {
        Want::File
    } else {
        Want::Anon
    };
    let start = k.mm().map_for(ram, addr, len, fixed, noreplace, want)?;
    if let Some(file) = file {
        if let Err(e) = fill_from_file(ctx, file.as_ref(), start, len, offset) {
            let _ = k.mm().unmap(ram, start, len);
            return Err(e);
        }
    }
    Ok(start)
}

/// Copies file contents into a fresh private mapping (bytes past end of file stay zero).
fn fill_from_file(
    ctx: &Ctx<'_, '_>,
    file: &dyn super::file::FileOps,
    start: u64,
    len: u64,
    offset: u64,
) -> Result<(), Errno> {
    let mut buf = vec![0u8; 256 << 10];
    let mut done = 0u64;
    while done < len {
        let want =
            usize::try_from((len - done).min(buf.len() as u64)).map_err(|_| Errno::EINVAL)?;
        let at = offset.checked_add(done).ok_or(Errno::EOVERFLOW)?;
        let got = file.pread(&mut buf[..want], at)?;
        if got == 0 {
            break;
        }
        let got_len = usize::try_from(got).map_err(|_| Errno::EIO)?.min(want);
        ctx.mem
            .ram()
            .write(start + done, &buf[..got_len])
            .map_err(|_| Errno::EFAULT)?;
        done += got_len as u64;
    }
    Ok(())
}

fn sys_munmap(k: &Kernel, ctx: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    k.mm().unmap(ctx.mem.ram(), a[0], a[1])?;
    Ok(0)
}

fn sys_mprotect(k: &Kernel, ctx: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    if a[2] & !0x7 & !0x0300_0000 != 0 {
        return Err(Errno::EINVAL);
    }
    k.mm().protect(a[0], a[1], ctx.mem.ram().size())?;
    Ok(0)
}

fn sys_mremap(k: &Kernel, ctx: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    let [old, old_len, new_len, flags, ..] = *a;
    if flags & !MREMAP_MAYMOVE != 0 {
        // MREMAP_FIXED / DONTUNMAP are not supported.
        return Err(Errno::EINVAL);
    }
    k.mm().remap(
        ctx.mem.ram(),
        old,
        old_len,
        new_len,
        flags & MREMAP_MAYMOVE != 0,
    )
}

fn sys_madvise(k: &Kernel, ctx: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    let [addr, len, advice, ..] = *a;
    if !addr.is_multiple_of(PAGE_SIZE) {
        return Err(Errno::EINVAL);
    }
    let end = page_up(len)
        .and_then(|l| addr.checked_add(l))
        .ok_or(Errno::EINVAL)?;
    if advice == MADV_DONTNEED || advice == MADV_FREE {
        if !k.mm().is_mapped(addr, end) {
            return Err(Errno::ENOMEM);
        }
        let _ = ctx.mem.ram().discard(addr, end - addr);
    }
    Ok(0)
}

fn sys_accept_range(_k: &Kernel, ctx: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    let end = a[0].checked_add(a[1]).ok_or(Errno::EINVAL)?;
    if end > ctx.mem.ram().size() {
        return Err(Errno::ENOMEM);
    }
    Ok(0)
}

fn sys_zero(_k: &Kernel, _ctx: &mut Ctx<'_, '_>, _a: &Args) -> SysResult {
    Ok(0)
}
