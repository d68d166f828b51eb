//! Building enclave images of the guest programs with `enclave build-enclave`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::guest::guest_program;
use crate::testenv::TestEnv;

static IMAGES: AtomicU32 = AtomicU32::new(0);

/// The inputs of `build-enclave` besides the program.
#[derive(Debug, Clone, Default)]
pub struct ImageSpec {
    /// `--file SRC:DST`.
    pub files: Vec<(PathBuf, String)>,
    /// `--cmd ARG`: argv\[1\] onwards.
    pub cmd: Vec<String>,
    /// `--env K=V`, in order.
    pub env: Vec<String>,
    /// `--with-libs`: the program's interpreter and shared libraries go into the image.
    pub with_libs: bool,
}

impl ImageSpec {
    /// Adds `--file src:dst`.
    pub fn file(mut self, src: impl AsRef<Path>, dst: &str) -> Self {
        self.files.push((src.as_ref().to_owned(), dst.to_owned()));
        self
    }

    /// Adds `--cmd arg`.
    pub fn arg(mut self, arg: &str) -> Self {
        self.cmd.push(arg.to_owned());
        self
    }

    /// Sets `--with-libs`.
    pub fn with_libs(mut self) -> Self {
        self.with_libs = true;
        self
    }

    /// Adds `--env key_value` (`K=V`).
    pub fn env(mut self, key_value: &str) -> Self {
        self.env.push(key_value.to_owned());
        self
    }
}

impl TestEnv {
    /// Builds guest program `program` (see [`guest_program`]) and packs it with `spec` into
    /// a new EIF in this environment's directory.
    ///
    /// # Panics
    /// When the program or the image cannot be built.
    #[track_caller]
    pub fn build_eif(&self, program: &str, spec: &ImageSpec) -> PathBuf {
        let binary = guest_program(program).unwrap_or_else(|e| panic!("building {program}: {e}"));
        let n = IMAGES.fetch_add(1, Ordering::Relaxed);
        let out = self.root().join(format!("{program}-{n}.eif"));
        let mut args: Vec<std::ffi::OsString> = vec!["build-enclave".into(), "--binary".into()];
        args.push(binary.into_os_string());
        for (src, dst) in &spec.files {
            let mut s = src.clone().into_os_string();
            s.push(":");
            s.push(dst);
            args.push("--file".into());
            args.push(s);
        }
        for c in &spec.cmd {
            args.push("--cmd".into());
            args.push(c.into());
        }
        for e in &spec.env {
            args.push("--env".into());
            args.push(e.into());
        }
        if spec.with_libs {
            args.push("--with-libs".into());
        }
        args.push("--output-file".into());
        args.push(out.clone().into_os_string());
        self.cli(&args).ok();
        assert!(out.is_file(), "build-enclave wrote no {}", out.display());
        out
    }
}
