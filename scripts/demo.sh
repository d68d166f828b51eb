#!/usr/bin/env bash
# The main job: the KMS story end to end on this machine (samples/kms/demo.rs). Builds the
# enclave program and its measured image, creates the CA if needed, starts the key service and
# vsock-proxy, launches the enclave in production mode, releases a data key to it through
# attestation, decrypts a message inside it, shows a one-byte-different image refused by the
# key policy, and cleans up. Extra arguments go to kms-demo (e.g. --json, --ca-dir DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
printf '\n\033[1m==> building the enclave CLI, the key service, vsock-proxy and kms-demo (release)\033[0m\n'
cargo build --release -q -p enclave-cli -p samples --bins
exec target/release/kms-demo "$@"
