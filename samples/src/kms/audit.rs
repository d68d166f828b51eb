//! The audit log: every decision of the key service appended to `<state dir>/audit.jsonl` as
//! one JSON line (time, action, key, Allow/Deny, reason, module id, PCR0, peer, time spent
//! verifying), flushed line by line.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Audit log file name in the state directory.
pub const AUDIT_FILE: &str = "audit.jsonl";

/// Allow or deny.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Decision {
    /// The request was served.
    Allow,
    /// The request was refused.
    Deny,
}

/// One audit line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AuditRecord {
    /// RFC 3339 UTC time with milliseconds.
    pub time: String,
    /// The request's action.
    pub action: String,
    /// Key concerned, when known.
    pub key_id: Option<String>,
    /// The decision.
    pub decision: Decision,
    /// Why (for Allow, what was released).
    pub reason: String,
    /// The document's module id, when a document was given and parsed.
    pub module_id: Option<String>,
    /// The document's PCR0 in hex, when a document was given and parsed.
    #[serde(rename = "PCR0")]
    pub pcr0: Option<String>,
    /// The peer address.
    pub peer: String,
    /// Time spent verifying the document and policy, µs.
    pub verify_micros: Option<u64>,
}

/// Why the log could not be opened or written.
#[derive(Debug, thiserror::Error)]
#[error("Cannot {what} the audit log {path}")]
pub struct AuditError {
    what: &'static str,
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

/// The open audit log.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    file: Mutex<File>,
}

impl AuditLog {
    /// Opens `<dir>/audit.jsonl` for appending (created 0600).
    pub fn open(dir: &Path) -> Result<Self, AuditError> {
        let path = dir.join(AUDIT_FILE);
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&path)
            .map_err(|source| AuditError {
                what: "open",
                path: path.clone(),
                source,
            })?;
        Ok(Self {
            path,
            file: Mutex::new(file),
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record and flushes it.
    pub fn record(&self, record: &AuditRecord) -> Result<(), AuditError> {
        let mut line = serde_json::to_vec(record).map_err(|e| AuditError {
            what: "encode a line for",
            path: self.path.clone(),
            source: std::io::Error::other(e),
        })?;
        line.push(b'\n');
        let mut f = self
            .file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f.write_all(&line)
            .and_then(|()| f.flush())
            .map_err(|source| AuditError {
                what: "append to",
                path: self.path.clone(),
                source,
            })
    }
}

/// Reads every record of the log in `dir` (lines that do not parse are skipped).
pub fn read_all(dir: &Path) -> Result<Vec<AuditRecord>, AuditError> {
    let path = dir.join(AUDIT_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(source) => {
            return Err(AuditError {
                what: "read",
                path,
                source,
            })
        }
    };
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

/// `t` as RFC 3339 UTC with milliseconds, e.g. `2026-11-28T06:36:31.123Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_709_210_096_789);
        assert_eq!(rfc3339(t), "2024-02-29T12:34:56.789Z");
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(t), "2000-02-29T00:00:00.000Z");
    }
}
