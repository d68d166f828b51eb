//! Unit tests of OCI reading on images built here with the `tar` crate: both layouts,
//! whiteouts, opaque directories, links, digests, limits and program resolution.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use sha2::{Digest, Sha256};

use super::*;

static DIRS: AtomicU32 = AtomicU32::new(0);

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let n = DIRS.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("oci-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A minimal static ET_EXEC the enclave's ELF check accepts; with `interp`, a PT_INTERP.
fn tiny_elf(interp: Option<&str>) -> Vec<u8> {
    let mut b = vec![0u8; 0x200];
    b[..4].copy_from_slice(b"\x7fELF");
    b[4] = 2;
    b[5] = 1;
    b[6] = 1;
    b[16..18].copy_from_slice(&2u16.to_le_bytes());
    b[18..20].copy_from_slice(&62u16.to_le_bytes());
    b[24..32].copy_from_slice(&0x40_0100u64.to_le_bytes());
    b[32..40].copy_from_slice(&64u64.to_le_bytes());
    b[54..56].copy_from_slice(&56u16.to_le_bytes());
    b[56..58].copy_from_slice(&1u16.to_le_bytes());
    b[64..68].copy_from_slice(&1u32.to_le_bytes());
    b[68..72].copy_from_slice(&5u32.to_le_bytes());
    b[80..88].copy_from_slice(&0x40_0000u64.to_le_bytes());
    b[96..104].copy_from_slice(&0x200u64.to_le_bytes());
    b[104..112].copy_from_slice(&0x200u64.to_le_bytes());
    if let Some(i) = interp {
        b[56..58].copy_from_slice(&2u16.to_le_bytes());
        let p = 120;
        b[p..p + 4].copy_from_slice(&3u32.to_le_bytes());
        b[p + 8..p + 16].copy_from_slice(&0x180u64.to_le_bytes());
        let n = u64::try_from(i.len() + 1).unwrap();
        b[p + 32..p + 40].copy_from_slice(&n.to_le_bytes());
        b[0x180..0x180 + i.len()].copy_from_slice(i.as_bytes());
    }
    b
}

/// One entry of a test layer.
enum E<'a> {
    Dir(&'a str),
    File(&'a str, u32, &'a [u8]),
    Link(&'a str, &'a str),
    Hard(&'a str, &'a str),
    Fifo(&'a str),
}

fn layer(entries: &[E<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_ustar();
        h.set_mtime(0);
        match e {
            E::Dir(p) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                b.append_data(&mut h, p, &[][..]).unwrap();
            }
            E::File(p, mode, data) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                h.set_size(u64::try_from(data.len()).unwrap());
                b.append_data(&mut h, p, *data).unwrap();
            }
            E::Link(p, target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                b.append_link(&mut h, p, target).unwrap();
            }
            E::Hard(p, target) => {
                h.set_entry_type(tar::EntryType::Link);
                h.set_mode(0o644);
                h.set_size(0);
                b.append_link(&mut h, p, target).unwrap();
            }
            E::Fifo(p) => {
                h.set_entry_type(tar::EntryType::Fifo);
                h.set_mode(0o644);
                h.set_size(0);
                b.append_data(&mut h, p, &[][..]).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn sha(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// The run config of a test image.
fn config_json(layers: &[Vec<u8>], run: &serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": run,
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| sha(l)).collect::<Vec<_>>()},
    }))
    .unwrap()
}

fn put_blob(dir: &Path, data: &[u8]) -> String {
    let digest = sha(data);
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    std::fs::write(blobs.join(&digest[7..]), data).unwrap();
    digest
}

/// How test layers are stored.
#[derive(Clone, Copy)]
enum Comp {
    Tar,
    Gzip,
    Zstd,
}

/// Writes an OCI layout with one image (layers gzipped when `gz`) into `dir`.
fn oci_layout(dir: &Path, layers: &[Vec<u8>], run: &serde_json::Value, gz: bool) {
    let comp = if gz { Comp::Gzip } else { Comp::Tar };
    let manifest = image_manifest(dir, layers, run, comp);
    write_index(dir, &[("latest", manifest, None)]);
}

/// Writes the blobs of one image (config, layers, manifest); returns the manifest's digest
/// and size.
fn image_manifest(
    dir: &Path,
    layers: &[Vec<u8>],
    run: &serde_json::Value,
    comp: Comp,
) -> (String, usize) {
    let config = config_json(layers, run);
    let config_digest = put_blob(dir, &config);
    let layer_descs: Vec<serde_json::Value> = layers
        .iter()
        .map(|l| {
            let (blob, mt) = match comp {
                Comp::Gzip => (gzip(l), "application/vnd.oci.image.layer.v1.tar+gzip"),
                Comp::Zstd => (
                    ruzstd::encoding::compress_to_vec(
                        &l[..],
                        ruzstd::encoding::CompressionLevel::Fastest,
                    ),
                    "application/vnd.oci.image.layer.v1.tar+zstd",
                ),
                Comp::Tar => (l.clone(), "application/vnd.oci.image.layer.v1.tar"),
            };
            let size = blob.len();
            serde_json::json!({"mediaType": mt, "digest": put_blob(dir, &blob), "size": size})
        })
        .collect();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": layer_descs,
    }))
    .unwrap();
    (put_blob(dir, &manifest), manifest.len())
}

/// One `index.json` entry: tag, (manifest digest, size), optional (os, architecture).
type IndexEntry<'a> = (&'a str, (String, usize), Option<(&'a str, &'a str)>);

/// Writes `index.json` listing the manifests.
fn write_index(dir: &Path, images: &[IndexEntry<'_>]) {
    let manifests: Vec<serde_json::Value> = images
        .iter()
        .map(|(tag, (digest, size), platform)| {
            let mut d = serde_json::json!({
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": digest,
                "size": size,
                "annotations": {"org.opencontainers.image.ref.name": tag},
            });
            if let Some((os, arch)) = platform {
                d["platform"] = serde_json::json!({"os": os, "architecture": arch});
            }
            d
        })
        .collect();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    std::fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": manifests}))
            .unwrap(),
    )
    .unwrap();
}

/// Writes a legacy `docker save` archive (manifest.json, `<id>.json`, `<n>/layer.tar`).
fn docker_archive(path: &Path, layers: &[Vec<u8>], run: &serde_json::Value) {
    let config = config_json(layers, run);
    let config_name = format!("{}.json", &sha(&config)[7..]);
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o644);
        h.set_size(u64::try_from(data.len()).unwrap());
        b.append_data(&mut h, name, data).unwrap();
    };
    let names: Vec<String> = (0..layers.len())
        .map(|i| format!("l{i}/layer.tar"))
        .collect();
    for (n, l) in names.iter().zip(layers) {
        add(n, l);
    }
    add(&config_name, &config);
    let manifest = serde_json::to_vec(&serde_json::json!([
        {"Config": config_name, "RepoTags": ["app:1"], "Layers": names}
    ]))
    .unwrap();
    add("manifest.json", &manifest);
    std::fs::write(path, b.into_inner().unwrap()).unwrap();
}

/// Tars directory `dir` into `path` (an `oci-archive:`).
fn tar_dir(dir: &Path, path: &Path) {
    let mut b = tar::Builder::new(Vec::new());
    b.append_dir_all(".", dir).unwrap();
    std::fs::write(path, b.into_inner().unwrap()).unwrap();
}

fn limits() -> Limits {
    Limits {
        max_bytes: 1 << 20,
        max_entries: 1000,
    }
}

fn load_dir(dir: &Path) -> Result<OciImage, OciError> {
    load(
        &OciSource::Dir(dir.to_owned()),
        &LoadOptions {
            oci_ref: None,
            cmd: &[],
            env: &[],
            limits: limits(),
        },
    )
}

fn run_config() -> serde_json::Value {
    serde_json::json!({
        "Entrypoint": ["app", "--flag"],
        "Cmd": ["x"],
        "Env": ["PATH=/usr/bin:/bin", "A=1"],
        "WorkingDir": "/work",
    })
}

fn base_layers() -> Vec<Vec<u8>> {
    let elf = tiny_elf(None);
    vec![
        layer(&[
            E::Dir("usr"),
            E::Dir("usr/bin"),
            E::File("usr/bin/app", 0o755, &elf),
            E::Link("bin", "usr/bin"),
            E::File("etc/gone", 0o644, b"lower"),
            E::File("etc/kept", 0o644, b"kept"),
            E::File("opq/old", 0o644, b"old"),
            E::Dir("opq/sub"),
            E::File("opq/sub/older", 0o644, b"older"),
            E::Fifo("etc/fifo"),
        ]),
        layer(&[
            E::File("etc/.wh.gone", 0o644, b""),
            E::File("opq/.wh..wh..opq", 0o644, b""),
            E::File("opq/new", 0o600, b"new"),
            E::File("bin/via-link", 0o644, b"through the symlink"),
            E::Hard("etc/hard", "etc/kept"),
        ]),
    ]
}

fn file<'a>(img: &'a OciImage, path: &str) -> Option<(&'a u32, &'a [u8])> {
    match img.tree.get(path) {
        Some(Node::File(m, d)) => Some((m, d.as_slice())),
        _ => None,
    }
}

fn check_base(img: &OciImage) {
    assert_eq!(img.argv, ["app", "--flag", "x"]);
    assert_eq!(img.env, ["PATH=/usr/bin:/bin", "A=1"]);
    assert_eq!(img.cwd.as_deref(), Some("/work"));
    assert_eq!(img.tree.get("work"), Some(&Node::Dir(0o755)));
    assert_eq!(img.program_path, "usr/bin/app");
    assert_eq!(img.program, tiny_elf(None));
    assert!(file(img, "etc/gone").is_none(), "whiteout removes");
    assert_eq!(file(img, "etc/kept").map(|f| f.1), Some(&b"kept"[..]));
    assert_eq!(file(img, "etc/hard").map(|f| f.1), Some(&b"kept"[..]));
    assert!(
        file(img, "opq/old").is_none(),
        "opaque dir hides lower files"
    );
    assert!(!img.tree.contains_key("opq/sub/older"));
    assert!(!img.tree.contains_key("opq/sub"));
    assert_eq!(file(img, "opq/new"), Some((&0o600, &b"new"[..])));
    assert_eq!(
        file(img, "usr/bin/via-link").map(|f| f.1),
        Some(&b"through the symlink"[..]),
        "a path under a symlinked directory lands in its target"
    );
    assert_eq!(img.tree.get("bin"), Some(&Node::Symlink("usr/bin".into())));
    assert!(!img.tree.contains_key("etc/fifo"));
    assert_eq!(img.skipped_special, 1);
    assert!(!img.tree.keys().any(|k| k.contains(".wh.")));
}

#[test]
fn oci_layout_dir_applies_layers_in_order() {
    let d = TempDir::new();
    oci_layout(&d.0, &base_layers(), &run_config(), false);
    check_base(&load_dir(&d.0).unwrap());
}

#[test]
fn oci_archive_with_gzip_layers_reads_the_same() {
    let d = TempDir::new();
    let layout = d.0.join("layout");
    std::fs::create_dir(&layout).unwrap();
    oci_layout(&layout, &base_layers(), &run_config(), true);
    let archive = d.0.join("image.tar");
    tar_dir(&layout, &archive);
    let opts = LoadOptions {
        oci_ref: Some("latest"),
        cmd: &[],
        env: &[],
        limits: limits(),
    };
    let img = load(&OciSource::Archive(archive), &opts).unwrap();
    check_base(&img);
}

#[test]
fn legacy_docker_save_archive_reads_the_same() {
    let d = TempDir::new();
    let archive = d.0.join("image.tar");
    docker_archive(&archive, &base_layers(), &run_config());
    let opts = LoadOptions {
        oci_ref: None,
        cmd: &[],
        env: &[],
        limits: limits(),
    };
    check_base(&load(&OciSource::Archive(archive.clone()), &opts).unwrap());
    let wrong = LoadOptions {
        oci_ref: Some("other:2"),
        ..opts
    };
    let err = load(&OciSource::Archive(archive), &wrong).unwrap_err();
    assert!(err.to_string().contains("app:1"), "{err}");
}

#[test]
fn cmd_and_env_override_the_config() {
    let d = TempDir::new();
    oci_layout(&d.0, &base_layers(), &run_config(), false);
    let cmd = vec!["y".to_owned()];
    let env = vec!["A=2".to_owned(), "B=3".to_owned()];
    let img = load(
        &OciSource::Dir(d.0.clone()),
        &LoadOptions {
            oci_ref: None,
            cmd: &cmd,
            env: &env,
            limits: limits(),
        },
    )
    .unwrap();
    assert_eq!(img.argv, ["app", "--flag", "y"]);
    assert_eq!(img.env, ["PATH=/usr/bin:/bin", "A=2", "B=3"]);
}

#[test]
fn tampered_layer_fails_its_digest() {
    let d = TempDir::new();
    oci_layout(&d.0, &base_layers(), &run_config(), true);
    // Replace one gzip layer blob by another valid gzip of different content.
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.0.join("index.json")).unwrap()).unwrap();
    let m = index["manifests"][0]["digest"].as_str().unwrap()[7..].to_owned();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.0.join("blobs/sha256").join(m)).unwrap()).unwrap();
    let l0 = manifest["layers"][0]["digest"].as_str().unwrap()[7..].to_owned();
    let tampered = gzip(&layer(&[E::File("usr/bin/app", 0o755, b"evil")]));
    std::fs::write(d.0.join("blobs/sha256").join(l0), tampered).unwrap();
    let err = load_dir(&d.0).unwrap_err();
    assert!(matches!(err, OciError::DigestMismatch { .. }), "{err}");
}

#[test]
fn tampered_config_fails_its_digest() {
    let d = TempDir::new();
    oci_layout(&d.0, &base_layers(), &run_config(), false);
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.0.join("index.json")).unwrap()).unwrap();
    let m = index["manifests"][0]["digest"].as_str().unwrap()[7..].to_owned();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.0.join("blobs/sha256").join(m)).unwrap()).unwrap();
    let c = manifest["config"]["digest"].as_str().unwrap()[7..].to_owned();
    let path = d.0.join("blobs/sha256").join(c);
    let mut config = std::fs::read(&path).unwrap();
    config.push(b' ');
    std::fs::write(&path, config).unwrap();
    let err = load_dir(&d.0).unwrap_err();
    assert!(
        err.to_string().contains("does not match its digest"),
        "{err}"
    );
}

#[test]
fn diff_id_mismatch_is_refused() {
    let d = TempDir::new();
    let layers = base_layers();
    let config = config_json(&[layers[1].clone(), layers[0].clone()], &run_config());
    // An image whose config lists the diff_ids in the wrong order.
    let archive = d.0.join("image.tar");
    docker_archive(&archive, &layers, &run_config());
    let mut b = tar::Builder::new(Vec::new());
    let mut a = tar::Archive::new(std::fs::File::open(&archive).unwrap());
    let config_name = format!("{}.json", &sha(&config)[7..]);
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        let (name, data) = if name.ends_with(".json") && name != "manifest.json" {
            (config_name.clone(), config.clone())
        } else if name == "manifest.json" {
            let mut m: serde_json::Value = serde_json::from_slice(&data).unwrap();
            m[0]["Config"] = config_name.clone().into();
            (name, serde_json::to_vec(&m).unwrap())
        } else {
            (name, data)
        };
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o644);
        h.set_size(u64::try_from(data.len()).unwrap());
        b.append_data(&mut h, name, &data[..]).unwrap();
    }
    std::fs::write(&archive, b.into_inner().unwrap()).unwrap();
    let err = load(
        &OciSource::Archive(archive),
        &LoadOptions {
            oci_ref: None,
            cmd: &[],
            env: &[],
            limits: limits(),
        },
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("(uncompressed) does not match"),
        "{err}"
    );
}

#[test]
fn unpacked_size_is_bounded() {
    let d = TempDir::new();
    let big = vec![0u8; 600 << 10];
    let layers = vec![
        layer(&[E::File("usr/bin/app", 0o755, &tiny_elf(None))]),
        layer(&[E::File("a", 0o644, &big), E::File("b", 0o644, &big)]),
    ];
    oci_layout(&d.0, &layers, &run_config(), true);
    let err = load_dir(&d.0).unwrap_err();
    assert!(matches!(err, OciError::TooLarge { max_mib: 1 }), "{err}");
    assert!(err.to_string().contains("--oci-max-size-mib"));
}

#[test]
fn dotdot_paths_are_refused() {
    let d = TempDir::new();
    let layers = [layer(&[E::File("usr/bin/app", 0o755, &tiny_elf(None))])];
    let mut evil = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(1);
    h.set_mode(0o644);
    // set_path refuses "..", so write the name bytes directly.
    h.as_gnu_mut().unwrap().name[..9].copy_from_slice(b"../escape");
    h.set_cksum();
    evil.append(&h, &b"x"[..]).unwrap();
    let layers = vec![layers[0].clone(), evil.into_inner().unwrap()];
    oci_layout(&d.0, &layers, &run_config(), false);
    let err = load_dir(&d.0).unwrap_err();
    assert!(err.to_string().contains("'..'"), "{err}");
}

#[test]
fn program_resolution_errors_name_the_fix() {
    let d = TempDir::new();
    let layers = vec![layer(&[E::File("usr/bin/other", 0o755, &tiny_elf(None))])];
    oci_layout(&d.0, &layers, &run_config(), false);
    let err = load_dir(&d.0).unwrap_err();
    assert!(matches!(err, OciError::ProgramMissing { .. }), "{err}");
    assert!(err.to_string().contains("/usr/bin/app, /bin/app"), "{err}");

    let d = TempDir::new();
    let dynamic = tiny_elf(Some("/lib64/ld-linux-x86-64.so.2"));
    let layers = vec![layer(&[E::File("usr/bin/app", 0o755, &dynamic)])];
    oci_layout(&d.0, &layers, &run_config(), false);
    let err = load_dir(&d.0).unwrap_err();
    assert!(
        err.to_string()
            .contains("needs the interpreter /lib64/ld-linux-x86-64.so.2"),
        "{err}"
    );

    let d = TempDir::new();
    let layers = vec![layer(&[
        E::File("usr/bin/app", 0o755, &dynamic),
        E::File("lib/x86_64-linux-gnu/ld.so", 0o755, b"loader"),
        E::Link(
            "lib64/ld-linux-x86-64.so.2",
            "../lib/x86_64-linux-gnu/ld.so",
        ),
    ])];
    oci_layout(&d.0, &layers, &run_config(), false);
    assert_eq!(load_dir(&d.0).unwrap().program_path, "usr/bin/app");

    let d = TempDir::new();
    let layers = vec![layer(&[E::File("usr/bin/app", 0o755, b"#!/bin/sh\n")])];
    oci_layout(&d.0, &layers, &run_config(), false);
    let err = load_dir(&d.0).unwrap_err();
    assert!(matches!(err, OciError::ProgramElf { .. }), "{err}");

    let d = TempDir::new();
    let layers = vec![layer(&[E::File("usr/bin/app", 0o755, &tiny_elf(None))])];
    oci_layout(&d.0, &layers, &serde_json::json!({"Env": ["A=1"]}), false);
    assert!(matches!(load_dir(&d.0), Err(OciError::NoProgram)));
}

#[test]
fn missing_layout_and_symlink_loops_are_clear() {
    let d = TempDir::new();
    let err = load_dir(&d.0).unwrap_err();
    assert!(matches!(err, OciError::NoLayout { .. }), "{err}");

    let layers = vec![layer(&[
        E::Link("a", "b"),
        E::Link("b", "a"),
        E::File("usr/bin/app", 0o755, &tiny_elf(None)),
    ])];
    oci_layout(
        &d.0,
        &layers,
        &serde_json::json!({"Cmd": ["/a/app"]}),
        false,
    );
    let err = load_dir(&d.0).unwrap_err();
    assert!(matches!(err, OciError::SymlinkLoop { .. }), "{err}");
}

#[test]
fn zstd_layers_are_read() {
    let d = TempDir::new();
    let manifest = image_manifest(&d.0, &base_layers(), &run_config(), Comp::Zstd);
    write_index(&d.0, &[("latest", manifest, None)]);
    check_base(&load_dir(&d.0).unwrap());
}

#[test]
fn several_images_need_a_ref_and_platform_lists_pick_amd64() {
    let d = TempDir::new();
    let app = |name: &str| {
        vec![layer(&[E::File(
            &format!("usr/bin/{name}"),
            0o755,
            &tiny_elf(None),
        )])]
    };
    let one = image_manifest(
        &d.0,
        &app("one"),
        &serde_json::json!({"Cmd": ["one"]}),
        Comp::Tar,
    );
    let two = image_manifest(
        &d.0,
        &app("two"),
        &serde_json::json!({"Cmd": ["two"]}),
        Comp::Tar,
    );
    write_index(
        &d.0,
        &[("one", one.clone(), None), ("two", two.clone(), None)],
    );
    let err = load_dir(&d.0).unwrap_err();
    assert!(matches!(err, OciError::Ambiguous { .. }), "{err}");
    assert!(err.to_string().contains("one, two"), "{err}");
    let pick = |r: &str| {
        load(
            &OciSource::Dir(d.0.clone()),
            &LoadOptions {
                oci_ref: Some(r),
                cmd: &[],
                env: &[],
                limits: limits(),
            },
        )
    };
    assert_eq!(pick("two").unwrap().program_path, "usr/bin/two");
    assert!(matches!(pick("three"), Err(OciError::Ambiguous { .. })));

    // A platform list: the linux/amd64 entry is taken.
    write_index(
        &d.0,
        &[
            ("a", one.clone(), Some(("linux", "arm64"))),
            ("a", two, Some(("linux", "amd64"))),
        ],
    );
    assert_eq!(load_dir(&d.0).unwrap().program_path, "usr/bin/two");
    write_index(
        &d.0,
        &[
            ("a", one.clone(), Some(("linux", "arm64"))),
            ("b", one, Some(("linux", "s390x"))),
        ],
    );
    let err = load_dir(&d.0).unwrap_err();
    assert!(
        err.to_string().contains("linux/arm64, linux/s390x"),
        "{err}"
    );
}

#[test]
fn nested_image_index_picks_linux_amd64() {
    let d = TempDir::new();
    let app = |name: &str| vec![layer(&[E::File(name, 0o755, &tiny_elf(None))])];
    let arm = image_manifest(
        &d.0,
        &app("arm"),
        &serde_json::json!({"Cmd": ["/arm"]}),
        Comp::Tar,
    );
    let amd = image_manifest(
        &d.0,
        &app("amd"),
        &serde_json::json!({"Cmd": ["/amd"]}),
        Comp::Gzip,
    );
    let nested = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": arm.0, "size": arm.1,
             "platform": {"os": "linux", "architecture": "arm64"}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": amd.0, "size": amd.1,
             "platform": {"os": "linux", "architecture": "amd64"}},
        ],
    }))
    .unwrap();
    let digest = put_blob(&d.0, &nested);
    std::fs::write(
        d.0.join("index.json"),
        serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": [
            {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": digest, "size": nested.len(),
             "annotations": {"io.containerd.image.name": "docker.io/library/app:1"}},
        ]}))
        .unwrap(),
    )
    .unwrap();
    let img = load(
        &OciSource::Dir(d.0.clone()),
        &LoadOptions {
            oci_ref: Some("app:1"),
            cmd: &[],
            env: &[],
            limits: limits(),
        },
    )
    .unwrap();
    assert_eq!(img.program_path, "amd");
    assert_eq!(img.argv, ["/amd"]);
}

/// A small deterministic generator (xorshift) for the mutation test.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn mutated_and_truncated_layers_never_panic() {
    let plain = base_layers().concat();
    let packed = gzip(&plain);
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for round in 0..400 {
        let source = if round % 2 == 0 { &plain } else { &packed };
        let mut data = source.clone();
        let len = u64::try_from(data.len()).unwrap();
        for _ in 0..1 + next(&mut state) % 8 {
            let at = usize::try_from(next(&mut state) % len).unwrap();
            data[at] = u8::try_from(next(&mut state) & 0xff).unwrap();
        }
        if round % 5 == 0 {
            data.truncate(usize::try_from(next(&mut state) % len).unwrap());
        }
        let diff_id = sha(&data);
        let mut tree = tree::Tree::new(limits());
        // Ok or a clean error; a panic fails the test.
        let _ = layer::apply(
            &mut tree,
            "fuzz",
            Box::new(std::io::Cursor::new(data)),
            None,
            &diff_id,
            1 << 20,
        );
    }
}

#[test]
fn parents_resolve_through_absolute_and_dotdot_symlinks() {
    let mut tree = tree::Tree::new(limits());
    tree.insert("usr".into(), Node::Dir(0o755)).unwrap();
    tree.insert("usr/lib".into(), Node::Dir(0o755)).unwrap();
    tree.insert("lib".into(), Node::Symlink("/usr/lib".into()))
        .unwrap();
    tree.insert("usr/share".into(), Node::Symlink("../opt/share".into()))
        .unwrap();
    assert_eq!(
        tree.place("l", "lib/libc.so").unwrap().unwrap(),
        "usr/lib/libc.so"
    );
    assert_eq!(
        tree.place("l", "./usr/share/doc").unwrap().unwrap(),
        "opt/share/doc"
    );
    assert_eq!(tree.get("opt/share"), Some(&Node::Dir(0o755)));
    assert_eq!(tree.resolve("/lib/../lib", true).unwrap(), "usr/lib");
    // A regular file replaced by a directory keeps nothing of it; the byte count follows.
    tree.insert("f".into(), Node::File(0o644, vec![0; 10]))
        .unwrap();
    tree.check_room((1 << 20) - 10).unwrap();
    assert!(tree.check_room((1 << 20) - 9).is_err());
    tree.insert("f".into(), Node::Dir(0o755)).unwrap();
    tree.check_room(1 << 20).unwrap();
}

#[test]
fn legacy_archive_layers_may_be_symlinks_to_an_earlier_copy() {
    let d = TempDir::new();
    let layers = base_layers();
    let config = config_json(&[layers[0].clone(), layers[0].clone()], &run_config());
    let config_name = format!("{}.json", &sha(&config)[7..]);
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_mode(0o644);
    h.set_size(u64::try_from(layers[0].len()).unwrap());
    b.append_data(&mut h, "aaa/layer.tar", &layers[0][..])
        .unwrap();
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_mode(0o777);
    h.set_size(0);
    b.append_link(&mut h, "bbb/layer.tar", "../aaa/layer.tar")
        .unwrap();
    for (name, data) in [
        (config_name.clone(), config),
        (
            "manifest.json".to_owned(),
            serde_json::to_vec(
                &serde_json::json!([{"Config": config_name, "RepoTags": null,
                "Layers": ["aaa/layer.tar", "bbb/layer.tar"]}]),
            )
            .unwrap(),
        ),
    ] {
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o644);
        h.set_size(u64::try_from(data.len()).unwrap());
        b.append_data(&mut h, name, &data[..]).unwrap();
    }
    let archive = d.0.join("image.tar");
    std::fs::write(&archive, b.into_inner().unwrap()).unwrap();
    let img = load(
        &OciSource::Archive(archive),
        &LoadOptions {
            oci_ref: None,
            cmd: &[],
            env: &[],
            limits: limits(),
        },
    )
    .unwrap();
    assert_eq!(img.program_path, "usr/bin/app");
    assert_eq!(file(&img, "etc/gone").map(|f| f.1), Some(&b"lower"[..]));
}

#[test]
fn compressed_archives_and_layers_name_the_fix() {
    let d = TempDir::new();
    let archive = d.0.join("image.tar");
    docker_archive(&archive, &base_layers(), &run_config());
    let gz = d.0.join("image.tar.gz");
    std::fs::write(&gz, gzip(&std::fs::read(&archive).unwrap())).unwrap();
    let opts = LoadOptions {
        oci_ref: None,
        cmd: &[],
        env: &[],
        limits: limits(),
    };
    let err = load(&OciSource::Archive(gz), &opts).unwrap_err();
    assert!(
        err.to_string()
            .contains("is gzip-compressed: decompress it first"),
        "{err}"
    );

    let mut tree = tree::Tree::new(limits());
    let xz = vec![0xfd, b'7', b'z', b'X', b'Z', 0, 0, 0];
    let err = layer::apply(
        &mut tree,
        "l",
        Box::new(std::io::Cursor::new(xz)),
        None,
        &sha(b""),
        1 << 20,
    )
    .unwrap_err();
    assert!(err.to_string().contains("compressed with xz"), "{err}");
}
