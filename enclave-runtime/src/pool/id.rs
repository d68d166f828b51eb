//! Enclave ids: `enc-` followed by 16 lowercase hex digits. Ids name directories and
//! cgroups, so nothing else is ever accepted.

use super::error::{PoolError, Result};

/// The fixed prefix of every enclave id.
pub const ENCLAVE_ID_PREFIX: &str = "enc-";

/// Number of hex digits after the prefix.
pub const ENCLAVE_ID_HEX_DIGITS: usize = 16;

/// A fresh random enclave id from `getrandom(2)`.
///
/// Should `getrandom` be unavailable (it never is on supported kernels) the id is derived from
/// the clock, the pid and a counter instead: ids must be unique, not secret.
pub fn new_enclave_id() -> String {
    let bytes = random_bytes().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "getrandom failed; deriving the enclave id from clock and pid");
        fallback_bytes()
    });
    let mut id = String::from(ENCLAVE_ID_PREFIX);
    for b in bytes {
        id.push_str(&format!("{b:02x}"));
    }
    id
}

fn random_bytes() -> Result<[u8; ENCLAVE_ID_HEX_DIGITS / 2]> {
    let mut bytes = [0u8; ENCLAVE_ID_HEX_DIGITS / 2];
    let mut filled = 0;
    while filled < bytes.len() {
        let rest = &mut bytes[filled..];
        // SAFETY: `rest` is a live, writable slice of exactly `rest.len()` bytes, and getrandom
        // writes at most that many bytes into it; no other reference to `bytes` exists here.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        match usize::try_from(n) {
            Ok(n) => filled += n,
            Err(_) => {
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::Interrupted {
                    return Err(PoolError::Random(e));
                }
            }
        }
    }
    Ok(bytes)
}

fn fallback_bytes() -> [u8; ENCLAVE_ID_HEX_DIGITS / 2] {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let mixed = nanos
        ^ (u128::from(std::process::id()) << 64)
        ^ u128::from(COUNTER.fetch_add(1, Ordering::Relaxed)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let folded = (mixed ^ (mixed >> 64)).to_le_bytes();
    let mut out = [0u8; ENCLAVE_ID_HEX_DIGITS / 2];
    out.copy_from_slice(&folded[..ENCLAVE_ID_HEX_DIGITS / 2]);
    out
}

/// Accepts exactly `enc-` + 16 lowercase hex digits.
pub fn validate_enclave_id(id: &str) -> Result<()> {
    let ok = id.strip_prefix(ENCLAVE_ID_PREFIX).is_some_and(|hex| {
        hex.len() == ENCLAVE_ID_HEX_DIGITS
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    });
    if ok {
        Ok(())
    } else {
        Err(PoolError::BadEnclaveId { id: id.to_owned() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        let id = new_enclave_id();
        validate_enclave_id(&id).unwrap();
        assert_ne!(id, new_enclave_id());
        validate_enclave_id(&format!("enc-{}", &new_enclave_id()[4..])).unwrap();
        assert!(random_bytes().is_ok());
        assert_ne!(fallback_bytes(), fallback_bytes());
        for bad in [
            "../x",
            "enc-",
            "enc-0123456789ABCDEF",
            "enc-0123456789abcdef0",
            "xyz-0123456789abcdef",
        ] {
            assert!(validate_enclave_id(bad).is_err(), "{bad}");
        }
    }
}
