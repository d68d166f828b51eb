//! Path rules shared by the cpio reader and writer: relative, '/'-separated, no empty, "." or
//! ".." components.

use super::CpioError;

/// Normalizes a path for the archive: strips leading '/' and "./", drops empty and "."
/// components, and refuses ".." and paths that end up empty.
pub fn normalize_path(path: &str) -> Result<String, CpioError> {
    let bad = |reason| CpioError::BadPath {
        path: path.to_owned(),
        reason,
    };
    if path.contains('\0') {
        return Err(bad("it contains a NUL byte"));
    }
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(bad("it has a \"..\" component")),
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        return Err(bad("it names no file"));
    }
    Ok(parts.join("/"))
}

/// Checks a path read from an archive is already in normal form (relative, no "." / ".." /
/// empty components).
pub(crate) fn check_strict(path: &str) -> Result<(), CpioError> {
    let bad = |reason| CpioError::BadPath {
        path: path.to_owned(),
        reason,
    };
    if path.starts_with('/') {
        return Err(bad("it is absolute"));
    }
    for part in path.split('/') {
        match part {
            "" => return Err(bad("it has an empty component")),
            "." => return Err(bad("it has a \".\" component")),
            ".." => return Err(bad("it has a \"..\" component")),
            _ => {}
        }
    }
    Ok(())
}

/// The parent directory of a normalized path, if it has one.
pub(crate) fn parent(path: &str) -> Option<&str> {
    path.rsplit_once('/').map(|(p, _)| p)
}
