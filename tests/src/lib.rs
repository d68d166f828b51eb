//! End-to-end harness helpers: build static test programs, pack them, run them in enclaves.
//!
//! - [`guest_program`] builds a guest program from `tests/guest/` (once per process) and
//!   returns the path of the static binary.
//! - [`enclave_bin`] finds (or builds) the `enclave` CLI.
//! - [`TestEnv`] gives a test its own run root, allocator config and cgroup name, and
//!   tears its enclaves down on drop; [`run_cli`] runs the CLI inside it.
//!   It holds the host-wide pool lock while it lives (see [`testenv::HOST_LOCK_FILE`]).
//! - [`TestEnv::cli`] runs the CLI with a deadline and returns a [`CliOutput`] to check;
//!   [`TestEnv::build_eif`] packs a guest program into an image ([`ImageSpec`]);
//!   [`TestEnv::apply_pool`] carves a pool ([`PoolSpec`]); [`TestEnv::leftovers`] lists
//!   what enclaves left behind (run directories, claims, cgroups).
//! - [`launch`] starts, describes and terminates enclaves with the tests' defaults.
//! - [`host`] reads host state: the cpuset mount, `nr_hugepages`, processes.
//! - [`elf`] reads ELF program headers (static linking checks).
//! - [`expect`] holds the exact output of each guest program.
//! - [`kms`]: the attestation and key-release harness ([`kms::KmsHarness`]): the key service,
//!   `vsock-proxy` and `kms-enclave` images, with fault injection.
//! - [`watch`] runs a debug enclave in the background and watches its console, the VMM's
//!   memory and log (hostile-guest tests).

pub mod cli;
pub mod elf;
mod error;
pub mod expect;
pub mod guest;
pub mod host;
pub mod image;
pub mod kms;
pub mod launch;
pub mod paths;
pub mod pool;
pub mod run;
pub mod testenv;
pub mod watch;

pub use cli::{enclave_bin, run_cli};
pub use error::HarnessError;
pub use guest::{guest_program, C_DYNAMIC_PROGRAMS, C_PROGRAMS, RUST_PROGRAMS};
pub use image::ImageSpec;
pub use pool::{Hugepages, Leftovers, PoolSpec};
pub use run::CliOutput;
pub use testenv::{Sharing, TestEnv};
