//! `InitSpec`: the guest init's argv, environment and optional working directory, stored as
//! compact JSON (`{"argv":[...],"env":[...]}`, plus `"cwd":"/dir"` when one is set) in the
//! EIF's Cmdline section. Images without `cwd` start in `/`, as before.

use serde::{Deserialize, Serialize};

/// Largest Cmdline section accepted as an init spec.
pub const MAX_INIT_SPEC_SIZE: usize = 1 << 20;

/// Why a Cmdline section is not a valid init spec.
#[derive(Debug, thiserror::Error)]
pub enum InitSpecError {
    /// Section larger than [`MAX_INIT_SPEC_SIZE`].
    #[error("Init spec is {size} bytes, over the {max}-byte limit: shorten argv/env")]
    TooLarge {
        /// Size found.
        size: usize,
        /// Limit.
        max: usize,
    },
    /// Not the expected JSON.
    #[error(
        "Cmdline section is not an init spec: expected JSON {{\"argv\":[...],\"env\":[...]}} of strings"
    )]
    Json(#[source] serde_json::Error),
    /// A string contains NUL, which cannot be passed to execve.
    #[error("Init spec {field} entry {index} contains a NUL byte, which execve cannot pass")]
    Nul {
        /// "argv" or "env".
        field: &'static str,
        /// Entry index.
        index: usize,
    },
    /// An env entry lacks '='.
    #[error("Init spec env entry {index} ({entry:?}) has no '=': write it as NAME=value")]
    EnvWithoutEquals {
        /// Entry index.
        index: usize,
        /// The entry.
        entry: String,
    },
    /// The working directory is not an absolute path.
    #[error("Init spec cwd {cwd:?} is not an absolute path without NUL: give e.g. /app")]
    BadCwd {
        /// The cwd given.
        cwd: String,
    },
}

/// Arguments and environment of the guest's `/init`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InitSpec {
    /// Argument vector, `argv[0]` first.
    pub argv: Vec<String>,
    /// Environment, each "NAME=value".
    pub env: Vec<String>,
    /// Working directory the program starts in (absolute); `None`: `/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
}

impl InitSpec {
    /// Parses and validates an init spec from Cmdline section bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, InitSpecError> {
        if bytes.len() > MAX_INIT_SPEC_SIZE {
            return Err(InitSpecError::TooLarge {
                size: bytes.len(),
                max: MAX_INIT_SPEC_SIZE,
            });
        }
        let spec: Self = serde_json::from_slice(bytes).map_err(InitSpecError::Json)?;
        spec.validate()?;
        Ok(spec)
    }

    /// Checks no string has a NUL, every env entry has '=' and a cwd is absolute.
    pub fn validate(&self) -> Result<(), InitSpecError> {
        for (field, list) in [("argv", &self.argv), ("env", &self.env)] {
            if let Some(index) = list.iter().position(|s| s.contains('\0')) {
                return Err(InitSpecError::Nul { field, index });
            }
        }
        if let Some((index, entry)) = self.env.iter().enumerate().find(|(_, e)| !e.contains('=')) {
            return Err(InitSpecError::EnvWithoutEquals {
                index,
                entry: entry.clone(),
            });
        }
        if let Some(cwd) = &self.cwd {
            if !cwd.starts_with('/') || cwd.contains('\0') {
                return Err(InitSpecError::BadCwd { cwd: cwd.clone() });
            }
        }
        Ok(())
    }

    /// Compact JSON, as stored in the Cmdline section.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serializing two Vec<String> to JSON cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_without_cwd_keeps_the_old_bytes() {
        let spec = InitSpec {
            argv: vec!["/init".into()],
            env: vec!["A=1".into()],
            cwd: None,
        };
        assert_eq!(spec.to_bytes(), br#"{"argv":["/init"],"env":["A=1"]}"#);
        assert_eq!(InitSpec::parse(&spec.to_bytes()).unwrap(), spec);
    }

    #[test]
    fn cwd_round_trips_and_must_be_absolute() {
        let mut spec = InitSpec {
            argv: vec!["/init".into()],
            env: vec![],
            cwd: Some("/app".into()),
        };
        assert_eq!(InitSpec::parse(&spec.to_bytes()).unwrap(), spec);
        spec.cwd = Some("app".into());
        assert!(matches!(spec.validate(), Err(InitSpecError::BadCwd { .. })));
    }
}
