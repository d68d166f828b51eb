//! `enclave doctor`: what this host offers enclaves and what it lacks, each finding with the
//! command that fixes it. Asks the same code the launch uses (`host_caps` for KVM, the pool's
//! config, cgroup and hugepage code, the CA loader, the seccomp mode). Exits 1 when something
//! `run-enclave` needs is missing.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use attestation::ca::{self, Ca};
use enclave_runtime::host_caps;
use enclave_runtime::pool::{self, CgroupVersion, PoolConfig, PoolPaths};

use super::findings::{chain, Findings, Level};

/// Capability bits (linux/capability.h) the carve-out and the VMM use.
const CAPS: [(u32, &str, &str); 2] = [
    (14, "CAP_IPC_LOCK", "locked 4 KiB guest memory"),
    (21, "CAP_SYS_ADMIN", "cpuset cgroups"),
];

/// Runs `doctor`.
pub fn run(json: bool) -> anyhow::Result<i32> {
    let paths = PoolPaths::from_env();
    let mut f = Findings::default();
    check_kvm(&mut f);
    check_privileges(&mut f);
    check_cpuset(&mut f);
    check_seccomp(&mut f);
    check_run_root(&paths, &mut f);
    check_config(&paths, &mut f);
    check_pool(&paths, &mut f);
    check_hugepages(&mut f);
    check_ca(&mut f);
    let value = serde_json::json!({
        "Ready": !f.has_error(),
        "Errors": f.count(Level::Error),
        "Warnings": f.count(Level::Warning),
        "Findings": f.0,
    });
    let subject = if f.has_error() {
        "run-enclave cannot work on this host yet"
    } else {
        "this host can run enclaves"
    };
    f.print(json, &value, subject)
}

fn check_kvm(f: &mut Findings) {
    let kind = host_caps::kvm_kind();
    match kind {
        Some("kvm_pvm") => f.ok(
            "kvm-kind",
            "software KVM (kvm_pvm, /sys/module/kvm_pvm): guest ring 3 runs natively, each system call costs ~100 µs",
        ),
        Some(k) => f.ok("kvm-kind", format!("hardware KVM ({k})")),
        None => f.warn(
            "kvm-kind",
            "no kvm_intel, kvm_amd or kvm_pvm module is loaded (KVM may be built in)",
            "`modprobe kvm_intel` (or kvm_amd); in a VM enable nested virtualisation",
        ),
    }
    let dev = Path::new("/dev/kvm");
    if !dev.exists() {
        f.error(
            "kvm-device",
            "/dev/kvm does not exist",
            "`modprobe kvm_intel` (or `modprobe kvm_amd`); in a VM enable nested virtualisation",
        );
        return;
    }
    if let Err(e) = std::fs::OpenOptions::new().read(true).write(true).open(dev) {
        f.error(
            "kvm-device",
            format!("/dev/kvm exists but cannot be opened read-write: {e}"),
            "run as root (`sudo enclave …`) or `sudo usermod -aG kvm $USER` and log in again",
        );
        return;
    }
    f.ok("kvm-device", "/dev/kvm opens read-write");
    match host_caps::kvm_caps() {
        Ok(caps) => {
            for c in caps {
                let check = c.name.trim_start_matches("KVM_CAP_").to_lowercase();
                let check = format!("kvm-cap-{check}");
                match (c.present, c.required) {
                    (true, _) => f.ok(&check, format!("{}: {}", c.name, c.used_for)),
                    (false, true) => f.error(
                        &check,
                        format!("{} is missing; the VMM needs it for {}", c.name, c.used_for),
                        "use a newer kernel's KVM (hardware KVM or kvm_pvm)",
                    ),
                    (false, false) => f.warn(
                        &check,
                        format!(
                            "{} is missing: {} (enclaves run, slower)",
                            c.name, c.used_for
                        ),
                        "use a newer kernel's KVM",
                    ),
                }
            }
        }
        Err(e) => f.error(
            "kvm-caps",
            format!("cannot ask KVM for its capabilities: {e}"),
            "check `dmesg | grep -i kvm`",
        ),
    }
    if let Ok(n) = host_caps::max_vcpus() {
        f.ok("kvm-vcpus", format!("up to {n} vCPUs per enclave"));
    }
}

/// Bits of `CapEff` in /proc/self/status.
fn effective_caps() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

fn check_privileges(f: &mut Findings) {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    let caps = effective_caps().unwrap_or(0);
    let missing: Vec<&str> = CAPS
        .iter()
        .filter(|(bit, _, _)| caps & (1u64 << bit) == 0)
        .map(|(_, name, _)| *name)
        .collect();
    if missing.is_empty() && euid == 0 {
        f.ok(
            "privileges",
            format!(
                "euid {euid}; has {}",
                CAPS.iter()
                    .map(|(_, n, why)| format!("{n} ({why})"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
    } else {
        f.error(
            "privileges",
            format!(
                "euid {euid}{}: the pool's cpusets, hugepages and locked guest memory need root",
                if missing.is_empty() {
                    String::new()
                } else {
                    format!(" lacks {}", missing.join(", "))
                }
            ),
            "run the enclave commands as root: `sudo enclave …`",
        );
    }
}

fn check_cpuset(f: &mut Findings) {
    match pool::find_cpuset_mount() {
        Ok(m) => {
            let v = match m.version {
                CgroupVersion::V1 => "cgroup v1 (exclusive cpusets)",
                CgroupVersion::V2 => "cgroup v2 (isolated partition)",
            };
            f.ok(
                "cpuset",
                format!("cpuset controller at {}: {v}", m.root.display()),
            );
        }
        Err(e) => f.error(
            "cpuset",
            format!("no cpuset cgroup controller: {}", chain(&e)),
            "cgroup v2: `echo +cpuset | sudo tee /sys/fs/cgroup/cgroup.subtree_control`; cgroup v1: `sudo mkdir -p /sys/fs/cgroup/cpuset && sudo mount -t cgroup -o cpuset cpuset /sys/fs/cgroup/cpuset`",
        ),
    }
}

fn check_seccomp(f: &mut Findings) {
    let actions = std::fs::read_to_string("/proc/sys/kernel/seccomp/actions_avail");
    let mode = enclave_runtime::seccomp::Mode::from_env();
    match actions {
        Ok(a) if a.split_whitespace().any(|x| x == "kill_process") => {
            if mode == enclave_runtime::seccomp::Mode::Kill {
                f.ok(
                    "seccomp",
                    "seccomp filters with kill_process are available; VMM threads run filtered",
                );
            } else {
                f.warn(
                    "seccomp",
                    format!(
                        "{}={} turns the VMM's filters off or to logging (debugging only)",
                        enclave_runtime::seccomp::MODE_ENV,
                        mode.as_str()
                    ),
                    format!("`unset {}`", enclave_runtime::seccomp::MODE_ENV),
                );
            }
        }
        _ => f.error(
            "seccomp",
            "the kernel offers no seccomp filters with kill_process (/proc/sys/kernel/seccomp/actions_avail)",
            "use a kernel built with CONFIG_SECCOMP_FILTER (Linux ≥ 4.14), or for debugging only run with ENCLAVE_SECCOMP=off",
        ),
    }
}

/// Whether the calling process may write to `path` (`access(W_OK)`).
fn writable(path: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c` is a NUL-terminated string that outlives the call; access only reads it.
    unsafe { libc::access(c.as_ptr(), libc::W_OK) == 0 }
}

fn check_run_root(paths: &PoolPaths, f: &mut Findings) {
    let root = &paths.run_root;
    let existing = root.ancestors().find(|p| p.exists());
    match existing {
        Some(p) if writable(p) => f.ok(
            "run-root",
            format!(
                "{} {} (ENCLAVE_RUN_ROOT moves it)",
                root.display(),
                if p == root.as_path() {
                    "is writable".to_owned()
                } else {
                    format!("can be created in {}", p.display())
                }
            ),
        ),
        _ => f.error(
            "run-root",
            format!("{} is not writable", root.display()),
            format!(
                "run as root, or point {} at a writable directory",
                pool::ENV_RUN_ROOT
            ),
        ),
    }
}

/// Online CPUs and available memory, for sizing the pool.
fn host_size() -> String {
    let cpus = pool::online_cpus().map_or_else(
        |_| "? CPUs".to_owned(),
        |c| format!("online CPUs {c}, CPU 0 stays with the parent"),
    );
    let avail = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemAvailable:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or_else(|| "? MiB".to_owned(), |kib| format!("{} MiB", kib >> 10));
    format!("{cpus}; {avail} of memory available")
}

/// A starting `allocator.toml`, as `printf` input.
const CONFIG_EXAMPLE: &str = "memory_mib = 512\\ncpu_count = 1\\n";

fn check_config(paths: &PoolPaths, f: &mut Findings) {
    let path = &paths.config;
    let fix = format!(
        "`sudo mkdir -p {dir} && printf '{CONFIG_EXAMPLE}' | sudo tee {path} && sudo enclave allocator apply` (size memory_mib and cpu_count to your enclaves; {env} moves the file)",
        dir = path.parent().unwrap_or(Path::new("/")).display(),
        path = path.display(),
        env = pool::ENV_CONFIG
    );
    if !path.exists() {
        f.error(
            "allocator-config",
            format!(
                "no allocator config at {} (this host: {})",
                path.display(),
                host_size()
            ),
            fix,
        );
        return;
    }
    let checked = PoolConfig::load(path).and_then(|c| {
        let online = pool::online_cpus()?;
        c.select_cpus(&online, path).map(|cpus| (c, cpus))
    });
    match checked {
        Ok((c, cpus)) => f.ok(
            "allocator-config",
            format!(
                "{}: {} MiB, CPUs {cpus}, sharing {:?}, hugepages {:?}",
                path.display(),
                c.memory_mib,
                c.sharing,
                c.hugepages
            ),
        ),
        Err(e) => f.error(
            "allocator-config",
            format!("{} is invalid: {}", path.display(), chain(&e)),
            fix,
        ),
    }
}

fn check_pool(paths: &PoolPaths, f: &mut Findings) {
    if !paths.state_file().exists() {
        f.error(
            "pool",
            format!(
                "no pool is applied ({} does not exist): enclaves have no CPUs or memory",
                paths.state_file().display()
            ),
            "`sudo enclave allocator apply`",
        );
        return;
    }
    match pool::show(paths) {
        Ok(s) => {
            let free_cpus = s.free_cpus.iter().count();
            let msg = format!(
                "applied: CPUs {} ({}), {} MiB {:?}; free for enclaves: {free_cpus} CPU(s) [{}], {} MiB",
                s.pool.cpus, s.isolation, s.pool.memory_mib, s.pool.backing, s.free_cpus, s.free_memory_mib
            );
            if free_cpus == 0 && s.pool.sharing == pool::Sharing::Exclusive {
                f.warn(
                    "pool",
                    msg,
                    "every pool CPU is taken: `enclave terminate-enclave --enclave-id <id>`, or more CPUs in the config and `sudo enclave allocator apply`",
                );
            } else {
                f.ok("pool", msg);
            }
        }
        Err(e) => f.error(
            "pool",
            format!("the pool state is unreadable: {}", chain(&e)),
            "`sudo enclave allocator release --force && sudo enclave allocator apply`",
        ),
    }
}

fn check_hugepages(f: &mut Findings) {
    match pool::hugepage_counts() {
        Ok(c) => f.ok(
            "hugepages",
            format!(
                "2 MiB hugepages: {} reserved, {} free ({})",
                c.total,
                c.free,
                pool::HUGEPAGES_2M_DIR
            ),
        ),
        Err(e) => f.warn(
            "hugepages",
            format!(
                "no 2 MiB hugepages ({}): guest memory will be locked 4 KiB pages",
                chain(&e)
            ),
            "use a kernel with CONFIG_HUGETLBFS, or set `hugepages = \"never\"` in the allocator config",
        ),
    }
}

fn check_ca(f: &mut Findings) {
    let dir = ca::default_dir();
    let fix = format!(
        "`sudo enclave ca init --dir {}` (or set {} to an existing CA)",
        dir.display(),
        ca::CA_DIR_ENV
    );
    if !dir.join(ca::ROOT_CERT).exists() {
        f.warn(
            "ca",
            format!(
                "no attestation CA in {}: enclaves run, but /dev/nsm cannot sign attestation documents",
                dir.display()
            ),
            fix,
        );
        return;
    }
    let loaded = Ca::load(&dir);
    let ca = match loaded {
        Ok(ca) => ca,
        Err(e) => {
            f.warn(
                "ca",
                format!(
                    "the CA in {} cannot be loaded: {}",
                    dir.display(),
                    chain(&e)
                ),
                fix,
            );
            return;
        }
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    for (name, der) in [
        ("root", ca.root_der()),
        ("host intermediate", ca.intermediate_der()),
    ] {
        let Ok(cert) = attestation::ca::keys::cert_from_pem_or_der(der) else {
            continue;
        };
        let v = cert.tbs_certificate().validity();
        if now > v.not_after.to_unix_duration() || now < v.not_before.to_unix_duration() {
            f.warn(
                "ca",
                format!(
                    "the CA's {name} certificate in {} is not valid now (valid {} to {}): attestation documents would not verify",
                    dir.display(),
                    v.not_before,
                    v.not_after
                ),
                format!(
                    "move {} aside and run `sudo enclave ca init --dir {}`; then update verifiers' pinned root",
                    dir.display(),
                    dir.display()
                ),
            );
            return;
        }
    }
    f.ok(
        "ca",
        format!(
            "attestation CA in {} loads; root and host intermediate are valid now",
            dir.display()
        ),
    );
}
