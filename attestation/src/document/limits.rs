//! Size limits of the attestation document schema.

/// Largest COSE_Sign1 document accepted: 16 KiB.
pub const MAX_DOCUMENT_SIZE: usize = 16 * 1024;
/// Largest module_id, bytes.
pub const MAX_MODULE_ID_LEN: usize = 256;
/// Largest DER certificate, bytes.
pub const MAX_CERT_LEN: usize = 2048;
/// Most certificates in the cabundle.
pub const MAX_CABUNDLE_LEN: usize = 8;
/// Largest user_data, nonce or public_key, bytes (as the NSM accepts).
pub const MAX_USER_FIELD_LEN: usize = 1024;
/// Most PCRs in a document.
pub const MAX_PCRS: usize = 32;
/// Length of a SHA-384 PCR.
pub const PCR_LEN: usize = 48;
