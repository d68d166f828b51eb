//! `enclave verify-attestation`: verifies a document against a pinned root and a policy built
//! from the flags; prints the verified fields as JSON, or the failed check and exits 1.

use std::io::Read;
use std::time::Duration;

use anyhow::Context;
use attestation::ca::keys::cert_from_pem_or_der;
use attestation::document::MAX_DOCUMENT_SIZE;
use attestation::verify::{verify, Policy, VerifiedDocument};
use x509_cert::der::Encode;

use crate::args::VerifyAttestationArgs;

/// Parses `N=HEX`.
fn parse_pcr(spec: &str) -> anyhow::Result<(u16, Vec<u8>)> {
    let (n, hex_value) = spec
        .split_once('=')
        .with_context(|| format!("--pcr {spec:?} is not N=HEX: write e.g. --pcr 0=ab12…"))?;
    let index: u16 = n
        .trim()
        .parse()
        .ok()
        .filter(|i| *i < 32)
        .with_context(|| format!("--pcr {spec:?}: the index must be 0-31"))?;
    let value = hex::decode(hex_value.trim())
        .with_context(|| format!("--pcr {spec:?}: the value is not hex"))?;
    anyhow::ensure!(
        value.len() == 48,
        "--pcr {spec:?}: a PCR is 48 bytes (96 hex digits), got {}",
        value.len()
    );
    Ok((index, value))
}

fn policy(a: &VerifyAttestationArgs) -> anyhow::Result<Policy> {
    let root_bytes = std::fs::read(&a.root).with_context(|| {
        format!(
            "Cannot read --root {}: give the CA's root.pem",
            a.root.display()
        )
    })?;
    let root = cert_from_pem_or_der(&root_bytes)
        .map_err(anyhow::Error::msg)
        .and_then(|c| c.to_der().map_err(anyhow::Error::from))
        .with_context(|| {
            format!(
                "--root {} is not a certificate (PEM or DER)",
                a.root.display()
            )
        })?;
    let mut p = Policy::new(root)
        .with_max_age((a.max_age > 0).then(|| Duration::from_secs(a.max_age)))
        .allow_debug(a.allow_debug);
    if let Some(n) = &a.nonce {
        p = p.expect_nonce(hex::decode(n.trim()).context("--nonce is not hex")?);
    }
    for spec in &a.pcrs {
        let (i, v) = parse_pcr(spec)?;
        p = p.expect_pcr(i, v);
    }
    Ok(p)
}

fn opt_hex(v: Option<&Vec<u8>>) -> serde_json::Value {
    v.map_or(serde_json::Value::Null, |b| hex::encode(b).into())
}

fn report(v: &VerifiedDocument) -> serde_json::Value {
    let d = &v.document;
    let pcrs: serde_json::Map<String, serde_json::Value> = d
        .pcrs
        .iter()
        .map(|(i, p)| (i.to_string(), hex::encode(p).into()))
        .collect();
    serde_json::json!({
        "Verified": true,
        "ModuleId": d.module_id,
        "Digest": d.digest,
        "Timestamp": d.timestamp,
        "Debug": v.debug,
        "PCRs": pcrs,
        "PublicKey": opt_hex(d.public_key.as_ref()),
        "UserData": opt_hex(d.user_data.as_ref()),
        "Nonce": opt_hex(d.nonce.as_ref()),
        "Certificate": hex::encode(&d.certificate),
    })
}

/// Runs `verify-attestation`.
pub fn run(a: &VerifyAttestationArgs, _json: bool) -> anyhow::Result<i32> {
    let policy = policy(a)?;
    let mut document = Vec::new();
    std::fs::File::open(&a.document)
        .and_then(|f| {
            f.take(
                u64::try_from(MAX_DOCUMENT_SIZE)
                    .unwrap_or(u64::MAX)
                    .saturating_add(1),
            )
            .read_to_end(&mut document)
        })
        .with_context(|| format!("Cannot read --document {}", a.document.display()))?;
    match verify(&document, &policy) {
        Ok(v) => {
            crate::output::print_json(&report(&v))?;
            Ok(0)
        }
        Err(e) => {
            let causes: Vec<String> =
                std::iter::successors(std::error::Error::source(&e), |c| c.source())
                    .map(ToString::to_string)
                    .collect();
            crate::output::print_json(&serde_json::json!({
                "Verified": false,
                "Error": e.to_string(),
                "Causes": causes,
                "Check": format!("{e:?}").split(['(', ' ', '{']).next().unwrap_or_default(),
            }))?;
            Ok(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcr_specs() {
        let hex48 = "ab".repeat(48);
        assert_eq!(parse_pcr(&format!("8={hex48}")).unwrap().0, 8);
        assert!(parse_pcr(&format!("32={hex48}")).is_err());
        assert!(parse_pcr("0=abcd").is_err());
        assert!(parse_pcr("0").is_err());
        assert!(parse_pcr("x=00").is_err());
    }

    #[test]
    fn verifies_a_document_from_a_ca_on_disk() {
        use attestation::ca::{Ca, LeafAttester};
        use attestation::nsm::Attester;
        let dir = std::env::temp_dir().join(format!("enclave-cli-verify-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let ca = Ca::init(&dir).unwrap();
        let leaf = ca.issue_leaf("enc-1", Duration::from_secs(60)).unwrap();
        let att = LeafAttester::new(leaf, "enc-1", false);
        let pcrs = [(0u16, [7u8; 48])].into_iter().collect();
        let doc = att.attest(&pcrs, None, Some(b"\x01\x02"), None).unwrap();
        let doc_path = dir.join("doc.cbor");
        std::fs::write(&doc_path, &doc).unwrap();
        let mut args = VerifyAttestationArgs {
            document: doc_path.clone(),
            root: dir.join(attestation::ca::ROOT_CERT),
            pcrs: vec![format!("0={}", "07".repeat(48))],
            nonce: Some("0102".into()),
            max_age: 60,
            allow_debug: false,
        };
        assert_eq!(run(&args, true).unwrap(), 0);
        args.nonce = Some("0103".into());
        assert_eq!(run(&args, true).unwrap(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
