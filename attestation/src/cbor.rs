//! Strict CBOR helpers shared by the NSM codec, the attestation document and the EIF
//! signature section: decode exactly one bounded item (no trailing bytes), and take typed
//! fields out of text-keyed maps, refusing duplicates and unknown keys.

use ciborium::value::{Integer, Value};

/// Nesting limit for every CBOR item we decode; our formats nest at most 4 deep.
const MAX_DEPTH: usize = 16;

/// Why CBOR input was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CborError {
    /// Input longer than the format allows.
    #[error("Input is {len} bytes, over the {max}-byte limit for this item")]
    TooLarge {
        /// Input length.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// Not well-formed CBOR (or truncated).
    #[error("Not well-formed CBOR: {0}")]
    Malformed(String),
    /// Bytes left after the item.
    #[error("{0} trailing bytes after the CBOR item: send exactly one item")]
    Trailing(usize),
    /// Wrong CBOR type.
    #[error("Field {field} has the wrong type: expected {expected}")]
    WrongType {
        /// Field name.
        field: &'static str,
        /// What was expected.
        expected: &'static str,
    },
    /// Required field missing.
    #[error("Required field {0} is missing")]
    Missing(&'static str),
    /// Key not part of the format.
    #[error("Unknown field {0:?}: only the documented fields are accepted")]
    UnknownField(String),
    /// Same key twice.
    #[error("Field {0:?} appears twice")]
    Duplicate(String),
    /// Integer out of range.
    #[error("Field {0} is out of range")]
    OutOfRange(&'static str),
}

/// Decodes exactly one CBOR item from `bytes` (at most `max` bytes), refusing trailing data.
pub fn decode_exact(bytes: &[u8], max: usize) -> Result<Value, CborError> {
    if bytes.len() > max {
        return Err(CborError::TooLarge {
            len: bytes.len(),
            max,
        });
    }
    let mut reader = bytes;
    let value: Value = ciborium::de::from_reader_with_recursion_limit(&mut reader, MAX_DEPTH)
        .map_err(|e| CborError::Malformed(e.to_string()))?;
    if !reader.is_empty() {
        return Err(CborError::Trailing(reader.len()));
    }
    Ok(value)
}

/// Encodes a value; encoding into a `Vec` cannot fail for the values we build.
pub fn encode(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    // Writing to a Vec is infallible, and every Value variant we build is encodable.
    if ciborium::ser::into_writer(value, &mut out).is_err() {
        out.clear();
    }
    out
}

/// A text key.
pub fn text(s: &str) -> Value {
    Value::Text(s.to_owned())
}

/// `Some(bytes)` as a byte string, `None` as null.
pub fn opt_bytes(b: Option<&[u8]>) -> Value {
    b.map_or(Value::Null, |b| Value::Bytes(b.to_vec()))
}

/// Fields of a text-keyed map, taken one by one; checks for unknown keys at the end.
pub struct Fields {
    entries: Vec<(String, Option<Value>)>,
}

impl Fields {
    /// Splits a map into fields; refuses non-text keys and duplicates.
    pub fn new(value: Value, what: &'static str) -> Result<Self, CborError> {
        let Value::Map(map) = value else {
            return Err(CborError::WrongType {
                field: what,
                expected: "map",
            });
        };
        let mut entries: Vec<(String, Option<Value>)> = Vec::with_capacity(map.len());
        for (k, v) in map {
            let Value::Text(k) = k else {
                return Err(CborError::WrongType {
                    field: what,
                    expected: "map with text keys",
                });
            };
            if entries.iter().any(|(seen, _)| *seen == k) {
                return Err(CborError::Duplicate(k));
            }
            entries.push((k, Some(v)));
        }
        Ok(Self { entries })
    }

    /// Takes a field if present.
    pub fn take(&mut self, name: &str) -> Option<Value> {
        self.entries
            .iter_mut()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.take())
    }

    /// Takes a required field.
    pub fn require(&mut self, name: &'static str) -> Result<Value, CborError> {
        self.take(name).ok_or(CborError::Missing(name))
    }

    /// Refuses any field not taken.
    pub fn finish(self) -> Result<(), CborError> {
        match self.entries.into_iter().find(|(_, v)| v.is_some()) {
            Some((k, _)) => Err(CborError::UnknownField(k)),
            None => Ok(()),
        }
    }
}

/// A byte string.
pub fn as_bytes(v: Value, field: &'static str) -> Result<Vec<u8>, CborError> {
    match v {
        Value::Bytes(b) => Ok(b),
        _ => Err(CborError::WrongType {
            field,
            expected: "byte string",
        }),
    }
}

/// A byte string or null.
pub fn as_opt_bytes(v: Option<Value>, field: &'static str) -> Result<Option<Vec<u8>>, CborError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => as_bytes(v, field).map(Some),
    }
}

/// A text string.
pub fn as_text(v: Value, field: &'static str) -> Result<String, CborError> {
    match v {
        Value::Text(t) => Ok(t),
        _ => Err(CborError::WrongType {
            field,
            expected: "text string",
        }),
    }
}

/// An unsigned integer that fits `u64`.
pub fn as_u64(v: Value, field: &'static str) -> Result<u64, CborError> {
    let Value::Integer(i) = v else {
        return Err(CborError::WrongType {
            field,
            expected: "unsigned integer",
        });
    };
    u64::try_from(i).map_err(|_| CborError::OutOfRange(field))
}

/// An unsigned integer that fits `u16`.
pub fn as_u16(v: Value, field: &'static str) -> Result<u16, CborError> {
    u16::try_from(as_u64(v, field)?).map_err(|_| CborError::OutOfRange(field))
}

/// A signed integer that fits `i64`.
pub fn as_i64(v: Value, field: &'static str) -> Result<i64, CborError> {
    let Value::Integer(i) = v else {
        return Err(CborError::WrongType {
            field,
            expected: "integer",
        });
    };
    i64::try_from(i).map_err(|_| CborError::OutOfRange(field))
}

/// An integer value.
pub fn int(i: u64) -> Value {
    Value::Integer(Integer::from(i))
}
