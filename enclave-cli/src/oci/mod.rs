//! Reading OCI images without Docker: an OCI layout directory or archive (Docker ≥ 25
//! `docker save`, podman, skopeo `oci:`/`oci-archive:`, umoci, buildah) or a legacy
//! `docker save` archive becomes the enclave's file tree, program, argv, env and working
//! directory. Every blob's sha256 is checked, the unpacked size is bounded, and nothing is
//! written to the host's disk.

mod config;
mod error;
mod layer;
mod layout;
mod store;
mod tree;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

pub use error::OciError;
pub use store::OciSource;
pub use tree::{resolve, Limits, Node};

/// Default bound on the unpacked image, in MiB.
pub const DEFAULT_MAX_SIZE_MIB: u64 = 1024;
/// Most entries of an image's tree.
pub const MAX_ENTRIES: usize = 200_000;

/// What to read and how.
#[derive(Debug)]
pub struct LoadOptions<'a> {
    /// Which image when the layout holds several (a tag or full name).
    pub oci_ref: Option<&'a str>,
    /// Replaces the image's Cmd when not empty.
    pub cmd: &'a [String],
    /// Added to the image's Env, replacing same-named entries.
    pub env: &'a [String],
    /// Bounds on the tree.
    pub limits: Limits,
}

/// An image ready to pack.
#[derive(Debug)]
pub struct OciImage {
    /// The root tree by relative path, without `init` (the program is `/init`).
    pub tree: BTreeMap<String, Node>,
    /// Where the program is in the tree (relative path).
    pub program_path: String,
    /// The program's contents (it also stays at `program_path` unless that is `init`).
    pub program: Vec<u8>,
    /// argv, `argv[0]` as the image names the program.
    pub argv: Vec<String>,
    /// Environment.
    pub env: Vec<String>,
    /// Working directory (absolute), `None` for `/`.
    pub cwd: Option<String>,
    /// Device nodes and FIFOs left out.
    pub skipped_special: usize,
    /// `sha256:` digest of the image config (the image ID).
    pub config_digest: String,
}

/// Reads the image at `source`.
pub fn load(source: &OciSource, opts: &LoadOptions<'_>) -> Result<OciImage, OciError> {
    let store = store::Store::open_source(source)?;
    let resolved = layout::resolve(&store, opts.oci_ref)?;
    let image_config = config::parse(&resolved.config)?;
    let config_digest = format!(
        "sha256:{}",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&resolved.config))
    );
    let diff_ids = &image_config.rootfs.diff_ids;
    if diff_ids.len() != resolved.layers.len() {
        return Err(OciError::LayerCount {
            layers: resolved.layers.len(),
            diff_ids: diff_ids.len(),
        });
    }
    let mut tree = tree::Tree::new(opts.limits);
    let mut skipped_special = 0;
    for (layer, diff_id) in resolved.layers.iter().zip(diff_ids) {
        tracing::debug!(layer = layer.name.as_str(), "applying layer");
        let (blob, _) = store.open(&layer.name)?;
        let applied = layer::apply(
            &mut tree,
            &layer.name,
            blob,
            layer.digest.as_deref(),
            diff_id,
            opts.limits.max_bytes,
        )?;
        skipped_special += applied.skipped_special;
    }
    let argv = config::argv(&image_config, opts.cmd)?;
    let env = config::env(&image_config, opts.env);
    let cwd = config::working_dir(&image_config, &mut tree)?;
    let argv0 = argv.first().map(String::as_str).unwrap_or_default();
    let program_path = config::find_program(&tree, argv0, &env, cwd.as_deref())?;
    config::check_program(&tree, &program_path)?;
    let mut nodes = tree.into_nodes();
    let program = match nodes.get(&program_path) {
        Some(Node::File(_, data)) => data.clone(),
        _ => return Err(OciError::ProgramNotFile { path: program_path }),
    };
    match nodes.get(attestation::image::INIT_PATH) {
        None => {}
        Some(_) if program_path == attestation::image::INIT_PATH => {
            nodes.remove(attestation::image::INIT_PATH);
        }
        Some(_) => {
            return Err(OciError::InitTaken {
                program: program_path,
            })
        }
    }
    if skipped_special > 0 {
        tracing::warn!(
            count = skipped_special,
            "device nodes and FIFOs of the image are left out: the enclave's file tree has none"
        );
    }
    Ok(OciImage {
        tree: nodes,
        program_path,
        program,
        argv,
        env,
        cwd,
        skipped_special,
        config_digest,
    })
}
