#!/usr/bin/env bash
# Runs every benchmark and writes BENCHMARKS.md and benchmarks.svg: the machine, then for each
# figure its median, min, max and the ratio to its baseline measured in the same run.
#   bash scripts/bench-all.sh            # full run (~5-10 min on a 2-CPU kvm_pvm host),
#                                        # writes ./BENCHMARKS.md and ./benchmarks.svg
#   bash scripts/bench-all.sh --quick    # smoke run (~2-3 min), writes them under
#                                        # $CARGO_TARGET_DIR/bench-quick/ unless --out is given
#   bash scripts/bench-all.sh --out DIR  # write the report into DIR
# Installs with apt what the baselines need (qemu-system-x86, linux-image-cloud-amd64, openssl);
# a baseline whose tools cannot be installed is reported unavailable with the reason. The
# enclave parts need root and /dev/kvm; they carve their pools under the host-wide pool lock
# (/tmp/enclave-pool-tests.lock) with temporary run roots and release them afterwards.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
quick=""
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick="--quick" ;;
    --out) out="$2"; shift ;;
    *) echo "bench-all: unknown argument $1 (use --quick, --out DIR)" >&2; exit 2 ;;
  esac
  shift
done
target="${CARGO_TARGET_DIR:-$root/target}"
if [ -z "$out" ]; then
  if [ -n "$quick" ]; then out="$target/bench-quick"; else out="$root"; fi
fi
mkdir -p "$out"
results=$(mktemp -d /tmp/bench-results.XXXXXX)
echo "bench-all: raw outputs in $results" >&2
uptime_before=$(uptime)

bash scripts/setup.sh || echo "bench-all: setup.sh failed; continuing" >&2

# The baselines' tools. apt failures are not fatal: the figure says unavailable and why.
need=()
command -v qemu-system-x86_64 >/dev/null 2>&1 || need+=(qemu-system-x86)
ls /boot/vmlinuz-*-cloud-amd64 >/dev/null 2>&1 || need+=(linux-image-cloud-amd64)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
if [ ${#need[@]} -gt 0 ]; then
  echo "bench-all: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  if ! { apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null; } >"$results/apt.log" 2>&1; then
    echo "bench-all: apt-get install ${need[*]} failed (see $results/apt.log)" >&2
  fi
fi

failed=()
run() {
  local name="$1"; shift
  echo "bench-all: == $name" >&2
  if ! "$@" 2>&1 | tee "$results/$name.out" >&2; then
    failed+=("$name")
    echo "bench-all: $name FAILED" >&2
  fi
}

if ! cargo build --release -q -p enclave-cli; then
  echo "bench-all: cannot build the CLI" >&2
  exit 1
fi
export ENCLAVE_BIN="$target/release/enclave"
run enclave_bench cargo bench -q -p enclave-runtime --bench enclave_bench -- $quick
run vsock_bench cargo bench -q -p samples --bench vsock_bench -- $quick
run host_bench cargo bench -q -p samples --bench host_bench -- $quick
run attestation_bench cargo bench -q -p attestation --bench attestation_bench -- $quick
run qemu_boot python3 scripts/bench/qemu_boot.py $quick
if [ -z "$quick" ]; then
  # Criterion micro-benchmarks (estimates read from $target/criterion by the report).
  rm -rf "$target/criterion"
  run micro cargo bench -q -p attestation --bench micro
  # Where the time of the CLI launch goes (the launch figure furthest from its target).
  echo "bench-all: == profile of the CLI launch" >&2
  bash scripts/bench/profile_cli_launch.sh "$ENCLAVE_BIN" "$target/enclave-bench/minimal" \
    >"$results/profile.md" 2>"$results/profile.err" || failed+=(profile)
fi

kvm_kind="hardware KVM (no /sys/module/kvm_pvm)"
[ -d /sys/module/kvm_pvm ] && kvm_kind="software KVM: kvm_pvm (/sys/module/kvm_pvm present)"
[ -e /dev/kvm ] || kvm_kind="no /dev/kvm"
python3 - "$results/meta.json" "$quick" "$uptime_before" "$kvm_kind" "${failed[@]}" <<'PY'
import json, os, subprocess, sys, time
path, quick, before, kvm = sys.argv[1:5]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "unknown")
mem = next((l.split(":", 1)[1].strip() for l in open("/proc/meminfo") if l.startswith("MemTotal")), "?")
json.dump({
    "quick": bool(quick), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    "cpu_model": cpu, "cores": os.cpu_count(), "kernel": os.uname().release, "kvm_kind": kvm,
    "memory": mem, "uptime_before": before.strip(),
    "uptime_after": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
    "failed": sys.argv[5:],
}, open(path, "w"))
PY
python3 scripts/bench/report.py "$results" "$out/BENCHMARKS.md" "$out/benchmarks.svg" "$target/criterion"
echo "bench-all: wrote $out/BENCHMARKS.md and $out/benchmarks.svg" >&2
[ ${#failed[@]} -eq 0 ] || { echo "bench-all: failed: ${failed[*]}" >&2; exit 1; }
