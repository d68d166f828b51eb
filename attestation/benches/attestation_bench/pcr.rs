//! PCR measurement of a large image against `sha384sum` of the same file: an EIF whose
//! ramdisk makes it `size` bytes is written to a temporary file, then (page cache warm for
//! both) read, parsed and measured (PCR0, PCR1, PCR2) here, and hashed by `sha384sum`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use attestation::eif::{EifView, EifWriter};
use attestation::pcr::Measurements;

/// A temporary image file, removed on drop.
pub struct Image {
    path: PathBuf,
}

impl Drop for Image {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Image {
    /// Writes an EIF of about `size` bytes (a 4 MiB "kernel", the rest one ramdisk of
    /// pseudo-random bytes) to a temporary file.
    pub fn write(size: usize) -> Result<Image, String> {
        let kernel_len = (4 << 20).min(size / 2);
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut fill = |len: usize| -> Vec<u8> {
            let mut v = Vec::with_capacity(len);
            while v.len() < len {
                // xorshift64: cheap bytes that do not compress or repeat.
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                v.extend_from_slice(&state.to_le_bytes());
            }
            v.truncate(len);
            v
        };
        let mut w = EifWriter::new(fill(kernel_len), b"console=ttyS0".to_vec());
        w.ramdisks.push(fill(size - kernel_len));
        let bytes = w
            .to_bytes()
            .map_err(|e| format!("cannot build the image: {e}"))?;
        let path = std::env::temp_dir().join(format!("pcr-bench-{}.eif", std::process::id()));
        std::fs::write(&path, &bytes)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(Image { path })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Seconds to read, parse (with its CRC check) and measure the image at `path`, and of
/// those the PCR hashing alone.
pub fn measure_file(path: &Path) -> Result<(f64, f64), String> {
    let t = Instant::now();
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let view = EifView::parse(&bytes).map_err(|e| format!("cannot parse the image: {e}"))?;
    let h = Instant::now();
    let m = Measurements::of_sections(view.sections.iter().map(|s| (s.kind, s.data)));
    std::hint::black_box(m);
    Ok((t.elapsed().as_secs_f64(), h.elapsed().as_secs_f64()))
}

/// Seconds `sha384sum <path>` takes (process start to exit).
pub fn sha384sum(path: &Path) -> Result<f64, String> {
    let t = Instant::now();
    let status = Command::new("sha384sum")
        .arg(path)
        .stdout(Stdio::null())
        .status()
        .map_err(|e| format!("sha384sum not runnable ({e}): install coreutils"))?;
    if !status.success() {
        return Err(format!("sha384sum failed with {status}"));
    }
    Ok(t.elapsed().as_secs_f64())
}
