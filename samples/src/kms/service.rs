//! The key service's decisions: one request in, one reply out, every decision audited.
//! Release to a recipient requires, in order: a document that `attestation::verify` accepts
//! under the key's policy (root, age, debug), PCRs on the policy's allow-lists, a nonce this
//! service issued and nobody used, and a valid P-384 `public_key` to seal the key to.

use std::time::{Duration, Instant};

use attestation::document::AttestationDocument;
use serde_json::Value;

use super::audit::{rfc3339, AuditLog, AuditRecord, Decision};
use super::crypto;
use super::nonce::Nonces;
use super::policy::error_chain;
use super::protocol::{
    Bytes, DecryptResponse, EncryptResponse, ErrorBody, ErrorCode, ErrorReply,
    GenerateDataKeyResponse, NonceResponse, Recipient, Request, KEY_ENCRYPTION_ALGORITHM,
    MAX_PLAINTEXT,
};
use super::recipient;
use super::store::{Keyring, LiveKey};

/// Largest `NumberOfBytes` of GenerateDataKey, as AWS KMS.
pub const MAX_DATA_KEY_BYTES: u32 = 1024;

/// The key service: keys, nonces and the audit log.
#[derive(Debug)]
pub struct Service {
    keys: Keyring,
    nonces: Nonces,
    audit: AuditLog,
}

/// What a decision is about, for the audit line.
#[derive(Default)]
struct Facts {
    key_id: Option<String>,
    module_id: Option<String>,
    pcr0: Option<String>,
    verify: Option<Duration>,
}

type Outcome = Result<(Value, String), ErrorBody>;

fn deny(code: ErrorCode, message: impl Into<String>) -> ErrorBody {
    ErrorBody::new(code, message)
}

fn internal(e: &dyn std::error::Error) -> ErrorBody {
    deny(ErrorCode::InternalError, error_chain(e))
}

fn json<T: serde::Serialize>(v: &T) -> Result<Value, ErrorBody> {
    serde_json::to_value(v).map_err(|e| internal(&e))
}

impl Service {
    /// A service over `keys`, logging to `audit`.
    pub fn new(keys: Keyring, nonces: Nonces, audit: AuditLog) -> Self {
        Self {
            keys,
            nonces,
            audit,
        }
    }

    /// The keyring.
    pub fn keyring(&self) -> &Keyring {
        &self.keys
    }

    /// The outstanding nonces.
    pub fn nonces(&self) -> &Nonces {
        &self.nonces
    }

    /// Serves one request from `peer`; the reply is the JSON object to send.
    pub fn handle(&self, request: &Request, peer: &str) -> Value {
        let mut facts = Facts::default();
        let outcome = match request {
            Request::GetNonce => self.get_nonce(),
            Request::Encrypt { key_id, plaintext } => {
                facts.key_id = Some(key_id.clone());
                self.encrypt(key_id, &plaintext.0)
            }
            Request::GenerateDataKey {
                key_id,
                number_of_bytes,
                recipient,
            } => {
                facts.key_id = Some(key_id.clone());
                self.generate_data_key(key_id, *number_of_bytes, recipient, &mut facts)
            }
            Request::Decrypt {
                ciphertext_blob,
                key_id,
                recipient,
            } => {
                facts.key_id.clone_from(key_id);
                self.decrypt(&ciphertext_blob.0, key_id.as_deref(), recipient, &mut facts)
            }
        };
        let (decision, reason, reply) = match outcome {
            Ok((value, reason)) => (Decision::Allow, reason, value),
            Err(error) => {
                let reason = error.to_string();
                let reply = serde_json::to_value(ErrorReply { error })
                    .unwrap_or_else(|_| Value::String(reason.clone()));
                (Decision::Deny, reason, reply)
            }
        };
        // Nonces are not decisions about keys: not audited.
        if !matches!(request, Request::GetNonce) || decision == Decision::Deny {
            self.audit(request.action(), decision, reason, facts, peer);
        }
        reply
    }

    /// Audits a request refused before it could be parsed.
    pub fn refuse_unparsed(&self, error: &ErrorBody, peer: &str) -> Value {
        self.audit(
            "Invalid",
            Decision::Deny,
            error.to_string(),
            Facts::default(),
            peer,
        );
        serde_json::to_value(ErrorReply {
            error: error.clone(),
        })
        .unwrap_or(Value::Null)
    }

    fn audit(&self, action: &str, decision: Decision, reason: String, facts: Facts, peer: &str) {
        let record = AuditRecord {
            time: rfc3339(std::time::SystemTime::now()),
            action: action.to_owned(),
            key_id: facts.key_id,
            decision,
            reason,
            module_id: facts.module_id,
            pcr0: facts.pcr0,
            peer: peer.to_owned(),
            verify_micros: facts
                .verify
                .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
        };
        match decision {
            Decision::Allow => tracing::info!(action, key = ?record.key_id, peer, "allow"),
            Decision::Deny => {
                tracing::warn!(action, key = ?record.key_id, peer, reason = %record.reason, "deny");
            }
        }
        if let Err(e) = self.audit.record(&record) {
            tracing::error!("{}", error_chain(&e));
        }
    }

    fn key(&self, key_id: &str) -> Result<LiveKey, ErrorBody> {
        self.keys
            .key(key_id)
            .map_err(|e| internal(&e))?
            .ok_or_else(|| {
                deny(
                    ErrorCode::NotFoundException,
                    format!("no key named {key_id:?} in this key service"),
                )
            })
    }

    fn get_nonce(&self) -> Outcome {
        let nonce = self.nonces.issue().map_err(|e| internal(&e))?;
        Ok((
            json(&NonceResponse {
                nonce: Bytes(nonce.to_vec()),
            })?,
            "nonce issued".into(),
        ))
    }

    fn encrypt(&self, key_id: &str, plaintext: &[u8]) -> Outcome {
        if plaintext.len() > MAX_PLAINTEXT {
            return Err(deny(
                ErrorCode::ValidationException,
                format!(
                    "Plaintext is {} bytes, at most {MAX_PLAINTEXT} may be encrypted directly: encrypt a data key instead",
                    plaintext.len()
                ),
            ));
        }
        let key = self.key(key_id)?;
        let blob = crypto::seal_blob(&key.material, key_id, plaintext).map_err(|e| internal(&e))?;
        Ok((
            json(&EncryptResponse {
                key_id: key_id.to_owned(),
                ciphertext_blob: Bytes(blob),
            })?,
            format!("sealed {} bytes", plaintext.len()),
        ))
    }

    /// Checks the recipient's document against `key`'s policy and returns its public key.
    fn admit(
        &self,
        key: &LiveKey,
        recipient: &Recipient,
        facts: &mut Facts,
    ) -> Result<Vec<u8>, ErrorBody> {
        if recipient.key_encryption_algorithm != KEY_ENCRYPTION_ALGORITHM {
            return Err(deny(
                ErrorCode::ValidationException,
                format!(
                    "KeyEncryptionAlgorithm {:?} is not supported: use {KEY_ENCRYPTION_ALGORITHM}",
                    recipient.key_encryption_algorithm
                ),
            ));
        }
        let document = &recipient.attestation_document.0;
        // Identify the document for the audit line before judging it.
        if let Ok(sign1) =
            attestation::cose::parse(document, attestation::document::MAX_DOCUMENT_SIZE)
        {
            if let Ok(doc) = AttestationDocument::from_cbor(sign1.payload()) {
                facts.module_id = Some(doc.module_id.clone());
                facts.pcr0 = doc.pcrs.get(&0).map(hex::encode);
            }
        }
        let started = Instant::now();
        let verified = key.compiled.check(document);
        facts.verify = Some(started.elapsed());
        let verified =
            verified.map_err(|e| deny(ErrorCode::AccessDeniedException, e.to_string()))?;
        self.nonces
            .consume(verified.document.nonce.as_deref())
            .map_err(|e| deny(ErrorCode::AccessDeniedException, e.to_string()))?;
        let public_key = verified.document.public_key.ok_or_else(|| {
            deny(
                ErrorCode::AccessDeniedException,
                "document has no public_key: the enclave must put its P-384 HPKE public key (SEC1 uncompressed, 97 bytes) in the attestation request",
            )
        })?;
        recipient::check_public_key(&public_key).map_err(|e| {
            deny(
                ErrorCode::AccessDeniedException,
                format!("document's public_key is unusable: {e}"),
            )
        })?;
        facts.verify = Some(started.elapsed());
        Ok(public_key)
    }

    fn generate_data_key(
        &self,
        key_id: &str,
        n: u32,
        recipient: &Recipient,
        facts: &mut Facts,
    ) -> Outcome {
        if n == 0 || n > MAX_DATA_KEY_BYTES {
            return Err(deny(
                ErrorCode::ValidationException,
                format!("NumberOfBytes is {n}; it must be 1 to {MAX_DATA_KEY_BYTES}"),
            ));
        }
        let key = self.key(key_id)?;
        let public_key = self.admit(&key, recipient, facts)?;
        let len = usize::try_from(n).map_err(|e| internal(&e))?;
        let data_key = crypto::random_bytes(len).map_err(|e| internal(&e))?;
        let blob = crypto::seal_blob(&key.material, key_id, &data_key).map_err(|e| internal(&e))?;
        let sealed = recipient::seal(&public_key, key_id, &data_key).map_err(|e| internal(&e))?;
        Ok((
            json(&GenerateDataKeyResponse {
                key_id: key_id.to_owned(),
                ciphertext_blob: Bytes(blob),
                ciphertext_for_recipient: Bytes(sealed),
            })?,
            format!("released a new {n}-byte data key to the attested enclave"),
        ))
    }

    fn decrypt(
        &self,
        blob: &[u8],
        want: Option<&str>,
        recipient: &Recipient,
        facts: &mut Facts,
    ) -> Outcome {
        let parts = crypto::parse_blob(blob)
            .map_err(|e| deny(ErrorCode::InvalidCiphertextException, e.to_string()))?;
        facts.key_id = Some(parts.key_id.clone());
        if let Some(want) = want {
            if want != parts.key_id {
                return Err(deny(
                    ErrorCode::InvalidCiphertextException,
                    format!(
                        "CiphertextBlob is sealed under key {:?}, not the requested {want:?}",
                        parts.key_id
                    ),
                ));
            }
        }
        let key = self.key(&parts.key_id)?;
        let public_key = self.admit(&key, recipient, facts)?;
        let plaintext = crypto::open_blob(&key.material, &parts)
            .map_err(|e| deny(ErrorCode::InvalidCiphertextException, e.to_string()))?;
        let sealed =
            recipient::seal(&public_key, &parts.key_id, &plaintext).map_err(|e| internal(&e))?;
        Ok((
            json(&DecryptResponse {
                key_id: parts.key_id.clone(),
                ciphertext_for_recipient: Bytes(sealed),
            })?,
            format!("released {} bytes to the attested enclave", plaintext.len()),
        ))
    }
}
