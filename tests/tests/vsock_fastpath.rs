//! The vsock transmit fast path (the syscall stub copies `write`/`send` into a ring in guest
//! memory; the VMM drains it) keeps Linux semantics: the `fastpath` C guest checks that no
//! register but rax/rcx/r11 changes across a call and that bad buffers give EFAULT, and this
//! parent checks every byte and the order of what arrives: small records, records that wrap
//! the ring, alternating write/send, writes through a dup, three threads on their own
//! connections, and a last record written right before `exit_group`. Under kvm_pvm the stub
//! serves these writes itself; under hardware KVM every call exits and the same checks hold.

mod vsock_support;

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use tests::{guest_program, PoolSpec, TestEnv};
use vsock_support::{enclaves, MEMORY_MIB};

const PORT: u32 = 7100;
/// Connections the guest makes: its main one and three threads'.
const CONNECTIONS: usize = 4;

/// The records of one connection: (sequence, payload length), after checking every byte.
fn parse_records(bytes: &[u8]) -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        assert!(at + 8 <= bytes.len(), "truncated header at {at}");
        let seq = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
        let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap());
        let body = bytes
            .get(at + 8..at + 8 + len as usize)
            .unwrap_or_else(|| panic!("record {seq} of {len} bytes truncated at {at}"));
        for (i, b) in body.iter().enumerate() {
            let want = seq.wrapping_mul(31).to_le_bytes()[0].wrapping_add(i.to_le_bytes()[0]);
            assert_eq!(*b, want, "record {seq} byte {i} (stream offset {at})");
        }
        out.push((seq, len));
        at += 8 + len as usize;
    }
    out
}

#[test]
#[cfg_attr(not(enclave_host), ignore = "needs /dev/kvm, root and a cpuset cgroup")]
fn stub_writes_keep_order_content_and_registers() {
    let env = TestEnv::new().expect("test env");
    env.apply_pool(&PoolSpec::new(MEMORY_MIB, 1));
    let program = guest_program("fastpath").unwrap_or_else(|e| panic!("{e}"));
    let eif = env.root().join("fastpath.eif");
    env.cli([
        "build-enclave".as_ref(),
        "--binary".as_ref(),
        program.as_os_str(),
        "--cmd".as_ref(),
        PORT.to_string().as_ref(),
        "--output-file".as_ref(),
        eif.as_os_str(),
    ])
    .ok();
    // Parent-wide listener, bound before the launch.
    let listener = enclaves(&env).listen(PORT).expect("listen");
    let receiver = std::thread::spawn(move || {
        let readers: Vec<_> = (0..CONNECTIONS)
            .map(|_| {
                let mut s: UnixStream = listener.accept().expect("accept");
                s.set_read_timeout(Some(Duration::from_secs(60)))
                    .expect("timeout");
                std::thread::spawn(move || {
                    let mut got = Vec::new();
                    s.read_to_end(&mut got).expect("read to end");
                    got
                })
            })
            .collect();
        readers
            .into_iter()
            .map(|r| r.join().expect("reader"))
            .collect::<Vec<_>>()
    });
    let out = env.run_debug(&eif);
    assert!(out.stdout.contains("fastpath: ok"), "{out}");
    out.ok();
    let streams = receiver.join().expect("receiver");

    // The main connection (accepted first: it connects before the threads start).
    let main = parse_records(&streams[0]);
    for (i, (seq, _)) in main.iter().enumerate() {
        assert_eq!(*seq as usize, i, "records out of order");
    }
    let small = 2000;
    assert_eq!(
        main.len(),
        small + 400 + 200 + 1,
        "records on the main connection"
    );
    assert_eq!(
        main.last().map(|r| r.1),
        Some(4000),
        "the record written right before exit_group"
    );
    // Each thread's connection: in order, at least 2 MiB of payload.
    for s in &streams[1..] {
        let recs = parse_records(s);
        for (i, (seq, _)) in recs.iter().enumerate() {
            assert_eq!(*seq as usize, i, "a thread's records out of order");
        }
        let payload: u64 = recs.iter().map(|r| u64::from(r.1)).sum();
        assert!(payload >= 2 << 20, "a thread sent {payload} bytes");
    }
}
