//! The image's root file tree in memory, as layers build it: directories, regular files and
//! symlinks by normalized relative path, with whiteouts applied, parents resolved through
//! symlinks inside the tree (never the host's), and the total size and entry count bounded.

use std::collections::{BTreeMap, BTreeSet};

use super::OciError;

/// Symlinks followed while resolving one path (Linux's `MAXSYMLINKS`).
pub const MAX_SYMLINK_HOPS: u32 = 40;

/// One node of the tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    /// A directory and its permission bits.
    Dir(u32),
    /// A regular file: permission bits and contents.
    File(u32, Vec<u8>),
    /// A symlink and its target.
    Symlink(String),
}

/// Limits on what a tree may hold.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Most bytes of file contents in the tree.
    pub max_bytes: u64,
    /// Most entries in the tree.
    pub max_entries: usize,
}

/// The tree: normalized relative path (no leading `/`; the root is implicit) → node.
#[derive(Debug)]
pub struct Tree {
    nodes: BTreeMap<String, Node>,
    bytes: u64,
    limits: Limits,
    /// Paths created by the layer being applied (whiteouts do not remove them).
    this_layer: BTreeSet<String>,
}

/// Splits a layer path into its normalized components; `..` is refused, `.` and empty dropped.
pub fn components<'a>(layer: &str, path: &'a str) -> Result<Vec<&'a str>, OciError> {
    let mut out = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                return Err(OciError::BadPath {
                    name: layer.to_owned(),
                    path: path.to_owned(),
                    reason: "it contains '..'; a layer must not reach outside the image",
                })
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

impl Tree {
    /// An empty tree.
    pub fn new(limits: Limits) -> Self {
        Self {
            nodes: BTreeMap::new(),
            bytes: 0,
            limits,
            this_layer: BTreeSet::new(),
        }
    }

    /// Starts a new layer: whiteouts of the next layer apply to everything before it.
    pub fn start_layer(&mut self) {
        self.this_layer.clear();
    }

    /// Takes the nodes out.
    pub fn into_nodes(self) -> BTreeMap<String, Node> {
        self.nodes
    }

    /// The node at `path` (normalized), if any.
    pub fn get(&self, path: &str) -> Option<&Node> {
        self.nodes.get(path)
    }

    /// The path `path` names after following symlinks in its directories (and in the last
    /// component when `follow_last`); directories that do not exist are kept as named.
    pub fn resolve(&self, path: &str, follow_last: bool) -> Result<String, OciError> {
        resolve(&self.nodes, path, follow_last)
    }

    /// Where an entry of a layer at `path` goes: its parent directories resolved through
    /// symlinks and created (mode 0o755) when missing; a file in the way is replaced.
    pub fn place(&mut self, layer: &str, path: &str) -> Result<Option<String>, OciError> {
        let parts = components(layer, path)?;
        let Some((last, dirs)) = parts.split_last() else {
            return Ok(None);
        };
        let parent = self.resolve(&dirs.join("/"), true)?;
        let mut current = String::new();
        for part in parent.split('/').filter(|p| !p.is_empty()) {
            if !current.is_empty() {
                current.push('/');
            }
            current.push_str(part);
            match self.nodes.get(&current) {
                Some(Node::Dir(_)) => {}
                _ => self.insert(current.clone(), Node::Dir(0o755))?,
            }
        }
        Ok(Some(if parent.is_empty() {
            (*last).to_owned()
        } else {
            format!("{parent}/{last}")
        }))
    }

    /// Inserts `node` at `path` (a placed path), replacing what was there; a directory over a
    /// directory keeps its children, anything else replaces the whole subtree.
    pub fn insert(&mut self, path: String, node: Node) -> Result<(), OciError> {
        let keep_children = matches!(
            (self.nodes.get(&path), &node),
            (Some(Node::Dir(_)), Node::Dir(_))
        );
        if !keep_children {
            self.remove_subtree(&path, true);
        } else if let Some(old) = self.nodes.remove(&path) {
            self.forget(&old);
        }
        if let Node::File(_, data) = &node {
            let size = u64::try_from(data.len()).unwrap_or(u64::MAX);
            self.bytes = self.bytes.saturating_add(size);
            if self.bytes > self.limits.max_bytes {
                return Err(self.too_large());
            }
        }
        if self.nodes.len() >= self.limits.max_entries {
            return Err(OciError::TooManyEntries {
                max: self.limits.max_entries,
            });
        }
        self.this_layer.insert(path.clone());
        self.nodes.insert(path, node);
        Ok(())
    }

    /// Checks `size` more bytes would fit, before reading them.
    pub fn check_room(&self, size: u64) -> Result<(), OciError> {
        if self.bytes.saturating_add(size) > self.limits.max_bytes {
            return Err(self.too_large());
        }
        Ok(())
    }

    fn too_large(&self) -> OciError {
        OciError::TooLarge {
            max_mib: self.limits.max_bytes >> 20,
        }
    }

    fn forget(&mut self, node: &Node) {
        if let Node::File(_, data) = node {
            self.bytes = self
                .bytes
                .saturating_sub(u64::try_from(data.len()).unwrap_or(u64::MAX));
        }
    }

    /// Removes `path` and everything under it; with `all` false, what this layer created stays
    /// (whiteouts only hide lower layers).
    pub fn remove_subtree(&mut self, path: &str, all: bool) {
        let prefix = format!("{path}/");
        let mut doomed: Vec<String> = self
            .nodes
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| k.clone())
            .collect();
        if self.nodes.contains_key(path) {
            doomed.push(path.to_owned());
        }
        for p in doomed {
            if !all && self.this_layer.contains(&p) {
                continue;
            }
            if let Some(old) = self.nodes.remove(&p) {
                self.forget(&old);
            }
        }
    }

    /// An opaque directory: removes its children from lower layers.
    pub fn make_opaque(&mut self, dir: &str) {
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        let doomed: Vec<String> = self
            .nodes
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| k.clone())
            .filter(|k| !self.this_layer.contains(k))
            .collect();
        for p in doomed {
            if let Some(old) = self.nodes.remove(&p) {
                self.forget(&old);
            }
        }
    }
}

/// The path `path` names in `nodes` after following symlinks in its directories (and in the
/// last component when `follow_last`); directories that do not exist are kept as named.
pub fn resolve(
    nodes: &BTreeMap<String, Node>,
    path: &str,
    follow_last: bool,
) -> Result<String, OciError> {
    let mut hops = 0;
    resolve_from(nodes, &mut Vec::new(), path, follow_last, &mut hops, path).map(|v| v.join("/"))
}

fn resolve_from(
    nodes: &BTreeMap<String, Node>,
    stack: &mut Vec<String>,
    path: &str,
    follow_last: bool,
    hops: &mut u32,
    original: &str,
) -> Result<Vec<String>, OciError> {
    if path.starts_with('/') {
        stack.clear();
    }
    let parts: Vec<&str> = path
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    for (i, part) in parts.iter().enumerate() {
        if *part == ".." {
            stack.pop();
            continue;
        }
        stack.push((*part).to_owned());
        let last = i + 1 == parts.len();
        if last && !follow_last {
            break;
        }
        if let Some(Node::Symlink(target)) = nodes.get(&stack.join("/")) {
            *hops += 1;
            if *hops > MAX_SYMLINK_HOPS {
                return Err(OciError::SymlinkLoop {
                    path: original.trim_start_matches('/').to_owned(),
                    max: MAX_SYMLINK_HOPS,
                });
            }
            stack.pop();
            let target = target.clone();
            let mut resolved = resolve_from(nodes, stack, &target, true, hops, original)?;
            std::mem::swap(stack, &mut resolved);
        }
    }
    Ok(stack.clone())
}
