//! The KMS sample end to end: `samples/kms/enclave` (`kms-enclave`) runs in a production-mode
//! enclave, attests to the key service (the `kms-server` binary on 127.0.0.1, reached from the
//! enclave's CID-3 port through a small Unix→TCP forwarder, as vsock-proxy does), obtains its
//! data key sealed with HPKE, and decrypts an envelope-encrypted message. A policy pinning
//! another PCR0 makes the same request fail with AccessDeniedException naming PCR0; after a
//! restart of the key service the enclave is provisioned again.

mod vsock_support;

use std::io::BufReader;
use std::net::TcpStream;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use samples::kms::audit::{read_all, Decision};
use samples::kms::client::KmsClient;
use samples::kms::policy::KeyPolicy;
use samples::kms::process::ServerProcess;
use samples::kms::protocol::{
    exchange, AttestResponse, Bytes, DecryptMessageResponse, EnclaveRequest, ErrorCode,
    ProvisionResponse, Reply,
};
use samples::kms::store::Store;
use serde_json::Value;
use tests::launch::str_field;
use tests::{paths, PoolSpec, TestEnv};

/// The enclave program's vsock port.
const ENCLAVE_PORT: u32 = 5000;
/// The parent port the enclave reaches the key service on.
const KMS_PORT: u32 = 8000;
const MESSAGE: &[u8] = b"the launch codes are 0000";

/// Packs kms-enclave; returns the image and its Measurements JSON.
fn build_image(env: &TestEnv) -> (PathBuf, Value) {
    let bin = samples::enclave_apps::kms_enclave().unwrap_or_else(|e| panic!("{e}"));
    let eif = env.root().join("kms-enclave.eif");
    let args = [
        "--listen-port".to_owned(),
        ENCLAVE_PORT.to_string(),
        "--kms-port".to_owned(),
        KMS_PORT.to_string(),
    ];
    let mut cli: Vec<std::ffi::OsString> = vec!["build-enclave".into(), "--binary".into()];
    cli.push(bin.into_os_string());
    for a in &args {
        cli.push("--cmd".into());
        cli.push(a.into());
    }
    cli.push("--output-file".into());
    cli.push(eif.clone().into_os_string());
    let measurements = env.cli(&cli).ok().json()["Measurements"].clone();
    (eif, measurements)
}

static KMS_SERVER: OnceLock<PathBuf> = OnceLock::new();

/// The `kms-server` binary of this build profile, built once per process.
fn kms_server_bin() -> PathBuf {
    KMS_SERVER
        .get_or_init(|| {
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let mut cmd = Command::new(cargo);
            cmd.args(["build", "--quiet", "-p", "samples", "--bin", "kms-server"])
                .arg("--manifest-path")
                .arg(paths::workspace_root().join("Cargo.toml"))
                .arg("--target-dir")
                .arg(
                    paths::profile_dir()
                        .parent()
                        .expect("profile dir has a parent"),
                );
            if paths::is_release() {
                cmd.arg("--release");
            }
            let status = cmd.status().expect("run cargo");
            assert!(
                status.success(),
                "cargo build -p samples --bin kms-server: {status}"
            );
            paths::profile_dir().join("kms-server")
        })
        .clone()
}

/// Forwards every connection to the parent-wide listener `vsock.sock_<port>` to the address
/// in `target` at connection time.
fn forward(run_root: &Path, port: u32, target: Arc<Mutex<std::net::SocketAddr>>) {
    let listener = UnixListener::bind(run_root.join(format!("vsock.sock_{port}")))
        .expect("bind the parent listener");
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(unix) = conn else { continue };
            let addr = *target
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let Ok(tcp) = TcpStream::connect(addr) else {
                continue;
            };
            let (Ok(mut unix2), Ok(mut tcp2)) = (unix.try_clone(), tcp.try_clone()) else {
                continue;
            };
            let (mut unix, mut tcp) = (unix, tcp);
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut unix, &mut tcp);
                let _ = tcp.shutdown(std::net::Shutdown::Write);
            });
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut tcp2, &mut unix2);
                let _ = unix2.shutdown(std::net::Shutdown::Write);
            });
        }
    });
}

fn call<T: serde::de::DeserializeOwned>(
    s: &mut BufReader<UnixStream>,
    r: &EnclaveRequest,
) -> Reply<T> {
    exchange::<UnixStream, EnclaveRequest, T>(s, r).unwrap_or_else(|e| panic!("{r:?}: {e}"))
}

#[test]
#[cfg_attr(not(enclave_host), ignore = "needs /dev/kvm, root and a cpuset cgroup")]
fn enclave_gets_its_key_only_when_the_policy_pins_its_pcr0() {
    let mut env = TestEnv::new().expect("test env");
    let ca = env.root().join("ca");
    env.set_env("ENCLAVE_CA_DIR", &ca);
    env.cli(["ca", "init"]).ok();
    env.apply_pool(&PoolSpec::new(128, 1));
    let (eif, measurements) = build_image(&env);
    let pcr0 = str_field(&measurements, "PCR0").to_owned();

    // The key service, with key "demo" pinned to this image and the test CA.
    let state = env.root().join("kms");
    let root_pem = std::fs::read_to_string(ca.join("root.pem")).expect("root.pem");
    let policy = KeyPolicy::from_measurements(&measurements, &root_pem).expect("policy");
    assert_eq!(policy.pcrs[&0], vec![pcr0.clone()]);
    let store = Store::open(&state).expect("state dir");
    store.create_key("demo", &policy).expect("create key");
    let start_server = || {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(env.root().join("kms-server.log"))
            .expect("log");
        ServerProcess::start(&kms_server_bin(), &state, "127.0.0.1:0", Stdio::from(log))
            .expect("kms-server starts")
    };
    let server = start_server();
    let kms_addr = server.addr();
    let target = Arc::new(Mutex::new(kms_addr));
    forward(&env.run_root(), KMS_PORT, Arc::clone(&target));

    // The data owner seals a message to the key.
    let envelope = KmsClient::connect(&kms_addr.to_string())
        .expect("connect")
        .encrypt_envelope("demo", MESSAGE)
        .expect("encrypt envelope");

    let info = env.start(&eif);
    let id = str_field(&info, "EnclaveID").to_owned();
    let enclave = vsock_support::enclaves(&env).attach(&id).expect("attach");
    let stream = enclave
        .connect_retry(ENCLAVE_PORT, Duration::from_secs(20))
        .expect("connect to kms-enclave");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let mut s = BufReader::new(stream);

    // Not provisioned yet.
    let early: Reply<DecryptMessageResponse> = call(
        &mut s,
        &EnclaveRequest::DecryptMessage {
            iv: envelope.iv.clone(),
            ciphertext: envelope.ciphertext.clone(),
        },
    );
    assert_eq!(
        early.into_result().map_err(|e| e.code),
        Err(ErrorCode::InvalidStateException)
    );

    let provision = EnclaveRequest::Provision {
        key_id: "demo".into(),
        encrypted_data_key: envelope.encrypted_data_key.clone(),
    };
    let released: ProvisionResponse = call(&mut s, &provision)
        .into_result()
        .unwrap_or_else(|e| panic!("Provision: {e}"));
    assert!(released.released);
    assert_eq!(released.key_id, "demo");
    let t = released.timings;
    assert!(t.attest_micros > 0 && t.kms_micros > 0, "{t:?}");
    assert!(t.total_micros >= t.attest_micros + t.kms_micros, "{t:?}");
    eprintln!("Provision timings: {t:?}");

    let opened: DecryptMessageResponse = call(
        &mut s,
        &EnclaveRequest::DecryptMessage {
            iv: envelope.iv.clone(),
            ciphertext: envelope.ciphertext.clone(),
        },
    )
    .into_result()
    .unwrap_or_else(|e| panic!("DecryptMessage: {e}"));
    assert_eq!(opened.plaintext, Bytes(MESSAGE.to_vec()));
    let mut tampered = envelope.ciphertext.0.clone();
    tampered[0] ^= 1;
    let bad: Reply<DecryptMessageResponse> = call(
        &mut s,
        &EnclaveRequest::DecryptMessage {
            iv: envelope.iv.clone(),
            ciphertext: Bytes(tampered),
        },
    );
    assert_eq!(
        bad.into_result().map_err(|e| e.code),
        Err(ErrorCode::InvalidCiphertextException)
    );

    // Attest: a production document with the nonce and the enclave's P-384 key.
    let doc: AttestResponse = call(
        &mut s,
        &EnclaveRequest::Attest {
            nonce: Bytes(b"harness nonce".to_vec()),
            user_data: Some(Bytes(b"harness".to_vec())),
        },
    )
    .into_result()
    .unwrap_or_else(|e| panic!("Attest: {e}"));
    let root_der = store
        .read()
        .ok()
        .and_then(|f| f.keys["demo"].policy.compile().ok())
        .expect("policy")
        .root_der()
        .to_vec();
    let verified = attestation::verify(
        &doc.attestation_document.0,
        &attestation::Policy::new(root_der).expect_nonce(b"harness nonce".to_vec()),
    )
    .expect("the Attest document verifies");
    assert_eq!(hex(&verified.document.pcrs[&0]), pcr0);
    assert_eq!(
        verified.document.public_key.as_ref().map(Vec::len),
        Some(97)
    );
    assert!(!verified.debug);

    // The same enclave under a policy pinning another PCR0 is refused, naming PCR0.
    let mut other = policy.clone();
    let mut wrong = pcr0.clone().into_bytes();
    wrong[0] = if wrong[0] == b'0' { b'1' } else { b'0' };
    let wrong = String::from_utf8(wrong).expect("ascii");
    other.pcrs.insert(0, vec![wrong.clone()]);
    store.put_policy("demo", &other).expect("put policy");
    let refused = call::<ProvisionResponse>(&mut s, &provision)
        .into_result()
        .expect_err("Provision under another PCR0 must fail");
    assert_eq!(refused.code, ErrorCode::AccessDeniedException, "{refused}");
    assert_eq!(
        refused.message,
        format!("PCR0 is {pcr0}, the policy expects {wrong}"),
        "{refused}"
    );

    // The key service restarts (on another port) while the enclave provisions: the enclave
    // retries until it answers.
    let status = server.stop().expect("stop kms-server");
    assert!(status.success(), "kms-server exits 0 on SIGTERM: {status}");
    store
        .put_policy("demo", &policy)
        .expect("restore the policy");
    let (again, server) = std::thread::scope(|scope| {
        let restart = scope.spawn(|| {
            std::thread::sleep(Duration::from_secs(1));
            let server = start_server();
            *target.lock().expect("target") = server.addr();
            server
        });
        let again: ProvisionResponse = call(&mut s, &provision)
            .into_result()
            .unwrap_or_else(|e| panic!("Provision across the restart: {e}"));
        (again, restart.join().expect("restart thread"))
    });
    assert!(again.released);
    assert!(
        again.timings.kms_micros >= 500_000,
        "the enclave waited for the restart: {:?}",
        again.timings
    );

    // The audit log saw the releases and the refusal, with the enclave's PCR0.
    let audit = read_all(&state).expect("audit");
    let decrypts: Vec<_> = audit.iter().filter(|r| r.action == "Decrypt").collect();
    let decisions: Vec<_> = decrypts.iter().map(|r| r.decision).collect();
    assert_eq!(
        decisions,
        [Decision::Allow, Decision::Deny, Decision::Allow],
        "{audit:#?}"
    );
    for r in &decrypts {
        assert_eq!(r.pcr0.as_deref(), Some(pcr0.as_str()));
        assert!(
            r.module_id.as_deref().is_some_and(|m| m.starts_with(&id)),
            "{r:?}"
        );
    }

    drop(s);
    drop(server);
    env.terminate(&id).ok();
    env.assert_no_leftovers("after the KMS enclave");
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
