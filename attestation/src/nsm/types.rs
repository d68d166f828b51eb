//! The NSM API's request and response types, as `aws-nitro-enclaves-nsm-api` defines them
//! (`src/api/mod.rs`): same variants, field names and field types.

use std::collections::BTreeSet;

/// Error codes an NSM returns in `Response::Error`, named as AWS names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    /// No errors.
    Success,
    /// Input argument(s) invalid.
    InvalidArgument,
    /// PCR index out of bounds.
    InvalidIndex,
    /// The response does not correspond to the request.
    InvalidResponse,
    /// PCR is locked and the operation would modify it.
    ReadOnlyIndex,
    /// The request cannot be fulfilled (missing capability).
    InvalidOperation,
    /// The output buffer is too small for the response.
    BufferTooSmall,
    /// The user-provided input is too large.
    InputTooLarge,
    /// Internal error of the NSM.
    InternalError,
}

impl ErrorCode {
    /// Every code, in AWS's declaration order.
    pub const ALL: [Self; 9] = [
        Self::Success,
        Self::InvalidArgument,
        Self::InvalidIndex,
        Self::InvalidResponse,
        Self::ReadOnlyIndex,
        Self::InvalidOperation,
        Self::BufferTooSmall,
        Self::InputTooLarge,
        Self::InternalError,
    ];

    /// The serde variant name (what goes on the wire).
    pub fn name(self) -> &'static str {
        match self {
            Self::Success => "Success",
            Self::InvalidArgument => "InvalidArgument",
            Self::InvalidIndex => "InvalidIndex",
            Self::InvalidResponse => "InvalidResponse",
            Self::ReadOnlyIndex => "ReadOnlyIndex",
            Self::InvalidOperation => "InvalidOperation",
            Self::BufferTooSmall => "BufferTooSmall",
            Self::InputTooLarge => "InputTooLarge",
            Self::InternalError => "InternalError",
        }
    }

    /// The code with wire name `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }
}

/// PCR bank digest algorithm (`nsm_io::Digest`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Digest {
    /// SHA-256.
    SHA256,
    /// SHA-384 (what we use).
    SHA384,
    /// SHA-512.
    SHA512,
}

impl Digest {
    /// The wire name.
    pub fn name(self) -> &'static str {
        match self {
            Self::SHA256 => "SHA256",
            Self::SHA384 => "SHA384",
            Self::SHA512 => "SHA512",
        }
    }

    /// The digest with wire name `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::SHA256, Self::SHA384, Self::SHA512]
            .into_iter()
            .find(|d| d.name() == name)
    }
}

/// A request to the NSM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Read PCR `index`.
    DescribePCR {
        /// PCR index.
        index: u16,
    },
    /// Extend PCR `index` with `data`.
    ExtendPCR {
        /// PCR index.
        index: u16,
        /// Data to extend with.
        data: Vec<u8>,
    },
    /// Lock PCR `index`.
    LockPCR {
        /// PCR index.
        index: u16,
    },
    /// Lock PCRs `[0, range)`.
    LockPCRs {
        /// Number of PCRs to lock from index 0.
        range: u16,
    },
    /// Version and capabilities.
    DescribeNSM,
    /// A signed attestation document.
    Attestation {
        /// User data to include.
        user_data: Option<Vec<u8>>,
        /// Nonce to include.
        nonce: Option<Vec<u8>>,
        /// Public key to include.
        public_key: Option<Vec<u8>>,
    },
    /// Random bytes.
    GetRandom,
}

/// A response from the NSM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    /// PCR state.
    DescribePCR {
        /// Whether the PCR is locked.
        lock: bool,
        /// Its value.
        data: Vec<u8>,
    },
    /// The PCR's new value after an extend.
    ExtendPCR {
        /// New value.
        data: Vec<u8>,
    },
    /// PCR locked.
    LockPCR,
    /// PCRs locked.
    LockPCRs,
    /// Module description.
    DescribeNSM {
        /// Major version.
        version_major: u16,
        /// Minor version.
        version_minor: u16,
        /// Patch version.
        version_patch: u16,
        /// Module identifier.
        module_id: String,
        /// Number of PCRs.
        max_pcrs: u16,
        /// Locked PCR indexes.
        locked_pcrs: BTreeSet<u16>,
        /// Bank digest.
        digest: Digest,
    },
    /// COSE_Sign1 attestation document.
    Attestation {
        /// The document.
        document: Vec<u8>,
    },
    /// Random bytes.
    GetRandom {
        /// The bytes.
        random: Vec<u8>,
    },
    /// An error.
    Error(ErrorCode),
}
