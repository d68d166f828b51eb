//! Copying a console stream to stdout as it arrives.

use std::io::{Read, Write};

/// Copies `from` to `to` until end of stream, flushing after every read so a reader of a pipe
/// sees output at once (`std::io::copy` may `splice` into a pipe and hold it while blocked).
pub fn pump(from: &mut impl Read, to: &mut impl Write) -> std::io::Result<u64> {
    let mut buf = [0u8; 16 * 1024];
    let mut total = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        to.write_all(&buf[..n])?;
        to.flush()?;
        total += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_everything_and_counts() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let mut out = Vec::new();
        assert_eq!(pump(&mut &data[..], &mut out).unwrap(), data.len() as u64);
        assert_eq!(out, data);
    }
}
