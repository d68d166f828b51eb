//! A small blocking client of the key service over any `Read + Write` stream (TCP, a Unix
//! socket, a vsock stream): one method per action, plus envelope encryption of a message.

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde::de::DeserializeOwned;

use super::crypto::{self, CryptoError};
use super::protocol::{
    exchange, Bytes, DecryptResponse, EncryptResponse, Envelope, ErrorBody, ExchangeError,
    GenerateDataKeyResponse, NonceResponse, Recipient, Request,
};

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Connecting failed.
    #[error("Cannot connect to the key service at {addr}: is kms-server running there?")]
    Connect {
        /// Address.
        addr: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The exchange failed.
    #[error("Key service exchange failed")]
    Exchange(#[source] ExchangeError),
    /// The service refused.
    #[error("The key service refused: {0}")]
    Service(ErrorBody),
    /// Local sealing failed.
    #[error("Cannot seal the message locally")]
    Crypto(#[from] CryptoError),
}

impl ClientError {
    /// The service's error, if it refused.
    pub fn service_error(&self) -> Option<&ErrorBody> {
        match self {
            Self::Service(e) => Some(e),
            _ => None,
        }
    }
}

/// A connection to the key service.
#[derive(Debug)]
pub struct KmsClient<S: Read + Write> {
    stream: BufReader<S>,
}

impl KmsClient<TcpStream> {
    /// Connects over TCP (`host:port`), with a 30 s I/O timeout.
    pub fn connect(addr: &str) -> Result<Self, ClientError> {
        let stream = TcpStream::connect(addr).map_err(|source| ClientError::Connect {
            addr: addr.to_owned(),
            source,
        })?;
        let timeout = Some(Duration::from_secs(30));
        let _ = stream.set_read_timeout(timeout);
        let _ = stream.set_write_timeout(timeout);
        let _ = stream.set_nodelay(true);
        Ok(Self::new(stream))
    }
}

impl<S: Read + Write> KmsClient<S> {
    /// A client over an open stream.
    pub fn new(stream: S) -> Self {
        Self {
            stream: BufReader::new(stream),
        }
    }

    /// Sends any request and parses the reply as `T`.
    pub fn call<T: DeserializeOwned>(&mut self, request: &Request) -> Result<T, ClientError> {
        exchange::<S, Request, T>(&mut self.stream, request)
            .map_err(ClientError::Exchange)?
            .into_result()
            .map_err(ClientError::Service)
    }

    /// Sends a raw line (tests of malformed input) and returns the reply line as JSON.
    pub fn raw(&mut self, line: &[u8]) -> Result<serde_json::Value, ClientError> {
        let io = |e| ClientError::Exchange(ExchangeError::Io(e));
        self.stream.get_mut().write_all(line).map_err(io)?;
        self.stream.get_mut().flush().map_err(io)?;
        match super::protocol::read_line(&mut self.stream).map_err(io)? {
            super::protocol::Line::Complete(l) => serde_json::from_slice(&l)
                .map_err(|e| ClientError::Exchange(ExchangeError::BadReply(e.to_string()))),
            super::protocol::Line::TooLong(n) => {
                Err(ClientError::Exchange(ExchangeError::TooLong(n)))
            }
            super::protocol::Line::Eof => Err(ClientError::Exchange(ExchangeError::Closed)),
        }
    }

    /// A fresh nonce.
    pub fn get_nonce(&mut self) -> Result<Vec<u8>, ClientError> {
        Ok(self.call::<NonceResponse>(&Request::GetNonce)?.nonce.0)
    }

    /// Seals `plaintext` under `key_id`.
    pub fn encrypt(
        &mut self,
        key_id: &str,
        plaintext: &[u8],
    ) -> Result<EncryptResponse, ClientError> {
        self.call(&Request::Encrypt {
            key_id: key_id.to_owned(),
            plaintext: Bytes(plaintext.to_vec()),
        })
    }

    /// A new data key for the attested recipient.
    pub fn generate_data_key(
        &mut self,
        key_id: &str,
        number_of_bytes: u32,
        recipient: Recipient,
    ) -> Result<GenerateDataKeyResponse, ClientError> {
        self.call(&Request::GenerateDataKey {
            key_id: key_id.to_owned(),
            number_of_bytes,
            recipient,
        })
    }

    /// Opens `blob` for the attested recipient.
    pub fn decrypt(
        &mut self,
        blob: &[u8],
        key_id: Option<&str>,
        recipient: Recipient,
    ) -> Result<DecryptResponse, ClientError> {
        self.call(&Request::Decrypt {
            ciphertext_blob: Bytes(blob.to_vec()),
            key_id: key_id.map(str::to_owned),
            recipient,
        })
    }

    /// Envelope-encrypts `message`: a fresh data key seals it locally, the service seals the
    /// data key under `key_id`; the data key is then dropped.
    pub fn encrypt_envelope(
        &mut self,
        key_id: &str,
        message: &[u8],
    ) -> Result<Envelope, ClientError> {
        let sealed = crypto::seal_message(message)?;
        let blob = self.encrypt(key_id, &sealed.data_key)?;
        Ok(Envelope {
            key_id: blob.key_id,
            encrypted_data_key: blob.ciphertext_blob,
            iv: Bytes(sealed.iv),
            ciphertext: Bytes(sealed.ciphertext),
        })
    }
}
