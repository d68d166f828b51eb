//! Nitro's boot heartbeat through the real VMM. The test plays the launcher around the hidden
//! `__vmm` entry (the part `enclave run-enclave` plays): it listens on the run directory's
//! `vsock.sock_9000`, receives the enclave's 0xB7 and checks that the VMM has not reported the
//! enclave before the answer; then it answers, late or never, or does not listen at all. The
//! timeout is shortened through the VMM's hidden `ENCLAVE_HEARTBEAT_TIMEOUT_MS`.

mod vsock_support;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::Child;
use std::time::Duration;

use tests::{PoolSpec, TestEnv};
use vsock_support::{build_eif, MEMORY_MIB};

const HEARTBEAT: u8 = 0xB7;

/// A VMM started by the test, with the read end of its status pipe.
struct Vmm {
    child: Child,
    status: OwnedFd,
    id: String,
}

impl Vmm {
    /// Starts `enclave __vmm` for enclave `id` from `eif` (debug mode); `timeout_ms` overrides
    /// the heartbeat timeout.
    fn start(env: &TestEnv, eif: &Path, id: &str, timeout_ms: Option<u64>) -> Self {
        let request = serde_json::json!({
            "enclave_id": id,
            "eif_path": eif,
            "cpus": {"Count": 1},
            "memory_mib": MEMORY_MIB,
            "cid": null,
            "name": "heartbeat",
            "debug": true,
            "console_fd": null,
        });
        let mut fds = [0i32; 2];
        // SAFETY: `fds` is a valid array of two ints for pipe to fill.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0, "pipe");
        // SAFETY: pipe succeeded: both descriptors are open and owned by nobody else.
        let (read_end, write_end) =
            unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let mut cmd = env.command(tests::enclave_bin());
        cmd.arg("__vmm")
            .arg("--request")
            .arg(request.to_string())
            .arg("--status-fd")
            .arg(write_end.as_raw_fd().to_string())
            .stdin(std::process::Stdio::null());
        if let Some(ms) = timeout_ms {
            cmd.env("ENCLAVE_HEARTBEAT_TIMEOUT_MS", ms.to_string());
        }
        let child = cmd.spawn().expect("start the VMM");
        drop(write_end);
        Vmm {
            child,
            status: read_end,
            id: id.to_owned(),
        }
    }

    /// True when the VMM has reported within `wait`.
    fn reported_within(&self, wait: Duration) -> bool {
        let mut p = libc::pollfd {
            fd: self.status.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = i32::try_from(wait.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: polls one valid pollfd on a descriptor we own.
        unsafe { libc::poll(&mut p, 1, ms) > 0 }
    }

    /// The VMM's status line.
    fn status(&self) -> serde_json::Value {
        assert!(self.reported_within(Duration::from_secs(60)), "no status");
        let fd = self.status.try_clone().expect("dup");
        let mut line = String::new();
        BufReader::new(std::fs::File::from(fd))
            .read_line(&mut line)
            .expect("read the status");
        serde_json::from_str(line.trim()).unwrap_or_else(|e| panic!("{e}: {line:?}"))
    }

    fn run_dir(&self, env: &TestEnv) -> std::path::PathBuf {
        env.run_root().join(&self.id)
    }

    /// Terminates the enclave (if it runs) and reaps the VMM.
    fn end(mut self, env: &TestEnv) {
        let _ = env
            .command(tests::enclave_bin())
            .args(["terminate-enclave", "--enclave-id", &self.id])
            .output();
        let _ = self.child.wait();
    }
}

/// A fresh enclave id (`enc-` and 16 hex digits).
fn new_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let low = u64::try_from(nanos & u128::from(u64::MAX)).unwrap_or(0);
    format!("enc-{:016x}", low ^ u64::from(std::process::id()))
}

/// The parent listener on port 9000 of the enclave `id`, made before the VMM starts.
fn listen_9000(env: &TestEnv, id: &str) -> UnixListener {
    let dir = env.run_root().join(id);
    std::fs::create_dir_all(&dir).expect("run dir");
    UnixListener::bind(dir.join("vsock.sock_9000")).expect("listen on vsock.sock_9000")
}

/// The enclave's heartbeat connection on `listener`, within 30 s.
fn accept_heartbeat(listener: &UnixListener) -> std::os::unix::net::UnixStream {
    listener.set_nonblocking(true).expect("nonblocking");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        match listener.accept() {
            Ok((c, _)) => {
                c.set_nonblocking(false).expect("blocking");
                c.set_read_timeout(Some(Duration::from_secs(30)))
                    .expect("timeout");
                return c;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("accept: {e}"),
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the enclave never connected to CID 3 port 9000"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn setup(program: &str) -> (TestEnv, std::path::PathBuf) {
    let env = TestEnv::new().expect("test env");
    env.apply_pool(&PoolSpec::new(MEMORY_MIB, 1));
    let eif = build_eif(&env, program, &[]);
    (env, eif)
}

#[test]
#[cfg_attr(not(enclave_host), ignore = "needs /dev/kvm, root and a cpuset cgroup")]
fn running_only_after_the_heartbeat_is_answered() {
    let (env, eif) = setup("hello-echo");
    // Listening before the VMM starts, as the launcher does.
    let id = new_id();
    let listener = listen_9000(&env, &id);
    let vmm = Vmm::start(&env, &eif, &id, None);
    let mut conn = accept_heartbeat(&listener);
    let mut beat = [0u8; 1];
    conn.read_exact(&mut beat).expect("the heartbeat byte");
    assert_eq!(beat[0], HEARTBEAT);
    // Not RUNNING before the answer, even after a while.
    assert!(
        !vmm.reported_within(Duration::from_millis(500)),
        "the VMM reported before the heartbeat was answered: {}",
        vmm.status()
    );
    conn.write_all(&[HEARTBEAT]).expect("answer");
    let status = vmm.status();
    assert_eq!(status["ready"]["State"], "RUNNING", "{status}");
    assert_eq!(status["ready"]["EnclaveID"], vmm.id.as_str(), "{status}");
    vmm.end(&env);
}

#[test]
#[cfg_attr(not(enclave_host), ignore = "needs /dev/kvm, root and a cpuset cgroup")]
fn a_heartbeat_without_answer_or_listener_fails_the_launch() {
    let (env, eif) = setup("hello-echo");
    // Answered never: the launch fails after the (shortened) timeout, saying what to check.
    let id = new_id();
    let listener = listen_9000(&env, &id);
    let vmm = Vmm::start(&env, &eif, &id, Some(300));
    let mut conn = accept_heartbeat(&listener);
    let mut beat = [0u8; 1];
    conn.read_exact(&mut beat).expect("the heartbeat byte");
    let status = vmm.status();
    let msg = status["failed"]
        .as_str()
        .unwrap_or_else(|| panic!("{status}"));
    assert!(
        msg.contains("did not answer the enclave's heartbeat") && msg.contains("300ms"),
        "{msg}"
    );
    let dir = vmm.run_dir(&env);
    vmm.end(&env);
    drop(conn);
    assert!(
        !dir.join("state.json").exists(),
        "the failed enclave left its run directory"
    );

    // Nobody listens on port 9000: refused at once, named as such.
    let vmm = Vmm::start(&env, &eif, &new_id(), None);
    let status = vmm.status();
    let msg = status["failed"]
        .as_str()
        .unwrap_or_else(|| panic!("{status}"));
    assert!(
        msg.contains("nobody listens for the enclave's heartbeat"),
        "{msg}"
    );
    vmm.end(&env);
    env.assert_no_leftovers("after the failed launches");
}

#[test]
#[cfg_attr(not(enclave_host), ignore = "needs /dev/kvm, root and a cpuset cgroup")]
fn run_enclave_answers_the_heartbeat_and_closes_port_9000() {
    let r = vsock_support::launch("hello-echo", &[]);
    assert!(
        !r.enclave.run_dir().join("vsock.sock_9000").exists(),
        "the launcher's heartbeat listener stayed after the launch"
    );
    // The enclave is up and serving.
    vsock_support::echo_round(r.connect(), b"after the heartbeat");
}
