//! Opening the kernel's own device nodes under `/dev` ([`Device`]): `/dev/null` and
//! `/dev/random`/`/dev/urandom` (the host's `getrandom(2)`, for libraries that fall back to
//! them) here, `/dev/nsm` in [`super::nsm`]. Devices are writable although the tree is read-only.

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;

use super::errno::{Errno, SysResult};
use super::file::{Descriptor, FileOps, Stat};
use super::fs::Device;
use super::Kernel;

/// `open` flags that describe the open and are not kept as status flags.
const OPEN_ONLY_FLAGS: i32 =
    libc::O_CREAT | libc::O_EXCL | libc::O_NOCTTY | libc::O_TRUNC | libc::O_CLOEXEC;
/// Flags `F_SETFL` may change.
const SETTABLE_FLAGS: i32 = libc::O_NONBLOCK | libc::O_APPEND;

/// Status flags (`F_GETFL`/`F_SETFL`) of an open device.
#[derive(Debug)]
pub struct DevFlags(AtomicI32);

impl DevFlags {
    /// The status flags kept from the `open` flags.
    pub fn new(open_flags: i32) -> Self {
        Self(AtomicI32::new(
            (open_flags & !OPEN_ONLY_FLAGS) | libc::O_LARGEFILE,
        ))
    }

    /// `F_GETFL`.
    pub fn get(&self) -> i32 {
        self.0.load(Ordering::Relaxed)
    }

    /// `F_SETFL`: only `O_NONBLOCK` and `O_APPEND` change.
    pub fn set(&self, flags: i32) {
        let old = self.get();
        self.0.store(
            (old & !SETTABLE_FLAGS) | (flags & SETTABLE_FLAGS),
            Ordering::Relaxed,
        );
    }
}

/// `stat` of a device node as the open file reports it.
pub fn device_stat(dev: Device) -> Stat {
    Stat {
        dev: super::fs::IMAGE_DEV,
        mode: libc::S_IFCHR | 0o666,
        nlink: 1,
        rdev: dev.rdev(),
        blksize: 4096,
        ..Stat::default()
    }
}

/// Opens device `dev` with the `open` flags `flags`; `ENXIO` for a device this enclave has
/// no driver for (`/dev/nsm` without attestation set up), as Linux for a node without one.
pub fn open(k: &Kernel, dev: Device, flags: i32) -> SysResult {
    let file: Arc<dyn FileOps> = match dev {
        Device::Null => Arc::new(NullFile {
            flags: DevFlags::new(flags),
        }),
        Device::Nsm => {
            let nsm = k.config.nsm.clone().ok_or(Errno::ENXIO)?;
            Arc::new(super::nsm::NsmFile::new(nsm, flags))
        }
        Device::Random | Device::Urandom => Arc::new(RandomFile {
            dev,
            flags: DevFlags::new(flags),
        }),
    };
    k.fds().insert(Descriptor {
        file,
        cloexec: flags & libc::O_CLOEXEC != 0,
    })
}

/// `/dev/null`: reads end-of-file, writes vanish.
#[derive(Debug)]
pub struct NullFile {
    flags: DevFlags,
}

impl FileOps for NullFile {
    fn read(&self, _buf: &mut [u8]) -> SysResult {
        Ok(0)
    }

    fn write(&self, data: &[u8]) -> SysResult {
        u64::try_from(data.len()).map_err(|_| Errno::EINVAL)
    }

    fn pread(&self, _buf: &mut [u8], _offset: u64) -> SysResult {
        Ok(0)
    }

    fn pwrite(&self, data: &[u8], _offset: u64) -> SysResult {
        self.write(data)
    }

    fn lseek(&self, _offset: i64, _whence: i32) -> SysResult {
        Ok(0)
    }

    fn stat(&self) -> Result<Stat, Errno> {
        Ok(device_stat(Device::Null))
    }

    fn path(&self) -> Option<&str> {
        Some("/dev/null")
    }

    fn status_flags(&self) -> i32 {
        self.flags.get()
    }

    fn set_status_flags(&self, flags: i32) {
        self.flags.set(flags);
    }
}

/// `/dev/random` and `/dev/urandom`: reads are the host's randomness, writes are accepted and
/// ignored (as Linux mixes them in without crediting entropy).
#[derive(Debug)]
pub struct RandomFile {
    dev: Device,
    flags: DevFlags,
}

impl FileOps for RandomFile {
    fn read(&self, buf: &mut [u8]) -> SysResult {
        super::sys_info::host_random(buf)?;
        u64::try_from(buf.len()).map_err(|_| Errno::EINVAL)
    }

    fn write(&self, data: &[u8]) -> SysResult {
        u64::try_from(data.len()).map_err(|_| Errno::EINVAL)
    }

    fn pread(&self, buf: &mut [u8], _offset: u64) -> SysResult {
        self.read(buf)
    }

    fn pwrite(&self, data: &[u8], _offset: u64) -> SysResult {
        self.write(data)
    }

    fn lseek(&self, _offset: i64, _whence: i32) -> SysResult {
        Ok(0)
    }

    fn stat(&self) -> Result<Stat, Errno> {
        Ok(device_stat(self.dev))
    }

    fn path(&self) -> Option<&str> {
        Some(match self.dev {
            Device::Random => "/dev/random",
            _ => "/dev/urandom",
        })
    }

    fn status_flags(&self) -> i32 {
        self.flags.get()
    }

    fn set_status_flags(&self, flags: i32) {
        self.flags.set(flags);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urandom_reads_fill_the_buffer_with_varying_bytes_and_writes_are_accepted() {
        let f = RandomFile {
            dev: Device::Urandom,
            flags: DevFlags::new(libc::O_RDONLY),
        };
        let (mut a, mut b) = ([0u8; 64], [0u8; 64]);
        assert_eq!(f.read(&mut a), Ok(64));
        assert_eq!(f.read(&mut b), Ok(64));
        assert_ne!(a, b, "two reads gave the same 64 bytes");
        assert!(a.iter().any(|&x| x != 0));
        assert_eq!(f.write(b"seed"), Ok(4));
        assert_eq!(f.stat().map(|s| s.rdev), Ok(libc::makedev(1, 9)));
        assert_eq!(f.path(), Some("/dev/urandom"));
    }
}
