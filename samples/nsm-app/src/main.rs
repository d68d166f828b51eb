//! An enclave program written for AWS Nitro Enclaves, using AWS's own NSM client
//! (`aws_nitro_enclaves_nsm_api::driver`): DescribeNSM, DescribePCR 0, ExtendPCR 16, a refused
//! ExtendPCR 0, then an Attestation with a nonce and user data. Prints one `KEY value` line per
//! result; the document as `DOCUMENT <hex>`. Exits 1 on anything unexpected.
//!
//! Usage: `/init [NONCE_HEX [USER_DATA [VSOCK_PORT]]]` (defaults: `00112233`,
//! `hello from nsm-app`, none). With a port, the same lines also go to the parent over vsock
//! (CID 3, that port): the only way out of a production-mode enclave.

use aws_nitro_enclaves_nsm_api::api::{ErrorCode, Request, Response};
use aws_nitro_enclaves_nsm_api::driver::{nsm_exit, nsm_init, nsm_process_request};
use serde_bytes::ByteBuf;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn fail(what: &str, resp: &Response) -> ! {
    println!("FAIL {what}: {resp:?}");
    std::process::exit(1);
}

/// Lines printed to stdout and kept for the parent.
#[derive(Default)]
struct Report(String);

impl Report {
    fn line(&mut self, line: String) {
        println!("{line}");
        self.0.push_str(&line);
        self.0.push('\n');
    }
}

/// Sends `text` to the parent (CID 3) on vsock port `port`.
fn send_to_parent(port: u32, text: &[u8]) -> Result<(), String> {
    /// The parent instance, as Nitro numbers it.
    const VMADDR_CID_PARENT: u32 = 3;
    // SAFETY: plain socket(2) call; the result is checked.
    let fd = unsafe { libc::socket(libc::AF_VSOCK, libc::SOCK_STREAM, 0) };
    if fd < 0 {
        return Err(format!("socket: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: sockaddr_vm is plain old data; all-zero is a valid value.
    let mut addr: libc::sockaddr_vm = unsafe { std::mem::zeroed() };
    addr.svm_family = libc::AF_VSOCK as libc::sa_family_t;
    addr.svm_port = port;
    addr.svm_cid = VMADDR_CID_PARENT;
    let len = std::mem::size_of::<libc::sockaddr_vm>() as libc::socklen_t;
    // SAFETY: `addr` is a valid sockaddr_vm of `len` bytes for the duration of the call.
    let rc = unsafe { libc::connect(fd, (&raw const addr).cast(), len) };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        // SAFETY: `fd` is ours and closed once.
        unsafe { libc::close(fd) };
        return Err(format!("connect: {e}"));
    }
    let mut sent = 0;
    while sent < text.len() {
        let rest = &text[sent..];
        // SAFETY: `rest` is a valid buffer of `rest.len()` bytes.
        let n = unsafe { libc::write(fd, rest.as_ptr().cast(), rest.len()) };
        if n <= 0 {
            let e = std::io::Error::last_os_error();
            // SAFETY: as above.
            unsafe { libc::close(fd) };
            return Err(format!("write: {e}"));
        }
        sent += n as usize;
    }
    // SAFETY: as above.
    unsafe { libc::close(fd) };
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let nonce = args
        .get(1)
        .map_or_else(|| Some(vec![0, 0x11, 0x22, 0x33]), |n| unhex(n))
        .unwrap_or_else(|| {
            println!("FAIL nonce argument is not hex");
            std::process::exit(1);
        });
    let user_data = args
        .get(2)
        .cloned()
        .unwrap_or_else(|| "hello from nsm-app".to_owned());
    let port: Option<u32> = args.get(3).and_then(|p| p.parse().ok());
    let mut out = Report::default();

    let fd = nsm_init();
    if fd < 0 {
        println!("FAIL cannot open /dev/nsm");
        std::process::exit(1);
    }

    match nsm_process_request(fd, Request::DescribeNSM) {
        Response::DescribeNSM {
            version_major,
            version_minor,
            version_patch,
            module_id,
            max_pcrs,
            locked_pcrs,
            digest,
        } => {
            out.line(format!(
                "NSM_VERSION {version_major}.{version_minor}.{version_patch}"
            ));
            out.line(format!("MODULE_ID {module_id}"));
            out.line(format!("MAX_PCRS {max_pcrs}"));
            let locked: Vec<String> = locked_pcrs.iter().map(u16::to_string).collect();
            out.line(format!("LOCKED_PCRS {}", locked.join(",")));
            out.line(format!("DIGEST {digest:?}"));
        }
        other => fail("DescribeNSM", &other),
    }

    match nsm_process_request(fd, Request::DescribePCR { index: 0 }) {
        Response::DescribePCR { lock, data } => {
            out.line(format!("PCR0 {} locked={lock}", hex(&data)))
        }
        other => fail("DescribePCR 0", &other),
    }

    let extend = Request::ExtendPCR {
        index: 16,
        data: b"nsm-app measurement".to_vec(),
    };
    match nsm_process_request(fd, extend) {
        Response::ExtendPCR { data } => out.line(format!("PCR16 {}", hex(&data))),
        other => fail("ExtendPCR 16", &other),
    }

    let refused = Request::ExtendPCR {
        index: 0,
        data: b"must not change PCR0".to_vec(),
    };
    match nsm_process_request(fd, refused) {
        Response::Error(ErrorCode::ReadOnlyIndex) => {
            out.line("EXTEND_PCR0 ReadOnlyIndex".to_owned())
        }
        other => fail("ExtendPCR 0 should be refused", &other),
    }

    match nsm_process_request(fd, Request::LockPCR { index: 16 }) {
        Response::LockPCR => out.line("LOCK_PCR16 ok".to_owned()),
        other => fail("LockPCR 16", &other),
    }

    let attest = Request::Attestation {
        user_data: Some(ByteBuf::from(user_data.into_bytes())),
        nonce: Some(ByteBuf::from(nonce)),
        public_key: None,
    };
    match nsm_process_request(fd, attest) {
        Response::Attestation { document } => out.line(format!("DOCUMENT {}", hex(&document))),
        Response::Error(code) => out.line(format!("ATTESTATION_ERROR {code:?}")),
        other => fail("Attestation", &other),
    }

    nsm_exit(fd);
    out.line("NSM_APP_DONE".to_owned());
    if let Some(port) = port {
        match send_to_parent(port, out.0.as_bytes()) {
            Ok(()) => println!("SENT_TO_PARENT {port}"),
            Err(e) => println!("VSOCK_ERROR {e}"),
        }
    }
}
