//! File-family handlers driven through `Kernel::dispatch` against plain guest memory.

use std::sync::{Arc, Mutex};

use super::nr;
use crate::kernel::console::{ConsoleSink, Stream};
use crate::kernel::fs::{ImageTree, TreeEntry, IMAGE_DEV};
use crate::kernel::{mm, Cpu, Ctx, Kernel, KernelConfig};
use crate::layout;
use crate::memory::{Backing, GuestRam, UserMemory};

#[derive(Default)]
struct NoCpu {
    fs: u64,
    gs: u64,
}

impl Cpu for NoCpu {
    fn fs_base(&self) -> u64 {
        self.fs
    }
    fn set_fs_base(&mut self, base: u64) {
        self.fs = base;
    }
    fn gs_base(&self) -> u64 {
        self.gs
    }
    fn set_gs_base(&mut self, base: u64) {
        self.gs = base;
    }
}

#[derive(Default)]
struct Capture(Mutex<Vec<u8>>);

impl ConsoleSink for Capture {
    fn write(&self, _stream: Stream, data: &[u8]) {
        self.0.lock().unwrap().extend_from_slice(data);
    }
}

const PATH: u64 = 0x20_0000;
const BUF: u64 = 0x30_0000;
const IOV: u64 = 0x28_0000;
const AT_FDCWD: u64 = libc::AT_FDCWD.cast_unsigned() as u64;

fn neg(e: i32) -> i64 {
    -i64::from(e)
}

struct Env {
    ram: GuestRam,
    kernel: Kernel,
    cpu: NoCpu,
    console: Arc<Capture>,
}

fn entry(path: &str, mode: u32, data: &[u8]) -> TreeEntry {
    TreeEntry {
        path: path.to_string(),
        mode,
        data: data.to_vec(),
    }
}

impl Env {
    fn new() -> Self {
        Self::with_vsock(None)
    }

    fn with_vsock(vsock: Option<Arc<crate::kernel::vsock::VsockHub>>) -> Self {
        let tree = ImageTree::new(vec![
            entry("init", libc::S_IFREG | 0o755, b"\x7fELF"),
            entry("etc/hostname", libc::S_IFREG | 0o644, b"enclave\n"),
            entry("etc/alias", libc::S_IFLNK | 0o777, b"hostname"),
            entry("etc/motd", libc::S_IFREG | 0o644, &[b'm'; 1000]),
            entry(
                "etc/a-very-long-file-name-for-dirents",
                libc::S_IFREG | 0o644,
                b"",
            ),
            entry("loop1", libc::S_IFLNK | 0o777, b"loop2"),
            entry("loop2", libc::S_IFLNK | 0o777, b"loop1"),
        ])
        .unwrap();
        let ram = GuestRam::new(layout::MIN_GUEST_MEMORY, Backing::Anonymous).unwrap();
        let console = Arc::new(Capture::default());
        let config = KernelConfig {
            debug: true,
            cpu_count: 1,
            console: Some(console.clone()),
            hostname: "enclave".to_string(),
            bare: false,
            vsock,
            nsm: None,
        };
        let mm = mm::AddressSpace::new(0x40_0000, 0x80_0000).unwrap();
        let kernel = Kernel::new(config, ram.size(), mm, Arc::new(tree));
        Self {
            ram,
            kernel,
            cpu: NoCpu::default(),
            console,
        }
    }

    fn call(&mut self, n: libc::c_long, args: &[u64]) -> i64 {
        let mut a = [0u64; 6];
        a[..args.len()].copy_from_slice(args);
        let mem = UserMemory::new(&self.ram, &[]);
        let mut thread = crate::kernel::ThreadState {
            tid: 1,
            clear_child_tid: 0,
        };
        let mut ctx = Ctx {
            mem: &mem,
            cpu: &mut self.cpu,
            thread: &mut thread,
            exit: None,
        };
        self.kernel.dispatch(&mut ctx, nr(n), &a).cast_signed()
    }

    /// Writes `s` NUL-terminated at PATH; returns PATH.
    fn path(&self, s: &str) -> u64 {
        self.cstr(PATH, s)
    }

    fn cstr(&self, at: u64, s: &str) -> u64 {
        let mut b = s.as_bytes().to_vec();
        b.push(0);
        self.ram.write(at, &b).unwrap();
        at
    }

    fn get(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        self.ram.read(addr, &mut v).unwrap();
        v
    }

    fn u64_at(&self, addr: u64) -> u64 {
        self.ram.read_u64(addr).unwrap()
    }

    fn u32_at(&self, addr: u64) -> u32 {
        u32::from_le_bytes(self.get(addr, 4).try_into().unwrap())
    }

    fn open(&mut self, p: &str, flags: i32) -> i64 {
        let a = self.path(p);
        self.call(libc::SYS_open, &[a, u64::from(flags.cast_unsigned())])
    }

    fn iov(&self, at: u64, segs: &[(u64, u64)]) {
        for (i, (b, l)) in segs.iter().enumerate() {
            let off = at + 16 * i as u64;
            self.ram.write_u64(off, *b).unwrap();
            self.ram.write_u64(off + 8, *l).unwrap();
        }
    }
}

fn u(v: i64) -> u64 {
    v.cast_unsigned()
}

#[test]
fn open_read_close() {
    let mut e = Env::new();
    let fd = e.open("/etc/hostname", libc::O_RDONLY);
    assert_eq!(fd, 3);
    assert_eq!(e.call(libc::SYS_read, &[u(fd), BUF, 100]), 8);
    assert_eq!(e.get(BUF, 8), b"enclave\n");
    assert_eq!(e.call(libc::SYS_read, &[u(fd), BUF, 100]), 0);
    assert_eq!(e.call(libc::SYS_pread64, &[u(fd), BUF, 3, 4]), 3);
    assert_eq!(e.get(BUF, 3), b"ave");
    assert_eq!(
        e.call(libc::SYS_pread64, &[u(fd), BUF, 3, u(-1)]),
        neg(libc::EINVAL)
    );
    assert_eq!(
        e.call(libc::SYS_pwrite64, &[u(fd), BUF, 3, 0]),
        neg(libc::EBADF)
    );
    assert_eq!(
        e.call(libc::SYS_pwrite64, &[1, BUF, 3, 0]),
        neg(libc::ESPIPE)
    );
    assert_eq!(
        e.call(libc::SYS_pread64, &[0, BUF, 3, 0]),
        neg(libc::ESPIPE)
    );
    assert_eq!(e.call(libc::SYS_write, &[u(fd), BUF, 3]), neg(libc::EBADF));
    // A huge count is clamped; the read stops at end of file.
    assert_eq!(e.call(libc::SYS_lseek, &[u(fd), 0, 0]), 0);
    assert_eq!(e.call(libc::SYS_read, &[u(fd), BUF, u64::MAX]), 8);
    // A buffer in the system area faults before anything is consumed.
    assert_eq!(e.call(libc::SYS_lseek, &[u(fd), 0, 0]), 0);
    assert_eq!(
        e.call(libc::SYS_read, &[u(fd), 0x1000, 8]),
        neg(libc::EFAULT)
    );
    assert_eq!(e.call(libc::SYS_read, &[u(fd), BUF, 8]), 8);
    assert_eq!(e.call(libc::SYS_close, &[u(fd)]), 0);
    assert_eq!(e.call(libc::SYS_close, &[u(fd)]), neg(libc::EBADF));
    // Relative to the working directory, through a symlink, and via openat.
    let dirfd = e.open("/etc", libc::O_RDONLY | libc::O_DIRECTORY);
    let p = e.path("alias");
    let fd = e.call(libc::SYS_openat, &[u(dirfd), p, 0]);
    assert!(fd > 0);
    assert_eq!(e.call(libc::SYS_read, &[u(fd), BUF, 3]), 3);
    assert_eq!(
        e.call(libc::SYS_read, &[u(dirfd), BUF, 3]),
        neg(libc::EISDIR)
    );
}

#[test]
fn stdout_write_goes_to_console() {
    let mut e = Env::new();
    e.ram.write(BUF, b"hello").unwrap();
    assert_eq!(e.call(libc::SYS_write, &[1, BUF, 5]), 5);
    assert_eq!(e.call(libc::SYS_write, &[2, BUF, 0]), 0);
    assert_eq!(e.call(libc::SYS_write, &[1, 0x10, 5]), neg(libc::EFAULT));
    assert_eq!(e.call(libc::SYS_lseek, &[1, 0, 0]), neg(libc::ESPIPE));
    assert_eq!(e.call(libc::SYS_read, &[0, BUF, 5]), 0);
    assert_eq!(*e.console.0.lock().unwrap(), b"hello");
}

fn dirent_names(buf: &[u8]) -> Vec<String> {
    let mut names = Vec::new();
    let mut at = 0usize;
    while at < buf.len() {
        let reclen = usize::from(u16::from_le_bytes([buf[at + 16], buf[at + 17]]));
        assert_eq!(reclen % 8, 0);
        let name = &buf[at + 19..at + reclen];
        let end = name.iter().position(|&b| b == 0).unwrap();
        names.push(String::from_utf8(name[..end].to_vec()).unwrap());
        at += reclen;
    }
    names
}

#[test]
fn getdents_resumes_across_small_buffers() {
    let mut e = Env::new();
    let fd = e.open("/etc", libc::O_RDONLY | libc::O_DIRECTORY);
    let mut names = Vec::new();
    let n1 = e.call(libc::SYS_getdents64, &[u(fd), BUF, 80]);
    assert!(n1 > 0 && n1 <= 80);
    names.extend(dirent_names(&e.get(BUF, usize::try_from(n1).unwrap())));
    let n2 = e.call(libc::SYS_getdents64, &[u(fd), BUF, 80]);
    assert!(n2 > 0);
    names.extend(dirent_names(&e.get(BUF, usize::try_from(n2).unwrap())));
    loop {
        let n = e.call(libc::SYS_getdents64, &[u(fd), BUF, 80]);
        assert!(n >= 0);
        if n == 0 {
            break;
        }
        names.extend(dirent_names(&e.get(BUF, usize::try_from(n).unwrap())));
    }
    assert_eq!(
        names,
        [
            ".",
            "..",
            "a-very-long-file-name-for-dirents",
            "alias",
            "hostname",
            "motd"
        ]
    );
    // d_type of "hostname" and the record fields of ".".
    assert_eq!(e.call(libc::SYS_lseek, &[u(fd), 0, 0]), 0);
    let n = e.call(libc::SYS_getdents64, &[u(fd), BUF, 4096]);
    let all = e.get(BUF, usize::try_from(n).unwrap());
    assert_eq!(dirent_names(&all).len(), 6);
    assert_eq!(u64::from_le_bytes(all[8..16].try_into().unwrap()), 1);
    assert_eq!(all[18], libc::DT_DIR);
    // Too small for one entry.
    assert_eq!(e.call(libc::SYS_lseek, &[u(fd), 0, 0]), 0);
    assert_eq!(
        e.call(libc::SYS_getdents64, &[u(fd), BUF, 10]),
        neg(libc::EINVAL)
    );
    assert_eq!(
        e.call(libc::SYS_getdents64, &[u(fd), 0x10, 4096]),
        neg(libc::EFAULT)
    );
    let file = e.open("/init", 0);
    assert_eq!(
        e.call(libc::SYS_getdents64, &[u(file), BUF, 4096]),
        neg(libc::ENOTDIR)
    );
}

#[test]
fn stat_family_fields() {
    let mut e = Env::new();
    let p = e.path("/etc/motd");
    assert_eq!(e.call(libc::SYS_stat, &[p, BUF]), 0);
    let ino = e.u64_at(BUF + 8);
    assert_eq!(e.u64_at(BUF), IMAGE_DEV);
    assert_eq!(e.u64_at(BUF + 16), 1);
    assert_eq!(e.u32_at(BUF + 24), libc::S_IFREG | 0o644);
    assert_eq!(e.u64_at(BUF + 48), 1000);
    assert_eq!(e.u64_at(BUF + 56), 4096);
    assert_eq!(e.u64_at(BUF + 64), 2);

    let fd = e.open("/etc/motd", 0);
    assert_eq!(e.call(libc::SYS_fstat, &[u(fd), BUF + 0x1000]), 0);
    assert_eq!(e.get(BUF, 144), e.get(BUF + 0x1000, 144));

    let p = e.path("/etc/alias");
    assert_eq!(e.call(libc::SYS_lstat, &[p, BUF]), 0);
    assert_eq!(e.u32_at(BUF + 24) & libc::S_IFMT, libc::S_IFLNK);
    assert_eq!(e.u64_at(BUF + 48), 8);
    assert_eq!(e.call(libc::SYS_stat, &[p, BUF]), 0);
    assert_eq!(e.u32_at(BUF + 24) & libc::S_IFMT, libc::S_IFREG);

    let dirfd = e.open("/etc", libc::O_DIRECTORY);
    let p = e.path("motd");
    assert_eq!(e.call(libc::SYS_newfstatat, &[u(dirfd), p, BUF, 0]), 0);
    assert_eq!(e.u64_at(BUF + 8), ino);
    let p = e.path("alias");
    let nofollow = u64::from(libc::AT_SYMLINK_NOFOLLOW.cast_unsigned());
    assert_eq!(
        e.call(libc::SYS_newfstatat, &[u(dirfd), p, BUF, nofollow]),
        0
    );
    assert_eq!(e.u32_at(BUF + 24) & libc::S_IFMT, libc::S_IFLNK);
    let empty = e.path("");
    let at_empty = u64::from(libc::AT_EMPTY_PATH.cast_unsigned());
    assert_eq!(
        e.call(libc::SYS_newfstatat, &[u(dirfd), empty, BUF, at_empty]),
        0
    );
    assert_eq!(e.u32_at(BUF + 24), libc::S_IFDIR | 0o755);
    assert_eq!(e.u64_at(BUF + 16), 2);
    assert_eq!(
        e.call(libc::SYS_newfstatat, &[u(dirfd), empty, BUF, 0]),
        neg(libc::ENOENT)
    );
    assert_eq!(
        e.call(libc::SYS_newfstatat, &[u(dirfd), p, BUF, 0x1]),
        neg(libc::EINVAL)
    );
    assert_eq!(e.call(libc::SYS_newfstatat, &[1, empty, BUF, at_empty]), 0);
    assert_eq!(e.u32_at(BUF + 24) & libc::S_IFMT, libc::S_IFCHR);

    let p = e.path("/etc/motd");
    assert_eq!(e.call(libc::SYS_statx, &[AT_FDCWD, p, 0, 0x7ff, BUF]), 0);
    assert_eq!(e.u32_at(BUF), 0x7ff);
    assert_eq!(e.u32_at(BUF + 4), 4096);
    assert_eq!(e.u32_at(BUF + 16), 1);
    assert_eq!(e.get(BUF + 28, 2), (0o100_644u16).to_le_bytes());
    assert_eq!(e.u64_at(BUF + 32), ino);
    assert_eq!(e.u64_at(BUF + 40), 1000);
    assert_eq!(e.u64_at(BUF + 48), 2);
    assert_eq!(e.u32_at(BUF + 136), 0);
    assert_eq!(e.u32_at(BUF + 140), 0x2a);
    assert_eq!(
        e.call(libc::SYS_statx, &[u(fd), 0, at_empty, 0x7ff, BUF]),
        0
    );
    assert_eq!(e.u64_at(BUF + 32), ino);
    assert_eq!(
        e.call(libc::SYS_statx, &[AT_FDCWD, p, 0, 0x8000_0000, BUF]),
        neg(libc::EINVAL)
    );
    assert_eq!(
        e.call(libc::SYS_statx, &[AT_FDCWD, p, 0, 0x7ff, 0x10]),
        neg(libc::EFAULT)
    );
}

#[test]
fn lseek_edges() {
    let mut e = Env::new();
    let fd = u(e.open("/etc/hostname", 0));
    assert_eq!(e.call(libc::SYS_lseek, &[fd, u(-1), 2]), 7);
    assert_eq!(e.call(libc::SYS_lseek, &[fd, 2, 1]), 9);
    assert_eq!(e.call(libc::SYS_lseek, &[fd, u(-10), 1]), neg(libc::EINVAL));
    assert_eq!(e.call(libc::SYS_lseek, &[fd, u(-1), 0]), neg(libc::EINVAL));
    assert_eq!(
        e.call(libc::SYS_lseek, &[fd, u(i64::MAX), 1]),
        neg(libc::EINVAL)
    );
    assert_eq!(
        e.call(libc::SYS_lseek, &[fd, u(i64::MAX), 2]),
        neg(libc::EINVAL)
    );
    assert_eq!(e.call(libc::SYS_lseek, &[fd, 0, 5]), neg(libc::EINVAL));
    assert_eq!(
        e.call(libc::SYS_lseek, &[fd, 0, u64::MAX]),
        neg(libc::EINVAL)
    );
    assert_eq!(e.call(libc::SYS_lseek, &[fd, 9, 1]), 18);
    assert_eq!(e.call(libc::SYS_lseek, &[fd, 1, 3]), 1);
    assert_eq!(e.call(libc::SYS_lseek, &[fd, 1, 4]), 8);
    assert_eq!(e.call(libc::SYS_lseek, &[fd, 8, 3]), neg(libc::ENXIO));
    assert_eq!(e.call(libc::SYS_lseek, &[u64::MAX, 0, 0]), neg(libc::EBADF));
}

#[test]
fn vectored_io_partial_and_limits() {
    let mut e = Env::new();
    let fd = u(e.open("/etc/hostname", 0));
    e.iov(IOV, &[(BUF, 4), (0x10, 4)]);
    assert_eq!(e.call(libc::SYS_readv, &[fd, IOV, 2]), 4);
    assert_eq!(e.get(BUF, 4), b"encl");
    // Nothing was consumed for the bad segment.
    e.iov(IOV, &[(BUF, 2), (BUF + 100, 10)]);
    assert_eq!(e.call(libc::SYS_readv, &[fd, IOV, 2]), 4);
    assert_eq!(e.get(BUF, 2), b"av");
    assert_eq!(e.get(BUF + 100, 2), b"e\n");
    assert_eq!(e.call(libc::SYS_preadv, &[fd, IOV, 2, 0]), 8);
    assert_eq!(e.get(BUF + 100, 6), b"clave\n");
    e.iov(IOV, &[(0x10, 4)]);
    assert_eq!(e.call(libc::SYS_readv, &[fd, IOV, 1]), neg(libc::EFAULT));

    e.ram.write(BUF, b"abc").unwrap();
    e.iov(IOV, &[(BUF, 3), (0x10, 4), (BUF, 3)]);
    assert_eq!(e.call(libc::SYS_writev, &[1, IOV, 3]), 3);
    assert_eq!(*e.console.0.lock().unwrap(), b"abc");
    assert_eq!(e.call(libc::SYS_writev, &[1, IOV, 1025]), neg(libc::EINVAL));
    assert_eq!(e.call(libc::SYS_writev, &[1, 0x10, 1]), neg(libc::EFAULT));
    assert_eq!(e.call(libc::SYS_writev, &[1, IOV, 0]), 0);
    e.iov(IOV, &[(BUF, 1 << 62), (BUF, 1 << 62)]);
    assert_eq!(e.call(libc::SYS_writev, &[1, IOV, 2]), neg(libc::EINVAL));
    e.iov(IOV, &[(BUF, u64::MAX)]);
    assert_eq!(e.call(libc::SYS_readv, &[fd, IOV, 1]), neg(libc::EINVAL));
    assert_eq!(
        e.call(libc::SYS_readv, &[u64::MAX, IOV, 1]),
        neg(libc::EBADF)
    );
}

#[test]
fn write_opens_are_read_only() {
    let mut e = Env::new();
    assert_eq!(e.open("/etc/hostname", libc::O_WRONLY), neg(libc::EROFS));
    assert_eq!(e.open("/etc/hostname", libc::O_RDWR), neg(libc::EROFS));
    assert_eq!(e.open("/etc/hostname", libc::O_TRUNC), neg(libc::EROFS));
    assert_eq!(
        e.open("/etc/new", libc::O_CREAT | libc::O_WRONLY),
        neg(libc::EROFS)
    );
    assert_eq!(
        e.open("/tmp/new", libc::O_CREAT | libc::O_WRONLY),
        neg(libc::ENOENT)
    );
    assert_eq!(
        e.open(
            "/etc/hostname",
            libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY
        ),
        neg(libc::EEXIST)
    );
    assert_eq!(e.open("/etc", libc::O_WRONLY), neg(libc::EISDIR));
    let p = e.path("/etc/hostname");
    let w = u64::from(libc::W_OK.cast_unsigned());
    assert_eq!(e.call(libc::SYS_access, &[p, w]), neg(libc::EROFS));
    assert_eq!(e.call(libc::SYS_access, &[p, 4]), 0);
    assert_eq!(e.call(libc::SYS_access, &[p, 1]), neg(libc::EACCES));
    assert_eq!(e.call(libc::SYS_access, &[p, 8]), neg(libc::EINVAL));
    let p = e.path("/init");
    assert_eq!(e.call(libc::SYS_faccessat, &[AT_FDCWD, p, 1]), 0);
    assert_eq!(e.call(libc::SYS_faccessat2, &[AT_FDCWD, p, 0, 0x200]), 0);
    assert_eq!(
        e.call(libc::SYS_faccessat2, &[AT_FDCWD, p, 0, 0x1]),
        neg(libc::EINVAL)
    );
}

#[test]
fn lookup_errors() {
    let mut e = Env::new();
    assert_eq!(e.open("/missing", 0), neg(libc::ENOENT));
    assert_eq!(e.open("", 0), neg(libc::ENOENT));
    assert_eq!(e.open("/proc/self/maps", 0), neg(libc::ENOENT));
    assert_eq!(e.open("/init/x", 0), neg(libc::ENOTDIR));
    assert_eq!(e.open("/init", libc::O_DIRECTORY), neg(libc::ENOTDIR));
    assert_eq!(e.open("/loop1", 0), neg(libc::ELOOP));
    assert_eq!(e.open("/etc/alias", libc::O_NOFOLLOW), neg(libc::ELOOP));
    assert!(e.open("/etc/alias", libc::O_NOFOLLOW | libc::O_PATH) > 0);
    let file = e.open("/init", 0);
    let p = e.path("x");
    assert_eq!(
        e.call(libc::SYS_openat, &[u(file), p, 0]),
        neg(libc::ENOTDIR)
    );
    assert_eq!(
        e.call(libc::SYS_openat, &[u64::MAX, p, 0]),
        neg(libc::EBADF)
    );
    assert_eq!(
        e.call(libc::SYS_openat, &[1_000_000_000, p, 0]),
        neg(libc::EBADF)
    );
    assert_eq!(e.call(libc::SYS_openat, &[1, p, 0]), neg(libc::ENOTDIR));
    // An absolute path ignores a bad dirfd.
    let p = e.path("/init");
    assert!(e.call(libc::SYS_openat, &[u64::MAX, p, 0]) > 0);
    // Bad path pointers and lengths.
    assert_eq!(e.call(libc::SYS_open, &[0, 0]), neg(libc::EFAULT));
    let end = e.ram.size() - 4;
    e.ram.write(end, b"abcd").unwrap();
    assert_eq!(e.call(libc::SYS_open, &[end, 0]), neg(libc::EFAULT));
    assert_eq!(
        e.call(libc::SYS_open, &[u64::MAX - 2, 0]),
        neg(libc::EFAULT)
    );
    let long = "a/".repeat(2500);
    assert_eq!(e.open(&long, 0), neg(libc::ENAMETOOLONG));
    let p = e.path(&long);
    assert_eq!(e.call(libc::SYS_stat, &[p, BUF]), neg(libc::ENAMETOOLONG));
    // readlink.
    let p = e.path("/etc/alias");
    assert_eq!(e.call(libc::SYS_readlink, &[p, BUF, 100]), 8);
    assert_eq!(e.get(BUF, 8), b"hostname");
    assert_eq!(e.call(libc::SYS_readlink, &[p, BUF, 3]), 3);
    assert_eq!(e.call(libc::SYS_readlink, &[p, BUF, 0]), neg(libc::EINVAL));
    let p = e.path("/proc/self/exe");
    assert_eq!(e.call(libc::SYS_readlink, &[p, BUF, 100]), 5);
    assert_eq!(e.get(BUF, 5), b"/init");
    let p = e.path("/proc/self/cwd");
    assert_eq!(
        e.call(libc::SYS_readlink, &[p, BUF, 100]),
        neg(libc::ENOENT)
    );
    let p = e.path("/etc/hostname");
    assert_eq!(
        e.call(libc::SYS_readlink, &[p, BUF, 100]),
        neg(libc::EINVAL)
    );
    let dirfd = e.open("/etc", 0);
    let p = e.path("alias");
    assert_eq!(e.call(libc::SYS_readlinkat, &[u(dirfd), p, BUF, 100]), 8);
}

#[test]
fn descriptor_limits_and_bad_fds() {
    let mut e = Env::new();
    for i in 3..1024 {
        assert_eq!(e.open("/init", 0), i);
    }
    assert_eq!(e.open("/init", 0), neg(libc::EMFILE));
    assert_eq!(e.call(libc::SYS_dup, &[0]), neg(libc::EMFILE));
    assert_eq!(e.call(libc::SYS_close, &[500]), 0);
    assert_eq!(e.call(libc::SYS_dup, &[0]), 500);
    for fd in [u64::MAX, 1_000_000_000, 1024] {
        assert_eq!(e.call(libc::SYS_read, &[fd, BUF, 1]), neg(libc::EBADF));
        assert_eq!(e.call(libc::SYS_write, &[fd, BUF, 1]), neg(libc::EBADF));
        assert_eq!(e.call(libc::SYS_close, &[fd]), neg(libc::EBADF));
        assert_eq!(e.call(libc::SYS_fstat, &[fd, BUF]), neg(libc::EBADF));
        assert_eq!(e.call(libc::SYS_fcntl, &[fd, 1]), neg(libc::EBADF));
        assert_eq!(e.call(libc::SYS_ioctl, &[fd, 0x5401, 0]), neg(libc::EBADF));
        assert_eq!(e.call(libc::SYS_dup2, &[0, fd]), neg(libc::EBADF));
    }
}

#[test]
fn fcntl_dup_ioctl() {
    let mut e = Env::new();
    let fd = u(e.open("/init", libc::O_CLOEXEC));
    assert_eq!(e.call(libc::SYS_fcntl, &[fd, 1]), 1);
    assert_eq!(e.call(libc::SYS_fcntl, &[fd, 2, 0]), 0);
    assert_eq!(e.call(libc::SYS_fcntl, &[fd, 1]), 0);
    let fl = e.call(libc::SYS_fcntl, &[fd, 3]);
    assert_eq!(fl & i64::from(libc::O_ACCMODE), 0);
    let nb = u64::from(libc::O_NONBLOCK.cast_unsigned());
    assert_eq!(e.call(libc::SYS_fcntl, &[fd, 4, nb]), 0);
    assert_ne!(
        e.call(libc::SYS_fcntl, &[fd, 3]) & i64::from(libc::O_NONBLOCK),
        0
    );
    let d = e.call(libc::SYS_fcntl, &[fd, 1030, 10]);
    assert_eq!(d, 10);
    assert_eq!(e.call(libc::SYS_fcntl, &[10, 1]), 1);
    assert_eq!(e.call(libc::SYS_fcntl, &[fd, 0, 2000]), neg(libc::EINVAL));
    assert_eq!(e.call(libc::SYS_fcntl, &[fd, 5]), neg(libc::EINVAL));
    // Duplicates share the offset.
    assert_eq!(e.call(libc::SYS_lseek, &[fd, 2, 0]), 2);
    assert_eq!(e.call(libc::SYS_lseek, &[10, 0, 1]), 2);
    assert_eq!(e.call(libc::SYS_dup2, &[fd, 20]), 20);
    assert_eq!(e.call(libc::SYS_dup2, &[fd, fd]), fd.cast_signed());
    assert_eq!(e.call(libc::SYS_dup3, &[fd, fd, 0]), neg(libc::EINVAL));
    let cloexec = u64::from(libc::O_CLOEXEC.cast_unsigned());
    assert_eq!(e.call(libc::SYS_dup3, &[fd, 21, cloexec]), 21);
    assert_eq!(e.call(libc::SYS_fcntl, &[21, 1]), 1);
    assert_eq!(e.call(libc::SYS_dup3, &[fd, 22, 1]), neg(libc::EINVAL));
    // ioctl.
    assert_eq!(
        e.call(libc::SYS_ioctl, &[1, 0x5401, BUF]),
        neg(libc::ENOTTY)
    );
    assert_eq!(
        e.call(libc::SYS_ioctl, &[1, 0x5413, BUF]),
        neg(libc::ENOTTY)
    );
    assert_eq!(
        e.call(libc::SYS_ioctl, &[fd, 0x1234, BUF]),
        neg(libc::ENOTTY)
    );
    assert_eq!(e.call(libc::SYS_ioctl, &[fd, 0x5451]), 0);
    assert_eq!(e.call(libc::SYS_fcntl, &[fd, 1]), 1);
    assert_eq!(e.call(libc::SYS_ioctl, &[fd, 0x5450]), 0);
    assert_eq!(e.call(libc::SYS_fcntl, &[fd, 1]), 0);
    e.ram.write(BUF, &0u32.to_le_bytes()).unwrap();
    assert_eq!(e.call(libc::SYS_ioctl, &[fd, 0x5421, BUF]), 0);
    assert_eq!(
        e.call(libc::SYS_fcntl, &[fd, 3]) & i64::from(libc::O_NONBLOCK),
        0
    );
    assert_eq!(
        e.call(libc::SYS_ioctl, &[fd, 0x5421, 0x10]),
        neg(libc::EFAULT)
    );
}

#[test]
fn working_directory() {
    let mut e = Env::new();
    assert_eq!(e.call(libc::SYS_getcwd, &[BUF, 100]), 2);
    assert_eq!(e.get(BUF, 2), b"/\0");
    let p = e.path("etc/../etc//");
    assert_eq!(e.call(libc::SYS_chdir, &[p]), 0);
    assert_eq!(e.call(libc::SYS_getcwd, &[BUF, 100]), 5);
    assert_eq!(e.get(BUF, 5), b"/etc\0");
    assert_eq!(e.call(libc::SYS_getcwd, &[BUF, 4]), neg(libc::ERANGE));
    assert_eq!(e.call(libc::SYS_getcwd, &[0x10, 100]), neg(libc::EFAULT));
    assert_eq!(e.open("hostname", 0), 3);
    let p = e.path("hostname");
    assert_eq!(e.call(libc::SYS_chdir, &[p]), neg(libc::ENOTDIR));
    let root = e.open("/", libc::O_DIRECTORY);
    assert_eq!(e.call(libc::SYS_fchdir, &[u(root)]), 0);
    assert_eq!(*e.kernel.cwd(), "/");
    assert_eq!(e.call(libc::SYS_fchdir, &[3]), neg(libc::ENOTDIR));
    assert_eq!(e.call(libc::SYS_fchdir, &[1]), neg(libc::ENOTDIR));
}

#[test]
fn poll_reports_bad_fds() {
    let mut e = Env::new();
    let fd = e.open("/init", 0);
    // pollfd: fd, events, revents.
    let mut b = Vec::new();
    for (fd, ev) in [
        (1i32, libc::POLLOUT),
        (77, libc::POLLIN),
        (-1, libc::POLLIN),
        (i32::try_from(fd).unwrap(), libc::POLLIN),
    ] {
        b.extend_from_slice(&fd.to_le_bytes());
        b.extend_from_slice(&ev.to_le_bytes());
        b.extend_from_slice(&[0xff, 0xff]);
    }
    e.ram.write(BUF, &b).unwrap();
    assert_eq!(e.call(libc::SYS_poll, &[BUF, 4, 1000]), 3);
    let rev = |e: &Env, i: u64| i16::from_le_bytes(e.get(BUF + 8 * i + 6, 2).try_into().unwrap());
    assert_eq!(rev(&e, 0), libc::POLLOUT);
    assert_eq!(rev(&e, 1), libc::POLLNVAL);
    assert_eq!(rev(&e, 2), 0);
    assert_eq!(rev(&e, 3), libc::POLLIN);
    assert_eq!(e.call(libc::SYS_poll, &[BUF, 1025, 0]), neg(libc::EINVAL));
    assert_eq!(e.call(libc::SYS_poll, &[0x10, 1, 0]), neg(libc::EFAULT));
    // Nothing ready: the timeout passes (it is honoured, not cut short), then 0.
    e.ram
        .write(BUF, &[0xff, 0xff, 0xff, 0xff, 1, 0, 0, 0])
        .unwrap();
    let t = std::time::Instant::now();
    assert_eq!(e.call(libc::SYS_poll, &[BUF, 1, 30]), 0);
    assert!(t.elapsed() >= std::time::Duration::from_millis(30));
    // An infinite wait on nothing returns when the enclave is stopping.
    e.kernel
        .stop
        .store(true, std::sync::atomic::Ordering::Release);
    assert_eq!(e.call(libc::SYS_poll, &[BUF, 1, u(-1)]), neg(libc::EINTR));
    e.kernel
        .stop
        .store(false, std::sync::atomic::Ordering::Release);
    e.ram.write_u64(IOV, 0).unwrap();
    e.ram.write_u64(IOV + 8, 5_000_000).unwrap();
    assert_eq!(e.call(libc::SYS_ppoll, &[BUF, 1, IOV, 0, 8]), 0);
    e.ram.write_u64(IOV + 8, 1_000_000_000).unwrap();
    assert_eq!(
        e.call(libc::SYS_ppoll, &[BUF, 1, IOV, 0, 8]),
        neg(libc::EINVAL)
    );
    e.ram.write(BUF, &b).unwrap();
    assert_eq!(e.call(libc::SYS_ppoll, &[BUF, 4, 0, 0, 8]), 3);
}

/// read/write/sendto/recvfrom on a connected vsock socket move data straight between guest
/// memory and the host socket: contents intact, a bad guest buffer is EFAULT and consumes
/// nothing, MSG_DONTWAIT without data is EAGAIN, the parent's close gives EOF and then EPIPE.
#[test]
fn vsock_io_straight_from_and_to_guest_memory() {
    use std::io::{Read, Write};
    let dir = std::env::temp_dir().join(format!("vsock-io-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let parent = std::os::unix::net::UnixListener::bind(dir.join("vsock.sock_7000")).unwrap();
    let hub = crate::kernel::vsock::VsockHub::new(16, vec![dir.clone()]);
    let mut e = Env::with_vsock(Some(Arc::new(hub)));
    let fd = e.call(libc::SYS_socket, &[40, 1, 0]);
    assert!(fd >= 0, "socket: {fd}");
    let fd = u(fd);
    let mut addr = [0u8; 16];
    addr[..2].copy_from_slice(&40u16.to_le_bytes());
    addr[4..8].copy_from_slice(&7000u32.to_le_bytes());
    addr[8..12].copy_from_slice(&3u32.to_le_bytes());
    e.ram.write(PATH, &addr).unwrap();
    assert_eq!(e.call(libc::SYS_connect, &[fd, PATH, 16]), 0);
    let (mut peer, _) = parent.accept().unwrap();
    peer.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();

    // Enclave → parent: write and sendto, 100 KiB of pattern then 5 bytes.
    let data: Vec<u8> = (0..100 * 1024u32)
        .map(|i| u8::try_from(i % 251).unwrap())
        .collect();
    e.ram.write(BUF, &data).unwrap();
    let len = data.len() as u64;
    assert_eq!(e.call(libc::SYS_write, &[fd, BUF, len]), len.cast_signed());
    assert_eq!(e.call(libc::SYS_sendto, &[fd, BUF, 5, 0, 0, 0]), 5);
    let mut got = vec![0u8; data.len() + 5];
    peer.read_exact(&mut got).unwrap();
    assert!(got[..data.len()] == data[..], "write contents");
    assert_eq!(&got[data.len()..], &data[..5]);
    // A bad source is EFAULT and sends nothing.
    assert_eq!(e.call(libc::SYS_write, &[fd, 0x10, 10]), neg(libc::EFAULT));
    assert_eq!(
        e.call(libc::SYS_sendto, &[fd, 0x10, 10, 0, 0, 0]),
        neg(libc::EFAULT)
    );

    // Parent → enclave: read and recvfrom into guest memory.
    let dontwait = u64::from(libc::MSG_DONTWAIT.cast_unsigned());
    assert_eq!(
        e.call(libc::SYS_recvfrom, &[fd, BUF, 64, dontwait, 0, 0]),
        neg(libc::EAGAIN)
    );
    peer.write_all(b"hello world").unwrap();
    // A bad destination is EFAULT and consumes nothing.
    assert_eq!(e.call(libc::SYS_read, &[fd, 0x10, 5]), neg(libc::EFAULT));
    assert_eq!(
        e.call(libc::SYS_recvfrom, &[fd, 0x10, 5, 0, 0, 0]),
        neg(libc::EFAULT)
    );
    assert_eq!(e.call(libc::SYS_read, &[fd, BUF, 5]), 5);
    assert_eq!(e.get(BUF, 5), b"hello");
    assert_eq!(e.call(libc::SYS_recvfrom, &[fd, BUF + 100, 64, 0, 0, 0]), 6);
    assert_eq!(e.get(BUF + 100, 6), b" world");

    // The parent goes: end of stream, then EPIPE.
    drop(peer);
    assert_eq!(e.call(libc::SYS_read, &[fd, BUF, 5]), 0);
    assert_eq!(e.call(libc::SYS_write, &[fd, BUF, 5]), neg(libc::EPIPE));
    assert_eq!(e.call(libc::SYS_close, &[fd]), 0);
    let _ = std::fs::remove_dir_all(&dir);
}
