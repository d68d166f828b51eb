#!/usr/bin/env bash
# The main job (until the KMS demo lands): build a static program into a measured enclave image,
# carve a pool out of this machine, run the program in a KVM enclave in debug mode with its
# console attached, run it again in production mode, describe it, terminate it, give the pool
# back. Everything lives in a temporary directory; nothing is left behind.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

step "building the enclave CLI (release)"
cargo build --release -q -p enclave-cli
E="$PWD/target/release/enclave"

work=$(mktemp -d)
export ENCLAVE_RUN_ROOT="$work/run" ENCLAVE_ALLOCATOR_CONFIG="$work/allocator.toml" \
  ENCLAVE_CGROUP_NAME="enclave-demo-$$"
cleanup() {
  "$E" terminate-enclave --all >/dev/null 2>&1 || true
  "$E" allocator release --force >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

step "building a static C program (gcc -static)"
gcc -static -O2 -o "$work/hello" tests/guest/c/hello.c
echo "this file was measured into the image" > "$work/motd"

step "enclave build-enclave: packing it into an EIF (no Docker), measurements:"
"$E" build-enclave --binary "$work/hello" --file "$work/motd:/etc/motd" \
  --env READ_FILE=/etc/motd --env LIST_DIR=/ --cmd demo --output-file "$work/hello.eif"

step "enclave allocator apply: carving 1 CPU and 256 MiB out of this machine"
cat > "$ENCLAVE_ALLOCATOR_CONFIG" <<TOML
memory_mib = 256
cpu_count = 1
hugepages = "auto"
TOML
"$E" allocator apply

step "enclave run-enclave --debug-mode --attach-console (the program's own output follows)"
start=$(date +%s%N)
"$E" run-enclave --eif-path "$work/hello.eif" --cpu-count 1 --memory 64 \
  --debug-mode --attach-console 2>"$work/attach.err"
end=$(date +%s%N)
tail -n 1 "$work/attach.err"
echo "launch + run + exit took $(( (end - start) / 1000000 )) ms"

step "enclave run-enclave (production mode: no console, real PCRs)"
"$E" run-enclave --eif-path "$work/hello.eif" --cpu-count 1 --memory 64

step "enclave describe-enclaves"
"$E" describe-enclaves

step "enclave terminate-enclave --all"
"$E" terminate-enclave --all

step "enclave allocator release"
"$E" allocator release
echo
echo "demo finished: image built and measured, program run in a KVM enclave, everything cleaned up"
