//! `kms`: administration of the key service's state directory (create keys, set policies,
//! list keys, read the audit log), envelope encryption of a file through a running
//! `kms-server`, and key-policy templates from an image's measurements.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use samples::kms::audit;
use samples::kms::client::KmsClient;
use samples::kms::policy::{KeyPolicy, DEFAULT_MAX_AGE_SECS};
use samples::kms::store::Store;
use serde_json::json;

/// The key service's command line.
#[derive(Parser, Debug)]
#[command(name = "kms")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create a key with fresh material and a policy.
    CreateKey {
        /// State directory of the key service.
        #[arg(long)]
        state_dir: PathBuf,
        /// Key name.
        #[arg(long)]
        key_id: String,
        /// Key policy JSON file.
        #[arg(long)]
        policy: PathBuf,
        /// If the key exists, keep its material and replace its policy.
        #[arg(long)]
        replace_policy: bool,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Replace a key's policy.
    PutKeyPolicy {
        /// State directory of the key service.
        #[arg(long)]
        state_dir: PathBuf,
        /// Key name.
        #[arg(long)]
        key_id: String,
        /// Key policy JSON file.
        #[arg(long)]
        policy: PathBuf,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// List the keys and their policies.
    ListKeys {
        /// State directory of the key service.
        #[arg(long)]
        state_dir: PathBuf,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Envelope-encrypt a file: a fresh data key seals it here, the service seals the data key.
    EncryptEnvelope {
        /// Key service address (host:port).
        #[arg(long)]
        server: String,
        /// Key name.
        #[arg(long)]
        key_id: String,
        /// File to encrypt.
        #[arg(long = "in")]
        input: PathBuf,
        /// Envelope JSON to write.
        #[arg(long)]
        out: PathBuf,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Print a key policy pinning an image's PCRs and a root CA.
    PolicyTemplate {
        /// JSON printed by `enclave build-enclave` or `describe-eif` (its Measurements).
        #[arg(long, required_unless_present = "pcr0")]
        eif_describe_json: Option<PathBuf>,
        /// Allowed PCR0 value (repeatable), instead of --eif-describe-json.
        #[arg(long, conflicts_with = "eif_describe_json")]
        pcr0: Vec<String>,
        /// Extra allowed PCR values as INDEX=HEX (repeatable).
        #[arg(long = "pcr")]
        pcrs: Vec<String>,
        /// Root CA certificate (PEM), e.g. the CA directory's root.pem.
        #[arg(long)]
        root_ca: PathBuf,
        /// Accept debug-mode documents.
        #[arg(long)]
        allow_debug: bool,
        /// Maximum document age, seconds.
        #[arg(long, default_value_t = DEFAULT_MAX_AGE_SECS)]
        max_document_age_secs: u64,
        /// Compact JSON output (the policy is JSON either way).
        #[arg(long)]
        json: bool,
    },
    /// Print the audit log.
    Audit {
        /// State directory of the key service.
        #[arg(long)]
        state_dir: PathBuf,
        /// JSON output (a JSON array).
        #[arg(long)]
        json: bool,
    },
}

impl Command {
    fn json(&self) -> bool {
        match self {
            Self::CreateKey { json, .. }
            | Self::PutKeyPolicy { json, .. }
            | Self::ListKeys { json, .. }
            | Self::EncryptEnvelope { json, .. }
            | Self::PolicyTemplate { json, .. }
            | Self::Audit { json, .. } => *json,
        }
    }
}

fn read_policy(path: &Path) -> anyhow::Result<KeyPolicy> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the policy file {}", path.display()))?;
    let policy = KeyPolicy::from_json(&text)
        .with_context(|| format!("in the policy file {}", path.display()))?;
    policy
        .compile()
        .with_context(|| format!("in the policy file {}", path.display()))?;
    Ok(policy)
}

fn print(json: bool, value: &serde_json::Value, text: &str) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(value)?);
    } else {
        println!("{text}");
    }
    Ok(())
}

fn template(
    describe: Option<&Path>,
    pcr0: &[String],
    extra: &[String],
    root_ca: &Path,
) -> anyhow::Result<KeyPolicy> {
    let root = std::fs::read_to_string(root_ca)
        .with_context(|| format!("cannot read the root CA {}", root_ca.display()))?;
    let mut policy = match describe {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let v: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", path.display()))?;
            KeyPolicy::from_measurements(&v, &root)
                .with_context(|| format!("in {}", path.display()))?
        }
        None => KeyPolicy {
            pcrs: BTreeMap::from([(0, pcr0.to_vec())]),
            root_certificate: root,
            allow_debug: false,
            max_document_age_secs: DEFAULT_MAX_AGE_SECS,
        },
    };
    for e in extra {
        let (i, v) = e
            .split_once('=')
            .with_context(|| format!("--pcr {e:?} is not INDEX=HEX"))?;
        let i: u16 = i
            .parse()
            .with_context(|| format!("--pcr {e:?}: {i:?} is not a PCR index"))?;
        policy.pcrs.entry(i).or_default().push(v.to_owned());
    }
    Ok(policy)
}

fn run(cmd: &Command) -> anyhow::Result<()> {
    let json = cmd.json();
    match cmd {
        Command::CreateKey {
            state_dir,
            key_id,
            policy,
            replace_policy,
            ..
        } => {
            let p = read_policy(policy)?;
            let store = Store::open(state_dir)?;
            let exists = store.read()?.keys.contains_key(key_id);
            if exists && *replace_policy {
                store.put_policy(key_id, &p)?;
            } else {
                store.create_key(key_id, &p)?;
            }
            let action = if exists { "PolicyReplaced" } else { "Created" };
            print(
                json,
                &json!({ "KeyId": key_id, "Result": action }),
                &format!("key {key_id}: {action}"),
            )
        }
        Command::PutKeyPolicy {
            state_dir,
            key_id,
            policy,
            ..
        } => {
            let p = read_policy(policy)?;
            Store::open(state_dir)?.put_policy(key_id, &p)?;
            print(
                json,
                &json!({ "KeyId": key_id, "Result": "PolicyReplaced" }),
                &format!("key {key_id}: policy replaced"),
            )
        }
        Command::ListKeys { state_dir, .. } => {
            let file = Store::open(state_dir)?.read()?;
            let keys: Vec<_> = file
                .keys
                .iter()
                .map(|(name, k)| {
                    json!({ "KeyId": name, "CreationDateMs": k.creation_date_ms, "Policy": k.policy })
                })
                .collect();
            let text = file
                .keys
                .iter()
                .map(|(name, k)| {
                    let pcrs: Vec<String> =
                        k.policy.pcrs.keys().map(|i| format!("PCR{i}")).collect();
                    format!(
                        "{name}\tpins {}\tdebug {}\tmax age {} s",
                        if pcrs.is_empty() {
                            "no PCR".to_owned()
                        } else {
                            pcrs.join(",")
                        },
                        if k.policy.allow_debug {
                            "allowed"
                        } else {
                            "refused"
                        },
                        k.policy.max_document_age_secs
                    )
                })
                .collect::<Vec<_>>()
                .join("\n");
            print(json, &json!({ "Keys": keys }), &text)
        }
        Command::EncryptEnvelope {
            server,
            key_id,
            input,
            out,
            ..
        } => {
            let message =
                std::fs::read(input).with_context(|| format!("cannot read {}", input.display()))?;
            let envelope = KmsClient::connect(server)?.encrypt_envelope(key_id, &message)?;
            let text = serde_json::to_string_pretty(&envelope)?;
            std::fs::write(out, format!("{text}\n"))
                .with_context(|| format!("cannot write {}", out.display()))?;
            print(
                json,
                &json!({ "KeyId": envelope.key_id, "Envelope": out, "Bytes": message.len() }),
                &format!(
                    "{} bytes sealed under {}: {}",
                    message.len(),
                    envelope.key_id,
                    out.display()
                ),
            )
        }
        Command::PolicyTemplate {
            eif_describe_json,
            pcr0,
            pcrs,
            root_ca,
            allow_debug,
            max_document_age_secs,
            ..
        } => {
            let mut policy = template(eif_describe_json.as_deref(), pcr0, pcrs, root_ca)?;
            policy.allow_debug = *allow_debug;
            policy.max_document_age_secs = *max_document_age_secs;
            policy
                .compile()
                .context("the resulting policy is not valid")?;
            if json {
                println!("{}", serde_json::to_string(&policy)?);
            } else {
                println!("{}", serde_json::to_string_pretty(&policy)?);
            }
            Ok(())
        }
        Command::Audit { state_dir, .. } => {
            let records = audit::read_all(state_dir)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&records)?);
            } else {
                for r in records {
                    println!(
                        "{} {:?} {} key={} peer={} pcr0={} {}",
                        r.time,
                        r.decision,
                        r.action,
                        r.key_id.as_deref().unwrap_or("-"),
                        r.peer,
                        r.pcr0.as_deref().map_or("-", |p| p.get(..16).unwrap_or(p)),
                        r.reason
                    );
                }
            }
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let json = cli.command.json();
    match run(&cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let causes: Vec<String> = e.chain().skip(1).map(ToString::to_string).collect();
            if json {
                println!("{}", json!({ "Error": e.to_string(), "Causes": causes }));
            } else {
                eprintln!("error: {e}");
                for c in causes {
                    eprintln!("  caused by: {c}");
                }
            }
            ExitCode::FAILURE
        }
    }
}
