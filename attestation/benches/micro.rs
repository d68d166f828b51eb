//! Criterion micro-benchmarks of the attestation crate's hot paths: PCR hashing, attestation
//! document CBOR encode/decode, COSE_Sign1 verification, cpio archive building and EIF
//! parsing. `cargo bench -p attestation --bench micro`; under `cargo test --all-targets`
//! criterion runs each once as a smoke test (milliseconds).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Duration;

use attestation::ca::{now_ms, Ca, LeafAttester};
use attestation::cose;
use attestation::cpio::{self, CpioEntry};
use attestation::document::AttestationDocument;
use attestation::eif::{EifView, EifWriter};
use attestation::pcr;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn bytes(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(31) >> 3).to_le_bytes()[0])
        .collect()
}

fn pcr_hashing(c: &mut Criterion) {
    let data = bytes(1 << 20);
    let mut g = c.benchmark_group("pcr");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("measure 1 MiB", |b| {
        b.iter(|| pcr::measure(black_box(&data)))
    });
    g.finish();
}

fn document(c: &mut Criterion) {
    let Ok(generated) = Ca::generate() else {
        eprintln!("micro: cannot create a CA; document benches skipped");
        return;
    };
    let ca = generated.ca;
    let Ok(leaf) = ca.issue_leaf("micro", Duration::from_secs(3600)) else {
        eprintln!("micro: cannot issue a leaf; document benches skipped");
        return;
    };
    let key = *leaf.key.verifying_key();
    let attester = LeafAttester::new(leaf, "micro", false);
    let pcrs: BTreeMap<u16, [u8; 48]> = (0u16..16).map(|i| (i, [0x5a; 48])).collect();
    let Ok(signed) = attester.attest_at(now_ms(), &pcrs, Some(b"user"), Some(&[7; 32]), None)
    else {
        eprintln!("micro: cannot attest; document benches skipped");
        return;
    };
    let Ok(parsed) = cose::parse(&signed, 1 << 16) else {
        eprintln!("micro: cannot parse the document; document benches skipped");
        return;
    };
    let payload = parsed.payload().to_vec();
    let Ok(doc) = AttestationDocument::from_cbor(&payload) else {
        eprintln!("micro: cannot decode the payload; document benches skipped");
        return;
    };
    c.bench_function("document/cbor decode", |b| {
        b.iter(|| AttestationDocument::from_cbor(black_box(&payload)))
    });
    c.bench_function("document/cbor encode", |b| {
        b.iter(|| black_box(&doc).to_cbor())
    });
    c.bench_function("cose/parse", |b| {
        b.iter(|| cose::parse(black_box(&signed), 1 << 16))
    });
    c.bench_function("cose/verify ES384", |b| {
        b.iter(|| parsed.verify(black_box(&key)))
    });
}

fn cpio_and_eif(c: &mut Criterion) {
    let entries: Vec<CpioEntry> = (0..64)
        .map(|i| CpioEntry::file(format!("dir/file-{i}"), 0o644, bytes(16 << 10)))
        .collect();
    c.bench_function("cpio/write 64 x 16 KiB", |b| {
        b.iter(|| cpio::write(black_box(&entries)))
    });
    let mut w = EifWriter::new(bytes(1 << 20), b"console=ttyS0".to_vec());
    w.ramdisks.push(bytes(4 << 20));
    let Ok(eif) = w.to_bytes() else {
        eprintln!("micro: cannot build an EIF; EIF bench skipped");
        return;
    };
    let mut g = c.benchmark_group("eif");
    g.throughput(Throughput::Bytes(eif.len() as u64));
    g.bench_function("parse 5 MiB (CRC checked)", |b| {
        b.iter(|| EifView::parse(black_box(&eif)).map(|v| v.sections.len()))
    });
    g.finish();
}

criterion_group! {
    name = micro;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    targets = pcr_hashing, document, cpio_and_eif
}
criterion_main!(micro);
