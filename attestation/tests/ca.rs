//! The CA on disk: init writes four files with the right modes, load refuses readable keys,
//! issued chains carry the required extensions and verify.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use attestation::ca::LeafAttester;
use attestation::ca::{Ca, CaError, KeyFileError, INTERMEDIATE_KEY, ROOT_CERT, ROOT_KEY};
use attestation::nsm::Attester;
use attestation::verify::{verify, Policy};
use x509_cert::der::Decode;
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage};

fn tempdir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("enclave-ca-test-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn init_load_issue_verify() {
    let dir = tempdir("init");
    let ca = Ca::init(&dir).unwrap();
    for (f, mode) in [
        (ROOT_KEY, 0o600),
        (INTERMEDIATE_KEY, 0o600),
        (ROOT_CERT, 0o644),
    ] {
        let m = std::fs::metadata(dir.join(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!(m, mode, "{f}");
    }
    assert!(matches!(Ca::init(&dir), Err(CaError::Exists(_))));
    // The root key may be removed; loading needs only the intermediate.
    std::fs::remove_file(dir.join(ROOT_KEY)).unwrap();
    let loaded = Ca::load(&dir).unwrap();
    assert_eq!(loaded.root_der(), ca.root_der());

    let root = x509_cert::Certificate::from_der(loaded.root_der()).unwrap();
    let (critical, bc) = root
        .tbs_certificate()
        .get_extension::<BasicConstraints>()
        .unwrap()
        .unwrap();
    assert!(critical && bc.ca);
    let (critical, ku) = root
        .tbs_certificate()
        .get_extension::<KeyUsage>()
        .unwrap()
        .unwrap();
    assert!(critical && ku.key_cert_sign() && ku.crl_sign());
    let inter = x509_cert::Certificate::from_der(loaded.intermediate_der()).unwrap();
    let (_, bc) = inter
        .tbs_certificate()
        .get_extension::<BasicConstraints>()
        .unwrap()
        .unwrap();
    assert_eq!((bc.ca, bc.path_len_constraint), (true, Some(0)));

    let leaf = loaded
        .issue_leaf("enc-00000000000000cc", Duration::from_secs(60))
        .unwrap();
    let cert = x509_cert::Certificate::from_der(&leaf.certificate).unwrap();
    let (_, ku) = cert
        .tbs_certificate()
        .get_extension::<KeyUsage>()
        .unwrap()
        .unwrap();
    assert!(ku.digital_signature() && !ku.key_cert_sign());
    let att = LeafAttester::new(leaf, "enc-00000000000000cc", false);
    let doc = att
        .attest(&[(0u16, [3u8; 48])].into_iter().collect(), None, None, None)
        .unwrap();
    verify(&doc, &Policy::new(ca.root_der().to_vec())).unwrap();

    // A key readable by others is refused, naming the fix.
    std::fs::set_permissions(
        dir.join(INTERMEDIATE_KEY),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    let err = Ca::load(&dir).unwrap_err();
    assert!(
        matches!(err, CaError::KeyFile(KeyFileError::Permissions { .. })),
        "{err:?}"
    );
    let chain = match &err {
        CaError::KeyFile(k) => k.to_string(),
        _ => String::new(),
    };
    assert!(chain.contains("chmod 600"), "{chain}");
    std::fs::remove_dir_all(&dir).unwrap();
}
