//! The enclave peer of the vsock benchmark. Listens on vsock port (argv[1], default 5000);
//! each connection starts with one command line:
//! - `SINK`: reads until end of stream, then answers the byte count as a line.
//! - `SOURCE <bytes> <msg>`: writes `<bytes>` in `<msg>`-byte writes, then closes.
//! - `PUSH <port> <bytes> <msg>`: connects to the parent (CID 3) on `<port>`, writes `<bytes>`
//!   there in `<msg>`-byte writes, closes that connection, answers `DONE`.
//! - `ECHO`: echoes everything back (round trips).

use std::io::{BufRead, BufReader, Read, Write};

fn pump_out(out: &mut impl Write, bytes: u64, msg: usize) -> std::io::Result<()> {
    let buf = vec![0x5au8; msg.max(1)];
    let mut left = bytes;
    while left > 0 {
        let n = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
        out.write_all(&buf[..n])?;
        left -= n as u64;
    }
    Ok(())
}

fn handle(stream: sdk::enclave::VsockStream) -> std::io::Result<()> {
    let mut out = stream.try_clone()?;
    let mut input = BufReader::with_capacity(256 * 1024, stream);
    let mut line = String::new();
    input.read_line(&mut line)?;
    let words: Vec<&str> = line.split_whitespace().collect();
    let num = |i: usize| -> u64 { words.get(i).and_then(|w| w.parse().ok()).unwrap_or(0) };
    match words.first().copied() {
        Some("SINK") => {
            let mut buf = vec![0u8; 256 * 1024];
            let mut total = 0u64;
            loop {
                let n = input.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                total += n as u64;
            }
            writeln!(out, "{total}")?;
        }
        Some("SOURCE") => {
            pump_out(&mut out, num(1), usize::try_from(num(2)).unwrap_or(4096))?;
        }
        Some("PUSH") => {
            let port = u32::try_from(num(1)).unwrap_or(0);
            let mut parent = sdk::enclave::connect_parent(port)?;
            pump_out(&mut parent, num(2), usize::try_from(num(3)).unwrap_or(4096))?;
            drop(parent);
            writeln!(out, "DONE")?;
        }
        Some("ECHO") => {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = input.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                out.write_all(&buf[..n])?;
            }
        }
        _ => writeln!(out, "ERROR unknown command {line:?}")?,
    }
    Ok(())
}

fn main() -> std::io::Result<()> {
    let port = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(5000);
    let listener = sdk::enclave::listen(port)?;
    println!("vsock-bench: listening on vsock port {port}");
    for stream in listener.incoming() {
        let stream = stream?;
        std::thread::spawn(move || {
            if let Err(e) = handle(stream) {
                println!("vsock-bench: {e}");
            }
        });
    }
    Ok(())
}
