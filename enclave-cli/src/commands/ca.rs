//! `enclave ca init [--dir D]`: creates the local attestation CA (P-384 root and host
//! intermediate) and prints where it is and the root's fingerprint.

use anyhow::Context;
use attestation::ca::{self, Ca};
use sha2::{Digest, Sha384};

use crate::args::{CaAction, CaArgs};

/// Runs `ca`.
pub fn run(a: &CaArgs, _json: bool) -> anyhow::Result<i32> {
    match &a.action {
        CaAction::Init { dir } => {
            let dir = dir.clone().unwrap_or_else(ca::default_dir);
            let created = Ca::init(&dir)
                .with_context(|| format!("Cannot create the CA in {}", dir.display()))?;
            crate::output::print_json(&serde_json::json!({
                "Directory": dir,
                "RootCertificate": dir.join(ca::ROOT_CERT),
                "RootKey": dir.join(ca::ROOT_KEY),
                "IntermediateCertificate": dir.join(ca::INTERMEDIATE_CERT),
                "IntermediateKey": dir.join(ca::INTERMEDIATE_KEY),
                "RootSha384": hex::encode(Sha384::digest(created.root_der())),
                "Note": format!(
                    "Give {} to verifiers (verify-attestation --root). {} is needed only to \
                     issue a new intermediate: move it off this host.",
                    ca::ROOT_CERT,
                    ca::ROOT_KEY
                ),
            }))?;
            Ok(0)
        }
    }
}
