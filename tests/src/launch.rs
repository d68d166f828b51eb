//! Starting, describing and terminating enclaves through the CLI, with the defaults the
//! end-to-end tests use (one CPU, [`MEMORY_MIB`]).

use std::path::Path;

use serde_json::Value;

use crate::run::CliOutput;
use crate::testenv::TestEnv;

/// Guest memory of the tests' enclaves.
pub const MEMORY_MIB: u64 = 64;

/// Whether `id` looks like an enclave id: `enc-` and 16 lowercase hex digits.
pub fn is_enclave_id(id: &str) -> bool {
    id.strip_prefix("enc-").is_some_and(|hex| {
        hex.len() == 16
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// The string field `key` of `v`.
///
/// # Panics
/// When it is missing or not a string.
#[track_caller]
pub fn str_field<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} is not a string in {v:#}"))
}

/// The unsigned field `key` of `v`.
///
/// # Panics
/// When it is missing or not an unsigned integer.
#[track_caller]
pub fn u64_field(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} is not an unsigned integer in {v:#}"))
}

impl TestEnv {
    /// `run-enclave --debug-mode --attach-console` of `eif` with one CPU and [`MEMORY_MIB`]:
    /// the console on stdout, the exit code the program's.
    pub fn run_debug(&self, eif: &Path) -> CliOutput {
        self.cli(
            [
                "run-enclave",
                "--cpu-count",
                "1",
                "--memory",
                &MEMORY_MIB.to_string(),
                "--debug-mode",
                "--attach-console",
                "--eif-path",
            ]
            .map(std::ffi::OsString::from)
            .into_iter()
            .chain([eif.as_os_str().to_owned()]),
        )
    }

    /// `run-enclave` of `eif` in production mode with one CPU and [`MEMORY_MIB`]: the raw
    /// output.
    pub fn try_start(&self, eif: &Path) -> CliOutput {
        self.cli(
            [
                "run-enclave",
                "--cpu-count",
                "1",
                "--memory",
                &MEMORY_MIB.to_string(),
                "--eif-path",
            ]
            .map(std::ffi::OsString::from)
            .into_iter()
            .chain([eif.as_os_str().to_owned()]),
        )
    }

    /// [`TestEnv::try_start`] that must succeed; returns the enclave's description.
    ///
    /// # Panics
    /// When the launch fails.
    #[track_caller]
    pub fn start(&self, eif: &Path) -> Value {
        self.try_start(eif).ok().json()
    }

    /// `describe-enclaves`, which must succeed and print a JSON array.
    ///
    /// # Panics
    /// Otherwise.
    #[track_caller]
    pub fn describe(&self) -> Vec<Value> {
        let out = self.cli(["describe-enclaves"]);
        match out.ok().json() {
            Value::Array(list) => list,
            other => panic!("describe-enclaves printed no array: {other:#}"),
        }
    }

    /// `terminate-enclave --enclave-id id`.
    pub fn terminate(&self, id: &str) -> CliOutput {
        self.cli(["terminate-enclave", "--enclave-id", id])
    }
}

#[cfg(test)]
mod tests {
    use super::is_enclave_id;

    #[test]
    fn enclave_ids() {
        assert!(is_enclave_id("enc-0123456789abcdef"));
        assert!(!is_enclave_id("enc-0123456789ABCDEF"));
        assert!(!is_enclave_id("enc-0123456789abcde"));
        assert!(!is_enclave_id("enc-0123456789abcdef0"));
        assert!(!is_enclave_id("i-0123456789abcdef"));
    }
}
