//! Command-line arguments, modelled on nitro-cli.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Run isolated KVM enclaves from measured images, Nitro-Enclaves style, on any Linux host.
#[derive(Parser, Debug)]
#[command(name = "enclave", version, about)]
pub struct Cli {
    /// Machine-readable JSON output (commands that print JSON anyway keep doing so).
    #[arg(long, global = true)]
    pub json: bool,
    /// More logging on stderr (-v info, -vv debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Build an enclave image (EIF) from a static ELF program and files, or from an OCI/Docker
    /// image archive or layout; no Docker.
    BuildEnclave(BuildArgs),
    /// Show an EIF's measurements, sections and metadata.
    DescribeEif(DescribeEifArgs),
    /// Reserve or show the CPU and memory pool enclaves are carved from.
    Allocator(AllocatorArgs),
    /// Start an enclave from an EIF.
    RunEnclave(RunArgs),
    /// List running enclaves, and ended ones (EXITED/CRASHED) until their record is removed.
    DescribeEnclaves,
    /// Terminate one or all enclaves; on an ended enclave, remove its record.
    TerminateEnclave(TerminateArgs),
    /// Stream a debug-mode enclave's console (after it ended: print its kept log).
    Console(ConsoleArgs),
    /// The VMM process of one enclave (started by run-enclave; not for direct use).
    #[command(name = "__vmm", hide = true)]
    Vmm(VmmArgs),
    /// Manage the local attestation CA (root and host intermediate).
    Ca(CaArgs),
    /// Verify an attestation document against a pinned root and a policy.
    VerifyAttestation(VerifyAttestationArgs),
    /// Print the PCR of a file, or PCR8 of a signing certificate, as nitro-cli.
    Pcr(PcrArgs),
    /// Sign an EIF (adds or replaces its signature section; sets PCR8).
    SignEif(SignEifArgs),
    /// Check an EIF for everything that would make run-enclave fail (exits 1 on an error).
    ValidateEif(ValidateEifArgs),
    /// Check what this host offers for enclaves and what it lacks (exits 1 if run-enclave
    /// cannot work here).
    Doctor,
    /// Rebuild an image from the same inputs as build-enclave and compare it with an EIF or
    /// PCRs (exit 2 when it differs).
    VerifyBuild(VerifyBuildArgs),
}

/// `verify-build`.
#[derive(Args, Debug)]
pub struct VerifyBuildArgs {
    /// The build-enclave inputs to rebuild from.
    #[command(flatten)]
    pub build: BuildArgs,
    /// The EIF to compare with (PCRs, sections and ramdisk files).
    #[arg(long, conflicts_with_all = ["pcrs", "pcr0", "pcr1", "pcr2"])]
    pub eif_path: Option<PathBuf>,
    /// PCRs to compare with: the `{"Measurements": {...}}` JSON build-enclave or nitro-cli
    /// printed.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["pcr0", "pcr1", "pcr2"])]
    pub pcrs: Option<PathBuf>,
    /// Expected PCR0 (hex).
    #[arg(long, value_name = "HEX")]
    pub pcr0: Option<String>,
    /// Expected PCR1 (hex).
    #[arg(long, value_name = "HEX")]
    pub pcr1: Option<String>,
    /// Expected PCR2 (hex).
    #[arg(long, value_name = "HEX")]
    pub pcr2: Option<String>,
}

/// `build-enclave`.
#[derive(Args, Debug)]
pub struct BuildArgs {
    /// The x86_64 ELF program to run as /init (static, or dynamic with --with-libs).
    #[arg(long, required_unless_present_any = ["oci_archive", "oci_dir"], conflicts_with_all = ["oci_archive", "oci_dir"])]
    pub binary: Option<PathBuf>,
    /// Put a dynamically linked program's interpreter and shared libraries (PT_INTERP and
    /// DT_NEEDED, recursively, found as ld.so would) into the image at their paths.
    #[arg(long)]
    pub with_libs: bool,
    /// An OCI image archive instead of --binary: `docker save`, `podman save` or
    /// `skopeo copy ... oci-archive:FILE` output. --cmd replaces its Cmd, --env adds to its Env.
    #[arg(long, value_name = "FILE", conflicts_with = "oci_dir")]
    pub oci_archive: Option<PathBuf>,
    /// An OCI image layout directory instead of --binary (`skopeo copy ... oci:DIR`, umoci,
    /// buildah).
    #[arg(long, value_name = "DIR")]
    pub oci_dir: Option<PathBuf>,
    /// Which image of the archive or layout (a tag such as `latest` or `app:1`) when it holds
    /// several.
    #[arg(long, value_name = "NAME")]
    pub oci_ref: Option<String>,
    /// Largest unpacked image accepted, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = crate::oci::DEFAULT_MAX_SIZE_MIB)]
    pub oci_max_size_mib: u64,
    /// Extra file to put in the image, as SRC:DST (DST absolute inside the image).
    #[arg(long = "file", value_name = "SRC:DST")]
    pub files: Vec<String>,
    /// Argument for the program (repeat; the first is argv[1], argv[0] is /init; with an OCI
    /// image they replace the image's Cmd).
    #[arg(long = "cmd", value_name = "ARG", allow_hyphen_values = true)]
    pub cmd: Vec<String>,
    /// Environment variable for the program, as K=V (repeat).
    #[arg(long = "env", value_name = "K=V")]
    pub env: Vec<String>,
    /// Where to write the EIF (required by build-enclave; verify-build writes its rebuild
    /// there when given).
    #[arg(long)]
    pub output_file: Option<PathBuf>,
    /// Image name recorded in the metadata (default: the binary's file name).
    #[arg(long)]
    pub name: Option<String>,
    /// Image version recorded in the metadata.
    #[arg(long, default_value = "1.0")]
    pub version: String,
    /// X.509 certificate (PEM) to sign the image with; sets PCR8 (needs --private-key).
    #[arg(long, requires = "private_key")]
    pub signing_certificate: Option<PathBuf>,
    /// P-384 private key (PEM) matching --signing-certificate.
    #[arg(long, requires = "signing_certificate")]
    pub private_key: Option<PathBuf>,
}

/// `describe-eif`.
#[derive(Args, Debug)]
pub struct DescribeEifArgs {
    /// The EIF to describe.
    #[arg(long)]
    pub eif_path: PathBuf,
}

/// `allocator`.
#[derive(Args, Debug)]
pub struct AllocatorArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: AllocatorAction,
}

/// `allocator apply|show|release`.
#[derive(Subcommand, Debug)]
pub enum AllocatorAction {
    /// Reserve the pool described by the config file (ENCLAVE_ALLOCATOR_CONFIG, default /etc/enclave/allocator.toml).
    Apply,
    /// Show the pool and what running enclaves hold.
    Show,
    /// Give the pool back to the host.
    Release {
        /// Also drop claims of enclaves that still run (their CPUs and memory go back too).
        #[arg(long)]
        force: bool,
    },
}

/// `run-enclave`.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// The EIF to run.
    #[arg(long)]
    pub eif_path: PathBuf,
    /// Number of CPUs, taken from the pool.
    #[arg(long, conflicts_with = "cpu_ids", required_unless_present = "cpu_ids")]
    pub cpu_count: Option<u32>,
    /// Exact pool CPUs to use (e.g. 1,3).
    #[arg(long, value_delimiter = ',')]
    pub cpu_ids: Option<Vec<u32>>,
    /// Guest memory in MiB (a multiple of 2, at least 16).
    #[arg(long)]
    pub memory: u64,
    /// vsock CID of the enclave (default: the lowest free ≥ 16).
    #[arg(long)]
    pub enclave_cid: Option<u64>,
    /// Name for the enclave (default: the EIF's file stem).
    #[arg(long)]
    pub enclave_name: Option<String>,
    /// Debug mode: console output and all-zero PCRs in attestation.
    #[arg(long)]
    pub debug_mode: bool,
    /// Stream the console and exit with the program's exit status (needs --debug-mode).
    #[arg(long, requires = "debug_mode")]
    pub attach_console: bool,
}

/// `terminate-enclave`.
#[derive(Args, Debug)]
pub struct TerminateArgs {
    /// The enclave to terminate.
    #[arg(long, conflicts_with = "all", required_unless_present = "all")]
    pub enclave_id: Option<String>,
    /// Terminate every enclave.
    #[arg(long)]
    pub all: bool,
}

/// `console`.
#[derive(Args, Debug)]
pub struct ConsoleArgs {
    /// The enclave whose console to stream.
    #[arg(long)]
    pub enclave_id: String,
}

/// `__vmm`.
#[derive(Args, Debug)]
pub struct VmmArgs {
    /// Launch request as JSON.
    #[arg(long)]
    pub request: String,
    /// File descriptor to report readiness on.
    #[arg(long)]
    pub status_fd: i32,
}

/// `ca`.
#[derive(Args, Debug)]
pub struct CaArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: CaAction,
}

/// `ca init`.
#[derive(Subcommand, Debug)]
pub enum CaAction {
    /// Create a P-384 root CA and a host intermediate (root.key may be removed afterwards).
    Init {
        /// Directory for the CA (default: ENCLAVE_CA_DIR, else /var/lib/enclave/ca).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

/// `verify-attestation`.
#[derive(Args, Debug)]
pub struct VerifyAttestationArgs {
    /// The attestation document (COSE_Sign1 bytes).
    #[arg(long)]
    pub document: PathBuf,
    /// The trusted root certificate (PEM or DER), e.g. /var/lib/enclave/ca/root.pem.
    #[arg(long)]
    pub root: PathBuf,
    /// Expected PCR value, as N=HEX (repeat).
    #[arg(long = "pcr", value_name = "N=HEX")]
    pub pcrs: Vec<String>,
    /// Expected nonce, hex.
    #[arg(long)]
    pub nonce: Option<String>,
    /// Maximum document age in seconds (0: no limit).
    #[arg(long, default_value_t = 300)]
    pub max_age: u64,
    /// Accept documents from debug-mode enclaves (all-zero PCRs).
    #[arg(long)]
    pub allow_debug: bool,
}

/// `pcr`.
#[derive(Args, Debug)]
pub struct PcrArgs {
    /// File whose bytes to measure.
    #[arg(
        long,
        conflicts_with = "signing_certificate",
        required_unless_present = "signing_certificate"
    )]
    pub input: Option<PathBuf>,
    /// Signing certificate (PEM or DER) whose PCR8 to print.
    #[arg(long)]
    pub signing_certificate: Option<PathBuf>,
}

/// `validate-eif`.
#[derive(Args, Debug)]
pub struct ValidateEifArgs {
    /// The EIF to check.
    #[arg(long)]
    pub eif_path: PathBuf,
    /// Guest memory in MiB to check the image against (as run-enclave --memory).
    #[arg(long)]
    pub memory: Option<u64>,
}

/// `sign-eif`.
#[derive(Args, Debug)]
pub struct SignEifArgs {
    /// The EIF to sign.
    #[arg(long)]
    pub eif_path: PathBuf,
    /// X.509 signing certificate (PEM or DER).
    #[arg(long)]
    pub signing_certificate: PathBuf,
    /// P-384 private key (PEM).
    #[arg(long)]
    pub private_key: PathBuf,
    /// Where to write the signed EIF (default: sign in place).
    #[arg(long)]
    pub output_file: Option<PathBuf>,
}
