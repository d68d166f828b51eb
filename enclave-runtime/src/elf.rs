//! Validation and load planning of the enclave program: a static x86_64 ELF64 executable
//! (`ET_EXEC`), a static-pie (`ET_DYN` without an interpreter), or a dynamically linked one
//! (`PT_INTERP`), whose interpreter (`ld.so`, an `ET_DYN`) is planned the same way at its own
//! base.
//!
//! Everything here reads untrusted bytes: every offset and size is checked before use, and the
//! result is a [`LoadPlan`] with guest addresses that all lie inside the program image area.

use crate::layout;

const PT_LOAD: u32 = 1;
const PT_INTERP: u32 = 3;
const PT_PHDR: u32 = 6;
const ET_EXEC: u16 = 2;
const ET_DYN: u16 = 3;
const EM_X86_64: u16 = 62;
const EHDR_SIZE: usize = 64;
const PHDR_SIZE: usize = 56;
/// More program headers than any real static program has.
const MAX_PHDRS: u16 = 128;

/// How to build a program the enclave can run.
pub const STATIC_HINT: &str = "build it static: C with `gcc -static` (or -static-pie), Rust with \
     `RUSTFLAGS=\"-C target-feature=+crt-static\" cargo build --target x86_64-unknown-linux-gnu`";

/// Why a program cannot run in an enclave.
#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    /// Not an ELF file.
    #[error("not an ELF executable (bad magic); the enclave runs static x86_64 Linux ELF programs: {STATIC_HINT}")]
    NotElf,
    /// 32-bit, big-endian or another machine.
    #[error("ELF is not a 64-bit little-endian x86_64 program ({0}); {STATIC_HINT}")]
    WrongArch(&'static str),
    /// A shared library, core file or object file.
    #[error("ELF type {0} is not an executable (need ET_EXEC or static-pie ET_DYN)")]
    NotExecutable(u16),
    /// Dynamically linked.
    #[error("the program is dynamically linked (it asks for the interpreter {0}): pack it with `enclave build-enclave --with-libs`, or {STATIC_HINT}")]
    Dynamic(String),
    /// A header points outside the file or is malformed.
    #[error("malformed ELF: {0}")]
    Malformed(&'static str),
    /// A segment does not fit the enclave's program area.
    #[error("segment at {vaddr:#x} (+{memsz:#x}) does not fit the enclave's program area {min:#x}..{max:#x}; link the program at the default address (non-PIE base 0x400000) or as static-pie", min = layout::IMAGE_MIN, max = layout::SMALL_PAGE_AREA_END)]
    OutOfRange {
        /// Segment address after relocation.
        vaddr: u64,
        /// Segment size in memory.
        memsz: u64,
    },
}

/// Segment permission flags (`PF_X`, `PF_W`, `PF_R`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Perms {
    /// Executable.
    pub exec: bool,
    /// Writable.
    pub write: bool,
}

/// One loadable segment, in guest addresses.
#[derive(Debug, Clone)]
pub struct Segment {
    /// Guest address of the first byte.
    pub addr: u64,
    /// Bytes in memory (the tail past `file_len` is zero).
    pub mem_len: u64,
    /// Offset of the file bytes.
    pub file_offset: usize,
    /// Bytes copied from the file.
    pub file_len: usize,
    /// Permissions.
    pub perms: Perms,
}

/// Where and how to load the program.
#[derive(Debug, Clone)]
pub struct LoadPlan {
    /// Load bias (0 for ET_EXEC).
    pub base: u64,
    /// Entry point (guest address).
    pub entry: u64,
    /// Guest address of the program headers (AT_PHDR).
    pub phdr: u64,
    /// Number of program headers (AT_PHNUM).
    pub phnum: u16,
    /// Segments to load.
    pub segments: Vec<Segment>,
    /// First page-aligned address after the image (initial program break).
    pub image_end: u64,
    /// True for static-pie.
    pub pie: bool,
}

fn u16_at(b: &[u8], off: usize) -> Result<u16, ElfError> {
    let s = b
        .get(off..off + 2)
        .ok_or(ElfError::Malformed("header past end of file"))?;
    Ok(u16::from_le_bytes([s[0], s[1]]))
}

fn u32_at(b: &[u8], off: usize) -> Result<u32, ElfError> {
    let s = b
        .get(off..off + 4)
        .ok_or(ElfError::Malformed("header past end of file"))?;
    Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn u64_at(b: &[u8], off: usize) -> Result<u64, ElfError> {
    let s = b
        .get(off..off + 8)
        .ok_or(ElfError::Malformed("header past end of file"))?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Ok(u64::from_le_bytes(a))
}

fn usize_of(v: u64) -> Result<usize, ElfError> {
    usize::try_from(v).map_err(|_| ElfError::Malformed("offset does not fit in memory"))
}

/// Checks that `bytes` is a static x86_64 program and plans its load.
pub fn plan(bytes: &[u8]) -> Result<LoadPlan, ElfError> {
    match plan_at(bytes, layout::PIE_LOAD_BASE)? {
        (p, None) => Ok(p),
        (_, Some(interp)) => Err(ElfError::Dynamic(interp)),
    }
}

/// Checks that `bytes` is an x86_64 program or shared object and plans its load, position-
/// independent ones (`ET_DYN`) at `dyn_base`; returns the interpreter `PT_INTERP` names, if any.
pub fn plan_at(bytes: &[u8], dyn_base: u64) -> Result<(LoadPlan, Option<String>), ElfError> {
    if bytes.len() < EHDR_SIZE || &bytes[..4] != b"\x7fELF" {
        return Err(ElfError::NotElf);
    }
    if bytes[4] != 2 {
        return Err(ElfError::WrongArch("32-bit"));
    }
    if bytes[5] != 1 {
        return Err(ElfError::WrongArch("big-endian"));
    }
    let machine = u16_at(bytes, 18)?;
    if machine != EM_X86_64 {
        return Err(ElfError::WrongArch("not x86_64"));
    }
    let etype = u16_at(bytes, 16)?;
    if etype != ET_EXEC && etype != ET_DYN {
        return Err(ElfError::NotExecutable(etype));
    }
    let pie = etype == ET_DYN;
    if pie && !dyn_base.is_multiple_of(layout::PAGE_SIZE) {
        return Err(ElfError::Malformed("load base is not page-aligned"));
    }
    let base = if pie { dyn_base } else { 0 };
    let entry_raw = u64_at(bytes, 24)?;
    let phoff = usize_of(u64_at(bytes, 32)?)?;
    let phentsize = usize::from(u16_at(bytes, 54)?);
    let phnum = u16_at(bytes, 56)?;
    if phentsize != PHDR_SIZE {
        return Err(ElfError::Malformed("unexpected program header size"));
    }
    if phnum == 0 || phnum > MAX_PHDRS {
        return Err(ElfError::Malformed(
            "program header count is 0 or implausibly large",
        ));
    }
    if phoff
        .checked_add(PHDR_SIZE * usize::from(phnum))
        .is_none_or(|e| e > bytes.len())
    {
        return Err(ElfError::Malformed("program headers past end of file"));
    }

    let mut segments = Vec::new();
    let mut phdr_addr = None;
    let mut interp = None;
    for i in 0..usize::from(phnum) {
        let at = phoff + i * PHDR_SIZE;
        let p_type = u32_at(bytes, at)?;
        let p_flags = u32_at(bytes, at + 4)?;
        let p_offset = u64_at(bytes, at + 8)?;
        let p_vaddr = u64_at(bytes, at + 16)?;
        let p_filesz = u64_at(bytes, at + 32)?;
        let p_memsz = u64_at(bytes, at + 40)?;
        match p_type {
            PT_INTERP => {
                let s = usize_of(p_offset)?;
                let n = usize_of(p_filesz)?.min(256);
                let name = bytes
                    .get(s..s.saturating_add(n))
                    .map(|b| {
                        String::from_utf8_lossy(b)
                            .trim_end_matches('\0')
                            .to_string()
                    })
                    .ok_or(ElfError::Malformed("interpreter name past end of file"))?;
                interp = Some(name);
            }
            PT_PHDR => phdr_addr = Some(p_vaddr),
            PT_LOAD => {
                if p_filesz > p_memsz {
                    return Err(ElfError::Malformed("segment file size exceeds memory size"));
                }
                let file_offset = usize_of(p_offset)?;
                let file_len = usize_of(p_filesz)?;
                if file_offset
                    .checked_add(file_len)
                    .is_none_or(|e| e > bytes.len())
                {
                    return Err(ElfError::Malformed("segment data past end of file"));
                }
                let addr = p_vaddr.checked_add(base).ok_or(ElfError::OutOfRange {
                    vaddr: p_vaddr,
                    memsz: p_memsz,
                })?;
                let end = addr.checked_add(p_memsz);
                if addr < layout::IMAGE_MIN || end.is_none_or(|e| e > layout::SMALL_PAGE_AREA_END) {
                    return Err(ElfError::OutOfRange {
                        vaddr: addr,
                        memsz: p_memsz,
                    });
                }
                if phdr_addr.is_none() && p_offset <= phoff as u64 {
                    let rel = phoff as u64 - p_offset;
                    if rel < p_filesz {
                        phdr_addr = Some(p_vaddr + rel);
                    }
                }
                segments.push(Segment {
                    addr,
                    mem_len: p_memsz,
                    file_offset,
                    file_len,
                    perms: Perms {
                        exec: p_flags & 1 != 0,
                        write: p_flags & 2 != 0,
                    },
                });
            }
            _ => {}
        }
    }
    if segments.is_empty() {
        return Err(ElfError::Malformed("no loadable segment"));
    }
    segments.sort_by_key(|s| s.addr);
    for w in segments.windows(2) {
        if w[0].addr + w[0].mem_len > w[1].addr {
            return Err(ElfError::Malformed("loadable segments overlap"));
        }
    }
    let entry = entry_raw
        .checked_add(base)
        .ok_or(ElfError::Malformed("entry point overflows"))?;
    if !segments
        .iter()
        .any(|s| s.perms.exec && entry >= s.addr && entry < s.addr + s.mem_len)
    {
        return Err(ElfError::Malformed(
            "entry point is not inside an executable segment",
        ));
    }
    let phdr = phdr_addr
        .and_then(|p| p.checked_add(base))
        .ok_or(ElfError::Malformed(
            "program headers are not inside a loaded segment",
        ))?;
    let last = segments
        .iter()
        .map(|s| s.addr + s.mem_len)
        .max()
        .unwrap_or(layout::IMAGE_MIN);
    let image_end =
        crate::kernel::mm::page_up(last).ok_or(ElfError::Malformed("image end overflows"))?;
    Ok((
        LoadPlan {
            base,
            entry,
            phdr,
            phnum,
            segments,
            image_end,
            pie,
        },
        interp,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal valid ET_EXEC with one RX segment at 0x400000.
    pub(crate) fn tiny_elf() -> Vec<u8> {
        let mut b = vec![0u8; 0x200];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[5] = 1;
        b[6] = 1;
        b[16..18].copy_from_slice(&ET_EXEC.to_le_bytes());
        b[18..20].copy_from_slice(&EM_X86_64.to_le_bytes());
        b[24..32].copy_from_slice(&0x40_0100u64.to_le_bytes());
        b[32..40].copy_from_slice(&64u64.to_le_bytes());
        b[54..56].copy_from_slice(&56u16.to_le_bytes());
        b[56..58].copy_from_slice(&1u16.to_le_bytes());
        let p = 64;
        b[p..p + 4].copy_from_slice(&PT_LOAD.to_le_bytes());
        b[p + 4..p + 8].copy_from_slice(&5u32.to_le_bytes());
        b[p + 16..p + 24].copy_from_slice(&0x40_0000u64.to_le_bytes());
        b[p + 32..p + 40].copy_from_slice(&0x200u64.to_le_bytes());
        b[p + 40..p + 48].copy_from_slice(&0x200u64.to_le_bytes());
        b
    }

    /// [`tiny_elf`] with a PT_INTERP naming the usual ld.so.
    fn dynamic_elf() -> Vec<u8> {
        let mut b = tiny_elf();
        b[56..58].copy_from_slice(&2u16.to_le_bytes());
        let name = b"/lib64/ld-linux-x86-64.so.2\0";
        let p = 64 + 56;
        b[p..p + 4].copy_from_slice(&PT_INTERP.to_le_bytes());
        b[p + 8..p + 16].copy_from_slice(&0x180u64.to_le_bytes());
        b[p + 32..p + 40].copy_from_slice(&(name.len() as u64).to_le_bytes());
        b[0x180..0x180 + name.len()].copy_from_slice(name);
        b
    }

    #[test]
    fn dynamic_programs_name_their_interpreter() {
        let (p, interp) = plan_at(&dynamic_elf(), layout::PIE_LOAD_BASE).unwrap();
        assert_eq!(interp.as_deref(), Some("/lib64/ld-linux-x86-64.so.2"));
        assert_eq!(p.entry, 0x40_0100);
        let mut so = tiny_elf();
        so[16..18].copy_from_slice(&ET_DYN.to_le_bytes());
        so[24..32].copy_from_slice(&0x100u64.to_le_bytes());
        so[64 + 16..64 + 24].copy_from_slice(&0u64.to_le_bytes());
        let (p, interp) = plan_at(&so, 0x80_0000).unwrap();
        assert!(interp.is_none() && p.pie);
        assert_eq!((p.base, p.entry, p.phdr), (0x80_0000, 0x80_0100, 0x80_0040));
        assert!(plan_at(&so, 0x80_0001).is_err(), "unaligned base");
    }

    #[test]
    fn plans_a_static_exec() {
        let p = plan(&tiny_elf()).unwrap();
        assert_eq!(p.entry, 0x40_0100);
        assert_eq!(p.phdr, 0x40_0040);
        assert_eq!(p.image_end, 0x40_1000);
        assert!(!p.pie);
    }

    #[test]
    fn refuses_bad_inputs() {
        assert!(matches!(plan(b"hello"), Err(ElfError::NotElf)));
        let mut e = tiny_elf();
        e[4] = 1;
        assert!(matches!(plan(&e), Err(ElfError::WrongArch(_))));
        let mut e = tiny_elf();
        e[18] = 40;
        assert!(matches!(plan(&e), Err(ElfError::WrongArch(_))));
        assert!(matches!(plan(&dynamic_elf()), Err(ElfError::Dynamic(_))));
        let mut e = tiny_elf();
        e[64 + 16..64 + 24].copy_from_slice(&0x1000u64.to_le_bytes());
        assert!(matches!(plan(&e), Err(ElfError::OutOfRange { .. })));
        let mut e = tiny_elf();
        e[64 + 32..64 + 40].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(plan(&e).is_err());
        let mut e = tiny_elf();
        e[56..58].copy_from_slice(&u16::MAX.to_le_bytes());
        assert!(plan(&e).is_err());
        let mut e = tiny_elf();
        e[24..32].copy_from_slice(&0x90_0000u64.to_le_bytes());
        assert!(plan(&e).is_err());
    }

    #[test]
    fn never_panics_on_truncation() {
        let e = tiny_elf();
        for n in 0..e.len() {
            let _ = plan(&e[..n]);
        }
    }
}
