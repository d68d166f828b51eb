//! Guest threads: each runs on its own vCPU and host thread (pinned like the first one, since
//! new host threads inherit the creator's cpuset and affinity). vCPUs of exited threads are
//! kept and reused, so a program that churns threads does not run out of vCPU ids.
//!
//! The program ends at the first of: `exit_group`, a crash, a fatal signal, the exit of its
//! last thread, or a stop from outside. Then every other thread is interrupted (the kernel's
//! stop flag plus a signal that kicks vCPUs out of `KVM_RUN`) and joined.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use kvm_ioctls::{Kvm, VmFd};

use crate::kernel::{Errno, Kernel, ThreadSpawner, ThreadStart, ThreadState};
use crate::memory::{GuestRam, UserMemory};
use crate::vcpu::{kvm_regs_of, Outcome, Vcpu, VcpuEnd};

/// How long ending the program waits for threads to leave `KVM_RUN` and blocking calls.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Signal that interrupts a vCPU thread inside `KVM_RUN` (its handler does nothing).
pub fn kick_signal() -> libc::c_int {
    vmm_sys_util::signal::SIGRTMIN()
}

extern "C" fn on_kick(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}

/// Installs the no-op kick handler (once per process).
pub fn install_kick_handler() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = vmm_sys_util::signal::register_signal_handler(kick_signal(), on_kick);
    });
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The name every thread that runs guest code starts with (`vcpu0`, `vcpu-t<N>`): the cgroup
/// mover finds them by it.
pub const VCPU_THREAD_PREFIX: &str = "vcpu";

/// The KVM handles of an enclave's VM, and nothing else: no vCPU can be made or run through
/// them. Closing the last handle destroys the VM in the host kernel, which takes ~0.6 ms on
/// kvm_pvm; a launcher holding them announces an enclave's end first and destroys its VM
/// after. Guest memory does not wait for them: it is scrubbed and unmapped when the enclave
/// and its handles are dropped, and KVM tolerates a VM outliving its memory once no vCPU runs.
pub struct VmHandles {
    _kvm: Arc<Kvm>,
    _vm: Arc<VmFd>,
}

/// The threads of one enclave.
pub struct Threads {
    me: Weak<Threads>,
    kvm: Arc<Kvm>,
    vm: Arc<VmFd>,
    kernel: Weak<Kernel>,
    ram: Arc<GuestRam>,
    read_only: Arc<[(u64, u64)]>,
    next_vcpu_id: AtomicU64,
    idle: Mutex<Vec<Vcpu>>,
    running: Mutex<HashMap<u64, libc::pthread_t>>,
    handles: Mutex<Vec<std::thread::JoinHandle<()>>>,
    end: Mutex<Option<Outcome>>,
    end_cv: Condvar,
}

impl Threads {
    /// Threads for an enclave whose first vCPU has id 0.
    pub fn new(
        kvm: Arc<Kvm>,
        vm: Arc<VmFd>,
        kernel: &Arc<Kernel>,
        ram: Arc<GuestRam>,
        read_only: Arc<[(u64, u64)]>,
    ) -> Arc<Self> {
        install_kick_handler();
        Arc::new_cyclic(|me| Self {
            me: me.clone(),
            kvm,
            vm,
            kernel: Arc::downgrade(kernel),
            ram,
            read_only,
            next_vcpu_id: AtomicU64::new(1),
            idle: Mutex::new(Vec::new()),
            running: Mutex::new(HashMap::new()),
            handles: Mutex::new(Vec::new()),
            end: Mutex::new(None),
            end_cv: Condvar::new(),
        })
    }

    /// Handles that keep the VM itself (not its memory) in existence; see [`VmHandles`].
    pub fn vm_handles(&self) -> VmHandles {
        VmHandles {
            _kvm: self.kvm.clone(),
            _vm: self.vm.clone(),
        }
    }

    /// Runs the first thread on the calling thread, then waits for the program to end, stops
    /// every other thread and returns the outcome.
    pub fn run_main(&self, vcpu: Vcpu) -> Outcome {
        let Some(kernel) = self.kernel.upgrade() else {
            return Outcome::Terminated;
        };
        let thread = ThreadState {
            tid: crate::kernel::sys_proc::PID,
            clear_child_tid: 0,
        };
        self.worker(&kernel, vcpu, thread);
        let outcome = self.wait_end();
        self.stop_all();
        outcome
    }

    /// Ends the program from outside (terminate request): the outcome is `Terminated` unless
    /// the program already ended by itself.
    pub fn stop(&self) {
        self.finish(Outcome::Terminated);
    }

    fn finish(&self, outcome: Outcome) {
        {
            let mut end = lock(&self.end);
            if end.is_none() {
                *end = Some(outcome);
            }
        }
        if let Some(k) = self.kernel.upgrade() {
            k.stop.store(true, Ordering::Release);
        }
        self.end_cv.notify_all();
        self.kick_all();
    }

    fn wait_end(&self) -> Outcome {
        let mut end = lock(&self.end);
        loop {
            if let Some(o) = end.as_ref() {
                return o.clone();
            }
            end = self
                .end_cv
                .wait(end)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    fn kick_all(&self) {
        let running = lock(&self.running);
        for &t in running.values() {
            // SAFETY: `t` is the pthread of a thread that is still registered, i.e. has not
            // returned from `worker` (it unregisters under this same lock before it ends), so
            // the handle is valid; the kick signal's handler does nothing.
            unsafe { libc::pthread_kill(t, kick_signal()) };
        }
    }

    /// Interrupts every thread until all have left, then joins them.
    fn stop_all(&self) {
        let deadline = Instant::now() + STOP_GRACE;
        while !lock(&self.running).is_empty() && Instant::now() < deadline {
            self.kick_all();
            std::thread::sleep(Duration::from_millis(2));
        }
        let left: Vec<u64> = lock(&self.running).keys().copied().collect();
        if !left.is_empty() {
            tracing::warn!(?left, "threads did not stop in time");
        }
        let handles: Vec<_> = lock(&self.handles).drain(..).collect();
        for h in handles {
            if h.is_finished() {
                let _ = h.join();
            }
        }
    }

    fn worker(&self, kernel: &Arc<Kernel>, mut vcpu: Vcpu, mut thread: ThreadState) {
        // SAFETY: pthread_self has no preconditions.
        let me = unsafe { libc::pthread_self() };
        lock(&self.running).insert(thread.tid, me);
        let end = vcpu.run(kernel, &self.ram, &self.read_only, &mut thread);
        lock(&self.running).remove(&thread.tid);
        match end {
            VcpuEnd::ThreadExit(status) => {
                if thread.clear_child_tid != 0 {
                    let mem = UserMemory::with_map(&self.ram, &self.read_only, kernel.map_view());
                    if mem.write_u32(thread.clear_child_tid, 0).is_ok() {
                        let _ = kernel.futexes.wake(thread.clear_child_tid, 1, u32::MAX);
                    }
                }
                lock(&self.idle).push(vcpu);
                if kernel.thread_ended() {
                    self.finish(Outcome::Exited { status });
                }
            }
            VcpuEnd::Program(outcome) => self.finish(outcome),
        }
    }

    fn vcpu_for(&self, start: &ThreadStart) -> Result<Vcpu, Errno> {
        let reused = lock(&self.idle).pop();
        let mut vcpu = match reused {
            Some(v) => v,
            None => {
                let id = self.next_vcpu_id.fetch_add(1, Ordering::AcqRel);
                Vcpu::create(&self.kvm, &self.vm, id).map_err(|e| {
                    tracing::warn!(error = %e, "cannot create a vCPU for a new thread");
                    Errno::EAGAIN
                })?
            }
        };
        let regs = kvm_regs_of(&start.regs);
        if vcpu.start(&regs, start.fs_base, start.gs_base).is_err() {
            return Err(Errno::EAGAIN);
        }
        Ok(vcpu)
    }
}

impl ThreadSpawner for Threads {
    fn spawn(&self, start: ThreadStart) -> Result<(), Errno> {
        let kernel = self.kernel.upgrade().ok_or(Errno::EAGAIN)?;
        if kernel.stopping() {
            return Err(Errno::EAGAIN);
        }
        let me = self.me.upgrade().ok_or(Errno::EAGAIN)?;
        let vcpu = self.vcpu_for(&start)?;
        let thread = ThreadState {
            tid: start.tid,
            clear_child_tid: start.clear_child_tid,
        };
        let handle = std::thread::Builder::new()
            .name(format!("{VCPU_THREAD_PREFIX}-t{}", start.tid))
            .stack_size(256 << 10)
            .spawn(move || me.worker(&kernel, vcpu, thread))
            .map_err(|_| Errno::EAGAIN)?;
        let mut handles = lock(&self.handles);
        handles.retain(|h| !h.is_finished());
        handles.push(handle);
        Ok(())
    }
}

/// A handle that stops a running enclave from another thread.
#[derive(Clone)]
pub struct Stopper(pub(crate) Arc<Threads>);

impl Stopper {
    /// Ends the program (outcome `Terminated` unless it already ended).
    pub fn stop(&self) {
        self.0.stop();
    }
}
