//! `build-enclave --with-libs`: finds a dynamically linked program's interpreter and shared
//! libraries the way `ld.so` will in the enclave (`PT_INTERP`, then `DT_NEEDED` recursively,
//! searched in `DT_RPATH` (only without `DT_RUNPATH`), `DT_RUNPATH`, then the standard Debian
//! directories), without running `ldd`. Each is read from the host (symlinks followed) and goes
//! into the image at the path `ld.so` looks it up, as a regular file.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};

const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;
const DT_STRTAB: u64 = 5;
const DT_RPATH: u64 = 15;
const DT_RUNPATH: u64 = 29;
const EM_X86_64: u16 = 62;
/// Longest string read from a string table.
const MAX_STR: usize = 4096;
/// More libraries than any real program needs.
const MAX_LIBS: usize = 512;
/// More program headers than any real object has.
const MAX_PHDRS: usize = 256;

/// Directories `ld.so` searches after the object's own paths (Debian x86_64 multiarch).
pub const DEFAULT_DIRS: &[&str] = &[
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib64",
    "/usr/lib64",
    "/lib",
    "/usr/lib",
];

/// Why the libraries could not be collected.
#[derive(Debug, thiserror::Error)]
pub enum LibError {
    /// An object is not a 64-bit x86_64 ELF or is malformed.
    #[error("{path} is not a usable x86_64 ELF ({why}); --with-libs collects the libraries of 64-bit x86_64 Linux programs")]
    BadElf {
        /// The object.
        path: String,
        /// What is wrong.
        why: &'static str,
    },
    /// A needed library was not found on this host.
    #[error("{name}, needed by {needed_by}, is not on this host (searched {searched}); install it (e.g. with apt) or put it in the image with --file SRC:DST")]
    Missing {
        /// Library name from `DT_NEEDED` (or the interpreter path).
        name: String,
        /// Object that needs it.
        needed_by: String,
        /// Directories searched.
        searched: String,
    },
    /// A file could not be read.
    #[error("cannot read {path}: check its permissions")]
    Read {
        /// Host path.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Too many libraries.
    #[error("the program needs more than {MAX_LIBS} libraries; link it statically")]
    TooMany,
}

/// What the dynamic linker needs from one ELF object.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DynInfo {
    /// `PT_INTERP`.
    pub interp: Option<String>,
    /// `DT_NEEDED`, in order.
    pub needed: Vec<String>,
    /// `DT_RPATH` directories.
    pub rpath: Vec<String>,
    /// `DT_RUNPATH` directories.
    pub runpath: Vec<String>,
}

fn bytes_at<const N: usize>(b: &[u8], off: u64) -> Option<[u8; N]> {
    let start = usize::try_from(off).ok()?;
    b.get(start..start.checked_add(N)?)?.try_into().ok()
}

fn u16_at(b: &[u8], off: u64) -> Option<u16> {
    bytes_at(b, off).map(u16::from_le_bytes)
}

fn u32_at(b: &[u8], off: u64) -> Option<u32> {
    bytes_at(b, off).map(u32::from_le_bytes)
}

fn u64_at(b: &[u8], off: u64) -> Option<u64> {
    bytes_at(b, off).map(u64::from_le_bytes)
}

fn cstr_at(b: &[u8], off: u64) -> Option<String> {
    let start = usize::try_from(off).ok()?;
    let tail = b.get(start..)?;
    let tail = &tail[..tail.len().min(MAX_STR)];
    let end = tail.iter().position(|&c| c == 0)?;
    String::from_utf8(tail[..end].to_vec()).ok()
}

/// One program header: type, offset, vaddr, filesz.
struct Phdr {
    kind: u32,
    offset: u64,
    vaddr: u64,
    filesz: u64,
}

/// Parses `PT_INTERP` and the dynamic section of an ELF object.
pub fn parse(bytes: &[u8]) -> Result<DynInfo, &'static str> {
    if bytes.get(..4) != Some(b"\x7fELF") {
        return Err("bad magic");
    }
    if bytes.get(4) != Some(&2) || bytes.get(5) != Some(&1) {
        return Err("not 64-bit little-endian");
    }
    if u16_at(bytes, 18) != Some(EM_X86_64) {
        return Err("not x86_64");
    }
    let phoff = u64_at(bytes, 32).ok_or("truncated header")?;
    let phnum = usize::from(u16_at(bytes, 56).ok_or("truncated header")?);
    if phnum > MAX_PHDRS {
        return Err("too many program headers");
    }
    let mut phdrs = Vec::with_capacity(phnum);
    for i in 0..phnum as u64 {
        let at = phoff
            .checked_add(i * 56)
            .ok_or("program header offset overflows")?;
        let field = |o: u64| u64_at(bytes, at + o).ok_or("program header past end of file");
        phdrs.push(Phdr {
            kind: u32_at(bytes, at).ok_or("program header past end of file")?,
            offset: field(8)?,
            vaddr: field(16)?,
            filesz: field(32)?,
        });
    }
    let mut info = DynInfo::default();
    if let Some(p) = phdrs.iter().find(|p| p.kind == PT_INTERP) {
        info.interp = Some(cstr_at(bytes, p.offset).ok_or("bad interpreter name")?);
    }
    let Some(dynamic) = phdrs.iter().find(|p| p.kind == PT_DYNAMIC) else {
        return Ok(info);
    };
    let mut entries = Vec::new();
    let count = dynamic.filesz / 16;
    for i in 0..count.min(4096) {
        let at = dynamic
            .offset
            .checked_add(i * 16)
            .ok_or("dynamic overflows")?;
        let tag = u64_at(bytes, at).ok_or("dynamic section past end of file")?;
        let val = u64_at(bytes, at + 8).ok_or("dynamic section past end of file")?;
        if tag == DT_NULL {
            break;
        }
        entries.push((tag, val));
    }
    let Some(&(_, strtab_vaddr)) = entries.iter().find(|(t, _)| *t == DT_STRTAB) else {
        return Ok(info);
    };
    let strtab = phdrs
        .iter()
        .filter(|p| p.kind == PT_LOAD)
        .find(|p| strtab_vaddr >= p.vaddr && strtab_vaddr - p.vaddr < p.filesz)
        .and_then(|p| p.offset.checked_add(strtab_vaddr - p.vaddr))
        .ok_or("string table outside the file")?;
    for (tag, val) in entries {
        let s = || {
            strtab
                .checked_add(val)
                .and_then(|o| cstr_at(bytes, o))
                .ok_or("bad dynamic string")
        };
        let split = |v: String| -> Vec<String> {
            v.split(':')
                .filter(|d| !d.is_empty())
                .map(str::to_owned)
                .collect()
        };
        match tag {
            DT_NEEDED => info.needed.push(s()?),
            DT_RPATH => info.rpath.extend(split(s()?)),
            DT_RUNPATH => info.runpath.extend(split(s()?)),
            _ => {}
        }
    }
    Ok(info)
}

/// Where an object is: its path in the image and on the host.
#[derive(Debug, Clone)]
struct Place {
    image: String,
    host: PathBuf,
}

impl Place {
    /// The directories `$ORIGIN` stands for: in the image and on the host.
    fn origin(&self) -> (String, String) {
        let dir = |p: &Path| {
            p.parent()
                .map_or_else(|| "/".to_owned(), |d| d.display().to_string())
        };
        (dir(Path::new(&self.image)), dir(&self.host))
    }
}

/// The interpreter and libraries of `binary` (read from `binary_path` on the host), looked up
/// under the host directory `root` ("/" on a real build; `$ORIGIN` paths relative to the
/// objects themselves): image path → contents, sorted. Empty for a static program.
pub fn collect(
    binary: &[u8],
    binary_path: &Path,
    root: &Path,
) -> Result<BTreeMap<String, Vec<u8>>, LibError> {
    let shown = binary_path.display().to_string();
    let main = parse(binary).map_err(|why| LibError::BadElf {
        path: shown.clone(),
        why,
    })?;
    let mut out = BTreeMap::new();
    let Some(interp) = main.interp.clone() else {
        return Ok(out);
    };
    let interp_image = normalize(&interp).unwrap_or_else(|| format!("/{interp}"));
    let interp_bytes =
        read_host(&root.join(interp_image.trim_start_matches('/'))).ok_or_else(|| {
            LibError::Missing {
                name: interp.clone(),
                needed_by: shown.clone(),
                searched: interp.clone(),
            }
        })??;
    let interp_name = Path::new(&interp_image)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned());
    out.insert(interp_image, interp_bytes);
    let main_place = Place {
        image: crate::commands::build::INIT_IMAGE_PATH.to_owned(),
        host: std::fs::canonicalize(binary_path).unwrap_or_else(|_| binary_path.to_owned()),
    };
    // The program's DT_RPATH applies to every library without a DT_RUNPATH, with the
    // program's $ORIGIN.
    let main_rpath = if main.runpath.is_empty() {
        expand(&main.rpath, &main_place, root)
    } else {
        Vec::new()
    };
    let mut queue = VecDeque::from([(main_place, shown, main.clone())]);
    while let Some((who, shown, info)) = queue.pop_front() {
        let mut dirs = Vec::new();
        if info.runpath.is_empty() {
            dirs.extend(expand(&info.rpath, &who, root));
            dirs.extend(main_rpath.iter().cloned());
        }
        dirs.extend(expand(&info.runpath, &who, root));
        let defaults: Vec<String> = DEFAULT_DIRS.iter().map(|d| (*d).to_owned()).collect();
        dirs.extend(expand(&defaults, &who, root));
        for name in &info.needed {
            if Some(name.as_str()) == interp_name.as_deref() {
                // ld.so itself (libc needs it by its soname): already loaded, never opened.
                continue;
            }
            let candidates: Vec<Place> = if name.contains('/') {
                let image = normalize(&format!("/{name}")).unwrap_or_default();
                vec![Place {
                    host: root.join(image.trim_start_matches('/')),
                    image,
                }]
            } else {
                dirs.iter()
                    .map(|(image, host)| Place {
                        image: format!("{}/{name}", image.trim_end_matches('/')),
                        host: host.join(name),
                    })
                    .collect()
            };
            let Some((place, bytes)) = candidates
                .iter()
                .find_map(|c| read_host(&c.host).map(|r| r.map(|b| (c.clone(), b))))
                .transpose()?
            else {
                let searched: Vec<String> = candidates
                    .iter()
                    .map(|c| c.host.display().to_string())
                    .collect();
                return Err(LibError::Missing {
                    name: name.clone(),
                    needed_by: shown,
                    searched: searched.join(", "),
                });
            };
            if out.contains_key(&place.image) {
                continue;
            }
            if out.len() >= MAX_LIBS {
                return Err(LibError::TooMany);
            }
            let lib = parse(&bytes).map_err(|why| LibError::BadElf {
                path: place.host.display().to_string(),
                why,
            })?;
            out.insert(place.image.clone(), bytes);
            let shown = place.image.clone();
            queue.push_back((place, shown, lib));
        }
    }
    Ok(out)
}

/// Search directories as (image directory, host directory), duplicates dropped: `$ORIGIN` is
/// `who`'s directory (in the image and on the host), other directories are looked up under
/// `root`.
fn expand(dirs: &[String], who: &Place, root: &Path) -> Vec<(String, PathBuf)> {
    let (image_origin, host_origin) = who.origin();
    let subst = |d: &str, o: &str| d.replace("${ORIGIN}", o).replace("$ORIGIN", o);
    let mut seen = std::collections::BTreeSet::new();
    dirs.iter()
        .filter_map(|d| {
            let image = normalize(&subst(d, &image_origin))?;
            let host = if d.contains("$ORIGIN") || d.contains("${ORIGIN}") {
                PathBuf::from(normalize(&subst(d, &host_origin))?)
            } else {
                root.join(image.trim_start_matches('/'))
            };
            Some((image, host))
        })
        .filter(|(image, _)| seen.insert(image.clone()))
        .collect()
}

/// An absolute directory with `.`, `..` and repeated slashes resolved; `None` for a relative
/// one (`ld.so` would look it up relative to the working directory: not supported).
fn normalize(dir: &str) -> Option<String> {
    if !dir.starts_with('/') {
        return None;
    }
    let mut parts: Vec<&str> = Vec::new();
    for c in dir.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    Some(format!("/{}", parts.join("/")))
}

/// Reads the regular file at `host` (symlinks followed): `None` when there is no such file.
fn read_host(host: &Path) -> Option<Result<Vec<u8>, LibError>> {
    if !std::fs::metadata(host).is_ok_and(|m| m.is_file()) {
        return None;
    }
    Some(std::fs::read(host).map_err(|source| LibError::Read {
        path: host.display().to_string(),
        source,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny x86_64 ELF: optional PT_INTERP, a PT_LOAD over the whole file, a dynamic section
    /// with the given NEEDED/RPATH/RUNPATH strings.
    fn elf(interp: Option<&str>, needed: &[&str], rpath: &str, runpath: &str) -> Vec<u8> {
        let mut strtab = vec![0u8];
        let mut add = |s: &str| {
            let at = strtab.len() as u64;
            strtab.extend_from_slice(s.as_bytes());
            strtab.push(0);
            at
        };
        let mut dyns: Vec<(u64, u64)> = needed.iter().map(|n| (DT_NEEDED, add(n))).collect();
        if !rpath.is_empty() {
            dyns.push((DT_RPATH, add(rpath)));
        }
        if !runpath.is_empty() {
            dyns.push((DT_RUNPATH, add(runpath)));
        }
        let interp_at = interp.map(&mut add);
        let phnum: u64 = if interp.is_some() { 3 } else { 2 };
        let dyn_off = 64 + 56 * phnum;
        dyns.push((DT_STRTAB, 0)); // fixed below
        dyns.push((DT_NULL, 0));
        let str_off = dyn_off + 16 * dyns.len() as u64;
        let n = dyns.len();
        dyns[n - 2].1 = 0x1000 + str_off;
        let total = str_off + strtab.len() as u64;
        let mut b = vec![0u8; 64];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[5] = 1;
        b[16..18].copy_from_slice(&3u16.to_le_bytes());
        b[18..20].copy_from_slice(&EM_X86_64.to_le_bytes());
        b[32..40].copy_from_slice(&64u64.to_le_bytes());
        b[54..56].copy_from_slice(&56u16.to_le_bytes());
        b[56..58].copy_from_slice(&u16::try_from(phnum).unwrap().to_le_bytes());
        let mut ph = |kind: u32, off: u64, vaddr: u64, size: u64| {
            let mut p = [0u8; 56];
            p[..4].copy_from_slice(&kind.to_le_bytes());
            p[8..16].copy_from_slice(&off.to_le_bytes());
            p[16..24].copy_from_slice(&vaddr.to_le_bytes());
            p[32..40].copy_from_slice(&size.to_le_bytes());
            p[40..48].copy_from_slice(&size.to_le_bytes());
            b.extend_from_slice(&p);
        };
        ph(PT_LOAD, 0, 0x1000, total);
        ph(PT_DYNAMIC, dyn_off, 0x1000 + dyn_off, 16 * n as u64);
        if let Some(at) = interp_at {
            ph(PT_INTERP, str_off + at, 0x1000 + str_off + at, 1);
        }
        for (t, v) in dyns {
            b.extend_from_slice(&t.to_le_bytes());
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(&strtab);
        b
    }

    /// A fresh directory standing in for the host's root, removed on drop.
    struct TempRoot(PathBuf);

    impl TempRoot {
        fn new() -> Self {
            static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let p = std::env::temp_dir().join(format!("build-libs-{}-{n}", std::process::id()));
            std::fs::create_dir_all(&p).unwrap();
            Self(p)
        }

        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempRoot {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn put(root: &Path, path: &str, data: &[u8]) {
        let p = root.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }

    const LDSO: &str = "/lib64/ld-linux-x86-64.so.2";

    #[test]
    fn parses_needed_rpath_runpath_interp() {
        let e = elf(Some(LDSO), &["libc.so.6", "libm.so.6"], "/a:/b", "/c");
        let d = parse(&e).unwrap();
        assert_eq!(d.interp.as_deref(), Some(LDSO));
        assert_eq!(d.needed, vec!["libc.so.6", "libm.so.6"]);
        assert_eq!(d.rpath, vec!["/a", "/b"]);
        assert_eq!(d.runpath, vec!["/c"]);
        assert!(parse(b"nope").is_err());
        for n in 0..e.len() {
            let _ = parse(&e[..n]);
        }
    }

    #[test]
    fn collects_recursively_from_runpath_and_default_dirs() {
        let root = TempRoot::new();
        let r = root.path();
        put(r, LDSO, &elf(None, &[], "", ""));
        put(
            r,
            "/opt/app/lib/libapp.so",
            &elf(None, &["libc.so.6", "ld-linux-x86-64.so.2"], "", ""),
        );
        put(
            r,
            "/lib/x86_64-linux-gnu/libc.so.6",
            &elf(None, &[], "", ""),
        );
        // A decoy in a default dir: RUNPATH comes first.
        put(r, "/usr/lib/x86_64-linux-gnu/libapp.so", b"decoy");
        let main = elf(Some(LDSO), &["libapp.so"], "", "/opt/app/lib");
        let libs = collect(&main, &r.join("app"), r).unwrap();
        let paths: Vec<&str> = libs.keys().map(String::as_str).collect();
        assert_eq!(
            paths,
            vec![
                "/lib/x86_64-linux-gnu/libc.so.6",
                LDSO,
                "/opt/app/lib/libapp.so"
            ]
        );
        assert_eq!(
            libs["/lib/x86_64-linux-gnu/libc.so.6"],
            elf(None, &[], "", "")
        );
    }

    #[test]
    fn rpath_and_origin() {
        let root = TempRoot::new();
        let r = root.path();
        put(r, LDSO, &elf(None, &[], "", ""));
        put(r, "/init-libs/libx.so", &elf(None, &[], "", ""));
        let main = elf(Some(LDSO), &["libx.so"], "$ORIGIN/init-libs", "");
        let libs = collect(&main, &r.join("app"), r).unwrap();
        assert!(libs.contains_key("/init-libs/libx.so"));
    }

    #[test]
    fn origin_is_the_host_directory_of_the_program_and_slash_in_the_image() {
        let root = TempRoot::new();
        let r = root.path();
        put(r, LDSO, &elf(None, &[], "", ""));
        // The program lives in <r>/build/; its libraries in <r>/build/libs/.
        put(
            r,
            "/build/libs/liby.so",
            &elf(None, &["libz.so"], "", "$ORIGIN"),
        );
        put(r, "/build/libs/libz.so", &elf(None, &[], "", ""));
        let main = elf(Some(LDSO), &["liby.so"], "", "$ORIGIN/libs");
        let libs = collect(&main, &r.join("build/app"), r).unwrap();
        // In the image the program is /init, so $ORIGIN is "/".
        assert!(libs.contains_key("/libs/liby.so"), "{:?}", libs.keys());
        assert!(libs.contains_key("/libs/libz.so"), "{:?}", libs.keys());
    }

    #[test]
    fn missing_library_and_interpreter_are_named() {
        let root = TempRoot::new();
        let r = root.path();
        let main = elf(Some(LDSO), &["libnope.so.1"], "", "");
        let e = collect(&main, &r.join("app"), r).unwrap_err().to_string();
        assert!(e.contains(LDSO), "{e}");
        put(r, LDSO, &elf(None, &[], "", ""));
        let e = collect(&main, &r.join("app"), r).unwrap_err().to_string();
        assert!(
            e.contains("libnope.so.1") && e.contains("app, is not"),
            "{e}"
        );
        assert!(e.contains("usr/lib/x86_64-linux-gnu/libnope.so.1"), "{e}");
    }

    #[test]
    fn static_programs_need_nothing() {
        let root = TempRoot::new();
        let main = elf(None, &[], "", "");
        assert!(collect(&main, &root.path().join("app"), root.path())
            .unwrap()
            .is_empty());
    }
}
