//! `build-enclave --oci-archive/--oci-dir`: an OCI image (see [`crate::oci`]) → the parts of
//! an enclave image: `/init` (the image's program), the root tree (with `--file`s replacing
//! what the image has at their paths), argv/env/cwd from the image config and the flags.

use anyhow::Context;
use attestation::cpio::{normalize_path, CpioEntry};
use attestation::image::InitSpec;

use crate::args::BuildArgs;
use crate::oci::{self, Limits, LoadOptions, Node, OciSource};

/// An OCI image turned into image inputs.
pub(super) struct Prepared {
    /// The program, stored as `/init`.
    pub init: Vec<u8>,
    /// The rest of the root tree.
    pub tree: Vec<CpioEntry>,
    /// argv, env and cwd.
    pub init_spec: InitSpec,
    /// Default image name: the program's file name.
    pub name: String,
    /// The metadata's `DockerInfo`: the image ID and what was taken from its config.
    pub docker_info: serde_json::Value,
}

/// The OCI source the flags name, if any.
pub(super) fn source(a: &BuildArgs) -> Option<OciSource> {
    match (&a.oci_archive, &a.oci_dir) {
        (Some(p), _) => Some(OciSource::Archive(p.clone())),
        (None, Some(d)) => Some(OciSource::Dir(d.clone())),
        (None, None) => None,
    }
}

/// Reads the image and merges `files` (`--file`, already read) over its tree: a destination
/// under a symlinked directory of the image (e.g. `/bin` → `usr/bin`) is moved to where the
/// symlink points, and what the image has there is replaced.
pub(super) fn prepare(
    a: &BuildArgs,
    source: &OciSource,
    env: &[String],
    files: &mut [(String, Vec<u8>, u32)],
) -> anyhow::Result<Prepared> {
    let max_bytes = a
        .oci_max_size_mib
        .checked_mul(1 << 20)
        .context("--oci-max-size-mib is too large: give a size in MiB below 2^44")?;
    let opts = LoadOptions {
        oci_ref: a.oci_ref.as_deref(),
        cmd: &a.cmd,
        env,
        limits: Limits {
            max_bytes,
            max_entries: oci::MAX_ENTRIES,
        },
    };
    let img = oci::load(source, &opts).context("Cannot use the OCI image")?;
    let mut nodes = img.tree;
    for (dst, _, _) in files.iter_mut() {
        let Ok(path) = normalize_path(dst) else {
            continue; // build_eif names the bad destination
        };
        let placed = match path.rsplit_once('/') {
            Some((dir, name)) => {
                let dir = oci::resolve(&nodes, dir, true)
                    .with_context(|| format!("Cannot place --file destination {dst}"))?;
                if dir.is_empty() {
                    name.to_owned()
                } else {
                    format!("{dir}/{name}")
                }
            }
            None => path,
        };
        if matches!(nodes.get(&placed), Some(Node::Dir(_))) {
            anyhow::bail!(
                "--file destination {dst} is a directory of the image: give a file path inside it"
            );
        }
        nodes.remove(&placed);
        *dst = format!("/{placed}");
    }
    let tree = nodes
        .into_iter()
        .map(|(path, node)| match node {
            Node::Dir(mode) => CpioEntry::dir(path, mode),
            Node::File(mode, data) => CpioEntry::file(path, mode, data),
            Node::Symlink(target) => CpioEntry::symlink(path, target),
        })
        .collect();
    let name = img
        .program_path
        .rsplit('/')
        .next()
        .unwrap_or("app")
        .to_owned();
    tracing::info!(
        program = img.program_path.as_str(),
        argv = ?img.argv,
        cwd = ?img.cwd,
        skipped_devices_and_fifos = img.skipped_special,
        "OCI image read"
    );
    let docker_info = serde_json::json!({
        "Id": img.config_digest,
        "RepoTags": a.oci_ref.iter().collect::<Vec<_>>(),
        "Program": format!("/{}", img.program_path),
        "Config": {
            "Argv": img.argv,
            "Env": img.env,
            "WorkingDir": img.cwd.clone().unwrap_or_default(),
        },
    });
    Ok(Prepared {
        docker_info,
        init: img.program,
        tree,
        init_spec: InitSpec {
            argv: img.argv,
            env: img.env,
            cwd: img.cwd,
        },
        name,
    })
}
