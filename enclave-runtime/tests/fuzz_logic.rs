//! Runs the runtime's fuzz-target entry points (`fuzz/fuzz_targets/*`) on their seeds, on
//! mutations of them and on the inputs of crashes found by fuzzing, so their logic compiles
//! and holds under plain `cargo test`.

use enclave_runtime::fuzzing::{elf_loader, image_unpack, seed_elf, seed_image, vsock_handshake};

fn mutations(seed: &[u8], n: usize) -> impl Iterator<Item = Vec<u8>> + '_ {
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    (0..n).map(move |_| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let mut v = seed.to_vec();
        let len = u64::try_from(v.len()).unwrap_or(u64::MAX).max(1);
        let i = usize::try_from(state % len).unwrap_or(0);
        let byte = state.to_le_bytes()[1];
        match state % 4 {
            0 if !v.is_empty() => v[i] ^= byte | 1,
            1 => v.truncate(i),
            2 if !v.is_empty() => v[i] = [0, 0xff, 0x7f, 0x80][usize::from(byte % 4)],
            _ => v.insert(i.min(v.len()), byte),
        }
        v
    })
}

#[test]
fn seeds_are_accepted_by_the_readers() {
    assert!(enclave_runtime::elf::plan(&seed_elf()).is_ok());
    let img = enclave_runtime::image::unpack(&seed_image()).expect("seed image unpacks");
    assert_eq!(img.init(), seed_elf().as_slice());
}

#[test]
fn elf_loader_target_holds() {
    let seed = seed_elf();
    elf_loader(&seed);
    for input in mutations(&seed, 2000) {
        elf_loader(&input);
    }
    elf_loader(&[]);
}

#[test]
fn image_unpack_target_holds() {
    let seed = seed_image();
    image_unpack(&seed);
    for input in mutations(&seed, 500) {
        image_unpack(&input);
    }
    image_unpack(&[]);
}

#[test]
fn vsock_handshake_target_holds() {
    for seed in [
        &b"CONNECT 5000\n"[..],
        b"CONNECT 4294967295\nrest",
        b"CONNECT \n",
    ] {
        vsock_handshake(seed);
        for input in mutations(seed, 500) {
            vsock_handshake(&input);
        }
    }
}

/// Writes the seeds of every fuzz target into `fuzz/seeds/<target>/` (run by hand:
/// `cargo test -p enclave-runtime --test fuzz_logic -- --ignored write_fuzz_seeds`).
#[test]
#[ignore = "writes fuzz/seeds; run by hand when the formats change"]
fn write_fuzz_seeds() {
    use attestation::cpio::{self, CpioEntry};
    use attestation::nsm::{encode_request, Request};
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds");
    let archive = cpio::write(&[
        CpioEntry::file("init", 0o755, seed_elf()),
        CpioEntry::file("etc/motd", 0o644, b"hello".to_vec()),
        CpioEntry::symlink("etc/link", "motd"),
    ])
    .expect("cpio");
    let seeds: [(&str, Vec<u8>); 7] = [
        ("elf_loader", seed_elf()),
        ("image_unpack", seed_image()),
        ("eif_reader", seed_image()),
        ("cpio_reader", archive),
        ("vsock_handshake", b"CONNECT 5000\n".to_vec()),
        (
            "nsm_request",
            encode_request(&Request::Attestation {
                user_data: Some(vec![1; 8]),
                nonce: Some(vec![2; 8]),
                public_key: None,
            }),
        ),
        ("verify_document", attestation::fuzzing::seed_document()),
    ];
    for (target, bytes) in seeds {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).expect("seed dir");
        std::fs::write(dir.join("seed"), bytes).expect("seed");
    }
}
