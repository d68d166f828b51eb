//! `enclave verify-build`: rebuilds an image from the same inputs as `build-enclave` and
//! compares it with a given EIF (PCRs, then section by section and file by file) or with a
//! set of PCRs (nitro-cli's Measurements JSON or `--pcrN HEX`). Exits 0 on a match and
//! [`MISMATCH_EXIT`] when anything differs.

use std::io::Read;

use anyhow::{bail, Context};
use attestation::eif::MAX_EIF_SIZE;
use attestation::pcr::Measurements;

use super::build::{build_image, write_atomically, Progress};
use super::eif_diff::{self, EifDiff};
use crate::args::VerifyBuildArgs;

/// Exit status when the rebuild does not match.
pub const MISMATCH_EXIT: i32 = 2;

/// One PCR compared.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct PcrCheck {
    pcr: &'static str,
    /// The EIF sections this PCR measures.
    covers: &'static str,
    expected: String,
    rebuilt: String,
    #[serde(rename = "Match")]
    matches: bool,
}

/// Runs `verify-build`.
pub fn run(a: &VerifyBuildArgs, json: bool) -> anyhow::Result<i32> {
    let progress = Progress::start(json);
    let expected_eif = a.eif_path.as_deref().map(read_eif).transpose()?;
    let expected = match (&expected_eif, &a.pcrs) {
        (Some(bytes), _) => {
            let m = enclave_runtime::image::measure(bytes)
                .context("Cannot measure the expected image (--eif-path)")?;
            pcr_map(&m)
        }
        (None, Some(path)) => read_pcr_file(path)?,
        (None, None) => {
            let given = [("PCR0", &a.pcr0), ("PCR1", &a.pcr1), ("PCR2", &a.pcr2)];
            given
                .into_iter()
                .filter_map(|(n, v)| v.as_ref().map(|v| (n, v.trim().to_ascii_lowercase())))
                .collect()
        }
    };
    if let Some((name, bad)) = expected
        .iter()
        .find(|(_, v)| v.len() != 96 || !v.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        bail!("Expected {name} {bad:?} is not 96 hex digits (a SHA-384): copy it from build-enclave's or describe-eif's output");
    }
    if expected.is_empty() {
        bail!("Nothing to compare with: give --eif-path, --pcrs FILE or --pcr0/--pcr1/--pcr2 HEX");
    }
    let (rebuilt_bytes, rebuilt) = build_image(&a.build, &progress)?;
    if let Some(out) = &a.build.output_file {
        write_atomically(out, &rebuilt_bytes)?;
    }
    progress.finish();

    let rebuilt_pcrs = pcr_map(&rebuilt);
    let checks: Vec<PcrCheck> = expected
        .iter()
        .filter(|(name, _)| *name != "PCR8" || rebuilt.pcr8.is_some())
        .map(|(name, want)| {
            let got = rebuilt_pcrs
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            PcrCheck {
                pcr: name,
                covers: covers(name),
                matches: *want == got,
                expected: want.clone(),
                rebuilt: got,
            }
        })
        .collect();
    let diff = match &expected_eif {
        Some(bytes) => Some(eif_diff::diff(bytes, &rebuilt_bytes)?),
        None => None,
    };
    let matches = checks.iter().all(|c| c.matches);
    if json {
        crate::output::print_json(&serde_json::json!({
            "Match": matches,
            "Pcrs": checks,
            "Measurements": rebuilt.to_json(),
            "Differences": diff,
        }))?;
    } else {
        crate::output::print_text(&report(matches, &checks, diff.as_ref()))?;
    }
    Ok(if matches { 0 } else { MISMATCH_EXIT })
}

/// The human-readable report (`--json` prints the same as JSON).
fn report(matches: bool, checks: &[PcrCheck], diff: Option<&EifDiff>) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    if matches {
        let _ = writeln!(
            out,
            "MATCH: the rebuilt image has the expected measurements"
        );
    } else {
        let _ = writeln!(
            out,
            "MISMATCH: the rebuilt image differs from the expected one"
        );
    }
    for c in checks {
        let verdict = if c.matches { "same" } else { "DIFFERS" };
        let _ = writeln!(out, "  {}: {verdict} ({})", c.pcr, c.covers);
        if !c.matches {
            let _ = writeln!(
                out,
                "    expected {}\n    rebuilt  {}",
                c.expected, c.rebuilt
            );
        }
    }
    let Some(diff) = diff else {
        if !matches {
            let _ = writeln!(
                out,
                "  compare with --eif-path IMAGE to see which sections and files differ"
            );
        }
        return out;
    };
    if matches && !diff.same() {
        let _ = writeln!(
            out,
            "  (sections outside the PCRs differ, e.g. metadata or signature)"
        );
    }
    for s in diff.sections.iter().filter(|s| s.status != "same") {
        let _ = writeln!(out, "  section {}: {}", s.section, s.status);
    }
    if let Some((want, got)) = &diff.cmdline {
        let _ = writeln!(
            out,
            "    expected cmdline {want}\n    rebuilt  cmdline {got}"
        );
    }
    for f in &diff.files {
        let _ = match &f.detail {
            Some(d) => writeln!(out, "    {} {}: {} ({d})", f.ramdisk, f.path, f.change),
            None => writeln!(out, "    {} {}: {}", f.ramdisk, f.path, f.change),
        };
    }
    out
}

/// What PCR `name` measures.
fn covers(name: &str) -> &'static str {
    match name {
        "PCR0" => "kernel, cmdline and all ramdisks",
        "PCR1" => "kernel, cmdline and ramdisk 0",
        "PCR2" => "ramdisks 1 and later",
        _ => "the signing certificate",
    }
}

/// The PCRs as (name, lowercase hex).
fn pcr_map(m: &Measurements) -> Vec<(&'static str, String)> {
    let mut out = vec![
        ("PCR0", hex::encode(m.pcr0)),
        ("PCR1", hex::encode(m.pcr1)),
        ("PCR2", hex::encode(m.pcr2)),
    ];
    if let Some(p8) = m.pcr8 {
        out.push(("PCR8", hex::encode(p8)));
    }
    out
}

fn read_eif(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    let file = std::fs::File::open(path).with_context(|| {
        format!(
            "Cannot open {}: give --eif-path the EIF to compare with",
            path.display()
        )
    })?;
    let mut bytes = Vec::new();
    file.take(MAX_EIF_SIZE.saturating_add(1))
        .read_to_end(&mut bytes)
        .with_context(|| format!("Cannot read {}", path.display()))?;
    if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > MAX_EIF_SIZE {
        bail!(
            "{} is over the {MAX_EIF_SIZE}-byte EIF limit: it is not an enclave image",
            path.display()
        );
    }
    Ok(bytes)
}

/// PCRs from nitro-cli's `{"Measurements": {"PCR0": "<hex>", ...}}` (or the inner object).
fn read_pcr_file(path: &std::path::Path) -> anyhow::Result<Vec<(&'static str, String)>> {
    let text = std::fs::read(path).with_context(|| {
        format!(
            "Cannot read {}: give --pcrs the JSON that build-enclave or nitro-cli printed",
            path.display()
        )
    })?;
    let value: serde_json::Value = serde_json::from_slice(&text).with_context(|| {
        format!(
            "{} is not JSON: give --pcrs the {{\"Measurements\": {{\"PCR0\": ...}}}} that build-enclave printed",
            path.display()
        )
    })?;
    let m = value.get("Measurements").unwrap_or(&value);
    let out: Vec<(&'static str, String)> = ["PCR0", "PCR1", "PCR2", "PCR8"]
        .into_iter()
        .filter_map(|n| {
            m.get(n)
                .and_then(|v| v.as_str())
                .map(|v| (n, v.to_ascii_lowercase()))
        })
        .collect();
    if out.is_empty() {
        bail!(
            "{} has no PCR0/PCR1/PCR2: give --pcrs the {{\"Measurements\": {{\"PCR0\": ...}}}} that build-enclave printed",
            path.display()
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, text: &str) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("verify-build-{}-{name}", std::process::id()));
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn pcr_files_are_nitro_cli_measurements_or_the_inner_object() {
        let a = "AB".repeat(48);
        let outer = write(
            "outer",
            &format!(
                r#"{{"Measurements": {{"HashAlgorithm": "Sha384 {{ ... }}", "PCR0": "{a}", "PCR2": "{a}"}}}}"#
            ),
        );
        let got = read_pcr_file(&outer).unwrap();
        assert_eq!(got, [("PCR0", "ab".repeat(48)), ("PCR2", "ab".repeat(48))]);
        let inner = write("inner", &format!(r#"{{"PCR1": "{a}"}}"#));
        assert_eq!(read_pcr_file(&inner).unwrap(), [("PCR1", "ab".repeat(48))]);
        let none = write("none", r#"{"Measurements": {}}"#);
        let err = read_pcr_file(&none).unwrap_err();
        assert!(err.to_string().contains("has no PCR0/PCR1/PCR2"), "{err}");
        let bad = write("bad", "not json");
        assert!(read_pcr_file(&bad).is_err());
        for p in [outer, inner, none, bad] {
            let _ = std::fs::remove_file(p);
        }
    }

    #[test]
    fn pcrs_name_what_they_cover() {
        assert!(covers("PCR1").contains("ramdisk 0"));
        assert!(covers("PCR2").contains("ramdisks 1"));
    }
}
