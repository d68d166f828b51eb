//! One self-contained KMS world on this host: a carved pool and run root in a temporary
//! directory (through [`Scratch`], which also holds the host-wide pool lock), a CA, the key
//! service with its state directory, `vsock-proxy` forwarding the enclaves' CID-3 port
//! [`KMS_PORT`] to it, and the `kms-enclave` images and enclaves launched from them.
//! Dropping the world stops the services, terminates its enclaves, releases the pool and
//! removes the directory (a CA outside it is kept).

use std::ffi::OsString;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sdk::{EnclaveHandle, LaunchOptions};
use serde_json::{json, Value};

use super::app::{AppClient, APP_PORT, KMS_PORT, REQUEST_TIMEOUT};
use super::bins::Bins;
use super::error::ScenarioError;
use super::service::Service;
use crate::scratch::Scratch;

/// How the world is set up.
#[derive(Debug, Clone)]
pub struct WorldOptions {
    /// The binaries to run.
    pub bins: Bins,
    /// Memory of the pool, MiB.
    pub pool_memory_mib: u64,
    /// Whether enclaves may share the pool CPU (`sharing = "shared"`, for many enclaves at
    /// once); otherwise each enclave holds its CPU exclusively, as in production.
    pub shared_cpus: bool,
    /// The CA directory; `None` makes one inside the world's directory.
    pub ca_dir: Option<PathBuf>,
    /// Guest memory of each enclave, MiB.
    pub enclave_memory_mib: u64,
}

impl WorldOptions {
    /// A 256 MiB exclusive pool, a private CA, 64 MiB enclaves.
    pub fn new(bins: Bins) -> Self {
        Self {
            bins,
            pool_memory_mib: 256,
            shared_cpus: false,
            ca_dir: None,
            enclave_memory_mib: 64,
        }
    }
}

/// A measured image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// The EIF.
    pub eif: PathBuf,
    /// `Measurements` as `build-enclave` printed them.
    pub measurements: Value,
}

impl Image {
    /// PCR `index` in hex, as printed.
    pub fn pcr(&self, index: u16) -> String {
        self.measurements
            .get(format!("PCR{index}"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    }
}

/// The KMS world. Field order is drop order: services first, then the enclaves and pool.
#[derive(Debug)]
pub struct World {
    proxy: Option<Service>,
    kms: Option<Service>,
    kms_addr: Option<String>,
    scratch: Scratch,
    options: WorldOptions,
    ca_dir: PathBuf,
}

impl World {
    /// Takes the host pool lock, carves the pool and prepares the directories.
    pub fn new(options: WorldOptions) -> Result<Self, ScenarioError> {
        let toml = format!(
            "memory_mib = {}\ncpu_count = 1\nsharing = \"{}\"\nhugepages = \"auto\"\n",
            options.pool_memory_mib,
            if options.shared_cpus {
                "shared"
            } else {
                "exclusive"
            }
        );
        let mut scratch = Scratch::with_pool(&options.bins.enclave, &toml).map_err(|reason| {
            ScenarioError::Command {
                command: "enclave allocator apply".into(),
                message: reason,
            }
        })?;
        let ca_dir = options
            .ca_dir
            .clone()
            .unwrap_or_else(|| scratch.dir().join("ca"));
        scratch.set_env("ENCLAVE_CA_DIR", &ca_dir);
        let state = scratch.dir().join("kms-state");
        std::fs::create_dir_all(&state)
            .map_err(ScenarioError::io(format!("create {}", state.display())))?;
        Ok(Self {
            proxy: None,
            kms: None,
            kms_addr: None,
            scratch,
            options,
            ca_dir,
        })
    }

    /// The world's temporary directory.
    pub fn dir(&self) -> &Path {
        self.scratch.dir()
    }

    /// The enclaves of this world (CLI and SDK with its environment).
    pub fn enclaves(&self) -> &sdk::Enclaves {
        self.scratch.enclaves()
    }

    /// The key service's state directory (master key, keys, audit log).
    pub fn kms_state_dir(&self) -> PathBuf {
        self.dir().join("kms-state")
    }

    /// The CA directory.
    pub fn ca_dir(&self) -> &Path {
        &self.ca_dir
    }

    /// The pinned root certificate (PEM).
    pub fn root_certificate(&self) -> PathBuf {
        self.ca_dir.join(attestation::ca::ROOT_CERT)
    }

    /// Runs `enclave <args>`; returns its stdout.
    pub fn enclave_cli<I, S>(&self, args: I) -> Result<String, ScenarioError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        Ok(self.enclaves().cli(args)?)
    }

    /// Creates the CA unless its root certificate exists; returns whether it was created.
    pub fn ensure_ca(&self) -> Result<bool, ScenarioError> {
        if self.root_certificate().is_file() {
            return Ok(false);
        }
        self.enclave_cli([
            OsString::from("ca"),
            "init".into(),
            "--dir".into(),
            self.ca_dir.clone().into(),
        ])?;
        Ok(true)
    }

    /// Packs `program` into `<dir>/<name>.eif` with `files` (`(source, destination)`) and
    /// `args`; returns the image and its measurements.
    pub fn build_image(
        &self,
        name: &str,
        program: &Path,
        files: &[(PathBuf, &str)],
        args: &[&str],
    ) -> Result<Image, ScenarioError> {
        let eif = self.dir().join(format!("{name}.eif"));
        let mut cli: Vec<OsString> = vec!["build-enclave".into(), "--binary".into()];
        cli.push(program.into());
        for (src, dst) in files {
            let mut spec = src.clone().into_os_string();
            spec.push(":");
            spec.push(dst);
            cli.push("--file".into());
            cli.push(spec);
        }
        for a in args {
            cli.push("--cmd".into());
            cli.push(a.into());
        }
        cli.push("--output-file".into());
        cli.push(eif.clone().into());
        let out = self.enclave_cli(&cli)?;
        let parsed: Value = serde_json::from_str(&out).map_err(|e| ScenarioError::Protocol {
            peer: "enclave build-enclave".into(),
            detail: format!("output is not JSON ({e})"),
        })?;
        Ok(Image {
            eif,
            measurements: parsed.get("Measurements").cloned().unwrap_or(Value::Null),
        })
    }

    fn service_env(&self) -> Vec<(String, PathBuf)> {
        vec![
            ("ENCLAVE_RUN_ROOT".into(), self.enclaves().run_root()),
            ("RUST_LOG".into(), PathBuf::from("info")),
        ]
    }

    /// Starts the key service on 127.0.0.1 (a free port the first time, the same port on a
    /// restart); returns its address.
    pub fn start_kms(&mut self) -> Result<String, ScenarioError> {
        let listen = self
            .kms_addr
            .clone()
            .unwrap_or_else(|| "127.0.0.1:0".into());
        let state = self.kms_state_dir();
        let log = self.dir().join("kms-server.log");
        let service = Service::start(
            "kms-server",
            &self.options.bins.kms_server,
            [
                OsString::from("--state-dir"),
                state.into(),
                "--listen".into(),
                listen.into(),
            ],
            &self.service_env(),
            &log,
        )?;
        let addr = service.ready_field("Listening")?;
        self.kms = Some(service);
        self.kms_addr = Some(addr.clone());
        Ok(addr)
    }

    /// The key service's address once started.
    pub fn kms_addr(&self) -> Option<&str> {
        self.kms_addr.as_deref()
    }

    /// The running key service.
    pub fn kms_service(&mut self) -> Option<&mut Service> {
        self.kms.as_mut()
    }

    /// Kills the key service (SIGKILL, as a crash) and starts it again on the same port.
    pub fn restart_kms(&mut self) -> Result<String, ScenarioError> {
        if let Some(mut s) = self.kms.take() {
            s.kill();
        }
        self.start_kms()
    }

    /// Writes the allowlist and starts `vsock-proxy` from the enclaves' CID-3 port
    /// [`KMS_PORT`] to the key service.
    pub fn start_proxy(&mut self) -> Result<(), ScenarioError> {
        let addr = self
            .kms_addr
            .clone()
            .ok_or_else(|| ScenarioError::Service {
                service: "vsock-proxy".into(),
                reason: "needs the key service started first".into(),
            })?;
        let (host, port) = addr
            .rsplit_once(':')
            .ok_or_else(|| ScenarioError::Service {
                service: "kms-server".into(),
                reason: format!("announced an address without a port: {addr}"),
            })?;
        let config = self.dir().join("vsock-proxy.yaml");
        std::fs::write(
            &config,
            format!("allowlist:\n- {{address: {host}, port: {port}}}\n"),
        )
        .map_err(ScenarioError::io(format!("write {}", config.display())))?;
        let log = self.dir().join("vsock-proxy.log");
        let service = Service::start(
            "vsock-proxy",
            &self.options.bins.vsock_proxy,
            [
                OsString::from(KMS_PORT.to_string()),
                host.into(),
                port.into(),
                "--config".into(),
                config.into(),
            ],
            &self.service_env(),
            &log,
        )?;
        self.proxy = Some(service);
        Ok(())
    }

    /// Runs `kms <args>` (the key service's admin and owner CLI); returns its stdout.
    pub fn kms_cli<I, S>(&self, args: I) -> Result<String, ScenarioError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let args: Vec<OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        let out = std::process::Command::new(&self.options.bins.kms)
            .args(&args)
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(ScenarioError::io(format!(
                "run {}",
                self.options.bins.kms.display()
            )))?;
        if !out.status.success() {
            let command = args
                .iter()
                .take(1)
                .map(|a| format!("kms {}", a.to_string_lossy()))
                .collect();
            return Err(ScenarioError::Command {
                command,
                message: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// A key policy pinning `pcrs` (index, hex value) and this world's root; debug refused;
    /// documents at most `max_age_secs` old.
    pub fn policy(
        &self,
        pcrs: &[(u16, String)],
        max_age_secs: u64,
    ) -> Result<Value, ScenarioError> {
        let root = self.root_certificate();
        let pem = std::fs::read_to_string(&root)
            .map_err(ScenarioError::io(format!("read {}", root.display())))?;
        let mut map = serde_json::Map::new();
        for (index, value) in pcrs {
            map.insert(index.to_string(), json!([value]));
        }
        Ok(json!({
            "Pcrs": map,
            "RootCertificate": pem,
            "AllowDebug": false,
            "MaxDocumentAgeSecs": max_age_secs,
        }))
    }

    fn write_policy(&self, key_id: &str, policy: &Value) -> Result<PathBuf, ScenarioError> {
        let path = self.dir().join(format!("policy-{key_id}.json"));
        std::fs::write(&path, policy.to_string())
            .map_err(ScenarioError::io(format!("write {}", path.display())))?;
        Ok(path)
    }

    /// Creates key `key_id` with `policy` in the key service's store.
    pub fn create_key(&self, key_id: &str, policy: &Value) -> Result<(), ScenarioError> {
        self.key_command("create-key", key_id, policy)
    }

    /// Replaces the policy of key `key_id`.
    pub fn put_key_policy(&self, key_id: &str, policy: &Value) -> Result<(), ScenarioError> {
        self.key_command("put-key-policy", key_id, policy)
    }

    /// `kms <command> --state-dir … --key-id <key_id> --policy <file>`.
    fn key_command(
        &self,
        command: &str,
        key_id: &str,
        policy: &Value,
    ) -> Result<(), ScenarioError> {
        let path = self.write_policy(key_id, policy)?;
        self.kms_cli([
            OsString::from(command),
            "--state-dir".into(),
            self.kms_state_dir().into(),
            "--key-id".into(),
            key_id.into(),
            "--policy".into(),
            path.into(),
            "--json".into(),
        ])?;
        Ok(())
    }

    /// Envelope-encrypts `message` for key `key_id` as a data owner would (a local data key,
    /// sealed by the key service's Encrypt); returns the envelope JSON.
    pub fn encrypt_envelope(&self, key_id: &str, message: &[u8]) -> Result<Value, ScenarioError> {
        let addr = self
            .kms_addr
            .clone()
            .ok_or_else(|| ScenarioError::Service {
                service: "kms-server".into(),
                reason: "is not started".into(),
            })?;
        let input = self.dir().join("message.txt");
        let output = self.dir().join("envelope.json");
        std::fs::write(&input, message)
            .map_err(ScenarioError::io(format!("write {}", input.display())))?;
        self.kms_cli([
            OsString::from("encrypt-envelope"),
            "--server".into(),
            addr.into(),
            "--key-id".into(),
            key_id.into(),
            "--in".into(),
            input.clone().into(),
            "--out".into(),
            output.clone().into(),
            "--json".into(),
        ])?;
        let _ = std::fs::remove_file(&input);
        let text = std::fs::read_to_string(&output)
            .map_err(ScenarioError::io(format!("read {}", output.display())))?;
        serde_json::from_str(&text).map_err(|e| ScenarioError::Protocol {
            peer: "kms encrypt-envelope".into(),
            detail: format!("envelope is not JSON ({e})"),
        })
    }

    /// Launches an enclave from `image` (production mode unless `debug`).
    pub fn launch(&self, image: &Image, debug: bool) -> Result<EnclaveHandle, ScenarioError> {
        let options = LaunchOptions::new(&image.eif)
            .memory_mib(self.options.enclave_memory_mib)
            .debug(debug);
        Ok(self.enclaves().launch(&options)?)
    }

    /// Connects to the enclave program's request port.
    pub fn app(&self, enclave: &EnclaveHandle) -> Result<AppClient<UnixStream>, ScenarioError> {
        let stream = enclave.connect_retry(APP_PORT, Duration::from_secs(10))?;
        stream
            .set_read_timeout(Some(REQUEST_TIMEOUT))
            .map_err(ScenarioError::io(
                "set a read timeout on the enclave connection",
            ))?;
        Ok(AppClient::new(stream))
    }

    /// The key service's audit log, one JSON object per decision.
    pub fn audit(&self) -> Result<Vec<Value>, ScenarioError> {
        let path = self.kms_state_dir().join("audit.jsonl");
        let text = std::fs::read_to_string(&path)
            .map_err(ScenarioError::io(format!("read {}", path.display())))?;
        Ok(text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect())
    }
}

/// Builds `samples/kms/enclave` (the enclave program) statically; returns its path.
pub fn build_kms_enclave() -> Result<PathBuf, ScenarioError> {
    crate::enclave_apps::kms_enclave().map_err(|reason| ScenarioError::Build {
        what: "kms-enclave".into(),
        reason,
    })
}
