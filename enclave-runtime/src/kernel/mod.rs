//! The enclave kernel: the system-call layer that serves the program running in guest ring 3.
//!
//! The vCPU loop hands each `syscall` doorbell exit to [`Kernel::dispatch`], which looks the
//! number up in the table ([`table`]) and runs the handler of its family (`sys_*` modules).
//! Handlers never touch guest memory directly: they get a [`UserMemory`] view that checks every
//! pointer and length. Unknown calls return `ENOSYS` and are reported once by name in debug mode.

pub mod console;
pub mod errno;
pub mod file;
pub mod fs;
pub mod mm;
pub mod sys_file;
pub mod sys_info;
pub mod sys_mm;
pub mod sys_proc;
pub mod sys_time;
pub mod table;

use std::collections::HashSet;
use std::sync::Arc;

use crate::memory::UserMemory;
pub use errno::{Errno, SysResult};
use file::FdTable;

/// Register state a handler may need to change besides RAX (only `arch_prctl` today).
pub trait Cpu {
    /// The FS segment base (thread pointer).
    fn fs_base(&self) -> u64;
    /// Sets the FS segment base.
    fn set_fs_base(&mut self, base: u64);
    /// The GS segment base.
    fn gs_base(&self) -> u64;
    /// Sets the GS segment base.
    fn set_gs_base(&mut self, base: u64);
}

/// Why the program stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ExitRequest {
    /// `exit` of the (only) thread.
    Thread(i32),
    /// `exit_group`.
    Group(i32),
    /// A fatal signal the program sent itself (`abort`, `raise`).
    Signal(i32),
}

/// Per-call context: the checked memory view, the calling vCPU's registers, exit requests.
pub struct Ctx<'a, 'm> {
    /// Guest memory as the program may access it.
    pub mem: &'a UserMemory<'m>,
    /// The calling thread's CPU state.
    pub cpu: &'a mut dyn Cpu,
    /// Set by `exit`/`exit_group`.
    pub exit: Option<ExitRequest>,
}

/// The arguments of a system call (RDI, RSI, RDX, R10, R8, R9).
pub type Args = [u64; 6];

/// Settings of the enclave kernel fixed at launch.
#[derive(Clone)]
pub struct KernelConfig {
    /// Debug mode: console output and unknown-call reports.
    pub debug: bool,
    /// Number of vCPUs (for `sched_getaffinity`).
    pub cpu_count: u32,
    /// Where stdout/stderr go (debug mode); `None` discards them.
    pub console: Option<Arc<dyn console::ConsoleSink>>,
    /// Host name reported by `uname`.
    pub hostname: String,
}

/// State of the enclave kernel for one enclave.
pub struct Kernel {
    /// Open descriptors.
    pub fds: FdTable,
    /// The address space (brk + mmap area).
    pub mm: mm::AddressSpace,
    /// The read-only image tree.
    pub fs: Arc<fs::ImageTree>,
    /// Launch settings.
    pub config: KernelConfig,
    /// Current working directory inside the image tree (absolute, normalized).
    pub cwd: String,
    /// `set_tid_address` pointer.
    pub clear_child_tid: u64,
    /// Guest memory size in bytes.
    pub mem_size: u64,
    /// Number of system calls served.
    pub calls: u64,
    unknown_reported: HashSet<u64>,
    table: table::Table,
}

impl Kernel {
    /// A kernel for a program whose address space and image tree are given.
    pub fn new(
        config: KernelConfig,
        mem_size: u64,
        mm: mm::AddressSpace,
        fs: Arc<fs::ImageTree>,
    ) -> Self {
        let mut fds = FdTable::default();
        console::install_std_streams(&mut fds, config.console.clone());
        Self {
            fds,
            mm,
            fs,
            config,
            cwd: "/".to_string(),
            mem_size,
            clear_child_tid: 0,
            calls: 0,
            unknown_reported: HashSet::new(),
            table: table::Table::new(),
        }
    }

    /// Serves system call `nr` with `args`; returns the value for RAX.
    pub fn dispatch(&mut self, ctx: &mut Ctx<'_, '_>, nr: u64, args: &Args) -> u64 {
        self.calls += 1;
        let result = match self.table.get(nr) {
            Some(entry) => (entry.handler)(self, ctx, args),
            None => {
                if self.config.debug && self.unknown_reported.insert(nr) {
                    tracing::warn!(
                        syscall = nr,
                        name = table::name_of(nr),
                        "unsupported system call: returning ENOSYS"
                    );
                }
                Err(Errno::ENOSYS)
            }
        };
        errno::to_rax(result)
    }

    /// Names of the unknown calls seen so far (debug reports and tests).
    pub fn unknown_calls(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self.unknown_reported.iter().copied().collect();
        v.sort_unstable();
        v
    }
}
