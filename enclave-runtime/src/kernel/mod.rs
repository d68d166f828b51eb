//! The enclave kernel: the system-call layer that serves the program running in guest ring 3.
//!
//! The vCPU loop hands each `syscall` doorbell exit to [`Kernel::dispatch`], which looks the
//! number up in the table ([`table`]) and runs the handler of its family (`sys_*` modules).
//! Handlers never touch guest memory directly: they get a [`UserMemory`] view that checks every
//! pointer and length. Unknown calls return `ENOSYS` and are reported once by name in debug mode.
//!
//! One `Kernel` serves every thread of the program: each guest thread runs on its own vCPU and
//! host thread, and calls in here concurrently. Shared state sits behind small locks that no
//! handler holds while it blocks (sleeps, futex waits, socket waits), so a blocked thread never
//! stops the others.

pub mod console;
pub mod dev;
pub mod errno;
pub mod fastio;
pub mod file;
pub mod fs;
pub mod futex;
pub mod heartbeat;
pub mod hostfd;
pub mod mm;
pub mod names;
pub mod nsm;
pub mod socket;
pub mod sys_event;
pub mod sys_file;
pub mod sys_info;
pub mod sys_mm;
pub mod sys_proc;
pub mod sys_socket;
pub mod sys_thread;
pub mod sys_time;
pub mod table;
pub mod vsock;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use crate::memory::UserMemory;
pub use errno::{Errno, SysResult};
use file::FdTable;

/// The general-purpose registers of a thread at a system call (what `clone` copies).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UserRegs {
    /// rax, rbx, rcx, rdx, rsi, rdi, rsp, rbp, r8..r15, rip, rflags.
    pub gpr: [u64; 18],
}

/// Indices into [`UserRegs::gpr`].
pub mod reg {
    /// RAX.
    pub const RAX: usize = 0;
    /// RCX (the return address after `syscall`).
    pub const RCX: usize = 2;
    /// RSP.
    pub const RSP: usize = 6;
    /// R11 (RFLAGS saved by `syscall`).
    pub const R11: usize = 11;
    /// RIP.
    pub const RIP: usize = 16;
    /// RFLAGS.
    pub const RFLAGS: usize = 17;
}

/// Register state of the calling thread that handlers may read or change besides RAX.
pub trait Cpu {
    /// The FS segment base (thread pointer).
    fn fs_base(&self) -> u64;
    /// Sets the FS segment base.
    fn set_fs_base(&mut self, base: u64);
    /// The GS segment base.
    fn gs_base(&self) -> u64;
    /// Sets the GS segment base.
    fn set_gs_base(&mut self, base: u64);
    /// The caller's general-purpose registers at the `syscall` instruction.
    fn user_regs(&self) -> UserRegs {
        UserRegs::default()
    }
}

/// How a new thread starts: registers as after its `clone` returned 0 in it.
#[derive(Debug, Clone, Copy)]
pub struct ThreadStart {
    /// Thread id given to it.
    pub tid: u64,
    /// Registers (RIP = after the `syscall`, RSP = the new stack, RAX = 0).
    pub regs: UserRegs,
    /// FS base (its TLS), inherited or from `CLONE_SETTLS`.
    pub fs_base: u64,
    /// GS base, inherited.
    pub gs_base: u64,
    /// `CLONE_CHILD_CLEARTID` address.
    pub clear_child_tid: u64,
}

/// Starts guest threads; implemented by the VMM (a vCPU and a host thread per guest thread).
pub trait ThreadSpawner: Send + Sync {
    /// Starts a thread; the kernel has assigned `start.tid`.
    fn spawn(&self, start: ThreadStart) -> Result<(), Errno>;
}

/// Why the program stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ExitRequest {
    /// `exit` of the calling thread.
    Thread(i32),
    /// `exit_group`.
    Group(i32),
    /// A fatal signal the program sent itself (`abort`, `raise`).
    Signal(i32),
}

/// Per-thread state of the enclave kernel.
#[derive(Debug, Clone, Default)]
pub struct ThreadState {
    /// Thread id (the first thread is [`sys_proc::PID`]).
    pub tid: u64,
    /// `set_tid_address` / `CLONE_CHILD_CLEARTID`: zeroed and woken when the thread exits.
    pub clear_child_tid: u64,
}

/// Per-call context: the checked memory view, the calling thread, exit requests.
pub struct Ctx<'a, 'm> {
    /// Guest memory as the program may access it.
    pub mem: &'a UserMemory<'m>,
    /// The calling thread's CPU state.
    pub cpu: &'a mut dyn Cpu,
    /// The calling thread.
    pub thread: &'a mut ThreadState,
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
    /// The enclave's vsock endpoint; `None` leaves `AF_VSOCK` unsupported too.
    pub vsock: Option<Arc<vsock::VsockHub>>,
    /// The enclave's Nitro Secure Module behind `/dev/nsm`; `None`: opening it fails (`ENXIO`).
    pub nsm: Option<Arc<nsm::NsmDevice>>,
}

/// Most threads a program may have alive at once.
pub const MAX_THREADS: u64 = 512;

/// State of the enclave kernel for one enclave, shared by all its threads.
pub struct Kernel {
    fds: Mutex<FdTable>,
    mm: Mutex<mm::AddressSpace>,
    cwd: Mutex<String>,
    /// The read-only image tree.
    pub fs: Arc<fs::ImageTree>,
    /// Launch settings.
    pub config: KernelConfig,
    /// Guest memory size in bytes.
    pub mem_size: u64,
    /// Futex wait queues.
    pub futexes: futex::FutexTable,
    /// Number of system calls served.
    pub calls: AtomicU64,
    /// Raised when the enclave is ending: blocking calls return early.
    pub stop: Arc<AtomicBool>,
    next_tid: AtomicU64,
    live_threads: AtomicU64,
    spawner: OnceLock<Arc<dyn ThreadSpawner>>,
    fastio: OnceLock<Arc<fastio::FastIo>>,
    map_view: mm::MapView,
    unknown_reported: Mutex<HashSet<u64>>,
    table: table::Table,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
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
        let map_view = mm.view();
        Self {
            fds: Mutex::new(fds),
            mm: Mutex::new(mm),
            cwd: Mutex::new("/".to_string()),
            fs,
            config,
            mem_size,
            futexes: futex::FutexTable::default(),
            calls: AtomicU64::new(0),
            stop: Arc::new(AtomicBool::new(false)),
            next_tid: AtomicU64::new(sys_proc::PID + 1),
            live_threads: AtomicU64::new(1),
            spawner: OnceLock::new(),
            fastio: OnceLock::new(),
            map_view,
            unknown_reported: Mutex::new(HashSet::new()),
            table: table::Table::new(),
        }
    }

    /// Installs the vsock fast path (see [`fastio`]).
    pub fn set_fastio(&self, fastio: Arc<fastio::FastIo>) {
        if self.fastio.set(fastio.clone()).is_ok() {
            self.fds().set_fastio(fastio);
        }
    }

    /// The vsock fast path, when installed.
    pub fn fastio(&self) -> Option<&Arc<fastio::FastIo>> {
        self.fastio.get()
    }

    /// After a `write`/`sendto` that exited to the VMM: when it went to a vsock stream that
    /// could take the fast path through this descriptor (its ring is bound to another
    /// descriptor of the stream, or it has none yet), bind it here, so a program writing
    /// through a `dup` of its socket is served by the stub from its next call on.
    pub fn after_slow_send(&self, fd: u64, file: &dyn file::FileOps) {
        let Some(f) = self.fastio.get() else { return };
        if !f.usable() || fd >= crate::layout::fastio::FASTIO_FDS {
            return;
        }
        if file.vsock_stream().is_some() {
            self.fds().bind_fast(fd);
        }
    }

    /// The descriptor table.
    pub fn fds(&self) -> MutexGuard<'_, FdTable> {
        lock(&self.fds)
    }

    /// The address space.
    pub fn mm(&self) -> MutexGuard<'_, mm::AddressSpace> {
        lock(&self.mm)
    }

    /// The current working directory.
    pub fn cwd(&self) -> MutexGuard<'_, String> {
        lock(&self.cwd)
    }

    /// Sets the directory the program starts in (the init spec's `cwd`); `Err` when `path` is
    /// not a directory of the image tree (the lookup's errno, or `ENOTDIR`).
    pub fn set_initial_cwd(&self, path: &str) -> Result<(), Errno> {
        let ino = self.fs.lookup(fs::ROOT_INO, path.as_bytes(), true)?;
        if !self.fs.is_dir(ino) {
            return Err(Errno::ENOTDIR);
        }
        *self.cwd() = self.fs.path_of(ino);
        Ok(())
    }

    /// Which guest addresses the program has mapped (for [`UserMemory::with_map`]).
    pub fn map_view(&self) -> mm::MapView {
        self.map_view.clone()
    }

    /// Installs the thread spawner (once, by the VMM, before the program starts).
    pub fn set_spawner(&self, spawner: Arc<dyn ThreadSpawner>) {
        let _ = self.spawner.set(spawner);
    }

    /// The enclave's vsock endpoint.
    pub fn vsock(&self) -> Option<Arc<vsock::VsockHub>> {
        self.config.vsock.clone()
    }

    /// The thread spawner, if threads are supported by the host side.
    pub fn spawner(&self) -> Option<&Arc<dyn ThreadSpawner>> {
        self.spawner.get()
    }

    /// Reserves a thread id and a live-thread slot; `None` at [`MAX_THREADS`].
    pub fn reserve_thread(&self) -> Option<u64> {
        let live = self.live_threads.fetch_add(1, Ordering::AcqRel);
        if live >= MAX_THREADS {
            self.live_threads.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(self.next_tid.fetch_add(1, Ordering::AcqRel))
    }

    /// Records that a thread has ended; returns true when it was the last one.
    pub fn thread_ended(&self) -> bool {
        self.live_threads.fetch_sub(1, Ordering::AcqRel) == 1
    }

    /// Threads alive now.
    pub fn live_threads(&self) -> u64 {
        self.live_threads.load(Ordering::Acquire)
    }

    /// True once the enclave is ending.
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Sleeps up to `d`, returning early (false) when the enclave is ending.
    pub fn sleep(&self, d: Duration) -> bool {
        let deadline = std::time::Instant::now() + d;
        loop {
            if self.stopping() {
                return false;
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return true;
            }
            std::thread::sleep((deadline - now).min(Duration::from_millis(50)));
        }
    }

    /// Serves system call `nr` with `args`; returns the value for RAX.
    pub fn dispatch(&self, ctx: &mut Ctx<'_, '_>, nr: u64, args: &Args) -> u64 {
        if self.calls.fetch_add(1, Ordering::Relaxed) == 0 {
            // The program is up: Nitro's boot heartbeat, before its first call is served.
            if let Some(hub) = &self.config.vsock {
                if let Some(hb) = hub.heartbeat() {
                    hb.beat(hub, &self.stop);
                }
            }
        }
        if self.config.bare && nr != sys_proc::NR_EXIT && nr != sys_proc::NR_EXIT_GROUP {
            return 0;
        }
        let result = match self.table.get(nr) {
            Some(entry) => (entry.handler)(self, ctx, args),
            None => {
                if self.config.debug && lock(&self.unknown_reported).insert(nr) {
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

    /// Numbers of the unknown calls seen so far (debug reports and tests).
    pub fn unknown_calls(&self) -> Vec<u64> {
        let mut v: Vec<u64> = lock(&self.unknown_reported).iter().copied().collect();
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
            vsock: Some(Arc::new(vsock::VsockHub::new(16, vec![]))),
            nsm: None,
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
    fn initial_cwd_must_be_a_directory_of_the_tree() {
        let config = KernelConfig {
            debug: false,
            cpu_count: 1,
            console: None,
            hostname: "t".into(),
            bare: false,
            vsock: None,
            nsm: None,
        };
        let tree = fs::ImageTree::new(vec![
            fs::TreeEntry {
                path: "app/data".into(),
                mode: libc::S_IFDIR | 0o755,
                data: vec![],
            },
            fs::TreeEntry {
                path: "file".into(),
                mode: libc::S_IFREG | 0o644,
                data: b"x".to_vec(),
            },
        ])
        .unwrap();
        let mm = mm::AddressSpace::new(0x40_0000, 0x80_0000).unwrap();
        let k = Kernel::new(config, 1 << 24, mm, Arc::new(tree));
        assert_eq!(k.cwd().as_str(), "/");
        k.set_initial_cwd("/app//data/").unwrap();
        assert_eq!(k.cwd().as_str(), "/app/data");
        assert_eq!(k.set_initial_cwd("/file"), Err(Errno::ENOTDIR));
        assert!(k.set_initial_cwd("/missing").is_err());
        assert_eq!(k.cwd().as_str(), "/app/data");
    }

    #[test]
    fn unknown_calls_get_enosys_and_one_report_in_debug_mode() {
        let ram = GuestRam::new(crate::layout::MIN_GUEST_MEMORY, Backing::Anonymous).unwrap();
        let mem = crate::memory::UserMemory::new(&ram, &[]);
        for debug in [true, false] {
            let cap = Arc::new(Capture::default());
            let k = kernel(debug, cap.clone(), &ram);
            let mut cpu = NoCpu;
            let mut thread = ThreadState {
                tid: 1,
                clear_child_tid: 0,
            };
            for nr in [57u64, 57, 9999, u64::MAX] {
                let mut ctx = Ctx {
                    mem: &mem,
                    cpu: &mut cpu,
                    thread: &mut thread,
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

    /// Runs [`hostile_sweep`] in a process of its own (this test binary, filtered to it), so
    /// the memory bound measures the sweep alone and not the tests running beside it.
    #[test]
    fn hostile_arguments_never_panic_or_grow_the_host() {
        let exe = std::env::current_exe().unwrap();
        let out = std::process::Command::new(exe)
            .args([
                "--exact",
                "kernel::tests::hostile_sweep",
                "--ignored",
                "--test-threads=1",
                "--nocapture",
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "the sweep failed:\n{text}");
        assert!(text.contains("1 passed"), "the sweep did not run:\n{text}");
    }

    /// Every implemented call, thousands of times, with adversarial arguments: no panic, no
    /// host memory growth beyond a bound, and every result either a value or a Linux errno.
    #[test]
    #[ignore = "run in its own process by hostile_arguments_never_panic_or_grow_the_host"]
    fn hostile_sweep() {
        const WILD: [u64; 18] = [
            0,
            1,
            40, // AF_VSOCK, so sockets get created and then abused
            3,  // a likely descriptor number
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
        let k = kernel(true, cap, &ram);
        let view = k.map_view();
        let mem = crate::memory::UserMemory::with_map(&ram, &[], view);
        let mut cpu = NoCpu;
        let mut thread = ThreadState {
            tid: 1,
            clear_child_tid: 0,
        };
        // With the stop flag raised, calls that would block (sleeps, polls, futex waits, reads
        // of empty pipes, accepts) return at once instead of hanging the sweep.
        k.stop.store(true, std::sync::atomic::Ordering::Release);
        let entries: Vec<table::Syscall> = table::Table::new()
            .entries()
            .filter(|s| s.name != "clone" && s.name != "clone3")
            .collect();
        let before = rss_kib();
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut created = 0u32;
        for round in 0..3000 {
            for s in &entries {
                let mut args = [0u64; 6];
                for a in &mut args {
                    let r = next();
                    *a = if r % 3 == 0 {
                        r
                    } else {
                        WILD[usize::try_from(r % 18).unwrap()]
                    };
                }
                let mut ctx = Ctx {
                    mem: &mem,
                    cpu: &mut cpu,
                    thread: &mut thread,
                    exit: None,
                };
                let ret = k.dispatch(&mut ctx, s.nr, &args);
                let signed = ret.cast_signed();
                assert!(
                    signed >= -4095,
                    "{} returned {ret:#x}, neither a value nor an errno",
                    s.name
                );
                let made = ["socket", "eventfd2", "pipe2", "epoll_create1"].contains(&s.name);
                if signed >= 0 && made {
                    created += 1;
                }
            }
            if round % 500 == 0 {
                // Close whatever the calls opened so descriptors do not run out for the rest,
                // then put a fresh vsock socket at 3 and a listening one at 4 for the abuse.
                for fd in 3..file::MAX_FDS as u64 {
                    let _ = k.fds().remove(fd);
                }
                let mut ctx = Ctx {
                    mem: &mem,
                    cpu: &mut cpu,
                    thread: &mut thread,
                    exit: None,
                };
                assert_eq!(k.dispatch(&mut ctx, 41, &[40, 1, 0, 0, 0, 0]), 3);
                assert_eq!(k.dispatch(&mut ctx, 41, &[40, 1, 0, 0, 0, 0]), 4);
                let addr = socket::VsockAddr {
                    cid: u32::MAX,
                    port: 7000 + round,
                };
                ram.write(0x30_0000, &addr.to_bytes()).unwrap();
                mem.check(0x30_0000, 16).unwrap();
                assert_eq!(k.dispatch(&mut ctx, 49, &[4, 0x30_0000, 16, 0, 0, 0]), 0);
                assert_eq!(k.dispatch(&mut ctx, 50, &[4, 8, 0, 0, 0, 0]), 0);
            }
        }
        assert!(
            created > 0,
            "the sweep never created a socket, pipe, eventfd or epoll"
        );
        let grown = rss_kib().saturating_sub(before);
        assert!(grown < 64 * 1024, "host memory grew by {grown} KiB");
    }
}
