//! `enclave validate-eif`: everything that would make `run-enclave` refuse an image, checked
//! before launching, with the functions the launch itself calls (`EifView::parse` with its
//! CRC, `guest_abi::check_kernel_blob`, `InitSpec::parse`, `cpio::read`, `elf::plan`,
//! `attest::image_measurements`, `preflight::check_memory`), plus what the launch does not
//! refuse but people trip over: the signing certificate's validity period, a dynamic
//! program's interpreter, the metadata. Exits 1 when any finding is an error.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use attestation::cpio::{self, CpioEntry};
use attestation::eif::{Eif, EifView, MAX_EIF_SIZE};
use attestation::image::{ImageMetadata, InitSpec, INIT_PATH};
use enclave_runtime::{elf, guest_abi, layout, preflight};

use super::findings::{chain, Findings, Level};
use crate::args::ValidateEifArgs;

const REBUILD: &str = "rebuild the image with `enclave build-enclave`";

/// Runs `validate-eif`.
pub fn run(a: &ValidateEifArgs, json: bool) -> anyhow::Result<i32> {
    let mut f = Findings::default();
    let summary = validate(&a.eif_path, a.memory, &mut f);
    let value = serde_json::json!({
        "EifPath": a.eif_path,
        "Valid": !f.has_error(),
        "Errors": f.count(Level::Error),
        "Warnings": f.count(Level::Warning),
        "MinimumMemoryMiB": summary.min_memory_mib,
        "Measurements": summary.measurements,
        "Findings": f.0,
    });
    f.print(json, &value, &a.eif_path.display().to_string())
}

/// What the checks learnt beyond the findings.
#[derive(Default)]
struct Summary {
    min_memory_mib: Option<u64>,
    measurements: serde_json::Value,
}

fn read_eif(path: &Path) -> Result<Vec<u8>, String> {
    let file =
        std::fs::File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(MAX_EIF_SIZE.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(bytes)
}

/// Runs every check on the image at `path`, adding findings to `f`.
fn validate(path: &Path, memory: Option<u64>, f: &mut Findings) -> Summary {
    let mut summary = Summary::default();
    let bytes = match read_eif(path) {
        Ok(b) => b,
        Err(msg) => {
            f.error(
                "file",
                msg,
                "give --eif-path the path of an image built by `enclave build-enclave`",
            );
            return summary;
        }
    };
    // Header, section headers, layout and CRC32: the parser run-enclave uses.
    let view = match EifView::parse(&bytes) {
        Ok(v) => v,
        Err(e) => {
            f.error("eif", format!("not a valid EIF: {}", chain(&e)), REBUILD);
            return summary;
        }
    };
    f.ok(
        "eif",
        format!(
            "EIF v4 header, {} sections, CRC32 matches ({} bytes)",
            view.sections.len(),
            bytes.len()
        ),
    );
    check_kernel(&view, f);
    check_cmdline(&view, f);
    let tree = check_ramdisks(&view, f);
    let plan = tree.as_ref().and_then(|t| check_init(t, f));
    summary.min_memory_mib = plan.as_ref().and_then(|p| check_memory(p, memory, f));
    summary.measurements = check_signature(&bytes, f);
    check_metadata(&view, f);
    check_unpack(&bytes, f);
    summary
}

/// The launch's own unpacking of the image, whole: agrees with the finer checks above, and
/// keeps validate-eif honest if the launch learns new checks.
fn check_unpack(bytes: &[u8], f: &mut Findings) {
    let unpacked = enclave_runtime::image::unpack_unmeasured(bytes)
        .map_err(|e| chain(&e))
        .and_then(|img| elf::plan(img.init()).map_err(|e| chain(&e)));
    match unpacked {
        Ok(_) => f.ok(
            "launch-unpack",
            "the VMM's unpacking and load planning accept the image",
        ),
        Err(msg) => f.error(
            "launch-unpack",
            format!("the VMM would refuse the image: {msg}"),
            REBUILD,
        ),
    }
}

fn check_kernel(view: &EifView<'_>, f: &mut Findings) {
    match view.kernel() {
        None => f.error("guest-abi", "the image has no Kernel section", REBUILD),
        Some(k) => match guest_abi::check_kernel_blob(k) {
            Ok(()) => f.ok(
                "guest-abi",
                format!(
                    "Kernel section is this runtime's guest ABI {}",
                    guest_abi::ABI_VERSION
                ),
            ),
            Err(e) => f.error("guest-abi", chain(&e), REBUILD),
        },
    }
}

fn check_cmdline(view: &EifView<'_>, f: &mut Findings) {
    match view.cmdline().map(InitSpec::parse) {
        None => f.error(
            "init-spec",
            "the image has no Cmdline section (the init arguments)",
            REBUILD,
        ),
        Some(Ok(spec)) => f.ok(
            "init-spec",
            format!(
                "argv {:?}, {} environment variable(s)",
                spec.argv,
                spec.env.len()
            ),
        ),
        Some(Err(e)) => f.error(
            "init-spec",
            format!("the init arguments are invalid: {}", chain(&e)),
            "rebuild with valid --cmd/--env values (`enclave build-enclave`)",
        ),
    }
}

/// The merged file tree of every ramdisk (later ramdisks win), as the launch builds it.
fn check_ramdisks(view: &EifView<'_>, f: &mut Findings) -> Option<BTreeMap<String, CpioEntry>> {
    let ramdisks = view.ramdisks();
    if ramdisks.is_empty() {
        f.error(
            "ramdisk",
            "the image has no ramdisk (root file tree)",
            REBUILD,
        );
        return None;
    }
    let mut tree = BTreeMap::new();
    for (index, rd) in ramdisks.iter().enumerate() {
        match cpio::read(rd) {
            Ok(entries) => {
                for e in entries {
                    tree.insert(e.path.clone(), e);
                }
            }
            Err(e) => {
                f.error(
                    "ramdisk",
                    format!(
                        "ramdisk {index} is not a valid cpio newc archive: {}",
                        chain(&e)
                    ),
                    REBUILD,
                );
                return None;
            }
        }
    }
    let bytes: usize = tree.values().map(|e| e.data.len()).sum();
    f.ok(
        "ramdisk",
        format!(
            "{} ramdisk(s), {} entries, {} KiB of files (held by the VMM, outside guest memory)",
            ramdisks.len(),
            tree.len(),
            bytes.div_ceil(1024)
        ),
    );
    Some(tree)
}

/// `/init`: present, a regular file, an ELF this runtime can load; a dynamic program's
/// interpreter present in the tree.
fn check_init(tree: &BTreeMap<String, CpioEntry>, f: &mut Findings) -> Option<elf::LoadPlan> {
    let Some(init) = tree
        .get(INIT_PATH)
        .filter(|e| e.file_type() == cpio::S_IFREG)
    else {
        f.error(
            "init",
            "the image has no /init program (a regular file)",
            "build it with `enclave build-enclave --binary <static program>`",
        );
        return None;
    };
    if let Some(interp) = interpreter(&init.data) {
        // Tree paths are relative to the image root, like INIT_PATH.
        if tree
            .get(interp.trim_start_matches('/'))
            .is_some_and(|e| e.file_type() == cpio::S_IFREG)
        {
            f.ok(
                "interpreter",
                format!("/init is dynamically linked; its interpreter {interp} is in the image"),
            );
        } else {
            f.error(
                "interpreter",
                format!(
                    "/init is dynamically linked and its interpreter {interp} is not in the image"
                ),
                format!(
                    "add it (and the libraries) with `--file <host path>:{interp}`, or {}",
                    elf::STATIC_HINT
                ),
            );
        }
    }
    match elf::plan(&init.data) {
        Ok(plan) => {
            let kind = if plan.pie { "static-pie" } else { "static" };
            f.ok(
                "init",
                format!(
                    "/init is a {kind} x86_64 program, {} segment(s) ending at {:#x}, entry {:#x}",
                    plan.segments.len(),
                    plan.image_end,
                    plan.entry
                ),
            );
            Some(plan)
        }
        Err(e) => {
            f.error(
                "init",
                format!("/init cannot run in an enclave: {}", chain(&e)),
                elf::STATIC_HINT,
            );
            None
        }
    }
}

/// The path in `PT_INTERP`, for a dynamically linked ELF64 little-endian program.
fn interpreter(elf: &[u8]) -> Option<String> {
    const PT_INTERP: u32 = 3;
    let u16_at = |o: usize| Some(u16::from_le_bytes(elf.get(o..o + 2)?.try_into().ok()?));
    let u32_at = |o: usize| Some(u32::from_le_bytes(elf.get(o..o + 4)?.try_into().ok()?));
    let u64_at = |o: usize| Some(u64::from_le_bytes(elf.get(o..o + 8)?.try_into().ok()?));
    if elf.get(..4)? != b"\x7fELF" || elf.get(4..6)? != [2, 1] {
        return None;
    }
    let phoff = usize::try_from(u64_at(32)?).ok()?;
    let phentsize = usize::from(u16_at(54)?);
    for i in 0..usize::from(u16_at(56)?) {
        let ph = phoff.checked_add(i.checked_mul(phentsize)?)?;
        if u32_at(ph)? != PT_INTERP {
            continue;
        }
        let off = usize::try_from(u64_at(ph.checked_add(8)?)?).ok()?;
        let len = usize::try_from(u64_at(ph.checked_add(32)?)?).ok()?;
        let raw = elf.get(off..off.checked_add(len)?)?;
        let path = raw.split(|b| *b == 0).next()?;
        return Some(String::from_utf8_lossy(path).into_owned());
    }
    None
}

/// The least memory the program needs, against `--memory` when given.
fn check_memory(plan: &elf::LoadPlan, memory: Option<u64>, f: &mut Findings) -> Option<u64> {
    let Some(min) = preflight::min_memory_mib(plan) else {
        f.error(
            "memory",
            format!(
                "the program's segments end at {:#x}: no guest memory size up to {} MiB fits them under the {} MiB stack",
                plan.image_end,
                layout::MAX_GUEST_MEMORY >> 20,
                layout::STACK_SIZE >> 20
            ),
            "link the program smaller or at the default address",
        );
        return None;
    };
    let needs = format!(
        "needs --memory {min} MiB or more (segments end at {:#x}; {} MiB stack at the top; guest sizes {}..{} MiB in 2 MiB steps)",
        plan.image_end,
        layout::STACK_SIZE >> 20,
        layout::MIN_GUEST_MEMORY >> 20,
        layout::MAX_GUEST_MEMORY >> 20
    );
    match memory.map(|m| (m, preflight::check_memory(plan, m))) {
        None => f.ok("memory", needs),
        Some((m, Ok(()))) => {
            let heap = layout::mmap_top(m << 20).saturating_sub(plan.image_end) >> 20;
            f.ok(
                "memory",
                format!("--memory {m} MiB fits: {heap} MiB left for heap and mmap; {needs}"),
            );
        }
        Some((_, Err(e))) => f.error(
            "memory",
            e.to_string(),
            format!("run with --memory {min} (or more; a multiple of 2)"),
        ),
    }
    Some(min)
}

/// The signature (as the launch checks it: COSE over PCR0 with the certificate's key) and the
/// signing certificate's validity period; returns the measurements (PCR8 when signed).
fn check_signature(bytes: &[u8], f: &mut Findings) -> serde_json::Value {
    let Ok(eif) = Eif::parse(bytes) else {
        return serde_json::Value::Null;
    };
    if eif.signature().is_none() {
        f.ok("signature", "not signed (PCR8 is empty)");
        return attestation::pcr::Measurements::of(&eif).to_json();
    }
    let measurements = match enclave_runtime::attest::image_measurements(&eif) {
        Ok(m) => {
            f.ok(
                "signature",
                format!(
                    "COSE_Sign1 over PCR0 checks with the signing certificate; PCR8 {}",
                    m.pcr8.map(hex::encode).unwrap_or_default()
                ),
            );
            m.to_json()
        }
        Err(e) => {
            f.error(
                "signature",
                chain(&e),
                "re-sign it: `enclave sign-eif --eif-path <eif> --signing-certificate <cert.pem> --private-key <key.pem>`",
            );
            attestation::pcr::Measurements::of(&eif).to_json()
        }
    };
    check_certificate_validity(&eif, f);
    measurements
}

fn check_certificate_validity(eif: &Eif, f: &mut Findings) {
    let Some(cert) = eif
        .signature()
        .and_then(|s| attestation::signing::section::decode(s).ok())
        .and_then(|e| e.into_iter().next())
        .and_then(|e| attestation::ca::keys::cert_from_pem_or_der(&e.signing_certificate).ok())
    else {
        return;
    };
    let validity = cert.tbs_certificate().validity();
    let (from, until) = (
        validity.not_before.to_unix_duration(),
        validity.not_after.to_unix_duration(),
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let (nb, na) = (validity.not_before, validity.not_after);
    let fix = "sign again with a certificate valid now: `enclave sign-eif --eif-path <eif> --signing-certificate <cert.pem> --private-key <key.pem>` (PCR8 changes with the certificate: update policies that pin it)";
    if now > until {
        f.warn(
            "certificate",
            format!("the signing certificate expired on {na} (valid from {nb}); run-enclave still starts the image, but verifiers that check the signer's validity refuse it"),
            fix,
        );
    } else if now < from {
        f.warn(
            "certificate",
            format!("the signing certificate is not valid before {nb}; check the signer's clock"),
            fix,
        );
    } else {
        f.ok(
            "certificate",
            format!("the signing certificate is valid from {nb} until {na}"),
        );
    }
}

fn check_metadata(view: &EifView<'_>, f: &mut Findings) {
    let metadata = view
        .sections
        .iter()
        .find(|s| s.kind == attestation::eif::SectionType::Metadata);
    let fix = "rebuild the image with `enclave build-enclave` (AWS's EIF reader needs the metadata section)";
    match metadata.map(|s| serde_json::from_slice::<ImageMetadata>(s.data)) {
        None => f.warn("metadata", "the image has no Metadata section", fix),
        Some(Ok(m)) => f.ok(
            "metadata",
            format!(
                "{} {} built by {} {} at {}",
                m.image_name,
                m.image_version,
                m.build.build_tool,
                m.build.build_tool_version,
                m.build.build_time
            ),
        ),
        Some(Err(e)) => f.warn(
            "metadata",
            format!("the Metadata section is not AWS's identity-info JSON: {e}"),
            fix,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 header with one PT_INTERP program header naming `interp`.
    fn dynamic_elf(interp: &str) -> Vec<u8> {
        let mut b = vec![0u8; 64 + 56];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[5] = 1;
        b[32..40].copy_from_slice(&64u64.to_le_bytes());
        b[54..56].copy_from_slice(&56u16.to_le_bytes());
        b[56..58].copy_from_slice(&1u16.to_le_bytes());
        b[64..68].copy_from_slice(&3u32.to_le_bytes());
        let off = u64::try_from(b.len()).unwrap();
        b[64 + 8..64 + 16].copy_from_slice(&off.to_le_bytes());
        let len = u64::try_from(interp.len() + 1).unwrap();
        b[64 + 32..64 + 40].copy_from_slice(&len.to_le_bytes());
        b.extend_from_slice(interp.as_bytes());
        b.push(0);
        b
    }

    #[test]
    fn interpreter_is_read_from_pt_interp_and_garbage_has_none() {
        assert_eq!(
            interpreter(&dynamic_elf("/lib64/ld-linux-x86-64.so.2")).as_deref(),
            Some("/lib64/ld-linux-x86-64.so.2")
        );
        assert_eq!(interpreter(b"\x7fELF"), None);
        assert_eq!(interpreter(&[0u8; 200]), None);
        let mut cut = dynamic_elf("/x");
        cut.truncate(100);
        assert_eq!(interpreter(&cut), None);
    }

    #[test]
    fn a_missing_file_is_one_error_naming_the_fix() {
        let mut f = Findings::default();
        let s = validate(Path::new("/nonexistent/x.eif"), None, &mut f);
        assert!(s.min_memory_mib.is_none());
        assert_eq!(f.0.len(), 1);
        assert_eq!(f.0[0].level, Level::Error);
        assert!(f.0[0]
            .fix
            .as_deref()
            .unwrap_or("")
            .contains("build-enclave"));
    }
}
