//! Rust std guest program built the ordinary way (dynamically linked, run by ld.so in the
//! enclave): args, a thread, allocations, a panic caught by unwinding (libgcc_s), a float
//! function from libm and a chosen exit status. A failed check prints "FAIL: <what>", exits 99.

fn fail(what: &str) -> ! {
    println!("FAIL: {what}");
    std::process::exit(99);
}

fn main() {
    println!("hello from dynamic rust");
    let args: Vec<String> = std::env::args().collect();
    println!("argc={}", args.len());

    let worker = std::thread::spawn(|| (1..=100u64).sum::<u64>());
    match worker.join() {
        Ok(5050) => println!("thread ok"),
        _ => fail("thread"),
    }

    let v: Vec<u64> = (0..100_000).collect();
    if v.iter().sum::<u64>() != 4_999_950_000 {
        fail("allocation");
    }

    std::panic::set_hook(Box::new(|_| {}));
    if std::panic::catch_unwind(|| panic!("unwind me")).is_ok() {
        fail("unwinding");
    }
    println!("unwind ok");

    let x: f64 = std::hint::black_box(0.5);
    println!("cbrt={:.4}", x.cbrt());

    let code = args
        .get(1)
        .and_then(|a| a.parse::<i32>().ok())
        .unwrap_or(0);
    std::process::exit(code);
}
