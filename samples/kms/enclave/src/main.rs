//! `kms-enclave`: the enclave side of the KMS sample. At start it makes an ephemeral P-384
//! HPKE key pair and listens on vsock. On `Provision` it asks the key service (reached at the
//! parent, CID 3, on the KMS port) for a nonce, gets an attestation document carrying that
//! nonce and its public key from `/dev/nsm` (AWS's NSM driver, unchanged), sends `Decrypt`
//! with the document as `Recipient`, and opens the released data key inside the enclave. It
//! then serves `DecryptMessage` with that key; the key never leaves the enclave.
//!
//! Usage: `/init [--listen-port 5000] [--kms-port 8000]`.

#[allow(dead_code)]
#[path = "../../../src/kms/protocol.rs"]
mod protocol;
#[allow(dead_code)]
#[path = "../../../src/kms/recipient.rs"]
mod recipient;

use std::io::BufReader;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aes_gcm::aead::Aead;
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use aws_nitro_enclaves_nsm_api::api::{Request as NsmRequest, Response as NsmResponse};
use aws_nitro_enclaves_nsm_api::driver::{nsm_init, nsm_process_request};
use protocol::{
    read_line, write_message, AttestResponse, Bytes, DecryptMessageResponse, DecryptResponse,
    EnclaveRequest, ErrorBody, ErrorCode, ErrorReply, Line, NonceResponse, ProvisionResponse,
    Recipient, Request, Timings,
};
use recipient::RecipientKey;
use serde_bytes::ByteBuf;
use vsock::{VsockAddr, VsockListener, VsockStream, VMADDR_CID_ANY};

/// The parent instance, as Nitro numbers it.
const PARENT_CID: u32 = 3;
/// How long Provision retries connecting to the key service.
const CONNECT_RETRY: Duration = Duration::from_secs(5);

/// The program's state: its key pair, the NSM and the provisioned data key.
struct Enclave {
    key: RecipientKey,
    nsm_fd: i32,
    kms_port: u32,
    /// (key id, data key) once provisioned.
    data_key: Mutex<Option<(String, Vec<u8>)>>,
}

/// Fills `buf` with the getrandom(2) system call. (The `getrandom` crate cannot find the libc
/// function in a static glibc program and falls back to `/dev/urandom`, which an enclave's
/// file tree does not have.)
fn random(buf: &mut [u8]) -> std::io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        let rest = &mut buf[done..];
        // SAFETY: `rest` is a valid writable buffer of `rest.len()` bytes.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        match usize::try_from(n) {
            Ok(n) if n > 0 => done += n,
            _ => {
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
    Ok(())
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn err(code: ErrorCode, message: impl Into<String>) -> ErrorBody {
    ErrorBody::new(code, message)
}

impl Enclave {
    /// An attestation document with `nonce`, `user_data` and this program's public key.
    fn attest(&self, nonce: &[u8], user_data: Option<&[u8]>) -> Result<Vec<u8>, ErrorBody> {
        let request = NsmRequest::Attestation {
            user_data: user_data.map(|u| ByteBuf::from(u.to_vec())),
            nonce: Some(ByteBuf::from(nonce.to_vec())),
            public_key: Some(ByteBuf::from(self.key.public_key().to_vec())),
        };
        match nsm_process_request(self.nsm_fd, request) {
            NsmResponse::Attestation { document } => Ok(document),
            NsmResponse::Error(code) => Err(err(
                ErrorCode::InternalError,
                format!("the NSM refused the attestation request: {code:?}"),
            )),
            other => Err(err(
                ErrorCode::InternalError,
                format!("unexpected NSM response: {other:?}"),
            )),
        }
    }

    /// Connects to the key service and gets a nonce, retrying for [`CONNECT_RETRY`] while
    /// the service cannot be reached or closes the connection unanswered (it may be
    /// restarting; behind a proxy a refused connection looks like an early close). A refusal
    /// by the service is not retried.
    fn open_session(&self) -> Result<(BufReader<VsockStream>, NonceResponse), ErrorBody> {
        let start = Instant::now();
        let mut wait = Duration::from_millis(20);
        loop {
            let attempt = VsockStream::connect(&VsockAddr::new(PARENT_CID, self.kms_port))
                .map_err(|e| format!("connect: {e}"))
                .and_then(|stream| {
                    let mut kms = BufReader::new(stream);
                    match protocol::exchange::<VsockStream, Request, NonceResponse>(
                        &mut kms,
                        &Request::GetNonce,
                    ) {
                        Ok(reply) => Ok((kms, reply)),
                        Err(e) => Err(format!("GetNonce: {e}")),
                    }
                });
            match attempt {
                Ok((kms, reply)) => return reply.into_result().map(|nonce| (kms, nonce)),
                Err(e) if start.elapsed() + wait < CONNECT_RETRY => {
                    println!("kms-enclave: key service not reachable yet ({e}), retrying");
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(Duration::from_millis(500));
                }
                Err(e) => {
                    return Err(err(
                        ErrorCode::KmsUnavailableException,
                        format!(
                            "cannot reach the key service at vsock CID {PARENT_CID} port {} within {} s: {e}",
                            self.kms_port,
                            CONNECT_RETRY.as_secs()
                        ),
                    ))
                }
            }
        }
    }

    /// One request to the key service; a refusal is passed on unchanged.
    fn kms_call<T: serde::de::DeserializeOwned>(
        stream: &mut BufReader<VsockStream>,
        request: &Request,
    ) -> Result<T, ErrorBody> {
        protocol::exchange::<VsockStream, Request, T>(stream, request)
            .map_err(|e| {
                err(
                    ErrorCode::KmsUnavailableException,
                    format!("{} to the key service failed: {e}", request.action()),
                )
            })?
            .into_result()
    }

    fn provision(
        &self,
        key_id: &str,
        encrypted_data_key: &[u8],
    ) -> Result<ProvisionResponse, ErrorBody> {
        let start = Instant::now();
        let mut kms_time = Duration::ZERO;

        let t = Instant::now();
        let (mut kms, nonce) = self.open_session()?;
        kms_time += t.elapsed();

        let t = Instant::now();
        let document = self.attest(&nonce.nonce.0, None)?;
        let attest_time = t.elapsed();

        let t = Instant::now();
        let reply: DecryptResponse = Self::kms_call(
            &mut kms,
            &Request::Decrypt {
                ciphertext_blob: Bytes(encrypted_data_key.to_vec()),
                key_id: Some(key_id.to_owned()),
                recipient: Recipient::new(document),
            },
        )?;
        kms_time += t.elapsed();

        let data_key = self
            .key
            .open(&reply.key_id, &reply.ciphertext_for_recipient.0)
            .map_err(|e| {
                err(
                    ErrorCode::InternalError,
                    format!("the released key cannot be opened with this enclave's key: {e}"),
                )
            })?;
        if data_key.len() != 32 {
            return Err(err(
                ErrorCode::ValidationException,
                format!(
                    "the released key is {} bytes, not an AES-256 data key",
                    data_key.len()
                ),
            ));
        }
        *self
            .data_key
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some((reply.key_id.clone(), data_key));
        Ok(ProvisionResponse {
            released: true,
            key_id: reply.key_id,
            timings: Timings {
                attest_micros: micros(attest_time),
                kms_micros: micros(kms_time),
                total_micros: micros(start.elapsed()),
            },
        })
    }

    fn decrypt_message(&self, iv: &[u8], ciphertext: &[u8]) -> Result<Vec<u8>, ErrorBody> {
        let guard = self
            .data_key
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some((_, key)) = guard.as_ref() else {
            return Err(err(
                ErrorCode::InvalidStateException,
                "no data key yet: send Provision first",
            ));
        };
        let nonce = Nonce::try_from(iv).map_err(|_| {
            err(
                ErrorCode::ValidationException,
                format!("Iv is {} bytes; AES-GCM needs 12", iv.len()),
            )
        })?;
        let cipher = Aes256Gcm::new_from_slice(key)
            .map_err(|_| err(ErrorCode::InternalError, "data key is not 32 bytes"))?;
        cipher.decrypt(&nonce, ciphertext).map_err(|_| {
            err(
                ErrorCode::InvalidCiphertextException,
                "the message does not open with the provisioned data key (other key, or tampered)",
            )
        })
    }

    fn handle(&self, request: EnclaveRequest) -> serde_json::Result<serde_json::Value> {
        let reply = match request {
            EnclaveRequest::Provision {
                key_id,
                encrypted_data_key,
            } => self.provision(&key_id, &encrypted_data_key.0).map(|r| {
                println!(
                    "kms-enclave: key {} released (attest {} us, kms {} us, total {} us)",
                    r.key_id, r.timings.attest_micros, r.timings.kms_micros, r.timings.total_micros
                );
                serde_json::to_value(r)
            }),
            EnclaveRequest::DecryptMessage { iv, ciphertext } => {
                self.decrypt_message(&iv.0, &ciphertext.0).map(|p| {
                    serde_json::to_value(DecryptMessageResponse {
                        plaintext: Bytes(p),
                    })
                })
            }
            EnclaveRequest::Attest { nonce, user_data } => self
                .attest(&nonce.0, user_data.as_ref().map(|u| u.0.as_slice()))
                .map(|d| {
                    serde_json::to_value(AttestResponse {
                        attestation_document: Bytes(d),
                    })
                }),
        };
        match reply {
            Ok(v) => v,
            Err(error) => {
                println!("kms-enclave: refused: {error}");
                serde_json::to_value(ErrorReply { error })
            }
        }
    }

    fn serve(&self, stream: VsockStream) -> std::io::Result<()> {
        let mut writer = stream.try_clone()?;
        let mut reader = BufReader::new(stream);
        loop {
            let reply = match read_line(&mut reader)? {
                Line::Eof => return Ok(()),
                Line::TooLong(n) => serde_json::to_value(ErrorReply {
                    error: err(
                        ErrorCode::ValidationException,
                        format!("request line is {n} bytes, over the limit"),
                    ),
                }),
                Line::Complete(line) => match serde_json::from_slice::<EnclaveRequest>(&line) {
                    Ok(request) => self.handle(request),
                    Err(e) => serde_json::to_value(ErrorReply {
                        error: err(
                            ErrorCode::ValidationException,
                            format!("request is not valid: {e}"),
                        ),
                    }),
                },
            }
            .map_err(std::io::Error::other)?;
            write_message(&mut writer, &reply)?;
        }
    }
}

fn port_arg(args: &[String], name: &str, default: u32) -> Result<u32, String> {
    match args.iter().position(|a| a == name) {
        None => Ok(default),
        Some(i) => args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("{name} needs a port number")),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let ports = port_arg(&args, "--listen-port", 5000)
        .and_then(|l| port_arg(&args, "--kms-port", 8000).map(|k| (l, k)));
    let (listen_port, kms_port) = match ports {
        Ok(p) => p,
        Err(e) => {
            println!("kms-enclave: {e}");
            std::process::exit(2);
        }
    };
    let nsm_fd = nsm_init();
    if nsm_fd < 0 {
        println!("kms-enclave: cannot open /dev/nsm");
        std::process::exit(1);
    }
    let listener = match VsockListener::bind(&VsockAddr::new(VMADDR_CID_ANY, listen_port)) {
        Ok(l) => l,
        Err(e) => {
            println!("kms-enclave: cannot listen on vsock port {listen_port}: {e}");
            std::process::exit(1);
        }
    };
    let mut ikm = [0u8; 64];
    let key = random(&mut ikm)
        .map_err(|e| e.to_string())
        .and_then(|()| RecipientKey::from_ikm(&ikm).map_err(|e| e.to_string()));
    ikm.fill(0);
    let key = match key {
        Ok(k) => k,
        Err(e) => {
            println!("kms-enclave: cannot make the key pair: {e}");
            std::process::exit(1);
        }
    };
    let enclave = Arc::new(Enclave {
        key,
        nsm_fd,
        kms_port,
        data_key: Mutex::new(None),
    });
    println!("kms-enclave: listening on vsock port {listen_port}, key service at CID {PARENT_CID} port {kms_port}");
    for conn in listener.incoming() {
        match conn {
            Ok(stream) => {
                let enclave = Arc::clone(&enclave);
                let spawned = std::thread::Builder::new().spawn(move || {
                    if let Err(e) = enclave.serve(stream) {
                        println!("kms-enclave: connection ended: {e}");
                    }
                });
                if let Err(e) = spawned {
                    println!("kms-enclave: cannot start a thread: {e}");
                }
            }
            Err(e) => println!("kms-enclave: accept failed: {e}"),
        }
    }
}
