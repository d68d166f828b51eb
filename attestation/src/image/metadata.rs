//! `ImageMetadata`: the Metadata section's JSON, in the shape of AWS's `EifIdentityInfo` /
//! `EifBuildInfo` (aws-nitro-enclaves-image-format `src/defs/mod.rs`), field for field and in
//! the same order, so AWS's reader deserializes it.

use serde::{Deserialize, Serialize};

/// Build time for builds with no `SOURCE_DATE_EPOCH`.
pub const EPOCH_BUILD_TIME: &str = "1970-01-01T00:00:00+00:00";

/// Why a build time could not be formatted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MetadataError {
    /// Year past 9999.
    #[error(
        "SOURCE_DATE_EPOCH {secs} is past the year 9999: give seconds since 1970 of a real date"
    )]
    EpochOutOfRange {
        /// Seconds given.
        secs: u64,
    },
}

/// `BuildMetadata` of AWS's identity info (`EifBuildInfo`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildMetadata {
    /// RFC 3339 build time; an input, so builds are reproducible.
    #[serde(rename = "BuildTime")]
    pub build_time: String,
    /// Name of the build tool.
    #[serde(rename = "BuildTool")]
    pub build_tool: String,
    /// Version of the build tool.
    #[serde(rename = "BuildToolVersion")]
    pub build_tool_version: String,
    /// Guest operating system.
    #[serde(rename = "OperatingSystem")]
    pub operating_system: String,
    /// Guest kernel (for us: the guest stub ABI version).
    #[serde(rename = "KernelVersion")]
    pub kernel_version: String,
}

/// The Metadata section (AWS's `EifIdentityInfo`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImageMetadata {
    /// Image name.
    #[serde(rename = "ImageName")]
    pub image_name: String,
    /// Image version.
    #[serde(rename = "ImageVersion")]
    pub image_version: String,
    /// Build information.
    #[serde(rename = "BuildMetadata")]
    pub build: BuildMetadata,
    /// Docker inspect output in AWS's builds; `{}` for ours (no Docker).
    #[serde(rename = "DockerInfo")]
    pub docker_info: serde_json::Value,
    /// User-supplied JSON, or null.
    #[serde(rename = "CustomMetadata")]
    pub custom: serde_json::Value,
}

impl ImageMetadata {
    /// Metadata for an image built by this crate's builder, with the given name, version,
    /// build time (RFC 3339; see [`EPOCH_BUILD_TIME`], [`build_time_from_epoch`]) and guest
    /// kernel version string. DockerInfo is `{}` and CustomMetadata null.
    pub fn new(
        image_name: impl Into<String>,
        image_version: impl Into<String>,
        build_time: impl Into<String>,
        kernel_version: impl Into<String>,
    ) -> Self {
        Self {
            image_name: image_name.into(),
            image_version: image_version.into(),
            build: BuildMetadata {
                build_time: build_time.into(),
                build_tool: env!("CARGO_PKG_NAME").to_owned(),
                build_tool_version: env!("CARGO_PKG_VERSION").to_owned(),
                operating_system: "enclave".to_owned(),
                kernel_version: kernel_version.into(),
            },
            docker_info: serde_json::Value::Object(serde_json::Map::new()),
            custom: serde_json::Value::Null,
        }
    }

    /// Compact JSON, as stored in the Metadata section (as AWS's `serde_json::to_vec`).
    pub fn to_bytes(&self) -> Vec<u8> {
        // Strings and JSON values with string keys always serialize.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// Formats seconds since 1970 (e.g. `SOURCE_DATE_EPOCH`) as RFC 3339 in AWS's style,
/// `YYYY-MM-DDTHH:MM:SS+00:00`.
pub fn build_time_from_epoch(secs: u64) -> Result<String, MetadataError> {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (hh, mm, ss) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    // Civil-from-days (H. Hinnant), unsigned since days >= 0.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = era
        .checked_mul(400)
        .and_then(|y| y.checked_add(yoe))
        .and_then(|y| y.checked_add(u64::from(month <= 2)))
        .filter(|&y| y <= 9999)
        .ok_or(MetadataError::EpochOutOfRange { secs })?;
    Ok(format!(
        "{year:04}-{month:02}-{day:02}T{hh:02}:{mm:02}:{ss:02}+00:00"
    ))
}
