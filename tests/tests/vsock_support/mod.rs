//! Shared by the vsock tests: an enclave of a `samples/enclave-apps` program launched through
//! the real CLI and driven with the SDK, random data and a bounded echo round.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use sdk::{EnclaveHandle, Enclaves, LaunchOptions};
use tests::{PoolSpec, TestEnv};

/// The port the sample servers listen on.
pub const PORT: u32 = 5000;
/// Guest memory of the tests' enclaves.
pub const MEMORY_MIB: u64 = 64;
/// How long a fresh enclave may take to listen.
pub const LISTEN_WAIT: Duration = Duration::from_secs(10);

/// A test environment with a pool and one enclave running `program`.
pub struct Running {
    pub enclave: EnclaveHandle,
    pub enclaves: Enclaves,
    // Dropped last: terminates everything and releases the pool.
    pub env: TestEnv,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.enclave.terminate();
    }
}

/// The SDK pointed at `env`'s run root, pool config and cgroup.
pub fn enclaves(env: &TestEnv) -> Enclaves {
    env.envs()
        .into_iter()
        .fold(Enclaves::with_binary(tests::enclave_bin()), |e, (k, v)| {
            e.env(k, v)
        })
}

/// Packs the enclave program `program` (built from samples/enclave-apps) with `args`.
pub fn build_eif(env: &TestEnv, program: &str, args: &[&str]) -> PathBuf {
    let bin = samples::enclave_apps::program(program).unwrap_or_else(|e| panic!("{e}"));
    let out = env.root().join(format!("{program}.eif"));
    let mut cli: Vec<std::ffi::OsString> = vec!["build-enclave".into(), "--binary".into()];
    cli.push(bin.into());
    for a in args {
        cli.push("--cmd".into());
        cli.push(a.into());
    }
    cli.push("--output-file".into());
    cli.push(out.clone().into());
    env.cli(&cli).ok();
    out
}

/// A new environment with a pool, and `program` launched in debug mode.
pub fn launch(program: &str, args: &[&str]) -> Running {
    let env = TestEnv::new().expect("test env");
    env.apply_pool(&PoolSpec::new(MEMORY_MIB, 1));
    let eif = build_eif(&env, program, args);
    let enclaves = enclaves(&env);
    let enclave = enclaves
        .launch(&LaunchOptions::new(&eif).memory_mib(MEMORY_MIB).debug(true))
        .unwrap_or_else(|e| panic!("launching {program}: {e}"));
    Running {
        enclave,
        enclaves,
        env,
    }
}

impl Running {
    /// A connection to the program's port, waiting for it to listen.
    pub fn connect(&self) -> UnixStream {
        let s = self
            .enclave
            .connect_retry(PORT, LISTEN_WAIT)
            .unwrap_or_else(|e| panic!("connect: {e}"));
        s.set_read_timeout(Some(Duration::from_secs(60)))
            .expect("timeout");
        s
    }

    /// The console so far (debug mode), read until `done` holds for it or `wait` passes.
    pub fn console_until(&self, done: impl Fn(&str) -> bool, wait: Duration) -> String {
        let mut s = self
            .enclave
            .console()
            .unwrap_or_else(|e| panic!("console: {e}"));
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        let deadline = std::time::Instant::now() + wait;
        let mut text = Vec::new();
        let mut buf = [0u8; 4096];
        while std::time::Instant::now() < deadline {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => text.extend_from_slice(&buf[..n]),
                Err(_) => {}
            }
            if done(&String::from_utf8_lossy(&text)) {
                break;
            }
        }
        String::from_utf8_lossy(&text).into_owned()
    }
}

/// `len` pseudo-random bytes (xorshift64*, seeded).
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Sends `data` on `s` from a second thread while reading the echo, half-closes after the
/// last byte and checks that exactly `data` comes back, then end of stream.
#[track_caller]
pub fn echo_round(s: UnixStream, data: &[u8]) {
    let mut writer = s.try_clone().expect("clone");
    let sent = data.to_vec();
    let w = std::thread::spawn(move || {
        for chunk in sent.chunks(256 * 1024) {
            writer.write_all(chunk).expect("write");
        }
        writer.shutdown(Shutdown::Write).expect("shutdown");
    });
    let mut got = Vec::with_capacity(data.len());
    let mut reader = s;
    reader.read_to_end(&mut got).expect("read the echo");
    w.join().expect("writer");
    assert_eq!(got.len(), data.len(), "echo length");
    if let Some(i) = got.iter().zip(data).position(|(a, b)| a != b) {
        panic!("echo differs at byte {i} of {}", data.len());
    }
}
