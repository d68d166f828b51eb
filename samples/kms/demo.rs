//! `kms-demo`: the README's main command. The whole story on this machine: build the
//! `kms-enclave` image (PCRs shown), create the CA if needed, start the key service and
//! vsock-proxy, let a data owner envelope-encrypt a message under a key whose policy pins the
//! image's PCR0, launch the enclave in production mode, release the key to it through
//! attestation, decrypt the message inside it; then a second image with one byte changed is
//! refused with the PCR that differs. Everything is cleaned up; any failure exits non-zero.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::Parser;
use samples::scenario::{build_kms_enclave, Bins, Image, ScenarioError, World, WorldOptions};
use serde_json::{json, Value};

/// The key the demo creates.
const KEY_ID: &str = "demo-key";
/// The data owner's secret message.
const MESSAGE: &str = "Only code with the pinned PCR0 can read this sentence.";

/// Runs the end-to-end KMS demo (needs root and /dev/kvm).
#[derive(Parser, Debug)]
#[command(name = "kms-demo", version)]
struct Args {
    /// The CA directory (created if missing; default ENCLAVE_CA_DIR, else /var/lib/enclave/ca).
    #[arg(long)]
    ca_dir: Option<PathBuf>,
    /// Print the summary as JSON on stdout (progress goes to stderr).
    #[arg(long)]
    json: bool,
}

/// Progress output: numbered steps with their duration.
struct Steps {
    json: bool,
    color: bool,
    n: usize,
    started: Instant,
}

impl Steps {
    fn line(&self, text: &str) {
        if self.json {
            eprintln!("{text}");
        } else {
            println!("{text}");
        }
    }

    fn step(&mut self, title: &str) {
        self.n += 1;
        self.started = Instant::now();
        let text = format!("\n==> [{}] {title}", self.n);
        if self.color {
            self.line(&format!("\x1b[1m{text}\x1b[0m"));
        } else {
            self.line(&text);
        }
    }

    fn detail(&self, text: &str) {
        self.line(&format!("    {text}"));
    }

    fn done(&self, text: &str) -> u128 {
        let ms = self.started.elapsed().as_millis();
        self.line(&format!("    ✓ {text} ({ms} ms)"));
        ms
    }
}

fn differing_pcrs(a: &Image, b: &Image) -> Vec<String> {
    (0..=8u16)
        .filter(|&i| {
            let (x, y) = (a.pcr(i), b.pcr(i));
            !x.is_empty() && x != y
        })
        .map(|i| format!("PCR{i}"))
        .collect()
}

fn short(hex: &str) -> String {
    if hex.len() > 24 {
        format!("{}…{}", &hex[..16], &hex[hex.len() - 8..])
    } else {
        hex.to_owned()
    }
}

fn run(args: &Args, s: &mut Steps) -> anyhow::Result<Value> {
    if let Some(why) = samples::scratch::host_unsupported() {
        bail!("enclaves cannot run on this host: {why} (the demo needs root, a read-write /dev/kvm and a cpuset cgroup)");
    }
    s.step("Building the enclave program `kms-enclave` (static Rust; AWS's aws-nitro-enclaves-nsm-api, HPKE)");
    let program = build_kms_enclave()?;
    s.done(&format!("{}", program.display()));

    s.step("Carving a pool out of this machine: 1 CPU, 256 MiB (enclave allocator apply)");
    let ca_dir = args
        .ca_dir
        .clone()
        .or_else(|| std::env::var_os("ENCLAVE_CA_DIR").map(PathBuf::from))
        .unwrap_or_else(attestation::ca::default_dir);
    let bins = Bins::beside_current_exe()?;
    let mut options = WorldOptions::new(bins);
    options.ca_dir = Some(ca_dir);
    let mut world = World::new(options)?;
    s.done(&format!(
        "pool ready; working directory {}",
        world.dir().display()
    ));

    s.step("Attestation CA (enclave ca init, if needed)");
    let created = world.ensure_ca()?;
    s.done(&format!(
        "{} root {}",
        if created {
            "created"
        } else {
            "using the existing"
        },
        world.root_certificate().display()
    ));

    s.step("Building the image kms.eif (enclave build-enclave, no Docker)");
    let conf = world.dir().join("kms-enclave.conf");
    std::fs::write(&conf, "release = 1\n").context("cannot write the image's config file")?;
    let good = world.build_image(
        "kms",
        &program,
        &[(conf.clone(), "/etc/kms-enclave.conf")],
        &[],
    )?;
    for i in 0..=2u16 {
        s.detail(&format!("PCR{i} = {}", good.pcr(i)));
    }
    s.done("image measured");

    s.step("Starting the key service and vsock-proxy (enclave CID 3 port 8000 → key service)");
    let addr = world.start_kms()?;
    world.start_proxy()?;
    s.done(&format!(
        "kms-server on {addr}; vsock-proxy allowlists only that address"
    ));

    s.step(&format!("Creating key {KEY_ID:?}: policy pins PCR0 of kms.eif and the CA root; debug refused; documents ≤ 300 s old"));
    let policy = world.policy(&[(0, good.pcr(0))], 300)?;
    world.create_key(KEY_ID, &policy)?;
    s.done("key created, sealed at rest under the service's master key");

    s.step("The data owner envelope-encrypts a message under the key (kms encrypt-envelope)");
    let envelope = world.encrypt_envelope(KEY_ID, MESSAGE.as_bytes())?;
    s.detail(&format!(
        "ciphertext {} bytes; the data key travels only sealed",
        envelope
            .get("Ciphertext")
            .and_then(Value::as_str)
            .map_or(0, |c| c.len() * 3 / 4)
    ));
    s.done("envelope written");

    s.step("Launching kms.eif in production mode (enclave run-enclave: no console, real PCRs)");
    let enclave = world.launch(&good, false)?;
    let launch_ms = s.done(&format!(
        "enclave {} (CID {}) RUNNING",
        enclave.id(),
        enclave.cid()
    ));

    s.step("Key release: enclave attests (/dev/nsm, nonce from the service) → service verifies → HPKE-sealed data key");
    let mut app = world.app(&enclave)?;
    let timings = app.provision(&envelope)?;
    s.detail(&format!(
        "inside the enclave: attestation {:.2} ms, key service {:.2} ms, total {:.2} ms",
        timings.attest_us as f64 / 1000.0,
        timings.kms_us as f64 / 1000.0,
        timings.total_us as f64 / 1000.0
    ));
    let release_ms = s.done("data key released to the enclave, never to the parent");

    s.step("Parent asks the enclave to decrypt the envelope");
    let plaintext = app.decrypt_message(&envelope)?;
    let text = String::from_utf8_lossy(&plaintext).into_owned();
    if text != MESSAGE {
        bail!("the enclave decrypted {text:?}, expected {MESSAGE:?}");
    }
    s.detail(&format!("decrypted: {text:?}"));
    s.done("matches the owner's message");
    drop(app);
    enclave.terminate()?;

    s.step("A second image with one byte changed (/etc/kms-enclave.conf: release = 2)");
    std::fs::write(&conf, "release = 2\n").context("cannot write the image's config file")?;
    let bad = world.build_image(
        "kms-changed",
        &program,
        &[(conf, "/etc/kms-enclave.conf")],
        &[],
    )?;
    let differ = differing_pcrs(&good, &bad);
    s.detail(&format!(
        "PCR0 {} → {} (differs: {})",
        short(&good.pcr(0)),
        short(&bad.pcr(0)),
        differ.join(", ")
    ));
    let enclave = world.launch(&bad, false)?;
    let refusal = match world.app(&enclave)?.provision(&envelope) {
        Ok(_) => bail!("the key service released the key to an image its policy does not allow"),
        Err(ScenarioError::Refused { code, message }) => {
            if code != "AccessDeniedException" || !message.contains("PCR0") {
                bail!("refused for the wrong reason: {code}: {message}");
            }
            format!("{code}: {message}")
        }
        Err(e) => return Err(e).context("the refused key release failed in an unexpected way"),
    };
    s.detail(&format!("refused: {refusal}"));
    enclave.terminate()?;
    s.done("the policy held");

    s.step("Audit log of the key service");
    let audit = world.audit()?;
    for entry in &audit {
        s.detail(&format!(
            "{} {} {} {}",
            entry.get("Decision").and_then(Value::as_str).unwrap_or("?"),
            entry.get("Action").and_then(Value::as_str).unwrap_or("?"),
            entry.get("KeyId").and_then(Value::as_str).unwrap_or("-"),
            entry.get("Reason").and_then(Value::as_str).unwrap_or("")
        ));
    }
    let allows = audit
        .iter()
        .filter(|e| e.get("Decision").and_then(Value::as_str) == Some("Allow"))
        .count();
    let denies = audit.len() - allows;
    s.done(&format!("{allows} allowed, {denies} denied"));

    s.step("Cleaning up: services stopped, enclaves terminated, pool released");
    let dir = world.dir().to_owned();
    drop(world);
    if dir.exists() {
        bail!("the working directory {} was not removed", dir.display());
    }
    s.done("pool released, working directory removed");

    Ok(json!({
        "Result": "ok",
        "PCR0": good.pcr(0),
        "ChangedImagePCR0": bad.pcr(0),
        "DifferingPCRs": differ,
        "LaunchMillis": launch_ms,
        "KeyReleaseMillis": release_ms,
        "EnclaveTimingsMicros": {
            "Attest": timings.attest_us,
            "Kms": timings.kms_us,
            "Total": timings.total_us,
        },
        "Decrypted": text,
        "Refusal": refusal,
        "AuditAllow": allows,
        "AuditDeny": denies,
    }))
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut steps = Steps {
        json: args.json,
        color: !args.json && std::io::stdout().is_terminal(),
        n: 0,
        started: Instant::now(),
    };
    let total = Instant::now();
    match run(&args, &mut steps) {
        Ok(summary) => {
            if args.json {
                println!("{summary}");
            } else {
                println!("\n==> Summary ({} ms in all)", total.elapsed().as_millis());
                println!(
                    "    image PCR0        {}",
                    short(summary["PCR0"].as_str().unwrap_or(""))
                );
                println!(
                    "    launch            {} ms (production mode)",
                    summary["LaunchMillis"]
                );
                println!(
                    "    key release       {} ms (attestation + verification + HPKE)",
                    summary["KeyReleaseMillis"]
                );
                println!("    decrypted inside  {}", summary["Decrypted"]);
                println!(
                    "    changed image     refused — {}",
                    summary["Refusal"].as_str().unwrap_or("")
                );
                println!("\nkms-demo: OK");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("\nkms-demo: FAILED at step {}: {e}", steps.n);
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}
