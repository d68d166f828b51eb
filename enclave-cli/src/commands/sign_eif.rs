//! `enclave sign-eif`: adds (or replaces) an EIF's signature section, as AWS's eif_signer, and
//! prints the measurements with PCR8. Also the signing helpers `build-enclave` uses.

use std::io::Read;
use std::path::Path;

use anyhow::Context;
use attestation::ca::keys::key_from_pem;
use attestation::eif::{Eif, MAX_EIF_SIZE};
use attestation::pcr::Measurements;
use attestation::signing::sign_eif;
use p384::ecdsa::SigningKey;

use crate::args::SignEifArgs;

/// Largest certificate or key file read.
const MAX_KEY_FILE: u64 = 64 * 1024;

fn read_small(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_KEY_FILE).read_to_end(&mut bytes))
        .with_context(|| format!("Cannot read {what} {}: check the path", path.display()))?;
    Ok(bytes)
}

/// Reads a signing certificate (PEM or DER) and its P-384 private key (PEM).
pub fn load_signer(cert: &Path, key: &Path) -> anyhow::Result<(Vec<u8>, SigningKey)> {
    let cert_bytes = read_small(cert, "--signing-certificate")?;
    let key_text = String::from_utf8(read_small(key, "--private-key")?)
        .ok()
        .and_then(|t| key_from_pem(&t))
        .with_context(|| {
            format!(
                "--private-key {} is not a P-384 private key in PEM (PKCS#8 or SEC1 \"EC PRIVATE KEY\")",
                key.display()
            )
        })?;
    Ok((cert_bytes, key_text))
}

/// Signs encoded EIF bytes; returns the signed bytes and measurements with PCR8.
pub fn sign_image(
    eif_bytes: &[u8],
    cert: &[u8],
    key: &SigningKey,
) -> anyhow::Result<(Vec<u8>, Measurements)> {
    let eif = Eif::parse(eif_bytes).context("The image is not a valid EIF")?;
    let (signed, pcr8) = sign_eif(&eif, cert, key).context("Cannot sign the image")?;
    let bytes = signed
        .to_bytes()
        .context("Cannot encode the signed image")?;
    let mut measurements = Measurements::of(&signed);
    measurements.pcr8 = Some(pcr8);
    Ok((bytes, measurements))
}

/// Reads an EIF file, bounded by the EIF size limit.
pub fn read_eif(path: &Path) -> anyhow::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| {
            f.take(MAX_EIF_SIZE.saturating_add(1))
                .read_to_end(&mut bytes)
        })
        .with_context(|| format!("Cannot read --eif-path {}: check the path", path.display()))?;
    Ok(bytes)
}

/// Runs `sign-eif`.
pub fn run(a: &SignEifArgs, _json: bool) -> anyhow::Result<i32> {
    let bytes = read_eif(&a.eif_path)?;
    let (cert, key) = load_signer(&a.signing_certificate, &a.private_key)?;
    let (signed, measurements) = sign_image(&bytes, &cert, &key)
        .with_context(|| format!("Cannot sign {}", a.eif_path.display()))?;
    let out = a.output_file.as_ref().unwrap_or(&a.eif_path);
    super::build::write_atomically(out, &signed)?;
    crate::output::print_json(&serde_json::json!({
        "Measurements": measurements.to_json(),
        "OutputFile": out,
    }))?;
    Ok(0)
}
