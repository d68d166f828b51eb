//! Attestation of one enclave launch: the leaf key and certificate the VMM gets from the host
//! CA, the module id, and the PCR bank the enclave boots with, assembled into the
//! [`NsmDevice`] behind its `/dev/nsm`.
//!
//! PCRs at boot (DESIGN.md, "Attestation"): PCR0/1/2 the image's measurements, PCR3 empty,
//! PCR4 the parent host's identity (the measurement of `/etc/machine-id`, as Nitro measures
//! the parent instance ID), PCR8 the signing certificate of a signed image, 0–15 locked. A
//! debug-mode enclave reads and attests PCR0/1/2/8 as zero, as on Nitro.
//!
//! Without a usable CA the launch still works: the device serves every request but
//! Attestation, which gets `InternalError`, and the enclave's description says why.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use attestation::ca::{CaFiles, LeafAttester};
use attestation::document::{DocumentError, PayloadError};
use attestation::eif::Eif;
use attestation::nsm::Attester;
use attestation::nsm::{BootPcrs, PcrBank};
use attestation::pcr::{measure, Measurements, Pcr, PCR_ZERO};
use attestation::signing::{self, SigError};

use crate::error_chain::chain;
use crate::kernel::nsm::NsmDevice;

/// How long an enclave's leaf certificate is valid: documents of an enclave that runs longer
/// stop verifying (relaunch it).
pub const LEAF_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);
/// The runtime version written into module ids.
pub const RUNTIME_VERSION: &str = env!("CARGO_PKG_VERSION");
/// Where the host identity (PCR4) is read from, first that exists wins.
pub const HOST_IDENTITY_FILES: [&str; 2] = ["/etc/machine-id", "/var/lib/dbus/machine-id"];
/// What describe-enclaves reports when documents can be signed.
pub const AVAILABLE: &str = "available";

/// The module id of enclave `enclave_id`: it names the enclave and the runtime version.
pub fn module_id(enclave_id: &str) -> String {
    format!("{enclave_id}:enclave-runtime-{RUNTIME_VERSION}")
}

/// PCR4: the measurement of the host's machine id (`/etc/machine-id`), or of its host name
/// where there is none.
pub fn host_identity() -> Pcr {
    for f in HOST_IDENTITY_FILES {
        if let Ok(id) = std::fs::read_to_string(f) {
            let id = id.trim();
            if !id.is_empty() {
                return measure(id.as_bytes());
            }
        }
    }
    match std::fs::read_to_string("/proc/sys/kernel/hostname") {
        Ok(name) if !name.trim().is_empty() => measure(name.trim().as_bytes()),
        _ => PCR_ZERO,
    }
}

/// The measurements of an image with PCR8 when it is signed. A signature that does not check
/// is an error: an unverified certificate must not become the enclave's PCR8.
pub fn image_measurements(eif: &Eif) -> Result<Measurements, SigError> {
    let base = Measurements::of(eif);
    match signing::check_signature(eif) {
        Ok(info) => Ok(Measurements {
            pcr8: Some(info.pcr8),
            ..base
        }),
        Err(SigError::NotSigned) => Ok(base),
        Err(e) => Err(e),
    }
}

/// A leaf issued on demand: by the first Attestation request, on the thread that serves it
/// (later and concurrent requests wait for it). Issuing costs ~2 ms of P-384 arithmetic that
/// a launch need not pay, and made beside a launch it slowed the launch by more than that.
/// A leaf that could not be issued fails the requests as an enclave without a CA does.
pub struct PendingAttester {
    module_id: String,
    issuer: Mutex<Option<LeafIssuer>>,
    leaf: OnceLock<Option<LeafAttester>>,
}

impl PendingAttester {
    fn leaf(&self) -> Option<&LeafAttester> {
        self.leaf
            .get_or_init(|| {
                let issuer = self
                    .issuer
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take();
                issuer.and_then(LeafIssuer::issue)
            })
            .as_ref()
    }
}

impl Attester for PendingAttester {
    fn module_id(&self) -> &str {
        &self.module_id
    }

    fn attest(
        &self,
        pcrs: &BTreeMap<u16, Pcr>,
        user_data: Option<&[u8]>,
        nonce: Option<&[u8]>,
        public_key: Option<&[u8]>,
    ) -> Result<Vec<u8>, DocumentError> {
        match self.leaf() {
            Some(a) => a.attest(pcrs, user_data, nonce, public_key),
            None => Err(DocumentError::Invalid(PayloadError::Certificate(0))),
        }
    }
}

/// What a [`PendingAttester`] issues its leaf from.
struct LeafIssuer {
    ca: CaFiles,
    enclave_id: String,
    module_id: String,
    debug: bool,
}

impl LeafIssuer {
    /// Decodes the CA's key and issues the leaf (a P-384 key and its certificate; together
    /// ~2 ms). A failure is logged and gives `None`.
    fn issue(self) -> Option<LeafAttester> {
        let leaf = self
            .ca
            .load()
            .and_then(|ca| ca.issue_leaf(&self.enclave_id, LEAF_LIFETIME));
        match leaf {
            Ok(leaf) => Some(LeafAttester::new(leaf, self.module_id, self.debug)),
            Err(e) => {
                tracing::error!(error = %chain(&e), "cannot issue the enclave's leaf");
                None
            }
        }
    }
}

/// The attestation identity of one enclave launch.
#[derive(Clone)]
pub struct Attestation {
    module_id: String,
    attester: Option<Arc<dyn Attester + Send + Sync>>,
    unavailable: Option<String>,
    pcr4: Pcr,
}

impl std::fmt::Debug for Attestation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attestation")
            .field("module_id", &self.module_id)
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}

fn unusable_ca(ca_dir: &Path, e: &dyn std::error::Error) -> String {
    format!(
        "no usable CA in {} ({}); create one with `enclave ca init` (or set {})",
        ca_dir.display(),
        chain(e),
        attestation::ca::CA_DIR_ENV
    )
}

impl Attestation {
    /// Reads the CA's files from `ca_dir` and returns the identity at once; the CA's key is
    /// decoded and the leaf issued by the first Attestation request ([`PendingAttester`]).
    /// Without usable CA files: an identity that cannot sign (and says why). A key file that
    /// reads but does not decode fails the leaf, and so the enclave's Attestation requests.
    pub fn deferred(enclave_id: &str, debug: bool, ca_dir: &Path) -> Self {
        let module_id = module_id(enclave_id);
        match CaFiles::read(ca_dir) {
            Ok(ca) => {
                let issuer = LeafIssuer {
                    ca,
                    enclave_id: enclave_id.to_owned(),
                    module_id: module_id.clone(),
                    debug,
                };
                let pending = PendingAttester {
                    module_id: module_id.clone(),
                    issuer: Mutex::new(Some(issuer)),
                    leaf: OnceLock::new(),
                };
                Self {
                    attester: Some(Arc::new(pending)),
                    module_id,
                    unavailable: None,
                    pcr4: host_identity(),
                }
            }
            Err(e) => Self::unavailable(enclave_id, unusable_ca(ca_dir, &e)),
        }
    }

    /// An identity that cannot sign documents, for the reason `reason`.
    pub fn unavailable(enclave_id: &str, reason: impl Into<String>) -> Self {
        Self {
            module_id: module_id(enclave_id),
            attester: None,
            unavailable: Some(reason.into()),
            pcr4: host_identity(),
        }
    }

    /// An identity signing with `attester` (tests and tools that bring their own CA).
    pub fn with_attester(attester: LeafAttester, module_id: impl Into<String>, pcr4: Pcr) -> Self {
        Self {
            module_id: module_id.into(),
            attester: Some(Arc::new(attester)),
            unavailable: None,
            pcr4,
        }
    }

    /// The module id.
    pub fn module_id(&self) -> &str {
        &self.module_id
    }

    /// Whether documents can be signed.
    pub fn available(&self) -> bool {
        self.attester.is_some()
    }

    /// [`AVAILABLE`], or `unavailable: <reason>`.
    pub fn status(&self) -> String {
        match &self.unavailable {
            None => AVAILABLE.to_owned(),
            Some(reason) => format!("unavailable: {reason}"),
        }
    }

    /// PCR4 of the enclave.
    pub fn pcr4(&self) -> Pcr {
        self.pcr4
    }

    /// The PCRs the enclave's NSM attests at boot for an image measured `image`, as
    /// `describe-enclaves` shows them ("AttestedPCRs"): PCR0/1/2/8 of the image in production
    /// mode, zeros in debug mode, PCR4 the host identity; `Mode` says which.
    pub fn attested_pcrs_json(&self, image: &Measurements, debug: bool) -> serde_json::Value {
        let bank = PcrBank::at_boot(
            &BootPcrs {
                image: Some(*image),
                pcr4: self.pcr4,
            },
            debug,
        );
        let mut map = serde_json::Map::new();
        map.insert(
            "Mode".into(),
            if debug {
                "debug: PCR0/1/2/8 attest as zeros"
            } else {
                "production: the image's PCRs"
            }
            .into(),
        );
        map.insert(
            "HashAlgorithm".into(),
            attestation::pcr::HASH_ALGORITHM.into(),
        );
        for index in [0u16, 1, 2, 4, 8] {
            if let Ok((_, value)) = bank.describe(index) {
                map.insert(format!("PCR{index}"), hex::encode(value).into());
            }
        }
        serde_json::Value::Object(map)
    }

    /// The enclave's NSM at boot for an image measured `image`.
    pub fn device(&self, image: &Measurements, debug: bool) -> NsmDevice {
        let bank = PcrBank::at_boot(
            &BootPcrs {
                image: Some(*image),
                pcr4: self.pcr4,
            },
            debug,
        );
        match &self.attester {
            Some(a) => NsmDevice::new(bank, a.clone()),
            None => NsmDevice::without_attestation(bank, self.module_id.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use attestation::ca::Ca;

    #[test]
    fn module_id_names_enclave_and_runtime() {
        let id = module_id("enc-0123456789abcdef");
        assert!(id.starts_with("enc-0123456789abcdef"));
        assert!(id.ends_with(RUNTIME_VERSION));
    }

    #[test]
    fn missing_ca_leaves_attestation_unavailable_with_a_reason() {
        let dir = std::env::temp_dir().join(format!("enclave-no-ca-{}", std::process::id()));
        let a = Attestation::deferred("enc-0000000000000001", false, &dir);
        assert!(!a.available());
        let status = a.status();
        assert!(status.starts_with("unavailable: "), "{status}");
        assert!(status.contains("enclave ca init"), "{status}");
        let dev = a.device(
            &Measurements {
                pcr0: [1; 48],
                pcr1: [2; 48],
                pcr2: [3; 48],
                pcr8: None,
            },
            false,
        );
        assert!(!dev.attestation_available());
        assert_eq!(dev.pcrs().describe(0).unwrap(), (true, [1; 48]));
    }

    #[test]
    fn a_deferred_leaf_is_issued_by_the_first_attestation() {
        let dir = std::env::temp_dir().join(format!("enclave-deferred-ca-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Ca::init(&dir).unwrap();
        let a = Attestation::deferred("enc-00000000000000dd", false, &dir);
        assert!(a.available(), "{}", a.status());
        let attester = a.attester.clone().unwrap();
        let pcrs = BTreeMap::from([(0u16, [7u8; 48])]);
        // Two requests at once: one issues the leaf, the other waits for it; both sign.
        let other = {
            let attester = attester.clone();
            let pcrs = pcrs.clone();
            std::thread::spawn(move || attester.attest(&pcrs, None, Some(b"other"), None))
        };
        let doc = attester
            .attest(&pcrs, None, Some(b"nonce"), None)
            .expect("signed with the leaf issued on demand");
        let other = other
            .join()
            .unwrap()
            .expect("the concurrent request signs too");
        let leaf_of = |doc: &[u8]| {
            let payload = attestation::cose::parse(doc, 1 << 20).expect("a COSE_Sign1 document");
            attestation::document::AttestationDocument::from_cbor(payload.payload())
                .expect("a document")
                .certificate
        };
        assert_eq!(leaf_of(&doc), leaf_of(&other), "one leaf, issued once");
        // Later requests reuse the leaf.
        let again = attester.attest(&pcrs, None, None, None).unwrap();
        assert_eq!(leaf_of(&again), leaf_of(&doc));

        // A key file that reads as a PEM private key but does not decode: the identity is
        // made (the key is decoded with the leaf, at the first request), the leaf fails, and
        // so do the requests, without hanging.
        let key = dir.join(attestation::ca::INTERMEDIATE_KEY);
        let garbage = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        std::fs::write(&key, garbage).unwrap();
        let c = Attestation::deferred("enc-00000000000000df", false, &dir);
        assert!(c.available(), "{}", c.status());
        let attester = c.attester.unwrap();
        assert!(attester.attest(&pcrs, None, None, None).is_err());
        assert!(attester.attest(&pcrs, None, None, None).is_err());

        // A key file that is no private key at all: unavailable at once, naming the file.
        std::fs::write(
            &key,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let d = Attestation::deferred("enc-00000000000000e0", false, &dir);
        assert!(!d.available());
        assert!(d.status().contains("intermediate.key"), "{}", d.status());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn pcr8_comes_only_from_a_signature_that_checks() {
        use attestation::eif::SectionType;
        use attestation::image::{build_eif, ImageInputs, ImageMetadata, InitSpec};

        let built = build_eif(&ImageInputs {
            kernel: crate::guest_abi::kernel_blob(),
            init: b"\x7fELF not run here".to_vec(),
            files: vec![],
            init_spec: InitSpec {
                argv: vec!["/init".into()],
                env: vec![],
                cwd: None,
            },
            metadata: ImageMetadata::new("t", "1", attestation::image::EPOCH_BUILD_TIME, "abi"),
        })
        .unwrap();
        let eif = Eif::parse(&built.bytes).unwrap();
        let plain = image_measurements(&eif).unwrap();
        assert_eq!(plain, built.measurements);
        assert_eq!(plain.pcr8, None);

        let signer = Ca::generate().unwrap();
        let cert = attestation::ca::keys::cert_to_der(&signer.root).unwrap();
        let (signed, pcr8) = signing::sign_eif(&eif, &cert, &signer.root_key).unwrap();
        let m = image_measurements(&signed).unwrap();
        assert_eq!(m.pcr8, Some(pcr8));
        assert_eq!(m.pcr0, plain.pcr0);
        let bytes = signed.to_bytes().unwrap();
        assert_eq!(
            crate::image::unpack(&bytes)
                .map(|i| i.measurements.pcr8)
                .ok(),
            Some(Some(pcr8))
        );

        // The signature section moved onto another image: refused, not PCR8.
        let mut tampered = signed.clone();
        if let Some(s) = tampered
            .sections
            .iter_mut()
            .find(|s| s.kind == SectionType::Cmdline)
        {
            s.data.push(b' ');
        }
        assert!(image_measurements(&tampered).is_err());
        let bytes = tampered.to_bytes().unwrap();
        assert!(matches!(
            crate::image::unpack(&bytes),
            Err(crate::image::ImageError::Signature(_))
        ));
    }

    #[test]
    fn ca_on_disk_gives_a_signing_identity() {
        let dir = std::env::temp_dir().join(format!("enclave-ca-attest-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Ca::init(&dir).unwrap();
        let a = Attestation::deferred("enc-0000000000000002", true, &dir);
        let _ = std::fs::remove_dir_all(&dir);
        assert!(a.available(), "{}", a.status());
        assert_eq!(a.status(), AVAILABLE);
        assert_eq!(a.pcr4(), host_identity());
    }
}
