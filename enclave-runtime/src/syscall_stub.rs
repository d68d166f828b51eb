//! The guest's syscall stub (the `LSTAR` target), as machine code assembled with the VMM and
//! copied into the guest's stub page (its bytes are part of the guest ABI blob, so measured).
//!
//! Every system call but one kind leaves the guest through the doorbell (an MMIO write the
//! VMM serves). The exception is the vsock fast path: `write(fd, buf, len)` and
//! `sendto(fd, buf, len, 0|MSG_NOSIGNAL, NULL, 0)` on a descriptor the VMM enabled (a
//! connected vsock stream) are copied by the stub into that socket's transmit ring in guest
//! memory and returns `len` to the caller itself; when the ring was drained up to this write
//! (the drainer may sleep) it first writes the kick address, which signals an eventfd inside
//! the host kernel (`KVM_IOEVENTFD`) without leaving KVM. Under
//! kvm_pvm an exit to the VMM process costs ~30 µs and the kick ~3 µs, so this is what makes
//! enclave→parent streaming fast there. The VMM drains the rings (`kernel::fastio`).
//!
//! The fast path runs only where the stub runs at CPL 3 (kvm_pvm), which the VMM checks at the
//! first system call before it sets the gate byte; under hardware KVM the stub runs at CPL 0,
//! the gate stays closed and every call takes the doorbell as before (exits cost a few µs
//! there). The stub falls back to the doorbell, with every register as the program left it,
//! whenever anything is unusual: the gate closed, a descriptor ≥ 64 or not enabled, the lock
//! busy (another thread is writing the same descriptor), no room for the whole buffer, a
//! buffer outside user memory or over the stack guard, zero length, a corrupted ring state.
//! It never touches the program's stack; it saves the registers it needs in the shared page,
//! under the descriptor's lock. What the program can corrupt (the shared page: locks, heads,
//! saves) only misleads its own stub; the VMM validates every head it reads.
//!
//! Register contract, as Linux: every register but `rax` (result), `rcx` and `r11` is kept;
//! `rcx` holds the return address and `r11` the flags, as `syscall` set them. The arithmetic
//! flags the program had are restored from `r11` (`sahf`: SF ZF AF PF CF); `syscall` itself
//! cleared TF, DF, IF, NT and AC (FMASK), which the program may not rely on across the call.

use crate::layout;
use crate::layout::fastio;

// The stub: position independent (relative jumps only, absolute addresses for the fixed
// guest pages), in a data section of the VMM, copied out by `syscall_stub`.
core::arch::global_asm!(
    ".pushsection .rodata.enclave_syscall_stub,\"a\"",
    ".globl enclave_syscall_stub_start",
    ".globl enclave_syscall_stub_end",
    "enclave_syscall_stub_start:",
    // write(2), or sendto(2) without an address and with no flag but MSG_NOSIGNAL.
    "cmp rax, 1",
    "je 2f",
    "cmp rax, 44",
    "jne 9f",
    "test r8, r8",
    "jnz 9f",
    "test r10, {not_nosignal}",
    "jnz 9f",
    "2:",
    "cmp byte ptr [{gate}], 0",
    "je 9f",
    "cmp rdi, {fds}",
    "jae 9f",
    "cmp qword ptr [{enabled} + rdi*8], 0",
    "je 9f",
    "test rdx, rdx",
    "jz 9f",
    // The descriptor's lock; busy means another thread writes to it: take the doorbell.
    "lock bts qword ptr [{lock} + rdi*8], 0",
    "jc 9f",
    "cmp qword ptr [{enabled} + rdi*8], 0",
    "je 8f",
    "mov [{save_rcx} + rdi*8], rcx",
    "mov [{save_r11} + rdi*8], r11",
    "mov [{save_rsi} + rdi*8], rsi",
    "mov [{save_rax} + rdi*8], rax",
    "mov r11, rdi",
    // used = head - tail must fit the ring; the whole buffer must fit the free room.
    "mov rax, [{head} + r11*8]",
    "sub rax, [{tail} + r11*8]",
    "mov rcx, [{mask} + r11*8]",
    "inc rcx",
    "cmp rax, rcx",
    "ja 7f",
    "sub rcx, rax",
    "cmp rdx, rcx",
    "ja 7f",
    // The buffer: inside [USER_MIN, MEM_TOP), not overlapping the stack guard.
    "cmp rsi, [{user_min}]",
    "jb 7f",
    "mov rax, rsi",
    "add rax, rdx",
    "jc 7f",
    "cmp rax, [{mem_top}]",
    "ja 7f",
    "cmp rax, [{guard_start}]",
    "jbe 3f",
    "cmp rsi, [{guard_end}]",
    "jb 7f",
    "3:",
    // Copy in at most two pieces (the ring wraps), then publish the new head.
    "mov rdi, [{head} + r11*8]",
    "and rdi, [{mask} + r11*8]",
    "mov rcx, [{mask} + r11*8]",
    "inc rcx",
    "sub rcx, rdi",
    "cmp rcx, rdx",
    "cmova rcx, rdx",
    "mov rax, rdx",
    "sub rax, rcx",
    "add rdi, [{base} + r11*8]",
    "rep movsb",
    "mov rcx, rax",
    "mov rdi, [{base} + r11*8]",
    "rep movsb",
    "sfence",
    "mov rax, [{head} + r11*8]",
    "add rax, rdx",
    "mov [{head} + r11*8], rax",
    // Kick the VMM only when its drainer had sent everything before this write (it may be
    // asleep): head stored, full fence, then the tail read; the drainer stores the tail, fences
    // and reads the head, so one of the two always sees the other (no lost wake-up).
    "sub rax, rdx",
    "mfence",
    "cmp rax, [{tail} + r11*8]",
    "jne 4f",
    "movabs [{kick}], al",
    "4:",
    // Restore, unlock, return len.
    "mov rdi, r11",
    "mov rsi, [{save_rsi} + rdi*8]",
    "mov rcx, [{save_rcx} + rdi*8]",
    "mov r11, [{save_r11} + rdi*8]",
    "mov qword ptr [{lock} + rdi*8], 0",
    "mov eax, r11d",
    "mov ah, al",
    "sahf",
    "mov rax, rdx",
    "jmp rcx",
    // Fall back after saving: restore everything, unlock, take the doorbell.
    "7:",
    "mov rdi, r11",
    "mov rsi, [{save_rsi} + rdi*8]",
    "mov rcx, [{save_rcx} + rdi*8]",
    "mov r11, [{save_r11} + rdi*8]",
    "mov rax, [{save_rax} + rdi*8]",
    "8:",
    "mov qword ptr [{lock} + rdi*8], 0",
    "9:",
    "movabs [{doorbell}], al",
    "enclave_syscall_stub_end:",
    ".popsection",
    not_nosignal = const !0x4000i32,
    gate = const fastio::GATE,
    fds = const fastio::FASTIO_FDS,
    enabled = const fastio::ENABLED,
    lock = const fastio::LOCK,
    save_rcx = const fastio::SAVE_RCX,
    save_r11 = const fastio::SAVE_R11,
    save_rsi = const fastio::SAVE_RSI,
    save_rax = const fastio::SAVE_RAX,
    head = const fastio::HEAD,
    tail = const fastio::TAIL,
    mask = const fastio::MASK,
    base = const fastio::BASE,
    user_min = const fastio::USER_MIN,
    mem_top = const fastio::MEM_TOP,
    guard_start = const fastio::GUARD_START,
    guard_end = const fastio::GUARD_END,
    kick = const fastio::DOORBELL_KICK,
    doorbell = const layout::DOORBELL_SYSCALL,
);

unsafe extern "C" {
    static enclave_syscall_stub_start: u8;
    static enclave_syscall_stub_end: u8;
}

/// The stub's machine code.
pub fn syscall_stub() -> &'static [u8] {
    let start = &raw const enclave_syscall_stub_start;
    let end = &raw const enclave_syscall_stub_end;
    let len = (end as usize).saturating_sub(start as usize);
    // SAFETY: both symbols are defined by the `global_asm!` above, in one read-only section,
    // `start` before `end`: the bytes between them are the assembled stub, immutable and
    // alive for the whole program.
    unsafe { std::slice::from_raw_parts(start, len) }
}
