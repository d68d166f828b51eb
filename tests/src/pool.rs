//! Carving a pool for a [`TestEnv`] and finding what enclaves left behind.

use std::fmt;
use std::time::{Duration, Instant};

use crate::testenv::{Sharing, TestEnv};

/// `hugepages` in `allocator.toml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hugepages {
    /// Hugepages if the kernel gives them all, else locked 4 KiB pages.
    Auto,
    /// Hugepages or an error.
    Require,
    /// Locked 4 KiB pages only.
    Never,
}

/// A pool to apply: the fields of `allocator.toml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSpec {
    /// `memory_mib`.
    pub memory_mib: u64,
    /// `cpu_count`.
    pub cpu_count: u32,
    /// `sharing`.
    pub sharing: Sharing,
    /// `hugepages`; `None` leaves the key out (the default, auto).
    pub hugepages: Option<Hugepages>,
}

impl PoolSpec {
    /// An exclusive pool with the default hugepage policy.
    pub fn new(memory_mib: u64, cpu_count: u32) -> Self {
        Self {
            memory_mib,
            cpu_count,
            sharing: Sharing::Exclusive,
            hugepages: None,
        }
    }

    /// The `allocator.toml` text.
    pub fn to_toml(&self) -> String {
        let mut text = format!(
            "memory_mib = {}\ncpu_count = {}\nsharing = \"{}\"\n",
            self.memory_mib,
            self.cpu_count,
            self.sharing.as_toml()
        );
        if let Some(h) = self.hugepages {
            let h = match h {
                Hugepages::Auto => "auto",
                Hugepages::Require => "require",
                Hugepages::Never => "never",
            };
            text.push_str(&format!("hugepages = \"{h}\"\n"));
        }
        text
    }
}

/// Per-enclave state that must be gone once no enclave runs. The record an enclave that ended
/// by itself keeps (a run directory holding only `state.json` with the outcome and
/// `console.log`, see `enclave_runtime::records`) is not a leftover; anything more in it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Leftovers {
    /// `enc-*` run directories under the run root that are not just a record.
    pub run_dirs: Vec<String>,
    /// `enc-*` run directories that are records of ended enclaves (not leftovers).
    pub records: Vec<String>,
    /// Files in `<run root>/claims/`.
    pub claims: Vec<String>,
    /// `enc-*` child cgroups of the pool cpuset.
    pub cgroups: Vec<String>,
}

impl Leftovers {
    /// Nothing left.
    pub fn is_empty(&self) -> bool {
        self.run_dirs.is_empty() && self.claims.is_empty() && self.cgroups.is_empty()
    }
}

impl fmt::Display for Leftovers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "run dirs {:?}, claims {:?}, enclave cgroups {:?} (records of ended enclaves: {:?})",
            self.run_dirs, self.claims, self.cgroups, self.records
        )
    }
}

fn names(dir: &std::path::Path, keep: impl Fn(&str, bool) -> bool) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<String> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
            keep(&name, is_dir).then_some(name)
        })
        .collect();
    v.sort();
    v
}

/// Whether `dir` holds nothing but the record of an ended enclave: a `state.json` with an
/// outcome (or of a VMM that died), and at most a `console.log`.
pub fn is_only_record(dir: &std::path::Path) -> bool {
    enclave_runtime::records::read(dir).is_some()
        && names(dir, |_, _| true)
            .iter()
            .all(|n| enclave_runtime::records::RECORD_FILES.contains(&n.as_str()))
}

impl TestEnv {
    /// Writes `allocator.toml` for `spec` and runs `enclave allocator apply`; returns the
    /// applied pool (its JSON).
    ///
    /// # Panics
    /// When the config cannot be written or `allocator apply` fails.
    #[track_caller]
    pub fn apply_pool(&self, spec: &PoolSpec) -> serde_json::Value {
        self.write_allocator_toml(&spec.to_toml())
            .unwrap_or_else(|e| panic!("{e}"));
        self.cli(["allocator", "apply"]).ok().json()
    }

    /// `enclave allocator show`, as JSON.
    ///
    /// # Panics
    /// When the command fails.
    #[track_caller]
    pub fn pool_status(&self) -> serde_json::Value {
        self.cli(["allocator", "show"]).ok().json()
    }

    /// What enclaves left behind right now.
    pub fn leftovers(&self) -> Leftovers {
        let enc = |name: &str, is_dir: bool| is_dir && name.starts_with("enc-");
        let root = self.run_root();
        let (records, run_dirs) = names(&root, enc)
            .into_iter()
            .partition(|name| is_only_record(&root.join(name)));
        Leftovers {
            run_dirs,
            records,
            claims: names(&self.run_root().join("claims"), |_, _| true),
            cgroups: self
                .cgroup_dir()
                .map(|dir| names(&dir, enc))
                .unwrap_or_default(),
        }
    }

    /// Waits up to `timeout` for [`TestEnv::leftovers`] to be empty and returns the last
    /// look (VMMs remove their run directory a moment after reporting the outcome).
    pub fn leftovers_after(&self, timeout: Duration) -> Leftovers {
        let deadline = Instant::now() + timeout;
        loop {
            let left = self.leftovers();
            if left.is_empty() || Instant::now() >= deadline {
                return left;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Asserts that no enclave state is left: claims and enclave cgroups right now (a VMM
    /// gives them back before it reports the end), run directories within a few seconds.
    ///
    /// # Panics
    /// When something is left.
    #[track_caller]
    pub fn assert_no_leftovers(&self, context: &str) {
        let now = self.leftovers();
        assert!(
            now.claims.is_empty() && now.cgroups.is_empty(),
            "{context}: left behind {now}"
        );
        let left = self.leftovers_after(Duration::from_secs(5));
        assert!(left.is_empty(), "{context}: left behind {left}");
    }
}
