//! Property-style robustness: random mutations of valid inputs never make the parsers panic,
//! and whatever they accept re-encodes stably.

use attestation::cpio;
use attestation::eif::{compute_crc, Eif, EifWriter, HEADER_SIZE};
use attestation::image::describe;

/// xorshift64*: small, deterministic PRNG.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn byte(&mut self) -> u8 {
        self.next().to_le_bytes()[0]
    }
    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n as u64).unwrap()
    }
}

fn valid_eif() -> Vec<u8> {
    let root = cpio::write(&[cpio::CpioEntry::file("init", 0o755, b"\x7fELF".to_vec())]).unwrap();
    let mut w = EifWriter::new(
        b"kernel".to_vec(),
        br#"{"argv":["/init"],"env":[]}"#.to_vec(),
    );
    w.metadata = Some(br#"{"ImageName":"x"}"#.to_vec());
    w.ramdisks = vec![root, b"second".to_vec()];
    w.to_bytes().unwrap()
}

fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut b = input.to_vec();
    for _ in 0..=rng.below(8) {
        match rng.below(10) {
            0 => b.truncate(rng.below(b.len() + 1)),
            1 => b.extend((0..rng.below(16)).map(|_| rng.byte())),
            // Header tables: plant large or boundary values.
            2 | 3 if b.len() >= HEADER_SIZE => {
                let at = 24 + rng.below(HEADER_SIZE - 24 - 8);
                let v = [u64::MAX, 0, 1 << 32, b.len() as u64, rng.next()][rng.below(5)];
                b[at..at + 8].copy_from_slice(&v.to_be_bytes());
            }
            _ if !b.is_empty() => {
                let at = rng.below(b.len());
                b[at] ^= 1 << rng.below(8);
            }
            _ => {}
        }
    }
    // Half the time, fix the CRC so the structural checks behind it are exercised.
    if rng.below(2) == 0 {
        if let Some(crc) = compute_crc(&b) {
            b[544..548].copy_from_slice(&crc.to_be_bytes());
        }
    }
    b
}

#[test]
fn random_eif_mutations_never_panic() {
    let valid = valid_eif();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let (mut accepted, mut rejected) = (0, 0);
    for _ in 0..2000 {
        let b = mutate(&mut rng, &valid);
        match Eif::parse(&b) {
            Ok(eif) => {
                accepted += 1;
                let again = eif.to_bytes().unwrap();
                assert_eq!(again.len(), b.len());
                assert_eq!(Eif::parse(&again).unwrap(), eif);
                let _ = describe(&eif);
                for rd in eif.ramdisks() {
                    let _ = cpio::read(rd);
                }
            }
            Err(e) => {
                rejected += 1;
                assert!(!e.to_string().is_empty());
            }
        }
    }
    assert!(rejected > 1000, "only {rejected} rejected");
    assert!(
        accepted > 0,
        "no mutation survived; the CRC fix-up is not exercising parse"
    );
}

#[test]
fn random_cpio_mutations_never_panic() {
    let valid = cpio::write(&[
        cpio::CpioEntry::file("a/b/c", 0o644, b"data".to_vec()),
        cpio::CpioEntry::symlink("l", "a"),
    ])
    .unwrap();
    let mut rng = Rng(42);
    for _ in 0..2000 {
        let mut b = valid.clone();
        for _ in 0..=rng.below(4) {
            let at = rng.below(b.len());
            b[at] = match rng.below(3) {
                0 => b"0123456789abcdefABCDEF/.g\0"[rng.below(26)],
                _ => rng.byte(),
            };
        }
        if let Ok(entries) = cpio::read(&b) {
            for e in &entries {
                assert!(!e.path.starts_with('/') && !e.path.split('/').any(|p| p == ".."));
            }
        }
    }
}
