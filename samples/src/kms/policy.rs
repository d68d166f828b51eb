//! Key policies: which attested enclaves may receive a key. JSON
//! `{"Pcrs":{"0":["<hex>",…],…},"RootCertificate":"<PEM>","AllowDebug":false,"MaxDocumentAgeSecs":300}`;
//! any PCR index may be listed with its allowed values (absent = any value). A document passes
//! when `attestation::verify` accepts it against the pinned root, age and debug setting and
//! every listed PCR holds one of its allowed values.

use std::collections::BTreeMap;
use std::time::Duration;

use attestation::verify::VerifiedDocument;
use serde::{Deserialize, Serialize};

/// Default `MaxDocumentAgeSecs`.
pub const DEFAULT_MAX_AGE_SECS: u64 = 300;
/// Highest PCR index.
pub const MAX_PCR_INDEX: u16 = 31;
/// Length of a PCR value, bytes.
pub const PCR_LEN: usize = 48;

fn default_max_age() -> u64 {
    DEFAULT_MAX_AGE_SECS
}

/// A key policy as stored and written by users.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct KeyPolicy {
    /// PCR index → allowed values (hex of 48 bytes).
    #[serde(default)]
    pub pcrs: BTreeMap<u16, Vec<String>>,
    /// PEM of the pinned root certificate.
    pub root_certificate: String,
    /// Whether debug-mode documents (PCR0/1/2/8 zero) are acceptable.
    #[serde(default)]
    pub allow_debug: bool,
    /// Maximum document age, seconds.
    #[serde(default = "default_max_age")]
    pub max_document_age_secs: u64,
}

/// Why a policy is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// Not valid JSON of the format.
    #[error("Key policy is not valid JSON of the policy format: {0}")]
    Json(String),
    /// The root certificate cannot be read.
    #[error("Key policy's RootCertificate is not a PEM or DER certificate: {0}")]
    Root(String),
    /// PCR index out of range.
    #[error("Key policy lists PCR{0}; PCR indexes go from 0 to {MAX_PCR_INDEX}")]
    PcrIndex(u16),
    /// PCR value malformed.
    #[error("Key policy's PCR{index} value {value:?} is not {PCR_LEN} bytes of hex")]
    PcrValue {
        /// PCR index.
        index: u16,
        /// The value.
        value: String,
    },
    /// A PCR with no allowed value would refuse everything.
    #[error("Key policy lists PCR{0} with no allowed value: remove it to allow any value")]
    PcrEmpty(u16),
}

/// A policy ready to check documents (the verifier keeps its chain cache between checks).
#[derive(Clone, Debug)]
pub struct CompiledPolicy {
    pcrs: BTreeMap<u16, Vec<Vec<u8>>>,
    max_age_secs: u64,
    verifier: attestation::Policy,
}

/// Why a document does not satisfy a policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyDenied {
    /// `attestation::verify` refused it.
    #[error("{0}")]
    Verify(String),
    /// A listed PCR is missing.
    #[error("Document has no PCR{0}, which the key policy requires")]
    PcrMissing(u16),
    /// A listed PCR has another value.
    #[error("PCR{index} is {actual}, the policy expects {}", allowed_text(.allowed))]
    PcrNotAllowed {
        /// Index.
        index: u16,
        /// Value in the document, hex.
        actual: String,
        /// Allowed values, hex.
        allowed: Vec<String>,
    },
}

fn allowed_text(allowed: &[String]) -> String {
    match allowed {
        [one] => one.clone(),
        many => format!("one of {}", many.join(", ")),
    }
}

/// The whole chain of an error's messages, joined with ": ".
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn verify_message(e: &attestation::VerifyError, max_age_secs: u64) -> String {
    match e {
        attestation::VerifyError::Stale { age_ms, .. } => format!(
            "document is {} s old, key policy allows {max_age_secs} s: request a fresh one",
            age_ms / 1000
        ),
        other => error_chain(other),
    }
}

impl KeyPolicy {
    /// A policy pinning `root_pem` and the PCRs named `PCR<n>` in `measurements`: either the
    /// `{"Measurements": {...}}` that `enclave build-enclave`/`describe-eif` print, or the
    /// inner object itself. Each PCR gets its one value as the only allowed one.
    pub fn from_measurements(
        measurements: &serde_json::Value,
        root_pem: &str,
    ) -> Result<Self, PolicyError> {
        let m = measurements.get("Measurements").unwrap_or(measurements);
        let obj = m
            .as_object()
            .ok_or_else(|| PolicyError::Json("measurements are not a JSON object".into()))?;
        let mut pcrs = BTreeMap::new();
        for (name, value) in obj {
            let Some(index) = name.strip_prefix("PCR").and_then(|i| i.parse::<u16>().ok()) else {
                continue;
            };
            let value = value.as_str().ok_or_else(|| PolicyError::PcrValue {
                index,
                value: value.to_string(),
            })?;
            pcrs.insert(index, vec![value.to_owned()]);
        }
        if pcrs.is_empty() {
            return Err(PolicyError::Json(
                "no PCR<n> fields in the measurements: pass the JSON that build-enclave or describe-eif printed".into(),
            ));
        }
        let policy = Self {
            pcrs,
            root_certificate: root_pem.to_owned(),
            allow_debug: false,
            max_document_age_secs: DEFAULT_MAX_AGE_SECS,
        };
        policy.compile()?;
        Ok(policy)
    }

    /// Parses a policy file's text.
    pub fn from_json(text: &str) -> Result<Self, PolicyError> {
        serde_json::from_str(text).map_err(|e| PolicyError::Json(e.to_string()))
    }

    /// Checks every field and prepares the verifier.
    pub fn compile(&self) -> Result<CompiledPolicy, PolicyError> {
        let cert = attestation::ca::keys::cert_from_pem_or_der(self.root_certificate.as_bytes())
            .map_err(PolicyError::Root)?;
        let root_der = attestation::ca::keys::cert_to_der(&cert)
            .map_err(|e| PolicyError::Root(error_chain(&e)))?;
        let mut pcrs = BTreeMap::new();
        for (&index, values) in &self.pcrs {
            if index > MAX_PCR_INDEX {
                return Err(PolicyError::PcrIndex(index));
            }
            if values.is_empty() {
                return Err(PolicyError::PcrEmpty(index));
            }
            let mut allowed = Vec::new();
            for value in values {
                let bytes = hex::decode(value.trim())
                    .ok()
                    .filter(|b| b.len() == PCR_LEN)
                    .ok_or_else(|| PolicyError::PcrValue {
                        index,
                        value: value.clone(),
                    })?;
                allowed.push(bytes);
            }
            pcrs.insert(index, allowed);
        }
        let verifier = attestation::Policy::new(root_der)
            .with_max_age(Some(Duration::from_secs(self.max_document_age_secs)))
            .allow_debug(self.allow_debug);
        Ok(CompiledPolicy {
            pcrs,
            max_age_secs: self.max_document_age_secs,
            verifier,
        })
    }
}

impl CompiledPolicy {
    /// Verifies `document` (signature, chain to the pinned root, age, debug) and the PCR
    /// allow-lists. Nonce and public key are checked by the caller.
    pub fn check(&self, document: &[u8]) -> Result<VerifiedDocument, PolicyDenied> {
        let verified = attestation::verify(document, &self.verifier)
            .map_err(|e| PolicyDenied::Verify(verify_message(&e, self.max_age_secs)))?;
        for (index, allowed) in &self.pcrs {
            let actual = verified
                .document
                .pcrs
                .get(index)
                .ok_or(PolicyDenied::PcrMissing(*index))?;
            if !allowed.iter().any(|a| a == actual) {
                return Err(PolicyDenied::PcrNotAllowed {
                    index: *index,
                    actual: hex::encode(actual),
                    allowed: allowed.iter().map(hex::encode).collect(),
                });
            }
        }
        Ok(verified)
    }

    /// Whether PCR `index` is restricted by this policy.
    pub fn restricts_pcr(&self, index: u16) -> bool {
        self.pcrs.contains_key(&index)
    }

    /// The pinned root, DER.
    pub fn root_der(&self) -> &[u8] {
        self.verifier.root_der()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root_pem() -> String {
        let ca = attestation::ca::Ca::generate().unwrap();
        attestation::ca::keys::cert_to_pem(&ca.root).unwrap()
    }

    #[test]
    fn policies_parse_with_defaults_and_round_trip() {
        let pem = root_pem();
        let text = serde_json::json!({
            "Pcrs": {"0": ["AB".repeat(48)], "16": ["00".repeat(48), "11".repeat(48)]},
            "RootCertificate": pem,
        })
        .to_string();
        let p = KeyPolicy::from_json(&text).unwrap();
        assert!(!p.allow_debug);
        assert_eq!(p.max_document_age_secs, DEFAULT_MAX_AGE_SECS);
        let c = p.compile().unwrap();
        assert!(c.restricts_pcr(0) && c.restricts_pcr(16) && !c.restricts_pcr(1));
        let again = KeyPolicy::from_json(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!(again, p);
    }

    #[test]
    fn bad_policies_name_their_fault() {
        let pem = root_pem();
        let policy = |pcrs: serde_json::Value, root: &str| {
            KeyPolicy::from_json(
                &serde_json::json!({"Pcrs": pcrs, "RootCertificate": root}).to_string(),
            )
            .and_then(|p| p.compile().map(|_| ()))
        };
        let v = "ab".repeat(48);
        assert!(matches!(
            policy(serde_json::json!({"0": [v]}), "junk"),
            Err(PolicyError::Root(_))
        ));
        assert_eq!(
            policy(serde_json::json!({"32": [v]}), &pem),
            Err(PolicyError::PcrIndex(32))
        );
        assert_eq!(
            policy(serde_json::json!({"1": []}), &pem),
            Err(PolicyError::PcrEmpty(1))
        );
        assert!(matches!(
            policy(serde_json::json!({"2": ["abcd"]}), &pem),
            Err(PolicyError::PcrValue { index: 2, .. })
        ));
        assert!(matches!(
            KeyPolicy::from_json(r#"{"RootCertificate":"x","Extra":1}"#),
            Err(PolicyError::Json(_))
        ));
    }

    #[test]
    fn templates_come_from_build_enclave_output() {
        let pem = root_pem();
        let out = serde_json::json!({"Measurements": {
            "HashAlgorithm": "Sha384 { ... }",
            "PCR0": "01".repeat(48), "PCR1": "02".repeat(48), "PCR2": "03".repeat(48),
            "PCR8": "08".repeat(48)
        }});
        let p = KeyPolicy::from_measurements(&out, &pem).unwrap();
        assert_eq!(p.pcrs.keys().copied().collect::<Vec<_>>(), [0, 1, 2, 8]);
        assert_eq!(p.pcrs[&8], vec!["08".repeat(48)]);
        let inner = KeyPolicy::from_measurements(&out["Measurements"], &pem).unwrap();
        assert_eq!(inner, p);
        assert!(KeyPolicy::from_measurements(&serde_json::json!({"X": 1}), &pem).is_err());
    }
}
