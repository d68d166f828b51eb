//! The program's address space inside the premapped guest memory.
//!
//! All guest memory is mapped before the program starts (page tables never change while it
//! runs), so `brk` and `mmap` only hand out ranges of the area between the end of the program
//! image and the bottom of the stack: `brk` grows up from the image end, `mmap` allocates top
//! down from the stack. Freed ranges are returned to the host (`MADV_DONTNEED`) so they read as
//! zeros when handed out again, as fresh anonymous memory must. Protection changes are recorded
//! as accepted but cannot be enforced by the page tables.
//!
//! A dynamically linked program also has an exec area (`layout::exec_area`), premapped
//! read-write-execute below the heap: file-backed and `PROT_EXEC` mappings are placed there, so
//! the shared libraries `ld.so` maps can run; elsewhere memory stays non-executable and a
//! `MAP_FIXED` `PROT_EXEC` mapping outside the exec area fails with `EACCES`.

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};

use super::errno::Errno;
use crate::layout::PAGE_SIZE;
use crate::memory::GuestRam;

/// Most separate mappings a program may hold (Linux's default `vm.max_map_count`).
pub const MAX_MAPPINGS: usize = 65_530;

/// End of the user half of the address space on x86_64 Linux (`TASK_SIZE`).
pub const TASK_SIZE: u64 = 0x7fff_ffff_f000;

/// Rounds up to the page size; `None` on overflow.
pub fn page_up(v: u64) -> Option<u64> {
    v.checked_add(PAGE_SIZE - 1).map(|x| x & !(PAGE_SIZE - 1))
}

/// Which addresses the program may access: the image, the heap up to the break, the mmap
/// mappings and the stack. Shared between the address space (which changes it) and the
/// [`crate::memory::UserMemory`] view (which checks every kernel access against it), so a
/// system call on a hole the program unmapped fails with `EFAULT` as on Linux.
#[derive(Debug, Clone, Default)]
pub struct MapView(Arc<RwLock<Accessible>>);

#[derive(Debug, Default)]
struct Accessible {
    /// Start of the heap/mmap area.
    area_start: u64,
    /// Top of the heap (page-aligned break).
    brk_top: u64,
    /// End of the area; above it the stack guard (inaccessible), then the stack.
    area_end: u64,
    /// Start of the stack: everything from here up to guest memory end is stack.
    stack_start: u64,
    /// The exec area (`start..end`, empty for static programs), below `area_start`.
    exec: (u64, u64),
    /// Mappings: start → end.
    maps: BTreeMap<u64, u64>,
}

impl MapView {
    /// True when every byte of `start..end` is accessible (below the area = program image,
    /// above it = stack; the caller checks the guest memory bounds).
    pub fn accessible(&self, start: u64, end: u64) -> bool {
        let a = self.0.read().unwrap_or_else(PoisonError::into_inner);
        let mut at = start;
        while at < end {
            if at >= a.area_end {
                // The guard between the area and the stack is never accessible.
                return at >= a.stack_start.max(a.area_end);
            }
            if at < a.area_start {
                if !(a.exec.0..a.exec.1).contains(&at) {
                    // The program image (and interpreter): always accessible.
                    at = if at < a.exec.0 {
                        a.exec.0
                    } else {
                        a.area_start
                    };
                    continue;
                }
                match a.maps.range(..=at).next_back() {
                    Some((_, &e)) if e > at => at = e,
                    _ => return false,
                }
                continue;
            }
            if at < a.brk_top {
                at = a.brk_top;
                continue;
            }
            match a.maps.range(..=at).next_back() {
                Some((_, &e)) if e > at => at = e,
                _ => return false,
            }
        }
        true
    }
}

/// What a new mapping holds, which decides where it may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// Anonymous memory without `PROT_EXEC`: the mmap area.
    Anon,
    /// A private copy of a file: the exec area when there is room (shared libraries), else the
    /// mmap area.
    File,
    /// `PROT_EXEC`: the exec area only (when the program has one).
    Exec,
}

/// The program's heap and mmap area.
#[derive(Debug)]
pub struct AddressSpace {
    /// Lowest address of the area (the initial program break).
    area_start: u64,
    /// End of the area (the stack bottom).
    area_end: u64,
    /// Current program break.
    brk: u64,
    /// Mappings and break, shared with the memory view.
    view: MapView,
}

impl AddressSpace {
    /// An empty address space whose heap starts at `brk_start` (the image end) and whose mmap
    /// area ends at `area_end` (the stack bottom).
    pub fn new(brk_start: u64, area_end: u64) -> Result<Self, Errno> {
        let start = page_up(brk_start).ok_or(Errno::ENOMEM)?;
        if start >= area_end {
            return Err(Errno::ENOMEM);
        }
        let view = MapView(Arc::new(RwLock::new(Accessible {
            area_start: start,
            brk_top: start,
            area_end,
            stack_start: area_end,
            exec: (0, 0),
            maps: BTreeMap::new(),
        })));
        Ok(Self {
            area_start: start,
            area_end,
            brk: start,
            view,
        })
    }

    /// Declares the stack to start at `stack_start` (≥ the area's end): the gap between them is
    /// the stack guard, which system calls must not touch either.
    pub fn with_stack_start(self, stack_start: u64) -> Self {
        self.write().stack_start = stack_start.max(self.area_end);
        self
    }

    /// Gives the program an exec area `start..end` (page-aligned, ending at or below the area's
    /// start): see the module comment.
    pub fn with_exec_area(self, start: u64, end: u64) -> Self {
        if start < end && end <= self.area_start {
            self.write().exec = (start, end);
        }
        self
    }

    fn exec_area(&self) -> (u64, u64) {
        self.read().exec
    }

    /// True when `start..end` lies inside the exec area.
    fn in_exec(&self, start: u64, end: u64) -> bool {
        let (es, ee) = self.exec_area();
        es < ee && start >= es && end <= ee
    }

    /// The accessibility view for [`crate::memory::UserMemory`].
    pub fn view(&self) -> MapView {
        self.view.clone()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Accessible> {
        self.view.0.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Accessible> {
        self.view.0.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Current program break.
    pub fn brk(&self) -> u64 {
        self.brk
    }

    /// Lowest mapping start (brk may not grow past it).
    fn lowest_map(&self) -> u64 {
        self.read()
            .maps
            .range(self.area_start..)
            .next()
            .map(|(s, _)| *s)
            .unwrap_or(self.area_end)
    }

    /// `brk(addr)`: moves the break; returns the (possibly unchanged) break as Linux does.
    pub fn set_brk(&mut self, ram: &GuestRam, addr: u64) -> u64 {
        if addr < self.area_start {
            return self.brk;
        }
        let Some(new_top) = page_up(addr) else {
            return self.brk;
        };
        let old_top = page_up(self.brk).unwrap_or(self.brk);
        if new_top > self.lowest_map() {
            return self.brk;
        }
        if new_top < old_top {
            let _ = ram.discard(new_top, old_top - new_top);
        }
        self.brk = addr;
        self.write().brk_top = new_top;
        self.brk
    }

    /// Finds a free range of `len` bytes in the mmap area, top down.
    fn find_free(&self, len: u64) -> Option<u64> {
        self.find_free_in(page_up(self.brk)?, self.area_end, len)
    }

    /// Finds a free range of `len` bytes in `floor..ceil`, top down.
    fn find_free_in(&self, floor: u64, ceil: u64, len: u64) -> Option<u64> {
        let mut top = ceil;
        for (&s, &e) in self.read().maps.range(floor..ceil).rev() {
            if top.checked_sub(e).is_some_and(|gap| gap >= len) {
                return Some(top - len);
            }
            top = s.min(top);
        }
        let start = top.checked_sub(len)?;
        (start >= floor).then_some(start)
    }

    /// True when `start..end` overlaps any mapping.
    fn overlaps(&self, start: u64, end: u64) -> bool {
        self.read()
            .maps
            .range(..end)
            .next_back()
            .is_some_and(|(_, &e)| e > start)
    }

    /// True when `start..end` is entirely covered by mappings.
    pub fn is_mapped(&self, start: u64, end: u64) -> bool {
        let maps = &self.read().maps;
        let mut at = start;
        while at < end {
            match maps.range(..=at).next_back() {
                Some((_, &e)) if e > at => at = e,
                _ => return false,
            }
        }
        true
    }

    /// Removes `start..end` from the mapping set (splitting mappings) and discards the memory.
    fn remove_range(&mut self, ram: &GuestRam, start: u64, end: u64) {
        let mut a = self.write();
        let hit: Vec<(u64, u64)> = a
            .maps
            .range(..end)
            .filter(|(_, &e)| e > start)
            .map(|(&s, &e)| (s, e))
            .collect();
        for (s, e) in hit {
            a.maps.remove(&s);
            if s < start {
                a.maps.insert(s, start);
            }
            if e > end {
                a.maps.insert(end, e);
            }
            let (cs, ce) = (s.max(start), e.min(end));
            let _ = ram.discard(cs, ce - cs);
        }
    }

    fn check_count(&self) -> Result<(), Errno> {
        if self.read().maps.len() >= MAX_MAPPINGS {
            Err(Errno::ENOMEM)
        } else {
            Ok(())
        }
    }

    /// Maps `len` bytes of anonymous memory: [`AddressSpace::map_for`] with [`Want::Anon`].
    pub fn map(
        &mut self,
        ram: &GuestRam,
        hint: u64,
        len: u64,
        fixed: bool,
        noreplace: bool,
    ) -> Result<u64, Errno> {
        self.map_for(ram, hint, len, fixed, noreplace, Want::Anon)
    }

    /// Maps `len` bytes for `want`. `fixed` gives the exact address (`MAP_FIXED`, replacing what
    /// is there unless `noreplace`); otherwise `hint` is tried first. Returns the address.
    pub fn map_for(
        &mut self,
        ram: &GuestRam,
        hint: u64,
        len: u64,
        fixed: bool,
        noreplace: bool,
        want: Want,
    ) -> Result<u64, Errno> {
        if len == 0 {
            return Err(Errno::EINVAL);
        }
        let len = page_up(len).ok_or(Errno::ENOMEM)?;
        self.check_count()?;
        let (es, ee) = self.exec_area();
        let has_exec = es < ee;
        if fixed {
            if !hint.is_multiple_of(PAGE_SIZE) {
                return Err(Errno::EINVAL);
            }
            let end = hint.checked_add(len).ok_or(Errno::ENOMEM)?;
            let brk_top = page_up(self.brk).ok_or(Errno::ENOMEM)?;
            let in_exec = self.in_exec(hint, end);
            if !in_exec && (hint < brk_top || end > self.area_end) {
                return Err(Errno::ENOMEM);
            }
            if has_exec && want == Want::Exec && !in_exec {
                // Only the exec area is executable; this mapping could never run.
                return Err(Errno::EACCES);
            }
            if self.overlaps(hint, end) {
                if noreplace {
                    return Err(Errno::EEXIST);
                }
                self.remove_range(ram, hint, end);
            }
            self.write().maps.insert(hint, end);
            return Ok(hint);
        }
        if has_exec && want != Want::Anon {
            let hinted = (hint.is_multiple_of(PAGE_SIZE))
                .then(|| hint.checked_add(len))
                .flatten()
                .filter(|&end| self.in_exec(hint, end) && !self.overlaps(hint, end));
            match hinted
                .map(|_| hint)
                .or_else(|| self.find_free_in(es, ee, len))
            {
                Some(start) => {
                    self.write().maps.insert(start, start + len);
                    return Ok(start);
                }
                None if want == Want::Exec => return Err(Errno::ENOMEM),
                None => {}
            }
        }
        let hinted = (hint != 0 && hint.is_multiple_of(PAGE_SIZE))
            .then(|| hint.checked_add(len))
            .flatten()
            .filter(|&end| {
                hint >= page_up(self.brk).unwrap_or(u64::MAX)
                    && end <= self.area_end
                    && !self.overlaps(hint, end)
            });
        let start = match hinted {
            Some(_) => hint,
            None => self.find_free(len).ok_or(Errno::ENOMEM)?,
        };
        self.write().maps.insert(start, start + len);
        Ok(start)
    }

    /// Unmaps `addr..addr+len` (which need not be mapped).
    pub fn unmap(&mut self, ram: &GuestRam, addr: u64, len: u64) -> Result<(), Errno> {
        if !addr.is_multiple_of(PAGE_SIZE) || len == 0 {
            return Err(Errno::EINVAL);
        }
        let end = page_up(len)
            .and_then(|l| addr.checked_add(l))
            .ok_or(Errno::EINVAL)?;
        if end > TASK_SIZE {
            return Err(Errno::EINVAL);
        }
        if self.in_exec(addr, end) {
            self.remove_range(ram, addr, end);
            return Ok(());
        }
        if addr < self.area_start || end > self.area_end {
            // Outside the mmap area: Linux would unmap it; we keep the image and stack mapped.
            return Ok(());
        }
        self.remove_range(ram, addr, end);
        Ok(())
    }

    /// `mprotect`: the range must be mapped (or be the image, heap or stack); the change is
    /// accepted but not enforced.
    pub fn protect(&self, addr: u64, len: u64, mem_size: u64) -> Result<(), Errno> {
        if !addr.is_multiple_of(PAGE_SIZE) {
            return Err(Errno::EINVAL);
        }
        let end = page_up(len)
            .and_then(|l| addr.checked_add(l))
            .ok_or(Errno::ENOMEM)?;
        if end > mem_size || addr < crate::layout::IMAGE_MIN {
            return Err(Errno::ENOMEM);
        }
        let in_area = addr < self.area_end && end > self.area_start;
        let brk_top = page_up(self.brk).unwrap_or(self.brk);
        if in_area && !(end <= brk_top || self.is_mapped(addr.max(brk_top), end)) {
            return Err(Errno::ENOMEM);
        }
        if self.in_exec(addr, end) && !self.is_mapped(addr, end) {
            return Err(Errno::ENOMEM);
        }
        Ok(())
    }

    /// `mremap`: resizes the mapping at `old`, moving it when `may_move`.
    pub fn remap(
        &mut self,
        ram: &GuestRam,
        old: u64,
        old_len: u64,
        new_len: u64,
        may_move: bool,
    ) -> Result<u64, Errno> {
        if !old.is_multiple_of(PAGE_SIZE) || new_len == 0 {
            return Err(Errno::EINVAL);
        }
        let old_len = page_up(old_len).ok_or(Errno::EINVAL)?;
        let new_len = page_up(new_len).ok_or(Errno::ENOMEM)?;
        let old_end = old.checked_add(old_len).ok_or(Errno::EFAULT)?;
        if !self.is_mapped(old, old_end) {
            return Err(Errno::EFAULT);
        }
        if new_len <= old_len {
            self.remove_range(ram, old + new_len, old_end);
            return Ok(old);
        }
        let grow_end = old.checked_add(new_len).ok_or(Errno::ENOMEM)?;
        let exec = self.in_exec(old, old_end);
        let limit = if exec {
            self.exec_area().1
        } else {
            self.area_end
        };
        if grow_end <= limit && !self.overlaps(old_end, grow_end) {
            // Grow in place: extend the mapping that ends at old_end.
            let start = self
                .read()
                .maps
                .range(..old_end)
                .next_back()
                .map(|(&s, _)| s)
                .ok_or(Errno::EFAULT)?;
            self.write().maps.insert(start, grow_end);
            return Ok(old);
        }
        if !may_move {
            return Err(Errno::ENOMEM);
        }
        let want = if exec { Want::File } else { Want::Anon };
        let new = self.map_for(ram, 0, new_len, false, false, want)?;
        let mut buf = vec![0u8; 64 << 10];
        let mut off = 0;
        while off < old_len {
            let n = (old_len - off).min(buf.len() as u64);
            let chunk = &mut buf[..usize::try_from(n).map_err(|_| Errno::ENOMEM)?];
            ram.read(old + off, chunk).map_err(|_| Errno::EFAULT)?;
            ram.write(new + off, chunk).map_err(|_| Errno::EFAULT)?;
            off += n;
        }
        self.remove_range(ram, old, old_end);
        Ok(new)
    }

    /// Number of mappings (for tests and footprint reports).
    pub fn mapping_count(&self) -> usize {
        self.read().maps.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::Backing;

    fn setup() -> (GuestRam, AddressSpace) {
        let ram = GuestRam::new(32 << 20, Backing::Anonymous).unwrap();
        let asp = AddressSpace::new(0x60_0000, 24 << 20).unwrap();
        (ram, asp)
    }

    #[test]
    fn the_stack_guard_is_inaccessible_to_system_calls() {
        let a = AddressSpace::new(0x40_0000, 0x100_0000)
            .unwrap()
            .with_stack_start(0x100_1000);
        let view = a.view();
        assert!(!view.accessible(0x100_0000, 0x100_0008), "guard");
        assert!(
            !view.accessible(0x100_0ff8, 0x100_1008),
            "across the guard into the stack"
        );
        assert!(view.accessible(0x100_1000, 0x100_2000), "stack");
        assert!(view.accessible(0x1000, 0x2000), "below the area: the image");
    }

    #[test]
    fn brk_grows_and_shrinks_within_limits() {
        let (ram, mut a) = setup();
        let b0 = a.brk();
        assert_eq!(a.set_brk(&ram, 0), b0);
        assert_eq!(a.set_brk(&ram, b0 + 10_000), b0 + 10_000);
        assert_eq!(a.set_brk(&ram, u64::MAX), b0 + 10_000);
        assert_eq!(a.set_brk(&ram, 1 << 40), b0 + 10_000);
        assert_eq!(a.set_brk(&ram, b0), b0);
    }

    #[test]
    fn mmap_top_down_and_reuse_is_zeroed() {
        let (ram, mut a) = setup();
        let p = a.map(&ram, 0, 8192, false, false).unwrap();
        assert_eq!(p, (24 << 20) - 8192);
        ram.write(p, &[5; 16]).unwrap();
        a.unmap(&ram, p, 8192).unwrap();
        let q = a.map(&ram, 0, 4096, false, false).unwrap();
        let mut b = [1u8; 16];
        ram.read(q, &mut b).unwrap();
        assert_eq!(b, [0; 16]);
    }

    #[test]
    fn mmap_exhaustion_and_brk_collision() {
        let (ram, mut a) = setup();
        assert_eq!(a.map(&ram, 0, 1 << 40, false, false), Err(Errno::ENOMEM));
        assert_eq!(a.map(&ram, 0, u64::MAX, false, false), Err(Errno::ENOMEM));
        let big = (24 << 20) - 0x60_0000 - 4096;
        let p = a.map(&ram, 0, big, false, false).unwrap();
        assert_eq!(p, 0x60_1000);
        let b0 = a.brk();
        assert_eq!(a.set_brk(&ram, b0 + 8192), b0);
        assert_eq!(a.map(&ram, 0, 8192, false, false), Err(Errno::ENOMEM));
    }

    #[test]
    fn fixed_and_noreplace() {
        let (ram, mut a) = setup();
        let at = 0x100_0000;
        assert_eq!(a.map(&ram, at, 4096, true, false), Ok(at));
        assert_eq!(a.map(&ram, at, 4096, true, true), Err(Errno::EEXIST));
        assert_eq!(a.map(&ram, at + 1, 4096, true, false), Err(Errno::EINVAL));
        assert_eq!(a.map(&ram, 0x1000, 4096, true, false), Err(Errno::ENOMEM));
    }

    #[test]
    fn munmap_splits_and_mremap_moves() {
        let (ram, mut a) = setup();
        let p = a.map(&ram, 0, 3 * 4096, false, false).unwrap();
        a.unmap(&ram, p + 4096, 4096).unwrap();
        assert_eq!(a.mapping_count(), 2);
        assert!(!a.is_mapped(p, p + 3 * 4096));
        ram.write(p, b"keep").unwrap();
        let q = a.remap(&ram, p, 4096, 5 * 4096, true).unwrap();
        let mut b = [0u8; 4];
        ram.read(q, &mut b).unwrap();
        assert_eq!(&b, b"keep");
        assert_eq!(
            a.remap(&ram, 0x20_0000, 4096, 8192, true),
            Err(Errno::EFAULT)
        );
        assert_eq!(a.unmap(&ram, p + 1, 4096), Err(Errno::EINVAL));
    }

    #[test]
    fn view_tracks_holes_heap_and_stack() {
        let (ram, mut a) = setup();
        let v = a.view();
        let p = a.map(&ram, 0, 2 * 4096, false, false).unwrap();
        assert!(v.accessible(p, p + 8192));
        a.unmap(&ram, p + 4096, 4096).unwrap();
        assert!(v.accessible(p, p + 4096));
        assert!(
            !v.accessible(p + 4095, p + 4097),
            "the unmapped hole is not accessible"
        );
        let b0 = a.brk();
        assert!(!v.accessible(b0, b0 + 1));
        a.set_brk(&ram, b0 + 100);
        assert!(v.accessible(b0, b0 + 100));
        assert!(v.accessible(0x40_0000, 0x40_1000), "program image");
        assert!(v.accessible(24 << 20, 32 << 20), "stack");
    }

    /// An address space with an exec area 0x60_0000..0x80_0000 below the heap (0x80_0000).
    fn with_exec() -> (GuestRam, AddressSpace) {
        let ram = GuestRam::new(32 << 20, Backing::Anonymous).unwrap();
        let asp = AddressSpace::new(0x80_0000, 24 << 20)
            .unwrap()
            .with_exec_area(0x60_0000, 0x80_0000);
        (ram, asp)
    }

    #[test]
    fn file_and_exec_mappings_go_to_the_exec_area() {
        let (ram, mut a) = with_exec();
        let v = a.view();
        // ld.so's reservation (file-backed), then its segments MAP_FIXED over it.
        let lib = a
            .map_for(&ram, 0, 0x3_0000, false, false, Want::File)
            .unwrap();
        assert!((0x60_0000..0x80_0000).contains(&lib), "{lib:#x}");
        assert_eq!(
            a.map_for(&ram, lib + 0x1000, 0x1000, true, false, Want::Exec),
            Ok(lib + 0x1000)
        );
        assert_eq!(
            a.map_for(&ram, lib + 0x2_0000, 0x1000, true, false, Want::Anon),
            Ok(lib + 0x2_0000),
            "bss over the reservation"
        );
        assert!(v.accessible(lib, lib + 0x3_0000));
        assert!(
            !v.accessible(0x60_0000, 0x60_0008),
            "unmapped part of the exec area"
        );
        // Anonymous memory stays out of the exec area; a fixed PROT_EXEC outside it is refused.
        let anon = a.map(&ram, 0, 0x1000, false, false).unwrap();
        assert!(anon >= 0x80_0000);
        assert_eq!(
            a.map_for(&ram, 0x100_0000, 0x1000, true, false, Want::Exec),
            Err(Errno::EACCES)
        );
        // A full exec area: executable mappings fail, file mappings fall back.
        assert_eq!(
            a.map_for(&ram, 0, 0x20_0000, false, false, Want::Exec),
            Err(Errno::ENOMEM)
        );
        let data = a
            .map_for(&ram, 0, 0x20_0000, false, false, Want::File)
            .unwrap();
        assert!(data >= 0x80_0000);
        // munmap and brk work as before; brk is not limited by exec-area mappings.
        a.unmap(&ram, lib, 0x3_0000).unwrap();
        assert!(!v.accessible(lib, lib + 8));
        let b0 = a.brk();
        assert_eq!(a.set_brk(&ram, b0 + 0x1000), b0 + 0x1000);
    }

    #[test]
    fn static_programs_have_no_exec_area() {
        let (ram, mut a) = setup();
        let p = a.map_for(&ram, 0, 4096, false, false, Want::Exec).unwrap();
        assert_eq!(p, (24 << 20) - 4096, "as before: top of the mmap area");
        let f = a.map_for(&ram, 0, 4096, false, false, Want::File).unwrap();
        assert_eq!(f, (24 << 20) - 8192);
    }

    #[test]
    fn mprotect_checks_range() {
        let (ram, mut a) = setup();
        let p = a.map(&ram, 0, 4096, false, false).unwrap();
        assert!(a.protect(p, 4096, 32 << 20).is_ok());
        assert_eq!(a.protect(p + 1, 4096, 32 << 20), Err(Errno::EINVAL));
        assert_eq!(a.protect(0x1000, 4096, 32 << 20), Err(Errno::ENOMEM));
        assert_eq!(a.protect(p, u64::MAX, 32 << 20), Err(Errno::ENOMEM));
        assert!(a.protect(0x40_0000, 4096, 32 << 20).is_ok());
    }
}
