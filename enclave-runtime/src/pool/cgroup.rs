//! cpuset cgroups: finding the controller in `/proc/self/mountinfo` (cgroup v1 `cpuset`
//! mount preferred, else cgroup2 with `cpuset` in `cgroup.controllers`), creating the pool and
//! per-enclave cpusets, attaching threads and tearing cgroups down (tasks moved to the parent
//! before `rmdir`).

use std::io::{ErrorKind, Write};
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::cpulist::CpuList;
use super::error::{io_err, PoolError, Result};

/// Which cgroup hierarchy holds the cpuset controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupVersion {
    /// Legacy hierarchy: `cpuset.cpu_exclusive`, `tasks`.
    V1,
    /// Unified hierarchy: `cpuset.cpus.partition`, `cgroup.threads`.
    V2,
}

/// A mounted cpuset controller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpusetMount {
    /// Mount point (the root cgroup's directory).
    pub root: PathBuf,
    /// Hierarchy version.
    pub version: CgroupVersion,
    /// Whether v1 control files carry the `cpuset.` prefix (no `noprefix` mount option).
    pub prefixed: bool,
}

/// Decodes the octal escapes (`\040`) of a mountinfo path.
fn unescape(field: &str) -> PathBuf {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let value = bytes[i + 1..i + 4]
                .iter()
                .fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
            if let Ok(byte) = u8::try_from(value) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

/// Finds the cpuset controller from `/proc/self/mountinfo`.
pub fn find_cpuset_mount() -> Result<CpusetMount> {
    let path = Path::new("/proc/self/mountinfo");
    let text = std::fs::read_to_string(path).map_err(io_err("read", path))?;
    let mut v2 = None;
    for line in text.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let pre: Vec<&str> = pre.split(' ').collect();
        let post: Vec<&str> = post.split(' ').collect();
        let (Some(mount_point), Some(fstype)) = (pre.get(4), post.first()) else {
            continue;
        };
        let super_opts: Vec<&str> = post
            .get(2)
            .map(|o| o.split(',').collect())
            .unwrap_or_default();
        let root = unescape(mount_point);
        if *fstype == "cgroup" && super_opts.contains(&"cpuset") {
            let prefixed = !super_opts.contains(&"noprefix");
            return Ok(CpusetMount {
                root,
                version: CgroupVersion::V1,
                prefixed,
            });
        }
        if *fstype == "cgroup2" && v2.is_none() {
            let controllers =
                std::fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
            if controllers.split_whitespace().any(|c| c == "cpuset") {
                v2 = Some(CpusetMount {
                    root,
                    version: CgroupVersion::V2,
                    prefixed: true,
                });
            }
        }
    }
    v2.ok_or(PoolError::NoCpuset)
}

impl CpusetMount {
    /// Name of a `cpuset.*` control file (`name` without the prefix, e.g. `"cpus"`).
    pub fn cpuset_file(&self, name: &str) -> String {
        if self.prefixed {
            format!("cpuset.{name}")
        } else {
            name.to_owned()
        }
    }

    /// The file listing a cgroup's threads (`tasks` on v1, `cgroup.threads` on v2).
    pub fn threads_file(&self) -> &'static str {
        match self.version {
            CgroupVersion::V1 => "tasks",
            CgroupVersion::V2 => "cgroup.threads",
        }
    }

    /// Creates `dir` as a cpuset with `cpus`, the parent's memory nodes and, if `exclusive`,
    /// exclusive CPUs (v1 `cpu_exclusive`, v2 isolated partition for the pool / plain for
    /// children). `pool_level` is true for the pool cgroup itself. A cgroup left over at `dir`
    /// is removed first. On error nothing is left behind.
    pub fn create(
        &self,
        dir: &Path,
        cpus: &CpuList,
        exclusive: bool,
        pool_level: bool,
    ) -> Result<()> {
        if dir.exists() {
            self.remove_tree(dir)?;
        }
        let parent = dir.parent().unwrap_or(&self.root).to_owned();
        if self.version == CgroupVersion::V2 {
            // Children of the unified root need the controller enabled in the parent.
            let _ = write_file(&parent.join("cgroup.subtree_control"), "+cpuset");
        }
        std::fs::create_dir(dir).map_err(io_err("create cgroup directory", dir))?;
        let result = self.configure(dir, &parent, cpus, exclusive, pool_level);
        if result.is_err() {
            let _ = self.remove_tree(dir);
        }
        result
    }

    fn configure(
        &self,
        dir: &Path,
        parent: &Path,
        cpus: &CpuList,
        exclusive: bool,
        pool_level: bool,
    ) -> Result<()> {
        let cpus_file = dir.join(self.cpuset_file("cpus"));
        write_file(&cpus_file, &cpus.to_string())?;
        let mems_name = self.cpuset_file("mems");
        let parent_mems = std::fs::read_to_string(parent.join(&mems_name)).unwrap_or_default();
        let parent_mems = parent_mems.trim();
        let parent_mems = if parent_mems.is_empty() {
            std::fs::read_to_string(parent.join(self.cpuset_file("mems.effective")))
                .unwrap_or_default()
        } else {
            parent_mems.to_owned()
        };
        if !parent_mems.trim().is_empty() {
            write_file(&dir.join(&mems_name), parent_mems.trim())?;
        }
        match self.version {
            CgroupVersion::V1 if exclusive => {
                let path = dir.join(self.cpuset_file("cpu_exclusive"));
                if let Err(e) = write_file(&path, "1") {
                    let source = match e {
                        PoolError::CgroupWrite { source, .. } => source,
                        other => return Err(other),
                    };
                    let holders = overlapping_siblings(self, dir, cpus);
                    return Err(PoolError::ExclusiveConflict {
                        cpus: cpus.clone(),
                        path: dir.to_owned(),
                        holders,
                        source,
                    });
                }
            }
            CgroupVersion::V2 if pool_level => {
                let path = dir.join("cpuset.cpus.partition");
                if write_file(&path, "isolated").is_err() {
                    write_file(&path, "root")?;
                }
                let state = std::fs::read_to_string(&path).unwrap_or_default();
                if state.contains("invalid") {
                    return Err(PoolError::ExclusiveConflict {
                        cpus: cpus.clone(),
                        path: dir.to_owned(),
                        holders: format!("the kernel reports partition {:?}", state.trim()),
                        source: std::io::Error::from(ErrorKind::InvalidInput),
                    });
                }
                let _ = write_file(&dir.join("cgroup.subtree_control"), "+cpuset");
            }
            CgroupVersion::V2 => {
                // Threads of one process can only be spread over threaded cgroups.
                let _ = write_file(&dir.join("cgroup.type"), "threaded");
            }
            CgroupVersion::V1 => {}
        }
        Ok(())
    }

    /// Moves every thread of `dir` to its parent, removes child cgroups depth-first, then
    /// `dir` itself. A missing `dir` is not an error.
    pub fn remove_tree(&self, dir: &Path) -> Result<()> {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err("list cgroup", dir)(e)),
        };
        for entry in entries.flatten() {
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                self.remove_tree(&entry.path())?;
            }
        }
        let parent = dir.parent().unwrap_or(&self.root);
        for attempt in 0..50 {
            self.evacuate(dir, parent);
            match std::fs::remove_dir(dir) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
                Err(e) if attempt < 49 && e.raw_os_error() == Some(libc::EBUSY) => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => return Err(io_err("remove cgroup", dir)(e)),
            }
        }
        Ok(())
    }

    /// Moves the threads (v1) or processes (v2) of `dir` into `parent`; vanished tasks are
    /// skipped.
    fn evacuate(&self, dir: &Path, parent: &Path) {
        let file = match self.version {
            CgroupVersion::V1 => "tasks",
            CgroupVersion::V2 => "cgroup.procs",
        };
        let tasks = std::fs::read_to_string(dir.join(file)).unwrap_or_default();
        for tid in tasks.split_whitespace() {
            if let Err(e) = write_file(&parent.join(file), tid) {
                tracing::debug!(%tid, error = %e, "could not move task out of cgroup");
            }
        }
    }

    /// Adds thread `tid` to the cgroup `dir`.
    pub fn attach(&self, dir: &Path, tid: i32) -> Result<()> {
        write_file(&dir.join(self.threads_file()), &tid.to_string())
    }

    /// Moves every thread of process `pid` into `dir` (`cgroup.procs`).
    pub fn attach_process(&self, dir: &Path, pid: u32) -> Result<()> {
        write_file(&dir.join("cgroup.procs"), &pid.to_string())
    }
}

/// Describes sibling cpusets of `dir` whose CPUs overlap `cpus`.
fn overlapping_siblings(mount: &CpusetMount, dir: &Path, cpus: &CpuList) -> String {
    let parent = dir.parent().unwrap_or(&mount.root);
    let mut found = Vec::new();
    for entry in std::fs::read_dir(parent).into_iter().flatten().flatten() {
        let path = entry.path();
        if path == dir || !path.is_dir() {
            continue;
        }
        let text =
            std::fs::read_to_string(path.join(mount.cpuset_file("cpus"))).unwrap_or_default();
        if let Ok(theirs) = text.parse::<CpuList>() {
            let common = theirs.intersection(cpus);
            if !common.is_empty() {
                found.push(format!("{} holds {}", path.display(), common));
            }
        }
    }
    if found.is_empty() {
        "the kernel refused (the parent cpuset may not be exclusive)".into()
    } else {
        format!("sibling cpusets overlap: {}", found.join(", "))
    }
}

/// Writes `value` to an existing control file.
pub(crate) fn write_file(path: &Path, value: &str) -> Result<()> {
    let err = |source| PoolError::CgroupWrite {
        path: path.to_owned(),
        value: value.to_owned(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(err)?;
    f.write_all(value.as_bytes()).map_err(err)
}
