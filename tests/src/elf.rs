//! Just enough ELF64 reading to tell how a guest program is linked.

use std::path::Path;

use crate::error::{io_err, HarnessError};

/// `e_type` of a position-dependent executable.
pub const ET_EXEC: u16 = 2;
/// `e_type` of a shared object or position-independent executable.
pub const ET_DYN: u16 = 3;
/// Program header type of the interpreter request.
pub const PT_INTERP: u32 = 3;
/// Program header type of the dynamic section.
pub const PT_DYNAMIC: u32 = 2;

/// What the ELF header and program headers say about linking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElfInfo {
    /// `e_type`: [`ET_EXEC`] or [`ET_DYN`] for programs.
    pub e_type: u16,
    /// Entry point.
    pub entry: u64,
    /// Types of the program headers, in order.
    pub segment_types: Vec<u32>,
}

impl ElfInfo {
    /// No `PT_INTERP`: the program needs no dynamic loader (static or static-pie).
    pub fn is_static(&self) -> bool {
        !self.segment_types.contains(&PT_INTERP)
    }

    /// Static and position independent (`ET_DYN` without `PT_INTERP`).
    pub fn is_static_pie(&self) -> bool {
        self.is_static() && self.e_type == ET_DYN
    }
}

fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        b.get(off..off.checked_add(2)?)?.try_into().ok()?,
    ))
}
fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(off..off.checked_add(4)?)?.try_into().ok()?,
    ))
}
fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        b.get(off..off.checked_add(8)?)?.try_into().ok()?,
    ))
}

/// Parses the ELF64 little-endian header and program header table of `bytes`.
pub fn parse(bytes: &[u8]) -> Result<ElfInfo, String> {
    if bytes.get(..4) != Some(b"\x7fELF") {
        return Err("no ELF magic".into());
    }
    if bytes.get(4) != Some(&2) || bytes.get(5) != Some(&1) {
        return Err("not ELF64 little-endian".into());
    }
    let short = || "truncated header".to_owned();
    let e_type = u16_at(bytes, 16).ok_or_else(short)?;
    let entry = u64_at(bytes, 24).ok_or_else(short)?;
    let phoff =
        usize::try_from(u64_at(bytes, 32).ok_or_else(short)?).map_err(|_| "e_phoff too large")?;
    let phentsize = usize::from(u16_at(bytes, 54).ok_or_else(short)?);
    let phnum = usize::from(u16_at(bytes, 56).ok_or_else(short)?);
    if phentsize < 56 {
        return Err(format!("e_phentsize {phentsize} < 56"));
    }
    let mut segment_types = Vec::with_capacity(phnum);
    for i in 0..phnum {
        let off = i
            .checked_mul(phentsize)
            .and_then(|o| o.checked_add(phoff))
            .ok_or("e_phoff overflows")?;
        segment_types.push(u32_at(bytes, off).ok_or("program header table out of the file")?);
    }
    Ok(ElfInfo {
        e_type,
        entry,
        segment_types,
    })
}

/// Reads and parses the ELF file at `path`.
pub fn read(path: &Path) -> Result<ElfInfo, HarnessError> {
    let bytes = std::fs::read(path).map_err(io_err("read", path))?;
    parse(&bytes).map_err(|reason| HarnessError::Elf {
        path: path.to_owned(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_garbage() {
        assert!(parse(b"").is_err());
        assert!(parse(b"\x7fELF\x01\x01").is_err());
        let mut hdr = vec![0u8; 64];
        hdr[..6].copy_from_slice(b"\x7fELF\x02\x01");
        hdr[32..40].copy_from_slice(&u64::MAX.to_le_bytes());
        hdr[54] = 56;
        hdr[56] = 1;
        assert!(parse(&hdr).is_err());
    }
}
