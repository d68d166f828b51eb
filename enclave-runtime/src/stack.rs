//! The program's initial stack, laid out as the Linux ELF loader does:
//! `argc, argv[], NULL, envp[], NULL, auxv pairs, AT_NULL`, then the strings above it.

use crate::elf::LoadPlan;

/// Auxiliary vector keys we provide.
mod at {
    pub const NULL: u64 = 0;
    pub const PHDR: u64 = 3;
    pub const PHENT: u64 = 4;
    pub const PHNUM: u64 = 5;
    pub const PAGESZ: u64 = 6;
    pub const BASE: u64 = 7;
    pub const FLAGS: u64 = 8;
    pub const ENTRY: u64 = 9;
    pub const UID: u64 = 11;
    pub const EUID: u64 = 12;
    pub const GID: u64 = 13;
    pub const EGID: u64 = 14;
    pub const PLATFORM: u64 = 15;
    pub const HWCAP: u64 = 16;
    pub const CLKTCK: u64 = 17;
    pub const SECURE: u64 = 23;
    pub const RANDOM: u64 = 25;
    pub const HWCAP2: u64 = 26;
    pub const EXECFN: u64 = 31;
}

/// Path the program is started as.
pub const EXECFN: &str = "/init";

/// Why the initial stack could not be built.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    /// Arguments and environment are too large.
    #[error("arguments and environment take {size} bytes, more than the {max} bytes the initial stack reserves; pass fewer or shorter --cmd/--env values")]
    TooLarge {
        /// Bytes needed.
        size: usize,
        /// Bytes available.
        max: u64,
    },
    /// A string contains a NUL byte.
    #[error("argument or environment entry contains a NUL byte: {0:?}")]
    Nul(String),
}

/// The initial stack image: bytes to write at `base`, and the initial RSP.
#[derive(Debug)]
pub struct InitialStack {
    /// Guest address where `bytes` go.
    pub base: u64,
    /// Stack contents up to the stack top.
    pub bytes: Vec<u8>,
    /// Initial RSP (16-byte aligned, pointing at argc).
    pub sp: u64,
}

/// Host CPUID leaf 1 EDX: what Linux reports as AT_HWCAP on x86_64.
pub fn host_hwcap() -> u64 {
    let r = std::arch::x86_64::__cpuid(1);
    u64::from(r.edx)
}

/// Builds the stack for a program started with `argv`/`envp`, ending at `top`. `interp_base`
/// is the load base of the program's interpreter (`AT_BASE`), 0 for a static program.
#[allow(clippy::too_many_arguments)]
pub fn build(
    top: u64,
    max: u64,
    argv: &[String],
    envp: &[String],
    plan: &LoadPlan,
    interp_base: u64,
    random: [u8; 16],
    hwcap: u64,
) -> Result<InitialStack, StackError> {
    for s in argv.iter().chain(envp) {
        if s.contains('\0') {
            return Err(StackError::Nul(s.clone()));
        }
    }
    // Strings area, laid out upward from `strings_base`; computed first to know its size.
    let mut strings: Vec<u8> = Vec::new();
    let mut offsets = Vec::new();
    for s in argv.iter().chain(envp) {
        offsets.push(strings.len());
        strings.extend_from_slice(s.as_bytes());
        strings.push(0);
    }
    let execfn_off = strings.len();
    strings.extend_from_slice(EXECFN.as_bytes());
    strings.push(0);
    let platform_off = strings.len();
    strings.extend_from_slice(b"x86_64\0");
    let random_off = strings.len();
    strings.extend_from_slice(&random);

    let words = 1 + argv.len() + 1 + envp.len() + 1 + 2 * 20;
    let size = strings.len() + words * 8 + 64;
    if size as u64 > max {
        return Err(StackError::TooLarge { size, max });
    }
    let strings_base = (top - strings.len() as u64) & !0xf;
    let at_str = |off: usize| strings_base + off as u64;

    let mut frame: Vec<u64> = Vec::with_capacity(words);
    frame.push(argv.len() as u64);
    for off in &offsets[..argv.len()] {
        frame.push(at_str(*off));
    }
    frame.push(0);
    for off in &offsets[argv.len()..] {
        frame.push(at_str(*off));
    }
    frame.push(0);
    let aux = [
        (at::PHDR, plan.phdr),
        (at::PHENT, 56),
        (at::PHNUM, u64::from(plan.phnum)),
        (at::PAGESZ, crate::layout::PAGE_SIZE),
        (at::BASE, interp_base),
        (at::FLAGS, 0),
        (at::ENTRY, plan.entry),
        (at::UID, 0),
        (at::EUID, 0),
        (at::GID, 0),
        (at::EGID, 0),
        (at::PLATFORM, at_str(platform_off)),
        (at::HWCAP, hwcap),
        (at::CLKTCK, 100),
        (at::SECURE, 0),
        (at::RANDOM, at_str(random_off)),
        (at::HWCAP2, 0),
        (at::EXECFN, at_str(execfn_off)),
        (at::NULL, 0),
    ];
    for (k, v) in aux {
        frame.push(k);
        frame.push(v);
    }
    let sp = (strings_base - frame.len() as u64 * 8) & !0xf;
    let mut bytes = Vec::with_capacity(usize::try_from(top - sp).unwrap_or(0));
    for w in &frame {
        bytes.extend_from_slice(&w.to_le_bytes());
    }
    bytes.resize(usize::try_from(strings_base - sp).unwrap_or(0), 0);
    bytes.extend_from_slice(&strings);
    bytes.resize(usize::try_from(top - sp).unwrap_or(0), 0);
    Ok(InitialStack {
        base: sp,
        bytes,
        sp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> LoadPlan {
        LoadPlan {
            base: 0,
            entry: 0x40_1000,
            phdr: 0x40_0040,
            phnum: 7,
            segments: vec![],
            image_end: 0x50_0000,
            pie: false,
        }
    }

    fn word(s: &InitialStack, addr: u64) -> u64 {
        let o = usize::try_from(addr - s.base).unwrap();
        u64::from_le_bytes(s.bytes[o..o + 8].try_into().unwrap())
    }

    fn cstr(s: &InitialStack, addr: u64) -> String {
        let o = usize::try_from(addr - s.base).unwrap();
        let end = s.bytes[o..].iter().position(|&b| b == 0).unwrap();
        String::from_utf8(s.bytes[o..o + end].to_vec()).unwrap()
    }

    #[test]
    fn layout_matches_linux() {
        let argv = vec!["/init".to_string(), "a b".to_string()];
        let envp = vec!["K=V".to_string()];
        let s = build(
            0x100_0000,
            1 << 16,
            &argv,
            &envp,
            &plan(),
            0,
            [7; 16],
            0xabc,
        )
        .unwrap();
        assert_eq!(s.sp % 16, 0);
        assert_eq!(s.base + s.bytes.len() as u64, 0x100_0000);
        assert_eq!(word(&s, s.sp), 2);
        assert_eq!(cstr(&s, word(&s, s.sp + 8)), "/init");
        assert_eq!(cstr(&s, word(&s, s.sp + 16)), "a b");
        assert_eq!(word(&s, s.sp + 24), 0);
        assert_eq!(cstr(&s, word(&s, s.sp + 32)), "K=V");
        assert_eq!(word(&s, s.sp + 40), 0);
        let mut at_ = s.sp + 48;
        let mut seen = std::collections::HashMap::new();
        loop {
            let (k, v) = (word(&s, at_), word(&s, at_ + 8));
            if k == 0 {
                break;
            }
            seen.insert(k, v);
            at_ += 16;
        }
        assert_eq!(seen[&at::PHDR], 0x40_0040);
        assert_eq!(seen[&at::PHNUM], 7);
        assert_eq!(seen[&at::ENTRY], 0x40_1000);
        assert_eq!(seen[&at::BASE], 0);
        assert_eq!(seen[&at::HWCAP], 0xabc);
        assert_eq!(seen[&at::PAGESZ], 4096);
        let r = seen[&at::RANDOM];
        let o = usize::try_from(r - s.base).unwrap();
        assert_eq!(&s.bytes[o..o + 16], &[7; 16]);
        assert_eq!(cstr(&s, seen[&at::EXECFN]), "/init");
    }

    #[test]
    fn dynamic_programs_get_the_interpreter_base() {
        let s = build(
            0x100_0000,
            1 << 16,
            &[],
            &[],
            &plan(),
            0x80_0000,
            [0; 16],
            0,
        )
        .unwrap();
        let mut at_ = s.sp + 24;
        let mut base = None;
        while word(&s, at_) != 0 {
            if word(&s, at_) == at::BASE {
                base = Some(word(&s, at_ + 8));
            }
            at_ += 16;
        }
        assert_eq!(base, Some(0x80_0000));
    }

    #[test]
    fn refuses_oversized_and_nul() {
        let big = vec!["x".repeat(100_000)];
        assert!(matches!(
            build(0x100_0000, 1 << 16, &big, &[], &plan(), 0, [0; 16], 0),
            Err(StackError::TooLarge { .. })
        ));
        let nul = vec!["a\0b".to_string()];
        assert!(matches!(
            build(0x100_0000, 1 << 16, &nul, &[], &plan(), 0, [0; 16], 0),
            Err(StackError::Nul(_))
        ));
    }
}
