//! Where an image's files live: an OCI layout directory, or a tar archive (OCI layout or
//! legacy `docker save`) indexed once and read member by member without unpacking it.
//! Blobs are read through [`Store::read_json_blob`] (whole, digest checked) or
//! [`Store::open`] (streamed; the caller checks the digest with [`HashingReader`]).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use sha2::{Digest, Sha256};

use super::OciError;

/// Largest JSON document (index, manifest, config) read.
pub const MAX_JSON_SIZE: u64 = 8 << 20;
/// Most members of an archive indexed.
const MAX_MEMBERS: usize = 100_000;

/// Where the image is.
#[derive(Clone, Debug)]
pub enum OciSource {
    /// An OCI layout directory (`skopeo copy ... oci:DIR`, `umoci`, `buildah push ... oci:DIR`).
    Dir(PathBuf),
    /// A tar archive (`docker save`, `podman save`, `skopeo copy ... oci-archive:FILE`).
    Archive(PathBuf),
}

/// An opened image store.
pub struct Store {
    root: PathBuf,
    /// Archive members: name → (offset, size); `None` for a directory.
    members: Option<BTreeMap<String, (u64, u64)>>,
}

impl Store {
    /// Opens a directory, or indexes an archive's regular files.
    pub fn open_source(source: &OciSource) -> Result<Self, OciError> {
        match source {
            OciSource::Dir(dir) => {
                let meta = std::fs::metadata(dir).map_err(|e| io(dir, e))?;
                if !meta.is_dir() {
                    return Err(io(
                        dir,
                        std::io::Error::other("not a directory (use --oci-archive for a tar file)"),
                    ));
                }
                Ok(Self {
                    root: dir.clone(),
                    members: None,
                })
            }
            OciSource::Archive(path) => Ok(Self {
                root: path.clone(),
                members: Some(index_archive(path)?),
            }),
        }
    }

    /// The directory or archive, for messages.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// True when the layout has `name`.
    pub fn has(&self, name: &str) -> bool {
        match &self.members {
            Some(m) => m.contains_key(name),
            None => self.root.join(name).is_file(),
        }
    }

    /// Opens member `name` (a checked relative path) for streaming, with its size.
    pub fn open(&self, name: &str) -> Result<(Box<dyn Read>, u64), OciError> {
        let missing = || OciError::Missing {
            name: name.to_owned(),
        };
        match &self.members {
            Some(members) => {
                let &(offset, size) = members.get(name).ok_or_else(missing)?;
                let mut f = File::open(&self.root).map_err(|e| io(&self.root, e))?;
                f.seek(SeekFrom::Start(offset))
                    .map_err(|e| io(&self.root, e))?;
                Ok((Box::new(f.take(size)), size))
            }
            None => {
                let path = self.root.join(name);
                let f = File::open(&path).map_err(|e| match e.kind() {
                    std::io::ErrorKind::NotFound => missing(),
                    _ => io(&path, e),
                })?;
                let size = f.metadata().map_err(|e| io(&path, e))?.len();
                Ok((Box::new(f), size))
            }
        }
    }

    /// Reads a JSON document of at most [`MAX_JSON_SIZE`] bytes.
    pub fn read_small(&self, name: &str) -> Result<Vec<u8>, OciError> {
        let (reader, size) = self.open(name)?;
        if size > MAX_JSON_SIZE {
            return Err(OciError::BadPath {
                name: name.to_owned(),
                path: name.to_owned(),
                reason: "the document is over 8 MiB, too large for an image manifest or config",
            });
        }
        let mut data = Vec::new();
        reader
            .take(MAX_JSON_SIZE)
            .read_to_end(&mut data)
            .map_err(|e| io(&self.root.join(name), e))?;
        Ok(data)
    }

    /// Reads the blob `digest` (a JSON document) and checks its sha256.
    pub fn read_json_blob(&self, digest: &str) -> Result<Vec<u8>, OciError> {
        let name = blob_path(digest)?;
        let data = self.read_small(&name)?;
        check_digest(&name, digest, &data)?;
        Ok(data)
    }
}

/// `blobs/sha256/<hex>` of a checked `sha256:<hex>` digest.
pub fn blob_path(digest: &str) -> Result<String, OciError> {
    Ok(format!("blobs/sha256/{}", digest_hex(digest)?))
}

/// The hex part of a `sha256:<64 lowercase hex>` digest.
pub fn digest_hex(digest: &str) -> Result<&str, OciError> {
    match digest.strip_prefix("sha256:") {
        Some(hex)
            if hex.len() == 64
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
        {
            Ok(hex)
        }
        _ => Err(OciError::BadDigest {
            digest: digest.to_owned(),
        }),
    }
}

/// Checks `data` hashes to `digest`.
pub fn check_digest(name: &str, digest: &str, data: &[u8]) -> Result<(), OciError> {
    check_digest_hex(name, digest, &hex::encode(Sha256::digest(data)))
}

/// Checks the hex sha256 `found` of blob `name` is `digest`.
pub fn check_digest_hex(name: &str, digest: &str, found: &str) -> Result<(), OciError> {
    let expected = digest_hex(digest)?;
    if found == expected {
        Ok(())
    } else {
        Err(OciError::DigestMismatch {
            name: name.to_owned(),
            expected: digest.to_owned(),
            found: found.to_owned(),
        })
    }
}

/// A reader that hashes (sha256) and counts what passes through; [`HashingReader::tap`]
/// keeps a handle on the result while the reader is owned by a decoder.
pub struct HashingReader<R> {
    inner: R,
    state: Rc<RefCell<(Sha256, u64)>>,
    limit: u64,
}

/// The running hash and count of a [`HashingReader`].
#[derive(Clone)]
pub struct HashTap(Rc<RefCell<(Sha256, u64)>>);

impl HashTap {
    /// Hex of the sha256 of everything read so far.
    pub fn hex(&self) -> String {
        hex::encode(self.0.borrow().0.clone().finalize())
    }
}

impl<R: Read> HashingReader<R> {
    /// Wraps `inner`; reading more than `limit` bytes is an error.
    pub fn new(inner: R, limit: u64) -> Self {
        Self {
            inner,
            state: Rc::new(RefCell::new((Sha256::new(), 0))),
            limit,
        }
    }

    /// A handle on the hash.
    pub fn tap(&self) -> HashTap {
        HashTap(self.state.clone())
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut state = self.state.borrow_mut();
        state.0.update(buf.get(..n).unwrap_or_default());
        state.1 = state.1.saturating_add(u64::try_from(n).unwrap_or(u64::MAX));
        if state.1 > self.limit {
            return Err(std::io::Error::other(format!(
                "the stream is over its {}-byte limit",
                self.limit
            )));
        }
        Ok(n)
    }
}

fn io(path: &Path, source: std::io::Error) -> OciError {
    OciError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Member name as the layout names it: no leading `./` or `/`.
pub fn clean_member(name: &str) -> String {
    let mut s = name;
    loop {
        if let Some(rest) = s.strip_prefix("./") {
            s = rest;
        } else if let Some(rest) = s.strip_prefix('/') {
            s = rest;
        } else {
            break;
        }
    }
    s.to_owned()
}

/// The compression whose magic bytes `head` starts with, if any.
pub fn compression_of(head: &[u8]) -> Option<&'static str> {
    if head.starts_with(&[0x1f, 0x8b]) {
        Some("gzip")
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Some("zstd")
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z']) {
        Some("xz")
    } else if head.starts_with(b"BZh") {
        Some("bzip2")
    } else {
        None
    }
}

fn index_archive(path: &Path) -> Result<BTreeMap<String, (u64, u64)>, OciError> {
    let mut file = File::open(path).map_err(|e| io(path, e))?;
    let mut head = [0u8; 6];
    let n = file.read(&mut head).unwrap_or(0);
    if let Some(what) = compression_of(head.get(..n).unwrap_or_default()) {
        return Err(OciError::CompressedArchive {
            path: path.to_owned(),
            what,
        });
    }
    file.seek(SeekFrom::Start(0)).map_err(|e| io(path, e))?;
    let not_tar = |source| OciError::NotTar {
        path: path.to_owned(),
        source,
    };
    let mut archive = tar::Archive::new(std::io::BufReader::new(file));
    let mut members = BTreeMap::new();
    // Legacy `docker save` stores a repeated layer as a symlink to the first copy.
    let mut links: Vec<(String, String)> = Vec::new();
    for entry in archive.entries().map_err(not_tar)? {
        let entry = entry.map_err(not_tar)?;
        let kind = entry.header().entry_type();
        let name = clean_member(&entry.path().map_err(not_tar)?.to_string_lossy());
        if members.len() + links.len() >= MAX_MEMBERS {
            return Err(OciError::TooManyEntries { max: MAX_MEMBERS });
        }
        if kind.is_file() {
            members.insert(name, (entry.raw_file_position(), entry.size()));
        } else if kind.is_symlink() || kind.is_hard_link() {
            let target = entry
                .link_name()
                .map_err(not_tar)?
                .map(|t| t.to_string_lossy().into_owned())
                .unwrap_or_default();
            let target = if kind.is_symlink() {
                join_relative(&name, &target)
            } else {
                clean_member(&target)
            };
            links.push((name, target));
        }
    }
    // Links to links: a few passes settle every chain a real archive has.
    for _ in 0..4 {
        for (name, target) in &links {
            if let Some(&found) = members.get(target) {
                members.entry(name.clone()).or_insert(found);
            }
        }
    }
    Ok(members)
}

/// `target` of a symlink member `name`, as a member name (`..` resolved, never above the root).
fn join_relative(name: &str, target: &str) -> String {
    let mut parts: Vec<&str> = if target.starts_with('/') {
        Vec::new()
    } else {
        name.split('/').collect()
    };
    if !target.starts_with('/') {
        parts.pop();
    }
    for c in target.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    parts.join("/")
}
