//! A vCPU running the program in ring 3, and its exit loop: `syscall` doorbell writes go to the
//! enclave kernel, exception doorbell writes end the enclave with a crash report, anything else
//! the guest does that reaches the VMM ends it too. Nothing the guest does panics the VMM.

use kvm_bindings::{kvm_msr_entry, kvm_regs, kvm_sregs, Msrs};
use kvm_ioctls::{Cap, Kvm, SyncReg, VcpuExit, VcpuFd, VmFd};

use crate::boot;
use crate::kernel::{Cpu, Ctx, ExitRequest, Kernel, ThreadState, UserRegs};
use crate::layout;
use crate::memory::{GuestRam, UserMemory};

/// Errors setting up a vCPU.
#[derive(Debug, thiserror::Error)]
pub enum VcpuError {
    /// A KVM ioctl failed during set-up.
    #[error("KVM refused {what} for vCPU {id}")]
    Kvm {
        /// Which step.
        what: &'static str,
        /// vCPU index.
        id: u64,
        /// Cause.
        #[source]
        source: kvm_ioctls::Error,
    },
}

/// What ended the program.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind")]
pub enum Outcome {
    /// The program exited with a status.
    Exited {
        /// Exit status (0–255).
        status: i32,
    },
    /// The program raised a fatal signal itself (e.g. `abort`).
    Signaled {
        /// Signal number.
        signal: i32,
    },
    /// The program faulted or did something the enclave cannot continue from.
    Crashed(CrashReport),
    /// The enclave was terminated from outside.
    Terminated,
}

/// Where and how the program crashed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CrashReport {
    /// Exception vector (None for non-exception crashes).
    pub vector: Option<u8>,
    /// Human-readable cause ("page fault", "invalid opcode", ...).
    pub reason: String,
    /// Instruction pointer of the faulting instruction.
    pub rip: u64,
    /// Faulting address (CR2) for page faults.
    pub fault_address: Option<u64>,
    /// Exception error code, when the vector has one.
    pub error_code: Option<u64>,
}

impl std::fmt::Display for CrashReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.reason)?;
        if let Some(v) = self.vector {
            write!(f, " (vector {v})")?;
        }
        write!(f, " at rip {:#x}", self.rip)?;
        if let Some(a) = self.fault_address {
            write!(f, ", address {a:#x}")?;
        }
        if let Some(e) = self.error_code {
            write!(f, ", error code {e:#x}")?;
        }
        Ok(())
    }
}

/// Name of an exception vector.
pub fn vector_name(v: u8) -> &'static str {
    match v {
        0 => "divide error",
        1 => "debug exception",
        3 => "breakpoint",
        4 => "overflow",
        5 => "bound range exceeded",
        6 => "invalid opcode",
        7 => "device not available",
        8 => "double fault",
        10 => "invalid TSS",
        11 => "segment not present",
        12 => "stack-segment fault",
        13 => "general protection fault",
        14 => "page fault",
        16 => "x87 floating-point error",
        17 => "alignment check",
        18 => "machine check",
        19 => "SIMD floating-point exception",
        _ => "exception",
    }
}

fn has_error_code(v: u8) -> bool {
    matches!(v, 8 | 10..=14 | 17 | 21 | 29 | 30)
}

/// How registers travel between KVM and the VMM on each exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegisterAccess {
    /// Through `kvm_run` (KVM_CAP_SYNC_REGS): no ioctl per exit.
    Synced,
    /// `KVM_GET/SET_REGS` and `KVM_GET/SET_SREGS` per exit (hosts without sync regs).
    Ioctl,
}

/// A vCPU ready to run the program.
pub struct Vcpu {
    fd: VcpuFd,
    access: RegisterAccess,
}

/// CPU state of the calling thread, as seen by a system-call handler.
struct SregsCpu<'a> {
    regs: &'a kvm_regs,
    sregs: &'a mut kvm_sregs,
    dirty: bool,
}

impl Cpu for SregsCpu<'_> {
    fn fs_base(&self) -> u64 {
        self.sregs.fs.base
    }
    fn set_fs_base(&mut self, base: u64) {
        self.sregs.fs.base = base;
        self.dirty = true;
    }
    fn gs_base(&self) -> u64 {
        self.sregs.gs.base
    }
    fn set_gs_base(&mut self, base: u64) {
        self.sregs.gs.base = base;
        self.dirty = true;
    }
    fn user_regs(&self) -> UserRegs {
        user_regs_of(self.regs)
    }
}

/// Decides whether registers must be restored to ring 3 after a system call, and does so.
/// Under kvm_pvm `syscall` stays at CPL 3 (nothing to restore); under hardware KVM it enters
/// the stub at CPL 0 with kernel CS/SS, which must be replaced by the user selectors.
pub fn return_to_user(regs: &mut kvm_regs, sregs: &mut kvm_sregs) -> bool {
    regs.rip = regs.rcx;
    regs.rflags = regs.r11;
    if sregs.cs.dpl == 3 && sregs.ss.dpl == 3 {
        return false;
    }
    sregs.cs = boot::user_code_segment();
    sregs.ss = boot::user_data_segment();
    true
}

impl Vcpu {
    /// Creates vCPU `id` on `vm`, starting at `entry` with stack `sp` in ring 3.
    pub fn new(kvm: &Kvm, vm: &VmFd, id: u64, entry: u64, sp: u64) -> Result<Self, VcpuError> {
        let mut v = Self::create(kvm, vm, id)?;
        let regs = kvm_regs {
            rip: entry,
            rsp: sp,
            rflags: 2,
            ..Default::default()
        };
        v.start(&regs, 0, 0).map_err(|source| VcpuError::Kvm {
            what: "initial registers",
            id,
            source,
        })?;
        Ok(v)
    }

    /// Creates vCPU `id` with CPUID and MSRs set, not yet started.
    pub fn create(kvm: &Kvm, vm: &VmFd, id: u64) -> Result<Self, VcpuError> {
        let err = |what| move |source| VcpuError::Kvm { what, id, source };
        let mut fd = vm.create_vcpu(id).map_err(err("KVM_CREATE_VCPU"))?;
        let cpuid = kvm
            .get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES)
            .map_err(err("KVM_GET_SUPPORTED_CPUID"))?;
        fd.set_cpuid2(&cpuid).map_err(err("KVM_SET_CPUID2"))?;
        let entries = [
            (boot::msr::LSTAR, layout::SYSCALL_STUB),
            (boot::msr::STAR, boot::STAR),
            (boot::msr::FMASK, boot::FMASK),
        ]
        .map(|(index, data)| kvm_msr_entry {
            index,
            data,
            ..Default::default()
        });
        let msrs = Msrs::from_entries(&entries).map_err(|_| VcpuError::Kvm {
            what: "MSR list",
            id,
            source: kvm_ioctls::Error::new(libc::EINVAL),
        })?;
        fd.set_msrs(&msrs).map_err(err("KVM_SET_MSRS"))?;
        let wanted =
            i32::try_from(kvm_bindings::KVM_SYNC_X86_REGS | kvm_bindings::KVM_SYNC_X86_SREGS)
                .unwrap_or(i32::MAX);
        let access = if kvm.check_extension_int(Cap::SyncRegs) & wanted == wanted {
            fd.set_sync_valid_reg(SyncReg::Register);
            fd.set_sync_valid_reg(SyncReg::SystemRegister);
            RegisterAccess::Synced
        } else {
            RegisterAccess::Ioctl
        };
        Ok(Self { fd, access })
    }

    /// (Re)starts this vCPU in ring 3 with `regs` and the given FS/GS bases (a new thread, or
    /// a vCPU reused after its previous thread exited).
    pub fn start(
        &mut self,
        regs: &kvm_regs,
        fs_base: u64,
        gs_base: u64,
    ) -> Result<(), kvm_ioctls::Error> {
        let mut sregs = boot::ring3_sregs(self.fd.get_sregs()?);
        sregs.fs.base = fs_base;
        sregs.gs.base = gs_base;
        self.fd.set_sregs(&sregs)?;
        self.fd.set_regs(regs)?;
        // Stale dirty bits from a previous thread would overwrite these on the next entry.
        self.fd.get_kvm_run().kvm_dirty_regs = 0;
        Ok(())
    }

    /// How this vCPU moves registers.
    pub fn register_access(&self) -> RegisterAccess {
        self.access
    }

    /// Asks KVM_RUN to return at once (used with a signal to stop a spinning guest).
    pub fn set_immediate_exit(&mut self, v: bool) {
        self.fd.set_kvm_immediate_exit(u8::from(v));
    }

    fn regs(&mut self) -> Option<(kvm_regs, kvm_sregs)> {
        match self.access {
            RegisterAccess::Synced => {
                let s = self.fd.sync_regs();
                Some((s.regs, s.sregs))
            }
            RegisterAccess::Ioctl => Some((self.fd.get_regs().ok()?, self.fd.get_sregs().ok()?)),
        }
    }

    fn put_regs(&mut self, regs: &kvm_regs, sregs: Option<&kvm_sregs>) -> bool {
        match self.access {
            RegisterAccess::Synced => {
                let s = self.fd.sync_regs_mut();
                s.regs = *regs;
                if let Some(sr) = sregs {
                    s.sregs = *sr;
                }
                self.fd.set_sync_dirty_reg(SyncReg::Register);
                if sregs.is_some() {
                    self.fd.set_sync_dirty_reg(SyncReg::SystemRegister);
                }
                true
            }
            RegisterAccess::Ioctl => {
                self.fd.set_regs(regs).is_ok()
                    && sregs.is_none_or(|sr| self.fd.set_sregs(sr).is_ok())
            }
        }
    }

    /// Runs one guest thread until it exits, the program ends, or the kernel is stopping.
    pub fn run(
        &mut self,
        kernel: &Kernel,
        ram: &GuestRam,
        read_only: &[(u64, u64)],
        thread: &mut ThreadState,
    ) -> VcpuEnd {
        let mem = UserMemory::with_map(ram, read_only, kernel.map_view());
        loop {
            if kernel.stopping() {
                return VcpuEnd::Program(Outcome::Terminated);
            }
            let exit = match self.fd.run() {
                Ok(VcpuExit::MmioWrite(addr, data)) => Exit::Doorbell(addr, data.first().copied()),
                Ok(VcpuExit::MmioRead(addr, _)) => {
                    Exit::Crash(format!("program read from the doorbell at {addr:#x}"))
                }
                Ok(VcpuExit::Intr) => continue,
                Ok(VcpuExit::Shutdown) => Exit::Crash("triple fault (vCPU shut down)".into()),
                Ok(VcpuExit::Hlt) => Exit::Crash("vCPU halted".into()),
                Ok(VcpuExit::IoIn(port, _)) | Ok(VcpuExit::IoOut(port, _)) => {
                    Exit::Crash(format!("port I/O to {port:#x}"))
                }
                Ok(VcpuExit::FailEntry(reason, _)) => Exit::Crash(format!(
                    "KVM could not enter the guest (reason {reason:#x})"
                )),
                Ok(VcpuExit::InternalError) => Exit::Crash("KVM internal error".into()),
                Ok(other) => Exit::Crash(format!("unexpected vCPU exit {other:?}")),
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                    self.set_immediate_exit(false);
                    continue;
                }
                Err(e) => Exit::Crash(format!("KVM_RUN failed: {e}")),
            };
            let Some((mut regs, mut sregs)) = self.regs() else {
                return VcpuEnd::Program(crash("cannot read vCPU registers", 0));
            };
            match exit {
                Exit::Crash(reason) => return VcpuEnd::Program(crash(&reason, regs.rip)),
                Exit::Doorbell(addr, _) if addr == layout::DOORBELL_SYSCALL => {
                    if let Some(f) = kernel.fastio() {
                        if !f.stub_cpl_known() {
                            // The stub's privilege level decides whether it may return by
                            // itself (kvm_pvm: CPL 3) or must exit (hardware KVM: CPL 0).
                            f.note_stub_cpl(sregs.cs.selector & 3);
                        }
                    }
                    let nr = regs.rax;
                    let args = [regs.rdi, regs.rsi, regs.rdx, regs.r10, regs.r8, regs.r9];
                    let mut cpu = SregsCpu {
                        regs: &regs,
                        sregs: &mut sregs,
                        dirty: false,
                    };
                    let mut ctx = Ctx {
                        mem: &mem,
                        cpu: &mut cpu,
                        thread,
                        exit: None,
                    };
                    let ret = kernel.dispatch(&mut ctx, nr, &args);
                    match ctx.exit {
                        Some(ExitRequest::Thread(s)) => return VcpuEnd::ThreadExit(s),
                        Some(ExitRequest::Group(s)) => {
                            return VcpuEnd::Program(Outcome::Exited { status: s });
                        }
                        Some(ExitRequest::Signal(signal)) => {
                            return VcpuEnd::Program(Outcome::Signaled { signal });
                        }
                        None => {}
                    }
                    let fs_dirty = cpu.dirty;
                    regs.rax = ret;
                    let ring_dirty = return_to_user(&mut regs, &mut sregs);
                    let sregs_out = (fs_dirty || ring_dirty).then_some(&sregs);
                    if !self.put_regs(&regs, sregs_out) {
                        return VcpuEnd::Program(crash("cannot write vCPU registers", regs.rip));
                    }
                }
                Exit::Doorbell(addr, vector) if addr == layout::DOORBELL_EXCEPTION => {
                    return VcpuEnd::Program(Outcome::Crashed(exception_report(
                        ram,
                        vector.unwrap_or(255),
                        &regs,
                        &sregs,
                    )));
                }
                Exit::Doorbell(addr, _) if addr == layout::fastio::DOORBELL_KICK => {
                    if let Some(f) = kernel.fastio() {
                        f.kick_exit();
                    }
                }
                Exit::Doorbell(addr, _) => {
                    return VcpuEnd::Program(crash(
                        &format!("write to unbacked address {addr:#x}"),
                        regs.rip,
                    ));
                }
            }
        }
    }
}

/// How one vCPU's run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VcpuEnd {
    /// The thread called `exit`; other threads may go on.
    ThreadExit(i32),
    /// The whole program ended (or is being stopped).
    Program(Outcome),
}

/// Converts kernel registers to the kernel's [`UserRegs`].
pub fn user_regs_of(r: &kvm_regs) -> UserRegs {
    UserRegs {
        gpr: [
            r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rsp, r.rbp, r.r8, r.r9, r.r10, r.r11,
            r.r12, r.r13, r.r14, r.r15, r.rip, r.rflags,
        ],
    }
}

/// Converts [`UserRegs`] back to KVM registers.
pub fn kvm_regs_of(u: &UserRegs) -> kvm_regs {
    let g = &u.gpr;
    kvm_regs {
        rax: g[0],
        rbx: g[1],
        rcx: g[2],
        rdx: g[3],
        rsi: g[4],
        rdi: g[5],
        rsp: g[6],
        rbp: g[7],
        r8: g[8],
        r9: g[9],
        r10: g[10],
        r11: g[11],
        r12: g[12],
        r13: g[13],
        r14: g[14],
        r15: g[15],
        rip: g[16],
        rflags: g[17],
    }
}

enum Exit {
    Doorbell(u64, Option<u8>),
    Crash(String),
}

fn crash(reason: &str, rip: u64) -> Outcome {
    Outcome::Crashed(CrashReport {
        vector: None,
        reason: reason.to_string(),
        rip,
        fault_address: None,
        error_code: None,
    })
}

/// Reads the exception frame the CPU pushed on the exception stack.
fn exception_report(ram: &GuestRam, vector: u8, regs: &kvm_regs, sregs: &kvm_sregs) -> CrashReport {
    let mut at = regs.rsp;
    let error_code = if has_error_code(vector) {
        let e = ram.read_u64(at).ok();
        at = at.wrapping_add(8);
        e
    } else {
        None
    };
    let rip = ram.read_u64(at).unwrap_or(regs.rip);
    CrashReport {
        vector: Some(vector),
        reason: vector_name(vector).to_string(),
        rip,
        fault_address: (vector == 14).then_some(sregs.cr2),
        error_code,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_to_user_restores_ring3_only_when_needed() {
        let mut regs = kvm_regs {
            rcx: 0x40_1234,
            r11: 0x246,
            rip: 1,
            ..Default::default()
        };
        let mut sregs = boot::ring3_sregs(kvm_sregs::default());
        assert!(
            !return_to_user(&mut regs, &mut sregs),
            "kvm_pvm: syscall stays at CPL 3"
        );
        assert_eq!((regs.rip, regs.rflags), (0x40_1234, 0x246));
        // Hardware KVM: syscall loaded kernel CS/SS from STAR.
        sregs.cs.dpl = 0;
        sregs.cs.selector = 0x08;
        sregs.ss.dpl = 0;
        assert!(return_to_user(&mut regs, &mut sregs));
        assert_eq!(sregs.cs.selector, layout::selector::USER_CODE);
        assert_eq!(sregs.ss.selector, layout::selector::USER_DATA);
        assert_eq!(sregs.cs.dpl, 3);
    }

    #[test]
    fn register_conversions_round_trip() {
        let mut u = UserRegs::default();
        for (i, g) in u.gpr.iter_mut().enumerate() {
            *g = i as u64 * 0x1111;
        }
        assert_eq!(user_regs_of(&kvm_regs_of(&u)), u);
        assert_eq!(kvm_regs_of(&u).rip, 16 * 0x1111);
        assert_eq!(kvm_regs_of(&u).rsp, 6 * 0x1111);
    }

    #[test]
    fn vectors_with_error_codes() {
        assert!(has_error_code(14) && has_error_code(13));
        assert!(!has_error_code(0) && !has_error_code(6));
        assert_eq!(vector_name(14), "page fault");
    }
}
