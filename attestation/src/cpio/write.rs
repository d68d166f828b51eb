//! Reproducible `newc` writer: sorted paths, implicit parent directories, inodes numbered from
//! 1, owner 0:0, mtime 0, device 0, 4-byte alignment, "TRAILER!!!" at the end.

use std::collections::BTreeMap;

use super::path::{normalize_path, parent};
use super::{CpioEntry, CpioError, NEWC_MAGIC, S_IFDIR, S_IFLNK, S_IFREG, TRAILER};

/// Permission bits of directories created implicitly.
const IMPLICIT_DIR_PERM: u32 = 0o755;

/// Writes `entries` as a `newc` archive. Paths are normalized and sorted; missing parent
/// directories are added (mode 0o040755). Same entries in any order → identical bytes.
pub fn write(entries: &[CpioEntry]) -> Result<Vec<u8>, CpioError> {
    let mut tree: BTreeMap<String, CpioEntry> = BTreeMap::new();
    for entry in entries {
        let path = normalize_path(&entry.path)?;
        check_entry(&path, entry)?;
        if tree.contains_key(&path) {
            return Err(CpioError::Duplicate { path });
        }
        tree.insert(
            path.clone(),
            CpioEntry {
                path,
                mode: entry.mode,
                data: entry.data.clone(),
            },
        );
    }
    add_parents(&mut tree)?;

    let mut out = Vec::new();
    for (index, entry) in tree.values().enumerate() {
        let ino = index
            .checked_add(1)
            .and_then(|i| u32::try_from(i).ok())
            .ok_or(CpioError::TooManyEntries)?;
        let nlink = if entry.mode & super::S_IFMT == S_IFDIR {
            2
        } else {
            1
        };
        append(&mut out, ino, entry.mode, nlink, &entry.path, &entry.data)?;
    }
    append(&mut out, 0, 0, 1, TRAILER, &[])?;
    Ok(out)
}

fn check_entry(path: &str, entry: &CpioEntry) -> Result<(), CpioError> {
    let bad = |reason| CpioError::BadEntry {
        path: path.to_owned(),
        reason,
    };
    match entry.mode & super::S_IFMT {
        S_IFREG => Ok(()),
        S_IFDIR if entry.data.is_empty() => Ok(()),
        S_IFDIR => Err(bad("a directory cannot have data")),
        S_IFLNK if entry.data.is_empty() => Err(bad("a symlink needs a target")),
        S_IFLNK => Ok(()),
        _ => Err(CpioError::UnsupportedType {
            path: path.to_owned(),
            mode: entry.mode,
        }),
    }
}

/// Inserts every missing ancestor directory; refuses an ancestor that is not a directory.
fn add_parents(tree: &mut BTreeMap<String, CpioEntry>) -> Result<(), CpioError> {
    let paths: Vec<String> = tree.keys().cloned().collect();
    for path in paths {
        let mut current = path.as_str();
        while let Some(dir) = parent(current) {
            match tree.get(dir) {
                Some(e) if e.mode & super::S_IFMT == S_IFDIR => {}
                Some(_) => {
                    return Err(CpioError::ParentNotDirectory {
                        path: path.clone(),
                        parent: dir.to_owned(),
                    })
                }
                None => {
                    tree.insert(dir.to_owned(), CpioEntry::dir(dir, IMPLICIT_DIR_PERM));
                }
            }
            current = dir;
        }
    }
    Ok(())
}

fn pad4(out: &mut Vec<u8>) {
    let padded = out.len().next_multiple_of(4);
    out.resize(padded, 0);
}

fn append(
    out: &mut Vec<u8>,
    ino: u32,
    mode: u32,
    nlink: u32,
    name: &str,
    data: &[u8],
) -> Result<(), CpioError> {
    let too_large = |size| CpioError::TooLarge {
        path: name.to_owned(),
        size,
    };
    let filesize = u32::try_from(data.len()).map_err(|_| too_large(data.len()))?;
    let name_len = name.len().saturating_add(1);
    let namesize = u32::try_from(name_len).map_err(|_| too_large(name_len))?;
    // ino mode uid gid nlink mtime filesize devmajor devminor rdevmajor rdevminor namesize check
    let fields = [ino, mode, 0, 0, nlink, 0, filesize, 0, 0, 0, 0, namesize, 0];
    out.extend_from_slice(NEWC_MAGIC);
    for field in fields {
        out.extend_from_slice(format!("{field:08x}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad4(out);
    out.extend_from_slice(data);
    pad4(out);
    Ok(())
}
