//! `enclave allocator apply|show|release`: the CPU/memory pool, as nitro-enclaves-allocator.
//! Thin wrappers over `enclave_runtime::pool`; every action prints JSON.

use anyhow::Context;
use enclave_runtime::pool::{self, PoolPaths};

use crate::args::{AllocatorAction, AllocatorArgs};

/// Runs `allocator <action>`.
pub fn run(a: &AllocatorArgs, _json: bool) -> anyhow::Result<i32> {
    let paths = PoolPaths::from_env();
    match a.action {
        AllocatorAction::Apply => {
            let state = pool::apply(&paths).with_context(|| {
                format!(
                    "Cannot apply the pool from {} (run root {}): fix the cause, then run `enclave allocator apply` again",
                    paths.config.display(),
                    paths.run_root.display()
                )
            })?;
            crate::output::print_json(&state)?;
        }
        AllocatorAction::Show => {
            let status = pool::show(&paths).with_context(|| {
                format!(
                    "Cannot show the pool recorded in {}",
                    paths.state_file().display()
                )
            })?;
            crate::output::print_json(&status)?;
        }
        AllocatorAction::Release { force } => {
            let release = if force {
                pool::release_force
            } else {
                pool::release
            };
            release(&paths).with_context(|| {
                format!(
                    "Cannot release the pool recorded in {}",
                    paths.state_file().display()
                )
            })?;
            crate::output::print_json(&serde_json::json!({ "Released": true }))?;
        }
    }
    Ok(0)
}
