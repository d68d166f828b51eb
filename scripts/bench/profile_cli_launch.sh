#!/usr/bin/env bash
# Where the time of `enclave run-enclave --debug-mode --attach-console` goes (the launch figure
# furthest from its target): phase timestamps of one launch from `strace -f -ttt` (strace
# slows every system call, so read the shares, not the absolute numbers) and the hottest
# symbols of 30 launches from `perf record`. Writes markdown to stdout.
#   bash scripts/bench/profile_cli_launch.sh ENCLAVE_BIN STATIC_PROGRAM
# Carves its own pool (temporary run root, allocator config, CA dir, cgroup name) under the
# host-wide pool lock and releases it afterwards.
set -uo pipefail
bin="$1"
program="$2"
echo "## Profile: CLI launch (run-enclave --attach-console of a static glibc program that exits)"
echo
for tool in strace perf; do
  command -v "$tool" >/dev/null 2>&1 || { apt-get install -y -qq "$( [ "$tool" = perf ] && echo linux-perf || echo strace )" >/dev/null 2>&1 || true; }
done
dir=$(mktemp -d /tmp/bench-prof.XXXXXX)
export ENCLAVE_RUN_ROOT=$dir/run ENCLAVE_ALLOCATOR_CONFIG=$dir/allocator.toml \
  ENCLAVE_CGROUP_NAME=bench-prof-$$ ENCLAVE_CA_DIR=$dir/ca
mkdir -p "$dir/run"
printf 'memory_mib = 128\ncpu_count = 1\nhugepages = "never"\n' >"$dir/allocator.toml"
exec 9>/tmp/enclave-pool-tests.lock
flock 9
cleanup() {
  "$bin" terminate-enclave --all >/dev/null 2>&1
  "$bin" allocator release --force >/dev/null 2>&1
  rm -rf "$dir"
}
trap cleanup EXIT
if ! "$bin" allocator apply >/dev/null 2>"$dir/apply.err"; then
  echo "Not profiled: cannot carve a pool: $(head -c 300 "$dir/apply.err")"
  exit 0
fi
"$bin" build-enclave --binary "$program" --output-file "$dir/m.eif" >/dev/null
launch() { "$bin" run-enclave --eif-path "$dir/m.eif" --cpu-count 1 --memory 64 --debug-mode --attach-console >/dev/null 2>&1; }
for _ in 1 2 3; do launch; done

if command -v strace >/dev/null 2>&1; then
  strace -f -ttt -o "$dir/strace.txt" "$bin" run-enclave --eif-path "$dir/m.eif" --cpu-count 1 \
    --memory 64 --debug-mode --attach-console >/dev/null 2>&1
  python3 - "$dir/strace.txt" <<'PY'
import re, sys
lines = open(sys.argv[1]).read().splitlines()
t0 = float(lines[0].split()[1])
first = {}
def mark(name, pred):
    for l in lines:
        if pred(l):
            first.setdefault(name, float(l.split()[1]))
            return
cli = lines[0].split()[0]
mark("CLI process started (execve)", lambda l: "execve(" in l)
mark("CLI forks the VMM", lambda l: l.startswith(cli + " ") and re.search(r"\bclone\(", l))
mark("VMM opens the image", lambda l: ".eif\"" in l and "openat(" in l)
mark("VMM maps guest memory (64 MiB)", lambda l: "67108864" in l and "mmap(" in l and "PROT_READ|PROT_WRITE" in l)
mark("VMM creates the VM (KVM_CREATE_VM)", lambda l: "KVM_CREATE_VM" in l)
mark("first KVM_RUN (guest starts)", lambda l: "KVM_RUN" in l)
mark("heartbeat: first guest system call reaches vsock.sock_9000", lambda l: "vsock.sock_9000" in l and "connect(" in l)
mark("CLI connects to the control socket", lambda l: l.startswith(cli + " ") and "control.sock" in l and "connect(" in l)
mark("CLI exits", lambda l: l.startswith(cli + " ") and "+++ exited" in l)
end = float(lines[-1].split()[1])
print("One launch under `strace -f -ttt` (%.1f ms in all under strace; %d system calls traced):" % ((end - t0) * 1e3, len(lines)))
print()
print("| phase starts | at (ms) |")
print("|---|---:|")
for name, t in sorted(first.items(), key=lambda kv: kv[1]):
    print("| %s | %.1f |" % (name, (t - t0) * 1e3))
print("| last traced event | %.1f |" % ((end - t0) * 1e3))
print()
PY
else
  echo "strace unavailable: no phase timestamps."
  echo
fi

if command -v perf >/dev/null 2>&1; then
  if perf record -q -F 2999 -g -o "$dir/perf.data" -- bash -c \
      "for i in \$(seq 30); do '$bin' run-enclave --eif-path '$dir/m.eif' --cpu-count 1 --memory 64 --debug-mode --attach-console >/dev/null 2>&1; done" \
      >/dev/null 2>&1; then
    echo "30 launches under \`perf record -F 2999 -g\`: share of samples by thread name (\`enclave\` is both the CLI and the"
    echo "VMM's main thread, which the CLI forks), then the hottest symbols per thread ([k] kernel, [.] user):"
    echo
    echo '```'
    perf report -i "$dir/perf.data" --no-children --sort comm --stdio -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -12
    echo
    perf report -i "$dir/perf.data" --no-children --sort comm,dso,sym --stdio -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -25
    echo '```'
  else
    echo "perf record failed (perf_event_paranoid or no PMU access): no sampled profile."
  fi
else
  echo "perf unavailable: no sampled profile."
fi
