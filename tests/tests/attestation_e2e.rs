//! Attestation end to end: an enclave program written for AWS Nitro (`samples/nsm-app`, which
//! talks to `/dev/nsm` through AWS's `aws-nitro-enclaves-nsm-api` driver, unchanged) gets a
//! document from a real enclave, and `enclave verify-attestation` checks it against the root of
//! a CA made by `enclave ca init`, the PCRs `build-enclave` printed and the nonce.

use std::io::Read;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, OnceLock};
use std::time::Duration;

use serde_json::Value;
use tests::launch::str_field;
use tests::{paths, PoolSpec, TestEnv};

/// The nonce and user data the program is given (as `--cmd` arguments).
const NONCE: &str = "6e6f6e63652d3132333435";
const USER_DATA: &str = "attestation-e2e";
/// What the program extends PCR16 with before locking it.
const PCR16_DATA: &[u8] = b"nsm-app measurement";

static NSM_APP: OnceLock<PathBuf> = OnceLock::new();

/// Builds `samples/nsm-app` (its own cargo project) as a static program, once per process.
fn nsm_app() -> PathBuf {
    NSM_APP
        .get_or_init(|| {
            let manifest = paths::workspace_root().join("samples/nsm-app/Cargo.toml");
            let dir = samples::enclave_apps::build_static_crate(
                &manifest,
                &paths::target_dir().join("nsm-app"),
            )
            .unwrap_or_else(|e| panic!("{e}"));
            dir.join("nsm-app")
        })
        .clone()
}

/// Packs nsm-app with `args`; returns the image and the Measurements JSON.
fn build_image(env: &TestEnv, name: &str, args: &[&str]) -> (PathBuf, Value) {
    let eif = env.root().join(format!("{name}.eif"));
    let mut cli: Vec<std::ffi::OsString> = vec!["build-enclave".into(), "--binary".into()];
    cli.push(nsm_app().into_os_string());
    for a in args {
        cli.push("--cmd".into());
        cli.push(a.into());
    }
    cli.push("--output-file".into());
    cli.push(eif.clone().into_os_string());
    let out = env.cli(&cli);
    let measurements = out.ok().json()["Measurements"].clone();
    (eif, measurements)
}

fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// The value of the `KEY value` line of the program's report.
fn field<'a>(report: &'a str, key: &str) -> &'a str {
    report
        .lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no {key} line in:\n{report}"))
}

/// Writes the report's document to `path`.
fn save_document(report: &str, path: &Path) {
    std::fs::write(path, unhex(field(report, "DOCUMENT"))).expect("write document");
}

/// `verify-attestation --document doc --root <CA root> extra…`: (exit code, JSON).
fn verify(env: &TestEnv, ca: &Path, doc: &Path, extra: &[String]) -> (Option<i32>, Value) {
    let mut args = vec![
        "verify-attestation".to_owned(),
        "--document".to_owned(),
        doc.display().to_string(),
        "--root".to_owned(),
        ca.join("root.pem").display().to_string(),
    ];
    args.extend(extra.iter().cloned());
    let out = env.cli(&args);
    (out.code(), out.json())
}

fn pcr_arg(index: u16, value: &str) -> [String; 2] {
    ["--pcr".to_owned(), format!("{index}={value}")]
}

/// PCR16 after the program's one extend: SHA384(zeros ‖ data).
fn expected_pcr16() -> String {
    let v = attestation::pcr::extend(&attestation::pcr::PCR_ZERO, PCR16_DATA);
    v.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
#[cfg_attr(not(enclave_host), ignore = "needs /dev/kvm, root and a cpuset cgroup")]
fn nsm_api_program_gets_documents_that_verify() {
    let mut env = TestEnv::new().expect("test env");
    let ca = env.root().join("ca");
    env.set_env("ENCLAVE_CA_DIR", &ca);
    env.cli(["ca", "init"]).ok();
    env.apply_pool(&PoolSpec::new(256, 1));
    let port = 20_000 + std::process::id() % 10_000;
    let (eif, m) = build_image(&env, "nsm-app", &[NONCE, USER_DATA, &port.to_string()]);
    let pcr0 = str_field(&m, "PCR0").to_owned();

    // Production mode: the program's only way out is vsock to the parent.
    let sock = env.run_root().join(format!("vsock.sock_{port}"));
    let listener = UnixListener::bind(&sock).expect("bind the parent listener");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = listener.accept() {
            let mut text = String::new();
            let _ = s.read_to_string(&mut text);
            let _ = tx.send(text);
        }
    });
    let info = env.start(&eif);
    assert_eq!(str_field(&info, "Attestation"), "available", "{info:#}");
    let id = str_field(&info, "EnclaveID").to_owned();
    let report = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the enclave sent its report over vsock");
    let _ = std::fs::remove_file(&sock);
    assert!(report.contains("NSM_APP_DONE"), "{report}");
    assert_eq!(field(&report, "MAX_PCRS"), "32");
    assert_eq!(field(&report, "EXTEND_PCR0"), "ReadOnlyIndex");
    assert!(field(&report, "MODULE_ID").starts_with(&id), "{report}");
    assert_eq!(field(&report, "PCR0"), format!("{pcr0} locked=true"));
    assert_eq!(field(&report, "PCR16"), expected_pcr16());
    let doc = env.root().join("production.cose");
    save_document(&report, &doc);

    let mut good: Vec<String> = vec!["--nonce".into(), NONCE.into()];
    for (i, name) in [(0, "PCR0"), (1, "PCR1"), (2, "PCR2")] {
        good.extend(pcr_arg(i, str_field(&m, name)));
    }
    good.extend(pcr_arg(16, &expected_pcr16()));
    let (code, v) = verify(&env, &ca, &doc, &good);
    assert_eq!(code, Some(0), "{v:#}");
    assert_eq!(v["Verified"], Value::Bool(true));
    assert_eq!(v["Debug"], Value::Bool(false));
    assert_eq!(str_field(&v, "ModuleId"), field(&report, "MODULE_ID"));
    let user_hex: String = USER_DATA.bytes().map(|b| format!("{b:02x}")).collect();
    assert_eq!(str_field(&v, "UserData"), user_hex);

    // A wrong PCR0 or nonce fails.
    let mut wrong_pcr0 = pcr0.clone().into_bytes();
    wrong_pcr0[0] = if wrong_pcr0[0] == b'0' { b'1' } else { b'0' };
    let wrong_pcr0 = String::from_utf8(wrong_pcr0).expect("ascii");
    let (code, v) = verify(&env, &ca, &doc, &pcr_arg(0, &wrong_pcr0));
    assert_eq!(code, Some(1), "{v:#}");
    assert_eq!(str_field(&v, "Check"), "PcrMismatch", "{v:#}");
    let (code, v) = verify(&env, &ca, &doc, &["--nonce".into(), "00".into()]);
    assert_eq!(code, Some(1), "{v:#}");
    assert_eq!(str_field(&v, "Check"), "NonceMismatch", "{v:#}");

    // Debug mode: PCR0 reads and attests as zero; the verifier refuses it unless allowed.
    let out = env.run_debug(&eif);
    out.ok();
    let zero = "0".repeat(96);
    assert_eq!(field(&out.stdout, "PCR0"), format!("{zero} locked=true"));
    let debug_doc = env.root().join("debug.cose");
    save_document(&out.stdout, &debug_doc);
    let nonce = ["--nonce".to_owned(), NONCE.to_owned()];
    let (code, v) = verify(&env, &ca, &debug_doc, &nonce);
    assert_eq!(code, Some(1), "{v:#}");
    assert_eq!(str_field(&v, "Check"), "DebugDocument", "{v:#}");
    let mut allowed = nonce.to_vec();
    allowed.push("--allow-debug".into());
    let (code, v) = verify(&env, &ca, &debug_doc, &allowed);
    assert_eq!(code, Some(0), "{v:#}");
    assert_eq!(v["Debug"], Value::Bool(true));
    assert_eq!(v["PCRs"]["0"].as_str(), Some(zero.as_str()), "{v:#}");
    allowed.extend(pcr_arg(0, &pcr0));
    let (code, v) = verify(&env, &ca, &debug_doc, &allowed);
    assert_eq!(code, Some(1), "{v:#}");
    assert_eq!(str_field(&v, "Check"), "PcrMismatch", "{v:#}");

    env.assert_no_leftovers("after the attestation runs");
}

#[test]
#[cfg_attr(not(enclave_host), ignore = "needs /dev/kvm, root and a cpuset cgroup")]
fn without_a_ca_enclaves_run_but_cannot_attest() {
    let mut env = TestEnv::new().expect("test env");
    let empty = env.root().join("no-ca");
    std::fs::create_dir_all(&empty).expect("create empty CA dir");
    env.set_env("ENCLAVE_CA_DIR", &empty);
    env.apply_pool(&PoolSpec::new(256, 1));
    let (eif, _) = build_image(&env, "nsm-app-no-ca", &[NONCE, USER_DATA]);

    let out = env.run_debug(&eif);
    out.ok();
    assert_eq!(field(&out.stdout, "ATTESTATION_ERROR"), "InternalError");
    assert_eq!(field(&out.stdout, "PCR16"), expected_pcr16());
    assert!(
        out.stderr.contains("\"Attestation\": \"unavailable: "),
        "{out}"
    );
    assert!(out.stderr.contains("enclave ca init"), "{out}");
    env.assert_no_leftovers("after the run without a CA");
}
