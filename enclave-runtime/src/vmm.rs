//! Assembling an enclave: guest memory, the program image, system structures, the enclave
//! kernel and vCPU 0, then running it to an [`Outcome`].

use std::sync::Arc;
use std::time::Instant;

use attestation::pcr::Measurements;
use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::Kvm;

use crate::boot;
use crate::image::{self, BootImage, ImageError};
use crate::kernel::console::ConsoleSink;
use crate::kernel::fs::{FsError, ImageTree};
use crate::kernel::mm::AddressSpace;
use crate::kernel::{Kernel, KernelConfig};
use crate::layout;
use crate::memory::{Backing, GuestRam, MemoryError};
use crate::program::{self, ProgramError, ProgramImage, INIT_PATH};
use crate::stack::{self, StackError};
use crate::threads::{Stopper, Threads, VmHandles};
use crate::vcpu::{Outcome, Vcpu, VcpuError};

/// Longest the end of a program waits for its transmit rings to reach the parent.
const EXIT_FLUSH_LIMIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Why an enclave could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum VmmError {
    /// `/dev/kvm` unusable.
    #[error("cannot open /dev/kvm: check that KVM is available and that you may use it (root or the kvm group)")]
    Kvm(#[source] kvm_ioctls::Error),
    /// A VM-level ioctl failed.
    #[error("KVM refused {0}")]
    VmIoctl(&'static str, #[source] kvm_ioctls::Error),
    /// The image cannot be booted.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// A launch helper thread panicked.
    #[error("a launch helper thread (image measurement, attestation identity) failed")]
    Helper,
    /// The program image (a dynamic program's interpreter, most often).
    #[error(transparent)]
    Program(#[from] ProgramError),
    /// Guest memory.
    #[error(transparent)]
    Memory(#[from] MemoryError),
    /// The program does not fit in the requested memory.
    #[error("the program image ends at {image_end:#x} but guest memory leaves only {avail:#x} for it; raise --memory")]
    TooSmall {
        /// End of the program image.
        image_end: u64,
        /// Address where the stack begins.
        avail: u64,
    },
    /// The initial stack.
    #[error(transparent)]
    Stack(#[from] StackError),
    /// The image's file tree.
    #[error("the image's file tree is invalid")]
    Tree(#[source] FsError),
    /// The init spec's working directory is not a directory of the image.
    #[error("the image's working directory {cwd} is not a directory of its file tree: rebuild the image with a working directory that exists")]
    Cwd {
        /// The cwd of the init spec.
        cwd: String,
    },
    /// vCPU set-up.
    #[error(transparent)]
    Vcpu(#[from] VcpuError),
    /// Writing boot structures (cannot happen with a validated layout).
    #[error("internal error: boot structures do not fit guest memory")]
    Layout,
}

/// Everything needed to launch one enclave.
#[derive(Clone)]
pub struct LaunchConfig {
    /// Guest memory in MiB.
    pub memory_mib: u64,
    /// Number of vCPUs.
    pub cpu_count: u32,
    /// Debug mode (console output, unknown-call reports).
    pub debug: bool,
    /// Host backing of guest memory.
    pub backing: Backing,
    /// Console sink (debug mode only; ignored otherwise).
    pub console: Option<Arc<dyn ConsoleSink>>,
    /// Host name reported to the program.
    pub hostname: String,
    /// Benchmark mode (see [`KernelConfig::bare`]).
    pub bare: bool,
    /// The enclave's vsock endpoint (CID and parent socket directory).
    pub vsock: Option<Arc<crate::kernel::vsock::VsockHub>>,
    /// The enclave's attestation identity, served at `/dev/nsm`; `None`: no `/dev/nsm`.
    pub attestation: Option<Arc<crate::attest::Attestation>>,
    /// Where the VMM's host-side threads run (the vsock transmit drainer); the default leaves
    /// them where they are created.
    pub host_cpus: crate::pool::HostCpus,
}

/// Timings of the launch, for benchmarks and logs.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct LaunchTimings {
    /// Microseconds to unpack and check the image.
    pub unpack_us: u64,
    /// Microseconds to map memory, load the program and create the VM and vCPU.
    pub build_us: u64,
    /// Of `build_us`: mapping guest memory and writing the program, tables and stack into it.
    pub memory_us: u64,
    /// Of `build_us`: creating the VM, registering its memory and creating vCPU 0.
    pub vm_us: u64,
}

/// An enclave ready to run.
pub struct Enclave {
    vcpu0: Option<Vcpu>,
    kernel: Arc<Kernel>,
    threads: Arc<Threads>,
    ram: Arc<GuestRam>,
    /// Launch timings.
    pub timings: LaunchTimings,
    /// The image's measurements.
    pub measurements: attestation::pcr::Measurements,
}

fn micros(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// Builds an enclave from EIF bytes.
pub fn prepare(eif: &[u8], config: &LaunchConfig) -> Result<Enclave, VmmError> {
    build_unpacked(unpack(eif)?, config)
}

/// A checked, unpacked image: the first half of [`prepare`], for launchers that overlap other
/// work (issuing the attestation leaf) with the second, [`build_unpacked`].
pub struct Unpacked {
    img: BootImage,
    unpack_us: u64,
}

/// Unpacks and checks `eif` (CRC, sections, ABI, init spec, root tree, measurements).
pub fn unpack(eif: &[u8]) -> Result<Unpacked, VmmError> {
    let t0 = Instant::now();
    let img = image::unpack(eif)?;
    Ok(Unpacked {
        img,
        unpack_us: micros(t0),
    })
}

/// [`unpack`] without the measurements, which [`LateParts`] then supplies (from
/// [`image::measure`] run on another thread).
pub fn unpack_unmeasured(eif: &[u8]) -> Result<Unpacked, VmmError> {
    let t0 = Instant::now();
    let img = image::unpack_unmeasured(eif)?;
    Ok(Unpacked {
        img,
        unpack_us: micros(t0),
    })
}

/// What a launcher may compute beside the build and hand over only when the kernel is made:
/// the image's measurements and the attestation identity.
#[derive(Default)]
pub struct LateParts {
    /// Replaces the unpacked image's measurements.
    pub measurements: Option<Measurements>,
    /// Replaces [`LaunchConfig::attestation`].
    pub attestation: Option<Arc<crate::attest::Attestation>>,
}

/// Builds the VM of an unpacked image (the second half of [`prepare`]).
pub fn build_unpacked(unpacked: Unpacked, config: &LaunchConfig) -> Result<Enclave, VmmError> {
    build_unpacked_with(unpacked, config, || Ok(LateParts::default()))
}

/// [`build_unpacked`], calling `late` after guest memory, the VM and vCPU 0 exist, just before
/// the enclave kernel is made: work it waits for overlaps with the build.
pub fn build_unpacked_with(
    unpacked: Unpacked,
    config: &LaunchConfig,
    late: impl FnOnce() -> Result<LateParts, VmmError>,
) -> Result<Enclave, VmmError> {
    build(
        unpacked.img,
        config,
        unpacked.unpack_us,
        Instant::now(),
        late,
    )
}

fn build(
    mut img: BootImage,
    config: &LaunchConfig,
    unpack_us: u64,
    t1: Instant,
    late: impl FnOnce() -> Result<LateParts, VmmError>,
) -> Result<Enclave, VmmError> {
    let tree = ImageTree::new(std::mem::take(&mut img.tree)).map_err(VmmError::Tree)?;
    let init = program::read_file(&tree, INIT_PATH).ok_or(ImageError::NoInit)?;
    let program = ProgramImage::plan(&init, &tree)?;
    let plan = program.page_plan();
    let size = config
        .memory_mib
        .checked_mul(1 << 20)
        .ok_or(MemoryError::BadSize { size: u64::MAX })?;
    let ram = Arc::new(GuestRam::new(size, config.backing)?);
    let mmap_top = layout::mmap_top(size);
    if plan.image_end >= mmap_top {
        return Err(VmmError::TooSmall {
            image_end: plan.image_end,
            avail: mmap_top,
        });
    }
    boot::write_system_area(&ram, &plan).map_err(|_| VmmError::Layout)?;
    boot::load_program(&ram, &init, &program.main).map_err(|_| VmmError::Layout)?;
    if let Some(interp) = &program.interp {
        boot::load_program(&ram, &interp.bytes, &interp.plan).map_err(|_| VmmError::Layout)?;
    }
    let mut random = [0u8; 16];
    crate::kernel::sys_info::host_random(&mut random).map_err(|_| VmmError::Layout)?;
    let st = stack::build(
        layout::stack_top(size),
        layout::STACK_STRINGS_MAX,
        &img.spec.argv,
        &img.spec.env,
        &program.main,
        program.interp_base(),
        random,
        stack::host_hwcap(),
    )?;
    ram.write(st.base, &st.bytes)
        .map_err(|_| VmmError::Layout)?;

    let memory_us = micros(t1);
    let t_vm = Instant::now();
    let kvm = Arc::new(Kvm::new().map_err(VmmError::Kvm)?);
    let vm = Arc::new(
        kvm.create_vm()
            .map_err(|e| VmmError::VmIoctl("KVM_CREATE_VM", e))?,
    );
    let region = kvm_userspace_memory_region {
        slot: 0,
        flags: 0,
        guest_phys_addr: 0,
        memory_size: ram.size(),
        userspace_addr: ram.host_address(),
    };
    // SAFETY: the region describes `ram`'s mapping. The VM is only used through the enclave's
    // `Threads`, which hold an Arc of `ram` as long as they hold the VM, so the mapping outlives
    // every guest entry; KVM tolerates the mapping going away after the last vCPU stopped
    // (`VmHandles`, which may keep the VM longer, cannot run a vCPU).
    unsafe { vm.set_user_memory_region(region) }
        .map_err(|e| VmmError::VmIoctl("KVM_SET_USER_MEMORY_REGION", e))?;
    let vcpu = Vcpu::new(&kvm, &vm, 0, program.start(), st.sp)?;
    let vm_us = micros(t_vm);

    let read_only: Arc<[(u64, u64)]> = plan
        .segments
        .iter()
        .filter(|s| !s.perms.write)
        .map(|s| (s.addr, s.addr + s.mem_len))
        .collect();
    let mm = AddressSpace::new(plan.image_end, mmap_top)
        .map_err(|_| VmmError::TooSmall {
            image_end: plan.image_end,
            avail: mmap_top,
        })?
        .with_stack_start(layout::stack_bottom(size));
    let mm = match program.exec_area {
        Some((start, end)) => mm.with_exec_area(start, end),
        None => mm,
    };
    let late = late()?;
    if let Some(m) = late.measurements {
        img.measurements = m;
    }
    let attestation = late.attestation.or_else(|| config.attestation.clone());
    let kconfig = KernelConfig {
        debug: config.debug,
        cpu_count: config.cpu_count.max(1),
        console: if config.debug {
            config.console.clone()
        } else {
            None
        },
        hostname: config.hostname.clone(),
        bare: config.bare,
        vsock: config.vsock.clone(),
        nsm: attestation
            .as_ref()
            .map(|a| Arc::new(a.device(&img.measurements, config.debug))),
    };
    let kernel = Arc::new(Kernel::new(kconfig, size, mm, Arc::new(tree)));
    if let Some(fastio) = fast_io(&vm, &ram, &kernel, config.host_cpus) {
        kernel.set_fastio(fastio);
    }
    if let Some(cwd) = &img.spec.cwd {
        kernel
            .set_initial_cwd(cwd)
            .map_err(|_| VmmError::Cwd { cwd: cwd.clone() })?;
    }
    let threads = Threads::new(kvm, vm, &kernel, ram.clone(), read_only);
    kernel.set_spawner(threads.clone());
    Ok(Enclave {
        vcpu0: Some(vcpu),
        kernel,
        threads,
        ram,
        timings: LaunchTimings {
            unpack_us,
            build_us: micros(t1),
            memory_us,
            vm_us,
        },
        measurements: img.measurements,
    })
}

/// The vsock fast path of an enclave with vsock. Its kick is registered with KVM only when
/// the program's first vsock stream is bound (see `FastIo::open_gate`).
fn fast_io(
    vm: &Arc<kvm_ioctls::VmFd>,
    ram: &Arc<GuestRam>,
    kernel: &Kernel,
    host_cpus: crate::pool::HostCpus,
) -> Option<Arc<crate::kernel::fastio::FastIo>> {
    kernel.config.vsock.as_ref()?;
    let register = crate::kernel::fastio::register_with(vm.clone());
    match crate::kernel::fastio::FastIo::new(ram.clone(), register, kernel.stop.clone(), host_cpus)
    {
        Ok(f) => Some(Arc::new(f)),
        Err(e) => {
            tracing::debug!("no vsock fast path: {e:?}");
            None
        }
    }
}

impl Enclave {
    /// Runs the program on the calling thread (its first thread; more threads get their own)
    /// until it ends or [`Enclave::stopper`] stops it. An enclave runs once.
    pub fn run(&mut self) -> Outcome {
        let outcome = match self.vcpu0.take() {
            Some(vcpu) => self.threads.run_main(vcpu),
            None => return Outcome::Terminated,
        };
        if let Some(f) = self.kernel.fastio() {
            // What the program wrote through the fast path before it ended still reaches the
            // parent (Linux sends a socket's queued bytes after the process is gone).
            f.flush_all(Instant::now() + EXIT_FLUSH_LIMIT);
            f.clear();
        }
        outcome
    }

    /// A handle to end the program from another thread.
    pub fn stopper(&self) -> Stopper {
        Stopper(self.threads.clone())
    }

    /// The VM's handles, for a launcher that destroys the VM after announcing the end.
    pub fn vm_handles(&self) -> VmHandles {
        self.threads.vm_handles()
    }

    /// Guest memory (for footprint reports).
    pub fn ram(&self) -> &GuestRam {
        &self.ram
    }

    /// The enclave kernel (statistics).
    pub fn kernel(&self) -> &Kernel {
        &self.kernel
    }

    /// A shared handle to the enclave kernel (to watch it from another thread).
    pub fn kernel_handle(&self) -> Arc<Kernel> {
        self.kernel.clone()
    }

    /// How the first vCPU moves registers (synced or ioctl), before it runs.
    pub fn register_access(&self) -> Option<crate::vcpu::RegisterAccess> {
        self.vcpu0.as_ref().map(Vcpu::register_access)
    }
}
