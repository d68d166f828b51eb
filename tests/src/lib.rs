//! End-to-end harness helpers: build static test programs, pack them, run them in enclaves.
//!
//! - [`guest_program`] builds a guest program from `tests/guest/` (once per process) and
//!   returns the path of the static binary.
//! - [`enclave_bin`] finds (or builds) the `enclave` CLI.
//! - [`TestEnv`] gives a test its own run root, allocator config and cgroup name, and
//!   tears its enclaves down on drop; [`run_cli`] runs the CLI inside it.
//! - [`elf`] reads ELF program headers (static linking checks).
//! - [`expect`] holds the exact output of each guest program.

pub mod cli;
pub mod elf;
mod error;
pub mod expect;
pub mod guest;
pub mod paths;
pub mod testenv;

pub use cli::{enclave_bin, run_cli};
pub use error::HarnessError;
pub use guest::{guest_program, C_PROGRAMS, RUST_PROGRAMS};
pub use testenv::{Sharing, TestEnv};
