#!/usr/bin/env python3
"""QEMU microvm boot baseline: a Debian cloud kernel booting a tiny initramfs whose /init (a
static C program) prints a marker on the serial console and powers off. Times qemu start ->
marker, and qemu start -> exit. Tries -accel kvm first (with a timeout: on kvm_pvm hosts Linux
kernels do not boot under KVM) and falls back to -accel tcg; says which one it used.

Prints `SERIES {json}` and `NOTE {json}` lines for scripts/bench_report.py; when qemu or a
kernel is missing, the series say unavailable with the reason. Standard library only.

    python3 scripts/bench/qemu_boot.py [--quick] [--workdir DIR]
"""

import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

MARKER = b"ENCLAVE-BENCH-INIT-UP"

INIT_C = r"""
/* /init of the QEMU boot baseline: prints a marker on the console and powers off. */
#include <fcntl.h>
#include <string.h>
#include <sys/reboot.h>
#include <unistd.h>

int main(void) {
    int fd = open("/dev/console", O_WRONLY);
    if (fd < 0) fd = 1;
    write(fd, "\n%s\n", sizeof("\n%s\n") - 1);
    sync();
    reboot(RB_POWER_OFF);
    return 0;
}
""".replace("%s", MARKER.decode())


def series(sid, label, unit, samples=None, unavailable=None):
    obj = {"id": sid, "label": label, "unit": unit}
    if unavailable is not None:
        obj["unavailable"] = unavailable
    else:
        obj["samples"] = samples
    print("SERIES " + json.dumps(obj), flush=True)


def cpio_newc(entries):
    """entries: (name, mode, data, rdevmajor, rdevminor). Returns the archive bytes."""
    out = bytearray()
    ino = 1
    for name, mode, data, major, minor in entries + [("TRAILER!!!", 0, b"", 0, 0)]:
        nb = name.encode() + b"\0"
        hdr = "070701" + "".join(
            "%08X" % v
            for v in (ino, mode, 0, 0, 1, 0, len(data), 0, 0, major, minor, len(nb), 0)
        )
        out += hdr.encode() + nb
        out += b"\0" * ((4 - len(out) % 4) % 4)
        out += data
        out += b"\0" * ((4 - len(out) % 4) % 4)
        ino += 1
    return bytes(out)


def build_initramfs(workdir):
    src = os.path.join(workdir, "init.c")
    binary = os.path.join(workdir, "init")
    with open(src, "w") as f:
        f.write(INIT_C)
    r = subprocess.run(["gcc", "-static", "-O2", "-o", binary, src], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("gcc -static failed: " + r.stderr.strip()[:300])
    with open(binary, "rb") as f:
        init = f.read()
    archive = cpio_newc(
        [
            ("dev", 0o040755, b"", 0, 0),
            ("dev/console", 0o020600, b"", 5, 1),
            ("init", 0o100755, init, 0, 0),
        ]
    )
    path = os.path.join(workdir, "initramfs.cpio")
    with open(path, "wb") as f:
        f.write(archive)
    return path


def find_kernel():
    kernels = sorted(glob.glob("/boot/vmlinuz-*-cloud-amd64"))
    return kernels[-1] if kernels else None


def boot_once(qemu, kernel, initrd, accel, timeout):
    """Returns ms to the marker, or raises RuntimeError with the reason. qemu is killed once
    the marker is seen (without ACPI, microvm halts on power-off rather than exiting)."""
    cpu = "host" if accel == "kvm" else "max"
    cmd = [
        qemu, "-M", "microvm,acpi=off,pit=on,pic=on,rtc=on", "-accel", accel, "-cpu", cpu, "-m", "256M", "-smp", "1",
        "-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
        "-serial", "stdio", "-kernel", kernel, "-initrd", initrd,
        "-append", "console=ttyS0 quiet panic=-1 reboot=t",
    ]
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    seen = b""
    os.set_blocking(p.stdout.fileno(), False)
    try:
        while True:
            if time.monotonic() - t0 > timeout:
                raise RuntimeError("no marker within %d s (-accel %s)" % (timeout, accel))
            chunk = None
            try:
                chunk = p.stdout.read()
            except BlockingIOError:
                pass
            if chunk:
                seen += chunk
                if MARKER in seen:
                    return (time.monotonic() - t0) * 1e3
            if p.poll() is not None:
                rest = p.stdout.read() or b""
                seen += rest
                if MARKER in seen:
                    return (time.monotonic() - t0) * 1e3
                err = (p.stderr.read() or b"").decode(errors="replace").strip()
                tail = seen[-300:].decode(errors="replace").strip()
                raise RuntimeError(
                    "qemu exited %s without the marker (-accel %s): %s %s"
                    % (p.returncode, accel, err[:300], tail)
                )
            time.sleep(0.0005)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def main():
    quick = "--quick" in sys.argv
    runs = 2 if quick else 7
    labels = {"qemu_marker": "QEMU microvm + Debian cloud kernel: start to /init marker"}

    def unavailable(why):
        for sid, label in labels.items():
            series(sid, label, "ms", unavailable=why)
        print("NOTE " + json.dumps({"id": "qemu", "unavailable": why}))

    qemu = shutil.which("qemu-system-x86_64")
    if not qemu:
        return unavailable("qemu-system-x86_64 is not installed (apt-get install qemu-system-x86 failed or was not run)")
    kernel = find_kernel()
    if not kernel:
        return unavailable("no /boot/vmlinuz-*-cloud-amd64 (apt-get install linux-image-cloud-amd64 failed or was not run)")
    if not os.access(kernel, os.R_OK):
        return unavailable("%s is not readable" % kernel)
    workdir = tempfile.mkdtemp(prefix="qemu-boot-bench-")
    try:
        try:
            initrd = build_initramfs(workdir)
        except (RuntimeError, OSError) as e:
            return unavailable("cannot build the initramfs: %s" % e)
        kvm_error = None
        accel = None
        if os.path.exists("/dev/kvm"):
            try:
                boot_once(qemu, kernel, initrd, "kvm", 20)
                accel = "kvm"
            except RuntimeError as e:
                kvm_error = str(e)
        else:
            kvm_error = "/dev/kvm does not exist"
        if accel is None:
            try:
                boot_once(qemu, kernel, initrd, "tcg", 120)  # warm-up, and the check
                accel = "tcg"
            except RuntimeError as e:
                return unavailable("booted neither with kvm (%s) nor with tcg (%s)" % (kvm_error, e))
        marker = [boot_once(qemu, kernel, initrd, accel, 120) for _ in range(runs)]
        version = subprocess.run([qemu, "--version"], capture_output=True, text=True).stdout.splitlines()[0]
        series("qemu_marker", labels["qemu_marker"], "ms", marker)
        note = {
            "id": "qemu",
            "accel": accel,
            "kvm_error": kvm_error,
            "kernel": os.path.basename(kernel),
            "qemu": version,
            "runs": runs,
        }
        print("NOTE " + json.dumps(note))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
