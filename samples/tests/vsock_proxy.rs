//! `vsock-proxy` without an enclave: a test plays the enclave by connecting to the proxy's
//! Unix socket (exactly what the VMM does for an enclave's connect to CID 3), and a TCP server
//! on 127.0.0.1:0 plays the remote. The library is tested in-process; start-up refusals,
//! logging, the worker limit and signal handling through the built binary.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use samples::vsock_proxy::{Allowlist, Proxy, ProxyConfig, ProxySocket, Stopper};

/// A temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("vsock-proxy-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("mkdir");
        Self(p)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).expect("write");
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A TCP echo server: echoes each connection until EOF, then half-closes.
fn echo_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                let mut r = s.try_clone().expect("clone");
                let _ = std::io::copy(&mut r, &mut s);
                let _ = s.shutdown(Shutdown::Write);
            });
        }
    });
    addr
}

/// Deterministic test bytes (xorshift), different per `seed`.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect()
}

fn allow(dir: &TempDir, port: u16) -> Allowlist {
    let p = dir.write(
        "allow.yaml",
        &format!("allowlist:\n- {{address: 127.0.0.1, port: {port}}}\n"),
    );
    Allowlist::load(&p).expect("allowlist")
}

/// An in-process proxy to `remote`; stopped and its socket removed on drop.
struct Running {
    path: PathBuf,
    stopper: Stopper,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    fn start(dir: &TempDir, config: ProxyConfig) -> Self {
        let path = dir.0.join("vsock.sock_8000");
        let socket = ProxySocket::bind(&path).expect("bind");
        let proxy = Proxy::new(socket, config).expect("proxy");
        let stopper = proxy.stopper();
        let thread = std::thread::spawn(move || {
            proxy.run().expect("run");
        });
        Self {
            path,
            stopper,
            thread: Some(thread),
        }
    }

    fn to(dir: &TempDir, remote: SocketAddr) -> Self {
        Self::start(
            dir,
            ProxyConfig::new("127.0.0.1", remote.port(), allow(dir, remote.port())),
        )
    }

    fn connect(&self) -> UnixStream {
        let s = UnixStream::connect(&self.path).expect("connect to the proxy");
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        s
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stopper.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Sends `data` (from a thread, so both directions move at once), half-closes and returns
/// everything read back until EOF.
fn round_trip(s: UnixStream, data: Arc<Vec<u8>>) -> Vec<u8> {
    try_round_trip(s, data).expect("round trip")
}

/// [`round_trip`], with the first I/O error instead of a panic.
fn try_round_trip(s: UnixStream, data: Arc<Vec<u8>>) -> std::io::Result<Vec<u8>> {
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut w = s.try_clone()?;
    let writer = std::thread::spawn(move || -> std::io::Result<()> {
        w.write_all(&data)?;
        w.shutdown(Shutdown::Write)
    });
    let mut back = Vec::new();
    let read = (&s).read_to_end(&mut back);
    writer.join().expect("writer thread")?;
    read?;
    Ok(back)
}

#[test]
fn forwards_1_byte_to_8_mib_both_ways() {
    let dir = TempDir::new();
    let proxy = Running::to(&dir, echo_server());
    for (i, len) in [1, 2, 4095, 65_536, 65_537, 1 << 20, 8 << 20]
        .into_iter()
        .enumerate()
    {
        let data = Arc::new(pattern(len, 7 + u64::try_from(i).expect("i")));
        let back = round_trip(proxy.connect(), data.clone());
        assert_eq!(back.len(), len, "length of the echo of {len} bytes");
        assert!(back == *data, "content of the echo of {len} bytes differs");
    }
}

#[test]
fn half_close_propagates_both_ways() {
    let dir = TempDir::new();
    // The remote reads to EOF (which only arrives if the proxy half-closed towards it), then
    // answers with what it counted, and half-closes first on its second connection.
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let remote = l.local_addr().expect("addr");
    let remote_side = std::thread::spawn(move || {
        let (mut s, _) = l.accept().expect("accept");
        let mut got = Vec::new();
        s.read_to_end(&mut got).expect("read to eof");
        s.write_all(format!("got {} bytes after eof", got.len()).as_bytes())
            .expect("answer");
        drop(s);
        let (mut s, _) = l.accept().expect("accept 2");
        s.write_all(b"bye").expect("write");
        s.shutdown(Shutdown::Write).expect("remote half-close");
        let mut got = String::new();
        s.read_to_string(&mut got).expect("read");
        got
    });
    let proxy = Running::to(&dir, remote);

    let mut c = proxy.connect();
    c.write_all(b"hello").expect("write");
    c.shutdown(Shutdown::Write).expect("half-close");
    let mut answer = String::new();
    c.read_to_string(&mut answer)
        .expect("answer after half-close");
    assert_eq!(answer, "got 5 bytes after eof");

    let mut c = proxy.connect();
    let mut bye = String::new();
    c.read_to_string(&mut bye)
        .expect("read until the remote's half-close");
    assert_eq!(bye, "bye");
    c.write_all(b"still talking")
        .expect("the other direction stays open");
    c.shutdown(Shutdown::Write).expect("half-close");
    let got = remote_side.join().expect("remote thread");
    assert_eq!(
        got, "still talking",
        "the remote must get what followed its half-close"
    );
}

#[test]
fn fifty_concurrent_connections() {
    let dir = TempDir::new();
    let proxy = Running::to(&dir, echo_server());
    let conns: Vec<_> = (0..50u64).map(|i| (i, proxy.connect())).collect();
    let threads: Vec<_> = conns
        .into_iter()
        .map(|(i, c)| {
            std::thread::spawn(move || {
                let data = Arc::new(pattern(100_000, 1000 + i));
                let back = round_trip(c, data.clone());
                assert!(back == *data, "connection {i}: echo differs");
            })
        })
        .collect();
    for t in threads {
        t.join().expect("connection thread");
    }
}

#[test]
fn a_remote_that_no_longer_resolves_to_an_allowed_ip_is_refused_per_connection() {
    let dir = TempDir::new();
    let echo = echo_server();
    // `svc.test` is allowlisted by name and resolves to 127.0.0.1; the proxy forwards to the
    // alias `alias.test`, which first resolves to 127.0.0.1 and then moves to 127.0.0.2.
    let p = dir.write(
        "allow.yaml",
        &format!(
            "allowlist:\n- {{address: svc.test, port: {}}}\n",
            echo.port()
        ),
    );
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = calls.clone();
    let mut config = ProxyConfig::new(
        "alias.test",
        echo.port(),
        Allowlist::load(&p).expect("load"),
    );
    config.resolve = Arc::new(move |host: &str, port: u16| {
        let ip = match host {
            "svc.test" => "127.0.0.1",
            "alias.test" if seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 2 => {
                "127.0.0.1"
            }
            "alias.test" => "127.0.0.2",
            _ => return Err(std::io::Error::other("unknown host")),
        };
        Ok(vec![SocketAddr::new(ip.parse().expect("ip"), port)])
    });
    // Resolution 1: the start-up check. Resolution 2: the first connection.
    let proxy = Running::start(&dir, config);
    let back = round_trip(proxy.connect(), Arc::new(b"allowed".to_vec()));
    assert_eq!(back, b"allowed");
    let c = proxy.connect();
    let mut buf = [0u8; 1];
    let n = (&c).read(&mut buf).expect("read");
    assert_eq!(n, 0, "the moved remote must be refused");
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 3);
}

#[test]
fn the_proxy_stops_when_its_socket_file_goes_away() {
    let dir = TempDir::new();
    let echo = echo_server();
    let path = dir.0.join("vsock.sock_8000");
    let proxy = Proxy::new(
        ProxySocket::bind(&path).expect("bind"),
        ProxyConfig::new("127.0.0.1", echo.port(), allow(&dir, echo.port())),
    )
    .expect("proxy");
    // As when the run directory of the enclave it served is removed.
    std::fs::remove_file(&path).expect("rm");
    let err = proxy.run().expect_err("must stop");
    assert!(err.to_string().contains("was removed or replaced"), "{err}");

    let mut zero = ProxyConfig::new("127.0.0.1", echo.port(), allow(&dir, echo.port()));
    zero.num_workers = 0;
    let socket = ProxySocket::bind(&path).expect("bind");
    let err = Proxy::new(socket, zero).expect_err("0 workers");
    assert!(err.to_string().contains("at least 1"), "{err}");
    assert!(
        !path.exists(),
        "a proxy that never ran still removes its socket"
    );
}

// ---- through the binary ----

/// The built binary with an isolated run root and the allowlist `allow`.
fn command(dir: &TempDir, allow: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vsock-proxy"));
    c.args(args)
        .arg("--config")
        .arg(allow)
        .env("ENCLAVE_RUN_ROOT", dir.0.join("run"))
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    c
}

/// A running binary: its first stdout line has been read; stderr goes to a file.
struct Bin {
    child: Child,
    socket: PathBuf,
    log: PathBuf,
}

impl Bin {
    fn start(dir: &TempDir, allow: &Path, args: &[&str]) -> Self {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log = dir.0.join(format!("proxy-{n}.log"));
        let mut child = command(dir, allow, args)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("spawn vsock-proxy");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read the start line");
        let v: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("start line {line:?}: {e}; log: {}", read(&log)));
        let socket = PathBuf::from(v["Listening"].as_str().expect("Listening"));
        Self { child, socket, log }
    }

    fn log(&self) -> String {
        read(&self.log)
    }

    /// Waits until the log contains `what`.
    fn wait_log(&self, what: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let log = self.log();
            if log.contains(what) {
                return log;
            }
            assert!(Instant::now() < deadline, "no {what:?} in the log:\n{log}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid");
        // SAFETY: kill has no memory effects; `pid` is our own child, not yet reaped.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        self.child.wait().expect("wait")
    }
}

impl Drop for Bin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

fn allow_file(dir: &TempDir, port: u16) -> PathBuf {
    dir.write(
        "allow.yaml",
        &format!("allowlist:\n- {{address: kms.us-east-1.amazonaws.com, port: 443}}\n- {{address: 127.0.0.1, port: {port}}}\n"),
    )
}

#[test]
fn binary_prints_the_start_line_forwards_and_removes_its_socket_on_sigterm() {
    let dir = TempDir::new();
    let echo = echo_server();
    let allow = allow_file(&dir, echo.port());
    let port = echo.port().to_string();
    let mut bin = Bin::start(&dir, &allow, &["8000", "127.0.0.1", &port]);
    assert_eq!(bin.socket, dir.0.join("run/vsock.sock_8000"));
    assert!(bin.socket.exists());
    let back = round_trip(
        UnixStream::connect(&bin.socket).expect("connect"),
        Arc::new(b"through the binary".to_vec()),
    );
    assert_eq!(back, b"through the binary");
    let log = bin.wait_log("connection closed");
    assert!(
        log.contains("to_remote=18") && log.contains("from_remote=18"),
        "{log}"
    );
    let status = bin.terminate();
    assert!(status.success(), "{status:?}: {}", bin.log());
    assert!(!bin.socket.exists(), "the socket outlived SIGTERM");
    assert!(bin.log().contains("socket_removed=true"), "{}", bin.log());
}

#[test]
fn remote_not_in_the_allowlist_refuses_to_start() {
    let dir = TempDir::new();
    let allow = allow_file(&dir, 8000);
    let out = command(&dir, &allow, &["8000", "127.0.0.1", "9000"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("127.0.0.1:9000 is not in the allowlist")
            && err.contains("add `- {address: 127.0.0.1, port: 9000}`"),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "no start line expected");
    assert!(!dir.0.join("run/vsock.sock_8000").exists());

    let out = command(&dir, &allow, &["8000", "127.0.0.1", "9000", "--json"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json error");
    assert!(
        v["Causes"].to_string().contains("is not in the allowlist"),
        "{v}"
    );
}

#[test]
fn malformed_yaml_is_reported_with_its_line() {
    let dir = TempDir::new();
    let bad = dir.write(
        "bad.yaml",
        "allowlist:\n- {address: 127.0.0.1, port: 8000}\n- {address: 127.0.0.1, port: eighty}\n",
    );
    let out = command(&dir, &bad, &["8000", "127.0.0.1", "8000"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("malformed allowlist") && err.contains("at line 3"),
        "{err}"
    );
    let missing = dir.0.join("missing.yaml");
    let out = command(&dir, &missing, &["8000", "127.0.0.1", "8000"])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("cannot read the allowlist"),
        "{err}"
    );
}

#[test]
fn worker_limit_refuses_the_extra_connection() {
    let dir = TempDir::new();
    let echo = echo_server();
    let allow = allow_file(&dir, echo.port());
    let port = echo.port().to_string();
    let bin = Bin::start(
        &dir,
        &allow,
        &["8000", "127.0.0.1", &port, "--num-workers", "2"],
    );
    // Two connections, proven live by a round trip each, occupy both workers.
    let held: Vec<UnixStream> = (0..2)
        .map(|_| {
            let mut c = UnixStream::connect(&bin.socket).expect("connect");
            c.set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
            c.write_all(b"x").expect("write");
            let mut b = [0u8; 1];
            c.read_exact(&mut b).expect("echo");
            c
        })
        .collect();
    let third = UnixStream::connect(&bin.socket).expect("connect");
    third
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut b = [0u8; 1];
    match (&third).read(&mut b) {
        Ok(0) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        other => panic!("the third connection must be closed: {other:?}"),
    }
    bin.wait_log("worker limit reached (2 connections at once)");
    // A freed worker serves again.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let c = UnixStream::connect(&bin.socket).expect("connect");
        c.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        if try_round_trip(c, Arc::new(b"again".to_vec())).is_ok_and(|b| b == b"again") {
            break;
        }
        assert!(Instant::now() < deadline, "no worker freed: {}", bin.log());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn remote_down_closes_the_client_and_logs_it() {
    let dir = TempDir::new();
    let down = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = down.local_addr().expect("addr").port();
    drop(down);
    let allow = allow_file(&dir, port);
    let p = port.to_string();
    let bin = Bin::start(&dir, &allow, &["8000", "127.0.0.1", &p]);
    let c = UnixStream::connect(&bin.socket).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut b = [0u8; 1];
    match (&c).read(&mut b) {
        Ok(0) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        other => panic!("the client must be closed, not left hanging: {other:?}"),
    }
    let log = bin.wait_log("connection refused");
    assert!(log.contains("unreachable"), "{log}");
}

#[test]
fn a_live_proxy_keeps_its_socket_and_a_stale_one_is_replaced() {
    let dir = TempDir::new();
    let echo = echo_server();
    let allow = allow_file(&dir, echo.port());
    let port = echo.port().to_string();
    let run_dir = dir.0.join("custom");
    let rd = run_dir.to_str().expect("utf-8");
    let first = Bin::start(&dir, &allow, &["8000", "127.0.0.1", &port, "--run-dir", rd]);
    assert_eq!(first.socket, run_dir.join("vsock.sock_8000"));
    let out = command(&dir, &allow, &["8000", "127.0.0.1", &port, "--run-dir", rd])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("already has a live listener"),
        "{err}"
    );
    assert!(first.socket.exists(), "the live proxy's socket was taken");

    // A socket file with nobody listening (as after a crash) is replaced.
    drop(first);
    let stale = run_dir.join("vsock.sock_8000");
    assert!(stale.exists(), "a killed proxy leaves its socket behind");
    let second = Bin::start(&dir, &allow, &["8000", "127.0.0.1", &port, "--run-dir", rd]);
    let back = round_trip(
        UnixStream::connect(&second.socket).expect("connect"),
        Arc::new(b"fresh".to_vec()),
    );
    assert_eq!(back, b"fresh");

    // --enclave-id needs the enclave's run directory.
    let out = command(
        &dir,
        &allow,
        &[
            "8000",
            "127.0.0.1",
            &port,
            "--enclave-id",
            "enc-0000000000000001",
        ],
    )
    .output()
    .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("is it running"),
        "{err}"
    );
}
