//! `enclave build-enclave`: a static ELF (or an OCI image, see `build_oci`), extra files, argv
//! and env → a reproducible EIF, written atomically; prints nitro-cli's `{"Measurements": {...}}`
//! on stdout. [`build_image`] is shared with `verify-build`.

use std::io::{IsTerminal, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use attestation::image::{
    build_eif_with_tree, build_time_from_epoch, ImageInputs, ImageMetadata, InitSpec,
    EPOCH_BUILD_TIME,
};
use attestation::pcr::Measurements;
use enclave_runtime::guest_abi;

use crate::args::BuildArgs;

/// argv[0] of the enclave's program, and its path in the image.
pub(super) const INIT_IMAGE_PATH: &str = "/init";
const INIT_ARGV0: &str = INIT_IMAGE_PATH;
/// Environment variable giving the build time (seconds since 1970), as reproducible builds use.
const SOURCE_DATE_EPOCH: &str = "SOURCE_DATE_EPOCH";

/// Runs `build-enclave`.
pub fn run(a: &BuildArgs, json: bool) -> anyhow::Result<i32> {
    let output_file = a.output_file.as_deref().context(
        "build-enclave needs --output-file: give the path of the EIF to write, e.g. app.eif",
    )?;
    let progress = Progress::start(json);
    let (bytes, measurements) = build_image(a, &progress)?;

    progress.say("writing the image");
    write_atomically(output_file, &bytes)?;
    progress.finish();

    crate::output::print_json(&serde_json::json!({
        "Measurements": measurements.to_json(),
    }))?;
    Ok(0)
}

/// Builds (and signs, when asked) the EIF `a` describes: its bytes and measurements.
pub(super) fn build_image(
    a: &BuildArgs,
    progress: &Progress,
) -> anyhow::Result<(Vec<u8>, Measurements)> {
    progress.say("reading files");
    let mut files = a
        .files
        .iter()
        .map(|spec| read_file_spec(spec))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let env = a
        .env
        .iter()
        .map(|e| check_env(e).map(|()| e.clone()))
        .collect::<anyhow::Result<Vec<_>>>()?;

    let (init, tree, init_spec, default_name, docker_info) = match super::build_oci::source(a) {
        Some(source) => {
            progress.say("reading the OCI image");
            let img = super::build_oci::prepare(a, &source, &env, &mut files)?;
            (
                img.init,
                img.tree,
                img.init_spec,
                img.name,
                Some(img.docker_info),
            )
        }
        None => {
            progress.say("reading the program");
            let binary = a.binary.as_deref().context(
                "Give the program with --binary, or an image with --oci-archive or --oci-dir",
            )?;
            let init = std::fs::read(binary).with_context(|| {
                format!(
                    "Cannot read the program {}: give --binary the path of a static x86_64 ELF",
                    binary.display()
                )
            })?;
            let (_, interp) =
                enclave_runtime::elf::plan_at(&init, enclave_runtime::layout::PIE_LOAD_BASE)
                    .with_context(|| format!("{} cannot run in an enclave", binary.display()))?;
            if let Some(interp) = interp {
                add_libs(a, binary, &init, &interp, &mut files)?;
            }
            let mut argv = vec![INIT_ARGV0.to_owned()];
            argv.extend(a.cmd.iter().cloned());
            let spec = InitSpec {
                argv,
                env,
                cwd: None,
            };
            (init, Vec::new(), spec, default_name(binary)?, None)
        }
    };

    let name = a.name.clone().unwrap_or(default_name);
    let mut metadata = ImageMetadata::new(
        name,
        a.version.clone(),
        build_time()?,
        format!("enclave-guest-abi-{}", guest_abi::ABI_VERSION),
    );

    if let Some(info) = docker_info {
        metadata.docker_info = info;
    }

    progress.say("building the image");
    let inputs = ImageInputs {
        kernel: guest_abi::kernel_blob(),
        init,
        files,
        init_spec,
        metadata,
    };
    let built = build_eif_with_tree(&inputs, &tree).context("Cannot build the enclave image")?;
    match (&a.signing_certificate, &a.private_key) {
        (Some(cert), Some(key)) => {
            progress.say("signing the image");
            let (cert, key) = super::sign_eif::load_signer(cert, key)?;
            super::sign_eif::sign_image(&built.bytes, &cert, &key)
        }
        _ => Ok((built.bytes, built.measurements)),
    }
}

/// For a dynamically linked program: with `--with-libs`, adds its interpreter and libraries
/// (those not given with `--file`); without, refuses it unless `--file` put its interpreter in.
fn add_libs(
    a: &BuildArgs,
    binary: &std::path::Path,
    init: &[u8],
    interp: &str,
    files: &mut Vec<(String, Vec<u8>, u32)>,
) -> anyhow::Result<()> {
    let given: std::collections::BTreeSet<String> = files
        .iter()
        .map(|(dst, _, _)| dst.trim_start_matches('/').to_owned())
        .collect();
    let given = |p: &str| given.contains(p.trim_start_matches('/'));
    if !a.with_libs {
        if given(interp) {
            return Ok(());
        }
        bail!(
            "{} is dynamically linked (it needs the interpreter {interp} and shared libraries): \
             add --with-libs to put them in the image, or {}",
            binary.display(),
            enclave_runtime::elf::STATIC_HINT
        );
    }
    let libs =
        super::build_libs::collect(init, binary, std::path::Path::new("/")).with_context(|| {
            format!(
                "Cannot collect the shared libraries of {}",
                binary.display()
            )
        })?;
    for (path, data) in libs {
        tracing::info!(
            path,
            bytes = data.len(),
            given = given(&path),
            "shared library"
        );
        if !given(&path) {
            files.push((path, data, 0o755));
        }
    }
    Ok(())
}

/// Splits `SRC:DST` at the first ':' followed by '/', so SRC may itself contain ':'.
fn split_file_spec(spec: &str) -> anyhow::Result<(&str, &str)> {
    let split = spec
        .match_indices(':')
        .map(|(i, _)| i)
        .find(|&i| spec[i + 1..].starts_with('/'));
    match split {
        Some(i) if i > 0 => Ok((&spec[..i], &spec[i + 1..])),
        _ => bail!(
            "--file {spec:?} is not SRC:DST: write the host path, a colon and the absolute \
             path inside the image, e.g. --file ./config.json:/etc/app/config.json"
        ),
    }
}

/// Reads one `--file SRC:DST`: contents and permission bits (`& 0o777`) of SRC, for DST.
fn read_file_spec(spec: &str) -> anyhow::Result<(String, Vec<u8>, u32)> {
    let (src, dst) = split_file_spec(spec)?;
    let meta = std::fs::metadata(src).with_context(|| {
        format!("Cannot read --file source {src}: check the path (given as {spec:?})")
    })?;
    if !meta.is_file() {
        bail!("--file source {src} is not a regular file: give one --file per file (directories are not copied)");
    }
    let data = std::fs::read(src)
        .with_context(|| format!("Cannot read --file source {src}: check its permissions"))?;
    Ok((dst.to_owned(), data, meta.permissions().mode() & 0o777))
}

/// Checks an `--env` entry is `K=V` with a non-empty name.
fn check_env(entry: &str) -> anyhow::Result<()> {
    match entry.split_once('=') {
        Some((k, _)) if !k.is_empty() && !k.contains('\0') => Ok(()),
        _ => bail!("--env {entry:?} is not NAME=value: write it as e.g. --env RUST_LOG=info"),
    }
}

/// The binary's file name, the default image name.
fn default_name(binary: &Path) -> anyhow::Result<String> {
    binary
        .file_name()
        .and_then(|n| n.to_str())
        .map(str::to_owned)
        .with_context(|| {
            format!(
                "Cannot take an image name from {}: give --name",
                binary.display()
            )
        })
}

/// Build time from `SOURCE_DATE_EPOCH`, else the fixed epoch, so builds are reproducible.
fn build_time() -> anyhow::Result<String> {
    let Some(raw) = std::env::var_os(SOURCE_DATE_EPOCH) else {
        return Ok(EPOCH_BUILD_TIME.to_owned());
    };
    let text = raw.to_string_lossy();
    let secs: u64 = text.trim().parse().with_context(|| {
        format!("SOURCE_DATE_EPOCH={text:?} is not a whole number of seconds since 1970: fix or unset it")
    })?;
    Ok(build_time_from_epoch(secs)?)
}

/// Writes `bytes` to a temporary file next to `path`, then renames it into place.
pub(super) fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let file_name = path.file_name().with_context(|| {
        format!(
            "--output-file {} names no file: give a file path such as app.eif",
            path.display()
        )
    })?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(format!(".tmp.{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let result = (|| -> anyhow::Result<()> {
        let mut f = std::fs::File::create(&tmp).with_context(|| {
            format!(
                "Cannot create {}: check that {} exists and is writable",
                tmp.display(),
                dir.display()
            )
        })?;
        f.write_all(bytes)
            .and_then(|()| f.sync_all())
            .with_context(|| format!("Cannot write {}: check free disk space", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| {
            format!(
                "Cannot move {} to {}: check that the output path is not a directory",
                tmp.display(),
                path.display()
            )
        })
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// A spinner on stderr, only for people: stderr a terminal and no `--json`.
pub(super) struct Progress(Option<indicatif::ProgressBar>);

impl Progress {
    /// A spinner, unless `json` or stderr is not a terminal.
    pub(super) fn start(json: bool) -> Self {
        if json || !std::io::stderr().is_terminal() {
            return Self(None);
        }
        let bar =
            indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
        bar.set_style(indicatif::ProgressStyle::default_spinner());
        bar.enable_steady_tick(Duration::from_millis(100));
        Self(Some(bar))
    }

    pub(super) fn say(&self, msg: &'static str) {
        if let Some(bar) = &self.0 {
            bar.set_message(msg);
        }
    }

    pub(super) fn finish(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_spec_splits_at_first_colon_before_slash() {
        assert_eq!(split_file_spec("a:/b").unwrap(), ("a", "/b"));
        assert_eq!(split_file_spec("a:b:/c/d").unwrap(), ("a:b", "/c/d"));
        assert_eq!(split_file_spec("/x/y:/etc/z").unwrap(), ("/x/y", "/etc/z"));
        assert!(split_file_spec("a:b").is_err());
        assert!(split_file_spec(":/b").is_err());
        assert!(split_file_spec("a").is_err());
    }

    #[test]
    fn env_needs_a_name_and_equals() {
        assert!(check_env("A=1").is_ok());
        assert!(check_env("A=").is_ok());
        assert!(check_env("=1").is_err());
        assert!(check_env("A").is_err());
    }
}
