//! The whole program image of an enclave: the `/init` ELF and, for a dynamically linked
//! program, its interpreter (`ld.so`, named by `PT_INTERP` and read from the image's tree) at
//! its own base plus the read-write-execute exec area for the shared libraries `ld.so` maps
//! (see `layout.rs`). Like the Linux kernel, the program starts at the interpreter's entry with
//! `AT_BASE` = the interpreter's base and `AT_ENTRY`/`AT_PHDR` of the main program.

use std::sync::Arc;

use crate::elf::{self, ElfError, LoadPlan, Perms, Segment};
use crate::kernel::fs::{ImageTree, NodeKind, ROOT_INO};
use crate::layout;

/// Path of the program in the image tree.
pub const INIT_PATH: &str = "/init";

/// Why the program image cannot be planned.
#[derive(Debug, thiserror::Error)]
pub enum ProgramError {
    /// `/init` itself.
    #[error("the image's /init cannot run in an enclave")]
    Main(#[source] ElfError),
    /// The interpreter is not in the image.
    #[error("the program is dynamically linked and needs its interpreter {path}, which is not in the image: rebuild the image with `enclave build-enclave --with-libs` (or add the file with --file HOST_PATH:{path})")]
    MissingInterpreter {
        /// Path named by `PT_INTERP`.
        path: String,
    },
    /// The interpreter is there but cannot be loaded.
    #[error("the program's interpreter {path} cannot be loaded; rebuild the image with `enclave build-enclave --with-libs`")]
    BadInterpreter {
        /// Path named by `PT_INTERP`.
        path: String,
        /// Why.
        #[source]
        source: ElfError,
    },
    /// The interpreter asks for an interpreter itself, or is not position-independent.
    #[error("the program's interpreter {0} is not a position-independent shared object (ld.so)")]
    InterpreterKind(String),
    /// Interpreter and exec area do not fit below the small-page area's end.
    #[error("the program and its interpreter end at {end:#x}, leaving no room for the {size} MiB library area below {max:#x}; link the program at the default address", size = layout::EXEC_AREA_SIZE >> 20, max = layout::SMALL_PAGE_AREA_END)]
    NoRoom {
        /// End of the interpreter.
        end: u64,
    },
}

/// The interpreter of a dynamic program.
#[derive(Debug, Clone)]
pub struct Interpreter {
    /// Its load plan (at its base).
    pub plan: LoadPlan,
    /// Its file.
    pub bytes: Arc<Vec<u8>>,
}

/// Where everything of the program goes.
#[derive(Debug, Clone)]
pub struct ProgramImage {
    /// The main program (`/init`).
    pub main: LoadPlan,
    /// Its interpreter, for a dynamic program.
    pub interp: Option<Interpreter>,
    /// The exec area (`start..end`), for a dynamic program.
    pub exec_area: Option<(u64, u64)>,
}

impl ProgramImage {
    /// Plans `/init` (`main`), reading its interpreter from `tree` when it names one.
    pub fn plan(main: &[u8], tree: &ImageTree) -> Result<Self, ProgramError> {
        let (main_plan, interp_path) =
            elf::plan_at(main, layout::PIE_LOAD_BASE).map_err(ProgramError::Main)?;
        let Some(path) = interp_path else {
            return Ok(Self {
                main: main_plan,
                interp: None,
                exec_area: None,
            });
        };
        let bytes = read_file(tree, &path)
            .ok_or_else(|| ProgramError::MissingInterpreter { path: path.clone() })?;
        let base = layout::interp_base(main_plan.image_end).ok_or(ProgramError::NoRoom {
            end: main_plan.image_end,
        })?;
        let (plan, nested) =
            elf::plan_at(&bytes, base).map_err(|source| ProgramError::BadInterpreter {
                path: path.clone(),
                source,
            })?;
        if nested.is_some() || !plan.pie {
            return Err(ProgramError::InterpreterKind(path));
        }
        let exec = layout::exec_area(plan.image_end)
            .filter(|&(_, end)| end <= layout::SMALL_PAGE_AREA_END)
            .ok_or(ProgramError::NoRoom {
                end: plan.image_end,
            })?;
        Ok(Self {
            main: main_plan,
            interp: Some(Interpreter { plan, bytes }),
            exec_area: Some(exec),
        })
    }

    /// Where the program starts: the interpreter's entry, else the program's.
    pub fn start(&self) -> u64 {
        self.interp
            .as_ref()
            .map_or(self.main.entry, |i| i.plan.entry)
    }

    /// `AT_BASE`: the interpreter's base, 0 for a static program.
    pub fn interp_base(&self) -> u64 {
        self.interp.as_ref().map_or(0, |i| i.plan.base)
    }

    /// End of everything premapped for the program (the initial program break).
    pub fn end(&self) -> u64 {
        match (&self.interp, self.exec_area) {
            (_, Some((_, end))) => end,
            (Some(i), None) => i.plan.image_end,
            (None, None) => self.main.image_end,
        }
    }

    /// One plan of every segment (program, interpreter, exec area as a read-write-execute
    /// segment) for the page tables; entry and auxv values are the main program's.
    pub fn page_plan(&self) -> LoadPlan {
        let mut p = self.main.clone();
        if let Some(i) = &self.interp {
            p.segments.extend(i.plan.segments.iter().cloned());
        }
        if let Some((start, end)) = self.exec_area {
            p.segments.push(Segment {
                addr: start,
                mem_len: end - start,
                file_offset: 0,
                file_len: 0,
                perms: Perms {
                    exec: true,
                    write: true,
                },
            });
        }
        p.image_end = self.end();
        p
    }
}

/// The contents of the regular file at `path` in `tree` (symlinks followed).
pub fn read_file(tree: &ImageTree, path: &str) -> Option<Arc<Vec<u8>>> {
    let ino = tree.lookup(ROOT_INO, path.as_bytes(), true).ok()?;
    match &tree.node(ino)?.kind {
        NodeKind::File(data) => Some(data.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::fs::TreeEntry;

    /// A position-independent ELF (`ET_DYN`) with one RX segment at 0 and, optionally, a
    /// PT_INTERP naming `interp`.
    fn so(interp: Option<&str>) -> Vec<u8> {
        let mut b = vec![0u8; 0x200];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[5] = 1;
        b[16..18].copy_from_slice(&3u16.to_le_bytes());
        b[18..20].copy_from_slice(&62u16.to_le_bytes());
        b[24..32].copy_from_slice(&0x100u64.to_le_bytes());
        b[32..40].copy_from_slice(&64u64.to_le_bytes());
        b[54..56].copy_from_slice(&56u16.to_le_bytes());
        b[56..58].copy_from_slice(&1u16.to_le_bytes());
        b[64..68].copy_from_slice(&1u32.to_le_bytes());
        b[68..72].copy_from_slice(&5u32.to_le_bytes());
        b[96..104].copy_from_slice(&0x200u64.to_le_bytes());
        b[104..112].copy_from_slice(&0x200u64.to_le_bytes());
        if let Some(name) = interp {
            b[56..58].copy_from_slice(&2u16.to_le_bytes());
            let p = 64 + 56;
            b[p..p + 4].copy_from_slice(&3u32.to_le_bytes());
            b[p + 8..p + 16].copy_from_slice(&0x180u64.to_le_bytes());
            b[p + 32..p + 40].copy_from_slice(&(name.len() as u64 + 1).to_le_bytes());
            b[0x180..0x180 + name.len()].copy_from_slice(name.as_bytes());
        }
        b
    }

    fn tree(files: &[(&str, Vec<u8>)]) -> ImageTree {
        ImageTree::new(
            files
                .iter()
                .map(|(p, d)| TreeEntry {
                    path: (*p).to_owned(),
                    mode: libc::S_IFREG | 0o755,
                    data: d.clone(),
                })
                .collect(),
        )
        .unwrap()
    }

    const LD: &str = "/lib64/ld-linux-x86-64.so.2";

    #[test]
    fn static_programs_are_planned_as_before() {
        let main = so(None);
        let p = ProgramImage::plan(&main, &tree(&[])).unwrap();
        assert!(p.interp.is_none() && p.exec_area.is_none());
        assert_eq!(p.start(), layout::PIE_LOAD_BASE + 0x100);
        assert_eq!(p.interp_base(), 0);
        assert_eq!(p.end(), p.main.image_end);
        assert_eq!(p.page_plan().segments.len(), 1);
    }

    #[test]
    fn dynamic_programs_start_in_their_interpreter() {
        let main = so(Some(LD));
        let p = ProgramImage::plan(&main, &tree(&[(LD, so(None))])).unwrap();
        let base = p.interp_base();
        assert_eq!(base, layout::interp_base(p.main.image_end).unwrap());
        assert!(base.is_multiple_of(layout::DYNAMIC_ALIGN) && base >= p.main.image_end);
        assert_eq!(p.start(), base + 0x100);
        let (start, end) = p.exec_area.unwrap();
        assert_eq!(end - start, layout::EXEC_AREA_SIZE);
        assert!(start >= base + 0x200 && end <= layout::SMALL_PAGE_AREA_END);
        assert_eq!(p.end(), end);
        let pp = p.page_plan();
        assert_eq!(pp.entry, p.main.entry, "AT_ENTRY is the program's");
        assert!(pp
            .segments
            .iter()
            .any(|s| s.addr == start && s.perms.exec && s.perms.write));
    }

    #[test]
    fn a_missing_or_bad_interpreter_is_named() {
        let main = so(Some(LD));
        let e = ProgramImage::plan(&main, &tree(&[])).unwrap_err();
        assert!(matches!(e, ProgramError::MissingInterpreter { .. }));
        let text = e.to_string();
        assert!(text.contains(LD) && text.contains("--with-libs"), "{text}");
        let e = ProgramImage::plan(&main, &tree(&[(LD, b"junk".to_vec())])).unwrap_err();
        assert!(matches!(e, ProgramError::BadInterpreter { .. }), "{e}");
        let e = ProgramImage::plan(&main, &tree(&[(LD, so(Some(LD)))])).unwrap_err();
        assert!(matches!(e, ProgramError::InterpreterKind(_)), "{e}");
    }
}
