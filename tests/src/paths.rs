//! Where the workspace, its target directory and the build profile directory are.

use std::path::{Path, PathBuf};

/// The workspace root (the parent of this crate).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_owned()
}

/// The profile directory the running test binary was built into (`<target>/debug`, or
/// `<target>/<triple>/debug`), found from the executable path `<profile>/deps/<test>`.
/// Falls back to `$CARGO_TARGET_DIR/debug`, then `<workspace>/target/debug`.
pub fn profile_dir() -> PathBuf {
    if let Ok(exe) = std::env::current_exe() {
        if let Some(deps) = exe.parent() {
            if deps.file_name().is_some_and(|n| n == "deps") {
                if let Some(profile) = deps.parent() {
                    return profile.to_owned();
                }
            }
        }
    }
    target_dir_from_env().join("debug")
}

/// Whether [`profile_dir`] is a release profile directory.
pub fn is_release() -> bool {
    profile_dir().file_name().is_some_and(|n| n == "release")
}

/// The directory that holds the profile directory: `<target>` or `<target>/<triple>`.
/// Guest programs are built under it.
pub fn target_dir() -> PathBuf {
    let profile = profile_dir();
    profile
        .parent()
        .map_or_else(target_dir_from_env, Path::to_owned)
}

fn target_dir_from_env() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                workspace_root().join(dir)
            }
        }
        _ => workspace_root().join("target"),
    }
}

/// `tests/guest/` in the workspace.
pub fn guest_sources() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("guest")
}
