//! Key release end to end, through the harness of `tests/src/kms.rs`: a production enclave
//! running the pinned image gets the data key and decrypts the owner's message; every fault
//! the issue names is injected and must end in the expected refusal or recovery — tampered
//! image, wrong signer, debug mode, expired chain, the enclave killed mid-request, the key
//! service restarted.

use std::time::{Duration, SystemTime};

use attestation::VerifyError;
use samples::scenario::ScenarioError;
use serde_json::json;
use tests::host;
use tests::kms::{KmsHarness, KEY_ID, MESSAGE};

fn harness() -> KmsHarness {
    KmsHarness::new().unwrap_or_else(|e| panic!("harness set-up failed: {e:?}"))
}

/// Asserts `result` is a refusal with `code` whose message contains every one of `needles`.
fn assert_refused<T: std::fmt::Debug>(
    result: Result<T, ScenarioError>,
    code: &str,
    needles: &[&str],
) -> String {
    match result {
        Err(ScenarioError::Refused { code: c, message }) => {
            assert_eq!(c, code, "refusal code; message: {message}");
            for n in needles {
                assert!(
                    message.contains(n),
                    "refusal {message:?} does not mention {n:?}"
                );
            }
            message
        }
        other => panic!("expected a {code} refusal, got {other:?}"),
    }
}

#[test]
#[cfg_attr(not(enclave_host), ignore = "needs /dev/kvm, root and a cpuset cgroup")]
fn pinned_image_gets_the_key_and_decrypts_inside() {
    let h = harness();
    let enclave = h.launch(&h.image, false).expect("launch");
    let plaintext = h.release_and_decrypt(&enclave).expect("key release");
    assert_eq!(plaintext, MESSAGE);

    // The enclave's own document verifies against the pinned root, its PCR0 is the image's,
    // and it carries the enclave's ephemeral P-384 key (SEC1 uncompressed).
    let nonce = b"harness nonce 1".to_vec();
    let doc = h.document(&enclave, &nonce).expect("document");
    let policy = h
        .policy(&nonce)
        .expect("policy")
        .expect_pcr(0, hex_decode(&h.image.pcr(0)));
    let verified = attestation::verify(&doc, &policy).expect("document verifies");
    assert!(!verified.debug);
    let key = verified
        .document
        .public_key
        .expect("public key in the document");
    assert_eq!((key.len(), key[0]), (97, 0x04));

    let allowed = h.audit_with("Allow").expect("audit");
    assert!(
        allowed
            .iter()
            .any(|e| e["Action"] == json!("Decrypt") && e["KeyId"] == json!(KEY_ID)),
        "no Allow Decrypt entry in the audit log: {allowed:?}"
    );
    enclave.terminate().expect("terminate");
}

#[test]
#[cfg_attr(not(enclave_host), ignore = "needs /dev/kvm, root and a cpuset cgroup")]
fn image_changed_by_one_byte_is_refused_naming_pcr0() {
    let h = harness();
    let changed = h.variant("changed", b'2').expect("variant");
    assert_ne!(changed.pcr(0), h.image.pcr(0));
    let enclave = h.launch(&changed, false).expect("launch");
    let message = assert_refused(
        h.release(&enclave),
        "AccessDeniedException",
        &["PCR0", &changed.pcr(0)],
    );
    let denied = h.audit_with("Deny").expect("audit");
    assert!(
        denied
            .iter()
            .any(|e| e["Reason"].as_str().is_some_and(|r| r.contains("PCR0"))),
        "no Deny entry naming PCR0 (refusal was {message:?}): {denied:?}"
    );
    enclave.terminate().expect("terminate");
}

#[test]
#[cfg_attr(not(enclave_host), ignore = "needs /dev/kvm, root and a cpuset cgroup")]
fn only_the_pinned_signer_gets_the_key() {
    let h = harness();
    let alice = h.signer("alice").expect("signer");
    let mallory = h.signer("mallory").expect("signer");
    let by_alice = h.signed(&h.image, &alice, "by-alice").expect("sign");
    let by_mallory = h.signed(&h.image, &mallory, "by-mallory").expect("sign");
    // Signing does not change PCR0; it sets PCR8.
    assert_eq!(by_alice.pcr(0), h.image.pcr(0));
    assert_ne!(by_alice.pcr(8), by_mallory.pcr(8));
    let policy = h
        .world
        .policy(&[(0, h.image.pcr(0)), (8, by_alice.pcr(8))], 300)
        .expect("policy");
    h.world.put_key_policy(KEY_ID, &policy).expect("put policy");

    let enclave = h.launch(&by_mallory, false).expect("launch");
    assert_refused(h.release(&enclave), "AccessDeniedException", &["PCR8"]);
    enclave.terminate().expect("terminate");

    let enclave = h.launch(&by_alice, false).expect("launch");
    assert_eq!(h.release_and_decrypt(&enclave).expect("release"), MESSAGE);
    enclave.terminate().expect("terminate");
}

#[test]
#[cfg_attr(not(enclave_host), ignore = "needs /dev/kvm, root and a cpuset cgroup")]
fn debug_mode_enclave_is_refused_and_attests_zero_pcrs() {
    let h = harness();
    let enclave = h.launch(&h.image, true).expect("launch in debug mode");
    assert_refused(h.release(&enclave), "AccessDeniedException", &["debug"]);

    let nonce = b"debug nonce".to_vec();
    let doc = h.document(&enclave, &nonce).expect("document");
    let strict = h.policy(&nonce).expect("policy");
    assert_eq!(
        attestation::verify(&doc, &strict).err(),
        Some(VerifyError::DebugDocument)
    );
    let lenient = h.policy(&nonce).expect("policy").allow_debug(true);
    let verified = attestation::verify(&doc, &lenient).expect("verifies when debug is allowed");
    assert!(verified.debug);
    assert!(
        verified.document.pcrs[&0].iter().all(|&b| b == 0),
        "debug PCR0 is not zero"
    );
    enclave.terminate().expect("terminate");
}

#[test]
#[cfg_attr(not(enclave_host), ignore = "needs /dev/kvm, root and a cpuset cgroup")]
fn stale_foreign_and_tampered_documents_are_refused_by_the_verifier() {
    let h = harness();
    let enclave = h.launch(&h.image, false).expect("launch");
    let nonce = b"verifier nonce".to_vec();
    let doc = h.document(&enclave, &nonce).expect("document");
    enclave.terminate().expect("terminate");

    let policy = h.policy(&nonce).expect("policy");
    attestation::verify(&doc, &policy).expect("the untouched document verifies now");

    // Far in the future the document is stale, but its chain was valid when it was made.
    let later = SystemTime::now() + Duration::from_secs(400 * 86_400);
    let late = h.policy(&nonce).expect("policy").at_time(later);
    assert!(matches!(
        attestation::verify(&doc, &late),
        Err(VerifyError::Stale { .. })
    ));
    // Stale for a policy that allows one second, a little later.
    let stale = h
        .policy(&nonce)
        .expect("policy")
        .with_max_age(Some(Duration::from_secs(1)))
        .at_time(SystemTime::now() + Duration::from_secs(5));
    assert!(matches!(
        attestation::verify(&doc, &stale),
        Err(VerifyError::Stale { .. })
    ));
    // Wrong nonce.
    let other = h.policy(b"another nonce").expect("policy");
    assert_eq!(
        attestation::verify(&doc, &other).err(),
        Some(VerifyError::NonceMismatch)
    );
    // Every single-byte change of the document is refused.
    for i in (0..doc.len()).step_by(97) {
        let mut bad = doc.clone();
        bad[i] ^= 0x01;
        assert!(
            attestation::verify(&bad, &policy).is_err(),
            "byte {i} flipped still verifies"
        );
    }
}

#[test]
#[cfg_attr(not(enclave_host), ignore = "needs /dev/kvm, root and a cpuset cgroup")]
fn expired_chain_is_refused_by_the_key_service_and_the_verifier() {
    let h = harness();
    h.expire_intermediate().expect("expire the intermediate");
    let enclave = h.launch(&h.image, false).expect("launch");
    assert_refused(h.release(&enclave), "AccessDeniedException", &["expired"]);
    let nonce = b"expired nonce".to_vec();
    let doc = h.document(&enclave, &nonce).expect("document");
    match attestation::verify(&doc, &h.policy(&nonce).expect("policy")) {
        Err(VerifyError::CertificateExpired { subject, .. }) => {
            assert!(subject.contains("intermediate"), "expired: {subject}");
        }
        other => panic!("expected an expired intermediate, got {other:?}"),
    }
    enclave.terminate().expect("terminate");
}

#[test]
#[cfg_attr(not(enclave_host), ignore = "needs /dev/kvm, root and a cpuset cgroup")]
fn enclave_killed_mid_request_is_cleaned_up_and_the_service_keeps_serving() {
    let mut h = harness();
    let enclave = h.launch(&h.image, false).expect("launch");
    let vmm = enclave.info().process_id;
    let kms_pid = h.world.kms_service().expect("kms running").pid();
    let kms = i32::try_from(kms_pid).expect("pid");
    // Freeze the key service so the enclave's request is in flight, then kill the enclave.
    // SAFETY: kill(2) on our own child process; no memory involved.
    assert_eq!(unsafe { libc::kill(kms, libc::SIGSTOP) }, 0);
    let started = std::time::Instant::now();
    let outcome = std::thread::scope(|s| {
        let request = s.spawn(|| h.release(&enclave));
        std::thread::sleep(Duration::from_millis(500));
        host::kill9(vmm);
        request.join().expect("request thread")
    });
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(kms, libc::SIGCONT) }, 0);
    assert!(
        outcome.is_err(),
        "the request succeeded although the enclave was killed"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the parent hung on a dead enclave"
    );
    assert!(
        host::wait_for_exit(vmm, Duration::from_secs(5)),
        "VMM {vmm} still alive"
    );

    // The pool is free again: a new enclave launches and the service still releases keys.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let enclave = loop {
        match h.launch(&h.image, false) {
            Ok(e) => break e,
            Err(e) if std::time::Instant::now() < deadline => {
                eprintln!("relaunch not yet possible: {e}");
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("the killed enclave's CPU/memory were not reclaimed: {e:?}"),
        }
    };
    assert_eq!(h.release_and_decrypt(&enclave).expect("release"), MESSAGE);
    // The killed enclave is no longer running: only its record (VMM_DIED) is listed.
    let listed = h.world.enclaves().list().expect("describe");
    let running: Vec<_> = listed.iter().filter(|i| i.state == "RUNNING").collect();
    assert_eq!(
        running.len(),
        1,
        "the killed enclave is still running: {listed:?}"
    );
    assert!(
        listed
            .iter()
            .filter(|i| i.state != "RUNNING")
            .all(|i| i.state == "VMM_DIED" && i.end_reason.is_some()),
        "{listed:?}"
    );
    enclave.terminate().expect("terminate");
}

#[test]
#[cfg_attr(not(enclave_host), ignore = "needs /dev/kvm, root and a cpuset cgroup")]
fn key_service_restart_is_survived() {
    let mut h = harness();
    let enclave = h.launch(&h.image, false).expect("launch");
    assert_eq!(h.release_and_decrypt(&enclave).expect("release"), MESSAGE);

    // A crash and restart of the key service (same port, same sealed store).
    h.world.restart_kms().expect("restart");
    assert_eq!(
        h.release_and_decrypt(&enclave)
            .expect("release after restart"),
        MESSAGE
    );

    // Down while the enclave asks: the enclave retries until the service is back.
    h.world.kms_service().expect("kms").kill();
    let mut app = h.world.app(&enclave).expect("connect");
    let envelope = h.envelope.clone();
    let request = std::thread::spawn(move || {
        app.provision(&envelope)?;
        app.decrypt_message(&envelope)
    });
    std::thread::sleep(Duration::from_millis(800));
    h.world.start_kms().expect("start again");
    let plaintext = request.join().expect("request thread");
    assert_eq!(
        plaintext.expect("release while the service came back"),
        MESSAGE
    );
    enclave.terminate().expect("terminate");
}

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}
