//! EIF reader/writer: round trip, AWS layout, CRC, and rejection of every corruption.

use attestation::eif::{Eif, EifError, EifView, EifWriter, SectionType, HEADER_SIZE, MAX_SECTIONS};

const COUNT_AT: usize = 26;
const OFFSETS_AT: usize = 28;
const SIZES_AT: usize = OFFSETS_AT + 8 * MAX_SECTIONS;
const CRC_AT: usize = 544;

fn writer() -> EifWriter {
    let mut w = EifWriter::new(b"KERNEL-BLOB".to_vec(), br#"{"argv":[],"env":[]}"#.to_vec());
    w.metadata = Some(br#"{"ImageName":"t"}"#.to_vec());
    w.ramdisks = vec![b"ramdisk-zero".to_vec(), b"rd1".to_vec()];
    w.signature = Some(b"\x81sig".to_vec());
    w
}

fn sample() -> Vec<u8> {
    writer().to_bytes().unwrap()
}

fn be_u64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().unwrap())
}

fn set_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_be_bytes());
}

/// Bitwise reflected CRC-32 (poly 0xEDB88320), independent of the `crc` crate.
fn crc32_bitwise(chunks: &[&[u8]]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for chunk in chunks {
        for &byte in *chunk {
            crc ^= u32::from(byte);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
    }
    !crc
}

fn fix_crc(b: &mut [u8]) {
    let crc = crc32_bitwise(&[&b[..CRC_AT], &b[HEADER_SIZE..]]);
    b[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
}

#[test]
fn crc32_bitwise_known_answer() {
    assert_eq!(crc32_bitwise(&[b"123456789"]), 0xCBF4_3926);
}

#[test]
fn round_trip() {
    let bytes = sample();
    let eif = Eif::parse(&bytes).unwrap();
    assert_eq!(eif, writer().into_eif());
    assert_eq!(eif.to_bytes().unwrap(), bytes);
    assert_eq!(eif.kernel(), Some(&b"KERNEL-BLOB"[..]));
    assert_eq!(eif.cmdline(), Some(&br#"{"argv":[],"env":[]}"#[..]));
    assert_eq!(eif.ramdisks(), vec![&b"ramdisk-zero"[..], &b"rd1"[..]]);
    assert_eq!(eif.signature(), Some(&b"\x81sig"[..]));
    assert_eq!(eif.metadata(), Some(&br#"{"ImageName":"t"}"#[..]));
    assert_eq!(eif.default_mem, 1 << 30);
    assert_eq!(eif.default_cpus, 2);
    assert_eq!(eif.encoded_len(), Some(bytes.len() as u64));
}

#[test]
fn layout_matches_aws_builder() {
    let b = sample();
    assert_eq!(&b[..4], b".eif");
    assert_eq!(u16::from_be_bytes([b[4], b[5]]), 4);
    assert_eq!(u16::from_be_bytes([b[COUNT_AT], b[COUNT_AT + 1]]), 6);
    // Kernel, Cmdline, Metadata, Ramdisk, Ramdisk, Signature, contiguous after the header.
    let expected = [(1u16, 11u64), (2, 20), (5, 17), (3, 12), (3, 3), (4, 4)];
    let mut cursor = HEADER_SIZE as u64;
    for (i, (kind, size)) in expected.iter().enumerate() {
        assert_eq!(be_u64(&b, OFFSETS_AT + 8 * i), cursor, "offset {i}");
        assert_eq!(be_u64(&b, SIZES_AT + 8 * i), *size, "size {i}");
        let at = usize::try_from(cursor).unwrap();
        assert_eq!(u16::from_be_bytes([b[at], b[at + 1]]), *kind);
        assert_eq!(u16::from_be_bytes([b[at + 2], b[at + 3]]), 0, "flags");
        assert_eq!(be_u64(&b, at + 4), *size);
        cursor += 12 + size;
    }
    assert_eq!(cursor, b.len() as u64);
    for i in expected.len()..MAX_SECTIONS {
        assert_eq!(be_u64(&b, OFFSETS_AT + 8 * i), 0);
        assert_eq!(be_u64(&b, SIZES_AT + 8 * i), 0);
    }
}

#[test]
fn crc_matches_independent_computation() {
    let b = sample();
    let recorded = u32::from_be_bytes(b[CRC_AT..CRC_AT + 4].try_into().unwrap());
    assert_eq!(recorded, crc32_bitwise(&[&b[..CRC_AT], &b[HEADER_SIZE..]]));
    assert_eq!(recorded, attestation::eif::compute_crc(&b).unwrap());
}

#[test]
fn every_truncation_is_rejected() {
    let b = sample();
    for len in 0..b.len() {
        match Eif::parse(&b[..len]) {
            Err(EifError::TooShort { .. }) => assert!(len < HEADER_SIZE),
            Err(EifError::SectionOutOfBounds { file_len, .. }) => {
                assert!(len >= HEADER_SIZE);
                assert_eq!(file_len, len as u64);
            }
            other => panic!("prefix {len}: unexpected {other:?}"),
        }
    }
}

#[test]
fn bad_magic() {
    let mut b = sample();
    b[0] = b'E';
    fix_crc(&mut b);
    assert!(matches!(Eif::parse(&b), Err(EifError::BadMagic { found }) if &found == b"Eeif"));
}

#[test]
fn bad_version() {
    for version in [0u16, 3, 5, 0xFFFF] {
        let mut b = sample();
        b[4..6].copy_from_slice(&version.to_be_bytes());
        fix_crc(&mut b);
        let err = Eif::parse(&b).unwrap_err();
        assert_eq!(
            err,
            EifError::UnsupportedVersion {
                version,
                supported: 4
            }
        );
        assert!(err.to_string().contains("only version 4"));
    }
}

#[test]
fn bad_crc_in_every_section_and_header() {
    let b = sample();
    let eif = Eif::parse(&b).unwrap();
    let mut cursor = HEADER_SIZE;
    for (index, section) in eif.sections.iter().enumerate() {
        let data_at = cursor + 12;
        let mut bad = b.clone();
        bad[data_at + section.data.len() / 2] ^= 0x01;
        let err = Eif::parse(&bad).unwrap_err();
        let EifError::CrcMismatch { expected, actual } = err else {
            panic!("{:?}: {err:?}", section.kind)
        };
        assert_ne!(expected, actual);
        assert!(err.to_string().contains(&format!("{expected:#010x}")));
        // The view refuses it too; its layout-only parse (CRC checked elsewhere) does not,
        // and sees the changed byte.
        assert!(matches!(
            EifView::parse(&bad),
            Err(EifError::CrcMismatch { .. })
        ));
        let layout = EifView::parse_layout(&bad).expect("layout intact");
        assert_ne!(layout.sections[index].data, &section.data[..]);
        cursor = data_at + section.data.len();
    }
    // Header field outside the tables (reserved) and section header flags.
    for at in [24, HEADER_SIZE + 2, CRC_AT] {
        let mut bad = b.clone();
        bad[at] ^= 0x80;
        assert!(
            matches!(Eif::parse(&bad), Err(EifError::CrcMismatch { .. })),
            "byte {at}"
        );
    }
}

#[test]
fn section_offset_past_end() {
    let mut b = sample();
    let past = b.len() as u64 + 100;
    set_u64(&mut b, OFFSETS_AT + 8, past);
    fix_crc(&mut b);
    let err = Eif::parse(&b).unwrap_err();
    assert!(
        matches!(err, EifError::SectionOutOfBounds { index: 1, .. }),
        "{err:?}"
    );
    assert!(err.to_string().starts_with("Section 1 "));
}

#[test]
fn section_size_overflow() {
    let mut b = sample();
    set_u64(&mut b, SIZES_AT + 8 * 2, u64::MAX);
    fix_crc(&mut b);
    assert!(matches!(
        Eif::parse(&b),
        Err(EifError::SectionOverflow {
            index: 2,
            size: u64::MAX,
            ..
        })
    ));
    let mut b = sample();
    set_u64(&mut b, OFFSETS_AT, u64::MAX - 5);
    fix_crc(&mut b);
    assert!(matches!(
        Eif::parse(&b),
        Err(EifError::SectionOverflow { index: 0, .. })
    ));
}

#[test]
fn section_size_past_end() {
    let mut b = sample();
    set_u64(&mut b, SIZES_AT + 8 * 5, 1 << 40);
    fix_crc(&mut b);
    assert!(matches!(
        Eif::parse(&b),
        Err(EifError::SectionOutOfBounds { index: 5, .. })
    ));
}

#[test]
fn section_count_over_32() {
    for count in [33u16, 0xFFFF] {
        let mut b = sample();
        b[COUNT_AT..COUNT_AT + 2].copy_from_slice(&count.to_be_bytes());
        fix_crc(&mut b);
        assert_eq!(
            Eif::parse(&b),
            Err(EifError::TooManySections {
                count: usize::from(count),
                max: 32
            })
        );
    }
}

#[test]
fn trailing_garbage() {
    let mut b = sample();
    b.extend_from_slice(b"junk");
    fix_crc(&mut b);
    let len = b.len() as u64;
    assert_eq!(
        Eif::parse(&b),
        Err(EifError::TrailingBytes {
            count: 4,
            end: len - 4
        })
    );
}

#[test]
fn fewer_sections_declared_than_present() {
    let mut b = sample();
    b[COUNT_AT..COUNT_AT + 2].copy_from_slice(&5u16.to_be_bytes());
    fix_crc(&mut b);
    assert!(matches!(
        Eif::parse(&b),
        Err(EifError::UnusedSlotNotZero { index: 5 })
    ));
}

#[test]
fn section_header_disagrees_with_table() {
    let mut b = sample();
    let at = HEADER_SIZE + 4; // kernel section header's size
    set_u64(&mut b, at, 10);
    fix_crc(&mut b);
    assert_eq!(
        Eif::parse(&b),
        Err(EifError::SectionSizeMismatch {
            index: 0,
            header_size: 10,
            table_size: 11
        })
    );
}

#[test]
fn invalid_section_types() {
    for raw in [0u16, 6, 0xFFFF] {
        let mut b = sample();
        b[HEADER_SIZE..HEADER_SIZE + 2].copy_from_slice(&raw.to_be_bytes());
        fix_crc(&mut b);
        assert_eq!(
            Eif::parse(&b),
            Err(EifError::InvalidSectionType { index: 0, raw })
        );
    }
}

#[test]
fn duplicate_kernel() {
    let mut b = sample();
    let cmdline_at = HEADER_SIZE + 12 + 11;
    b[cmdline_at..cmdline_at + 2].copy_from_slice(&1u16.to_be_bytes());
    fix_crc(&mut b);
    assert_eq!(
        Eif::parse(&b),
        Err(EifError::DuplicateSection {
            index: 1,
            kind: SectionType::Kernel
        })
    );
}

#[test]
fn non_contiguous_sections() {
    // Swap the first two table entries: both in bounds, but out of order.
    let mut b = sample();
    let (o0, o1) = (be_u64(&b, OFFSETS_AT), be_u64(&b, OFFSETS_AT + 8));
    set_u64(&mut b, OFFSETS_AT, o1);
    set_u64(&mut b, OFFSETS_AT + 8, o0);
    fix_crc(&mut b);
    assert!(matches!(
        Eif::parse(&b),
        Err(EifError::SectionNotContiguous { index: 0, .. })
    ));
}

#[test]
fn writer_refuses_too_many_sections() {
    let mut w = writer();
    w.ramdisks = vec![vec![1]; 30];
    assert!(matches!(
        w.to_bytes(),
        Err(EifError::TooManySections { count: 34, .. })
    ));
    w.ramdisks.truncate(28); // kernel, cmdline, metadata, 28 ramdisks, signature = 32
    let eif = Eif::parse(&w.to_bytes().unwrap()).unwrap();
    assert_eq!(eif.ramdisks().len(), 28);
}

#[test]
fn empty_eif_with_no_sections() {
    let eif = Eif {
        flags: 0,
        default_mem: 0,
        default_cpus: 0,
        sections: vec![],
    };
    let b = eif.to_bytes().unwrap();
    assert_eq!(b.len(), HEADER_SIZE);
    assert_eq!(Eif::parse(&b).unwrap(), eif);
}
