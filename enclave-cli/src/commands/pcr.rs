//! `enclave pcr --input FILE | --signing-certificate C`: nitro-cli's `pcr` command, printing
//! `{"PCR": hex}` (a file's bytes) or `{"PCR8": hex}` (a signing certificate's DER), plus the
//! `HashAlgorithm` nitro-cli's measurement output carries.

use anyhow::Context;
use attestation::pcr::{measure, HASH_ALGORITHM};
use attestation::signing::pcr8_of_certificate;

use crate::args::PcrArgs;

/// Largest input measured (the largest EIF).
const MAX_INPUT: u64 = attestation::eif::MAX_EIF_SIZE;

/// Runs `pcr`.
pub fn run(a: &PcrArgs, _json: bool) -> anyhow::Result<i32> {
    let (key, value) = match (&a.input, &a.signing_certificate) {
        (Some(path), _) => {
            let len = std::fs::metadata(path)
                .with_context(|| format!("Cannot read --input {}: check the path", path.display()))?
                .len();
            anyhow::ensure!(
                len <= MAX_INPUT,
                "--input {} is over {MAX_INPUT} bytes",
                path.display()
            );
            let data = std::fs::read(path)
                .with_context(|| format!("Cannot read --input {}", path.display()))?;
            ("PCR", measure(&data))
        }
        (None, Some(path)) => {
            let data = std::fs::read(path).with_context(|| {
                format!(
                    "Cannot read --signing-certificate {}: check the path",
                    path.display()
                )
            })?;
            let pcr = pcr8_of_certificate(&data)
                .with_context(|| format!("{} is not a signing certificate", path.display()))?;
            ("PCR8", pcr)
        }
        (None, None) => anyhow::bail!("Give --input FILE or --signing-certificate CERT"),
    };
    crate::output::print_json(&serde_json::json!({
        "HashAlgorithm": HASH_ALGORITHM,
        key: hex::encode(value),
    }))?;
    Ok(0)
}
