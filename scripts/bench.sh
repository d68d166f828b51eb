#!/usr/bin/env bash
# The benchmarks: builds the release CLI (for the run-enclave launch), then runs
# enclave-runtime's enclave_bench in full: launch time (in process and through the CLI) against
# native fork+exec, and the system-call round trip served vs bare, each as medians of many
# runs measured in the same run. The last line printed is JSON with every number.
#   bash scripts/bench.sh            # full (15-30 s of measuring on kvm_pvm)
#   bash scripts/bench.sh --quick    # smoke test, a few seconds
# Honours CARGO_TARGET_DIR. Carving the pool for the CLI part needs root; without it that
# part is skipped with the reason.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release -q -p enclave-cli
# The bench finds the CLI at <target>/release/enclave (or ENCLAVE_BIN).
cargo bench -q -p enclave-runtime --bench enclave_bench -- "$@"
