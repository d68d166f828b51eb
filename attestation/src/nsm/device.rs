//! The NSM device's logic, without the device: request bytes in, response bytes out, against
//! a PCR bank and an [`Attester`] that signs documents. The VMM's `/dev/nsm` copies the
//! request out of guest memory, calls [`handle`], and copies the response back.

use std::collections::BTreeMap;

use super::bank::{PcrBank, PCR_COUNT};
use super::codec::{decode_request, encode_response};
use super::types::{Digest, ErrorCode, Request, Response};
use super::MAX_RESPONSE_SIZE;
use crate::pcr::Pcr;

/// NSM API version this module reports in DescribeNSM.
pub const NSM_VERSION: (u16, u16, u16) = (1, 0, 0);
/// Bytes returned by GetRandom.
pub const RANDOM_LEN: usize = 256;

/// Signs attestation documents for one enclave.
pub trait Attester {
    /// The module id reported by DescribeNSM and written into documents.
    fn module_id(&self) -> &str;

    /// A COSE_Sign1 attestation document over `pcrs` and the user's fields.
    fn attest(
        &self,
        pcrs: &BTreeMap<u16, Pcr>,
        user_data: Option<&[u8]>,
        nonce: Option<&[u8]>,
        public_key: Option<&[u8]>,
    ) -> Result<Vec<u8>, crate::document::DocumentError>;
}

/// Handles one request given as CBOR; always returns a CBOR response (errors as
/// `Response::Error`), at most [`MAX_RESPONSE_SIZE`] bytes.
pub fn handle(request: &[u8], bank: &mut PcrBank, attester: &dyn Attester) -> Vec<u8> {
    handle_with_limit(request, bank, attester, MAX_RESPONSE_SIZE)
}

/// As [`handle`], for a caller whose response buffer holds `capacity` bytes: a response that
/// does not fit becomes `Error(BufferTooSmall)`.
pub fn handle_with_limit(
    request: &[u8],
    bank: &mut PcrBank,
    attester: &dyn Attester,
    capacity: usize,
) -> Vec<u8> {
    let response = match decode_request(request) {
        Ok(req) => handle_request(req, bank, attester),
        Err(e) => Response::Error(e.error_code()),
    };
    let bytes = encode_response(&response);
    if bytes.len() > capacity.min(MAX_RESPONSE_SIZE) {
        return encode_response(&Response::Error(ErrorCode::BufferTooSmall));
    }
    bytes
}

/// Handles one decoded request.
pub fn handle_request(req: Request, bank: &mut PcrBank, attester: &dyn Attester) -> Response {
    match req {
        Request::DescribePCR { index } => match bank.describe(index) {
            Ok((lock, value)) => Response::DescribePCR {
                lock,
                data: value.to_vec(),
            },
            Err(e) => Response::Error(e.error_code()),
        },
        Request::ExtendPCR { index, data } => match bank.extend(index, &data) {
            Ok(value) => Response::ExtendPCR {
                data: value.to_vec(),
            },
            Err(e) => Response::Error(e.error_code()),
        },
        Request::LockPCR { index } => match bank.lock(index) {
            Ok(()) => Response::LockPCR,
            Err(e) => Response::Error(e.error_code()),
        },
        Request::LockPCRs { range } => match bank.lock_range(range) {
            Ok(()) => Response::LockPCRs,
            Err(e) => Response::Error(e.error_code()),
        },
        Request::DescribeNSM => Response::DescribeNSM {
            version_major: NSM_VERSION.0,
            version_minor: NSM_VERSION.1,
            version_patch: NSM_VERSION.2,
            module_id: attester.module_id().to_owned(),
            max_pcrs: u16::try_from(PCR_COUNT).unwrap_or(u16::MAX),
            locked_pcrs: bank.locked(),
            digest: Digest::SHA384,
        },
        Request::Attestation {
            user_data,
            nonce,
            public_key,
        } => match attester.attest(
            &bank.locked_values(),
            user_data.as_deref(),
            nonce.as_deref(),
            public_key.as_deref(),
        ) {
            Ok(document) => Response::Attestation { document },
            Err(_) => Response::Error(ErrorCode::InternalError),
        },
        Request::GetRandom => {
            let mut random = vec![0u8; RANDOM_LEN];
            match getrandom::fill(&mut random) {
                Ok(()) => Response::GetRandom { random },
                Err(_) => Response::Error(ErrorCode::InternalError),
            }
        }
    }
}
