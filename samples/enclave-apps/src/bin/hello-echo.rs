//! Enclave echo server, one std thread per connection: listens on vsock port (argv[1],
//! default 5000) and echoes every byte back until the parent half-closes, then half-closes too.

use std::io::{Read, Write};
use std::net::Shutdown;

fn serve(mut s: sdk::enclave::VsockStream) -> std::io::Result<u64> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            break;
        }
        s.write_all(&buf[..n])?;
        total += n as u64;
    }
    s.shutdown(Shutdown::Write)?;
    Ok(total)
}

fn main() -> std::io::Result<()> {
    let port = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(5000);
    let listener = sdk::enclave::listen(port)?;
    println!("hello-echo: listening on vsock port {port}");
    for (n, stream) in listener.incoming().enumerate() {
        let stream = stream?;
        let peer = stream.peer_addr().map(|a| a.to_string()).unwrap_or_default();
        std::thread::spawn(move || match serve(stream) {
            Ok(bytes) => println!("hello-echo: connection {n} from {peer}: {bytes} bytes echoed"),
            Err(e) => println!("hello-echo: connection {n} from {peer} ended: {e}"),
        });
    }
    Ok(())
}
