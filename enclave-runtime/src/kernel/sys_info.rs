//! System information and randomness: uname, getrandom, sysinfo, getcpu.

use super::errno::{Errno, SysResult};
use super::table::Syscall;
use super::{Args, Ctx, Kernel};

/// This family's table.
pub const TABLE: &[Syscall] = &[
    Syscall {
        nr: 63,
        name: "uname",
        handler: sys_uname,
    },
    Syscall {
        nr: 99,
        name: "sysinfo",
        handler: sys_sysinfo,
    },
    Syscall {
        nr: 309,
        name: "getcpu",
        handler: sys_getcpu,
    },
    Syscall {
        nr: 318,
        name: "getrandom",
        handler: sys_getrandom,
    },
];

/// Kernel release the enclave reports (a Linux version new enough for modern libcs).
pub const RELEASE: &str = "6.1.0-enclave";
/// Largest single `getrandom` result (Linux caps at 32 MiB − 1 too).
const GETRANDOM_MAX: u64 = 32 << 20;
const GRND_NONBLOCK: u64 = 1;
const GRND_RANDOM: u64 = 2;
const GRND_INSECURE: u64 = 4;

fn field(s: &str) -> [u8; 65] {
    let mut b = [0u8; 65];
    let n = s.len().min(64);
    b[..n].copy_from_slice(&s.as_bytes()[..n]);
    b
}

fn sys_uname(k: &Kernel, c: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    let mut out = Vec::with_capacity(390);
    for f in [
        "Linux",
        k.config.hostname.as_str(),
        RELEASE,
        "#1 SMP enclave",
        "x86_64",
        "(none)",
    ] {
        out.extend_from_slice(&field(f));
    }
    c.mem.copy_out(a[0], &out)?;
    Ok(0)
}

/// Fills `buf` from the host's CSPRNG.
pub fn host_random(buf: &mut [u8]) -> Result<(), Errno> {
    let mut done = 0;
    while done < buf.len() {
        let rest = &mut buf[done..];
        // SAFETY: `rest` is a valid writable buffer of `rest.len()` bytes.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        match usize::try_from(n) {
            Ok(n) if n > 0 => done += n,
            _ => {
                if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                    return Err(Errno::EIO);
                }
            }
        }
    }
    Ok(())
}

fn sys_getrandom(_k: &Kernel, c: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    let [addr, len, flags, ..] = *a;
    if flags & !(GRND_NONBLOCK | GRND_RANDOM | GRND_INSECURE) != 0 {
        return Err(Errno::EINVAL);
    }
    let len = len.min(GETRANDOM_MAX);
    c.mem.check_writable(addr, len)?;
    let mut chunk = [0u8; 4096];
    let mut done = 0u64;
    while done < len {
        let n = usize::try_from((len - done).min(4096)).map_err(|_| Errno::EINVAL)?;
        host_random(&mut chunk[..n])?;
        c.mem.copy_out(addr + done, &chunk[..n])?;
        done += n as u64;
    }
    Ok(len)
}

fn sys_sysinfo(k: &Kernel, c: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    // struct sysinfo: uptime, loads[3], totalram, freeram, sharedram, bufferram, totalswap,
    // freeswap, procs(u16)+pad, totalhigh, freehigh, mem_unit(u32) ... 112 bytes.
    let mut b = [0u8; 112];
    b[32..40].copy_from_slice(&k.mem_size.to_le_bytes());
    b[40..48].copy_from_slice(&k.mem_size.saturating_sub(k.mm().brk()).to_le_bytes());
    b[80..82].copy_from_slice(&1u16.to_le_bytes());
    b[104..108].copy_from_slice(&1u32.to_le_bytes());
    c.mem.copy_out(a[0], &b)?;
    Ok(0)
}

fn sys_getcpu(_k: &Kernel, c: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    for &p in &a[..2] {
        if p != 0 {
            c.mem.write_u32(p, 0)?;
        }
    }
    Ok(0)
}
