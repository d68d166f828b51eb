//! `enclave describe-eif`: an EIF's measurements, sections, metadata and init spec, as nitro-cli
//! prints them, plus whether its Kernel section is this runtime's guest ABI ("GuestAbi") and the
//! root ramdisk's files ("Files"), and for a signed image PCR8 and whether its signature
//! checks ("Signature"; a bad signature makes the command exit 1).

use std::io::Read;

use anyhow::{bail, Context};
use attestation::eif::{Eif, MAX_EIF_SIZE};
use enclave_runtime::guest_abi;

use crate::args::DescribeEifArgs;

/// Runs `describe-eif`.
pub fn run(a: &DescribeEifArgs, _json: bool) -> anyhow::Result<i32> {
    let path = &a.eif_path;
    let file = std::fs::File::open(path).with_context(|| {
        format!(
            "Cannot open {}: give --eif-path the path of an image built by `enclave build-enclave`",
            path.display()
        )
    })?;
    let len = file
        .metadata()
        .with_context(|| format!("Cannot stat {}", path.display()))?
        .len();
    if len > MAX_EIF_SIZE {
        bail!(
            "{} is {len} bytes, over the {MAX_EIF_SIZE}-byte EIF limit: it is not an enclave image",
            path.display()
        );
    }
    let mut bytes = Vec::new();
    // Read one byte past the limit, so a file that grows meanwhile is still refused by parse.
    file.take(MAX_EIF_SIZE.saturating_add(1))
        .read_to_end(&mut bytes)
        .with_context(|| format!("Cannot read {}", path.display()))?;
    let eif = Eif::parse(&bytes).with_context(|| {
        format!(
            "{} is not a valid EIF: rebuild it with `enclave build-enclave`",
            path.display()
        )
    })?;

    let mut value = serde_json::to_value(attestation::image::describe(&eif))
        .context("Cannot serialize the image description")?;
    let (signature, signature_ok) = signature_report(&eif);
    if let Some(map) = value.as_object_mut() {
        map.insert("GuestAbi".into(), guest_abi_report(eif.kernel()));
        map.insert("Files".into(), root_files(eif.ramdisks().first().copied()));
        if let (Some(pcr8), Some(m)) = (
            signature.get("PCR8").cloned(),
            map.get_mut("Measurements").and_then(|m| m.as_object_mut()),
        ) {
            m.insert("PCR8".into(), pcr8);
        }
        map.insert("Signature".into(), signature);
    }
    crate::output::print_json(&value)?;
    // A signed image whose signature does not check is an error, not a detail.
    Ok(if signature_ok { 0 } else { 1 })
}

/// `{"Verified", "PCR8", "Subject", "Issuer", "Error"}` for a signed image (null if
/// unsigned), and whether describe-eif may exit 0.
fn signature_report(eif: &Eif) -> (serde_json::Value, bool) {
    let Some(section) = eif.signature() else {
        return (serde_json::Value::Null, true);
    };
    // PCR8 is shown even when the signature does not check, if the certificate parses.
    let pcr8 = attestation::signing::section::decode(section)
        .ok()
        .and_then(|e| e.into_iter().next())
        .and_then(|e| attestation::signing::pcr8_of_certificate(&e.signing_certificate).ok())
        .map(hex::encode);
    match attestation::signing::check_signature(eif) {
        Ok(info) => (
            serde_json::json!({
                "Verified": true,
                "PCR8": hex::encode(info.pcr8),
                "Subject": info.subject,
                "Issuer": info.issuer,
                "Error": null,
            }),
            true,
        ),
        Err(e) => {
            let mut msg = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(c) = src {
                msg.push_str(": ");
                msg.push_str(&c.to_string());
                src = c.source();
            }
            (
                serde_json::json!({ "Verified": false, "PCR8": pcr8, "Error": msg }),
                false,
            )
        }
    }
}

/// `{"Version", "Expected", "Compatible", "Problem"}` for the image's Kernel section.
fn guest_abi_report(kernel: Option<&[u8]>) -> serde_json::Value {
    let Some(blob) = kernel else {
        return serde_json::json!({
            "Version": null,
            "Expected": guest_abi::ABI_VERSION,
            "Compatible": false,
            "Problem": "the image has no Kernel section; rebuild it with `enclave build-enclave`",
        });
    };
    let version = blob
        .get(..20)
        .filter(|b| b.starts_with(guest_abi::MAGIC))
        .map(|b| u32::from_le_bytes([b[16], b[17], b[18], b[19]]));
    let problem = guest_abi::check_kernel_blob(blob)
        .err()
        .map(|e| e.to_string());
    serde_json::json!({
        "Version": version,
        "Expected": guest_abi::ABI_VERSION,
        "Compatible": problem.is_none(),
        "Problem": problem,
    })
}

/// The root ramdisk's entries as `[{"Path", "Mode", "Size"}]` (mode in octal), or the reason
/// it cannot be listed.
fn root_files(ramdisk: Option<&[u8]>) -> serde_json::Value {
    let Some(bytes) = ramdisk else {
        return serde_json::Value::Null;
    };
    match attestation::cpio::read(bytes) {
        Ok(entries) => entries
            .iter()
            .map(|e| {
                serde_json::json!({
                    "Path": format!("/{}", e.path),
                    "Mode": format!("{:o}", e.mode),
                    "Size": e.data.len(),
                })
            })
            .collect(),
        Err(e) => serde_json::json!({ "Error": e.to_string() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_abi_report_says_why() {
        let ok = guest_abi_report(Some(&guest_abi::kernel_blob()));
        assert_eq!(ok["Compatible"], true);
        assert_eq!(ok["Version"], guest_abi::ABI_VERSION);
        assert!(ok["Problem"].is_null());
        let linux = guest_abi_report(Some(b"MZ not ours"));
        assert_eq!(linux["Compatible"], false);
        assert!(linux["Version"].is_null());
        assert!(linux["Problem"].as_str().unwrap().contains("Linux kernel"));
        assert_eq!(guest_abi_report(None)["Compatible"], false);
    }
}
