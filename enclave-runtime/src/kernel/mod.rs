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
pub mod names;
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
    /// Benchmark mode: every call but `exit`/`exit_group` returns 0 without any work, so the
    /// bare doorbell round trip can be measured. Never set for real enclaves.
    pub bare: bool,
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
        if self.config.bare && nr != sys_proc::NR_EXIT && nr != sys_proc::NR_EXIT_GROUP {
            return 0;
        }
        let result = match self.table.get(nr) {
            Some(entry) => (entry.handler)(self, ctx, args),
            None => {
                if self.config.debug && self.unknown_reported.insert(nr) {
                    let name = table::name_of(nr);
                    tracing::warn!(
                        syscall = nr,
                        name,
                        "unsupported system call: returning ENOSYS"
                    );
                    if let Some(console) = &self.config.console {
                        let line =
                            format!("[enclave] unsupported system call {name} ({nr}): ENOSYS\n");
                        console.write(console::Stream::Stderr, line.as_bytes());
                    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{Backing, GuestRam};
    use std::sync::Mutex;

    #[derive(Default)]
    struct Capture(Mutex<Vec<u8>>);
    impl console::ConsoleSink for Capture {
        fn write(&self, _s: console::Stream, data: &[u8]) {
            self.0.lock().unwrap().extend_from_slice(data);
        }
    }
    struct NoCpu;
    impl Cpu for NoCpu {
        fn fs_base(&self) -> u64 {
            0
        }
        fn set_fs_base(&mut self, _: u64) {}
        fn gs_base(&self) -> u64 {
            0
        }
        fn set_gs_base(&mut self, _: u64) {}
    }

    fn kernel(debug: bool, console: Arc<Capture>, ram: &GuestRam) -> Kernel {
        let config = KernelConfig {
            debug,
            cpu_count: 1,
            console: Some(console),
            hostname: "t".into(),
            bare: false,
        };
        let mm = mm::AddressSpace::new(0x40_0000, 0x80_0000).unwrap();
        Kernel::new(
            config,
            ram.size(),
            mm,
            Arc::new(fs::ImageTree::new(vec![]).unwrap()),
        )
    }

    #[test]
    fn unknown_calls_get_enosys_and_one_report_in_debug_mode() {
        let ram = GuestRam::new(crate::layout::MIN_GUEST_MEMORY, Backing::Anonymous).unwrap();
        let mem = crate::memory::UserMemory::new(&ram, &[]);
        for debug in [true, false] {
            let cap = Arc::new(Capture::default());
            let mut k = kernel(debug, cap.clone(), &ram);
            let mut cpu = NoCpu;
            for nr in [57u64, 57, 9999, u64::MAX] {
                let mut ctx = Ctx {
                    mem: &mem,
                    cpu: &mut cpu,
                    exit: None,
                };
                let r = k.dispatch(&mut ctx, nr, &[0; 6]);
                assert_eq!(r, errno::to_rax(Err(Errno::ENOSYS)));
            }
            let text = String::from_utf8(cap.0.lock().unwrap().clone()).unwrap();
            if debug {
                assert_eq!(
                    text.matches("unsupported system call fork (57)").count(),
                    1,
                    "{text}"
                );
                assert!(text.contains("? (9999)"));
                assert_eq!(k.unknown_calls().len(), 3);
            } else {
                assert!(text.is_empty(), "production mode reports nothing: {text}");
            }
        }
    }

    /// Current resident set size of this process, in KiB.
    fn rss_kib() -> u64 {
        std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap()
    }

    /// Every implemented call, thousands of times, with adversarial arguments: no panic, no
    /// host memory growth beyond a bound, and every result either a value or a Linux errno.
    #[test]
    fn hostile_arguments_never_panic_or_grow_the_host() {
        const WILD: [u64; 16] = [
            0,
            1,
            0x1000,
            0x1f_ffff,
            0x20_0000,
            0x40_0000,
            0x7f_fff0,
            0x80_0000,
            crate::layout::MIN_GUEST_MEMORY - 1,
            crate::layout::MIN_GUEST_MEMORY,
            0x7fff_0000_0000,
            0xffff_8000_0000_0000,
            u64::MAX,
            u64::MAX - 1,
            0x7fff_ffff,
            i64::MAX as u64,
        ];
        let ram = GuestRam::new(crate::layout::MIN_GUEST_MEMORY, Backing::Anonymous).unwrap();
        let cap = Arc::new(Capture::default());
        let mut k = kernel(true, cap, &ram);
        let view = k.mm.view();
        let mem = crate::memory::UserMemory::with_map(&ram, &[], view);
        let mut cpu = NoCpu;
        // Calls that block by design (sleeps, polls with timeouts) get bad pointers elsewhere.
        let blocking = ["nanosleep", "clock_nanosleep", "poll", "ppoll"];
        let entries: Vec<table::Syscall> = table::Table::new()
            .entries()
            .filter(|s| !blocking.contains(&s.name))
            .collect();
        let before = rss_kib();
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for round in 0..3000 {
            for s in &entries {
                let mut args = [0u64; 6];
                for a in &mut args {
                    let r = next();
                    *a = if r % 3 == 0 {
                        r
                    } else {
                        WILD[usize::try_from(r % 16).unwrap()]
                    };
                }
                let mut ctx = Ctx {
                    mem: &mem,
                    cpu: &mut cpu,
                    exit: None,
                };
                let ret = k.dispatch(&mut ctx, s.nr, &args);
                let signed = ret.cast_signed();
                assert!(
                    signed >= -4095,
                    "{} returned {ret:#x}, neither a value nor an errno",
                    s.name
                );
            }
            if round % 500 == 0 {
                // Close whatever the calls opened so descriptors do not run out for the rest.
                for fd in 3..file::MAX_FDS as u64 {
                    let _ = k.fds.remove(fd);
                }
            }
        }
        let grown = rss_kib().saturating_sub(before);
        assert!(grown < 64 * 1024, "host memory grew by {grown} KiB");
    }
}
