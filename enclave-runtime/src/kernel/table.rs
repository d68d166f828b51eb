//! The system-call table as data: number → name and handler, assembled from the per-family
//! tables of the `sys_*` modules (gVisor's `linux64.go` is the model).

use super::{Args, Ctx, Kernel, SysResult};

/// A system-call handler.
pub type Handler = fn(&Kernel, &mut Ctx<'_, '_>, &Args) -> SysResult;

/// One supported system call.
#[derive(Clone, Copy)]
pub struct Syscall {
    /// x86_64 number.
    pub nr: u64,
    /// Linux name.
    pub name: &'static str,
    /// Handler.
    pub handler: Handler,
}

/// Highest system-call number plus one that the table indexes.
const TABLE_SIZE: usize = 512;

/// Dense lookup table built once per kernel.
pub struct Table {
    entries: Vec<Option<Syscall>>,
}

/// Every family's table.
fn families() -> [&'static [Syscall]; 8] {
    [
        super::sys_socket::TABLE,
        super::sys_event::TABLE,
        super::sys_thread::TABLE,
        super::sys_file::TABLE,
        super::sys_mm::TABLE,
        super::sys_proc::TABLE,
        super::sys_time::TABLE,
        super::sys_info::TABLE,
    ]
}

impl Table {
    /// Builds the dense table.
    pub fn new() -> Self {
        let mut entries = vec![None; TABLE_SIZE];
        for family in families() {
            for s in family {
                if let Ok(i) = usize::try_from(s.nr) {
                    if let Some(slot) = entries.get_mut(i) {
                        debug_assert!(slot.is_none(), "syscall {} registered twice", s.name);
                        *slot = Some(*s);
                    }
                }
            }
        }
        Self { entries }
    }

    /// Every registered call.
    pub fn entries(&self) -> impl Iterator<Item = Syscall> + '_ {
        self.entries.iter().flatten().copied()
    }

    /// Looks up a number that came from the guest.
    pub fn get(&self, nr: u64) -> Option<&Syscall> {
        usize::try_from(nr)
            .ok()
            .and_then(|i| self.entries.get(i))
            .and_then(Option::as_ref)
    }
}

impl Default for Table {
    fn default() -> Self {
        Self::new()
    }
}

/// Linux name of a system call number, for reports ("?" when the number is unassigned).
pub fn name_of(nr: u64) -> &'static str {
    usize::try_from(nr)
        .ok()
        .and_then(|i| super::names::NAMES.get(i))
        .copied()
        .filter(|n| !n.is_empty())
        .unwrap_or("?")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_no_duplicates_and_bounds_lookups() {
        let t = Table::new();
        let mut seen = std::collections::HashSet::new();
        for family in families() {
            for s in family {
                assert!(seen.insert(s.nr), "{} twice", s.name);
                assert!(t.get(s.nr).is_some());
            }
        }
        assert!(t.get(u64::MAX).is_none());
        assert_eq!(name_of(0), "read");
        assert_eq!(name_of(56), "clone");
        assert_eq!(name_of(u64::MAX), "?");
        for family in families() {
            for s in family {
                assert_eq!(name_of(s.nr), s.name, "table name of {}", s.nr);
            }
        }
        assert!(t.get(100_000).is_none());
    }
}
