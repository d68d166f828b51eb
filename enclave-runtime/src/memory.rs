//! Guest memory: the host mapping that backs guest-physical `[0, size)`, and the one door
//! through which the enclave kernel touches it on behalf of the program.
//!
//! [`GuestRam`] owns the mapping (hugepages or locked 4 KiB pages, never dumped nor inherited
//! by children) and zeroes it on drop. [`UserMemory`] is the checked view handed to system-call
//! handlers: every access is bounds-checked with checked arithmetic, addresses in the system
//! area (page tables, GDT, IDT, stubs) and writes into read-only program segments are refused
//! with `EFAULT`, exactly as Linux refuses kernel or unmapped addresses.

use vm_memory::mmap::MmapRegionBuilder;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap, GuestRegionMmap};

use crate::layout;

/// How guest memory is backed on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Backing {
    /// Reserved 2 MiB hugepages (`MAP_HUGETLB`).
    HugePages2M,
    /// Anonymous 4 KiB pages locked in RAM as they are touched (`mlock2(MLOCK_ONFAULT)`).
    Locked4K,
    /// Plain anonymous memory (tests and development without a pool).
    Anonymous,
}

/// Errors creating guest memory.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    /// The requested size is outside what the layout supports.
    #[error("guest memory of {size} bytes is not supported: use between {min} MiB and {max} MiB, a multiple of 2 MiB", min = layout::MIN_GUEST_MEMORY >> 20, max = layout::MAX_GUEST_MEMORY >> 20)]
    BadSize {
        /// Requested size in bytes.
        size: u64,
    },
    /// The host refused the mapping.
    #[error("cannot map {size} bytes of guest memory ({backing:?}); for hugepages check `enclave allocator show` and /proc/meminfo")]
    Map {
        /// Requested size in bytes.
        size: u64,
        /// Requested backing.
        backing: Backing,
        /// Cause.
        #[source]
        source: vm_memory::mmap::MmapRegionError,
    },
    /// Locking the memory failed.
    #[error("cannot lock guest memory in RAM; raise RLIMIT_MEMLOCK or run as root")]
    Lock(#[source] std::io::Error),
    /// vm-memory refused the region layout.
    #[error("guest memory region rejected")]
    Region,
}

/// Guest-physical memory `[0, size)`, identity-mapped into the guest.
pub struct GuestRam {
    mem: GuestMemoryMmap,
    size: u64,
    host: *mut u8,
}

// SAFETY: `host` is the address of a mapping owned by `mem` (kept alive as long as `self`);
// every access goes through vm-memory's volatile accessors or the raw helpers below, which are
// sound from any thread (guest memory is shared with vCPUs by design).
unsafe impl Send for GuestRam {}
// SAFETY: as for `Send`: all accesses are volatile copies with bounds checks.
unsafe impl Sync for GuestRam {}

impl GuestRam {
    /// Maps `size` bytes of guest memory with the given backing.
    pub fn new(size: u64, backing: Backing) -> Result<Self, MemoryError> {
        if !(layout::MIN_GUEST_MEMORY..=layout::MAX_GUEST_MEMORY).contains(&size)
            || !size.is_multiple_of(layout::LARGE_PAGE_SIZE)
        {
            return Err(MemoryError::BadSize { size });
        }
        let len = usize::try_from(size).map_err(|_| MemoryError::BadSize { size })?;
        let mut flags = libc::MAP_ANONYMOUS | libc::MAP_PRIVATE | libc::MAP_NORESERVE;
        if backing == Backing::HugePages2M {
            flags = libc::MAP_ANONYMOUS | libc::MAP_PRIVATE | libc::MAP_HUGETLB;
        }
        let region = MmapRegionBuilder::new(len)
            .with_mmap_prot(libc::PROT_READ | libc::PROT_WRITE)
            .with_mmap_flags(flags)
            .build()
            .map_err(|source| MemoryError::Map {
                size,
                backing,
                source,
            })?;
        let host = region.as_ptr();
        // SAFETY: `host..host+len` is the mapping just created and owned by `region`; madvise
        // only changes dump/fork behaviour of that range.
        unsafe {
            libc::madvise(host.cast(), len, libc::MADV_DONTDUMP);
            libc::madvise(host.cast(), len, libc::MADV_DONTFORK);
        }
        if backing == Backing::Locked4K {
            // SAFETY: locks the range of our own mapping; MLOCK_ONFAULT locks pages as they are
            // touched instead of populating them all now.
            let rc = unsafe { libc::mlock2(host.cast(), len, libc::MLOCK_ONFAULT) };
            if rc != 0 {
                return Err(MemoryError::Lock(std::io::Error::last_os_error()));
            }
        }
        let region = GuestRegionMmap::new(region, GuestAddress(0)).ok_or(MemoryError::Region)?;
        let mem = GuestMemoryMmap::from_regions(vec![region]).map_err(|_| MemoryError::Region)?;
        Ok(Self { mem, size, host })
    }

    /// Size of guest memory in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Host address of guest-physical 0 (for the KVM memory slot).
    pub fn host_address(&self) -> u64 {
        self.host as u64
    }

    /// Writes `data` at guest-physical `addr` (VMM-internal: boot structures, no policy checks).
    pub fn write(&self, addr: u64, data: &[u8]) -> Result<(), Fault> {
        self.range(addr, data.len())?;
        self.mem
            .write_slice(data, GuestAddress(addr))
            .map_err(|_| Fault)
    }

    /// Reads guest-physical `addr..addr+buf.len()` into `buf`.
    pub fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), Fault> {
        self.range(addr, buf.len())?;
        self.mem
            .read_slice(buf, GuestAddress(addr))
            .map_err(|_| Fault)
    }

    /// Writes a little-endian u64.
    pub fn write_u64(&self, addr: u64, value: u64) -> Result<(), Fault> {
        self.write(addr, &value.to_le_bytes())
    }

    /// Reads a little-endian u64.
    pub fn read_u64(&self, addr: u64) -> Result<u64, Fault> {
        let mut b = [0u8; 8];
        self.read(addr, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Reads the u64 at `addr` (8-aligned) atomically with acquire ordering: a value the guest
    /// publishes with a store after its data (the fast-I/O ring heads).
    pub fn load_u64_acquire(&self, addr: u64) -> Result<u64, Fault> {
        if !addr.is_multiple_of(8) {
            return Err(Fault);
        }
        self.range(addr, 8)?;
        self.mem
            .load::<u64>(GuestAddress(addr), std::sync::atomic::Ordering::Acquire)
            .map_err(|_| Fault)
    }

    /// Stores `value` at `addr` (8-aligned) atomically with the given ordering (the fast-I/O
    /// configuration the guest's stub reads).
    pub fn store_u64(
        &self,
        addr: u64,
        value: u64,
        order: std::sync::atomic::Ordering,
    ) -> Result<(), Fault> {
        if !addr.is_multiple_of(8) {
            return Err(Fault);
        }
        self.range(addr, 8)?;
        self.mem
            .store(value, GuestAddress(addr), order)
            .map_err(|_| Fault)
    }

    /// Runs `f` with the host address of guest-physical `addr..addr+len` (VMM-owned areas such
    /// as the transmit rings), for host calls that read guest memory themselves (`send`).
    pub fn with_host_range<R>(
        &self,
        addr: u64,
        len: u64,
        f: impl FnOnce(*const u8, usize) -> R,
    ) -> Result<R, Fault> {
        let (ptr, n) = self.host_range(addr, len)?;
        Ok(f(ptr.cast_const(), n))
    }

    /// Fills `addr..addr+len` with zeros.
    pub fn fill_zero(&self, addr: u64, len: u64) -> Result<(), Fault> {
        let (start, n) = self.host_range(addr, len)?;
        // SAFETY: `host_range` proved `start..start+n` lies inside our mapping.
        unsafe { std::ptr::write_bytes(start, 0, n) };
        Ok(())
    }

    /// Returns `addr..addr+len` to the host (`MADV_DONTNEED`); it reads back as zeros.
    pub fn discard(&self, addr: u64, len: u64) -> Result<(), Fault> {
        let (start, n) = self.host_range(addr, len)?;
        if n == 0 {
            return Ok(());
        }
        // SAFETY: the range lies inside our private anonymous mapping; MADV_DONTNEED drops its
        // pages, which then read as zeros (that is the wanted effect, no Rust reference aliases it).
        let rc = unsafe { libc::madvise(start.cast(), n, libc::MADV_DONTNEED) };
        if rc != 0 {
            // Hugepage ranges that are not 2 MiB aligned cannot be dropped: zero them instead.
            return self.fill_zero(addr, len);
        }
        Ok(())
    }

    /// Zeroes every page of guest memory the guest touched (teardown), using `mincore` so that
    /// untouched pages are not faulted in just to be cleared.
    pub fn scrub(&self) {
        let page = usize::try_from(layout::PAGE_SIZE).unwrap_or(4096);
        let Ok(len) = usize::try_from(self.size) else {
            return;
        };
        let pages = len / page;
        let mut resident = vec![0u8; pages];
        // SAFETY: `host..host+len` is our mapping; `resident` has one byte per page as mincore
        // requires.
        let rc = unsafe { libc::mincore(self.host.cast(), len, resident.as_mut_ptr()) };
        for (i, r) in resident.iter().enumerate() {
            if rc != 0 || r & 1 == 1 {
                // SAFETY: page `i` lies inside the mapping (i < len / page).
                unsafe { std::ptr::write_bytes(self.host.add(i * page), 0, page) };
            }
        }
    }

    fn range(&self, addr: u64, len: usize) -> Result<(), Fault> {
        let len = u64::try_from(len).map_err(|_| Fault)?;
        match addr.checked_add(len) {
            Some(end) if end <= self.size => Ok(()),
            _ => Err(Fault),
        }
    }

    fn host_range(&self, addr: u64, len: u64) -> Result<(*mut u8, usize), Fault> {
        let n = usize::try_from(len).map_err(|_| Fault)?;
        self.range(addr, n)?;
        let off = usize::try_from(addr).map_err(|_| Fault)?;
        // SAFETY: `range` proved `addr + len <= size`, so the offset stays inside the mapping.
        Ok((unsafe { self.host.add(off) }, n))
    }

    /// The vm-memory view (for code that wants vm-memory's own API).
    pub fn guest_memory(&self) -> &GuestMemoryMmap {
        &self.mem
    }

    /// Number of bytes actually backed by the host (resident pages), for footprint checks.
    pub fn resident_bytes(&self) -> u64 {
        let page = layout::PAGE_SIZE;
        let Ok(len) = usize::try_from(self.size) else {
            return 0;
        };
        let mut resident = vec![0u8; len / 4096];
        // SAFETY: as in `scrub`.
        let rc = unsafe { libc::mincore(self.host.cast(), len, resident.as_mut_ptr()) };
        if rc != 0 {
            return 0;
        }
        resident.iter().filter(|r| *r & 1 == 1).count() as u64 * page
    }
}

impl Drop for GuestRam {
    fn drop(&mut self) {
        self.scrub();
    }
}

/// Reads the whole file at `path` into a buffer whose pages are populated in one call first
/// (`MADV_POPULATE_WRITE`) instead of faulting in one by one as the read fills them: for an
/// image of a few MiB that is most of the read's time on hosts where a page fault is dear.
/// Where the kernel lacks the advice (before 5.14) the pages fault in as usual.
pub fn read_populated(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let len = usize::try_from(file.metadata()?.len()).unwrap_or(usize::MAX);
    let mut buf: Vec<u8> = Vec::new();
    buf.try_reserve_exact(len.saturating_add(1))
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::OutOfMemory))?;
    let page = usize::try_from(layout::PAGE_SIZE).unwrap_or(4096);
    let start = buf.as_mut_ptr();
    let first = start.align_offset(page);
    let span = buf.capacity().saturating_sub(first) / page * page;
    if span > 0 {
        // SAFETY: `start + first .. start + first + span` lies inside the allocation `buf` owns
        // (`first + span <= capacity`), is page-aligned, and MADV_POPULATE_WRITE only makes
        // those pages present; it neither changes nor exposes their contents.
        unsafe {
            libc::madvise(start.add(first).cast(), span, libc::MADV_POPULATE_WRITE);
        }
    }
    file.read_to_end(&mut buf)?;
    Ok(buf)
}

/// A guest address or length that does not name accessible memory (the program gets `EFAULT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("bad guest address")]
pub struct Fault;

/// The checked view of guest memory that system-call handlers use: user-accessible addresses
/// only, read-only program segments protected from writes.
pub struct UserMemory<'a> {
    ram: &'a GuestRam,
    read_only: &'a [(u64, u64)],
    map: Option<crate::kernel::mm::MapView>,
}

impl<'a> UserMemory<'a> {
    /// A view of `ram` in which `read_only` ranges (start, end) refuse writes.
    pub fn new(ram: &'a GuestRam, read_only: &'a [(u64, u64)]) -> Self {
        Self {
            ram,
            read_only,
            map: None,
        }
    }

    /// Like [`UserMemory::new`], and refusing addresses the program has not mapped.
    pub fn with_map(
        ram: &'a GuestRam,
        read_only: &'a [(u64, u64)],
        map: crate::kernel::mm::MapView,
    ) -> Self {
        Self {
            ram,
            read_only,
            map: Some(map),
        }
    }

    /// The underlying RAM.
    pub fn ram(&self) -> &GuestRam {
        self.ram
    }

    /// Checks that `addr..addr+len` is user memory; returns the end address.
    pub fn check(&self, addr: u64, len: u64) -> Result<u64, Fault> {
        let end = addr.checked_add(len).ok_or(Fault)?;
        if len == 0 {
            return Ok(end);
        }
        if addr < layout::IMAGE_MIN || end > self.ram.size() {
            return Err(Fault);
        }
        if self.map.as_ref().is_some_and(|m| !m.accessible(addr, end)) {
            return Err(Fault);
        }
        Ok(end)
    }

    /// Checks that `addr..addr+len` may be written by the kernel on the program's behalf.
    pub fn check_writable(&self, addr: u64, len: u64) -> Result<(), Fault> {
        let end = self.check(addr, len)?;
        if len != 0 && self.read_only.iter().any(|&(s, e)| addr < e && s < end) {
            return Err(Fault);
        }
        Ok(())
    }

    /// Copies `buf.len()` bytes from the program at `addr`.
    pub fn copy_in(&self, addr: u64, buf: &mut [u8]) -> Result<(), Fault> {
        self.check(addr, u64::try_from(buf.len()).map_err(|_| Fault)?)?;
        if buf.is_empty() {
            return Ok(());
        }
        self.ram.read(addr, buf)
    }

    /// Runs `f` with the host address of the program's `addr..addr+len` (checked as for
    /// [`UserMemory::copy_in`]), for host calls that read guest memory themselves (`send`), so
    /// data moves without a copy in the VMM. The address stays valid during `f`; the program's
    /// other threads may change the bytes meanwhile, as they may during a Linux `write`.
    pub fn with_host_range<R>(
        &self,
        addr: u64,
        len: u64,
        f: impl FnOnce(*const u8, usize) -> R,
    ) -> Result<R, Fault> {
        self.check(addr, len)?;
        if len == 0 {
            return Ok(f(std::ptr::null(), 0));
        }
        self.ram.with_host_range(addr, len, f)
    }

    /// Like [`UserMemory::with_host_range`] for host calls that write guest memory (`recv`):
    /// the range is checked as for [`UserMemory::copy_out`].
    pub fn with_host_range_mut<R>(
        &self,
        addr: u64,
        len: u64,
        f: impl FnOnce(*mut u8, usize) -> R,
    ) -> Result<R, Fault> {
        self.check_writable(addr, len)?;
        let n = usize::try_from(len).map_err(|_| Fault)?;
        let off = usize::try_from(addr).map_err(|_| Fault)?;
        if n == 0 {
            return Ok(f(std::ptr::null_mut(), 0));
        }
        // `check_writable` bounded `addr + len` by the size of the mapping `host` starts.
        Ok(f(self.ram.host.wrapping_add(off), n))
    }

    /// Copies `len` bytes from the program into a new vector (the caller bounds `len`).
    pub fn copy_in_vec(&self, addr: u64, len: usize) -> Result<Vec<u8>, Fault> {
        let mut v = vec![0u8; len];
        self.copy_in(addr, &mut v)?;
        Ok(v)
    }

    /// Copies `data` into the program at `addr`.
    pub fn copy_out(&self, addr: u64, data: &[u8]) -> Result<(), Fault> {
        self.check_writable(addr, u64::try_from(data.len()).map_err(|_| Fault)?)?;
        if data.is_empty() {
            return Ok(());
        }
        self.ram.write(addr, data)
    }

    /// Reads a plain value (little-endian POD).
    pub fn read_u64(&self, addr: u64) -> Result<u64, Fault> {
        let mut b = [0u8; 8];
        self.copy_in(addr, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Reads a little-endian u32.
    pub fn read_u32(&self, addr: u64) -> Result<u32, Fault> {
        let mut b = [0u8; 4];
        self.copy_in(addr, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    /// Writes a little-endian u64.
    pub fn write_u64(&self, addr: u64, value: u64) -> Result<(), Fault> {
        self.copy_out(addr, &value.to_le_bytes())
    }

    /// Writes a little-endian u32.
    pub fn write_u32(&self, addr: u64, value: u32) -> Result<(), Fault> {
        self.copy_out(addr, &value.to_le_bytes())
    }

    /// Reads a NUL-terminated string of at most `max` bytes (NUL excluded).
    pub fn read_cstr(&self, addr: u64, max: usize) -> Result<Vec<u8>, CStrError> {
        let mut out = Vec::new();
        let mut chunk = [0u8; 256];
        let mut at = addr;
        loop {
            // Read up to the next 256-byte boundary so a string ending just before an
            // inaccessible page is still readable.
            let room = 256 - (at % 256);
            let n = usize::try_from(room).map_err(|_| CStrError::Fault)?;
            self.copy_in(at, &mut chunk[..n])
                .map_err(|_| CStrError::Fault)?;
            if let Some(pos) = chunk[..n].iter().position(|&b| b == 0) {
                out.extend_from_slice(&chunk[..pos]);
                if out.len() > max {
                    return Err(CStrError::TooLong);
                }
                return Ok(out);
            }
            out.extend_from_slice(&chunk[..n]);
            if out.len() > max {
                return Err(CStrError::TooLong);
            }
            at = at.checked_add(room).ok_or(CStrError::Fault)?;
        }
    }
}

/// Why a guest string could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CStrError {
    /// The string runs into inaccessible memory (`EFAULT`).
    #[error("string at a bad guest address")]
    Fault,
    /// No NUL within the limit (`ENAMETOOLONG`/`E2BIG`).
    #[error("string too long")]
    TooLong,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ram() -> GuestRam {
        GuestRam::new(layout::MIN_GUEST_MEMORY, Backing::Anonymous).unwrap()
    }

    #[test]
    fn rejects_bad_sizes() {
        assert!(GuestRam::new(0, Backing::Anonymous).is_err());
        assert!(GuestRam::new(layout::MIN_GUEST_MEMORY + 4096, Backing::Anonymous).is_err());
        assert!(GuestRam::new(u64::MAX, Backing::Anonymous).is_err());
    }

    #[test]
    fn user_view_refuses_system_area_and_overflow() {
        let r = ram();
        let ro = [(0x40_0000, 0x40_1000)];
        let u = UserMemory::new(&r, &ro);
        let mut b = [0u8; 8];
        assert_eq!(u.copy_in(0x1000, &mut b), Err(Fault));
        assert_eq!(u.copy_in(u64::MAX - 3, &mut b), Err(Fault));
        assert_eq!(u.copy_in(r.size() - 4, &mut b), Err(Fault));
        assert!(u.copy_in(r.size() - 8, &mut b).is_ok());
        assert_eq!(u.copy_out(0x40_0ff8, &[1; 16]), Err(Fault));
        assert!(u.copy_out(0x40_1000, &[1; 16]).is_ok());
        assert_eq!(u.check(0x20_0000, u64::MAX), Err(Fault));
    }

    #[test]
    fn cstr_stops_at_limit_and_end() {
        let r = ram();
        let u = UserMemory::new(&r, &[]);
        r.write(0x30_0000, b"hello\0").unwrap();
        assert_eq!(u.read_cstr(0x30_0000, 16).unwrap(), b"hello");
        assert_eq!(u.read_cstr(0x30_0000, 3), Err(CStrError::TooLong));
        let end = r.size() - 4;
        r.write(end, b"abcd").unwrap();
        assert_eq!(u.read_cstr(end, 4096), Err(CStrError::Fault));
    }

    #[test]
    fn read_populated_reads_every_byte() {
        let path =
            std::env::temp_dir().join(format!("enclave-read-populated-{}", std::process::id()));
        for len in [0usize, 1, 4095, 4096, 3 * 4096 + 17, 1 << 20] {
            let data: Vec<u8> = (0..len).map(|i| u8::try_from(i % 251).unwrap()).collect();
            std::fs::write(&path, &data).unwrap();
            assert_eq!(read_populated(&path).unwrap(), data, "{len} bytes");
        }
        let _ = std::fs::remove_file(&path);
        assert!(read_populated(&path).is_err(), "a missing file is an error");
    }

    #[test]
    fn discard_and_scrub_zero_memory() {
        let r = ram();
        r.write(0x30_0000, &[7; 4096]).unwrap();
        r.discard(0x30_0000, 4096).unwrap();
        let mut b = [1u8; 16];
        r.read(0x30_0000, &mut b).unwrap();
        assert_eq!(b, [0; 16]);
        r.write(0x30_1000, &[9; 64]).unwrap();
        assert!(r.resident_bytes() >= 4096);
        r.scrub();
        r.read(0x30_1000, &mut b).unwrap();
        assert_eq!(b, [0; 16]);
    }
}
