//! Applying one layer to the tree: the blob is streamed (tar, tar+gzip or tar+zstd, told
//! apart by their magic bytes), its sha256 and the config's diff_id checked at the end;
//! `.wh.<name>` removes `<name>` from lower layers, `.wh..wh..opq` empties its directory of
//! lower layers' entries; hard links copy their target's contents; devices and FIFOs are
//! skipped (the enclave's file tree has none).

use std::io::{BufRead, BufReader, Read};

use super::store::{check_digest_hex, compression_of, HashingReader};
use super::tree::{components, Node, Tree};
use super::OciError;

/// Prefix of whiteout files.
const WHITEOUT: &str = ".wh.";
/// Name of the opaque-directory marker.
const OPAQUE: &str = ".wh..wh..opq";
/// Extra bytes of tar headers and padding allowed in a layer stream beyond the size limit.
const TAR_OVERHEAD: u64 = 64 << 20;

/// What applying a layer skipped.
#[derive(Debug, Default)]
pub struct Applied {
    /// Device nodes and FIFOs left out.
    pub skipped_special: usize,
}

/// Applies layer `name` (stream `blob`) to `tree`. `digest` is the blob's expected digest
/// (when the layout gives one), `diff_id` the uncompressed tar's (from the config).
pub fn apply(
    tree: &mut Tree,
    name: &str,
    blob: Box<dyn Read>,
    digest: Option<&str>,
    diff_id: &str,
    max_bytes: u64,
) -> Result<Applied, OciError> {
    let stream_limit = max_bytes.saturating_add(TAR_OVERHEAD);
    let layer_err = |source| OciError::Layer {
        name: name.to_owned(),
        source,
    };
    let compressed = HashingReader::new(blob, u64::MAX);
    let blob_tap = compressed.tap();
    let mut buffered = BufReader::new(compressed);
    let magic = buffered.fill_buf().map_err(layer_err)?.to_vec();
    let decoded: Box<dyn Read> = if magic.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(buffered))
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        let dec =
            ruzstd::decoding::StreamingDecoder::new(buffered).map_err(|e| OciError::Layer {
                name: name.to_owned(),
                source: std::io::Error::other(e.to_string()),
            })?;
        Box::new(dec)
    } else if let Some(what) = compression_of(&magic) {
        return Err(OciError::Compression {
            name: name.to_owned(),
            what,
        });
    } else {
        Box::new(buffered)
    };
    let tar_stream = HashingReader::new(decoded, stream_limit);
    let diff_tap = tar_stream.tap();
    let mut archive = tar::Archive::new(tar_stream);
    tree.start_layer();
    let mut applied = Applied::default();
    for entry in archive.entries().map_err(layer_err)? {
        let entry = entry.map_err(layer_err)?;
        apply_entry(tree, name, entry, &mut applied)?;
    }
    // Hash to the end: trailing blocks and padding are part of both digests.
    let mut rest = archive.into_inner();
    std::io::copy(&mut rest, &mut std::io::sink()).map_err(layer_err)?;
    drop(rest);
    if let Some(d) = digest {
        check_digest_hex(name, d, &blob_tap.hex())?;
    }
    check_digest_hex(&format!("{name} (uncompressed)"), diff_id, &diff_tap.hex())?;
    Ok(applied)
}

fn apply_entry<R: Read>(
    tree: &mut Tree,
    layer: &str,
    mut entry: tar::Entry<'_, R>,
    applied: &mut Applied,
) -> Result<(), OciError> {
    let layer_err = |source| OciError::Layer {
        name: layer.to_owned(),
        source,
    };
    let raw_path = entry.path().map_err(layer_err)?;
    let path = raw_path
        .to_str()
        .map(str::to_owned)
        .ok_or(OciError::BadPath {
            name: layer.to_owned(),
            path: raw_path.to_string_lossy().into_owned(),
            reason: "it is not UTF-8",
        })?;
    let parts = components(layer, &path)?;
    let Some(file_name) = parts.last().copied() else {
        return Ok(()); // the root directory itself
    };
    if let Some(hidden) = file_name.strip_prefix(WHITEOUT) {
        let Some(placed) = tree.place(layer, &path)? else {
            return Ok(());
        };
        let dir = placed.rsplit_once('/').map_or("", |(d, _)| d).to_owned();
        if file_name == OPAQUE {
            tree.make_opaque(&dir);
        } else if !hidden.starts_with(WHITEOUT) && !hidden.is_empty() {
            let target = if dir.is_empty() {
                hidden.to_owned()
            } else {
                format!("{dir}/{hidden}")
            };
            tree.remove_subtree(&target, false);
        }
        return Ok(());
    }
    let kind = entry.header().entry_type();
    let mode = || entry.header().mode().map(|m| m & 0o7777).map_err(layer_err);
    let node = if kind.is_dir() {
        Node::Dir(mode()?)
    } else if kind.is_file() {
        let mode = mode()?;
        let size = entry.size();
        tree.check_room(size)?;
        let mut data = Vec::with_capacity(usize::try_from(size.min(1 << 20)).unwrap_or(0));
        entry.read_to_end(&mut data).map_err(layer_err)?;
        Node::File(mode, data)
    } else if kind.is_symlink() {
        let target = entry
            .link_name()
            .map_err(layer_err)?
            .and_then(|t| t.to_str().map(str::to_owned))
            .filter(|t| !t.is_empty())
            .ok_or_else(|| OciError::BadPath {
                name: layer.to_owned(),
                path: path.clone(),
                reason: "it is a symlink without a UTF-8 target",
            })?;
        Node::Symlink(target)
    } else if kind.is_hard_link() {
        let target = entry
            .link_name()
            .map_err(layer_err)?
            .and_then(|t| t.to_str().map(str::to_owned))
            .unwrap_or_default();
        let parts = components(layer, &target)?;
        let resolved = tree.resolve(&parts.join("/"), false)?;
        match tree.get(&resolved) {
            Some(Node::File(m, data)) => {
                tree.check_room(u64::try_from(data.len()).unwrap_or(u64::MAX))?;
                Node::File(*m, data.clone())
            }
            _ => {
                return Err(OciError::BadHardLink {
                    name: layer.to_owned(),
                    path: path.trim_start_matches(['/', '.']).to_owned(),
                    target: resolved,
                })
            }
        }
    } else if kind.is_character_special() || kind.is_block_special() || kind.is_fifo() {
        applied.skipped_special += 1;
        return Ok(());
    } else {
        // PAX/GNU metadata is consumed by the tar reader; anything else is left out.
        return Ok(());
    };
    if let Some(placed) = tree.place(layer, &path)? {
        tree.insert(placed, node)?;
    }
    Ok(())
}
