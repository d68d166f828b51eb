//! The key service's state directory: `master.key` (32 random bytes, 0600, created if
//! missing) and `keys.json` (0600): named keys, each with its material sealed under the master
//! key (AES-256-GCM, AAD = key name) and its policy. Writes are atomic (temporary file,
//! fsync, rename). A [`Keyring`] re-reads `keys.json` when it changes on disk, so keys
//! created or updated while the server runs take effect.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::crypto::{self, CryptoError, KEY_LEN};
use super::policy::{error_chain, CompiledPolicy, KeyPolicy, PolicyError};
use super::protocol::Bytes;

/// Master key file.
pub const MASTER_KEY: &str = "master.key";
/// Key file.
pub const KEYS_FILE: &str = "keys.json";
/// Longest key name.
pub const MAX_KEY_NAME: usize = 64;

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// File system error.
    #[error("Cannot {what} {path}")]
    Io {
        /// What was attempted.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The master key file is damaged.
    #[error("{0} is not {KEY_LEN} bytes: restore it from backup (keys sealed under it cannot be opened otherwise)")]
    MasterKey(PathBuf),
    /// keys.json is damaged.
    #[error("{path} is not a valid key file: {reason}")]
    KeysFile {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A key's material cannot be opened.
    #[error(
        "Key {name:?} cannot be unsealed with {MASTER_KEY}: the key file or master key was changed"
    )]
    Unseal {
        /// Key.
        name: String,
        /// Cause.
        #[source]
        source: CryptoError,
    },
    /// A crypto failure.
    #[error("Cannot seal key material")]
    Crypto(#[from] CryptoError),
    /// A policy is unusable.
    #[error("Key {name:?} has an unusable policy")]
    Policy {
        /// Key.
        name: String,
        /// Cause.
        #[source]
        source: PolicyError,
    },
    /// Name already used.
    #[error("Key {0:?} already exists: pick another name, or use put-key-policy (create-key --replace-policy) to change its policy")]
    Exists(String),
    /// Name unknown.
    #[error("No key named {0:?}: create it with `kms create-key`")]
    NotFound(String),
    /// Name invalid.
    #[error(
        "Key name {0:?} is invalid: use 1 to {MAX_KEY_NAME} characters of A-Z a-z 0-9 _ - . / :"
    )]
    BadName(String),
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Checks a key name.
pub fn check_name(name: &str) -> Result<(), StoreError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_KEY_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-./:".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(StoreError::BadName(name.to_owned()))
    }
}

/// One key as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct StoredKey {
    /// IV ‖ AES-256-GCM ciphertext of the 32-byte material under the master key.
    pub sealed_material: Bytes,
    /// The key policy.
    pub policy: KeyPolicy,
    /// Creation time, ms since the epoch.
    pub creation_date_ms: u64,
}

/// The content of keys.json.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct KeysFile {
    /// Name → key.
    pub keys: BTreeMap<String, StoredKey>,
}

/// A key ready for use.
#[derive(Clone)]
pub struct LiveKey {
    /// The 32-byte material.
    pub material: Vec<u8>,
    /// The policy as written.
    pub policy: KeyPolicy,
    /// The policy, compiled.
    pub compiled: CompiledPolicy,
}

impl std::fmt::Debug for LiveKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveKey")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// The state directory.
#[derive(Clone)]
pub struct Store {
    dir: PathBuf,
    master: Vec<u8>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// Writes `bytes` to `path` atomically with `mode`.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), StoreError> {
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io("create", &tmp))?;
    f.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(io("set the mode of", &tmp))?;
    f.write_all(bytes).map_err(io("write", &tmp))?;
    f.sync_all().map_err(io("sync", &tmp))?;
    std::fs::rename(&tmp, path).map_err(io("rename into place", path))?;
    if let Some(dir) = path.parent() {
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

impl Store {
    /// Opens (creating if needed) the state directory and its master key.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io("create", dir))?;
        let path = dir.join(MASTER_KEY);
        let master = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = crypto::random_bytes(KEY_LEN)?;
                let mut f = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .map_err(io("create", &path))?;
                f.write_all(&key).map_err(io("write", &path))?;
                f.sync_all().map_err(io("sync", &path))?;
                key
            }
            Err(e) => return Err(io("read", &path)(e)),
        };
        if master.len() != KEY_LEN {
            return Err(StoreError::MasterKey(path));
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            master,
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of keys.json.
    pub fn keys_path(&self) -> PathBuf {
        self.dir.join(KEYS_FILE)
    }

    /// Reads keys.json (empty if absent).
    pub fn read(&self) -> Result<KeysFile, StoreError> {
        let path = self.keys_path();
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| StoreError::KeysFile {
                path,
                reason: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(KeysFile::default()),
            Err(e) => Err(io("read", &path)(e)),
        }
    }

    fn write(&self, keys: &KeysFile) -> Result<(), StoreError> {
        let mut text = serde_json::to_vec_pretty(keys).map_err(|e| StoreError::KeysFile {
            path: self.keys_path(),
            reason: e.to_string(),
        })?;
        text.push(b'\n');
        write_atomic(&self.keys_path(), &text, 0o600)
    }

    /// Creates key `name` with fresh material and `policy`.
    pub fn create_key(&self, name: &str, policy: &KeyPolicy) -> Result<(), StoreError> {
        check_name(name)?;
        policy.compile().map_err(|source| StoreError::Policy {
            name: name.to_owned(),
            source,
        })?;
        let mut keys = self.read()?;
        if keys.keys.contains_key(name) {
            return Err(StoreError::Exists(name.to_owned()));
        }
        let material = crypto::random_bytes(KEY_LEN)?;
        let (iv, ct) = crypto::seal(&self.master, name.as_bytes(), &material)?;
        keys.keys.insert(
            name.to_owned(),
            StoredKey {
                sealed_material: Bytes([iv, ct].concat()),
                policy: policy.clone(),
                creation_date_ms: attestation::ca::now_ms(),
            },
        );
        self.write(&keys)
    }

    /// Replaces the policy of key `name`.
    pub fn put_policy(&self, name: &str, policy: &KeyPolicy) -> Result<(), StoreError> {
        policy.compile().map_err(|source| StoreError::Policy {
            name: name.to_owned(),
            source,
        })?;
        let mut keys = self.read()?;
        let key = keys
            .keys
            .get_mut(name)
            .ok_or_else(|| StoreError::NotFound(name.to_owned()))?;
        key.policy = policy.clone();
        self.write(&keys)
    }

    /// Unseals and compiles one stored key.
    pub fn unseal(&self, name: &str, key: &StoredKey) -> Result<LiveKey, StoreError> {
        let sealed = &key.sealed_material.0;
        let (iv, ct) = sealed.split_at(sealed.len().min(crypto::IV_LEN));
        let material = crypto::open(&self.master, name.as_bytes(), iv, ct).map_err(|source| {
            StoreError::Unseal {
                name: name.to_owned(),
                source,
            }
        })?;
        let compiled = key.policy.compile().map_err(|source| StoreError::Policy {
            name: name.to_owned(),
            source,
        })?;
        Ok(LiveKey {
            material,
            policy: key.policy.clone(),
            compiled,
        })
    }
}

/// Identity of keys.json on disk: changes when it is replaced or rewritten.
type FileStamp = Option<(u64, u64, i64, i64, u64)>;

fn stamp(path: &Path) -> FileStamp {
    std::fs::metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino(), m.mtime(), m.mtime_nsec(), m.size()))
}

/// Unsealed keys, reloaded when keys.json changes.
#[derive(Debug)]
pub struct Keyring {
    store: Store,
    cached: Mutex<(FileStamp, Arc<BTreeMap<String, LiveKey>>)>,
}

impl Keyring {
    /// A keyring over `store`, loaded now.
    pub fn new(store: Store) -> Result<Self, StoreError> {
        let ring = Self {
            store,
            cached: Mutex::new((None, Arc::new(BTreeMap::new()))),
        };
        ring.keys()?;
        Ok(ring)
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The current keys (re-read if keys.json changed). Keys that cannot be unsealed or whose
    /// policy is unusable are left out with a log line.
    pub fn keys(&self) -> Result<Arc<BTreeMap<String, LiveKey>>, StoreError> {
        let path = self.store.keys_path();
        let now = stamp(&path);
        let mut cached = self
            .cached
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if cached.0.is_some() && cached.0 == now {
            return Ok(Arc::clone(&cached.1));
        }
        let file = self.store.read()?;
        let mut live = BTreeMap::new();
        for (name, key) in &file.keys {
            match self.store.unseal(name, key) {
                Ok(k) => {
                    live.insert(name.clone(), k);
                }
                Err(e) => tracing::error!(key = %name, "{}", error_chain(&e)),
            }
        }
        tracing::info!(keys = live.len(), path = %path.display(), "key file loaded");
        *cached = (now, Arc::new(live));
        Ok(Arc::clone(&cached.1))
    }

    /// One key.
    pub fn key(&self, name: &str) -> Result<Option<LiveKey>, StoreError> {
        Ok(self.keys()?.get(name).cloned())
    }
}
