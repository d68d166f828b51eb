//! `allocator.toml`: what the operator wants carved out, and its validation against the
//! CPUs the host has online.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::cpulist::CpuList;
use super::error::{io_err, PoolError, Result};

/// Where the list of online CPUs lives.
pub const ONLINE_CPUS: &str = "/sys/devices/system/cpu/online";

/// Whether enclaves may share pool CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sharing {
    /// Every enclave gets CPUs no other enclave holds.
    #[default]
    Exclusive,
    /// Enclaves may share pool CPUs (development on small machines).
    Shared,
}

/// Whether the pool memory is reserved as 2 MiB hugepages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HugepagePolicy {
    /// Hugepages if the kernel gives them all, else locked 4 KiB pages.
    #[default]
    Auto,
    /// Hugepages or an error.
    Require,
    /// Locked 4 KiB pages only.
    Never,
}

/// The parsed `allocator.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    /// MiB of memory for all enclaves together.
    pub memory_mib: u64,
    /// Take this many of the highest-numbered online CPUs (never CPU 0).
    pub cpu_count: Option<u32>,
    /// Take exactly these CPUs (cpulist syntax, e.g. `"1,3-4"`).
    pub cpu_pool: Option<CpuList>,
    /// Whether enclaves may share pool CPUs.
    #[serde(default)]
    pub sharing: Sharing,
    /// Hugepage policy.
    #[serde(default)]
    pub hugepages: HugepagePolicy,
}

impl PoolConfig {
    /// Reads and parses `path` (not yet validated).
    pub fn load(path: &Path) -> Result<Self> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(PoolError::ConfigMissing {
                    path: path.to_owned(),
                })
            }
            Err(e) => return Err(io_err("read", path)(e)),
        };
        Self::parse(&text, path)
    }

    /// Parses config text; `path` is only used in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        toml::from_str(text).map_err(|source| PoolError::ConfigParse {
            path: path.to_owned(),
            source,
        })
    }

    /// Checks the config against the `online` CPUs and returns the pool CPUs it selects.
    /// `path` is only used in errors.
    pub fn select_cpus(&self, online: &CpuList, path: &Path) -> Result<CpuList> {
        let invalid = |reason: String| PoolError::ConfigInvalid {
            path: path.to_owned(),
            reason,
        };
        if self.memory_mib == 0 {
            return Err(invalid(
                "memory_mib = 0; set it to the MiB reserved for all enclaves, e.g. memory_mib = 512".into(),
            ));
        }
        let online_n = online.len();
        let usable = online.iter().filter(|&c| c != 0).count();
        match (&self.cpu_count, &self.cpu_pool) {
            (Some(_), Some(_)) => Err(invalid(
                "both cpu_count and cpu_pool are set; keep exactly one of them".into(),
            )),
            (None, None) => Err(invalid(format!(
                "neither cpu_count nor cpu_pool is set; add one, e.g. cpu_count = 1 (the host has {online_n} online CPUs: {online})"
            ))),
            (Some(count), None) => {
                let count_usize = usize::try_from(*count).unwrap_or(usize::MAX);
                if count_usize == 0 {
                    return Err(invalid("cpu_count = 0; the pool needs at least 1 CPU".into()));
                }
                if count_usize >= online_n || count_usize > usable {
                    return Err(invalid(format!(
                        "cpu_count = {count} but the host has {online_n} online CPUs ({online}) and CPU 0 stays with the parent; use at most cpu_count = {usable}"
                    )));
                }
                Ok(online.iter().rev().filter(|&c| c != 0).take(count_usize).collect())
            }
            (None, Some(pool)) => {
                if pool.is_empty() {
                    return Err(invalid("cpu_pool is empty; list CPUs like cpu_pool = \"1,3-4\"".into()));
                }
                if pool.contains(0) {
                    return Err(invalid(format!(
                        "cpu_pool = \"{pool}\" contains CPU 0; CPU 0 stays with the parent; pick CPUs from 1..{}",
                        online.iter().next_back().unwrap_or(0)
                    )));
                }
                let missing = pool.difference(online);
                if !missing.is_empty() {
                    return Err(invalid(format!(
                        "cpu_pool = \"{pool}\" names CPUs {missing} that do not exist or are offline (online: {online}); pick CPUs from the online list except 0"
                    )));
                }
                Ok(pool.clone())
            }
        }
    }
}

/// Reads the online CPUs from [`ONLINE_CPUS`].
pub fn online_cpus() -> Result<CpuList> {
    let path = PathBuf::from(ONLINE_CPUS);
    let text = std::fs::read_to_string(&path).map_err(io_err("read", &path))?;
    text.parse()
        .map_err(|source| PoolError::CpuList { path, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn select(text: &str, online: &str) -> Result<CpuList> {
        let path = Path::new("allocator.toml");
        PoolConfig::parse(text, path)?.select_cpus(&online.parse().unwrap(), path)
    }

    #[test]
    fn cpu_count_takes_highest() {
        let cpus = select("memory_mib = 8\ncpu_count = 2", "0-5").unwrap();
        assert_eq!(cpus.to_string(), "4-5");
    }

    #[test]
    fn rejects() {
        for (text, needle) in [
            (
                "memory_mib = 8\ncpu_pool = \"0-1\"",
                "CPU 0 stays with the parent",
            ),
            (
                "memory_mib = 8\ncpu_pool = \"1,9\"",
                "CPUs 9 that do not exist",
            ),
            (
                "memory_mib = 8\ncpu_pool = \"1\"\ncpu_count = 1",
                "both cpu_count and cpu_pool",
            ),
            ("memory_mib = 8", "neither"),
            ("memory_mib = 0\ncpu_count = 1", "memory_mib = 0"),
            (
                "memory_mib = 8\ncpu_count = 4",
                "cpu_count = 4 but the host has 4 online CPUs",
            ),
        ] {
            let err = select(text, "0-3").unwrap_err().to_string();
            assert!(err.contains(needle), "{err} should contain {needle}");
        }
        assert!(matches!(
            select("memory_mib = 8\ncpu_count = 1\nsharing = \"maybe\"", "0-3"),
            Err(PoolError::ConfigParse { .. })
        ));
    }
}
