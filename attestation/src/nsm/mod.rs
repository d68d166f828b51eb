//! The Nitro Secure Module API: request/response types, their CBOR codec (byte-compatible with
//! `aws-nitro-enclaves-nsm-api`), the PCR bank and the device logic the VMM's `/dev/nsm` calls.

mod bank;
mod codec;
mod device;
mod types;

pub use bank::{BootPcrs, PcrBank, PcrError, LOCKED_AT_BOOT, PCR_COUNT};
pub use codec::{decode_request, decode_response, encode_request, encode_response, CodecError};
pub use device::{handle, handle_request, handle_with_limit, Attester, NSM_VERSION, RANDOM_LEN};
pub use types::{Digest, ErrorCode, Request, Response};

/// Largest request accepted: 4 KiB.
pub const MAX_REQUEST_SIZE: usize = 4096;
/// Largest response produced: 12 KiB.
pub const MAX_RESPONSE_SIZE: usize = 12 * 1024;
/// Largest user_data, nonce, public_key or extend data: 1024 bytes, as the real NSM.
pub const MAX_USER_INPUT: usize = 1024;
