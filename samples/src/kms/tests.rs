//! The key service without KVM: documents made in-process by a CA of the attestation crate,
//! requests through the real TCP server and client.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use attestation::ca::{keys, Ca, LeafAttester, NewCa};
use attestation::pcr::Pcr;

use super::audit::{read_all, Decision};
use super::client::KmsClient;
use super::policy::KeyPolicy;
use super::protocol::{ErrorCode, Recipient, Request, MAX_LINE};
use super::recipient::RecipientKey;
use super::server::Server;
use super::service::Service;
use super::store::{Store, KEYS_FILE, MASTER_KEY};
use super::{crypto, open_service};

const PCR0: Pcr = [0xa0; 48];
const PCR1: Pcr = [0xa1; 48];
const PCR2: Pcr = [0xa2; 48];

/// A temporary state directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "kms-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn pem(ca: &NewCa) -> String {
    keys::cert_to_pem(&ca.root).unwrap()
}

fn pcrs() -> BTreeMap<u16, Pcr> {
    [(0, PCR0), (1, PCR1), (2, PCR2), (3, [0; 48])]
        .into_iter()
        .collect()
}

fn policy(ca: &NewCa) -> KeyPolicy {
    KeyPolicy {
        pcrs: [
            (0, vec![hex::encode([0x11; 48]), hex::encode(PCR0)]),
            (1, vec![hex::encode(PCR1)]),
        ]
        .into_iter()
        .collect(),
        root_certificate: pem(ca),
        allow_debug: false,
        max_document_age_secs: 300,
    }
}

/// A running service with key "demo" under the test CA's policy.
struct Fixture {
    dir: TempDir,
    ca: NewCa,
    service: Arc<Service>,
    addr: String,
}

impl Fixture {
    fn new() -> Self {
        Self::with_policy(|p| p)
    }

    fn with_policy(edit: impl FnOnce(KeyPolicy) -> KeyPolicy) -> Self {
        let dir = TempDir::new();
        let ca = Ca::generate().unwrap();
        Store::open(&dir.0)
            .unwrap()
            .create_key("demo", &edit(policy(&ca)))
            .unwrap();
        let service = open_service(&dir.0).unwrap();
        let addr = Server::bind("127.0.0.1:0", Arc::clone(&service))
            .unwrap()
            .spawn()
            .unwrap()
            .to_string();
        Self {
            dir,
            ca,
            service,
            addr,
        }
    }

    fn client(&self) -> KmsClient<std::net::TcpStream> {
        KmsClient::connect(&self.addr).unwrap()
    }

    fn attester(&self, debug: bool) -> LeafAttester {
        let leaf = self
            .ca
            .ca
            .issue_leaf("enc-test", Duration::from_secs(600))
            .unwrap();
        LeafAttester::new(leaf, "enc-test:test", debug)
    }

    /// A document with a fresh nonce from the service and `key`'s public key.
    fn document(&self, key: &RecipientKey) -> Vec<u8> {
        let nonce = self.client().get_nonce().unwrap();
        self.attester(false)
            .attest_at(
                attestation::ca::now_ms(),
                &pcrs(),
                None,
                Some(&nonce),
                Some(key.public_key()),
            )
            .unwrap()
    }

    fn blob(&self, data: &[u8]) -> Vec<u8> {
        self.client()
            .encrypt("demo", data)
            .unwrap()
            .ciphertext_blob
            .0
    }

    fn audit(&self) -> Vec<super::audit::AuditRecord> {
        read_all(&self.dir.0).unwrap()
    }
}

/// The refusal of a Decrypt of `blob` with `document`: (code, message).
fn refusal(f: &Fixture, document: Vec<u8>) -> (ErrorCode, String) {
    let blob = f.blob(b"data key");
    let err = f
        .client()
        .decrypt(&blob, Some("demo"), Recipient::new(document))
        .unwrap_err();
    let body = err
        .service_error()
        .unwrap_or_else(|| panic!("{err}"))
        .clone();
    (body.code, body.message)
}

#[test]
fn release_reaches_only_the_attested_key() {
    let f = Fixture::new();
    let enclave = RecipientKey::generate();
    let blob = f.blob(b"the data key");
    let reply = f
        .client()
        .decrypt(&blob, None, Recipient::new(f.document(&enclave)))
        .unwrap();
    assert_eq!(reply.key_id, "demo");
    let sealed = &reply.ciphertext_for_recipient.0;
    assert_eq!(enclave.open("demo", sealed).unwrap(), b"the data key");
    assert!(RecipientKey::generate().open("demo", sealed).is_err());

    let generated = f
        .client()
        .generate_data_key("demo", 32, Recipient::new(f.document(&enclave)))
        .unwrap();
    let data_key = enclave
        .open("demo", &generated.ciphertext_for_recipient.0)
        .unwrap();
    assert_eq!(data_key.len(), 32);
    // The blob is the same key, sealed for a later Decrypt.
    let again = f
        .client()
        .decrypt(
            &generated.ciphertext_blob.0,
            Some("demo"),
            Recipient::new(f.document(&enclave)),
        )
        .unwrap();
    assert_eq!(
        enclave
            .open("demo", &again.ciphertext_for_recipient.0)
            .unwrap(),
        data_key
    );
}

#[test]
fn envelope_opens_with_the_released_data_key() {
    let f = Fixture::new();
    let envelope = f
        .client()
        .encrypt_envelope("demo", b"attack at dawn")
        .unwrap();
    let enclave = RecipientKey::generate();
    let reply = f
        .client()
        .decrypt(
            &envelope.encrypted_data_key.0,
            Some(&envelope.key_id),
            Recipient::new(f.document(&enclave)),
        )
        .unwrap();
    let data_key = enclave
        .open("demo", &reply.ciphertext_for_recipient.0)
        .unwrap();
    let message = crypto::open_message(&data_key, &envelope.iv.0, &envelope.ciphertext.0).unwrap();
    assert_eq!(message, b"attack at dawn");
}

#[test]
fn wrong_pcr0_is_refused_naming_pcr0() {
    let f = Fixture::new();
    let nonce = f.client().get_nonce().unwrap();
    let enclave = RecipientKey::generate();
    let mut p = pcrs();
    p.insert(0, [0x55; 48]);
    let doc = f
        .attester(false)
        .attest_at(
            attestation::ca::now_ms(),
            &p,
            None,
            Some(&nonce),
            Some(enclave.public_key()),
        )
        .unwrap();
    let (code, message) = refusal(&f, doc);
    assert_eq!(code, ErrorCode::AccessDeniedException);
    assert_eq!(
        message,
        format!(
            "PCR0 is {}, the policy expects one of {}, {}",
            hex::encode([0x55; 48]),
            hex::encode([0x11; 48]),
            hex::encode(PCR0)
        )
    );
    let denied = f
        .audit()
        .into_iter()
        .find(|r| r.decision == Decision::Deny)
        .unwrap();
    assert_eq!(denied.action, "Decrypt");
    assert_eq!(denied.key_id.as_deref(), Some("demo"));
    assert_eq!(denied.pcr0, Some(hex::encode([0x55; 48])));
    assert_eq!(denied.module_id.as_deref(), Some("enc-test:test"));
    assert!(denied.verify_micros.is_some());
    assert!(denied.reason.contains("PCR0 is"), "{denied:?}");
}

#[test]
fn missing_listed_pcr_is_refused() {
    let f = Fixture::new();
    let nonce = f.client().get_nonce().unwrap();
    let enclave = RecipientKey::generate();
    let mut p = pcrs();
    p.remove(&1);
    let doc = f
        .attester(false)
        .attest_at(
            attestation::ca::now_ms(),
            &p,
            None,
            Some(&nonce),
            Some(enclave.public_key()),
        )
        .unwrap();
    let (code, message) = refusal(&f, doc);
    assert_eq!(code, ErrorCode::AccessDeniedException);
    assert_eq!(
        message,
        "Document has no PCR1, which the key policy requires"
    );
}

#[test]
fn another_root_is_refused() {
    let f = Fixture::new();
    let nonce = f.client().get_nonce().unwrap();
    let other = Ca::generate().unwrap();
    let leaf = other
        .ca
        .issue_leaf("enc-x", Duration::from_secs(600))
        .unwrap();
    let enclave = RecipientKey::generate();
    let doc = LeafAttester::new(leaf, "enc-x", false)
        .attest_at(
            attestation::ca::now_ms(),
            &pcrs(),
            None,
            Some(&nonce),
            Some(enclave.public_key()),
        )
        .unwrap();
    let (code, message) = refusal(&f, doc);
    assert_eq!(code, ErrorCode::AccessDeniedException);
    assert!(message.contains("issued by another CA"), "{message}");
}

#[test]
fn debug_documents_need_allow_debug() {
    let f = Fixture::new();
    let enclave = RecipientKey::generate();
    let nonce = f.client().get_nonce().unwrap();
    let doc = f
        .attester(true)
        .attest_at(
            attestation::ca::now_ms(),
            &pcrs(),
            None,
            Some(&nonce),
            Some(enclave.public_key()),
        )
        .unwrap();
    let (code, message) = refusal(&f, doc);
    assert_eq!(code, ErrorCode::AccessDeniedException);
    assert!(message.contains("debug-mode"), "{message}");

    // Allowed when the policy allows debug and pins no image PCR.
    let f = Fixture::with_policy(|mut p| {
        p.allow_debug = true;
        p.pcrs.clear();
        p
    });
    let nonce = f.client().get_nonce().unwrap();
    let doc = f
        .attester(true)
        .attest_at(
            attestation::ca::now_ms(),
            &pcrs(),
            None,
            Some(&nonce),
            Some(enclave.public_key()),
        )
        .unwrap();
    let blob = f.blob(b"k");
    let reply = f
        .client()
        .decrypt(&blob, None, Recipient::new(doc))
        .unwrap();
    assert_eq!(
        enclave
            .open("demo", &reply.ciphertext_for_recipient.0)
            .unwrap(),
        b"k"
    );
}

#[test]
fn stale_documents_are_refused_with_their_age() {
    // The test CA is minutes old (backdated 60 s): a 40 s old document against a 30 s policy.
    let f = Fixture::with_policy(|mut p| {
        p.max_document_age_secs = 30;
        p
    });
    let enclave = RecipientKey::generate();
    let nonce = f.client().get_nonce().unwrap();
    let doc = f
        .attester(false)
        .attest_at(
            attestation::ca::now_ms() - 40_500,
            &pcrs(),
            None,
            Some(&nonce),
            Some(enclave.public_key()),
        )
        .unwrap();
    let (code, message) = refusal(&f, doc);
    assert_eq!(code, ErrorCode::AccessDeniedException);
    assert!(
        (message.starts_with("document is 40 s old")
            || message.starts_with("document is 41 s old"))
            && message.contains("s old, key policy allows 30 s"),
        "{message}"
    );
}

#[test]
fn unknown_and_replayed_nonces_are_refused() {
    let f = Fixture::new();
    let enclave = RecipientKey::generate();
    let doc = f
        .attester(false)
        .attest_at(
            attestation::ca::now_ms(),
            &pcrs(),
            None,
            Some(&[9; 32]),
            Some(enclave.public_key()),
        )
        .unwrap();
    let (code, message) = refusal(&f, doc);
    assert_eq!(code, ErrorCode::AccessDeniedException);
    assert_eq!(
        message,
        "nonce was not issued by this service or was already used (replay)"
    );

    let doc = f
        .attester(false)
        .attest_at(
            attestation::ca::now_ms(),
            &pcrs(),
            None,
            None,
            Some(enclave.public_key()),
        )
        .unwrap();
    let (_, message) = refusal(&f, doc);
    assert!(message.starts_with("document has no nonce"), "{message}");

    let doc = f.document(&enclave);
    let blob = f.blob(b"k");
    f.client()
        .decrypt(&blob, None, Recipient::new(doc.clone()))
        .unwrap();
    let (code, message) = refusal(&f, doc);
    assert_eq!(code, ErrorCode::AccessDeniedException);
    assert_eq!(
        message,
        "nonce was not issued by this service or was already used (replay)"
    );
}

#[test]
fn documents_without_a_usable_public_key_are_refused() {
    let f = Fixture::new();
    let nonce = f.client().get_nonce().unwrap();
    let doc = f
        .attester(false)
        .attest_at(attestation::ca::now_ms(), &pcrs(), None, Some(&nonce), None)
        .unwrap();
    let (code, message) = refusal(&f, doc);
    assert_eq!(code, ErrorCode::AccessDeniedException);
    assert!(
        message.starts_with("document has no public_key"),
        "{message}"
    );

    let nonce = f.client().get_nonce().unwrap();
    let doc = f
        .attester(false)
        .attest_at(
            attestation::ca::now_ms(),
            &pcrs(),
            None,
            Some(&nonce),
            Some(&[4; 97]),
        )
        .unwrap();
    let (_, message) = refusal(&f, doc);
    assert!(
        message.starts_with("document's public_key is unusable"),
        "{message}"
    );
}

#[test]
fn tampered_ciphertext_blob_is_invalid_ciphertext() {
    let f = Fixture::new();
    let enclave = RecipientKey::generate();
    let mut blob = f.blob(b"the data key");
    let last = blob.len() - 1;
    blob[last] ^= 1;
    let err = f
        .client()
        .decrypt(&blob, None, Recipient::new(f.document(&enclave)))
        .unwrap_err();
    assert_eq!(
        err.service_error().map(|e| e.code),
        Some(ErrorCode::InvalidCiphertextException),
        "{err}"
    );
    let err = f
        .client()
        .decrypt(&blob[..10], None, Recipient::new(f.document(&enclave)))
        .unwrap_err();
    assert_eq!(
        err.service_error().map(|e| e.code),
        Some(ErrorCode::InvalidCiphertextException),
        "{err}"
    );
    let good = f.blob(b"x");
    let err = f
        .client()
        .decrypt(&good, Some("other"), Recipient::new(f.document(&enclave)))
        .unwrap_err();
    assert_eq!(
        err.service_error().map(|e| e.code),
        Some(ErrorCode::InvalidCiphertextException)
    );
    let err = f.client().encrypt("nope", b"x").unwrap_err();
    assert_eq!(
        err.service_error().map(|e| e.code),
        Some(ErrorCode::NotFoundException)
    );
    let err = f.client().encrypt("demo", &[0; 4097]).unwrap_err();
    assert_eq!(
        err.service_error().map(|e| e.code),
        Some(ErrorCode::ValidationException)
    );
}

#[test]
fn store_round_trips_with_private_modes() {
    let dir = TempDir::new();
    let ca = Ca::generate().unwrap();
    let store = Store::open(&dir.0).unwrap();
    store.create_key("a", &policy(&ca)).unwrap();
    assert!(matches!(
        store.create_key("a", &policy(&ca)),
        Err(super::store::StoreError::Exists(_))
    ));
    assert!(store.create_key("bad name", &policy(&ca)).is_err());
    for f in [MASTER_KEY, KEYS_FILE] {
        let mode = std::fs::metadata(dir.0.join(f))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{f}");
    }
    let text = std::fs::read_to_string(dir.0.join(KEYS_FILE)).unwrap();
    let file = store.read().unwrap();
    let stored = &file.keys["a"];
    let live = store.unseal("a", stored).unwrap();
    assert_eq!(live.material.len(), 32);
    assert!(
        !text.contains(&base64_of(&live.material)),
        "material in clear"
    );

    // Reopening keeps the master key; a changed master key cannot unseal.
    let again = Store::open(&dir.0).unwrap();
    assert_eq!(again.unseal("a", stored).unwrap().material, live.material);
    std::fs::write(dir.0.join(MASTER_KEY), [0u8; 32]).unwrap();
    assert!(Store::open(&dir.0).unwrap().unseal("a", stored).is_err());
    std::fs::write(dir.0.join(MASTER_KEY), [0u8; 5]).unwrap();
    assert!(Store::open(&dir.0).is_err());
}

fn base64_of(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}

#[test]
fn policy_updates_take_effect_while_running() {
    let f = Fixture::new();
    let enclave = RecipientKey::generate();
    let blob = f.blob(b"k");
    f.client()
        .decrypt(&blob, None, Recipient::new(f.document(&enclave)))
        .unwrap();
    let store = Store::open(&f.dir.0).unwrap();
    let mut p = policy(&f.ca);
    p.pcrs.insert(0, vec![hex::encode([0x77; 48])]);
    store.put_policy("demo", &p).unwrap();
    let err = f
        .client()
        .decrypt(&blob, None, Recipient::new(f.document(&enclave)))
        .unwrap_err();
    assert!(err.to_string().contains("PCR0 is"), "{err}");
    store.create_key("second", &policy(&f.ca)).unwrap();
    f.client().encrypt("second", b"x").unwrap();
}

#[test]
fn audit_has_a_line_per_decision() {
    let f = Fixture::new();
    let enclave = RecipientKey::generate();
    let blob = f.blob(b"k");
    f.client()
        .decrypt(&blob, None, Recipient::new(f.document(&enclave)))
        .unwrap();
    let _ = f.client().encrypt("missing", b"x");
    let lines = f.audit();
    let actions: Vec<_> = lines
        .iter()
        .map(|r| (r.action.as_str(), r.decision))
        .collect();
    assert_eq!(
        actions,
        [
            ("Encrypt", Decision::Allow),
            ("Decrypt", Decision::Allow),
            ("Encrypt", Decision::Deny)
        ]
    );
    let allow = &lines[1];
    assert_eq!(allow.pcr0, Some(hex::encode(PCR0)));
    assert!(allow.peer.starts_with("127.0.0.1:"), "{allow:?}");
    assert!(allow.verify_micros.is_some_and(|us| us > 0));
    assert!(
        lines[2].reason.contains("no key named \"missing\""),
        "{:?}",
        lines[2]
    );
    let mode = std::fs::metadata(f.dir.0.join("audit.jsonl"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let _ = &f.service;
}

#[test]
fn server_survives_garbage_and_huge_lines() {
    let f = Fixture::new();
    let mut c = f.client();
    for bad in [
        &b"not json\n"[..],
        b"{\"Action\":\"Nope\"}\n",
        b"\x00\xff\xfe\n",
        b"[]\n",
        b"\n",
    ] {
        let v = c.raw(bad).unwrap();
        assert_eq!(v["Error"]["Code"], "ValidationException", "{v}");
    }
    let mut huge = vec![b'{'; 2 * MAX_LINE];
    huge.push(b'\n');
    let v = c.raw(&huge).unwrap();
    assert_eq!(v["Error"]["Code"], "ValidationException", "{v}");
    assert!(
        v["Error"]["Message"]
            .as_str()
            .unwrap()
            .contains("over the limit"),
        "{v}"
    );
    // The same connection still works.
    assert_eq!(c.get_nonce().unwrap().len(), 32);
    // A connection closed mid-line does not hurt the server.
    let mut s = std::net::TcpStream::connect(&f.addr).unwrap();
    s.write_all(b"{\"Action\":").unwrap();
    drop(s);
    let reply = f
        .client()
        .call::<serde_json::Value>(&Request::GetNonce)
        .unwrap();
    assert!(reply["Nonce"].is_string());
}

#[test]
fn connections_over_the_limit_are_refused_with_a_line() {
    let dir = TempDir::new();
    let service = open_service(&dir.0).unwrap();
    let addr = Server::bind("127.0.0.1:0", service)
        .unwrap()
        .with_max_connections(1)
        .spawn()
        .unwrap();
    let mut first = KmsClient::connect(&addr.to_string()).unwrap();
    first.get_nonce().unwrap();
    let second = std::net::TcpStream::connect(addr).unwrap();
    second
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut reply = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(second), &mut reply).unwrap();
    let v: serde_json::Value = serde_json::from_str(&reply).unwrap();
    assert_eq!(v["Error"]["Code"], "InternalError", "{v}");
    assert!(reply.contains("at most 1 connections"), "{reply}");
    drop(first);
}

#[test]
fn idle_connections_are_closed() {
    let dir = TempDir::new();
    let service = open_service(&dir.0).unwrap();
    let addr = Server::bind("127.0.0.1:0", service)
        .unwrap()
        .with_idle_timeout(Duration::from_millis(200))
        .spawn()
        .unwrap();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 16];
    let n = std::io::Read::read(&mut s, &mut buf).unwrap();
    assert_eq!(n, 0, "the server closed the idle connection");
}
