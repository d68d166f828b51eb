//! `describe`: what nitro-cli's `describe-eif` reports about an image, plus our section list
//! and the parsed init spec, as a serializable value.

use serde::Serialize;

use super::InitSpec;
use crate::eif::Eif;
use crate::pcr::Measurements;

/// One section in a [`Description`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SectionInfo {
    /// Section type name ("Kernel", "Cmdline", ...).
    #[serde(rename = "Type")]
    pub kind: String,
    /// Data size in bytes.
    #[serde(rename = "Size")]
    pub size: u64,
}

/// Description of a parsed EIF, field names as nitro-cli's `describe-eif` where it has them.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Description {
    /// EIF version (4).
    #[serde(rename = "EifVersion")]
    pub eif_version: u16,
    /// PCR0/1/2 (and PCR8 if known).
    #[serde(rename = "Measurements")]
    pub measurements: Measurements,
    /// Whether a signature section is present.
    #[serde(rename = "IsSigned")]
    pub is_signed: bool,
    /// CRC check result: always true, since [`Eif::parse`] refuses a bad CRC.
    #[serde(rename = "CheckCRC")]
    pub check_crc: bool,
    /// `ImageName` from the metadata, if present.
    #[serde(rename = "ImageName")]
    pub image_name: Option<String>,
    /// `ImageVersion` from the metadata, if present.
    #[serde(rename = "ImageVersion")]
    pub image_version: Option<String>,
    /// The metadata section as JSON, or null if absent or not JSON.
    #[serde(rename = "Metadata")]
    pub metadata: serde_json::Value,
    /// Sections in file order.
    #[serde(rename = "Sections")]
    pub sections: Vec<SectionInfo>,
    /// Encoded size of the EIF in bytes.
    #[serde(rename = "TotalSize")]
    pub total_size: u64,
    /// The Cmdline section parsed as an init spec, or null if it is not one.
    #[serde(rename = "InitSpec")]
    pub init_spec: Option<InitSpec>,
}

/// Describes a parsed EIF.
pub fn describe(eif: &Eif) -> Description {
    let metadata = eif
        .metadata()
        .and_then(|m| serde_json::from_slice::<serde_json::Value>(m).ok())
        .unwrap_or(serde_json::Value::Null);
    let field = |name: &str| {
        metadata
            .get(name)
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
    };
    Description {
        eif_version: eif.version(),
        measurements: Measurements::of(eif),
        is_signed: eif.signature().is_some(),
        check_crc: true,
        image_name: field("ImageName"),
        image_version: field("ImageVersion"),
        sections: eif
            .sections
            .iter()
            .map(|s| SectionInfo {
                kind: s.kind.to_string(),
                size: u64::try_from(s.data.len()).unwrap_or(u64::MAX),
            })
            .collect(),
        total_size: eif.encoded_len().unwrap_or(u64::MAX),
        init_spec: eif.cmdline().and_then(|c| InitSpec::parse(c).ok()),
        metadata,
    }
}
