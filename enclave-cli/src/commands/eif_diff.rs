//! What differs between two EIFs: section by section (kernel, cmdline, metadata, each
//! ramdisk, signature), and for a differing ramdisk which files of its cpio tree were added,
//! removed, or changed content, mode or type. "Added" means in the rebuilt image only.

use std::collections::BTreeMap;

use anyhow::Context;
use attestation::cpio::{self, CpioEntry, S_IFMT};
use attestation::eif::{EifView, SectionType};
use serde::Serialize;

/// Longest cmdline text quoted in a report.
const MAX_QUOTE: usize = 2048;

/// One section compared.
#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct SectionDiff {
    /// `kernel`, `cmdline`, `metadata`, `ramdisk N` or `signature`.
    pub section: String,
    /// `same`, `differs`, `only in expected` or `only in rebuilt`.
    pub status: &'static str,
}

/// One file of a ramdisk that differs.
#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct FileDiff {
    /// `ramdisk N`.
    pub ramdisk: String,
    /// Absolute path in the image.
    pub path: String,
    /// `added`, `removed`, `content`, `mode` or `type`.
    pub change: &'static str,
    /// Expected → rebuilt, for mode, type and size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The differences between an expected and a rebuilt EIF.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct EifDiff {
    /// Every section, compared.
    pub sections: Vec<SectionDiff>,
    /// Files of differing ramdisks.
    pub files: Vec<FileDiff>,
    /// The two init specs when the cmdlines differ.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cmdline: Option<(String, String)>,
}

impl EifDiff {
    /// True when no section differs.
    pub fn same(&self) -> bool {
        self.sections.iter().all(|s| s.status == "same")
    }
}

fn section_name(kind: SectionType, index: usize) -> String {
    match kind {
        SectionType::Kernel => "kernel".to_owned(),
        SectionType::Cmdline => "cmdline".to_owned(),
        SectionType::Metadata => "metadata".to_owned(),
        SectionType::Signature => "signature".to_owned(),
        SectionType::Ramdisk => format!("ramdisk {index}"),
        SectionType::Invalid => format!("invalid section {index}"),
    }
}

/// Sections by name, in file order.
fn named_sections<'a>(view: &EifView<'a>) -> Vec<(String, &'a [u8])> {
    let mut counts: BTreeMap<u16, usize> = BTreeMap::new();
    view.sections
        .iter()
        .map(|s| {
            let n = counts.entry(s.kind.to_u16()).or_default();
            let name = section_name(s.kind, *n);
            *n += 1;
            (name, s.data)
        })
        .collect()
}

fn quote(data: &[u8]) -> String {
    String::from_utf8_lossy(data.get(..MAX_QUOTE).unwrap_or(data)).into_owned()
}

/// Compares two EIFs.
pub fn diff(expected: &[u8], rebuilt: &[u8]) -> anyhow::Result<EifDiff> {
    let want = EifView::parse(expected).context("The expected image is not a valid EIF")?;
    let got = EifView::parse(rebuilt).context("The rebuilt image is not a valid EIF")?;
    let want = named_sections(&want);
    let got: BTreeMap<String, &[u8]> = named_sections(&got).into_iter().collect();
    let mut out = EifDiff::default();
    for (name, data) in &want {
        let status = match got.get(name) {
            None => "only in expected",
            Some(g) if g == data => "same",
            Some(g) => {
                if name.starts_with("ramdisk") {
                    out.files.extend(diff_ramdisks(name, data, g));
                } else if name == "cmdline" {
                    out.cmdline = Some((quote(data), quote(g)));
                }
                "differs"
            }
        };
        out.sections.push(SectionDiff {
            section: name.clone(),
            status,
        });
    }
    for name in got.keys() {
        if !want.iter().any(|(n, _)| n == name) {
            out.sections.push(SectionDiff {
                section: name.clone(),
                status: "only in rebuilt",
            });
        }
    }
    Ok(out)
}

fn kind_name(mode: u32) -> &'static str {
    match mode & S_IFMT {
        cpio::S_IFREG => "file",
        cpio::S_IFDIR => "directory",
        cpio::S_IFLNK => "symlink",
        _ => "other",
    }
}

/// Files that differ between two cpio archives.
fn diff_ramdisks(name: &str, expected: &[u8], rebuilt: &[u8]) -> Vec<FileDiff> {
    let entry = |path: &str, change, detail| FileDiff {
        ramdisk: name.to_owned(),
        path: format!("/{path}"),
        change,
        detail,
    };
    let (want, got) = match (cpio::read(expected), cpio::read(rebuilt)) {
        (Ok(w), Ok(g)) => (by_path(w), by_path(g)),
        (w, _) => {
            let which = if w.is_err() { "expected" } else { "rebuilt" };
            return vec![entry(
                "",
                "content",
                Some(format!("the {which} {name} is not a cpio archive")),
            )];
        }
    };
    let mut out = Vec::new();
    for (path, w) in &want {
        let Some(g) = got.get(path) else {
            out.push(entry(path, "removed", None));
            continue;
        };
        if w.mode & S_IFMT != g.mode & S_IFMT {
            let detail = format!("{} → {}", kind_name(w.mode), kind_name(g.mode));
            out.push(entry(path, "type", Some(detail)));
            continue;
        }
        if w.data != g.data {
            let detail = format!("{} → {} bytes", w.data.len(), g.data.len());
            out.push(entry(path, "content", Some(detail)));
        }
        if w.mode != g.mode {
            let detail = format!("{:o} → {:o}", w.mode & 0o7777, g.mode & 0o7777);
            out.push(entry(path, "mode", Some(detail)));
        }
    }
    for path in got.keys() {
        if !want.contains_key(path) {
            out.push(entry(path, "added", None));
        }
    }
    out
}

fn by_path(entries: Vec<CpioEntry>) -> BTreeMap<String, CpioEntry> {
    entries.into_iter().map(|e| (e.path.clone(), e)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use attestation::image::{build_eif, ImageInputs, ImageMetadata, InitSpec};

    fn image(files: Vec<(String, Vec<u8>, u32)>, argv: &[&str]) -> Vec<u8> {
        let inputs = ImageInputs {
            kernel: b"kernel".to_vec(),
            init: b"\x7fELF init".to_vec(),
            files,
            init_spec: InitSpec {
                argv: argv.iter().map(|s| (*s).to_owned()).collect(),
                env: vec![],
                cwd: None,
            },
            metadata: ImageMetadata::new("t", "1", attestation::image::EPOCH_BUILD_TIME, "abi"),
        };
        build_eif(&inputs).unwrap().bytes
    }

    fn files() -> Vec<(String, Vec<u8>, u32)> {
        vec![
            ("/etc/a".into(), b"a".to_vec(), 0o644),
            ("/etc/b".into(), b"b".to_vec(), 0o644),
        ]
    }

    #[test]
    fn same_images_have_no_difference() {
        let a = image(files(), &["/init"]);
        let d = diff(&a, &a).unwrap();
        assert!(d.same());
        assert!(d.files.is_empty());
        assert!(d.sections.iter().any(|s| s.section == "ramdisk 0"));
    }

    #[test]
    fn one_changed_file_is_named() {
        let a = image(files(), &["/init"]);
        let mut changed = files();
        changed[1].1 = b"B!".to_vec();
        let b = image(changed, &["/init"]);
        let d = diff(&a, &b).unwrap();
        assert!(!d.same());
        let differing: Vec<&str> = d
            .sections
            .iter()
            .filter(|s| s.status != "same")
            .map(|s| s.section.as_str())
            .collect();
        assert_eq!(differing, ["ramdisk 0"]);
        assert_eq!(
            d.files,
            [FileDiff {
                ramdisk: "ramdisk 0".into(),
                path: "/etc/b".into(),
                change: "content",
                detail: Some("1 → 2 bytes".into()),
            }]
        );
    }

    #[test]
    fn added_removed_mode_and_cmdline_are_reported() {
        let a = image(files(), &["/init"]);
        let b = image(
            vec![
                ("/etc/a".into(), b"a".to_vec(), 0o600),
                ("/etc/c".into(), b"c".to_vec(), 0o644),
            ],
            &["/init", "x"],
        );
        let d = diff(&a, &b).unwrap();
        let changes: Vec<(&str, &str)> = d
            .files
            .iter()
            .map(|f| (f.path.as_str(), f.change))
            .collect();
        assert_eq!(
            changes,
            [
                ("/etc/a", "mode"),
                ("/etc/b", "removed"),
                ("/etc/c", "added")
            ]
        );
        let (want, got) = d.cmdline.unwrap();
        assert!(want.contains(r#"["/init"]"#) && got.contains(r#"["/init","x"]"#));
    }
}
