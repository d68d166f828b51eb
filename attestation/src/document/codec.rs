//! CBOR of the document payload: encoding in AWS's field order, strict decoding and the
//! schema checks shared by both.

use std::collections::BTreeMap;

use ciborium::value::Value;

use super::limits::*;
use super::{AttestationDocument, DIGEST_SHA384};
use crate::cbor::{self, CborError, Fields};

/// Why a document payload is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// CBOR unusable, a field missing, unknown or of the wrong type.
    #[error("Document payload CBOR is not valid")]
    Cbor(#[source] CborError),
    /// module_id empty or too long.
    #[error("module_id is {0} bytes: it must be 1..={MAX_MODULE_ID_LEN}")]
    ModuleId(usize),
    /// digest not SHA384.
    #[error("digest is {0:?}: only \"SHA384\" is accepted")]
    Digest(String),
    /// timestamp zero.
    #[error("timestamp is 0: the document has no creation time")]
    Timestamp,
    /// Wrong number of PCRs.
    #[error("pcrs has {0} entries: it must have 1..={MAX_PCRS}")]
    PcrCount(usize),
    /// PCR index out of range.
    #[error("pcrs has index {0}: indexes are 0..=31")]
    PcrIndex(u64),
    /// Same PCR twice.
    #[error("pcrs has index {0} twice")]
    PcrDuplicate(u64),
    /// PCR value of the wrong length.
    #[error("PCR{index} is {len} bytes, expected {PCR_LEN} (SHA-384)")]
    PcrLength {
        /// PCR index.
        index: u16,
        /// Its length.
        len: usize,
    },
    /// Certificate empty or too large.
    #[error("certificate is {0} bytes: it must be 1..={MAX_CERT_LEN}")]
    Certificate(usize),
    /// cabundle empty or too long.
    #[error("cabundle has {0} certificates: it must have 1..={MAX_CABUNDLE_LEN}")]
    CabundleCount(usize),
    /// A cabundle entry empty or too large.
    #[error("cabundle[{index}] is {len} bytes: it must be 1..={MAX_CERT_LEN}")]
    CabundleEntry {
        /// Entry index.
        index: usize,
        /// Its length.
        len: usize,
    },
    /// An optional user field too large.
    #[error("{field} is {len} bytes: at most {MAX_USER_FIELD_LEN} are allowed")]
    UserField {
        /// Field.
        field: &'static str,
        /// Its length.
        len: usize,
    },
}

impl From<CborError> for PayloadError {
    fn from(e: CborError) -> Self {
        Self::Cbor(e)
    }
}

/// Checks the schema's limits.
pub(super) fn check(d: &AttestationDocument) -> Result<(), PayloadError> {
    if d.module_id.is_empty() || d.module_id.len() > MAX_MODULE_ID_LEN {
        return Err(PayloadError::ModuleId(d.module_id.len()));
    }
    if d.digest != DIGEST_SHA384 {
        return Err(PayloadError::Digest(d.digest.clone()));
    }
    if d.timestamp == 0 {
        return Err(PayloadError::Timestamp);
    }
    if d.pcrs.is_empty() || d.pcrs.len() > MAX_PCRS {
        return Err(PayloadError::PcrCount(d.pcrs.len()));
    }
    for (index, value) in &d.pcrs {
        if usize::from(*index) >= MAX_PCRS {
            return Err(PayloadError::PcrIndex((*index).into()));
        }
        if value.len() != PCR_LEN {
            return Err(PayloadError::PcrLength {
                index: *index,
                len: value.len(),
            });
        }
    }
    if d.certificate.is_empty() || d.certificate.len() > MAX_CERT_LEN {
        return Err(PayloadError::Certificate(d.certificate.len()));
    }
    if d.cabundle.is_empty() || d.cabundle.len() > MAX_CABUNDLE_LEN {
        return Err(PayloadError::CabundleCount(d.cabundle.len()));
    }
    for (index, cert) in d.cabundle.iter().enumerate() {
        if cert.is_empty() || cert.len() > MAX_CERT_LEN {
            return Err(PayloadError::CabundleEntry {
                index,
                len: cert.len(),
            });
        }
    }
    for (field, v) in [
        ("public_key", &d.public_key),
        ("user_data", &d.user_data),
        ("nonce", &d.nonce),
    ] {
        if let Some(v) = v {
            if v.len() > MAX_USER_FIELD_LEN {
                return Err(PayloadError::UserField {
                    field,
                    len: v.len(),
                });
            }
        }
    }
    Ok(())
}

/// Encodes in AWS's field order.
pub(super) fn encode(d: &AttestationDocument) -> Vec<u8> {
    let pcrs = d
        .pcrs
        .iter()
        .map(|(i, v)| (cbor::int((*i).into()), Value::Bytes(v.clone())))
        .collect();
    let cabundle = d.cabundle.iter().map(|c| Value::Bytes(c.clone())).collect();
    let map = vec![
        (cbor::text("module_id"), cbor::text(&d.module_id)),
        (cbor::text("digest"), cbor::text(&d.digest)),
        (cbor::text("timestamp"), cbor::int(d.timestamp)),
        (cbor::text("pcrs"), Value::Map(pcrs)),
        (
            cbor::text("certificate"),
            Value::Bytes(d.certificate.clone()),
        ),
        (cbor::text("cabundle"), Value::Array(cabundle)),
        (
            cbor::text("public_key"),
            cbor::opt_bytes(d.public_key.as_deref()),
        ),
        (
            cbor::text("user_data"),
            cbor::opt_bytes(d.user_data.as_deref()),
        ),
        (cbor::text("nonce"), cbor::opt_bytes(d.nonce.as_deref())),
    ];
    cbor::encode(&Value::Map(map))
}

/// Decodes strictly and checks the schema's limits.
pub(super) fn decode(bytes: &[u8]) -> Result<AttestationDocument, PayloadError> {
    let value = cbor::decode_exact(bytes, MAX_DOCUMENT_SIZE)?;
    let mut f = Fields::new(value, "document")?;
    let module_id = cbor::as_text(f.require("module_id")?, "module_id")?;
    let digest = cbor::as_text(f.require("digest")?, "digest")?;
    let timestamp = cbor::as_u64(f.require("timestamp")?, "timestamp")?;
    let pcrs = decode_pcrs(f.require("pcrs")?)?;
    let certificate = cbor::as_bytes(f.require("certificate")?, "certificate")?;
    let Value::Array(bundle) = f.require("cabundle")? else {
        return Err(CborError::WrongType {
            field: "cabundle",
            expected: "array of byte strings",
        }
        .into());
    };
    if bundle.len() > MAX_CABUNDLE_LEN {
        return Err(PayloadError::CabundleCount(bundle.len()));
    }
    let cabundle = bundle
        .into_iter()
        .map(|c| cbor::as_bytes(c, "cabundle"))
        .collect::<Result<Vec<_>, _>>()?;
    let public_key = cbor::as_opt_bytes(f.take("public_key"), "public_key")?;
    let user_data = cbor::as_opt_bytes(f.take("user_data"), "user_data")?;
    let nonce = cbor::as_opt_bytes(f.take("nonce"), "nonce")?;
    f.finish()?;
    let doc = AttestationDocument {
        module_id,
        digest,
        timestamp,
        pcrs,
        certificate,
        cabundle,
        public_key,
        user_data,
        nonce,
    };
    check(&doc)?;
    Ok(doc)
}

fn decode_pcrs(value: Value) -> Result<BTreeMap<u16, Vec<u8>>, PayloadError> {
    let Value::Map(entries) = value else {
        return Err(CborError::WrongType {
            field: "pcrs",
            expected: "map of index to byte string",
        }
        .into());
    };
    if entries.is_empty() || entries.len() > MAX_PCRS {
        return Err(PayloadError::PcrCount(entries.len()));
    }
    let mut pcrs = BTreeMap::new();
    for (k, v) in entries {
        let raw = cbor::as_u64(k, "pcrs index")?;
        let index = u16::try_from(raw)
            .ok()
            .filter(|i| usize::from(*i) < MAX_PCRS)
            .ok_or(PayloadError::PcrIndex(raw))?;
        let value = cbor::as_bytes(v, "pcrs value")?;
        if pcrs.insert(index, value).is_some() {
            return Err(PayloadError::PcrDuplicate(raw));
        }
    }
    Ok(pcrs)
}
