//! vsock end to end through the real CLI and the SDK: the hello echo servers of
//! `samples/enclave-apps` (std threads; tokio multi-thread runtime) echo 1 byte to 64 MiB of
//! random data intact, serve 32 connections at once, honour half-close, survive a parent that
//! drops mid-stream, and a terminated enclave gives the parent end of stream, not a hang.

mod vsock_support;

use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::time::{Duration, Instant};

use vsock_support::{echo_round, launch, random_bytes, PORT};

const SIZES: &[usize] = &[1, 4 << 10, 1 << 20, 64 << 20];

fn echo_sizes(r: &vsock_support::Running) {
    for (i, &len) in SIZES.iter().enumerate() {
        let data = random_bytes(len, 0x1234 + i as u64);
        echo_round(r.connect(), &data);
    }
}

fn concurrent(r: &vsock_support::Running, n: usize, len: usize) {
    let streams: Vec<_> = (0..n).map(|_| r.connect()).collect();
    let handles: Vec<_> = streams
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            std::thread::spawn(move || echo_round(s, &random_bytes(len, 0xabc0 + i as u64)))
        })
        .collect();
    for h in handles {
        h.join().expect("a concurrent echo failed");
    }
}

/// Half-close: the parent shuts its write side, then still reads the whole echo and EOF;
/// the connection stays usable for reading after the shutdown.
fn half_close(r: &vsock_support::Running) {
    let mut s = r.connect();
    s.write_all(b"first part, ").expect("write");
    s.write_all(b"second part").expect("write");
    s.shutdown(Shutdown::Write).expect("shutdown");
    let mut got = String::new();
    s.read_to_string(&mut got)
        .expect("read after shutdown(Write)");
    assert_eq!(got, "first part, second part");
}

/// The parent drops a connection in the middle of a transfer; the server sees EOF or a reset
/// on that one and keeps serving others.
fn parent_drops_mid_stream(r: &vsock_support::Running) {
    for _ in 0..3 {
        let mut s = r.connect();
        // Less than the socket buffers hold, so the write cannot wait on our own reads.
        s.write_all(&random_bytes(96 << 10, 7)).expect("write");
        let mut some = [0u8; 1024];
        s.read_exact(&mut some).expect("first echo bytes");
        drop(s);
    }
    echo_round(r.connect(), &random_bytes(1 << 20, 99));
}

#[test]
#[cfg_attr(not(enclave_host), ignore = "needs /dev/kvm, root and a cpuset cgroup")]
fn std_threads_echo_server() {
    let r = launch("hello-echo", &[]);
    echo_sizes(&r);
    concurrent(&r, 32, 64 << 10);
    half_close(&r);
    parent_drops_mid_stream(&r);
    // Every connection (sizes, 32 concurrent, half-close, 3 dropped, 1 after) ended in its
    // own thread, with a byte count or the error it saw.
    let expected = SIZES.len() + 32 + 1 + 3 + 1;
    let console = r.console_until(
        |c| c.matches("bytes echoed").count() + c.matches("ended:").count() >= expected,
        Duration::from_secs(10),
    );
    assert!(
        console.contains("hello-echo: listening on vsock port 5000"),
        "{console}"
    );
    let served = console.matches("bytes echoed").count() + console.matches("ended:").count();
    assert!(served >= expected, "{console}");
}

#[test]
#[cfg_attr(not(enclave_host), ignore = "needs /dev/kvm, root and a cpuset cgroup")]
fn tokio_echo_server() {
    let r = launch("hello-echo-tokio", &[]);
    echo_sizes(&r);
    concurrent(&r, 32, 64 << 10);
    half_close(&r);
    parent_drops_mid_stream(&r);
    // The parent side over the SDK's tokio API.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = r.enclave.connect_async(PORT).await.expect("connect_async");
        let data = random_bytes(256 << 10, 5);
        let (mut rd, mut wr) = s.split();
        let write = async {
            wr.write_all(&data).await.expect("write");
            wr.shutdown().await.expect("shutdown");
        };
        let mut got = Vec::new();
        let read = rd.read_to_end(&mut got);
        let ((), n) = tokio::join!(write, read);
        n.expect("read");
        assert!(got == data, "async echo differs");
    });
}

#[test]
#[cfg_attr(not(enclave_host), ignore = "needs /dev/kvm, root and a cpuset cgroup")]
fn unknown_port_is_a_clear_error() {
    let r = launch("hello-echo", &[]);
    drop(r.connect());
    match r.enclave.connect(PORT + 1) {
        Err(sdk::SdkError::PortNotListening { port, enclave_id }) => {
            assert_eq!(port, PORT + 1);
            assert_eq!(enclave_id, r.enclave.id());
        }
        other => panic!("expected PortNotListening, got {other:?}"),
    }
    let msg = r
        .enclave
        .connect(PORT + 1)
        .expect_err("refused")
        .to_string();
    assert!(msg.contains("does not listen on vsock port 5001"), "{msg}");
}

#[test]
#[cfg_attr(not(enclave_host), ignore = "needs /dev/kvm, root and a cpuset cgroup")]
fn terminated_enclave_gives_the_parent_eof() {
    let r = launch("hello-echo", &[]);
    let mut busy = r.connect();
    busy.write_all(&random_bytes(64 << 10, 3)).expect("write");
    let mut first = [0u8; 16];
    busy.read_exact(&mut first).expect("echo started");
    let mut idle = r.connect();
    let started = Instant::now();
    r.enclave.terminate().expect("terminate");
    for s in [&mut busy, &mut idle] {
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut buf = vec![0u8; 1 << 20];
        let end = loop {
            match s.read(&mut buf) {
                Ok(0) => break Ok(()),
                Ok(_) => continue,
                Err(e) => break Err(e),
            }
        };
        match end {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
            Err(e) => panic!("expected EOF or reset after terminate, got {e}"),
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the parent waited {:?}",
        started.elapsed()
    );
    assert!(r.enclave.connect(PORT).is_err(), "connect after terminate");
}
