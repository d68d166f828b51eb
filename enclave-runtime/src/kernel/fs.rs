//! The enclave's read-only root file tree, built once from the image's cpio entries.
//!
//! Nodes are addressed by inode number (index + 1; the root is [`ROOT_INO`]). File contents are
//! shared through `Arc` so opening a file copies nothing. Path resolution follows Linux: absolute
//! or relative paths, `.`/`..`/repeated slashes normalized, `..` at the root stays there,
//! symlinks followed up to [`MAX_SYMLINK_HOPS`] times. A synthetic `/dev` directory always
//! exists, with the kernel's own device nodes ([`Device`]: `/dev/null`, `/dev/nsm`, `/dev/random`, `/dev/urandom`) unless the
//! image puts something at their paths; `/proc`, `/sys` and `/tmp` do not (writes fail with
//! `EROFS` anyway).

mod fs_file;
#[cfg(test)]
mod fs_tests;

use std::collections::BTreeMap;
use std::sync::Arc;

use super::errno::Errno;
use super::file::Stat;
pub use fs_file::ImageFile;

/// An inode number inside the image tree.
pub type Ino = u64;

/// Inode number of `/`.
pub const ROOT_INO: Ino = 1;
/// `st_dev` of every image node.
pub const IMAGE_DEV: u64 = 0x2a;
/// Symlinks followed in one resolution before `ELOOP` (Linux's `MAXSYMLINKS`).
pub const MAX_SYMLINK_HOPS: u32 = 40;
/// Longest path accepted from the program, NUL excluded (`PATH_MAX` − 1).
pub const PATH_MAX: usize = 4095;
/// Longest single path component (`NAME_MAX`).
pub const NAME_MAX: usize = 255;

/// One entry of the image's root tree (from the cpio archive).
#[derive(Debug, Clone)]
pub struct TreeEntry {
    /// Path relative to the root, without a leading `/`.
    pub path: String,
    /// Full `st_mode` (`S_IFREG`, `S_IFDIR` or `S_IFLNK` plus permissions).
    pub mode: u32,
    /// File contents or symlink target.
    pub data: Vec<u8>,
}

/// Errors building the tree from the image.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// A path with `..` or an empty name where a file was expected.
    #[error("image tree entry {0:?} has an invalid path")]
    BadPath(String),
    /// Two entries of different kinds at one path.
    #[error("image tree entry {0:?} appears twice")]
    Duplicate(String),
    /// An entry below something that is not a directory.
    #[error("parent of image tree entry {0:?} is not a directory")]
    ParentNotDirectory(String),
    /// The tree has more nodes than inode numbers.
    #[error("image tree has too many entries")]
    TooManyEntries,
}

/// A character device the enclave kernel serves itself (opened by [`crate::kernel::dev`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    /// `/dev/null`.
    Null,
    /// `/dev/nsm`: the Nitro Secure Module.
    Nsm,
    /// `/dev/random`: the host's randomness (`getrandom(2)`), never blocking.
    Random,
    /// `/dev/urandom`: the same, as libraries that fall back to it expect.
    Urandom,
}

impl Device {
    /// Every device, in the order they are added to `/dev`.
    pub const ALL: [Device; 4] = [Device::Null, Device::Nsm, Device::Random, Device::Urandom];

    /// Its name under `/dev`.
    pub fn name(self) -> &'static str {
        match self {
            Device::Null => "null",
            Device::Nsm => "nsm",
            Device::Random => "random",
            Device::Urandom => "urandom",
        }
    }

    /// Its device number (`st_rdev`): `/dev/null` is 1:3 as on Linux; `/dev/nsm` is a misc
    /// device (major 10) whose minor Linux picks dynamically: any fixed one will do.
    pub fn rdev(self) -> u64 {
        match self {
            Device::Null => libc::makedev(1, 3),
            Device::Nsm => libc::makedev(10, 124),
            Device::Random => libc::makedev(1, 8),
            Device::Urandom => libc::makedev(1, 9),
        }
    }
}

/// What a node is.
#[derive(Debug)]
pub enum NodeKind {
    /// A regular file and its contents: the image reader's buffer itself, shared without a
    /// copy (an `Arc<[u8]>` would copy every file once more at each launch).
    File(Arc<Vec<u8>>),
    /// A directory: name → inode, sorted (the `getdents64` order).
    Dir(BTreeMap<String, Ino>),
    /// A symbolic link and its target.
    Symlink(Arc<Vec<u8>>),
    /// A character device of the enclave kernel.
    Device(Device),
}

/// One node of the tree.
#[derive(Debug)]
pub struct Node {
    /// Full `st_mode`.
    pub mode: u32,
    /// Parent directory (the root is its own parent).
    pub parent: Ino,
    /// Contents.
    pub kind: NodeKind,
}

/// The read-only file tree of the image.
#[derive(Debug)]
pub struct ImageTree {
    nodes: Vec<Node>,
}

impl Default for ImageTree {
    fn default() -> Self {
        let mut t = Self {
            nodes: vec![Node {
                mode: libc::S_IFDIR | 0o755,
                parent: ROOT_INO,
                kind: NodeKind::Dir(BTreeMap::new()),
            }],
        };
        // Cannot fail: the root is an empty directory.
        let _ = t.ensure_dir(&["dev"], "dev");
        t
    }
}

/// Why a walk stopped without a node.
enum WalkError {
    /// A Linux error.
    Errno(Errno),
    /// Only the final component is missing; its parent directory exists.
    LastMissing,
}

impl From<Errno> for WalkError {
    fn from(e: Errno) -> Self {
        WalkError::Errno(e)
    }
}

impl ImageTree {
    /// Builds the tree; missing parent directories are created, `/` and `/dev` always exist.
    /// Entries of other types (devices, FIFOs) are left out: the enclave kernel serves its own.
    pub fn new(entries: Vec<TreeEntry>) -> Result<ImageTree, FsError> {
        let mut t = ImageTree::default();
        for e in entries {
            let comps: Vec<&str> = e
                .path
                .split('/')
                .filter(|c| !c.is_empty() && *c != ".")
                .collect();
            if comps.iter().any(|c| *c == ".." || c.len() > NAME_MAX) {
                return Err(FsError::BadPath(e.path));
            }
            let Some((name, parents)) = comps.split_last() else {
                // The root itself ("." in cpio archives): only its mode may change.
                if e.mode & libc::S_IFMT != libc::S_IFDIR {
                    return Err(FsError::BadPath(e.path));
                }
                if let Some(root) = t.nodes.first_mut() {
                    root.mode = e.mode;
                }
                continue;
            };
            let kind = match e.mode & libc::S_IFMT {
                libc::S_IFREG => NodeKind::File(Arc::new(e.data)),
                libc::S_IFLNK => NodeKind::Symlink(Arc::new(e.data)),
                libc::S_IFDIR => NodeKind::Dir(BTreeMap::new()),
                _ => {
                    tracing::debug!(path = e.path, mode = e.mode, "image tree: entry skipped");
                    continue;
                }
            };
            let parent = t.ensure_dir(parents, &e.path)?;
            t.insert(parent, name, e.mode, kind, &e.path)?;
        }
        t.add_devices();
        Ok(t)
    }

    /// Adds the kernel's device nodes under `/dev` where the image left their names free.
    fn add_devices(&mut self) {
        let Some(dev) = self.child(ROOT_INO, "dev").filter(|&d| self.is_dir(d)) else {
            return;
        };
        for d in Device::ALL {
            if self.child(dev, d.name()).is_none() {
                // Cannot fail: `dev` is a directory and the name is free.
                let _ = self.insert(
                    dev,
                    d.name(),
                    libc::S_IFCHR | 0o666,
                    NodeKind::Device(d),
                    d.name(),
                );
            }
        }
    }

    /// Walks (creating) the directories `comps` from the root.
    fn ensure_dir(&mut self, comps: &[&str], path: &str) -> Result<Ino, FsError> {
        let mut cur = ROOT_INO;
        for c in comps {
            cur = match self.child(cur, c) {
                Some(ino) => ino,
                None => self.insert(
                    cur,
                    c,
                    libc::S_IFDIR | 0o755,
                    NodeKind::Dir(BTreeMap::new()),
                    path,
                )?,
            };
            if !matches!(self.node(cur).map(|n| &n.kind), Some(NodeKind::Dir(_))) {
                return Err(FsError::ParentNotDirectory(path.to_string()));
            }
        }
        Ok(cur)
    }

    /// Adds `name` under `parent`; a directory entry for an existing directory updates its mode.
    fn insert(
        &mut self,
        parent: Ino,
        name: &str,
        mode: u32,
        kind: NodeKind,
        path: &str,
    ) -> Result<Ino, FsError> {
        if let Some(existing) = self.child(parent, name) {
            let is_dir = matches!(kind, NodeKind::Dir(_));
            return match self.node_mut(existing) {
                Some(n) if is_dir && matches!(n.kind, NodeKind::Dir(_)) => {
                    n.mode = mode;
                    Ok(existing)
                }
                _ => Err(FsError::Duplicate(path.to_string())),
            };
        }
        let ino = u64::try_from(self.nodes.len())
            .ok()
            .and_then(|n| n.checked_add(1))
            .ok_or(FsError::TooManyEntries)?;
        self.nodes.push(Node { mode, parent, kind });
        match self.node_mut(parent).map(|n| &mut n.kind) {
            Some(NodeKind::Dir(children)) => {
                children.insert(name.to_string(), ino);
                Ok(ino)
            }
            _ => Err(FsError::ParentNotDirectory(path.to_string())),
        }
    }

    /// The node with inode number `ino`.
    pub fn node(&self, ino: Ino) -> Option<&Node> {
        let i = usize::try_from(ino.checked_sub(1)?).ok()?;
        self.nodes.get(i)
    }

    fn node_mut(&mut self, ino: Ino) -> Option<&mut Node> {
        let i = usize::try_from(ino.checked_sub(1)?).ok()?;
        self.nodes.get_mut(i)
    }

    /// The entries of directory `ino`, if it is one.
    pub fn dir(&self, ino: Ino) -> Option<&BTreeMap<String, Ino>> {
        match &self.node(ino)?.kind {
            NodeKind::Dir(children) => Some(children),
            _ => None,
        }
    }

    /// True when `ino` is a directory.
    pub fn is_dir(&self, ino: Ino) -> bool {
        self.dir(ino).is_some()
    }

    fn child(&self, dir: Ino, name: &str) -> Option<Ino> {
        self.dir(dir)?.get(name).copied()
    }

    /// Resolves `path` starting at directory `start` (ignored for absolute paths). With
    /// `follow` false a final symlink is returned itself (lstat, `AT_SYMLINK_NOFOLLOW`).
    pub fn lookup(&self, start: Ino, path: &[u8], follow: bool) -> Result<Ino, Errno> {
        self.walk(start, path, follow).map_err(|e| match e {
            WalkError::Errno(e) => e,
            WalkError::LastMissing => Errno::ENOENT,
        })
    }

    /// Like [`lookup`](Self::lookup), but `Ok(None)` when only the final component is missing
    /// (what `O_CREAT` would create).
    pub fn lookup_for_create(
        &self,
        start: Ino,
        path: &[u8],
        follow: bool,
    ) -> Result<Option<Ino>, Errno> {
        match self.walk(start, path, follow) {
            Ok(ino) => Ok(Some(ino)),
            Err(WalkError::LastMissing) => Ok(None),
            Err(WalkError::Errno(e)) => Err(e),
        }
    }

    fn walk<'a>(&'a self, start: Ino, path: &'a [u8], follow: bool) -> Result<Ino, WalkError> {
        if path.is_empty() {
            return Err(Errno::ENOENT.into());
        }
        let mut pending: Vec<&'a [u8]> = Vec::new();
        push_components(&mut pending, path);
        let mut cur = if path.first() == Some(&b'/') {
            ROOT_INO
        } else {
            start
        };
        let mut hops = 0u32;
        while let Some(comp) = pending.pop() {
            let node = self.node(cur).ok_or(Errno::ENOENT)?;
            let NodeKind::Dir(children) = &node.kind else {
                return Err(Errno::ENOTDIR.into());
            };
            match comp {
                b"." => continue,
                b".." => {
                    cur = node.parent;
                    continue;
                }
                _ => {}
            }
            if comp.len() > NAME_MAX {
                return Err(Errno::ENAMETOOLONG.into());
            }
            let last = pending.is_empty();
            let found = std::str::from_utf8(comp)
                .ok()
                .and_then(|name| children.get(name).copied());
            let Some(child) = found else {
                return Err(if last {
                    WalkError::LastMissing
                } else {
                    Errno::ENOENT.into()
                });
            };
            if let Some(NodeKind::Symlink(target)) = self.node(child).map(|n| &n.kind) {
                if !last || follow {
                    hops += 1;
                    if hops > MAX_SYMLINK_HOPS {
                        return Err(Errno::ELOOP.into());
                    }
                    if target.is_empty() {
                        return Err(Errno::ENOENT.into());
                    }
                    if target.first() == Some(&b'/') {
                        cur = ROOT_INO;
                    }
                    push_components(&mut pending, target);
                    continue;
                }
            }
            cur = child;
        }
        Ok(cur)
    }

    /// The canonical absolute path of `ino` (for `getcwd` and directory descriptors).
    pub fn path_of(&self, ino: Ino) -> String {
        let mut names = Vec::new();
        let mut cur = ino;
        // Bounded by the node count: every step moves to a strictly older parent.
        for _ in 0..self.nodes.len() {
            if cur == ROOT_INO {
                break;
            }
            let Some(node) = self.node(cur) else { break };
            if let Some((name, _)) = self
                .dir(node.parent)
                .and_then(|c| c.iter().find(|(_, &i)| i == cur))
            {
                names.push(name.as_str());
            }
            cur = node.parent;
        }
        if names.is_empty() {
            return "/".to_string();
        }
        names.iter().rev().fold(String::new(), |mut s, n| {
            s.push('/');
            s.push_str(n);
            s
        })
    }

    /// Describes node `ino` as `stat` does.
    pub fn stat(&self, ino: Ino) -> Result<Stat, Errno> {
        let node = self.node(ino).ok_or(Errno::ENOENT)?;
        let (size, nlink) = match &node.kind {
            NodeKind::File(d) | NodeKind::Symlink(d) => (d.len(), 1),
            NodeKind::Dir(_) => (4096, 2),
            NodeKind::Device(_) => (0, 1),
        };
        let rdev = match &node.kind {
            NodeKind::Device(d) => d.rdev(),
            _ => 0,
        };
        let size = u64::try_from(size).map_err(|_| Errno::EOVERFLOW)?;
        Ok(Stat {
            dev: IMAGE_DEV,
            ino,
            nlink,
            mode: node.mode,
            uid: 0,
            gid: 0,
            rdev,
            size,
            blksize: 4096,
            blocks: size.div_ceil(512),
        })
    }

    /// Number of nodes (for tests and reports).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True when the tree holds only the synthetic nodes' root.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

/// Pushes the components of `path` onto the stack `pending` so that the first is popped
/// first. A trailing slash adds a final `.`, which requires a directory (and follows a final
/// symlink), as in Linux.
fn push_components<'a>(pending: &mut Vec<&'a [u8]>, path: &'a [u8]) {
    if path.last() == Some(&b'/') && path.iter().any(|&b| b != b'/') {
        pending.push(b".");
    }
    for comp in path.split(|&b| b == b'/').filter(|c| !c.is_empty()).rev() {
        pending.push(comp);
    }
}

/// `d_type` of a node for `getdents64`.
pub fn dirent_type(mode: u32) -> u8 {
    match mode & libc::S_IFMT {
        libc::S_IFDIR => libc::DT_DIR,
        libc::S_IFLNK => libc::DT_LNK,
        libc::S_IFREG => libc::DT_REG,
        libc::S_IFCHR => libc::DT_CHR,
        _ => libc::DT_UNKNOWN,
    }
}
