//! Strict, bounded `newc` reader. Every length is checked against the input before slicing;
//! hostile archives (bad hex, huge names, sizes past the end, absolute or ".." paths,
//! duplicates, device nodes) are refused with an error, never a panic.

use std::collections::HashSet;

use super::path::check_strict;
use super::{
    CpioEntry, CpioError, HEADER_LEN, MAX_NAME_SIZE, NEWC_MAGIC, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG,
    TRAILER,
};

const FIELD_NAMES: [&str; 13] = [
    "c_ino",
    "c_mode",
    "c_uid",
    "c_gid",
    "c_nlink",
    "c_mtime",
    "c_filesize",
    "c_devmajor",
    "c_devminor",
    "c_rdevmajor",
    "c_rdevminor",
    "c_namesize",
    "c_check",
];
const MODE: usize = 1;
const FILESIZE: usize = 6;
const NAMESIZE: usize = 11;

/// Reads a `newc` archive up to its trailer. A lone "." entry is skipped and a leading "./"
/// is stripped; anything after the trailer must be zero padding.
pub fn read(bytes: &[u8]) -> Result<Vec<CpioEntry>, CpioError> {
    let mut entries = Vec::new();
    let mut seen = HashSet::new();
    let mut offset = 0usize;
    loop {
        if offset >= bytes.len() {
            return Err(CpioError::MissingTrailer);
        }
        let fields = read_header(bytes, offset)?;
        let [mode, filesize, namesize] = [fields[MODE], fields[FILESIZE], fields[NAMESIZE]];
        let name_start = offset.saturating_add(HEADER_LEN);
        let name = read_name(bytes, offset, name_start, namesize)?;
        let name_end = name_start.saturating_add(name.len()).saturating_add(1);
        let data_start = align4(name_end);
        if name == TRAILER {
            return match bytes
                .get(name_end..)
                .and_then(|t| t.iter().position(|&b| b != 0))
            {
                Some(pos) => Err(CpioError::TrailingData {
                    offset: name_end.saturating_add(pos),
                }),
                None => Ok(entries),
            };
        }
        let size = usize::try_from(filesize).unwrap_or(usize::MAX);
        let data = data_start
            .checked_add(size)
            .and_then(|end| bytes.get(data_start..end))
            .ok_or(CpioError::Truncated {
                offset: data_start,
                needed: size.saturating_sub(bytes.len().saturating_sub(data_start)),
                what: "file data",
            })?;
        offset = align4(data_start.saturating_add(size));

        let path = match name.strip_prefix("./") {
            _ if name == "." => {
                if mode & S_IFMT != S_IFDIR {
                    return Err(CpioError::BadPath {
                        path: name,
                        reason: "\".\" must be a directory",
                    });
                }
                continue;
            }
            Some(rest) => rest.to_owned(),
            None => name,
        };
        check_strict(&path)?;
        check_type(&path, mode, data)?;
        if !seen.insert(path.clone()) {
            return Err(CpioError::Duplicate { path });
        }
        entries.push(CpioEntry {
            path,
            mode,
            data: data.to_vec(),
        });
    }
}

fn align4(n: usize) -> usize {
    n.checked_add(3).map_or(usize::MAX, |v| v & !3)
}

fn read_header(bytes: &[u8], offset: usize) -> Result<[u32; 13], CpioError> {
    let header = offset
        .checked_add(HEADER_LEN)
        .and_then(|end| bytes.get(offset..end))
        .ok_or(CpioError::Truncated {
            offset,
            needed: HEADER_LEN.saturating_sub(bytes.len().saturating_sub(offset)),
            what: "an entry header",
        })?;
    let (magic, mut rest) = header.split_at(NEWC_MAGIC.len());
    if magic != NEWC_MAGIC {
        return Err(CpioError::BadMagic {
            offset,
            found: String::from_utf8_lossy(magic).into_owned(),
        });
    }
    let mut fields = [0u32; 13];
    for (slot, field) in fields.iter_mut().zip(FIELD_NAMES) {
        let (text, tail) = rest.split_first_chunk::<8>().ok_or(CpioError::Truncated {
            offset,
            needed: 8,
            what: field,
        })?;
        rest = tail;
        *slot = parse_hex(text).ok_or_else(|| CpioError::BadHexField {
            offset,
            field,
            found: String::from_utf8_lossy(text).into_owned(),
        })?;
    }
    Ok(fields)
}

fn parse_hex(text: &[u8; 8]) -> Option<u32> {
    text.iter().try_fold(0u32, |acc, &c| {
        let digit = char::from(c).to_digit(16)?;
        Some((acc << 4) | digit)
    })
}

fn read_name(
    bytes: &[u8],
    offset: usize,
    start: usize,
    namesize: u32,
) -> Result<String, CpioError> {
    let size = usize::try_from(namesize)
        .ok()
        .filter(|&s| (1..=MAX_NAME_SIZE).contains(&s))
        .ok_or(CpioError::BadNameSize {
            offset,
            size: namesize,
            max: MAX_NAME_SIZE,
        })?;
    let raw = start
        .checked_add(size)
        .and_then(|end| bytes.get(start..end))
        .ok_or(CpioError::Truncated {
            offset: start,
            needed: size.saturating_sub(bytes.len().saturating_sub(start)),
            what: "an entry name",
        })?;
    let bad = |reason| CpioError::BadName { offset, reason };
    let (&last, name) = raw.split_last().ok_or(bad("it is empty"))?;
    if last != 0 {
        return Err(bad("it is not NUL-terminated"));
    }
    if name.contains(&0) {
        return Err(bad("it contains a NUL byte"));
    }
    String::from_utf8(name.to_vec()).map_err(|_| bad("it is not UTF-8"))
}

fn check_type(path: &str, mode: u32, data: &[u8]) -> Result<(), CpioError> {
    let bad = |reason| CpioError::BadEntry {
        path: path.to_owned(),
        reason,
    };
    match mode & S_IFMT {
        S_IFREG => Ok(()),
        S_IFDIR if data.is_empty() => Ok(()),
        S_IFDIR => Err(bad("a directory has data")),
        S_IFLNK if data.is_empty() => Err(bad("a symlink has no target")),
        S_IFLNK => Ok(()),
        _ => Err(CpioError::UnsupportedType {
            path: path.to_owned(),
            mode,
        }),
    }
}
