//! Every guest-physical constant of the enclave lives here and nowhere else.
//!
//! Guest memory is identity-mapped (guest-virtual == guest-physical) and mapped in full before
//! the first `KVM_RUN`: page tables are never edited while the guest runs (DESIGN.md).
//!
//! ```text
//! 0x0000_0000  null guard page (not present)
//! 0x0000_1000  GDT (+ TSS right after it)            supervisor, read-write
//! 0x0000_2000  IDT (32 vectors × 16 bytes)           supervisor, read-only for the guest
//! 0x0000_3000  stubs: LSTAR syscall stub + exception stubs   user, read + execute
//! 0x0000_4000  exception stack (TSS.RSP0), 2 pages   supervisor, read-write
//! 0x0000_7000  fast-I/O shared page (locks, heads, register saves)   user, read-write
//! 0x0000_8000  fast-I/O config page (enabled, tails, rings, gate)    user, read-only
//! 0x0001_0000  page tables (PML4, PDPT, PDs, PTs)     supervisor
//! 0x0020_0000  (2 MiB) program image area: ELF segments at their own permissions
//!              (non-PIE programs at their link address, PIE at PIE_LOAD_BASE)
//!   dynamic programs only (PT_INTERP), each part starting on a 2 MiB boundary:
//!   interp_base(main end)        the interpreter (ld.so), ELF segments at their own permissions
//!   exec_area(interp end)        EXEC_AREA_SIZE bytes premapped read-write-EXECUTE: file-backed
//!                                and PROT_EXEC mmaps (the shared libraries) are placed here
//!   ...        brk heap grows up from the image end (after the exec area for dynamic
//!              programs); mmap area grows down from the rings; all of it read-write, NX
//!   ...        vsock transmit rings (TX_RINGS × TX_RING_SIZE), user read-write
//! top − STACK  initial stack (argv/envp/auxv strings at its top), an unmapped guard page below
//! DOORBELL     not backed by memory: a guest write here is an MMIO exit to the VMM
//! ```

/// Size of a small page.
pub const PAGE_SIZE: u64 = 0x1000;
/// Size of a large (2 MiB) page.
pub const LARGE_PAGE_SIZE: u64 = 0x20_0000;

/// Global descriptor table.
pub const GDT_ADDR: u64 = 0x1000;
/// Task state segment (inside the GDT page, after the descriptors).
pub const TSS_ADDR: u64 = 0x1080;
/// Interrupt descriptor table.
pub const IDT_ADDR: u64 = 0x2000;
/// Number of exception vectors with a stub.
pub const IDT_VECTORS: u64 = 32;
/// Page holding the syscall stub (LSTAR target) and the exception stubs.
pub const STUB_PAGE: u64 = 0x3000;
/// The LSTAR target: `mov [DOORBELL], al`.
pub const SYSCALL_STUB: u64 = STUB_PAGE;
/// First exception stub; vector `v`'s stub is at `EXCEPTION_STUBS + v * EXCEPTION_STUB_SIZE`.
/// The syscall stub (with its vsock fast path) fits in the bytes before it.
pub const EXCEPTION_STUBS: u64 = STUB_PAGE + 0x400;
/// Bytes reserved for each exception stub.
pub const EXCEPTION_STUB_SIZE: u64 = 16;
/// Bottom of the exception stack.
pub const EXCEPTION_STACK_BOTTOM: u64 = 0x4000;
/// Top of the exception stack (TSS.RSP0), two pages.
pub const EXCEPTION_STACK_TOP: u64 = 0x6000;
/// The fast-I/O pages: a guest `write`/`send` on a connected vsock socket is copied into that
/// socket's transmit ring by the syscall stub itself and the VMM is only notified through an
/// in-kernel eventfd (no exit to the VMM process); see `kernel::fastio`. Two pages: one the
/// program may write (per-descriptor locks, producer heads and the stub's register saves) and
/// one it may only read (what the VMM decides: which descriptors are enabled, consumer tails,
/// ring placement, the gate and the user address bounds). Each array has one `u64` per
/// descriptor below [`FASTIO_FDS`], indexed by the descriptor number.
pub mod fastio {
    use super::{DOORBELL, PAGE_SIZE};

    /// Descriptors `0..FASTIO_FDS` may use the fast path.
    pub const FASTIO_FDS: u64 = 64;
    /// The page the program may write.
    pub const SHARED_PAGE: u64 = 0x7000;
    /// Per-descriptor lock (bit 0), taken by the stub with `lock bts`.
    pub const LOCK: u64 = SHARED_PAGE;
    /// Per-descriptor producer position (bytes ever written), advanced by the stub.
    pub const HEAD: u64 = SHARED_PAGE + 0x200;
    /// Saved `rcx` (return address) while the stub holds the descriptor's lock.
    pub const SAVE_RCX: u64 = SHARED_PAGE + 0x400;
    /// Saved `r11` (flags).
    pub const SAVE_R11: u64 = SHARED_PAGE + 0x600;
    /// Saved `rsi` (buffer).
    pub const SAVE_RSI: u64 = SHARED_PAGE + 0x800;
    /// Saved `rax` (system-call number).
    pub const SAVE_RAX: u64 = SHARED_PAGE + 0xa00;
    /// The page the program may only read.
    pub const CONFIG_PAGE: u64 = SHARED_PAGE + PAGE_SIZE;
    /// Per-descriptor: non-zero when the descriptor's writes may take the fast path.
    pub const ENABLED: u64 = CONFIG_PAGE;
    /// Per-descriptor consumer position (bytes the VMM has sent on).
    pub const TAIL: u64 = CONFIG_PAGE + 0x200;
    /// Per-descriptor ring address.
    pub const BASE: u64 = CONFIG_PAGE + 0x400;
    /// Per-descriptor ring size − 1 (sizes are powers of two).
    pub const MASK: u64 = CONFIG_PAGE + 0x600;
    /// One byte: non-zero once the VMM has seen the stub run at CPL 3 (kvm_pvm). Under
    /// hardware KVM the stub runs at CPL 0, this stays zero and every call exits as before.
    pub const GATE: u64 = CONFIG_PAGE + 0x800;
    /// Lowest user address a fast write may read from.
    pub const USER_MIN: u64 = CONFIG_PAGE + 0x808;
    /// End of guest memory.
    pub const MEM_TOP: u64 = CONFIG_PAGE + 0x810;
    /// Start of the (unmapped) stack guard.
    pub const GUARD_START: u64 = CONFIG_PAGE + 0x818;
    /// End of the stack guard.
    pub const GUARD_END: u64 = CONFIG_PAGE + 0x820;
    /// End of the two pages.
    pub const END: u64 = CONFIG_PAGE + PAGE_SIZE;
    /// The stub's notification: a write here signals an eventfd inside the host kernel
    /// (`KVM_IOEVENTFD`) and the vCPU goes on without leaving KVM.
    pub const DOORBELL_KICK: u64 = DOORBELL + 16;
    /// Transmit rings (one per fast descriptor at a time).
    pub const TX_RINGS: u64 = 4;
    /// Bytes per transmit ring (a power of two).
    pub const TX_RING_SIZE: u64 = 1 << 20;
}

/// Start of the page-table area.
pub const PAGE_TABLES_START: u64 = 0x1_0000;
/// End (exclusive) of the page-table area and of the system area.
pub const SYSTEM_AREA_END: u64 = LARGE_PAGE_SIZE;

/// Lowest address a program segment may occupy.
pub const IMAGE_MIN: u64 = LARGE_PAGE_SIZE;
/// Load base chosen for position-independent (static-pie) programs.
pub const PIE_LOAD_BASE: u64 = 0x40_0000;
/// Alignment of the interpreter's base and of the exec area.
pub const DYNAMIC_ALIGN: u64 = LARGE_PAGE_SIZE;
/// Size of the read-write-execute area for shared libraries (dynamic programs only): enough
/// for glibc, libm, libgcc_s, libstdc++ and a few more. Premapped executable because page tables
/// never change after start (DESIGN.md); the W^X trade-off is in THREAT_MODEL.md.
pub const EXEC_AREA_SIZE: u64 = 16 << 20;

/// Memory from the start of guest memory mapped with 4 KiB pages (the rest uses 2 MiB pages).
/// The program image must end below this so every segment gets its own permissions.
pub const SMALL_PAGE_AREA_END: u64 = 0x1000_0000;

/// Guest-physical address of the doorbell (not backed by a memslot). It sits at 64 GiB, above
/// the largest supported guest memory, and is mapped user-writable with one 2 MiB page.
pub const DOORBELL: u64 = 0x10_0000_0000;
/// Offset into the doorbell page written by the syscall stub.
pub const DOORBELL_SYSCALL: u64 = DOORBELL;
/// Offset into the doorbell page written by the exception stubs (the byte is the vector).
pub const DOORBELL_EXCEPTION: u64 = DOORBELL + 8;

/// Largest guest memory supported, in bytes (below the doorbell).
pub const MAX_GUEST_MEMORY: u64 = DOORBELL;
/// Smallest guest memory accepted, in bytes.
pub const MIN_GUEST_MEMORY: u64 = 16 << 20;

/// Size of the initial stack region at the top of guest memory.
pub const STACK_SIZE: u64 = 8 << 20;
/// Bytes at the top of the stack reserved for argv/envp strings and AT_RANDOM bytes.
pub const STACK_STRINGS_MAX: u64 = 256 << 10;

/// Segment selectors (GDT layout compatible with SYSCALL/SYSRET: STAR[47:32]=0x08, [63:48]=0x10).
pub mod selector {
    /// Kernel 64-bit code.
    pub const KERNEL_CODE: u16 = 0x08;
    /// Kernel data.
    pub const KERNEL_DATA: u16 = 0x10;
    /// User data (RPL 3).
    pub const USER_DATA: u16 = 0x1b;
    /// User 64-bit code (RPL 3).
    pub const USER_CODE: u16 = 0x23;
    /// Task state segment.
    pub const TSS: u16 = 0x28;
}

/// Number of GDT slots (null, kcode, kdata, udata, ucode, TSS low, TSS high).
pub const GDT_ENTRIES: u64 = 7;
/// Size of the 64-bit TSS.
pub const TSS_SIZE: u64 = 104;

/// Rounds `v` up to the dynamic-part alignment; `None` on overflow.
fn dynamic_align(v: u64) -> Option<u64> {
    v.checked_add(DYNAMIC_ALIGN - 1)
        .map(|x| x & !(DYNAMIC_ALIGN - 1))
}

/// Load base of the interpreter of a dynamic program whose image ends at `main_end`.
pub fn interp_base(main_end: u64) -> Option<u64> {
    dynamic_align(main_end)
}

/// The read-write-execute area for shared libraries, after an interpreter ending at
/// `interp_end`: `(start, end)`. The caller checks it ends inside the small-page area.
pub fn exec_area(interp_end: u64) -> Option<(u64, u64)> {
    let start = dynamic_align(interp_end)?;
    Some((start, start.checked_add(EXEC_AREA_SIZE)?))
}

/// Top of the stack region for a guest of `mem_size` bytes.
pub fn stack_top(mem_size: u64) -> u64 {
    mem_size
}

/// The guard below the stack region: never mapped (a runaway stack faults there instead of
/// running into the mmap area), one page of the size that maps it: 4 KiB in the small-page
/// area, 2 MiB above it.
pub fn stack_guard(mem_size: u64) -> (u64, u64) {
    let bottom = stack_bottom(mem_size);
    let size = if bottom <= SMALL_PAGE_AREA_END {
        PAGE_SIZE
    } else {
        LARGE_PAGE_SIZE
    };
    (bottom.saturating_sub(size), bottom)
}

/// The vsock transmit rings: `fastio::TX_RINGS` rings of `fastio::TX_RING_SIZE` bytes right
/// below the stack guard.
pub fn tx_rings(mem_size: u64) -> (u64, u64) {
    let end = stack_guard(mem_size).0;
    (
        end.saturating_sub(fastio::TX_RINGS * fastio::TX_RING_SIZE),
        end,
    )
}

/// Highest address (exclusive) the program's heap and mmap area may use: the start of the
/// transmit rings.
pub fn mmap_top(mem_size: u64) -> u64 {
    tx_rings(mem_size).0
}

/// Lowest address of the stack region.
pub fn stack_bottom(mem_size: u64) -> u64 {
    mem_size.saturating_sub(STACK_SIZE)
}
