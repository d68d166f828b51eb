//! The memory checks a launch makes, as functions `run-enclave` and `validate-eif` share: the
//! guest memory size must be usable (between [`layout::MIN_GUEST_MEMORY`] and
//! [`layout::MAX_GUEST_MEMORY`], a multiple of [`layout::LARGE_PAGE_SIZE`]), and the program's
//! segments must end below the heap/mmap area's top, under the stack and its guard (the check
//! `vmm::build` makes before it loads the program).

use crate::elf::LoadPlan;
use crate::layout;

/// Why a guest memory size cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PreflightError {
    /// Out of range or not a multiple of 2 MiB.
    #[error("--memory {mib} MiB is not a usable guest memory size: give between {min} MiB and {max} MiB, a multiple of 2 MiB", min = layout::MIN_GUEST_MEMORY >> 20, max = layout::MAX_GUEST_MEMORY >> 20)]
    BadMemory {
        /// The size given.
        mib: u64,
    },
    /// The program does not fit.
    #[error("--memory {mib} MiB is too small for the program: its segments end at {image_end:#x}, above the {stack} MiB stack and its guard; give --memory {need} or more", stack = layout::STACK_SIZE >> 20)]
    TooSmall {
        /// The size given.
        mib: u64,
        /// First address after the program image.
        image_end: u64,
        /// The least usable size, MiB.
        need: u64,
    },
}

/// Checks that `mib` is a usable guest memory size; returns it in bytes.
pub fn memory_bytes(mib: u64) -> Result<u64, PreflightError> {
    let size = mib.checked_mul(1 << 20);
    match size {
        Some(s)
            if (layout::MIN_GUEST_MEMORY..=layout::MAX_GUEST_MEMORY).contains(&s)
                && s % layout::LARGE_PAGE_SIZE == 0 =>
        {
            Ok(s)
        }
        _ => Err(PreflightError::BadMemory { mib }),
    }
}

/// Whether the program planned as `plan` fits a guest of `size` bytes (as `vmm::build` checks).
pub fn fits(plan: &LoadPlan, size: u64) -> bool {
    plan.image_end < layout::mmap_top(size)
}

/// The least usable guest memory in MiB that the program planned as `plan` fits, if any.
pub fn min_memory_mib(plan: &LoadPlan) -> Option<u64> {
    let step = layout::LARGE_PAGE_SIZE;
    let mut size = layout::MIN_GUEST_MEMORY.next_multiple_of(step);
    while size <= layout::MAX_GUEST_MEMORY {
        if fits(plan, size) {
            return Some(size >> 20);
        }
        // The stack and its guard sit at the top: the first fitting size is at most one
        // step above image_end + stack + guard, so jump close to it.
        let floor = plan
            .image_end
            .saturating_add(layout::STACK_SIZE)
            .next_multiple_of(step);
        size = size.saturating_add(step).max(floor);
    }
    None
}

/// Checks `mib` for the program planned as `plan`: a usable size it fits in.
pub fn check_memory(plan: &LoadPlan, mib: u64) -> Result<(), PreflightError> {
    let size = memory_bytes(mib)?;
    if fits(plan, size) {
        return Ok(());
    }
    Err(PreflightError::TooSmall {
        mib,
        image_end: plan.image_end,
        need: min_memory_mib(plan).unwrap_or(layout::MAX_GUEST_MEMORY >> 20),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(image_end: u64) -> LoadPlan {
        LoadPlan {
            base: 0,
            entry: layout::PIE_LOAD_BASE,
            phdr: layout::PIE_LOAD_BASE,
            phnum: 1,
            segments: Vec::new(),
            image_end,
            pie: false,
        }
    }

    #[test]
    fn sizes_outside_the_range_or_not_2mib_are_refused() {
        assert!(memory_bytes(64).is_ok());
        assert_eq!(memory_bytes(15), Err(PreflightError::BadMemory { mib: 15 }));
        assert_eq!(memory_bytes(65), Err(PreflightError::BadMemory { mib: 65 }));
        assert!(memory_bytes(u64::MAX).is_err());
    }

    #[test]
    fn the_minimum_is_the_least_size_that_fits() {
        let small = plan(layout::PIE_LOAD_BASE + (1 << 20));
        let min = min_memory_mib(&small).unwrap();
        assert!(min >= layout::MIN_GUEST_MEMORY >> 20);
        assert!(fits(&small, min << 20));
        assert!(min == layout::MIN_GUEST_MEMORY >> 20 || !fits(&small, (min - 2) << 20));
        let big = plan(200 << 20);
        let min = min_memory_mib(&big).unwrap();
        assert!(fits(&big, min << 20));
        assert!(!fits(&big, (min - 2) << 20));
        assert!(check_memory(&big, min).is_ok());
        let err = check_memory(&big, min - 2).unwrap_err();
        assert!(
            err.to_string().contains(&format!("--memory {min} or more")),
            "{err}"
        );
    }
}
