//! The guest programs: compiled from `benches/guest/*.c` with gcc at run time into the cargo
//! target directory, and packed into EIF images in memory.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use attestation::image::{build_eif, ImageInputs, ImageMetadata, InitSpec, EPOCH_BUILD_TIME};

/// The cargo target directory this bench was built into, found from the bench executable,
/// `<target>[/<triple>]/<profile>/deps/<bench>` (`CARGO_TARGET_DIR` may be relative to
/// another directory than this process's, so it is not read).
pub fn target_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find the bench executable")?;
    let profile = exe
        .parent()
        .and_then(Path::parent)
        .context("the bench executable is not in <target>/<profile>/deps")?;
    let top = profile.parent().context("no target directory")?;
    let is_top =
        |d: &Path| d.join("CACHEDIR.TAG").is_file() || d.join(".rustc_info.json").is_file();
    match top.parent() {
        Some(up) if !is_top(top) && is_top(up) => Ok(up.to_owned()),
        _ => Ok(top.to_owned()),
    }
}

/// A guest program to compile.
#[derive(Debug, Clone, Copy)]
pub struct Program {
    /// Source file name in `benches/guest/`, without `.c`.
    pub name: &'static str,
    /// gcc flags (besides `-o` and the source).
    pub flags: &'static [&'static str],
}

/// The launch benchmark's program: static glibc, `main` returns 0.
pub const MINIMAL: Program = Program {
    name: "minimal",
    flags: &["-static", "-O2"],
};

/// The system-call benchmark's program: no libc, `getppid` N times.
pub const GETPPID_LOOP: Program = Program {
    name: "getppid_loop",
    flags: &["-static", "-nostdlib", "-O2", "-fno-stack-protector"],
};

/// Compiles `program` into `<out_dir>/<name>` and returns the path.
pub fn compile(program: Program, out_dir: &Path) -> anyhow::Result<PathBuf> {
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("benches/guest")
        .join(format!("{}.c", program.name));
    std::fs::create_dir_all(out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    let out = out_dir.join(program.name);
    // Built under a name of this process, then renamed: concurrent benches never see a
    // half-written program.
    let partial = out_dir.join(format!("{}.{}.partial", program.name, std::process::id()));
    let output = Command::new("gcc")
        .args(program.flags)
        .arg("-o")
        .arg(&partial)
        .arg(&source)
        .output()
        .context("cannot run gcc: install gcc and a static glibc (bash scripts/setup.sh)")?;
    if !output.status.success() {
        let _ = std::fs::remove_file(&partial);
        bail!(
            "gcc {} {} failed ({}): {}",
            program.flags.join(" "),
            source.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    std::fs::rename(&partial, &out)
        .with_context(|| format!("cannot rename {} to {}", partial.display(), out.display()))?;
    Ok(out)
}

/// An EIF running `binary` as `/init` with the given arguments (after argv[0]).
pub fn eif(binary: &Path, args: &[String]) -> anyhow::Result<Vec<u8>> {
    let init =
        std::fs::read(binary).with_context(|| format!("cannot read {}", binary.display()))?;
    let mut argv = vec!["/init".to_owned()];
    argv.extend(args.iter().cloned());
    let name = binary
        .file_name()
        .map_or_else(|| "bench".into(), |n| n.to_string_lossy().into_owned());
    let built = build_eif(&ImageInputs {
        kernel: enclave_runtime::guest_abi::kernel_blob(),
        init,
        files: Vec::new(),
        init_spec: InitSpec {
            argv,
            env: Vec::new(),
            cwd: None,
        },
        metadata: ImageMetadata::new(
            name,
            "1",
            EPOCH_BUILD_TIME,
            format!(
                "enclave-guest-abi-{}",
                enclave_runtime::guest_abi::ABI_VERSION
            ),
        ),
    })
    .context("cannot build the benchmark image")?;
    Ok(built.bytes)
}
