#!/usr/bin/env python3
"""Writes BENCHMARKS.md and benchmarks.svg from the outputs of scripts/bench-all.sh.

Every benchmark prints `SERIES {"id", "label", "unit", "samples" | "unavailable"}` and
`NOTE {...}` lines; this script pairs each figure with the baseline measured in the same run
(the table FIGURES below), computes median, min, max and the ratio of the medians, checks the
targets, and draws the launch and vsock plots as SVG. Standard library only.

    python3 scripts/bench/report.py RESULTS_DIR OUT_MD OUT_SVG [CRITERION_DIR]
"""

import html
import json
import math
import os
import statistics
import sys

# (figure id, baseline id or None, better: "lower" | "higher", target or None, group)
# A target is (kind, value): ("max", v) on the median, ("ratio_max", v), ("ratio_min", v).
FIGURES = [
    ("launch_first_call", "launch_first_call_fork_exec", "lower", [("max", 10.0), ("ratio_max", 10.0)], "Launch"),
    ("launch_first_call", "qemu_marker", "lower", [], "Launch"),
    ("launch_exit", "launch_exit_fork_exec", "lower", [("max", 10.0), ("ratio_max", 10.0)], "Launch"),
    ("cli_heartbeat", "launch_first_call_fork_exec", "lower", [("max", 10.0), ("ratio_max", 10.0)], "Launch"),
    ("cli_heartbeat", "qemu_marker", "lower", [], "Launch"),
    ("cli_exit", "launch_exit_fork_exec", "lower", [("max", 10.0), ("ratio_max", 10.0)], "Launch"),
    ("syscall_served", "syscall_bare", "lower", [("ratio_max", 1.2)], "System call"),
    ("syscall_served", "syscall_native", "lower", [], "System call"),
    ("vsock_to_enclave_4k", "vsock_socketpair_4k", "higher", [], "vsock"),
    ("vsock_from_enclave_4k", "vsock_socketpair_4k", "higher", [], "vsock"),
    ("vsock_from_enclave_push_4k", "vsock_socketpair_4k", "higher", [], "vsock"),
    ("vsock_to_enclave_64k", "vsock_socketpair_64k", "higher", [("ratio_min", 0.5)], "vsock"),
    ("vsock_from_enclave_64k", "vsock_socketpair_64k", "higher", [("ratio_min", 0.5)], "vsock"),
    ("vsock_from_enclave_push_64k", "vsock_socketpair_64k", "higher", [("ratio_min", 0.5)], "vsock"),
    ("vsock_rtt", "vsock_socketpair_rtt", "lower", [], "vsock"),
    ("vsock_rtt", "vsock_bare_exit", "lower", [], "vsock"),
    ("attest_gen_ms", None, "lower", [("max", 2.0)], "Attestation"),
    ("attest_gen_per_s", "openssl_sign_per_s", "higher", [], "Attestation"),
    ("attest_verify_per_s", "openssl_verify_per_s", "higher", [("min", 1000.0)], "Attestation"),
    ("pcr_image", "sha384sum", "lower", [], "PCR measurement"),
    ("pcr_hash", "sha384sum", "lower", [], "PCR measurement"),
    ("vmm_private_mib", None, "lower", [("max", 3.0)], "VMM memory"),
    ("vmm_rss_mib", None, "lower", [], "VMM memory"),
    ("density_count", None, "higher", [], "Density"),
]


def load(results):
    series, notes, logs = {}, {}, {}
    for name in sorted(os.listdir(results)):
        path = os.path.join(results, name)
        if not name.endswith(".out"):
            continue
        with open(path, errors="replace") as f:
            text = f.read()
        logs[name[:-4]] = text
        for line in text.splitlines():
            for tag, into in (("SERIES ", series), ("NOTE ", notes)):
                if line.startswith(tag):
                    try:
                        obj = json.loads(line[len(tag):])
                    except ValueError:
                        continue
                    into[obj.get("id", "?")] = obj
    return series, notes, logs


def stats(s):
    v = [x for x in (s or {}).get("samples") or [] if isinstance(x, (int, float)) and math.isfinite(x)]
    if not v:
        return None
    return {"median": statistics.median(v), "min": min(v), "max": max(v), "n": len(v)}


def fmt(x):
    if x is None:
        return "—"
    if x == 0:
        return "0"
    a = abs(x)
    if a >= 1000:
        return "%.0f" % x
    if a >= 100:
        return "%.1f" % x
    if a >= 1:
        return "%.2f" % x
    return "%.3f" % x


def why_missing(sid, series, bench_of):
    s = series.get(sid)
    if s and "unavailable" in s:
        return s["unavailable"]
    return "not measured (%s did not report it; see its log)" % bench_of.get(sid, "its benchmark")


def verdicts(targets, st, ratio, unit):
    """Returns (text, [(gap, description)]) for the targets of one figure."""
    texts, gaps = [], []
    for kind, val in targets:
        if kind in ("max", "min"):
            x, text = st["median"], "%s %s %s" % ("≤" if kind == "max" else "≥", fmt(val), unit)
        else:
            x, text = ratio, "%s %s×" % ("≤" if kind == "ratio_max" else "≥", fmt(val))
        if x is None:
            texts.append(text + ": n/a")
            continue
        ok = x <= val if kind.endswith("max") else x >= val
        texts.append("%s: %s" % (text, "met" if ok else "**MISSED**"))
        if not ok:
            gap = x / val if kind.endswith("max") else (val / x if x else float("inf"))
            what = "median %s %s" % (fmt(x), unit) if kind in ("max", "min") else "ratio %s×" % fmt(x)
            gaps.append((gap, "%s, target %s" % (what, text)))
    return ("; ".join(texts) or "—"), gaps


def bench_of_ids():
    m = {}
    for p in ("launch_", "cli_", "syscall_"):
        m[p] = "enclave_bench"
    out = {}
    for sid, _b, _bt, _t, _g in FIGURES:
        for cand in (sid, _b):
            if not cand:
                continue
            if cand.startswith(("launch", "cli", "syscall")):
                out[cand] = "enclave_bench"
            elif cand.startswith("vsock"):
                out[cand] = "vsock_bench"
            elif cand.startswith(("attest", "openssl", "pcr", "sha384")):
                out[cand] = "attestation_bench"
            elif cand.startswith(("vmm", "density")):
                out[cand] = "host_bench"
            elif cand.startswith("qemu"):
                out[cand] = "qemu_boot.py"
    return out


def bar_svg(title, unit, rows, log, x0, y0, width):
    """rows: (label, median, min, max, colour). Returns (svg parts, height)."""
    parts = []
    label_w, row_h, bar_h = 330, 26, 16
    plot_w = width - label_w - 90
    vals = [v for r in rows for v in r[1:4] if v]
    if not vals:
        return parts, 0
    hi = max(vals)
    lo = min(v for v in vals if v > 0)
    if log:
        lmin = math.floor(math.log10(lo))
        lmax = math.ceil(math.log10(hi))
        lmax = max(lmax, lmin + 1)

        def sx(v):
            v = max(v, 10 ** lmin)
            return x0 + label_w + plot_w * (math.log10(v) - lmin) / (lmax - lmin)

        ticks = [10 ** e for e in range(lmin, lmax + 1)]
    else:
        top = hi * 1.05

        def sx(v):
            return x0 + label_w + plot_w * v / top

        step = 10 ** math.floor(math.log10(top / 2 or 1))
        ticks = [i * step for i in range(int(top / step) + 1)]
    parts.append('<text x="%d" y="%d" font-size="15" font-weight="bold">%s</text>' % (x0, y0 + 16, html.escape(title)))
    top_y = y0 + 30
    h = len(rows) * row_h
    for t in ticks:
        x = sx(t)
        parts.append('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ddd"/>' % (x, top_y, x, top_y + h))
        parts.append('<text x="%.1f" y="%d" font-size="10" text-anchor="middle" fill="#555">%s</text>' % (x, top_y + h + 13, fmt(t)))
    parts.append('<text x="%d" y="%d" font-size="11" text-anchor="middle" fill="#333">%s%s</text>' % (
        x0 + label_w + plot_w / 2, top_y + h + 28, html.escape(unit), " (log scale)" if log else ""))
    for i, (label, med, mn, mx, colour) in enumerate(rows):
        y = top_y + i * row_h
        parts.append('<text x="%d" y="%d" font-size="12" text-anchor="end">%s</text>' % (
            x0 + label_w - 8, y + bar_h - 3, html.escape(label)))
        if med is None:
            parts.append('<text x="%d" y="%d" font-size="11" fill="#a00">unavailable</text>' % (x0 + label_w + 4, y + bar_h - 3))
            continue
        base = sx(10 ** lmin) if log else sx(0)
        parts.append('<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="%s"/>' % (base, y, max(sx(med) - base, 1), bar_h, colour))
        parts.append('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#000" stroke-width="1.2"/>' % (sx(mn), y + bar_h / 2, sx(mx), y + bar_h / 2))
        for v in (mn, mx):
            parts.append('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#000"/>' % (sx(v), y + 3, sx(v), y + bar_h - 3))
        parts.append('<text x="%.1f" y="%d" font-size="11">%s</text>' % (max(sx(mx), sx(med)) + 5, y + bar_h - 3, fmt(med)))
    return parts, top_y + h + 40 - y0


def write_svg(path, series, notes):
    enclave, base = "#2b6cb0", "#a0aec0"

    def row(label, sid, colour):
        st = stats(series.get(sid))
        return (label, st and st["median"], st and st["min"], st and st["max"], colour)

    qemu_accel = (notes.get("qemu") or {}).get("accel")
    launch_rows = [
        row("fork+exec+wait, libc-free (baseline)", "launch_first_call_fork_exec", base),
        row("fork+exec+wait, static glibc (baseline)", "launch_exit_fork_exec", base),
        row("enclave in process → first system call", "launch_first_call", enclave),
        row("enclave in process → exit (glibc)", "launch_exit", enclave),
        row("enclave via CLI → heartbeat", "cli_heartbeat", enclave),
        row("enclave via CLI → exit (glibc)", "cli_exit", enclave),
        row("QEMU microvm → /init (%s)" % (qemu_accel or "n/a"), "qemu_marker", base),
    ]
    vsock_rows = []
    for k in ("4k", "64k"):
        kib = k[:-1] + " KiB"
        vsock_rows += [
            row("socketpair, %s (baseline)" % kib, "vsock_socketpair_" + k, base),
            row("parent → enclave, %s" % kib, "vsock_to_enclave_" + k, enclave),
            row("enclave → parent (accepted), %s" % kib, "vsock_from_enclave_" + k, enclave),
            row("enclave → parent (connects), %s" % kib, "vsock_from_enclave_push_" + k, enclave),
        ]
    width = 900
    p1, h1 = bar_svg("Launch latency (median, whiskers min–max)", "milliseconds", launch_rows, True, 10, 10, width)
    p2, h2 = bar_svg("vsock throughput (median, whiskers min–max)", "MiB/s", vsock_rows, False, 10, 20 + h1, width)
    height = 30 + h1 + h2
    with open(path, "w") as f:
        f.write('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif">\n' % (width, height))
        f.write('<rect width="100%" height="100%" fill="white"/>\n')
        f.write("\n".join(p1 + p2))
        f.write("\n</svg>\n")


def criterion_rows(root):
    """(name, median ns, low ns, high ns) of every criterion benchmark under root."""
    rows = []
    if not root or not os.path.isdir(root):
        return rows
    for dirpath, _dirs, files in os.walk(root):
        if os.path.basename(dirpath) != "new" or "estimates.json" not in files:
            continue
        try:
            with open(os.path.join(dirpath, "benchmark.json")) as f:
                name = json.load(f).get("full_id", dirpath)
            with open(os.path.join(dirpath, "estimates.json")) as f:
                est = json.load(f)["median"]
            ci = est["confidence_interval"]
            rows.append((name, est["point_estimate"], ci["lower_bound"], ci["upper_bound"]))
        except (OSError, ValueError, KeyError):
            continue
    return sorted(rows)


def fmt_ns(ns):
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            return "%s %s" % (fmt(ns / scale), unit)
    return "%s ns" % fmt(ns)


def main():
    results, out_md, out_svg = sys.argv[1:4]
    crit = criterion_rows(sys.argv[4] if len(sys.argv) > 4 else None)
    series, notes, logs = load(results)
    with open(os.path.join(results, "meta.json")) as f:
        meta = json.load(f)
    bench_of = bench_of_ids()
    lines = []
    w = lines.append
    w("# Benchmarks")
    w("")
    w("Generated by `bash scripts/bench-all.sh%s` on %s. Every ratio is figure median / baseline"
      " median, both measured in this run on this machine." % (" --quick" if meta["quick"] else "", meta["date"]))
    if meta["quick"]:
        w("")
        w("**Quick smoke run**: few repetitions, the numbers are indicative only.")
    w("")
    w("## Machine")
    w("")
    w("- CPU: %s, %s CPUs" % (meta["cpu_model"], meta["cores"]))
    w("- Kernel: %s" % meta["kernel"])
    w("- KVM: %s" % meta["kvm_kind"])
    w("- Memory: %s" % meta["memory"])
    w("- Load (`uptime`) before: `%s`" % meta["uptime_before"])
    w("- Load (`uptime`) after: `%s`" % meta.get("uptime_after", "?"))
    w("- The machine is shared with other jobs (builds): medians are reported, min/max show the spread.")
    q = notes.get("qemu") or {}
    if q.get("accel"):
        w("- QEMU baseline: %s, kernel %s, accelerator **%s**%s" % (
            q.get("qemu"), q.get("kernel"), q.get("accel"),
            (" (`-accel kvm` failed: %s)" % q["kvm_error"].splitlines()[0]) if q.get("kvm_error") else ""))
    elif q.get("unavailable"):
        w("- QEMU baseline: unavailable: %s" % q["unavailable"])
    w("")
    w("## Figures")
    w("")
    group = None
    gaps = []
    for sid, bid, better, target, g in FIGURES:
        if g != group:
            group = g
            w("")
            w("### " + g)
            w("")
            w("| figure | unit | median | min | max | runs | baseline | baseline median (min–max) | ratio | better | target |")
            w("|---|---|---:|---:|---:|---:|---|---:|---:|---|---|")
        s = series.get(sid) or {"label": sid, "unit": "?"}
        st = stats(s)
        b = series.get(bid) if bid else None
        bst = stats(b)
        blabel = (b or {}).get("label", bid or "—") if bid else "—"
        if st is None:
            w("| %s | %s | unavailable: %s | | | | %s | | | | |" % (
                s.get("label", sid), s.get("unit", ""), why_missing(sid, series, bench_of), blabel))
            continue
        if bid and bst is None:
            bcol = "unavailable: %s" % why_missing(bid, series, bench_of)
            ratio = None
        elif bid:
            bcol = "%s (%s–%s) %s" % (fmt(bst["median"]), fmt(bst["min"]), fmt(bst["max"]), b.get("unit", ""))
            ratio = st["median"] / bst["median"] if bst["median"] else None
        else:
            bcol, ratio = "—", None
        v, missed = verdicts(target, st, ratio, s.get("unit", ""))
        for gap, what in missed:
            gaps.append((gap, s.get("label", sid), blabel, what))
        w("| %s | %s | %s | %s | %s | %d | %s | %s | %s | %s | %s |" % (
            s.get("label", sid), s.get("unit", ""), fmt(st["median"]), fmt(st["min"]), fmt(st["max"]), st["n"],
            blabel, bcol, ("%s×" % fmt(ratio)) if ratio is not None else "—", better, v))
    d = notes.get("density")
    w("")
    if d:
        w("Density: **%d** concurrent %s enclaves of 64 MiB (pool of %s MiB, `sharing = \"shared\"`, one pool CPU),"
          " %d of them answering on vsock; limited by: %s. Hugepages (`nr_hugepages`): %s before, %s with the pool,"
          " %s after the release." % (
              d["count"], "running", d["pool_mib"], d["alive"], d["limit"], d["hugepages_before"],
              d["hugepages_with_pool"], d["hugepages_after"]))
    else:
        w("Density: not measured (host_bench did not report; see its log).")
    w("")
    w("VMM memory: `/proc/PID/smaps` of each running VMM (idle 64 MiB enclave), every mapping but the"
      " guest memory; *private* counts Private_Clean + Private_Dirty (+ Private_Hugetlb), *resident* counts"
      " shared library pages whole. Target: ≤ 3 MiB private (Firecracker's bar is 5 MiB).")
    w("")
    w("Notes:")
    w("")
    w("- Launch: *in process* is `vmm::prepare` → program exit inside the bench process; *via CLI*"
      " is the wall time of `enclave run-enclave` (process start, pool claim, VMM fork, image check and"
      " measurement, VM build; *to heartbeat* returns when the enclave is RUNNING, *to exit* also"
      " includes the run, teardown and cgroup cleanup). The first-system-call program is libc-free and"
      " its first system call is `exit_group`; its fork+exec baseline is the same binary natively.")
    w("- vsock: the socketpair baselines run before the pool is carved (every host CPU); the enclave"
      " figures run while the pool holds CPU 1, so the parent has CPU 0 only. On this shared machine the"
      " socketpair baseline itself varies several-fold between runs (see its min–max), and so do the ratios.")
    w("- Attestation: generation includes one ES384 signature (RustCrypto p384); verification checks the"
      " COSE signature and the certificate chain (root cached), so it does more than one openssl verify.")
    w("")
    if crit:
        w("### Micro-benchmarks (criterion)")
        w("")
        w("`cargo bench -p attestation --bench micro`; median per iteration with its 95 % interval.")
        w("")
        w("| benchmark | median | interval |")
        w("|---|---:|---|")
        for name, med, lo, hi in crit:
            w("| %s | %s | %s – %s |" % (name, fmt_ns(med), fmt_ns(lo), fmt_ns(hi)))
        w("")
    w("## Plot")
    w("")
    w("![launch latency and vsock throughput against their baselines](%s)" % os.path.basename(out_svg))
    w("")
    w("## Largest gaps to target")
    w("")
    if gaps:
        for gap, label, blabel, what in sorted(gaps, reverse=True):
            w("- %s (baseline: %s): %s — %.2f× away from the target" % (label, blabel, what, gap))
    else:
        w("- every figure with a target met it in this run")
    profile = os.path.join(results, "profile.md")
    if os.path.exists(profile):
        w("")
        with open(profile) as f:
            w(f.read().rstrip())
    failed = meta.get("failed") or []
    if failed:
        w("")
        w("## Benchmarks that failed in this run")
        w("")
        for name in failed:
            tail = "\n".join(logs.get(name, "").splitlines()[-5:])
            w("- `%s`: see its log; last lines:\n\n```\n%s\n```" % (name, tail))
    w("")
    with open(out_md, "w") as f:
        f.write("\n".join(lines))
    write_svg(out_svg, series, notes)


if __name__ == "__main__":
    main()
