//! The attestation and key-release harness: everything a test needs to check that a secret
//! reaches an enclave only after it proves what it is. [`KmsHarness::new`] builds the
//! binaries and the `kms-enclave` program, carves a pool, makes a private CA, starts the key
//! service and `vsock-proxy`, packs the reference image and creates a key pinned to its PCR0.
//! Tests then launch enclaves from EIFs, fetch their attestation documents, verify them with
//! a [`attestation::Policy`], and inject faults: tampered images, other signers, debug mode,
//! expired chains, enclaves killed mid-request, key-service restarts.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use attestation::ca::{cert, keys};
use samples::scenario::{build_kms_enclave, Bins, Image, ScenarioError, World, WorldOptions};
use sdk::EnclaveHandle;
use serde_json::Value;

pub use samples::scenario::{AppClient, ReleaseTimings};

/// The key every harness creates.
pub const KEY_ID: &str = "harness-key";
/// The message the harness's envelope holds.
pub const MESSAGE: &[u8] = b"harness secret: released only to the pinned image";

/// A KMS world with the reference image and a key pinned to it.
#[derive(Debug)]
pub struct KmsHarness {
    /// The world (pool, CA, services).
    pub world: World,
    /// The static `kms-enclave` program.
    pub program: PathBuf,
    /// The reference image; the key's policy pins its PCR0.
    pub image: Image,
    /// An envelope of [`MESSAGE`] under [`KEY_ID`].
    pub envelope: Value,
}

/// A signing identity for EIFs: certificate and key files.
#[derive(Debug, Clone)]
pub struct Signer {
    /// PEM certificate.
    pub certificate: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// The certificate, DER (PCR8 is computed over it).
    pub der: Vec<u8>,
}

fn harness_err(e: impl std::fmt::Display) -> ScenarioError {
    ScenarioError::Build {
        what: "the harness fixture".into(),
        reason: e.to_string(),
    }
}

impl KmsHarness {
    /// Sets everything up (see the module comment). Holds the host pool lock while alive.
    pub fn new() -> Result<Self, ScenarioError> {
        Self::with_options(|_| {})
    }

    /// As [`KmsHarness::new`], after `adjust` changed the world's options.
    pub fn with_options(adjust: impl FnOnce(&mut WorldOptions)) -> Result<Self, ScenarioError> {
        let bins = Bins::build(&crate::paths::target_dir(), crate::paths::is_release())?;
        let program = build_kms_enclave()?;
        let mut options = WorldOptions::new(bins);
        adjust(&mut options);
        let mut world = World::new(options)?;
        world.ensure_ca()?;
        let image = build_variant(&world, &program, "reference", b'1')?;
        world.start_kms()?;
        world.start_proxy()?;
        world.create_key(KEY_ID, &world.policy(&[(0, image.pcr(0))], 300)?)?;
        let envelope = world.encrypt_envelope(KEY_ID, MESSAGE)?;
        Ok(Self {
            world,
            program,
            image,
            envelope,
        })
    }

    /// An image of the same program whose config file differs from the reference in one byte
    /// (`release = <byte>`; the reference has `b'1'`).
    pub fn variant(&self, name: &str, byte: u8) -> Result<Image, ScenarioError> {
        build_variant(&self.world, &self.program, name, byte)
    }

    /// A fresh self-signed signing identity named `cn`.
    pub fn signer(&self, cn: &str) -> Result<Signer, ScenarioError> {
        let key = attestation::ca::generate_key().map_err(harness_err)?;
        let now = SystemTime::now();
        let c = cert::issue(
            cert::CertProfile::leaf(),
            &format!("CN={cn},O=enclave tests"),
            key.verifying_key(),
            None,
            Some(&key),
            now - Duration::from_secs(60),
            now + Duration::from_secs(86_400),
        )
        .map_err(harness_err)?;
        let dir = self.world.dir();
        let certificate = dir.join(format!("{cn}.crt.pem"));
        let key_path = dir.join(format!("{cn}.key.pem"));
        let write = |path: &Path, text: String| {
            std::fs::write(path, text)
                .map_err(ScenarioError::io(format!("write {}", path.display())))
        };
        write(&certificate, keys::cert_to_pem(&c).map_err(harness_err)?)?;
        write(&key_path, keys::key_to_pem(&key).map_err(harness_err)?)?;
        Ok(Signer {
            certificate,
            key: key_path,
            der: keys::cert_to_der(&c).map_err(harness_err)?,
        })
    }

    /// Replaces the world CA's host intermediate with one that expired yesterday (signed by the
    /// same root, same name), so every enclave launched from now on attests with an expired
    /// chain. The root stays: documents still chain to the pinned root, only too late.
    pub fn expire_intermediate(&self) -> Result<(), ScenarioError> {
        let dir = self.world.ca_dir();
        let root_key =
            keys::read_private_key(&dir.join(attestation::ca::ROOT_KEY)).map_err(harness_err)?;
        let (root, _) =
            keys::read_certificate(&dir.join(attestation::ca::ROOT_CERT)).map_err(harness_err)?;
        let key = attestation::ca::generate_key().map_err(harness_err)?;
        let now = SystemTime::now();
        let day = Duration::from_secs(86_400);
        let intermediate = cert::issue(
            cert::CertProfile::intermediate(),
            "CN=enclave host intermediate CA,O=enclave",
            key.verifying_key(),
            Some((&root, &root_key)),
            None,
            now - 2 * day,
            now - day,
        )
        .map_err(harness_err)?;
        let write = |name: &str, text: String| {
            let path = dir.join(name);
            std::fs::write(&path, text)
                .map_err(ScenarioError::io(format!("write {}", path.display())))
        };
        write(
            attestation::ca::INTERMEDIATE_KEY,
            keys::key_to_pem(&key).map_err(harness_err)?,
        )?;
        write(
            attestation::ca::INTERMEDIATE_CERT,
            keys::cert_to_pem(&intermediate).map_err(harness_err)?,
        )
    }

    /// `image` signed by `signer` (enclave sign-eif), written to `<name>.eif`, with its new
    /// measurements (PCR8 included).
    pub fn signed(
        &self,
        image: &Image,
        signer: &Signer,
        name: &str,
    ) -> Result<Image, ScenarioError> {
        let out = self.world.dir().join(format!("{name}.eif"));
        self.world.enclave_cli([
            "sign-eif".as_ref(),
            "--eif-path".as_ref(),
            image.eif.as_os_str(),
            "--signing-certificate".as_ref(),
            signer.certificate.as_os_str(),
            "--private-key".as_ref(),
            signer.key.as_os_str(),
            "--output-file".as_ref(),
            out.as_os_str(),
        ])?;
        let described = self.world.enclave_cli([
            "describe-eif".as_ref(),
            "--eif-path".as_ref(),
            out.as_os_str(),
        ])?;
        let v: Value = serde_json::from_str(&described).map_err(harness_err)?;
        Ok(Image {
            eif: out,
            measurements: v.get("Measurements").cloned().unwrap_or(Value::Null),
        })
    }

    /// Launches `image` (production mode unless `debug`).
    pub fn launch(&self, image: &Image, debug: bool) -> Result<EnclaveHandle, ScenarioError> {
        self.world.launch(image, debug)
    }

    /// The enclave's attestation document for `nonce` (with its ephemeral public key).
    pub fn document(
        &self,
        enclave: &EnclaveHandle,
        nonce: &[u8],
    ) -> Result<Vec<u8>, ScenarioError> {
        self.world.app(enclave)?.attest(nonce)
    }

    /// A verification policy pinned to this harness's CA root, expecting `nonce`.
    pub fn policy(&self, nonce: &[u8]) -> Result<attestation::Policy, ScenarioError> {
        let root = self.world.root_certificate();
        let (_, der) = keys::read_certificate(&root).map_err(harness_err)?;
        Ok(attestation::Policy::new(der).expect_nonce(nonce.to_vec()))
    }

    /// Key release into `enclave` for the harness's envelope.
    pub fn release(&self, enclave: &EnclaveHandle) -> Result<ReleaseTimings, ScenarioError> {
        self.world.app(enclave)?.provision(&self.envelope)
    }

    /// Key release then decryption of the harness's message inside `enclave`.
    pub fn release_and_decrypt(&self, enclave: &EnclaveHandle) -> Result<Vec<u8>, ScenarioError> {
        let mut app = self.world.app(enclave)?;
        app.provision(&self.envelope)?;
        app.decrypt_message(&self.envelope)
    }

    /// The audit entries with `decision` ("Allow"/"Deny").
    pub fn audit_with(&self, decision: &str) -> Result<Vec<Value>, ScenarioError> {
        Ok(self
            .world
            .audit()?
            .into_iter()
            .filter(|e| e.get("Decision").and_then(Value::as_str) == Some(decision))
            .collect())
    }
}

fn build_variant(
    world: &World,
    program: &Path,
    name: &str,
    byte: u8,
) -> Result<Image, ScenarioError> {
    let conf = world.dir().join(format!("{name}.conf"));
    let mut text = b"release = ".to_vec();
    text.push(byte);
    text.push(b'\n');
    std::fs::write(&conf, text).map_err(ScenarioError::io(format!("write {}", conf.display())))?;
    world.build_image(name, program, &[(conf, "/etc/kms-enclave.conf")], &[])
}
