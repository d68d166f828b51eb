#!/usr/bin/env bash
# Installs what building and testing enclave needs on a fresh Debian machine (idempotent):
# gcc with a static glibc (test programs are static ELFs), g++ (libFuzzer), umoci and skopeo (the
# OCI image tests build and convert their images with them, no registry), rustfmt and clippy.
set -euo pipefail
need=()
command -v gcc >/dev/null 2>&1 || need+=(gcc)
command -v g++ >/dev/null 2>&1 || need+=(g++)   # libFuzzer (cargo-fuzz smoke run)
[ -f /usr/lib/x86_64-linux-gnu/libc.a ] || need+=(libc6-dev)
command -v umoci >/dev/null 2>&1 || need+=(umoci)     # OCI image tests (tests/tests/oci_images.rs)
command -v skopeo >/dev/null 2>&1 || need+=(skopeo)   # same: docker-archive and oci-archive forms
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi
cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
cargo clippy --version >/dev/null 2>&1 || rustup component add clippy
if [ ! -r /dev/kvm ] || [ ! -w /dev/kvm ]; then
  echo "setup: warning: /dev/kvm is not usable here; enclave tests will be reported as ignored" >&2
fi
