//! The wire protocol of the key service and of the KMS enclave program: JSON lines over a byte
//! stream (one object per line, `\n`-terminated, at most [`MAX_LINE`] bytes). Field names are
//! PascalCase as in AWS KMS; binary values are standard padded base64.
//!
//! Key service requests are tagged by `Action` (`GetNonce`, `Encrypt`, `GenerateDataKey`,
//! `Decrypt`); the enclave program's requests by `Op` (`Provision`, `DecryptMessage`,
//! `Attest`). Any reply may instead be `{"Error":{"Code":…,"Message":…}}`.
//!
//! This file depends only on `serde`, `serde_json` and `base64` (no `crate::` paths): the
//! enclave program includes it with `#[path]`.

use std::fmt;
use std::io::{BufRead, Write};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest accepted line, newline excluded.
pub const MAX_LINE: usize = 1 << 20;
/// The only `KeyEncryptionAlgorithm` of a `Recipient`.
pub const KEY_ENCRYPTION_ALGORITHM: &str = "HPKE_P384_SHA384_AES256GCM";
/// Largest `Encrypt` plaintext, as AWS KMS.
pub const MAX_PLAINTEXT: usize = 4096;

/// Bytes that travel as standard padded base64.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Bytes(pub Vec<u8>);

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Bytes({} bytes)", self.0.len())
    }
}

impl From<Vec<u8>> for Bytes {
    fn from(v: Vec<u8>) -> Self {
        Self(v)
    }
}

impl From<&[u8]> for Bytes {
    fn from(v: &[u8]) -> Self {
        Self(v.to_vec())
    }
}

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD
            .decode(text.as_bytes())
            .map(Bytes)
            .map_err(|e| serde::de::Error::custom(format!("not standard padded base64: {e}")))
    }
}

/// Who receives a released key: an attestation document whose `public_key` is the
/// recipient's P-384 HPKE key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Recipient {
    /// COSE_Sign1 attestation document.
    pub attestation_document: Bytes,
    /// Must be [`KEY_ENCRYPTION_ALGORITHM`].
    pub key_encryption_algorithm: String,
}

impl Recipient {
    /// A recipient with the only supported algorithm.
    pub fn new(document: Vec<u8>) -> Self {
        Self {
            attestation_document: Bytes(document),
            key_encryption_algorithm: KEY_ENCRYPTION_ALGORITHM.to_owned(),
        }
    }
}

/// A key service request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "Action", rename_all_fields = "PascalCase", deny_unknown_fields)]
pub enum Request {
    /// A fresh single-use nonce for an attestation document.
    GetNonce,
    /// Seals data (at most [`MAX_PLAINTEXT`] bytes) under a named key; needs no attestation.
    Encrypt {
        /// Key name.
        key_id: String,
        /// Data to seal.
        plaintext: Bytes,
    },
    /// A fresh data key, sealed under the named key and to the recipient.
    GenerateDataKey {
        /// Key name.
        key_id: String,
        /// Data key length (1..=1024).
        number_of_bytes: u32,
        /// The attested recipient.
        recipient: Recipient,
    },
    /// Opens a `CiphertextBlob` and seals its plaintext to the recipient.
    Decrypt {
        /// What `Encrypt` or `GenerateDataKey` returned.
        ciphertext_blob: Bytes,
        /// If given, the blob must be sealed under this key.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key_id: Option<String>,
        /// The attested recipient.
        recipient: Recipient,
    },
}

impl Request {
    /// The action's name, as on the wire.
    pub fn action(&self) -> &'static str {
        match self {
            Self::GetNonce => "GetNonce",
            Self::Encrypt { .. } => "Encrypt",
            Self::GenerateDataKey { .. } => "GenerateDataKey",
            Self::Decrypt { .. } => "Decrypt",
        }
    }
}

/// Reply to `GetNonce`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NonceResponse {
    /// 32 random bytes, valid once for a limited time.
    pub nonce: Bytes,
}

/// Reply to `Encrypt`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EncryptResponse {
    /// Key name.
    pub key_id: String,
    /// The sealed data.
    pub ciphertext_blob: Bytes,
}

/// Reply to `GenerateDataKey`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GenerateDataKeyResponse {
    /// Key name.
    pub key_id: String,
    /// The data key sealed under the named key (for a later `Decrypt`).
    pub ciphertext_blob: Bytes,
    /// The data key sealed to the recipient: HPKE encapsulated key ‖ AEAD ciphertext.
    pub ciphertext_for_recipient: Bytes,
}

/// Reply to `Decrypt`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DecryptResponse {
    /// The key the blob was sealed under.
    pub key_id: String,
    /// The plaintext sealed to the recipient: HPKE encapsulated key ‖ AEAD ciphertext.
    pub ciphertext_for_recipient: Bytes,
}

/// Error codes, named as AWS KMS names them (plus the enclave program's own).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorCode {
    /// The attestation document or key policy refuses the request.
    AccessDeniedException,
    /// No key of that name.
    NotFoundException,
    /// The ciphertext is malformed, tampered with, or under another key.
    InvalidCiphertextException,
    /// The request is malformed.
    ValidationException,
    /// The service failed.
    InternalError,
    /// Enclave program: the key service could not be reached.
    KmsUnavailableException,
    /// Enclave program: no data key provisioned yet.
    InvalidStateException,
}

impl ErrorCode {
    /// The code as on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AccessDeniedException => "AccessDeniedException",
            Self::NotFoundException => "NotFoundException",
            Self::InvalidCiphertextException => "InvalidCiphertextException",
            Self::ValidationException => "ValidationException",
            Self::InternalError => "InternalError",
            Self::KmsUnavailableException => "KmsUnavailableException",
            Self::InvalidStateException => "InvalidStateException",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The body of an error reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ErrorBody {
    /// What kind of failure.
    pub code: ErrorCode,
    /// Precisely why.
    pub message: String,
}

impl ErrorBody {
    /// An error with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for ErrorBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ErrorBody {}

/// `{"Error": {...}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ErrorReply {
    /// The error.
    pub error: ErrorBody,
}

/// A reply line: the expected response or an error.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Reply<T> {
    /// The request failed.
    Error(ErrorReply),
    /// The request succeeded.
    Ok(T),
}

impl<T> Reply<T> {
    /// As a `Result`.
    pub fn into_result(self) -> Result<T, ErrorBody> {
        match self {
            Self::Error(e) => Err(e.error),
            Self::Ok(v) => Ok(v),
        }
    }
}

/// A request to the KMS enclave program (`Op`-tagged).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "Op", rename_all_fields = "PascalCase", deny_unknown_fields)]
pub enum EnclaveRequest {
    /// Attest to the key service and obtain the data key sealed in `EncryptedDataKey`.
    Provision {
        /// Key the data key is sealed under.
        key_id: String,
        /// `CiphertextBlob` of the data key (an envelope's `EncryptedDataKey`).
        encrypted_data_key: Bytes,
    },
    /// Open a message sealed with the provisioned data key (AES-256-GCM, no AAD).
    DecryptMessage {
        /// 12-byte IV.
        iv: Bytes,
        /// Ciphertext with its tag.
        ciphertext: Bytes,
    },
    /// A document with this nonce, user data and the program's current public key.
    Attest {
        /// Nonce to put in the document.
        nonce: Bytes,
        /// User data to put in the document.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user_data: Option<Bytes>,
    },
}

/// Where a provisioning spent its time, in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Timings {
    /// The NSM Attestation request.
    pub attest_micros: u64,
    /// Connecting to the key service and its GetNonce and Decrypt calls.
    pub kms_micros: u64,
    /// The whole provisioning.
    pub total_micros: u64,
}

/// Reply to `Provision`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ProvisionResponse {
    /// Always true: the key was released to the enclave.
    pub released: bool,
    /// The key the data key was sealed under.
    pub key_id: String,
    /// Where the time went.
    pub timings: Timings,
}

/// Reply to `DecryptMessage`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DecryptMessageResponse {
    /// The opened message.
    pub plaintext: Bytes,
}

/// Reply to `Attest`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AttestResponse {
    /// COSE_Sign1 attestation document.
    pub attestation_document: Bytes,
}

/// An envelope-encrypted message: a data key sealed by the key service and the message
/// sealed with that data key (AES-256-GCM, no AAD).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Envelope {
    /// Key the data key is sealed under.
    pub key_id: String,
    /// `CiphertextBlob` of the data key.
    pub encrypted_data_key: Bytes,
    /// 12-byte IV.
    pub iv: Bytes,
    /// Message ciphertext with its tag.
    pub ciphertext: Bytes,
}

/// One read from a line stream.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A complete line, newline removed.
    Complete(Vec<u8>),
    /// A line over [`MAX_LINE`] bytes; it was read and dropped up to its newline.
    TooLong(usize),
    /// End of stream (a partial last line is dropped).
    Eof,
}

/// Reads one `\n`-terminated line of at most [`MAX_LINE`] bytes.
pub fn read_line<R: BufRead>(reader: &mut R) -> std::io::Result<Line> {
    let mut line = Vec::new();
    let mut total = 0usize;
    loop {
        let buf = match reader.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            return Ok(Line::Eof);
        }
        let (chunk, done) = match buf.iter().position(|b| *b == b'\n') {
            Some(i) => (&buf[..i], Some(i + 1)),
            None => (buf, None),
        };
        total = total.saturating_add(chunk.len());
        if total <= MAX_LINE {
            line.extend_from_slice(chunk);
        } else {
            line = Vec::new();
        }
        let used = done.unwrap_or(chunk.len());
        reader.consume(used);
        if done.is_some() {
            return Ok(if total > MAX_LINE {
                Line::TooLong(total)
            } else {
                Line::Complete(line)
            });
        }
    }
}

/// Writes `message` as one JSON line and flushes.
pub fn write_message<W: Write, T: Serialize>(writer: &mut W, message: &T) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(message).map_err(std::io::Error::other)?;
    line.push(b'\n');
    writer.write_all(&line)?;
    writer.flush()
}

/// Why an exchange failed before a reply could be read.
#[derive(Debug)]
pub enum ExchangeError {
    /// Reading or writing the stream failed.
    Io(std::io::Error),
    /// The peer closed the stream before replying.
    Closed,
    /// The reply is over [`MAX_LINE`] bytes.
    TooLong(usize),
    /// The reply is not the expected JSON.
    BadReply(String),
}

impl fmt::Display for ExchangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "I/O error on the connection: {e}"),
            Self::Closed => f.write_str("The peer closed the connection without replying"),
            Self::TooLong(n) => write!(f, "The reply line is {n} bytes, over {MAX_LINE}"),
            Self::BadReply(e) => write!(f, "The reply is not valid: {e}"),
        }
    }
}

impl std::error::Error for ExchangeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io(e) => Some(e),
            _ => None,
        }
    }
}

/// Sends `request` as a line and reads one reply line as `Reply<T>`.
pub fn exchange<S, Q, T>(
    stream: &mut std::io::BufReader<S>,
    request: &Q,
) -> Result<Reply<T>, ExchangeError>
where
    S: std::io::Read + Write,
    Q: Serialize,
    T: DeserializeOwned,
{
    write_message(stream.get_mut(), request).map_err(ExchangeError::Io)?;
    match read_line(stream).map_err(ExchangeError::Io)? {
        Line::Complete(line) => {
            serde_json::from_slice(&line).map_err(|e| ExchangeError::BadReply(e.to_string()))
        }
        Line::TooLong(n) => Err(ExchangeError::TooLong(n)),
        Line::Eof => Err(ExchangeError::Closed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_use_aws_field_names() {
        let r = Request::Decrypt {
            ciphertext_blob: Bytes(vec![1, 2, 3]),
            key_id: None,
            recipient: Recipient::new(vec![9]),
        };
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(
            text,
            r#"{"Action":"Decrypt","CiphertextBlob":"AQID","Recipient":{"AttestationDocument":"CQ==","KeyEncryptionAlgorithm":"HPKE_P384_SHA384_AES256GCM"}}"#
        );
        assert_eq!(serde_json::from_str::<Request>(&text).unwrap(), r);
        let g: Request = serde_json::from_str(r#"{"Action":"GetNonce"}"#).unwrap();
        assert_eq!(g, Request::GetNonce);
        let p: EnclaveRequest =
            serde_json::from_str(r#"{"Op":"Provision","KeyId":"demo","EncryptedDataKey":"AA=="}"#)
                .unwrap();
        assert_eq!(
            p,
            EnclaveRequest::Provision {
                key_id: "demo".into(),
                encrypted_data_key: Bytes(vec![0])
            }
        );
    }

    #[test]
    fn bad_base64_and_unknown_fields_are_refused() {
        assert!(serde_json::from_str::<Request>(
            r#"{"Action":"Encrypt","KeyId":"k","Plaintext":"not base64!"}"#
        )
        .is_err());
        assert!(serde_json::from_str::<Request>(
            r#"{"Action":"Encrypt","KeyId":"k","Plaintext":"","X":1}"#
        )
        .is_err());
        assert!(serde_json::from_str::<Request>(r#"{"Action":"Explode"}"#).is_err());
    }

    #[test]
    fn replies_parse_as_error_or_value() {
        let e: Reply<NonceResponse> =
            serde_json::from_str(r#"{"Error":{"Code":"AccessDeniedException","Message":"no"}}"#)
                .unwrap();
        assert_eq!(
            e.into_result().unwrap_err(),
            ErrorBody::new(ErrorCode::AccessDeniedException, "no")
        );
        let ok: Reply<NonceResponse> = serde_json::from_str(r#"{"Nonce":"AAE="}"#).unwrap();
        assert_eq!(ok.into_result().unwrap().nonce, Bytes(vec![0, 1]));
    }

    #[test]
    fn lines_are_bounded_and_the_stream_stays_usable() {
        let mut data = vec![b'x'; MAX_LINE + 10];
        data.extend_from_slice(b"\nok\npartial");
        let mut r = std::io::BufReader::with_capacity(4096, data.as_slice());
        assert_eq!(read_line(&mut r).unwrap(), Line::TooLong(MAX_LINE + 10));
        assert_eq!(read_line(&mut r).unwrap(), Line::Complete(b"ok".to_vec()));
        assert_eq!(read_line(&mut r).unwrap(), Line::Eof);
        let exact = [vec![b'y'; MAX_LINE], b"\n".to_vec()].concat();
        let mut r = std::io::BufReader::new(exact.as_slice());
        assert_eq!(
            read_line(&mut r).unwrap(),
            Line::Complete(vec![b'y'; MAX_LINE])
        );
    }

    #[test]
    fn mutated_lines_never_panic_the_parsers() {
        let valid = br#"{"Action":"Decrypt","CiphertextBlob":"AQID","KeyId":"k","Recipient":{"AttestationDocument":"CQ==","KeyEncryptionAlgorithm":"HPKE_P384_SHA384_AES256GCM"}}"#;
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..20_000 {
            let mut line = valid.to_vec();
            for _ in 0..(next() % 4 + 1) {
                let i = usize::try_from(next() % line.len() as u64).unwrap();
                match next() % 3 {
                    0 => line[i] = next().to_le_bytes()[0],
                    1 => {
                        line.remove(i);
                    }
                    _ => line.insert(i, b"{}[]\":,\"0aA="[usize::try_from(next() % 12).unwrap()]),
                }
            }
            let _ = serde_json::from_slice::<Request>(&line);
            let _ = serde_json::from_slice::<EnclaveRequest>(&line);
            let _ = serde_json::from_slice::<Reply<DecryptResponse>>(&line);
            let mut r = std::io::BufReader::new(line.as_slice());
            let _ = read_line(&mut r);
        }
    }
}
