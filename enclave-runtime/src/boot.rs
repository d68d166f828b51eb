//! The guest's system structures, written once before the first `KVM_RUN`: identity page tables
//! with per-page permissions for the program image, GDT/TSS/IDT, the stub page, and the values
//! of the special registers that start vCPU 0 directly in 64-bit ring 3.

use kvm_bindings::{kvm_segment, kvm_sregs};

use crate::elf::LoadPlan;
use crate::guest_abi;
use crate::layout::{self, selector};
use crate::memory::{Fault, GuestRam};

const PTE_P: u64 = 1;
const PTE_RW: u64 = 1 << 1;
const PTE_US: u64 = 1 << 2;
const PTE_PS: u64 = 1 << 7;
const PTE_NX: u64 = 1 << 63;
const GIB: u64 = 1 << 30;

/// CR0: PE | MP | ET | NE | WP | AM | PG.
pub const CR0: u64 = 0x8005_0033;
/// CR4: PAE | OSFXSR | OSXMMEXCPT.
pub const CR4: u64 = 0x620;
/// EFER: SCE | LME | LMA | NXE.
pub const EFER: u64 = 0xd01;
/// MSR numbers used at boot.
pub mod msr {
    /// SYSCALL target.
    pub const LSTAR: u32 = 0xc000_0082;
    /// SYSCALL/SYSRET selectors.
    pub const STAR: u32 = 0xc000_0081;
    /// RFLAGS bits cleared on SYSCALL.
    pub const FMASK: u32 = 0xc000_0084;
}
/// STAR: kernel CS 0x08 (SS 0x10) on SYSCALL, user base 0x10 (CS 0x23, SS 0x1b) on SYSRET.
pub const STAR: u64 = (0x10 << 48) | (0x08 << 32);
/// FMASK: clear TF, DF, IF, NT, AC on SYSCALL.
pub const FMASK: u64 = 0x47700;

/// Permission bits of one 4 KiB page of the small-page area.
fn small_page_flags(addr: u64, plan: &LoadPlan, guard: (u64, u64)) -> u64 {
    const USER_RW: u64 = PTE_P | PTE_RW | PTE_US | PTE_NX;
    match addr {
        a if (guard.0..guard.1).contains(&a) => 0,
        a if a < layout::GDT_ADDR => 0,
        a if a < layout::IDT_ADDR => PTE_P | PTE_RW | PTE_NX,
        a if a < layout::STUB_PAGE => PTE_P | PTE_NX,
        a if a < layout::EXCEPTION_STACK_BOTTOM => PTE_P | PTE_US,
        a if a < layout::EXCEPTION_STACK_TOP => PTE_P | PTE_RW | PTE_NX,
        a if a < layout::fastio::SHARED_PAGE => 0,
        a if a < layout::fastio::CONFIG_PAGE => USER_RW,
        a if a < layout::fastio::END => PTE_P | PTE_US | PTE_NX,
        a if a < layout::IMAGE_MIN => 0,
        a => {
            let end = a + layout::PAGE_SIZE;
            let mut hit = false;
            let (mut write, mut exec) = (false, false);
            for s in &plan.segments {
                if a < s.addr + s.mem_len && s.addr < end {
                    hit = true;
                    write |= s.perms.write;
                    exec |= s.perms.exec;
                }
            }
            if !hit {
                return USER_RW;
            }
            let mut f = PTE_P | PTE_US;
            if write {
                f |= PTE_RW;
            }
            if !exec {
                f |= PTE_NX;
            }
            f
        }
    }
}

/// Writes the identity page tables for `ram.size()` bytes plus the doorbell.
fn write_page_tables(ram: &GuestRam, plan: &LoadPlan) -> Result<(), Fault> {
    let size = ram.size();
    let gibs = size.div_ceil(GIB);
    let pml4 = layout::PAGE_TABLES_START;
    let pdpt = pml4 + layout::PAGE_SIZE;
    let pds = pdpt + layout::PAGE_SIZE;
    let pd_doorbell = pds + gibs * layout::PAGE_SIZE;
    let pts = pd_doorbell + layout::PAGE_SIZE;
    let small_end = size.min(layout::SMALL_PAGE_AREA_END);
    let guard = layout::stack_guard(size);
    let pt_count = small_end / layout::LARGE_PAGE_SIZE;
    if pts + pt_count * layout::PAGE_SIZE > layout::SYSTEM_AREA_END {
        return Err(Fault);
    }
    let upper = PTE_P | PTE_RW | PTE_US;
    ram.write_u64(pml4, pdpt | upper)?;
    for g in 0..gibs {
        ram.write_u64(pdpt + g * 8, (pds + g * layout::PAGE_SIZE) | upper)?;
    }
    let db_gib = layout::DOORBELL / GIB;
    ram.write_u64(pdpt + db_gib * 8, pd_doorbell | upper)?;
    ram.write_u64(
        pd_doorbell,
        layout::DOORBELL | PTE_P | PTE_RW | PTE_US | PTE_PS | PTE_NX,
    )?;

    let mut pd = vec![0u8; 0];
    for chunk in 0..size / layout::LARGE_PAGE_SIZE {
        let addr = chunk * layout::LARGE_PAGE_SIZE;
        let entry = if addr < small_end {
            (pts + chunk * layout::PAGE_SIZE) | upper
        } else if (guard.0..guard.1).contains(&addr) {
            0
        } else {
            addr | PTE_P | PTE_RW | PTE_US | PTE_PS | PTE_NX
        };
        pd.extend_from_slice(&entry.to_le_bytes());
    }
    ram.write(pds, &pd)?;

    let mut pt = Vec::with_capacity(usize::try_from(pt_count * 4096).unwrap_or(0));
    let mut addr = 0;
    while addr < small_end {
        let f = small_page_flags(addr, plan, guard);
        let e = if f == 0 { 0 } else { addr | f };
        pt.extend_from_slice(&e.to_le_bytes());
        addr += layout::PAGE_SIZE;
    }
    ram.write(pts, &pt)
}

/// GDT descriptors: null, kernel code64, kernel data, user data, user code64, TSS (2 slots).
fn gdt_entries() -> [u64; 7] {
    let tss = layout::TSS_ADDR;
    let limit = layout::TSS_SIZE - 1;
    let tss_low = limit | ((tss & 0xff_ffff) << 16) | (0x89 << 40) | (((tss >> 24) & 0xff) << 56);
    [
        0,
        0x00af_9a00_0000_ffff,
        0x00cf_9200_0000_ffff,
        0x00cf_f200_0000_ffff,
        0x00af_fa00_0000_ffff,
        tss_low,
        tss >> 32,
    ]
}

/// Writes GDT, TSS, IDT, stub page.
fn write_descriptors(ram: &GuestRam) -> Result<(), Fault> {
    let gdt: Vec<u8> = gdt_entries().iter().flat_map(|e| e.to_le_bytes()).collect();
    ram.write(layout::GDT_ADDR, &gdt)?;
    let mut tss = [0u8; 104];
    tss[4..12].copy_from_slice(&layout::EXCEPTION_STACK_TOP.to_le_bytes());
    tss[102..104].copy_from_slice(&104u16.to_le_bytes());
    ram.write(layout::TSS_ADDR, &tss)?;
    let mut idt = Vec::new();
    for v in 0..layout::IDT_VECTORS {
        let h = layout::EXCEPTION_STUBS + v * layout::EXCEPTION_STUB_SIZE;
        let low = (h & 0xffff)
            | (u64::from(selector::KERNEL_CODE) << 16)
            | (0x8e << 40)
            | (((h >> 16) & 0xffff) << 48);
        idt.extend_from_slice(&low.to_le_bytes());
        idt.extend_from_slice(&(h >> 32).to_le_bytes());
    }
    ram.write(layout::IDT_ADDR, &idt)?;
    ram.write(layout::STUB_PAGE, &guest_abi::stub_page())
}

/// Copies the program's segments into guest memory.
pub fn load_program(ram: &GuestRam, elf: &[u8], plan: &LoadPlan) -> Result<(), Fault> {
    for s in &plan.segments {
        let data = elf
            .get(s.file_offset..s.file_offset + s.file_len)
            .ok_or(Fault)?;
        ram.write(s.addr, data)?;
    }
    Ok(())
}

/// Writes every system structure for `plan` into `ram`.
pub fn write_system_area(ram: &GuestRam, plan: &LoadPlan) -> Result<(), Fault> {
    write_descriptors(ram)?;
    write_page_tables(ram, plan)
}

fn user_segment(selector: u16, code: bool) -> kvm_segment {
    kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector,
        type_: if code { 11 } else { 3 },
        present: 1,
        dpl: 3,
        db: u8::from(!code),
        s: 1,
        l: u8::from(code),
        g: 1,
        ..Default::default()
    }
}

/// User code segment as loaded at start and restored after a system call.
pub fn user_code_segment() -> kvm_segment {
    user_segment(selector::USER_CODE, true)
}

/// User data/stack segment.
pub fn user_data_segment() -> kvm_segment {
    user_segment(selector::USER_DATA, false)
}

/// Special registers for 64-bit ring 3 with our tables, starting from the vCPU's defaults.
pub fn ring3_sregs(mut sr: kvm_sregs) -> kvm_sregs {
    let data = user_data_segment();
    sr.cs = user_code_segment();
    sr.ds = data;
    sr.es = data;
    sr.fs = data;
    sr.gs = data;
    sr.ss = data;
    sr.tr = kvm_segment {
        base: layout::TSS_ADDR,
        limit: u32::try_from(layout::TSS_SIZE - 1).unwrap_or(103),
        selector: selector::TSS,
        type_: 11,
        present: 1,
        ..Default::default()
    };
    sr.gdt.base = layout::GDT_ADDR;
    sr.gdt.limit = u16::try_from(layout::GDT_ENTRIES * 8 - 1).unwrap_or(55);
    sr.idt.base = layout::IDT_ADDR;
    sr.idt.limit = u16::try_from(layout::IDT_VECTORS * 16 - 1).unwrap_or(511);
    sr.cr0 = CR0;
    sr.cr3 = layout::PAGE_TABLES_START;
    sr.cr4 = CR4;
    sr.efer = EFER;
    sr
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elf::{Perms, Segment};
    use crate::memory::Backing;

    fn plan() -> LoadPlan {
        LoadPlan {
            base: 0,
            entry: 0x40_1000,
            phdr: 0x40_0040,
            phnum: 2,
            segments: vec![
                Segment {
                    addr: 0x40_0000,
                    mem_len: 0x2000,
                    file_offset: 0,
                    file_len: 0,
                    perms: Perms {
                        exec: true,
                        write: false,
                    },
                },
                Segment {
                    addr: 0x40_2000,
                    mem_len: 0x1000,
                    file_offset: 0,
                    file_len: 0,
                    perms: Perms {
                        exec: false,
                        write: true,
                    },
                },
            ],
            image_end: 0x40_3000,
            pie: false,
        }
    }

    /// Walks the page tables like the MMU: returns the leaf entry for `va`.
    fn walk(ram: &GuestRam, va: u64) -> Option<u64> {
        let l4 = ram
            .read_u64(layout::PAGE_TABLES_START + ((va >> 39) & 511) * 8)
            .ok()?;
        if l4 & PTE_P == 0 {
            return None;
        }
        let l3 = ram
            .read_u64((l4 & 0x000f_ffff_ffff_f000) + ((va >> 30) & 511) * 8)
            .ok()?;
        if l3 & PTE_P == 0 {
            return None;
        }
        let l2 = ram
            .read_u64((l3 & 0x000f_ffff_ffff_f000) + ((va >> 21) & 511) * 8)
            .ok()?;
        if l2 & PTE_P == 0 {
            return None;
        }
        if l2 & PTE_PS != 0 {
            return Some(l2);
        }
        let l1 = ram
            .read_u64((l2 & 0x000f_ffff_ffff_f000) + ((va >> 12) & 511) * 8)
            .ok()?;
        (l1 & PTE_P != 0).then_some(l1)
    }

    #[test]
    fn page_tables_map_identity_with_permissions() {
        let ram = GuestRam::new(512 << 20, Backing::Anonymous).unwrap();
        write_system_area(&ram, &plan()).unwrap();
        assert_eq!(walk(&ram, 0), None, "null page must be unmapped");
        let text = walk(&ram, 0x40_0000).unwrap();
        assert_eq!(text & 0x000f_ffff_ffff_f000, 0x40_0000);
        assert!(text & PTE_US != 0 && text & PTE_RW == 0 && text & PTE_NX == 0);
        let data = walk(&ram, 0x40_2000).unwrap();
        assert!(data & PTE_RW != 0 && data & PTE_NX != 0);
        let gdt = walk(&ram, layout::GDT_ADDR).unwrap();
        assert!(gdt & PTE_US == 0, "system pages are supervisor-only");
        let stub = walk(&ram, layout::STUB_PAGE).unwrap();
        assert!(stub & PTE_US != 0 && stub & PTE_RW == 0 && stub & PTE_NX == 0);
        assert!(walk(&ram, layout::PAGE_TABLES_START).is_none());
        let shared = walk(&ram, layout::fastio::SHARED_PAGE).unwrap();
        assert!(shared & PTE_US != 0 && shared & PTE_RW != 0 && shared & PTE_NX != 0);
        let config = walk(&ram, layout::fastio::CONFIG_PAGE).unwrap();
        assert!(
            config & PTE_US != 0 && config & PTE_RW == 0 && config & PTE_NX != 0,
            "the program only reads the fast-I/O configuration"
        );
        assert!(walk(&ram, layout::fastio::END).is_none());
        let high = walk(&ram, (300 << 20) + 0x1234).unwrap();
        assert_eq!(high & 0x000f_ffff_ffe0_0000, 300 << 20);
        assert!(high & PTE_NX != 0);
        let db = walk(&ram, layout::DOORBELL).unwrap();
        assert_eq!(db & 0x000f_ffff_ffe0_0000, layout::DOORBELL);
        assert!(
            walk(&ram, 512 << 20).is_none(),
            "nothing past guest memory but the doorbell"
        );
    }

    #[test]
    fn an_exec_area_segment_is_mapped_read_write_execute() {
        let mut p = plan();
        p.segments.push(Segment {
            addr: 0x60_0000,
            mem_len: 0x20_0000,
            file_offset: 0,
            file_len: 0,
            perms: Perms {
                exec: true,
                write: true,
            },
        });
        let ram = GuestRam::new(64 << 20, Backing::Anonymous).unwrap();
        write_system_area(&ram, &p).unwrap();
        for va in [0x60_0000, 0x7f_f000] {
            let e = walk(&ram, va).unwrap();
            assert!(
                e & PTE_US != 0 && e & PTE_RW != 0 && e & PTE_NX == 0,
                "{va:#x}"
            );
        }
        let after = walk(&ram, 0x80_0000).unwrap();
        assert!(
            after & PTE_NX != 0,
            "past the exec area memory is not executable"
        );
    }

    #[test]
    fn the_page_below_the_stack_is_never_mapped() {
        // 64 MiB: the guard is a 4 KiB page; 512 MiB: a 2 MiB page (large-page area).
        for (mib, guard_len) in [(64u64, layout::PAGE_SIZE), (512, layout::LARGE_PAGE_SIZE)] {
            let size = mib << 20;
            let ram = GuestRam::new(size, Backing::Anonymous).unwrap();
            write_system_area(&ram, &plan()).unwrap();
            let (start, end) = layout::stack_guard(size);
            assert_eq!((end - start, end), (guard_len, layout::stack_bottom(size)));
            assert_eq!(walk(&ram, start), None, "{mib} MiB: guard start mapped");
            assert_eq!(walk(&ram, end - 8), None, "{mib} MiB: guard end mapped");
            assert!(
                walk(&ram, end).is_some(),
                "{mib} MiB: stack bottom unmapped"
            );
            assert!(
                walk(&ram, start - 8).is_some(),
                "{mib} MiB: mmap top unmapped"
            );
        }
    }
}
