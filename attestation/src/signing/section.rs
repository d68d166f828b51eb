//! The EIF signature section as AWS's `aws-nitro-enclaves-image-format` writes it with
//! serde_cbor: an array of `PcrSignature {signing_certificate: Vec<u8>, signature: Vec<u8>}`
//! whose `Vec<u8>` fields (no serde_bytes) are CBOR arrays of small integers; the certificate
//! is the PEM file's bytes; the signature an untagged COSE_Sign1 over the CBOR of
//! `PcrInfo {register_index: i32, register_value: Vec<u8>}` (again an integer array).

use ciborium::value::Value;

use crate::cbor::{self, CborError, Fields};

/// Largest signature section read.
pub const MAX_SECTION_SIZE: usize = 64 * 1024;
/// Most signatures in a section.
pub const MAX_SIGNATURES: usize = 32;

/// One entry of the section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PcrSignature {
    /// The signing certificate, PEM bytes.
    pub signing_certificate: Vec<u8>,
    /// Untagged COSE_Sign1 over the [`PcrInfo`] CBOR.
    pub signature: Vec<u8>,
}

/// What one signature covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PcrInfo {
    /// PCR index (0).
    pub register_index: i32,
    /// PCR value.
    pub register_value: Vec<u8>,
}

/// `Vec<u8>` as serde derives it without serde_bytes: an array of integers.
fn byte_array(bytes: &[u8]) -> Value {
    Value::Array(bytes.iter().map(|b| cbor::int((*b).into())).collect())
}

/// Accepts serde's integer array, and a byte string for leniency.
fn from_byte_array(v: Value, field: &'static str) -> Result<Vec<u8>, CborError> {
    match v {
        Value::Bytes(b) => Ok(b),
        Value::Array(items) => items
            .into_iter()
            .map(|i| {
                u8::try_from(cbor::as_u64(i, field)?).map_err(|_| CborError::OutOfRange(field))
            })
            .collect(),
        _ => Err(CborError::WrongType {
            field,
            expected: "array of bytes",
        }),
    }
}

impl PcrInfo {
    /// serde_cbor's encoding: `{"register_index": i, "register_value": [..]}`.
    pub fn to_cbor(&self) -> Vec<u8> {
        cbor::encode(&Value::Map(vec![
            (
                cbor::text("register_index"),
                Value::Integer(self.register_index.into()),
            ),
            (
                cbor::text("register_value"),
                byte_array(&self.register_value),
            ),
        ]))
    }

    /// Strict decoding.
    pub fn from_cbor(bytes: &[u8]) -> Result<Self, CborError> {
        let mut f = Fields::new(cbor::decode_exact(bytes, 4096)?, "PcrInfo")?;
        let index = cbor::as_i64(f.require("register_index")?, "register_index")?;
        let register_index =
            i32::try_from(index).map_err(|_| CborError::OutOfRange("register_index"))?;
        let register_value = from_byte_array(f.require("register_value")?, "register_value")?;
        f.finish()?;
        Ok(Self {
            register_index,
            register_value,
        })
    }
}

/// Encodes the section.
pub fn encode(signatures: &[PcrSignature]) -> Vec<u8> {
    cbor::encode(&Value::Array(
        signatures
            .iter()
            .map(|s| {
                Value::Map(vec![
                    (
                        cbor::text("signing_certificate"),
                        byte_array(&s.signing_certificate),
                    ),
                    (cbor::text("signature"), byte_array(&s.signature)),
                ])
            })
            .collect(),
    ))
}

/// Decodes the section strictly.
pub fn decode(bytes: &[u8]) -> Result<Vec<PcrSignature>, CborError> {
    let Value::Array(items) = cbor::decode_exact(bytes, MAX_SECTION_SIZE)? else {
        return Err(CborError::WrongType {
            field: "signature section",
            expected: "array",
        });
    };
    if items.len() > MAX_SIGNATURES {
        return Err(CborError::OutOfRange("signature section"));
    }
    items
        .into_iter()
        .map(|item| {
            let mut f = Fields::new(item, "PcrSignature")?;
            let signing_certificate =
                from_byte_array(f.require("signing_certificate")?, "signing_certificate")?;
            let signature = from_byte_array(f.require("signature")?, "signature")?;
            f.finish()?;
            Ok(PcrSignature {
                signing_certificate,
                signature,
            })
        })
        .collect()
}
