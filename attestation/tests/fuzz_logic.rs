//! Runs the fuzz targets' entry points (`fuzz/fuzz_targets/*`) on seeds and mutations, so
//! their logic compiles and holds under plain `cargo test`.

use attestation::fuzzing::{nsm_request, seed_document, verify_document};
use attestation::nsm::{encode_request, Request};

fn mutations(seed: &[u8], n: usize) -> impl Iterator<Item = Vec<u8>> + '_ {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n).map(move |_| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let mut v = seed.to_vec();
        if v.is_empty() {
            return vec![state.to_le_bytes()[0]];
        }
        let len = u64::try_from(v.len()).unwrap_or(u64::MAX);
        let i = usize::try_from(state % len).unwrap_or(0);
        match state % 3 {
            0 => v[i] ^= state.to_le_bytes()[1] | 1,
            1 => v.truncate(i),
            _ => v.insert(i, state.to_le_bytes()[2]),
        }
        v
    })
}

#[test]
fn nsm_request_target_holds() {
    let seed = encode_request(&Request::Attestation {
        user_data: Some(vec![1; 8]),
        nonce: None,
        public_key: None,
    });
    for input in mutations(&seed, 300) {
        nsm_request(&input);
    }
    nsm_request(&[]);
}

#[test]
fn verify_document_target_holds() {
    let seed = seed_document();
    assert!(!seed.is_empty());
    for input in mutations(&seed, 200) {
        verify_document(&input);
    }
    verify_document(&[]);
}

#[test]
fn eif_and_cpio_reader_targets_hold() {
    use attestation::cpio::{self, CpioEntry};
    use attestation::eif::EifWriter;
    use attestation::fuzzing::{cpio_reader, eif_reader};
    let archive = cpio::write(&[
        CpioEntry::dir("etc", 0o755),
        CpioEntry::file("etc/motd", 0o644, b"hello".to_vec()),
        CpioEntry::symlink("link", "etc/motd"),
    ])
    .expect("cpio");
    let mut w = EifWriter::new(b"kernel".to_vec(), b"cmdline".to_vec());
    w.ramdisks.push(archive.clone());
    w.metadata = Some(b"{}".to_vec());
    let eif = w.to_bytes().expect("eif");
    for input in mutations(&archive, 1000) {
        cpio_reader(&input);
    }
    for input in mutations(&eif, 1000) {
        eif_reader(&input);
    }
    cpio_reader(&archive);
    eif_reader(&eif);
    cpio_reader(&[]);
    eif_reader(&[]);
}
