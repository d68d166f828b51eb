//! `enclave validate-eif` and `enclave doctor` (issue 9): findings parsed from `--json`.
//! validate-eif on a good image, a corrupt one, one signed with an expired certificate, one
//! whose signature no longer matches, and one too big for the memory given; doctor on this
//! host before and after a pool is applied.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use attestation::ca::{cert, keys};
use serde_json::Value;
use tests::{guest_program, ImageSpec, PoolSpec, TestEnv};

/// `validate-eif --json` of `eif` (with `--memory` when given): exit code and report.
fn validate(env: &TestEnv, eif: &Path, memory: Option<u64>) -> (Option<i32>, Value) {
    let mut args: Vec<String> = vec![
        "validate-eif".into(),
        "--json".into(),
        "--eif-path".into(),
        eif.display().to_string(),
    ];
    if let Some(m) = memory {
        args.extend(["--memory".into(), m.to_string()]);
    }
    let out = env.cli(&args);
    let report = out.json();
    (out.code(), report)
}

/// The finding named `check`.
#[track_caller]
fn finding<'a>(report: &'a Value, check: &str) -> &'a Value {
    report["Findings"]
        .as_array()
        .and_then(|l| l.iter().find(|f| f["Check"] == check))
        .unwrap_or_else(|| panic!("no {check} finding in {report:#}"))
}

#[track_caller]
fn level(report: &Value, check: &str) -> String {
    finding(report, check)["Level"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Writes a self-signed P-384 signing certificate valid over `[from, until]` and its key.
fn signer(dir: &Path, name: &str, from: SystemTime, until: SystemTime) -> (PathBuf, PathBuf) {
    let key = attestation::ca::generate_key().expect("key");
    let c = cert::issue(
        cert::CertProfile::leaf(),
        &format!("CN={name},O=enclave tests"),
        key.verifying_key(),
        None,
        Some(&key),
        from,
        until,
    )
    .expect("certificate");
    let (cert_path, key_path) = (
        dir.join(format!("{name}.crt.pem")),
        dir.join(format!("{name}.key.pem")),
    );
    std::fs::write(&cert_path, keys::cert_to_pem(&c).expect("pem")).expect("write cert");
    std::fs::write(&key_path, keys::key_to_pem(&key).expect("pem")).expect("write key");
    (cert_path, key_path)
}

fn sign(env: &TestEnv, eif: &Path, out: &Path, (c, k): &(PathBuf, PathBuf)) {
    env.cli([
        "sign-eif",
        "--eif-path",
        &eif.display().to_string(),
        "--signing-certificate",
        &c.display().to_string(),
        "--private-key",
        &k.display().to_string(),
        "--output-file",
        &out.display().to_string(),
    ])
    .ok();
}

#[test]
fn a_good_image_passes_and_names_its_minimum_memory() {
    let env = TestEnv::new().expect("test env");
    let eif = env.build_eif("hello", &ImageSpec::default().arg("x").env("A=b"));
    let (code, report) = validate(&env, &eif, Some(64));
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(report["Valid"], true, "{report:#}");
    assert_eq!(report["Errors"], 0, "{report:#}");
    for check in [
        "eif",
        "guest-abi",
        "init-spec",
        "ramdisk",
        "init",
        "memory",
        "signature",
        "metadata",
    ] {
        assert_eq!(level(&report, check), "ok", "{check}: {report:#}");
    }
    let min = report["MinimumMemoryMiB"].as_u64().expect("minimum");
    assert!((16..=64).contains(&min), "{report:#}");
    assert!(
        finding(&report, "init-spec")["Message"]
            .as_str()
            .unwrap_or_default()
            .contains("\"x\""),
        "{report:#}"
    );
    // Without --json: a table and the same exit status.
    let text = env.cli(["validate-eif", "--eif-path", &eif.display().to_string()]);
    assert!(text.ok().stdout.contains("0 error(s)"), "{text}");
    // An invalid size is refused with the rule.
    let (code, report) = validate(&env, &eif, Some(15));
    assert_eq!(code, Some(1), "{report:#}");
    assert!(
        finding(&report, "memory")["Message"]
            .as_str()
            .unwrap_or_default()
            .contains("a multiple of 2 MiB"),
        "{report:#}"
    );
}

#[test]
fn a_corrupt_image_is_an_error_naming_the_rebuild() {
    let env = TestEnv::new().expect("test env");
    let eif = env.build_eif("hello", &ImageSpec::default());
    let mut bytes = std::fs::read(&eif).expect("read");
    let at = bytes.len() / 2;
    bytes[at] ^= 0xff;
    let bad = env.root().join("corrupt.eif");
    std::fs::write(&bad, &bytes).expect("write");
    let (code, report) = validate(&env, &bad, None);
    assert_eq!(code, Some(1), "{report:#}");
    assert_eq!(report["Valid"], false);
    let f = finding(&report, "eif");
    assert_eq!(f["Level"], "error", "{report:#}");
    assert!(
        f["Message"].as_str().unwrap_or_default().contains("CRC32"),
        "{report:#}"
    );
    assert!(
        f["Fix"]
            .as_str()
            .unwrap_or_default()
            .contains("build-enclave"),
        "{report:#}"
    );
    // Not an EIF at all, and no file.
    let (code, report) = validate(&env, &guest_program("hello").expect("hello"), None);
    assert_eq!(code, Some(1), "{report:#}");
    assert_eq!(level(&report, "eif"), "error");
    let (code, report) = validate(&env, &env.root().join("missing.eif"), None);
    assert_eq!(code, Some(1), "{report:#}");
    assert_eq!(level(&report, "file"), "error");
}

#[test]
fn an_expired_signing_certificate_is_a_warning_and_a_broken_signature_an_error() {
    let env = TestEnv::new().expect("test env");
    let eif = env.build_eif("hello", &ImageSpec::default());
    let now = SystemTime::now();
    let day = Duration::from_secs(86_400);

    let valid = signer(env.root(), "valid", now - day, now + day);
    let signed = env.root().join("signed.eif");
    sign(&env, &eif, &signed, &valid);
    let (code, report) = validate(&env, &signed, None);
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(level(&report, "signature"), "ok", "{report:#}");
    assert_eq!(level(&report, "certificate"), "ok", "{report:#}");
    assert!(report["Measurements"]["PCR8"].is_string(), "{report:#}");

    let expired = signer(env.root(), "expired", now - 3 * day, now - day);
    let old = env.root().join("expired.eif");
    sign(&env, &eif, &old, &expired);
    let (code, report) = validate(&env, &old, None);
    // The launch does not refuse it (PCR8 still measures the certificate): a warning.
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(level(&report, "signature"), "ok", "{report:#}");
    let f = finding(&report, "certificate");
    assert_eq!(f["Level"], "warning", "{report:#}");
    assert!(
        f["Message"]
            .as_str()
            .unwrap_or_default()
            .contains("expired"),
        "{report:#}"
    );
    assert!(
        f["Fix"]
            .as_str()
            .unwrap_or_default()
            .contains("enclave sign-eif"),
        "{report:#}"
    );

    let future = signer(env.root(), "future", now + day, now + 3 * day);
    let early = env.root().join("future.eif");
    sign(&env, &eif, &early, &future);
    let (_, report) = validate(&env, &early, None);
    assert_eq!(level(&report, "certificate"), "warning", "{report:#}");
    assert!(
        finding(&report, "certificate")["Message"]
            .as_str()
            .unwrap_or_default()
            .contains("not valid before"),
        "{report:#}"
    );

    // The signed image changed after signing (another Cmdline, CRC recomputed): run-enclave
    // refuses it, so validate-eif does.
    let mut parsed =
        attestation::eif::Eif::parse(&std::fs::read(&signed).expect("read")).expect("parse");
    let cmdline = parsed
        .sections
        .iter_mut()
        .find(|s| s.kind == attestation::eif::SectionType::Cmdline)
        .expect("cmdline");
    cmdline.data = br#"{"argv":["/init","changed"],"env":[]}"#.to_vec();
    let tampered = env.root().join("tampered.eif");
    std::fs::write(&tampered, parsed.to_bytes().expect("encode")).expect("write");
    let (code, report) = validate(&env, &tampered, None);
    assert_eq!(code, Some(1), "{report:#}");
    let f = finding(&report, "signature");
    assert_eq!(f["Level"], "error", "{report:#}");
    assert!(
        f["Message"].as_str().unwrap_or_default().contains("PCR0"),
        "{report:#}"
    );
}

/// `program`'s ELF with `extra` bytes more of zero-filled memory in its highest PT_LOAD.
fn with_bigger_bss(program: &Path, extra: u64) -> Vec<u8> {
    let mut b = std::fs::read(program).expect("read program");
    let u16_at = |b: &[u8], o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
    let u64_at = |b: &[u8], o: usize| u64::from_le_bytes(b[o..o + 8].try_into().expect("8"));
    let phoff = usize::try_from(u64_at(&b, 32)).expect("phoff");
    let (size, count) = (usize::from(u16_at(&b, 54)), usize::from(u16_at(&b, 56)));
    let last = (0..count)
        .map(|i| phoff + i * size)
        .filter(|&ph| u32::from_le_bytes(b[ph..ph + 4].try_into().expect("4")) == 1)
        .max_by_key(|&ph| u64_at(&b, ph + 16))
        .expect("a PT_LOAD");
    let memsz = u64_at(&b, last + 40) + extra;
    b[last + 40..last + 48].copy_from_slice(&memsz.to_le_bytes());
    b
}

#[test]
fn an_image_too_big_for_the_memory_given_names_the_size_it_needs() {
    let env = TestEnv::new().expect("test env");
    let big = env.root().join("big-bss");
    std::fs::write(
        &big,
        with_bigger_bss(&guest_program("hello").expect("hello"), 40 << 20),
    )
    .expect("write");
    let eif = env.root().join("big.eif");
    env.cli([
        "build-enclave",
        "--binary",
        &big.display().to_string(),
        "--output-file",
        &eif.display().to_string(),
    ])
    .ok();
    let (code, report) = validate(&env, &eif, Some(32));
    assert_eq!(code, Some(1), "{report:#}");
    let min = report["MinimumMemoryMiB"].as_u64().expect("minimum");
    assert!(min > 48, "40 MiB of bss + 8 MiB stack: {report:#}");
    let f = finding(&report, "memory");
    assert_eq!(f["Level"], "error", "{report:#}");
    assert!(
        f["Fix"]
            .as_str()
            .unwrap_or_default()
            .contains(&format!("--memory {min}")),
        "{report:#}"
    );
    let (code, report) = validate(&env, &eif, Some(min));
    assert_eq!(code, Some(0), "{report:#}");
}

/// `doctor --json`: exit code and report.
fn doctor(env: &TestEnv) -> (Option<i32>, Value) {
    let out = env.cli(["doctor", "--json"]);
    let report = out.json();
    (out.code(), report)
}

#[test]
fn doctor_reports_this_hosts_kvm_and_a_missing_pool_with_its_fix() {
    let env = TestEnv::new().expect("test env");
    let (code, report) = doctor(&env);
    // No allocator config nor pool in a fresh test environment: run-enclave cannot work.
    assert_eq!(code, Some(1), "{report:#}");
    assert_eq!(report["Ready"], false, "{report:#}");
    let pool = finding(&report, "pool");
    assert_eq!(pool["Level"], "error", "{report:#}");
    assert!(
        pool["Fix"]
            .as_str()
            .unwrap_or_default()
            .contains("enclave allocator apply"),
        "{report:#}"
    );
    assert_eq!(level(&report, "allocator-config"), "error", "{report:#}");
    // What this host has, as the host itself says.
    let kvm_ok = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    assert_eq!(level(&report, "kvm-device") == "ok", kvm_ok, "{report:#}");
    if Path::new("/sys/module/kvm_pvm").is_dir() {
        assert!(
            finding(&report, "kvm-kind")["Message"]
                .as_str()
                .unwrap_or_default()
                .contains("kvm_pvm"),
            "{report:#}"
        );
    }
    if kvm_ok {
        assert_eq!(level(&report, "kvm-cap-user_memory"), "ok", "{report:#}");
        assert!(finding(&report, "kvm-cap-sync_regs")["Message"]
            .as_str()
            .unwrap_or_default()
            .contains("KVM_CAP_SYNC_REGS"));
    }
    let cpuset = tests::host::cpuset_root().is_some();
    assert_eq!(level(&report, "cpuset") == "ok", cpuset, "{report:#}");
    for check in ["privileges", "seccomp", "run-root", "hugepages", "ca"] {
        finding(&report, check);
    }
    // A CA in the environment's CA directory is found and valid.
    let ca_dir = env.root().join("ca");
    env.cli(["ca", "init", "--dir", &ca_dir.display().to_string()])
        .ok();
    let out = env
        .command(tests::enclave_bin())
        .args(["doctor", "--json"])
        .env("ENCLAVE_CA_DIR", &ca_dir)
        .output()
        .expect("doctor");
    let report: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(level(&report, "ca"), "ok", "{report:#}");
}

#[test]
#[cfg_attr(not(enclave_host), ignore = "needs /dev/kvm, root and cpusets")]
fn doctor_is_ready_once_a_pool_is_applied() {
    let env = TestEnv::new().expect("test env");
    env.apply_pool(&PoolSpec::new(64, 1));
    let (code, report) = doctor(&env);
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(report["Ready"], true, "{report:#}");
    assert_eq!(level(&report, "pool"), "ok", "{report:#}");
    assert_eq!(level(&report, "allocator-config"), "ok", "{report:#}");
    assert!(
        finding(&report, "pool")["Message"]
            .as_str()
            .unwrap_or_default()
            .contains("free for enclaves: 1 CPU(s)"),
        "{report:#}"
    );
}

/// A minimal dynamically linked x86_64 ELF header: one `PT_INTERP` naming `interp`.
fn dynamic_elf(interp: &str) -> Vec<u8> {
    let mut b = vec![0u8; 64 + 56];
    b[..4].copy_from_slice(b"\x7fELF");
    b[4] = 2; // 64-bit
    b[5] = 1; // little-endian
    b[6] = 1;
    b[16..18].copy_from_slice(&3u16.to_le_bytes()); // ET_DYN
    b[18..20].copy_from_slice(&62u16.to_le_bytes()); // x86_64
    b[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
    b[52..54].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
    b[54..56].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
    b[56..58].copy_from_slice(&1u16.to_le_bytes()); // e_phnum
    b[64..68].copy_from_slice(&3u32.to_le_bytes()); // PT_INTERP
    let off = u64::try_from(b.len()).expect("offset");
    b[72..80].copy_from_slice(&off.to_le_bytes());
    let len = u64::try_from(interp.len() + 1).expect("length");
    b[96..104].copy_from_slice(&len.to_le_bytes());
    b.extend_from_slice(interp.as_bytes());
    b.push(0);
    b
}

/// An image of `init` plus `files`, built with the library (build-enclave refuses dynamic
/// programs before they reach an image).
fn image_of(
    env: &TestEnv,
    name: &str,
    init: Vec<u8>,
    files: Vec<(String, Vec<u8>, u32)>,
) -> PathBuf {
    use attestation::image::{build_eif, ImageInputs, ImageMetadata, InitSpec};
    let built = build_eif(&ImageInputs {
        kernel: enclave_runtime::guest_abi::kernel_blob(),
        init,
        files,
        init_spec: InitSpec {
            argv: vec!["/init".into()],
            env: Vec::new(),
            cwd: None,
        },
        metadata: ImageMetadata::new(name, "1.0", "1970-01-01T00:00:00+00:00", "1"),
    })
    .expect("build the image");
    let path = env.root().join(format!("{name}.eif"));
    std::fs::write(&path, built.bytes).expect("write");
    path
}

#[test]
fn a_dynamic_program_needs_its_interpreter_in_the_image() {
    let env = TestEnv::new().expect("test env");
    let interp = "/lib64/ld-linux-x86-64.so.2";
    let without = image_of(&env, "dyn-alone", dynamic_elf(interp), Vec::new());
    let (code, report) = validate(&env, &without, None);
    assert_eq!(code, Some(1), "{report:#}");
    let f = finding(&report, "interpreter");
    assert_eq!(f["Level"], "error", "{report:#}");
    assert!(
        f["Message"].as_str().unwrap_or_default().contains(interp),
        "{report:#}"
    );
    assert!(
        f["Fix"]
            .as_str()
            .unwrap_or_default()
            .contains(&format!("--file <host path>:{interp}")),
        "{report:#}"
    );

    let with = image_of(
        &env,
        "dyn-with-interp",
        dynamic_elf(interp),
        vec![(interp.to_owned(), b"not really ld.so".to_vec(), 0o755)],
    );
    let (_, report) = validate(&env, &with, None);
    assert_eq!(level(&report, "interpreter"), "ok", "{report:#}");
}
