//! run-enclave refuses broken images and impossible sizes with a clear message, without a
//! panic, and leaves no run directory, claim or cgroup behind.

use std::path::{Path, PathBuf};

use attestation::eif::{Eif, EifWriter};
use tests::{CliOutput, ImageSpec, PoolSpec, TestEnv};

/// A kernel section as a Linux bzImage starts (MZ stub, "HdrS" at 0x202): not ours.
fn linux_kernel_blob() -> Vec<u8> {
    let mut blob = vec![0u8; 4096];
    blob[..2].copy_from_slice(b"MZ");
    blob[0x202..0x206].copy_from_slice(b"HdrS");
    blob
}

/// `good` re-encoded with some sections replaced, through attestation's writer.
fn rewrite(good: &[u8], edit: impl FnOnce(&mut EifWriter)) -> Vec<u8> {
    let eif = Eif::parse(good).expect("parse the good EIF");
    let mut w = EifWriter::new(
        eif.kernel().expect("kernel").to_vec(),
        eif.cmdline().expect("cmdline").to_vec(),
    );
    w.metadata = eif.metadata().map(<[u8]>::to_vec);
    w.ramdisks = eif.ramdisks().into_iter().map(<[u8]>::to_vec).collect();
    edit(&mut w);
    w.to_bytes().expect("encode EIF")
}

/// The broken images: file name, contents, what the error must say.
fn broken_images(good: &[u8]) -> Vec<(&'static str, Vec<u8>, &'static [&'static str])> {
    let mut flipped = good.to_vec();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0xff;
    let mut bad_magic = good.to_vec();
    bad_magic[..4].copy_from_slice(b"\x7fELF");
    vec![
        ("empty", Vec::new(), &["not a valid EIF", "truncated"][..]),
        (
            "truncated-header",
            good[..100].to_vec(),
            &["not a valid EIF", "truncated"][..],
        ),
        (
            "truncated-section",
            good[..good.len() / 2].to_vec(),
            &["not a valid EIF", "truncated"][..],
        ),
        ("flipped-byte", flipped, &["not a valid EIF", "CRC32"][..]),
        ("bad-magic", bad_magic, &["not a valid EIF", "magic"][..]),
        (
            "linux-kernel",
            rewrite(good, |w| w.kernel = linux_kernel_blob()),
            &["kernel section"][..],
        ),
        (
            "no-kernel",
            rewrite(good, |w| w.kernel = Vec::new()),
            &["kernel section"][..],
        ),
        (
            "garbage-cmdline",
            rewrite(good, |w| w.cmdline = b"console=ttyS0 init=/init".to_vec()),
            &["cmdline section"][..],
        ),
        (
            "garbage-ramdisk",
            rewrite(good, |w| w.ramdisks = vec![b"not a cpio archive".to_vec()]),
            &["ramdisk 0", "cpio"][..],
        ),
        (
            "no-ramdisk",
            rewrite(good, |w| w.ramdisks.clear()),
            &["no root ramdisk"][..],
        ),
    ]
}

fn run_production(env: &TestEnv, eif: &Path, memory: &str) -> CliOutput {
    env.cli([
        "run-enclave",
        "--cpu-count",
        "1",
        "--memory",
        memory,
        "--eif-path",
        eif.to_str().expect("utf-8 path"),
    ])
}

#[test]
#[cfg_attr(not(enclave_host), ignore = "needs /dev/kvm, root and a cpuset cgroup")]
fn broken_images_are_refused_cleanly() {
    let env = TestEnv::new().expect("test env");
    env.apply_pool(&PoolSpec::new(256, 1));
    let good_path = env.build_eif("hello", &ImageSpec::default());
    let good = std::fs::read(&good_path).expect("read EIF");
    for (name, bytes, needles) in broken_images(&good) {
        let path: PathBuf = env.root().join(format!("{name}.eif"));
        std::fs::write(&path, &bytes).expect("write broken EIF");
        for out in [env.run_debug(&path), run_production(&env, &path, "64")] {
            out.fails_with(1, needles);
            assert!(out.stderr.starts_with("error: "), "{name}: {out}");
            assert!(out.stdout.is_empty(), "{name}: {out}");
            env.assert_no_leftovers(name);
        }
    }
    // The good image still runs after all that.
    let out = env.run_debug(&good_path);
    assert_eq!(out.code(), Some(0), "{out}");
    env.assert_no_leftovers("good image");
}

#[test]
#[cfg_attr(not(enclave_host), ignore = "needs /dev/kvm, root and a cpuset cgroup")]
fn impossible_memory_sizes_are_refused_with_the_limits() {
    let env = TestEnv::new().expect("test env");
    env.apply_pool(&PoolSpec::new(256, 1));
    let eif = env.build_eif("spin", &ImageSpec::default());
    for memory in ["2", "15", "17"] {
        let out = run_production(&env, &eif, memory);
        out.fails_with(1, &["16 MiB", "65536 MiB", "multiple of 2 MiB"]);
        env.assert_no_leftovers(&format!("--memory {memory}"));
    }
    let out = run_production(&env, &eif, "0");
    out.fails_with(1, &["0 MiB"]);
    env.assert_no_leftovers("--memory 0");
    let missing = env.root().join("missing.eif");
    let out = run_production(&env, &missing, "64");
    out.fails_with(1, &["does not exist"]);
    env.assert_no_leftovers("missing image");
    let out = env.cli([
        "run-enclave",
        "--cpu-count",
        "0",
        "--memory",
        "64",
        "--eif-path",
        eif.to_str().expect("utf-8 path"),
    ]);
    out.fails_with(1, &["--cpu-count"]);
    env.assert_no_leftovers("--cpu-count 0");
}
