//! cpio newc writer/reader: round trip, reproducibility, byte format, hostile archives.

use attestation::cpio::{self, CpioEntry, CpioError, S_IFDIR, S_IFLNK, S_IFREG};

fn sample_entries() -> Vec<CpioEntry> {
    vec![
        CpioEntry::file("usr/bin/app", 0o755, b"\x7fELF binary".to_vec()),
        CpioEntry::file("/etc/hosts", 0o644, b"127.0.0.1 localhost\n".to_vec()),
        CpioEntry::symlink("bin", "usr/bin"),
        CpioEntry::dir("tmp", 0o1777),
        CpioEntry::file("empty", 0o600, Vec::new()),
    ]
}

/// One raw newc entry with the given field values (hex strings to allow bad ones).
fn raw(fields: [&str; 13], name: &[u8], data: &[u8]) -> Vec<u8> {
    let mut out = b"070701".to_vec();
    for f in fields {
        out.extend_from_slice(f.as_bytes());
    }
    out.extend_from_slice(name);
    out.resize(out.len().next_multiple_of(4), 0);
    out.extend_from_slice(data);
    out.resize(out.len().next_multiple_of(4), 0);
    out
}

fn hex(v: usize) -> String {
    format!("{v:08x}")
}

/// A well-formed regular-file entry.
fn file_entry(name: &str, mode: u32, data: &[u8]) -> Vec<u8> {
    let (m, size, ns) = (format!("{mode:08x}"), hex(data.len()), hex(name.len() + 1));
    let z = "00000000";
    let mut n = name.as_bytes().to_vec();
    n.push(0);
    raw(
        [z, &m, z, z, "00000001", z, &size, z, z, z, z, &ns, z],
        &n,
        data,
    )
}

fn trailer() -> Vec<u8> {
    file_entry("TRAILER!!!", 0, b"")
}

fn archive(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

#[test]
fn round_trip_with_implicit_parents() {
    let bytes = cpio::write(&sample_entries()).unwrap();
    let read = cpio::read(&bytes).unwrap();
    let listing: Vec<(&str, u32)> = read.iter().map(|e| (e.path.as_str(), e.mode)).collect();
    assert_eq!(
        listing,
        vec![
            ("bin", S_IFLNK | 0o777),
            ("empty", S_IFREG | 0o600),
            ("etc", S_IFDIR | 0o755),
            ("etc/hosts", S_IFREG | 0o644),
            ("tmp", S_IFDIR | 0o1777),
            ("usr", S_IFDIR | 0o755),
            ("usr/bin", S_IFDIR | 0o755),
            ("usr/bin/app", S_IFREG | 0o755),
        ]
    );
    assert_eq!(read[0].data, b"usr/bin");
    assert_eq!(read[3].data, b"127.0.0.1 localhost\n");
    assert_eq!(read[7].data, b"\x7fELF binary");
}

#[test]
fn reproducible_regardless_of_input_order() {
    let mut reversed = sample_entries();
    reversed.reverse();
    assert_eq!(
        cpio::write(&sample_entries()).unwrap(),
        cpio::write(&reversed).unwrap()
    );
}

#[test]
fn byte_format_is_newc() {
    let bytes = cpio::write(&[CpioEntry::file("a", 0o644, b"xyz".to_vec())]).unwrap();
    let header = std::str::from_utf8(&bytes[..110]).unwrap();
    // magic ino mode uid gid nlink mtime size devmaj devmin rdevmaj rdevmin namesize check
    assert_eq!(
        header,
        "070701\
         00000001000081a4000000000000000000000001000000000000000300000000\
         00000000000000000000000000000002\
         00000000"
    );
    assert_eq!(&bytes[110..112], b"a\0");
    assert_eq!(&bytes[112..115], b"xyz"); // 112 is 4-aligned
    assert_eq!(bytes[115], 0);
    assert_eq!(&bytes[116..122], b"070701");
    assert!(bytes.windows(11).any(|w| w == b"TRAILER!!!\0"));
    assert_eq!(bytes.len() % 4, 0);
    // Directories get nlink 2.
    let dir = cpio::write(&[CpioEntry::dir("d", 0o755)]).unwrap();
    assert_eq!(&dir[6 + 4 * 8..6 + 5 * 8], b"00000002");
}

#[test]
fn writer_refuses_bad_inputs() {
    let dup = [
        CpioEntry::file("a/b", 0o644, vec![]),
        CpioEntry::file("/a//b", 0o644, vec![]),
    ];
    assert!(matches!(cpio::write(&dup), Err(CpioError::Duplicate { path }) if path == "a/b"));
    let dotdot = [CpioEntry::file("a/../../etc/passwd", 0o644, vec![])];
    assert!(matches!(
        cpio::write(&dotdot),
        Err(CpioError::BadPath { .. })
    ));
    let parent_is_file = [
        CpioEntry::file("a", 0o644, vec![]),
        CpioEntry::file("a/b", 0o644, vec![]),
    ];
    assert!(matches!(
        cpio::write(&parent_is_file),
        Err(CpioError::ParentNotDirectory { .. })
    ));
    let device = [CpioEntry {
        path: "dev/x".into(),
        mode: 0o020_644,
        data: vec![],
    }];
    assert!(matches!(
        cpio::write(&device),
        Err(CpioError::UnsupportedType { .. })
    ));
}

#[test]
fn reader_accepts_handmade_archive() {
    let a = archive(&[
        file_entry("x", 0o100_644, b"hello"),
        trailer(),
        vec![0; 512],
    ]);
    let read = cpio::read(&a).unwrap();
    assert_eq!(read, vec![CpioEntry::file("x", 0o644, b"hello".to_vec())]);
}

#[test]
fn reader_rejects_bad_hex() {
    let good = file_entry("x", 0o100_644, b"hi");
    for (field, bad) in [
        (1usize, "0000000g"),
        (1, "+0000001"),
        (6, " 0000002"),
        (11, "-0000001"),
    ] {
        let mut a = good.clone();
        let at = 6 + 8 * field;
        a[at..at + 8].copy_from_slice(bad.as_bytes());
        a.extend(trailer());
        assert!(
            matches!(cpio::read(&a), Err(CpioError::BadHexField { .. })),
            "field {field} = {bad:?}"
        );
    }
}

#[test]
fn reader_rejects_hostile_sizes() {
    let z = "00000000";
    // Name size 0 and over 4096.
    for ns in ["00000000", "00001001", "ffffffff"] {
        let a = archive(&[
            raw(
                [z, "000081a4", z, z, z, z, z, z, z, z, z, ns, z],
                b"x\0",
                b"",
            ),
            trailer(),
        ]);
        assert!(
            matches!(cpio::read(&a), Err(CpioError::BadNameSize { .. })),
            "{ns}"
        );
    }
    // File size past end of input.
    let a = raw(
        [
            z, "000081a4", z, z, z, z, "7fffffff", z, z, z, z, "00000002", z,
        ],
        b"x\0",
        b"abc",
    );
    assert!(matches!(
        cpio::read(&a),
        Err(CpioError::Truncated {
            what: "file data",
            ..
        })
    ));
    let a = raw(
        [
            z, "000081a4", z, z, z, z, "ffffffff", z, z, z, z, "00000002", z,
        ],
        b"x\0",
        b"",
    );
    assert!(matches!(cpio::read(&a), Err(CpioError::Truncated { .. })));
}

#[test]
fn reader_rejects_hostile_paths() {
    for name in [
        "../etc/passwd",
        "a/../../b",
        "/etc/passwd",
        "a//b",
        "a/./b",
        "a/",
    ] {
        let a = archive(&[file_entry(name, 0o100_644, b""), trailer()]);
        assert!(
            matches!(cpio::read(&a), Err(CpioError::BadPath { .. })),
            "{name}"
        );
    }
    let a = archive(&[
        file_entry("a", 0o100_644, b""),
        file_entry("./a", 0o100_644, b""),
        trailer(),
    ]);
    assert!(matches!(cpio::read(&a), Err(CpioError::Duplicate { path }) if path == "a"));
}

#[test]
fn reader_rejects_bad_names_types_and_ends() {
    // Name not NUL-terminated / interior NUL / not UTF-8.
    let z = "00000000";
    for name in [&b"ab"[..], b"a\0\0", b"\xff\0"] {
        let a = archive(&[
            raw(
                [
                    z,
                    "000081a4",
                    z,
                    z,
                    z,
                    z,
                    z,
                    z,
                    z,
                    z,
                    z,
                    &hex(name.len()),
                    z,
                ],
                name,
                b"",
            ),
            trailer(),
        ]);
        assert!(
            matches!(cpio::read(&a), Err(CpioError::BadName { .. })),
            "{name:?}"
        );
    }
    // Device node, directory with data, symlink without target.
    let a = archive(&[file_entry("dev/sda", 0o060_660, b""), trailer()]);
    assert!(matches!(
        cpio::read(&a),
        Err(CpioError::UnsupportedType { .. })
    ));
    let a = archive(&[file_entry("d", 0o040_755, b"data"), trailer()]);
    assert!(matches!(cpio::read(&a), Err(CpioError::BadEntry { .. })));
    let a = archive(&[file_entry("l", 0o120_777, b""), trailer()]);
    assert!(matches!(cpio::read(&a), Err(CpioError::BadEntry { .. })));
    // Missing trailer, bad magic, data after trailer.
    assert_eq!(
        cpio::read(&file_entry("x", 0o100_644, b"")),
        Err(CpioError::MissingTrailer)
    );
    let mut a = archive(&[file_entry("x", 0o100_644, b""), trailer()]);
    a[0] = b'1';
    assert!(matches!(
        cpio::read(&a),
        Err(CpioError::BadMagic { offset: 0, .. })
    ));
    let a = archive(&[trailer(), b"evil".to_vec()]);
    assert!(matches!(
        cpio::read(&a),
        Err(CpioError::TrailingData { .. })
    ));
}

#[test]
fn every_truncation_is_rejected() {
    let bytes = cpio::write(&sample_entries()).unwrap();
    // The trailer's padding is the last 0..3 bytes; anything shorter than the trailer name fails.
    let trailer_name_end = bytes
        .windows(11)
        .position(|w| w == b"TRAILER!!!\0")
        .unwrap()
        + 11;
    for len in 0..trailer_name_end {
        assert!(cpio::read(&bytes[..len]).is_err(), "prefix {len}");
    }
}
