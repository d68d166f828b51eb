//! A tiny vocabulary for writing allow-lists as data: a list is a set of [`Allow`] entries
//! (a system call, unconditionally or when its arguments match), merged into the map that
//! seccompiler compiles.

use std::collections::BTreeMap;

use seccompiler::{SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompRule};

/// One condition on an argument: `arg[index] & mask == value`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArgCheck {
    /// Argument index (0..6).
    pub index: u8,
    /// Bits compared (`u64::MAX`: the whole argument).
    pub mask: u64,
    /// Expected value of the masked bits.
    pub value: u64,
}

/// `arg[index] == value` (whole 64-bit argument).
pub const fn arg_eq(index: u8, value: u64) -> ArgCheck {
    ArgCheck {
        index,
        mask: u64::MAX,
        value,
    }
}

/// `arg[index] & mask == 0`: none of the bits of `mask` set.
pub const fn arg_clear(index: u8, mask: u64) -> ArgCheck {
    ArgCheck {
        index,
        mask,
        value: 0,
    }
}

/// One entry of an allow-list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allow {
    /// System call number (x86_64).
    pub nr: i64,
    /// Argument conditions, all of which must hold; empty: any arguments.
    pub when: Vec<ArgCheck>,
}

/// Allows `nr` with any arguments.
pub fn any(nr: i64) -> Allow {
    Allow {
        nr,
        when: Vec::new(),
    }
}

/// Allows `nr` when every check holds.
pub fn when(nr: i64, checks: &[ArgCheck]) -> Allow {
    Allow {
        nr,
        when: checks.to_vec(),
    }
}

/// Allows `nr` with any arguments, for each number in `nrs`.
pub fn all(nrs: &[i64]) -> Vec<Allow> {
    nrs.iter().copied().map(any).collect()
}

/// Merges entries into seccompiler's map: an unconditional entry wins over conditional ones
/// for the same call; conditional entries of one call are alternatives (any may match).
pub fn to_map(
    entries: &[Allow],
) -> Result<BTreeMap<i64, Vec<SeccompRule>>, seccompiler::BackendError> {
    let mut unconditional = std::collections::BTreeSet::new();
    let mut map: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for e in entries {
        if e.when.is_empty() {
            unconditional.insert(e.nr);
            continue;
        }
        let conds = e
            .when
            .iter()
            .map(|c| {
                let op = if c.mask == u64::MAX {
                    SeccompCmpOp::Eq
                } else {
                    SeccompCmpOp::MaskedEq(c.mask)
                };
                SeccompCondition::new(c.index, SeccompCmpArgLen::Qword, op, c.value)
            })
            .collect::<Result<Vec<_>, _>>()?;
        map.entry(e.nr).or_default().push(SeccompRule::new(conds)?);
    }
    for nr in unconditional {
        map.insert(nr, Vec::new());
    }
    Ok(map)
}

/// The distinct system calls of a list (for counts and reports).
pub fn distinct(entries: &[Allow]) -> std::collections::BTreeSet<i64> {
    entries.iter().map(|e| e.nr).collect()
}
