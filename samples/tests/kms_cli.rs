//! The `kms-server` and `kms` binaries as users run them: create a key from a policy
//! template, serve on port 0 (the address comes from the Listening line), envelope-encrypt a
//! file, list keys, read the audit log, stop cleanly on SIGTERM. No KVM needed.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use samples::kms::client::KmsClient;
use samples::kms::crypto;
use samples::kms::process::ServerProcess;
use samples::kms::protocol::Envelope;
use serde_json::Value;

fn kms(args: &[&str]) -> (bool, Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_kms"))
        .args(args)
        .output()
        .expect("run kms");
    let text = String::from_utf8_lossy(&out.stdout);
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text:?}"));
    (out.status.success(), v)
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kms-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[test]
fn server_and_cli_round_trip() {
    let dir = temp_dir("round-trip");
    let root = attestation::ca::Ca::generate().expect("CA");
    let pem = attestation::ca::keys::cert_to_pem(&root.root).expect("pem");
    std::fs::write(dir.join("root.pem"), pem).expect("write root");
    let measurements = serde_json::json!({"Measurements": {
        "HashAlgorithm": "Sha384 { ... }",
        "PCR0": "ab".repeat(48), "PCR1": "cd".repeat(48), "PCR2": "ef".repeat(48)
    }});
    std::fs::write(dir.join("m.json"), measurements.to_string()).expect("write m.json");

    let (ok, policy) = kms(&[
        "policy-template",
        "--eif-describe-json",
        s(&dir.join("m.json")),
        "--root-ca",
        s(&dir.join("root.pem")),
        "--json",
    ]);
    assert!(ok, "{policy}");
    assert_eq!(policy["Pcrs"]["0"][0], "ab".repeat(48));
    assert_eq!(policy["Pcrs"]["2"][0], "ef".repeat(48));
    assert_eq!(policy["AllowDebug"], false);
    std::fs::write(dir.join("policy.json"), policy.to_string()).expect("write policy");

    let state = dir.join("state");
    let policy_file = dir.join("policy.json");
    let create = [
        "create-key",
        "--state-dir",
        s(&state),
        "--key-id",
        "demo",
        "--policy",
        s(&policy_file),
        "--json",
    ];
    let (ok, v) = kms(&create);
    assert!(ok, "{v}");
    assert_eq!(v["Result"], "Created");
    let (ok, v) = kms(&create);
    assert!(!ok, "an existing key must be refused");
    assert!(
        v["Error"].as_str().unwrap_or("").contains("already exists"),
        "{v}"
    );
    let mut replace = create.to_vec();
    replace.push("--replace-policy");
    let (ok, v) = kms(&replace);
    assert!(ok, "{v}");
    assert_eq!(v["Result"], "PolicyReplaced");
    std::fs::write(
        dir.join("bad.json"),
        r#"{"Pcrs":{"0":["zz"]},"RootCertificate":"x"}"#,
    )
    .expect("write");
    let (ok, v) = kms(&[
        "put-key-policy",
        "--state-dir",
        s(&state),
        "--key-id",
        "demo",
        "--policy",
        s(&dir.join("bad.json")),
        "--json",
    ]);
    assert!(!ok, "{v}");

    let server = ServerProcess::start(
        Path::new(env!("CARGO_BIN_EXE_kms-server")),
        &state,
        "127.0.0.1:0",
        Stdio::null(),
    )
    .expect("kms-server starts");
    assert_ne!(server.addr().port(), 0);

    std::fs::write(dir.join("msg"), b"top secret").expect("write msg");
    let (ok, v) = kms(&[
        "encrypt-envelope",
        "--server",
        &server.addr().to_string(),
        "--key-id",
        "demo",
        "--in",
        s(&dir.join("msg")),
        "--out",
        s(&dir.join("env.json")),
        "--json",
    ]);
    assert!(ok, "{v}");
    assert_eq!(v["Bytes"], 10);
    let envelope: Envelope =
        serde_json::from_slice(&std::fs::read(dir.join("env.json")).expect("read"))
            .expect("envelope");
    assert_eq!(envelope.key_id, "demo");
    assert_eq!(
        crypto::parse_blob(&envelope.encrypted_data_key.0)
            .expect("blob")
            .key_id,
        "demo"
    );
    let mut c = KmsClient::connect(&server.addr().to_string()).expect("connect");
    assert_eq!(c.get_nonce().expect("nonce").len(), 32);
    let v = c.raw(b"garbage\n").expect("reply");
    assert_eq!(v["Error"]["Code"], "ValidationException");

    let (ok, v) = kms(&["list-keys", "--state-dir", s(&state), "--json"]);
    assert!(ok, "{v}");
    assert_eq!(v["Keys"][0]["KeyId"], "demo");
    let (ok, v) = kms(&["audit", "--state-dir", s(&state), "--json"]);
    assert!(ok, "{v}");
    let lines = v.as_array().expect("array");
    assert!(
        lines
            .iter()
            .any(|l| l["Action"] == "Encrypt" && l["Decision"] == "Allow"),
        "{v}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["Action"] == "Invalid" && l["Decision"] == "Deny"),
        "{v}"
    );

    drop(c);
    let status = server.stop().expect("stop");
    assert!(status.success(), "kms-server exits 0 on SIGTERM: {status}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn server_reports_a_busy_address() {
    let dir = temp_dir("busy");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_kms-server"))
        .args([
            "--state-dir",
            s(&dir.join("state")),
            "--listen",
            &addr,
            "--json",
        ])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).expect("json error");
    assert!(v["Error"].as_str().unwrap_or("").contains(&addr), "{v}");
    let _ = std::fs::remove_dir_all(&dir);
}
