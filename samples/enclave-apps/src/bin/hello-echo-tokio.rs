//! Enclave echo server on a tokio multi-thread runtime: listens on vsock port (argv[1],
//! default 5000), one task per connection, echoes until the parent half-closes.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn serve(mut s: sdk::enclave::tokio::VsockStream) -> std::io::Result<u64> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        s.write_all(&buf[..n]).await?;
        total += n as u64;
    }
    s.flush().await?;
    s.shutdown(std::net::Shutdown::Write)?;
    Ok(total)
}

fn main() -> std::io::Result<()> {
    let port = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(5000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = sdk::enclave::tokio::listen(port)?;
        println!("hello-echo-tokio: listening on vsock port {port}");
        let mut n = 0u64;
        loop {
            let (stream, peer) = listener.accept().await?;
            n += 1;
            tokio::spawn(async move {
                match serve(stream).await {
                    Ok(b) => println!("hello-echo-tokio: connection {n} from {peer}: {b} bytes echoed"),
                    Err(e) => println!("hello-echo-tokio: connection {n} from {peer} ended: {e}"),
                }
            });
        }
    })
}
