//! The parent's side of the `kms-enclave` program's protocol (JSON lines, `{"Op": …}`), over
//! any byte stream: provision the data key (attestation + key release inside the enclave),
//! decrypt an envelope's message, fetch an attestation document.

use std::io::{BufRead, BufReader, Read, Write};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};

use super::error::ScenarioError;

/// The vsock port `kms-enclave` listens on.
pub const APP_PORT: u32 = 5000;
/// The vsock port on the parent (CID 3) through which `kms-enclave` reaches the key service.
pub const KMS_PORT: u32 = 8000;
/// Longest reply accepted.
const MAX_REPLY: u64 = 1 << 20;
/// How long one request may take (key release includes attestation and a KMS round trip).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Timings `kms-enclave` reports for a key release, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReleaseTimings {
    /// The `/dev/nsm` Attestation request.
    pub attest_us: u64,
    /// The key service round trips (nonce and Decrypt).
    pub kms_us: u64,
    /// The whole `Provision` inside the enclave.
    pub total_us: u64,
}

/// A connection to `kms-enclave`.
#[derive(Debug)]
pub struct AppClient<S: Read + Write> {
    reader: BufReader<S>,
}

fn b64(v: &Value, key: &str) -> Value {
    v.get(key).cloned().unwrap_or(Value::Null)
}

impl<S: Read + Write> AppClient<S> {
    /// Wraps a connected stream.
    pub fn new(stream: S) -> Self {
        Self {
            reader: BufReader::new(stream),
        }
    }

    /// Sends one request and returns the reply object; `{"Error": …}` becomes
    /// [`ScenarioError::Refused`].
    pub fn call(&mut self, request: &Value) -> Result<Value, ScenarioError> {
        let mut line = request.to_string();
        line.push('\n');
        let stream = self.reader.get_mut();
        stream
            .write_all(line.as_bytes())
            .and_then(|()| stream.flush())
            .map_err(ScenarioError::io("send a request to the enclave"))?;
        let mut reply = String::new();
        let n = (&mut self.reader)
            .take(MAX_REPLY)
            .read_line(&mut reply)
            .map_err(ScenarioError::io("read the enclave's reply"))?;
        if n == 0 {
            return Err(ScenarioError::Protocol {
                peer: "kms-enclave".into(),
                detail: "the connection closed before a reply (did the enclave stop?)".into(),
            });
        }
        let v: Value =
            serde_json::from_str(reply.trim_end()).map_err(|e| ScenarioError::Protocol {
                peer: "kms-enclave".into(),
                detail: format!("reply is not JSON ({e}): {}", reply.trim_end()),
            })?;
        if let Some(err) = v.get("Error") {
            let field = |k: &str| err.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
            return Err(ScenarioError::Refused {
                code: field("Code"),
                message: field("Message"),
            });
        }
        Ok(v)
    }

    /// `Provision`: the enclave attests, the key service releases the envelope's data key to
    /// it. Returns the enclave's timings.
    pub fn provision(&mut self, envelope: &Value) -> Result<ReleaseTimings, ScenarioError> {
        let v = self.call(&json!({
            "Op": "Provision",
            "KeyId": b64(envelope, "KeyId"),
            "EncryptedDataKey": b64(envelope, "EncryptedDataKey"),
        }))?;
        if v.get("Released").and_then(Value::as_bool) != Some(true) {
            return Err(ScenarioError::Protocol {
                peer: "kms-enclave".into(),
                detail: format!("Provision reply without \"Released\": true: {v}"),
            });
        }
        let t = v.get("Timings").cloned().unwrap_or(Value::Null);
        let us = |k: &str| t.get(k).and_then(Value::as_u64).unwrap_or(0);
        Ok(ReleaseTimings {
            attest_us: us("AttestMicros"),
            kms_us: us("KmsMicros"),
            total_us: us("TotalMicros"),
        })
    }

    /// `DecryptMessage`: the envelope's message, decrypted inside the enclave.
    pub fn decrypt_message(&mut self, envelope: &Value) -> Result<Vec<u8>, ScenarioError> {
        let v = self.call(&json!({
            "Op": "DecryptMessage",
            "Iv": b64(envelope, "Iv"),
            "Ciphertext": b64(envelope, "Ciphertext"),
        }))?;
        let text = v.get("Plaintext").and_then(Value::as_str).unwrap_or("");
        base64_decode(text).ok_or_else(|| ScenarioError::Protocol {
            peer: "kms-enclave".into(),
            detail: format!("DecryptMessage reply without base64 \"Plaintext\": {v}"),
        })
    }

    /// `Attest`: an attestation document with `nonce` and the enclave's public key.
    pub fn attest(&mut self, nonce: &[u8]) -> Result<Vec<u8>, ScenarioError> {
        let v = self.call(&json!({ "Op": "Attest", "Nonce": base64_encode(nonce) }))?;
        let text = v
            .get("AttestationDocument")
            .and_then(Value::as_str)
            .unwrap_or("");
        base64_decode(text).ok_or_else(|| ScenarioError::Protocol {
            peer: "kms-enclave".into(),
            detail: "Attest reply without a base64 \"AttestationDocument\"".into(),
        })
    }
}

/// Standard, padded base64 (as the protocol carries binary values).
pub fn base64_encode(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// Decodes standard, padded base64; `None` if malformed.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}
