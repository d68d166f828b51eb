//! Finding the image in a store: `index.json` (OCI layout, what Docker ≥ 25, podman, skopeo,
//! umoci and buildah write) → manifest (linux/amd64 when an index lists several platforms,
//! the `--oci-ref` one when it lists several images) → config and layers; or, without
//! `index.json`, the legacy `docker save` `manifest.json` (config and layer tar paths).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::store::{blob_path, check_digest, clean_member, digest_hex, Store};
use super::OciError;

/// Deepest nesting of image indexes followed.
const MAX_INDEX_DEPTH: usize = 4;
/// Annotation with the tag of an image in an OCI layout.
const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// Annotation with the full image name (Docker, containerd).
const IMAGE_NAME: &str = "io.containerd.image.name";

/// The chosen image: its config (digest checked) and its layers, lowest first.
#[derive(Debug)]
pub struct Resolved {
    /// The image config JSON.
    pub config: Vec<u8>,
    /// The layers, applied in this order.
    pub layers: Vec<LayerRef>,
}

/// One layer blob.
#[derive(Debug)]
pub struct LayerRef {
    /// Member name in the store.
    pub name: String,
    /// Digest of the blob as stored (compressed), when the layout names it.
    pub digest: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    #[serde(default)]
    media_type: String,
    digest: String,
    #[serde(default)]
    platform: Option<Platform>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

#[derive(Deserialize, Clone)]
struct Platform {
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    os: String,
}

#[derive(Deserialize)]
struct Index {
    manifests: Vec<Descriptor>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Manifest {
    #[serde(default)]
    media_type: String,
    config: Descriptor,
    layers: Vec<Descriptor>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// Finds the image `oci_ref` (or the only one) in `store`.
pub fn resolve(store: &Store, oci_ref: Option<&str>) -> Result<Resolved, OciError> {
    if store.has("index.json") {
        let index: Index = parse("index.json", &store.read_small("index.json")?)?;
        let desc = choose_by_ref(&index.manifests, oci_ref)?;
        return from_descriptor(store, desc, 0);
    }
    if store.has("manifest.json") {
        let entries: Vec<DockerEntry> =
            parse("manifest.json", &store.read_small("manifest.json")?)?;
        return from_docker(store, &entries, oci_ref);
    }
    Err(OciError::NoLayout {
        path: store.path().to_owned(),
    })
}

fn parse<T: serde::de::DeserializeOwned>(name: &str, data: &[u8]) -> Result<T, OciError> {
    serde_json::from_slice(data).map_err(|source| OciError::Json {
        name: name.to_owned(),
        source,
    })
}

/// The names a descriptor answers to: its tag and its full image name, with and without the
/// default registry prefixes.
fn names_of(desc: &Descriptor) -> Vec<String> {
    let mut names = Vec::new();
    for key in [REF_NAME, IMAGE_NAME] {
        if let Some(n) = desc.annotations.get(key) {
            names.push(n.clone());
            for prefix in ["docker.io/library/", "docker.io/", "localhost/"] {
                if let Some(short) = n.strip_prefix(prefix) {
                    names.push(short.to_owned());
                }
            }
        }
    }
    names
}

fn describe_refs<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let list: Vec<&str> = names.collect();
    if list.is_empty() {
        "untagged images".to_owned()
    } else {
        list.join(", ")
    }
}

fn choose_by_ref<'a>(
    manifests: &'a [Descriptor],
    oci_ref: Option<&str>,
) -> Result<&'a Descriptor, OciError> {
    let available = || {
        describe_refs(
            manifests
                .iter()
                .filter_map(|d| {
                    d.annotations
                        .get(REF_NAME)
                        .or(d.annotations.get(IMAGE_NAME))
                })
                .map(String::as_str),
        )
    };
    if let Some(want) = oci_ref {
        let mut found = manifests
            .iter()
            .filter(|d| names_of(d).iter().any(|n| n == want));
        return match (found.next(), found.next()) {
            (Some(d), None) => Ok(d),
            (Some(_), Some(_)) => Err(OciError::Ambiguous {
                reason: format!("Several images are named {want:?}"),
                available: available(),
            }),
            (None, _) => Err(OciError::Ambiguous {
                reason: format!("No image is named {want:?}"),
                available: available(),
            }),
        };
    }
    match manifests {
        [only] => Ok(only),
        [] => Err(OciError::Ambiguous {
            reason: "index.json lists no image".to_owned(),
            available: available(),
        }),
        many if many.iter().all(|d| d.platform.is_some()) => choose_amd64(many),
        _ => Err(OciError::Ambiguous {
            reason: format!("index.json lists {} images", manifests.len()),
            available: available(),
        }),
    }
}

fn choose_amd64(manifests: &[Descriptor]) -> Result<&Descriptor, OciError> {
    manifests
        .iter()
        .find(|d| {
            d.platform
                .as_ref()
                .is_some_and(|p| p.os == "linux" && p.architecture == "amd64")
        })
        .ok_or_else(|| OciError::NoAmd64 {
            platforms: manifests
                .iter()
                .filter_map(|d| d.platform.clone())
                .map(|p| format!("{}/{}", p.os, p.architecture))
                .collect::<Vec<_>>()
                .join(", "),
        })
}

fn is_index(media_type: &str) -> bool {
    matches!(
        media_type,
        "application/vnd.oci.image.index.v1+json"
            | "application/vnd.docker.distribution.manifest.list.v2+json"
    )
}

fn is_manifest(media_type: &str) -> bool {
    matches!(
        media_type,
        "application/vnd.oci.image.manifest.v1+json"
            | "application/vnd.docker.distribution.manifest.v2+json"
            | ""
    )
}

fn from_descriptor(store: &Store, desc: &Descriptor, depth: usize) -> Result<Resolved, OciError> {
    if depth > MAX_INDEX_DEPTH {
        return Err(OciError::TooDeep {
            max: MAX_INDEX_DEPTH,
        });
    }
    let name = blob_path(&desc.digest)?;
    let data = store.read_json_blob(&desc.digest)?;
    if is_index(&desc.media_type) {
        let index: Index = parse(&name, &data)?;
        return from_descriptor(store, choose_amd64(&index.manifests)?, depth + 1);
    }
    if !is_manifest(&desc.media_type) {
        return Err(OciError::MediaType {
            name,
            media_type: desc.media_type.clone(),
        });
    }
    let manifest: Manifest = parse(&name, &data)?;
    if is_index(&manifest.media_type) {
        let index: Index = parse(&name, &data)?;
        return from_descriptor(store, choose_amd64(&index.manifests)?, depth + 1);
    }
    let config = store.read_json_blob(&manifest.config.digest)?;
    let layers = manifest
        .layers
        .iter()
        .map(|l| {
            Ok(LayerRef {
                name: blob_path(&l.digest)?,
                digest: Some(l.digest.clone()),
            })
        })
        .collect::<Result<Vec<_>, OciError>>()?;
    Ok(Resolved { config, layers })
}

/// A path named by `manifest.json`: relative, without `..`.
fn docker_member(path: &str) -> Result<String, OciError> {
    let clean = clean_member(path);
    if clean.is_empty() || clean.split('/').any(|c| c == "..") {
        return Err(OciError::BadPath {
            name: "manifest.json".to_owned(),
            path: path.to_owned(),
            reason: "it must be a relative path inside the archive",
        });
    }
    Ok(clean)
}

/// The digest a `docker save` member name carries: `blobs/sha256/<hex>` or `<hex>.json`.
fn digest_in_name(member: &str) -> Option<String> {
    let hex = member
        .strip_prefix("blobs/sha256/")
        .or_else(|| member.strip_suffix(".json"))?;
    let digest = format!("sha256:{hex}");
    digest_hex(&digest).is_ok().then_some(digest)
}

fn from_docker(
    store: &Store,
    entries: &[DockerEntry],
    oci_ref: Option<&str>,
) -> Result<Resolved, OciError> {
    let tags = |e: &DockerEntry| e.repo_tags.clone().unwrap_or_default();
    let available = || {
        let all: Vec<String> = entries.iter().flat_map(tags).collect();
        describe_refs(all.iter().map(String::as_str))
    };
    let entry = match (oci_ref, entries) {
        (None, [only]) => only,
        (None, _) => {
            return Err(OciError::Ambiguous {
                reason: format!("manifest.json lists {} images", entries.len()),
                available: available(),
            })
        }
        (Some(want), _) => entries
            .iter()
            .find(|e| {
                tags(e).iter().any(|t| {
                    t == want
                        || t.strip_prefix("docker.io/library/") == Some(want)
                        || t.strip_prefix("localhost/") == Some(want)
                })
            })
            .ok_or_else(|| OciError::Ambiguous {
                reason: format!("No image is tagged {want:?}"),
                available: available(),
            })?,
    };
    let config_name = docker_member(&entry.config)?;
    let config = store.read_small(&config_name)?;
    if let Some(digest) = digest_in_name(&config_name) {
        check_digest(&config_name, &digest, &config)?;
    }
    let layers = entry
        .layers
        .iter()
        .map(|l| {
            let name = docker_member(l)?;
            let digest = name
                .starts_with("blobs/sha256/")
                .then(|| digest_in_name(&name))
                .flatten();
            Ok(LayerRef { name, digest })
        })
        .collect::<Result<Vec<_>, OciError>>()?;
    Ok(Resolved { config, layers })
}
