//! CBOR wire format of NSM requests and responses, byte-compatible with what serde derives for
//! `aws-nitro-enclaves-nsm-api`: externally tagged enums (a unit variant is the text string of
//! its name, a struct variant a one-entry map `{name: {field: value, ...}}`, a newtype variant
//! `{name: value}`), byte fields as CBOR byte strings (serde_bytes), options as null.
//! Decoding is strict: bounded size, one item, no trailing bytes, known variants and fields.

use std::collections::BTreeSet;

use ciborium::value::Value;

use super::types::{Digest, ErrorCode, Request, Response};
use super::{MAX_REQUEST_SIZE, MAX_RESPONSE_SIZE, MAX_USER_INPUT};
use crate::cbor::{self, CborError, Fields};

/// Why NSM bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The CBOR itself, or a field of it, is unusable.
    #[error("Malformed NSM message")]
    Cbor(#[source] CborError),
    /// Not one of the API's variants.
    #[error("Unknown NSM {kind} {name:?}: this module speaks the AWS NSM API only")]
    UnknownVariant {
        /// "request" or "response".
        kind: &'static str,
        /// Variant found.
        name: String,
    },
    /// Not an externally tagged enum.
    #[error("NSM {0} is neither a variant name nor a one-entry map")]
    NotAVariant(&'static str),
    /// A user field over the NSM's limit.
    #[error("Field {field} is {len} bytes; the NSM accepts at most {max}")]
    InputTooLarge {
        /// Field.
        field: &'static str,
        /// Length.
        len: usize,
        /// Limit.
        max: usize,
    },
}

impl CodecError {
    /// The NSM error code a device answers with for this decoding failure.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            Self::Cbor(CborError::TooLarge { .. }) | Self::InputTooLarge { .. } => {
                ErrorCode::InputTooLarge
            }
            _ => ErrorCode::InvalidArgument,
        }
    }
}

impl From<CborError> for CodecError {
    fn from(e: CborError) -> Self {
        Self::Cbor(e)
    }
}

fn variant(name: &str, fields: Vec<(&str, Value)>) -> Value {
    let inner = fields
        .into_iter()
        .map(|(k, v)| (cbor::text(k), v))
        .collect();
    Value::Map(vec![(cbor::text(name), Value::Map(inner))])
}

/// Encodes a request as the nsm-api crate does.
pub fn encode_request(req: &Request) -> Vec<u8> {
    let value = match req {
        Request::DescribePCR { index } => {
            variant("DescribePCR", vec![("index", cbor::int((*index).into()))])
        }
        Request::ExtendPCR { index, data } => variant(
            "ExtendPCR",
            vec![
                ("index", cbor::int((*index).into())),
                ("data", Value::Bytes(data.clone())),
            ],
        ),
        Request::LockPCR { index } => {
            variant("LockPCR", vec![("index", cbor::int((*index).into()))])
        }
        Request::LockPCRs { range } => {
            variant("LockPCRs", vec![("range", cbor::int((*range).into()))])
        }
        Request::DescribeNSM => cbor::text("DescribeNSM"),
        Request::Attestation {
            user_data,
            nonce,
            public_key,
        } => variant(
            "Attestation",
            vec![
                ("user_data", cbor::opt_bytes(user_data.as_deref())),
                ("nonce", cbor::opt_bytes(nonce.as_deref())),
                ("public_key", cbor::opt_bytes(public_key.as_deref())),
            ],
        ),
        Request::GetRandom => cbor::text("GetRandom"),
    };
    cbor::encode(&value)
}

/// Splits an externally tagged enum into its name and (for non-unit variants) its content.
fn split_variant(value: Value, kind: &'static str) -> Result<(String, Option<Value>), CodecError> {
    match value {
        Value::Text(name) => Ok((name, None)),
        Value::Map(mut entries) if entries.len() == 1 => match entries.pop() {
            Some((Value::Text(name), inner)) => Ok((name, Some(inner))),
            _ => Err(CodecError::NotAVariant(kind)),
        },
        _ => Err(CodecError::NotAVariant(kind)),
    }
}

fn bounded(bytes: Option<Vec<u8>>, field: &'static str) -> Result<Option<Vec<u8>>, CodecError> {
    match bytes {
        Some(b) if b.len() > MAX_USER_INPUT => Err(CodecError::InputTooLarge {
            field,
            len: b.len(),
            max: MAX_USER_INPUT,
        }),
        other => Ok(other),
    }
}

/// Decodes a request strictly (≤ [`MAX_REQUEST_SIZE`] bytes, user fields ≤
/// [`MAX_USER_INPUT`] bytes each).
pub fn decode_request(bytes: &[u8]) -> Result<Request, CodecError> {
    let value = cbor::decode_exact(bytes, MAX_REQUEST_SIZE)?;
    let (name, inner) = split_variant(value, "request")?;
    let unknown = |name: String| CodecError::UnknownVariant {
        kind: "request",
        name,
    };
    let req = match (name.as_str(), inner) {
        ("DescribeNSM", None) => Request::DescribeNSM,
        ("GetRandom", None) => Request::GetRandom,
        ("DescribePCR", Some(inner)) => {
            let mut f = Fields::new(inner, "DescribePCR")?;
            let index = cbor::as_u16(f.require("index")?, "index")?;
            f.finish()?;
            Request::DescribePCR { index }
        }
        ("ExtendPCR", Some(inner)) => {
            let mut f = Fields::new(inner, "ExtendPCR")?;
            let index = cbor::as_u16(f.require("index")?, "index")?;
            let data = cbor::as_bytes(f.require("data")?, "data")?;
            f.finish()?;
            let data = bounded(Some(data), "data")?.unwrap_or_default();
            Request::ExtendPCR { index, data }
        }
        ("LockPCR", Some(inner)) => {
            let mut f = Fields::new(inner, "LockPCR")?;
            let index = cbor::as_u16(f.require("index")?, "index")?;
            f.finish()?;
            Request::LockPCR { index }
        }
        ("LockPCRs", Some(inner)) => {
            let mut f = Fields::new(inner, "LockPCRs")?;
            let range = cbor::as_u16(f.require("range")?, "range")?;
            f.finish()?;
            Request::LockPCRs { range }
        }
        ("Attestation", Some(inner)) => {
            let mut f = Fields::new(inner, "Attestation")?;
            let user_data = cbor::as_opt_bytes(f.take("user_data"), "user_data")?;
            let nonce = cbor::as_opt_bytes(f.take("nonce"), "nonce")?;
            let public_key = cbor::as_opt_bytes(f.take("public_key"), "public_key")?;
            f.finish()?;
            Request::Attestation {
                user_data: bounded(user_data, "user_data")?,
                nonce: bounded(nonce, "nonce")?,
                public_key: bounded(public_key, "public_key")?,
            }
        }
        _ => return Err(unknown(name)),
    };
    Ok(req)
}

/// Encodes a response as the nsm-api crate does.
pub fn encode_response(resp: &Response) -> Vec<u8> {
    let value = match resp {
        Response::DescribePCR { lock, data } => variant(
            "DescribePCR",
            vec![
                ("lock", Value::Bool(*lock)),
                ("data", Value::Bytes(data.clone())),
            ],
        ),
        Response::ExtendPCR { data } => {
            variant("ExtendPCR", vec![("data", Value::Bytes(data.clone()))])
        }
        Response::LockPCR => cbor::text("LockPCR"),
        Response::LockPCRs => cbor::text("LockPCRs"),
        Response::DescribeNSM {
            version_major,
            version_minor,
            version_patch,
            module_id,
            max_pcrs,
            locked_pcrs,
            digest,
        } => variant(
            "DescribeNSM",
            vec![
                ("version_major", cbor::int((*version_major).into())),
                ("version_minor", cbor::int((*version_minor).into())),
                ("version_patch", cbor::int((*version_patch).into())),
                ("module_id", cbor::text(module_id)),
                ("max_pcrs", cbor::int((*max_pcrs).into())),
                (
                    "locked_pcrs",
                    Value::Array(locked_pcrs.iter().map(|i| cbor::int((*i).into())).collect()),
                ),
                ("digest", cbor::text(digest.name())),
            ],
        ),
        Response::Attestation { document } => variant(
            "Attestation",
            vec![("document", Value::Bytes(document.clone()))],
        ),
        Response::GetRandom { random } => {
            variant("GetRandom", vec![("random", Value::Bytes(random.clone()))])
        }
        Response::Error(code) => Value::Map(vec![(cbor::text("Error"), cbor::text(code.name()))]),
    };
    cbor::encode(&value)
}

/// Decodes a response strictly (≤ [`MAX_RESPONSE_SIZE`] bytes); used by clients and tests.
pub fn decode_response(bytes: &[u8]) -> Result<Response, CodecError> {
    let value = cbor::decode_exact(bytes, MAX_RESPONSE_SIZE)?;
    let (name, inner) = split_variant(value, "response")?;
    let resp = match (name.as_str(), inner) {
        ("LockPCR", None) => Response::LockPCR,
        ("LockPCRs", None) => Response::LockPCRs,
        ("Error", Some(Value::Text(code))) => match ErrorCode::from_name(&code) {
            Some(c) => Response::Error(c),
            None => {
                return Err(CodecError::UnknownVariant {
                    kind: "error code",
                    name: code,
                })
            }
        },
        ("DescribePCR", Some(inner)) => {
            let mut f = Fields::new(inner, "DescribePCR")?;
            let lock = match f.require("lock")? {
                Value::Bool(b) => b,
                _ => {
                    return Err(CborError::WrongType {
                        field: "lock",
                        expected: "bool",
                    }
                    .into())
                }
            };
            let data = cbor::as_bytes(f.require("data")?, "data")?;
            f.finish()?;
            Response::DescribePCR { lock, data }
        }
        ("ExtendPCR", Some(inner)) => {
            let mut f = Fields::new(inner, "ExtendPCR")?;
            let data = cbor::as_bytes(f.require("data")?, "data")?;
            f.finish()?;
            Response::ExtendPCR { data }
        }
        ("DescribeNSM", Some(inner)) => decode_describe_nsm(inner)?,
        ("Attestation", Some(inner)) => {
            let mut f = Fields::new(inner, "Attestation")?;
            let document = cbor::as_bytes(f.require("document")?, "document")?;
            f.finish()?;
            Response::Attestation { document }
        }
        ("GetRandom", Some(inner)) => {
            let mut f = Fields::new(inner, "GetRandom")?;
            let random = cbor::as_bytes(f.require("random")?, "random")?;
            f.finish()?;
            Response::GetRandom { random }
        }
        _ => {
            return Err(CodecError::UnknownVariant {
                kind: "response",
                name,
            })
        }
    };
    Ok(resp)
}

fn decode_describe_nsm(inner: Value) -> Result<Response, CodecError> {
    let mut f = Fields::new(inner, "DescribeNSM")?;
    let version_major = cbor::as_u16(f.require("version_major")?, "version_major")?;
    let version_minor = cbor::as_u16(f.require("version_minor")?, "version_minor")?;
    let version_patch = cbor::as_u16(f.require("version_patch")?, "version_patch")?;
    let module_id = cbor::as_text(f.require("module_id")?, "module_id")?;
    let max_pcrs = cbor::as_u16(f.require("max_pcrs")?, "max_pcrs")?;
    let Value::Array(locked) = f.require("locked_pcrs")? else {
        return Err(CborError::WrongType {
            field: "locked_pcrs",
            expected: "array",
        }
        .into());
    };
    let locked_pcrs = locked
        .into_iter()
        .map(|v| cbor::as_u16(v, "locked_pcrs"))
        .collect::<Result<BTreeSet<u16>, _>>()?;
    let digest_name = cbor::as_text(f.require("digest")?, "digest")?;
    let digest = Digest::from_name(&digest_name).ok_or(CodecError::UnknownVariant {
        kind: "digest",
        name: digest_name,
    })?;
    f.finish()?;
    Ok(Response::DescribeNSM {
        version_major,
        version_minor,
        version_patch,
        module_id,
        max_pcrs,
        locked_pcrs,
        digest,
    })
}
