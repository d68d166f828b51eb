//! One module per command.

mod allocator;
mod build;
mod build_libs;
mod build_oci;
mod ca;
mod describe_eif;
mod doctor;
mod eif_diff;
mod enclaves;
mod findings;
mod pcr;
mod run;
mod sign_eif;
mod validate;
mod verify;
mod verify_build;
mod vmm_process;

use crate::args::{Cli, Command};

/// Runs a command; returns the process exit code.
pub fn dispatch(cli: Cli) -> anyhow::Result<i32> {
    let json = cli.json;
    match cli.command {
        Command::BuildEnclave(a) => build::run(&a, json),
        Command::DescribeEif(a) => describe_eif::run(&a, json),
        Command::Allocator(a) => allocator::run(&a, json),
        Command::RunEnclave(a) => run::run(&a, json),
        Command::DescribeEnclaves => enclaves::describe(json),
        Command::TerminateEnclave(a) => enclaves::terminate(&a, json),
        Command::Console(a) => enclaves::console(&a),
        Command::Vmm(a) => run::vmm(&a),
        Command::Ca(a) => ca::run(&a, json),
        Command::VerifyAttestation(a) => verify::run(&a, json),
        Command::Pcr(a) => pcr::run(&a, json),
        Command::SignEif(a) => sign_eif::run(&a, json),
        Command::ValidateEif(a) => validate::run(&a, json),
        Command::Doctor => doctor::run(json),
        Command::VerifyBuild(a) => verify_build::run(&a, json),
    }
}
