//! Building images: reproducibility, content, AWS-compatible metadata, refusals, describe.

use attestation::cpio::{self, S_IFDIR, S_IFREG};
use attestation::eif::{Eif, SectionType};
use attestation::image::{
    build_eif, build_time_from_epoch, describe, ImageError, ImageInputs, ImageMetadata, InitSpec,
    InitSpecError, EPOCH_BUILD_TIME,
};
use attestation::pcr::Measurements;
use serde::Deserialize;

/// AWS's `EifIdentityInfo` / `EifBuildInfo` as defined in aws-nitro-enclaves-image-format
/// (`src/defs/mod.rs`), to prove its reader deserializes our metadata.
#[derive(Deserialize)]
#[allow(dead_code)]
struct AwsEifIdentityInfo {
    #[serde(rename = "ImageName")]
    img_name: String,
    #[serde(rename = "ImageVersion")]
    img_version: String,
    #[serde(rename = "BuildMetadata")]
    build_info: AwsEifBuildInfo,
    #[serde(rename = "DockerInfo")]
    docker_info: serde_json::Value,
    #[serde(rename = "CustomMetadata")]
    custom_info: serde_json::Value,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct AwsEifBuildInfo {
    #[serde(rename = "BuildTime")]
    build_time: String,
    #[serde(rename = "BuildTool")]
    build_tool: String,
    #[serde(rename = "BuildToolVersion")]
    build_tool_version: String,
    #[serde(rename = "OperatingSystem")]
    img_os: String,
    #[serde(rename = "KernelVersion")]
    img_kernel: String,
}

fn inputs() -> ImageInputs {
    ImageInputs {
        kernel: b"guest-stub-abi-1".to_vec(),
        init: b"\x7fELF init".to_vec(),
        files: vec![
            ("/app/config.json".into(), b"{}".to_vec(), 0o644),
            ("bin//tool".into(), b"\x7fELF tool".to_vec(), 0o755),
        ],
        init_spec: InitSpec {
            argv: vec!["/init".into(), "--serve".into()],
            env: vec!["RUST_LOG=info".into()],
            cwd: None,
        },
        metadata: ImageMetadata::new("hello", "1.0", EPOCH_BUILD_TIME, "abi-1"),
    }
}

#[test]
fn builds_are_byte_identical() {
    let a = build_eif(&inputs()).unwrap();
    let b = build_eif(&inputs()).unwrap();
    assert_eq!(a, b);
    let mut reordered = inputs();
    reordered.files.reverse();
    assert_eq!(build_eif(&reordered).unwrap().bytes, a.bytes);
}

#[test]
fn image_contents() {
    let built = build_eif(&inputs()).unwrap();
    let eif = Eif::parse(&built.bytes).unwrap();
    assert_eq!(built.measurements, Measurements::of(&eif));
    let kinds: Vec<SectionType> = eif.sections.iter().map(|s| s.kind).collect();
    assert_eq!(
        kinds,
        [
            SectionType::Kernel,
            SectionType::Cmdline,
            SectionType::Metadata,
            SectionType::Ramdisk
        ]
    );
    assert_eq!(eif.kernel(), Some(&b"guest-stub-abi-1"[..]));
    assert_eq!(
        eif.cmdline(),
        Some(&br#"{"argv":["/init","--serve"],"env":["RUST_LOG=info"]}"#[..])
    );
    let root = cpio::read(eif.ramdisks()[0]).unwrap();
    let listing: Vec<(&str, u32)> = root.iter().map(|e| (e.path.as_str(), e.mode)).collect();
    assert_eq!(
        listing,
        [
            ("app", S_IFDIR | 0o755),
            ("app/config.json", S_IFREG | 0o644),
            ("bin", S_IFDIR | 0o755),
            ("bin/tool", S_IFREG | 0o755),
            ("init", 0o100_755),
        ]
    );
    assert_eq!(root[4].data, b"\x7fELF init");
}

#[test]
fn metadata_is_aws_identity_info() {
    let built = build_eif(&inputs()).unwrap();
    let eif = Eif::parse(&built.bytes).unwrap();
    let raw = eif.metadata().unwrap();
    let text = std::str::from_utf8(raw).unwrap();
    assert!(text.starts_with(
        r#"{"ImageName":"hello","ImageVersion":"1.0","BuildMetadata":{"BuildTime":"1970-01-01T00:00:00+00:00","BuildTool":"attestation","#
    ), "{text}");
    let aws: AwsEifIdentityInfo = serde_json::from_slice(raw).unwrap();
    assert_eq!(aws.img_name, "hello");
    assert_eq!(aws.build_info.build_time, EPOCH_BUILD_TIME);
    assert_eq!(aws.build_info.img_kernel, "abi-1");
    let ours: ImageMetadata = serde_json::from_slice(raw).unwrap();
    assert_eq!(ours, inputs().metadata);
}

#[test]
fn build_time_from_source_date_epoch() {
    assert_eq!(build_time_from_epoch(0).unwrap(), EPOCH_BUILD_TIME);
    assert_eq!(
        build_time_from_epoch(1_700_000_000).unwrap(),
        "2023-11-14T22:13:20+00:00"
    );
    assert_eq!(
        build_time_from_epoch(951_782_400).unwrap(),
        "2000-02-29T00:00:00+00:00"
    );
    assert_eq!(
        build_time_from_epoch(253_402_300_799).unwrap(),
        "9999-12-31T23:59:59+00:00"
    );
    assert!(build_time_from_epoch(253_402_300_800).is_err());
    assert!(build_time_from_epoch(u64::MAX).is_err());
}

#[test]
fn refuses_bad_files() {
    for dst in ["/init", "init", "./init", "//init"] {
        let mut i = inputs();
        i.files.push((dst.into(), vec![1], 0o755));
        assert!(
            matches!(build_eif(&i), Err(ImageError::InitPathTaken { .. })),
            "{dst}"
        );
    }
    let mut i = inputs();
    i.files.push(("/app//config.json".into(), vec![], 0o644));
    let err = build_eif(&i).unwrap_err();
    assert!(matches!(&err, ImageError::DuplicateFile { path } if path == "app/config.json"));
    let mut i = inputs();
    i.files.push(("../escape".into(), vec![], 0o644));
    assert!(matches!(build_eif(&i), Err(ImageError::FilePath { .. })));
    let mut i = inputs();
    i.files.push(("/".into(), vec![], 0o644));
    assert!(matches!(build_eif(&i), Err(ImageError::FilePath { .. })));
    let mut i = inputs();
    i.files.push(("x".into(), vec![], 0o100_644));
    assert!(matches!(
        build_eif(&i),
        Err(ImageError::BadPermission { .. })
    ));
    let mut i = inputs();
    i.files
        .push(("app/config.json/inner".into(), vec![], 0o644));
    assert!(matches!(build_eif(&i), Err(ImageError::Ramdisk(_))));
    let mut i = inputs();
    i.kernel.clear();
    assert!(matches!(build_eif(&i), Err(ImageError::EmptyKernel)));
    let mut i = inputs();
    i.init_spec.env.push("NOEQUALS".into());
    assert!(matches!(
        build_eif(&i),
        Err(ImageError::InitSpec(InitSpecError::EnvWithoutEquals {
            index: 1,
            ..
        }))
    ));
}

#[test]
fn init_spec_parse() {
    let spec = InitSpec::parse(br#"{"argv":["a"],"env":[]}"#).unwrap();
    assert_eq!(spec.argv, ["a"]);
    assert_eq!(InitSpec::parse(&spec.to_bytes()).unwrap(), spec);
    for bad in [
        &b"console=ttyS0"[..],
        br#"{"argv":["a"]}"#,
        br#"{"argv":[1],"env":[]}"#,
        br#"{"argv":[],"env":[],"x":1}"#,
    ] {
        assert!(
            matches!(InitSpec::parse(bad), Err(InitSpecError::Json(_))),
            "{bad:?}"
        );
    }
    assert!(matches!(
        InitSpec::parse(br#"{"argv":["a\u0000b"],"env":[]}"#),
        Err(InitSpecError::Nul {
            field: "argv",
            index: 0
        })
    ));
    let big = vec![b' '; (1 << 20) + 1];
    assert!(matches!(
        InitSpec::parse(&big),
        Err(InitSpecError::TooLarge { .. })
    ));
}

#[test]
fn describe_reports_nitro_cli_fields() {
    let built = build_eif(&inputs()).unwrap();
    let eif = Eif::parse(&built.bytes).unwrap();
    let d = describe(&eif);
    assert_eq!(d.eif_version, 4);
    assert_eq!(d.measurements, built.measurements);
    assert_eq!(d.image_name.as_deref(), Some("hello"));
    assert_eq!(d.image_version.as_deref(), Some("1.0"));
    assert_eq!(d.total_size, built.bytes.len() as u64);
    assert_eq!(d.init_spec, Some(inputs().init_spec));
    assert!(!d.is_signed);
    let json = serde_json::to_value(&d).unwrap();
    assert_eq!(json["EifVersion"], 4);
    assert_eq!(
        json["Measurements"]["PCR0"],
        hex::encode(built.measurements.pcr0)
    );
    assert_eq!(
        json["Metadata"]["BuildMetadata"]["BuildTime"],
        EPOCH_BUILD_TIME
    );
    assert_eq!(json["Sections"][3]["Type"], "Ramdisk");
    assert_eq!(json["InitSpec"]["argv"][1], "--serve");

    // Missing or invalid metadata/cmdline describe as null.
    let mut eif = eif;
    eif.sections.retain(|s| s.kind != SectionType::Metadata);
    eif.sections[1].data = b"not json".to_vec();
    let d = describe(&eif);
    assert_eq!(d.metadata, serde_json::Value::Null);
    assert_eq!(d.image_name, None);
    assert_eq!(d.init_spec, None);
}
