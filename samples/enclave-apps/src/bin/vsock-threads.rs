//! A multi-threaded enclave program: std threads meeting at a Mutex/Condvar barrier and
//! reporting over mpsc channels, then a vsock server whose acceptor hands connections over a
//! channel to a pool of worker threads. Protocol per connection, one line at a time: `STATS`
//! answers `served <connections> sum <checksum>`; any other line comes back upper-cased.

use std::io::{BufRead, BufReader, Write};
use std::sync::{mpsc, Arc, Condvar, Mutex};

/// Threads in the start-up computation and in the worker pool.
const THREADS: u64 = 4;
/// The start-up computation sums 1..=N.
const N: u64 = 1_000_000;

/// A barrier made of a Mutex and a Condvar.
struct Barrier {
    arrived: Mutex<u64>,
    all_here: Condvar,
}

impl Barrier {
    fn wait(&self) {
        let mut n = self.arrived.lock().expect("lock");
        *n += 1;
        if *n == THREADS {
            self.all_here.notify_all();
        }
        while *n < THREADS {
            n = self.all_here.wait(n).expect("wait");
        }
    }
}

fn startup_sum() -> u64 {
    let barrier = Arc::new(Barrier {
        arrived: Mutex::new(0),
        all_here: Condvar::new(),
    });
    let (tx, rx) = mpsc::channel();
    for t in 0..THREADS {
        let (barrier, tx) = (barrier.clone(), tx.clone());
        std::thread::spawn(move || {
            barrier.wait();
            let part: u64 = (1..=N).filter(|i| i % THREADS == t).sum();
            tx.send(part).expect("send");
        });
    }
    drop(tx);
    rx.iter().sum()
}

fn serve(
    stream: sdk::enclave::VsockStream,
    served: &Mutex<u64>,
    sum: u64,
) -> std::io::Result<()> {
    let mut out = stream.try_clone()?;
    for line in BufReader::new(stream).lines() {
        let line = line?;
        if line == "STATS" {
            let n = *served.lock().expect("lock");
            writeln!(out, "served {n} sum {sum}")?;
        } else {
            writeln!(out, "{}", line.to_uppercase())?;
        }
    }
    Ok(())
}

fn main() -> std::io::Result<()> {
    let port = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(5000);
    let sum = startup_sum();
    assert_eq!(sum, N * (N + 1) / 2, "threads computed a wrong sum");
    println!("vsock-threads: {THREADS} threads summed 1..={N} = {sum}");

    let (tx, rx) = mpsc::channel::<sdk::enclave::VsockStream>();
    let rx = Arc::new(Mutex::new(rx));
    let served = Arc::new(Mutex::new(0u64));
    for w in 0..THREADS {
        let (rx, served) = (rx.clone(), served.clone());
        std::thread::spawn(move || loop {
            let next = rx.lock().expect("lock").recv();
            let Ok(stream) = next else { return };
            if let Err(e) = serve(stream, &served, sum) {
                println!("vsock-threads: worker {w}: {e}");
            }
            *served.lock().expect("lock") += 1;
        });
    }
    let listener = sdk::enclave::listen(port)?;
    println!("vsock-threads: listening on vsock port {port}");
    for stream in listener.incoming() {
        if tx.send(stream?).is_err() {
            break;
        }
    }
    Ok(())
}
