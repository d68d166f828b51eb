//! The `enclave` command: build, inspect, run and terminate enclaves (nitro-cli's commands),
//! manage the CPU/memory pool, and the hidden `__vmm` entry that each enclave's VMM process runs.

mod args;
mod commands;
mod oci;
mod output;
mod stream;

use clap::Parser;

fn main() {
    let cli = args::Cli::parse();
    output::init_tracing(cli.verbose);
    let json = cli.json;
    let code = match commands::dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            output::print_error(&e, json);
            1
        }
    };
    std::process::exit(code);
}
