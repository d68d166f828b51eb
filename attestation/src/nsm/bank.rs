//! The NSM's PCR bank: 32 SHA-384 registers with lock bits. Extend is `SHA384(old ‖ data)`;
//! a locked register refuses extends; `lock_range(n)` locks `[0, n)`. Every index comes from
//! the enclave, so every lookup is fallible.

use std::collections::{BTreeMap, BTreeSet};

use super::types::ErrorCode;
use crate::pcr::{extend, Measurements, Pcr, PCR_ZERO};

/// Number of PCRs.
pub const PCR_COUNT: usize = 32;
/// Registers locked at boot: `[0, LOCKED_AT_BOOT)`.
pub const LOCKED_AT_BOOT: u16 = 16;

/// Why a PCR operation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PcrError {
    /// Index ≥ 32.
    #[error("PCR index {index} does not exist: the bank has {PCR_COUNT} registers (0-31)")]
    InvalidIndex {
        /// The index.
        index: u16,
    },
    /// Register locked.
    #[error("PCR {index} is locked: only unlocked registers (16-31 at boot) can be extended")]
    ReadOnly {
        /// The index.
        index: u16,
    },
    /// Range over 32.
    #[error("Cannot lock PCRs [0, {range}): the range must be at most {PCR_COUNT}")]
    InvalidRange {
        /// The range.
        range: u16,
    },
}

impl PcrError {
    /// The NSM error code for this failure, as AWS's NSM reports it.
    pub fn error_code(self) -> ErrorCode {
        match self {
            Self::InvalidIndex { .. } | Self::InvalidRange { .. } => ErrorCode::InvalidIndex,
            Self::ReadOnly { .. } => ErrorCode::ReadOnlyIndex,
        }
    }
}

/// The PCR values an enclave boots with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootPcrs {
    /// PCR0/1/2 (and PCR8 if signed) of the image.
    pub image: Option<Measurements>,
    /// PCR4: the parent host's identity.
    pub pcr4: Pcr,
}

impl Default for BootPcrs {
    fn default() -> Self {
        Self {
            image: None,
            pcr4: PCR_ZERO,
        }
    }
}

/// 32 registers and their lock bits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PcrBank {
    values: [Pcr; PCR_COUNT],
    locked: [bool; PCR_COUNT],
}

impl Default for PcrBank {
    fn default() -> Self {
        Self::new()
    }
}

impl PcrBank {
    /// All zero, all unlocked.
    pub fn new() -> Self {
        Self {
            values: [PCR_ZERO; PCR_COUNT],
            locked: [false; PCR_COUNT],
        }
    }

    /// The bank at enclave boot: PCR0/1/2/8 from the image (all zero in debug mode, as on
    /// Nitro), PCR4 the parent's identity, 0–15 locked, 16–31 empty and unlocked.
    pub fn at_boot(boot: &BootPcrs, debug: bool) -> Self {
        let mut bank = Self::new();
        if let (Some(m), false) = (boot.image, debug) {
            bank.values[0] = m.pcr0;
            bank.values[1] = m.pcr1;
            bank.values[2] = m.pcr2;
            bank.values[8] = m.pcr8.unwrap_or(PCR_ZERO);
        }
        bank.values[4] = boot.pcr4;
        for l in bank.locked.iter_mut().take(usize::from(LOCKED_AT_BOOT)) {
            *l = true;
        }
        bank
    }

    fn slot(index: u16) -> Result<usize, PcrError> {
        let i = usize::from(index);
        if i < PCR_COUNT {
            Ok(i)
        } else {
            Err(PcrError::InvalidIndex { index })
        }
    }

    /// Value and lock bit of PCR `index`.
    pub fn describe(&self, index: u16) -> Result<(bool, Pcr), PcrError> {
        let i = Self::slot(index)?;
        Ok((self.locked[i], self.values[i]))
    }

    /// Extends PCR `index` with `data`; returns the new value.
    pub fn extend(&mut self, index: u16, data: &[u8]) -> Result<Pcr, PcrError> {
        let i = Self::slot(index)?;
        if self.locked[i] {
            return Err(PcrError::ReadOnly { index });
        }
        self.values[i] = extend(&self.values[i], data);
        Ok(self.values[i])
    }

    /// Locks PCR `index` (locking a locked register is a no-op).
    pub fn lock(&mut self, index: u16) -> Result<(), PcrError> {
        let i = Self::slot(index)?;
        self.locked[i] = true;
        Ok(())
    }

    /// Locks PCRs `[0, range)`.
    pub fn lock_range(&mut self, range: u16) -> Result<(), PcrError> {
        let n = usize::from(range);
        if n > PCR_COUNT {
            return Err(PcrError::InvalidRange { range });
        }
        for l in self.locked.iter_mut().take(n) {
            *l = true;
        }
        Ok(())
    }

    /// Indexes of locked registers.
    pub fn locked(&self) -> BTreeSet<u16> {
        (0u16..)
            .zip(self.locked.iter())
            .filter(|(_, l)| **l)
            .map(|(i, _)| i)
            .collect()
    }

    /// Locked registers and their values: what an attestation document reports.
    pub fn locked_values(&self) -> BTreeMap<u16, Pcr> {
        (0u16..)
            .zip(self.locked.iter().zip(self.values.iter()))
            .filter(|(_, (l, _))| **l)
            .map(|(i, (_, v))| (i, *v))
            .collect()
    }
}
