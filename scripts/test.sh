#!/usr/bin/env bash
# The test command: formatting, lints, every test of the workspace, and a fuzzing smoke run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace --all-targets
# Short fuzzing smoke run of every parser target (cargo-fuzz on nightly; longer runs by hand:
# `bash scripts/fuzz.sh 600`).
bash scripts/fuzz.sh "${ENCLAVE_FUZZ_SECONDS:-5}"
