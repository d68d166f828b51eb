//! Reserving and returning 2 MiB hugepages through sysfs. `nr_hugepages` is global to the
//! host, so we only ever move it by the number of pages we added ourselves.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::error::{io_err, PoolError, Result};

/// The sysfs directory of the 2 MiB hugepage pool.
pub const HUGEPAGES_2M_DIR: &str = "/sys/kernel/mm/hugepages/hugepages-2048kB";

/// MiB per hugepage.
pub const HUGEPAGE_MIB: u64 = 2;

/// Counters of the 2 MiB hugepage pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HugepageCounts {
    /// `nr_hugepages`: persistent pages in the pool.
    pub total: u64,
    /// `free_hugepages`: pages not in use.
    pub free: u64,
}

fn file(name: &str) -> PathBuf {
    Path::new(HUGEPAGES_2M_DIR).join(name)
}

fn read_u64(path: &Path) -> Result<u64> {
    let text = std::fs::read_to_string(path).map_err(io_err("read", path))?;
    text.trim().parse().map_err(|_| PoolError::Io {
        what: "parse the number in",
        path: path.to_owned(),
        source: std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{:?}", text.trim()),
        ),
    })
}

/// Reads the current counters.
pub fn counts() -> Result<HugepageCounts> {
    Ok(HugepageCounts {
        total: read_u64(&file("nr_hugepages"))?,
        free: read_u64(&file("free_hugepages"))?,
    })
}

fn write_total(total: u64) -> Result<()> {
    let path = file("nr_hugepages");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(io_err("open", &path))?;
    f.write_all(total.to_string().as_bytes())
        .map_err(io_err("write", &path))
}

/// Pages needed for `mib` MiB (rounded up).
pub fn pages_for(mib: u64) -> u64 {
    mib.div_ceil(HUGEPAGE_MIB)
}

/// Outcome of [`reserve`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    /// All pages were added; this many.
    Added(u64),
    /// The kernel gave only `got` of `wanted`; the reservation was undone.
    Short {
        /// Pages asked for.
        wanted: u64,
        /// Pages the kernel added before we undid it.
        got: u64,
    },
}

/// Raises `nr_hugepages` by `pages` and checks that `free_hugepages` rose by as much.
/// On a short reservation `nr_hugepages` is put back to what it was.
pub fn reserve(pages: u64) -> Result<Reservation> {
    let before = counts()?;
    let target = before.total.saturating_add(pages);
    // The kernel may refuse part of it (EINVAL/ENOMEM on some kernels); the counters tell.
    let write = write_total(target);
    let after = counts()?;
    let got = after.free.saturating_sub(before.free);
    if write.is_ok() && got >= pages && after.total >= target {
        return Ok(Reservation::Added(pages));
    }
    write_total(before.total)?;
    tracing::warn!(
        wanted = pages,
        got,
        "kernel gave fewer 2 MiB hugepages than asked; undone"
    );
    Ok(Reservation::Short { wanted: pages, got })
}

/// Lowers `nr_hugepages` by exactly `pages` (the pages we added).
pub fn unreserve(pages: u64) -> Result<()> {
    if pages == 0 {
        return Ok(());
    }
    let now = counts()?;
    write_total(now.total.saturating_sub(pages))
}
