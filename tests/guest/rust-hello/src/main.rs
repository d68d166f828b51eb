//! Rust std guest program for the enclave tests: args, env, file read, allocations,
//! clocks, stderr and a chosen exit status. A failed check prints "FAIL: <what>", exits 99.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn fail(what: &str) -> ! {
    println!("FAIL: {what}");
    std::process::exit(99);
}

fn main() {
    println!("hello from rust enclave");
    let args: Vec<String> = std::env::args().collect();
    println!("argc={}", args.len());
    for (i, a) in args.iter().enumerate() {
        println!("argv[{i}]={a}");
    }
    for (k, v) in std::env::vars() {
        println!("env:{k}={v}");
    }

    if let Ok(path) = std::env::var("READ_FILE") {
        if !path.is_empty() {
            let data = std::fs::read(&path).unwrap_or_else(|_| fail("read READ_FILE"));
            let sum = data.iter().fold(0u32, |s, b| s.wrapping_add(u32::from(*b)));
            println!("size={}", data.len());
            println!("sum={sum}");
        }
    }

    let mut map: HashMap<u32, Vec<u8>> = HashMap::new();
    for i in 0..200u32 {
        map.insert(
            i,
            vec![u8::try_from(i % 256).unwrap_or(0); 1 + usize::try_from(i).unwrap_or(0) * 7],
        );
    }
    let total: usize = map.values().map(Vec::len).sum();
    if total != (0..200).map(|i| 1 + i * 7).sum::<usize>() {
        fail("hashmap contents");
    }
    let big = vec![7u8; 16 << 20];
    if big.iter().step_by(4096).any(|b| *b != 7) {
        fail("16 MiB vec");
    }
    drop(big);
    println!("alloc ok");

    let start = Instant::now();
    std::thread::sleep(Duration::from_millis(1));
    if start.elapsed() < Duration::from_millis(1) {
        fail("Instant advanced by sleep");
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_else(|_| fail("SystemTime"));
    if now.as_secs() < 1_600_000_000 {
        fail("SystemTime plausible");
    }
    println!("time ok");

    eprintln!("stderr works");
    let code = std::env::var("EXIT_CODE")
        .ok()
        .and_then(|c| c.parse::<i32>().ok())
        .unwrap_or(0);
    println!("exiting with {code}");
    std::process::exit(code);
}
