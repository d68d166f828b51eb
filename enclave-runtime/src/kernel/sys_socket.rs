//! Socket system calls. `AF_VSOCK` stream sockets work with Linux semantics; every other
//! family (`AF_INET`, `AF_INET6`, `AF_UNIX`, `AF_NETLINK`, …) gets `EAFNOSUPPORT`: the enclave
//! has no other channel.

use std::sync::Arc;

use super::errno::{Errno, SysResult};
use super::file::{Descriptor, FileOps};
use super::socket::{Shutdown, Socket, VsockAddr, AF_VSOCK, SOCKADDR_VM_SIZE};
use super::table::Syscall;
use super::vsock::VsockSocket;
use super::{Args, Ctx, Kernel};

/// This family's table.
pub const TABLE: &[Syscall] = &[
    Syscall {
        nr: 41,
        name: "socket",
        handler: sys_socket,
    },
    Syscall {
        nr: 42,
        name: "connect",
        handler: sys_connect,
    },
    Syscall {
        nr: 43,
        name: "accept",
        handler: sys_accept,
    },
    Syscall {
        nr: 44,
        name: "sendto",
        handler: sys_sendto,
    },
    Syscall {
        nr: 45,
        name: "recvfrom",
        handler: sys_recvfrom,
    },
    Syscall {
        nr: 46,
        name: "sendmsg",
        handler: sys_sendmsg,
    },
    Syscall {
        nr: 47,
        name: "recvmsg",
        handler: sys_recvmsg,
    },
    Syscall {
        nr: 48,
        name: "shutdown",
        handler: sys_shutdown,
    },
    Syscall {
        nr: 49,
        name: "bind",
        handler: sys_bind,
    },
    Syscall {
        nr: 50,
        name: "listen",
        handler: sys_listen,
    },
    Syscall {
        nr: 51,
        name: "getsockname",
        handler: sys_getsockname,
    },
    Syscall {
        nr: 52,
        name: "getpeername",
        handler: sys_getpeername,
    },
    Syscall {
        nr: 53,
        name: "socketpair",
        handler: sys_socketpair,
    },
    Syscall {
        nr: 54,
        name: "setsockopt",
        handler: sys_setsockopt,
    },
    Syscall {
        nr: 55,
        name: "getsockopt",
        handler: sys_getsockopt,
    },
    Syscall {
        nr: 288,
        name: "accept4",
        handler: sys_accept4,
    },
];

/// Largest single send/recv buffer moved at once.
const CHUNK: usize = 1 << 20;
const SOCK_TYPE_MASK: u64 = 0xf;

/// The low 32 bits of a register, as the C `int` argument it carries.
fn int(v: u64) -> i32 {
    u32::try_from(v & 0xffff_ffff).unwrap_or(0).cast_signed()
}

const SOCK_STREAM: u64 = 1;
const SOCK_NONBLOCK: u64 = 0o4000;
const SOCK_CLOEXEC: u64 = 0o2_000_000;
const SOCKADDR_LEN: u32 = 16;

fn socket_of(k: &Kernel, fd: u64) -> Result<Arc<dyn FileOps>, Errno> {
    let file = k.fds().get(fd)?.file.clone();
    if file.as_socket().is_none() {
        return Err(Errno::ENOTSOCK);
    }
    Ok(file)
}

fn sock(file: &Arc<dyn FileOps>) -> Result<&dyn Socket, Errno> {
    file.as_socket().ok_or(Errno::ENOTSOCK)
}

fn sys_socket(k: &Kernel, _c: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    let [domain, ty, protocol, ..] = *a;
    if domain != u64::from(AF_VSOCK) {
        return Err(Errno::EAFNOSUPPORT);
    }
    if ty & !(SOCK_TYPE_MASK | SOCK_NONBLOCK | SOCK_CLOEXEC) != 0 {
        return Err(Errno::EINVAL);
    }
    if ty & SOCK_TYPE_MASK != SOCK_STREAM {
        return Err(Errno(libc::ESOCKTNOSUPPORT));
    }
    if protocol != 0 {
        return Err(Errno(libc::EPROTONOSUPPORT));
    }
    let hub = k.vsock().ok_or(Errno::EAFNOSUPPORT)?;
    let nonblock = ty & SOCK_NONBLOCK != 0;
    let flags = libc::O_RDWR | if nonblock { libc::O_NONBLOCK } else { 0 };
    let s = VsockSocket::new(hub, flags, k.stop.clone());
    k.fds().insert(Descriptor {
        file: Arc::new(s),
        cloexec: ty & SOCK_CLOEXEC != 0,
    })
}

fn sys_socketpair(_k: &Kernel, _c: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    if a[0] == u64::from(AF_VSOCK) {
        return Err(Errno::EOPNOTSUPP);
    }
    Err(Errno::EAFNOSUPPORT)
}

fn read_addr(c: &Ctx<'_, '_>, addr: u64, len: u64) -> Result<VsockAddr, Errno> {
    if len < SOCKADDR_VM_SIZE as u64 {
        // Too short to even name the family.
        if len >= 2 {
            let mut fam = [0u8; 2];
            c.mem.copy_in(addr, &mut fam)?;
            if u16::from_le_bytes(fam) != AF_VSOCK {
                return Err(Errno::EAFNOSUPPORT);
            }
        }
        return Err(Errno::EINVAL);
    }
    let mut b = [0u8; SOCKADDR_VM_SIZE];
    c.mem.copy_in(addr, &mut b)?;
    VsockAddr::from_bytes(&b)
}

/// Writes a socket address to (`addr`, `*len_ptr`) as the accept/getsockname family does.
fn write_addr(c: &Ctx<'_, '_>, addr: u64, len_ptr: u64, v: VsockAddr) -> Result<(), Errno> {
    if addr == 0 {
        return Ok(());
    }
    let avail = c.mem.read_u32(len_ptr)?;
    if int(u64::from(avail)) < 0 {
        return Err(Errno::EINVAL);
    }
    let bytes = v.to_bytes();
    let n = usize::try_from(avail).unwrap_or(0).min(bytes.len());
    c.mem.copy_out(addr, &bytes[..n])?;
    c.mem.write_u32(len_ptr, SOCKADDR_LEN)?;
    Ok(())
}

fn sys_bind(k: &Kernel, c: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    let f = socket_of(k, a[0])?;
    let addr = read_addr(c, a[1], a[2])?;
    sock(&f)?.bind(addr)?;
    Ok(0)
}

fn sys_listen(k: &Kernel, _c: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    let f = socket_of(k, a[0])?;
    let backlog = u32::try_from(int(a[1]).max(0)).unwrap_or(0);
    sock(&f)?.listen(backlog)?;
    Ok(0)
}

fn do_accept(k: &Kernel, c: &Ctx<'_, '_>, a: &Args, flags: u64) -> SysResult {
    if flags & !(SOCK_NONBLOCK | SOCK_CLOEXEC) != 0 {
        return Err(Errno::EINVAL);
    }
    let f = socket_of(k, a[0])?;
    if a[1] != 0 {
        c.mem.read_u32(a[2])?;
    }
    let (conn, peer) = sock(&f)?.accept(flags & SOCK_NONBLOCK != 0)?;
    let fd = k.fds().insert(Descriptor {
        file: conn,
        cloexec: flags & SOCK_CLOEXEC != 0,
    })?;
    if let Err(e) = write_addr(c, a[1], a[2], peer) {
        let _ = k.fds().remove(fd);
        return Err(e);
    }
    k.fds().bind_fast(fd);
    Ok(fd)
}

fn sys_accept(k: &Kernel, c: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    do_accept(k, c, a, 0)
}

fn sys_accept4(k: &Kernel, c: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    do_accept(k, c, a, a[3])
}

fn sys_connect(k: &Kernel, c: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    let f = socket_of(k, a[0])?;
    let addr = read_addr(c, a[1], a[2])?;
    sock(&f)?.connect(addr)?;
    k.fds().bind_fast(a[0]);
    Ok(0)
}

fn sys_shutdown(k: &Kernel, _c: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    let f = socket_of(k, a[0])?;
    let how = match a[1] {
        0 => Shutdown::Read,
        1 => Shutdown::Write,
        2 => Shutdown::Both,
        _ => return Err(Errno::EINVAL),
    };
    sock(&f)?.shutdown(how)?;
    Ok(0)
}

fn sys_getsockname(k: &Kernel, c: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    let f = socket_of(k, a[0])?;
    let v = sock(&f)?.local_addr()?;
    c.mem.check_writable(a[1], 1)?;
    write_addr(c, a[1], a[2], v)?;
    Ok(0)
}

fn sys_getpeername(k: &Kernel, c: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    let f = socket_of(k, a[0])?;
    let v = sock(&f)?.peer_addr()?;
    c.mem.check_writable(a[1], 1)?;
    write_addr(c, a[1], a[2], v)?;
    Ok(0)
}

fn sys_setsockopt(k: &Kernel, c: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    let f = socket_of(k, a[0])?;
    let len = usize::try_from(a[4] & 0xffff_ffff).map_err(|_| Errno::EINVAL)?;
    if len > 4096 {
        return Err(Errno::EINVAL);
    }
    let value = c.mem.copy_in_vec(a[3], len)?;
    sock(&f)?.set_option(int(a[1]), int(a[2]), &value)?;
    Ok(0)
}

fn sys_getsockopt(k: &Kernel, c: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    let f = socket_of(k, a[0])?;
    let avail = c.mem.read_u32(a[4])?;
    if int(u64::from(avail)) < 0 {
        return Err(Errno::EINVAL);
    }
    let v = sock(&f)?.get_option(int(a[1]), int(a[2]))?;
    let n = usize::try_from(avail).unwrap_or(0).min(v.len());
    c.mem.copy_out(a[3], &v[..n])?;
    c.mem.write_u32(a[4], u32::try_from(n).unwrap_or(0))?;
    Ok(0)
}

/// Sends `len` bytes at `buf` (in chunks); returns bytes sent.
fn send_buf(s: &dyn Socket, c: &Ctx<'_, '_>, buf: u64, len: u64, flags: i32) -> SysResult {
    let len = len.min(0x7fff_f000);
    let mut done = 0u64;
    let mut tmp = Vec::new();
    while done < len {
        let n = usize::try_from((len - done).min(CHUNK as u64)).map_err(|_| Errno::EINVAL)?;
        let at = buf.checked_add(done).ok_or(Errno::EFAULT)?;
        let more = if done > 0 {
            flags | libc::MSG_DONTWAIT
        } else {
            flags
        };
        let sent = match s.send_guest(c.mem, at, n as u64, more) {
            Some(r) => r,
            None => {
                tmp.resize(n, 0);
                if let Err(e) = c.mem.copy_in(at, &mut tmp) {
                    return if done > 0 { Ok(done) } else { Err(e.into()) };
                }
                s.send(&tmp, more)
            }
        };
        match sent {
            Ok(w) => {
                done += w;
                if w < n as u64 {
                    break;
                }
            }
            Err(e) if done > 0 && e == Errno::EAGAIN => break,
            Err(e) => return if done > 0 { Ok(done) } else { Err(e) },
        }
    }
    Ok(done)
}

/// Receives into `len` bytes at `buf`; returns bytes received.
fn recv_buf(s: &dyn Socket, c: &Ctx<'_, '_>, buf: u64, len: u64, flags: i32) -> SysResult {
    let len = len.min(0x7fff_f000).min(CHUNK as u64 * 16);
    c.mem.check_writable(buf, len.min(CHUNK as u64))?;
    if let Some(got) = s.recv_guest(c.mem, buf, len.min(CHUNK as u64), flags) {
        return got;
    }
    let n = usize::try_from(len.min(CHUNK as u64)).map_err(|_| Errno::EINVAL)?;
    let mut tmp = vec![0u8; n];
    let got = s.recv(&mut tmp, flags)?;
    let got_us = usize::try_from(got).map_err(|_| Errno::EINVAL)?.min(n);
    c.mem.copy_out(buf, &tmp[..got_us])?;
    Ok(got_us as u64)
}

const ALLOWED_SEND: i32 = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL | libc::MSG_MORE | libc::MSG_EOR;
const ALLOWED_RECV: i32 = libc::MSG_DONTWAIT
    | libc::MSG_PEEK
    | libc::MSG_WAITALL
    | libc::MSG_TRUNC
    | libc::MSG_CMSG_CLOEXEC;

/// The flags of a send/recv call checked against `allowed`, with `MSG_DONTWAIT` added for a
/// non-blocking socket.
fn call_flags(f: &Arc<dyn FileOps>, raw: u64, allowed: i32) -> Result<i32, Errno> {
    let flags = int(raw);
    if flags & !allowed != 0 {
        return Err(Errno::EOPNOTSUPP);
    }
    let nonblock = f.status_flags() & libc::O_NONBLOCK != 0;
    Ok(flags | if nonblock { libc::MSG_DONTWAIT } else { 0 })
}

/// Moves data for each guest segment with `op`; after the first bytes the rest must not block
/// (stream semantics: a short transfer ends the call).
fn over_segments(
    segs: &[(u64, u64)],
    flags: i32,
    mut op: impl FnMut(u64, u64, i32) -> SysResult,
) -> SysResult {
    let mut total = 0u64;
    for &(base, len) in segs {
        if len == 0 {
            continue;
        }
        let flags = if total > 0 {
            flags | libc::MSG_DONTWAIT
        } else {
            flags
        };
        match op(base, len, flags) {
            Ok(n) => {
                total += n;
                if n < len {
                    break;
                }
            }
            Err(e) => return if total > 0 { Ok(total) } else { Err(e) },
        }
    }
    Ok(total)
}

fn sys_sendto(k: &Kernel, c: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    let f = socket_of(k, a[0])?;
    let flags = call_flags(&f, a[3], ALLOWED_SEND)?;
    let sent = send_buf(sock(&f)?, c, a[1], a[2], flags)?;
    k.after_slow_send(a[0], f.as_ref());
    Ok(sent)
}

fn sys_recvfrom(k: &Kernel, c: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    let f = socket_of(k, a[0])?;
    let flags = call_flags(&f, a[3], ALLOWED_RECV)?;
    let s = sock(&f)?;
    let got = recv_buf(s, c, a[1], a[2], flags)?;
    if a[4] != 0 {
        write_addr(c, a[4], a[5], s.peer_addr()?)?;
    }
    Ok(got)
}

/// `struct msghdr` fields we use.
struct MsgHdr {
    name: u64,
    namelen: u64,
    iov: u64,
    iovlen: u64,
}

fn read_msghdr(c: &Ctx<'_, '_>, at: u64) -> Result<MsgHdr, Errno> {
    let mut b = [0u8; 56];
    c.mem.copy_in(at, &mut b)?;
    let w = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap_or([0; 8]));
    let hdr = MsgHdr {
        name: w(0),
        namelen: w(8) & 0xffff_ffff,
        iov: w(16),
        iovlen: w(24),
    };
    if hdr.iovlen > 1024 {
        return Err(Errno(libc::EMSGSIZE));
    }
    Ok(hdr)
}

fn sys_sendmsg(k: &Kernel, c: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    let f = socket_of(k, a[0])?;
    let hdr = read_msghdr(c, a[1])?;
    let flags = call_flags(&f, a[2], ALLOWED_SEND)?;
    let s = sock(&f)?;
    let segs = super::sys_file::read_iovecs(c.mem, hdr.iov, hdr.iovlen)?;
    over_segments(&segs, flags, |base, len, fl| send_buf(s, c, base, len, fl))
}

fn sys_recvmsg(k: &Kernel, c: &mut Ctx<'_, '_>, a: &Args) -> SysResult {
    let f = socket_of(k, a[0])?;
    let hdr = read_msghdr(c, a[1])?;
    let flags = call_flags(&f, a[2], ALLOWED_RECV)?;
    let s = sock(&f)?;
    let segs = super::sys_file::read_iovecs(c.mem, hdr.iov, hdr.iovlen)?;
    let total = over_segments(&segs, flags, |base, len, fl| recv_buf(s, c, base, len, fl))?;
    // No ancillary data, no truncation flags: msg_controllen = 0, msg_flags = 0.
    c.mem.write_u64(a[1] + 40, 0)?;
    c.mem.write_u32(a[1] + 48, 0)?;
    if hdr.name != 0 && hdr.namelen > 0 {
        let peer = s.peer_addr()?.to_bytes();
        let n = usize::try_from(hdr.namelen).unwrap_or(0).min(peer.len());
        c.mem.copy_out(hdr.name, &peer[..n])?;
        c.mem.write_u32(a[1] + 8, SOCKADDR_LEN)?;
    }
    Ok(total)
}
