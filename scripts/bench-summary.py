#!/usr/bin/env python3
"""The headline table of a flatgather-bench JSON against the targets, as Markdown.

    scripts/bench-summary.py bench.json [more.json...]   # plain python3: json, argparse

Per op, device and suite: flatgather's median GB/s, the roofline and the best peer, and the
targets (docs/perf.md "GPU results"):
  - at least 0.90x roofline on suites of 256 MB or more,
  - at least 1.5x the best of torch_cat, foreach_copy and cub_batched on many-tiny,
  - host time per call under 10 us: the counter host_us of flatgather on many-tiny (the
    call alone on the host's clock, no wait in it; bench/timing.cpp); without that counter
    (a JSON from before it), Google Benchmark's cpu_time, an upper bound that includes the
    wait for the timing event.
scripts/gpu-check.sh puts this into summary.md. Exits 1 when the files hold no benchmark.
"""
import argparse
import json
import sys

ROOFLINE_SUITE_BYTES = 256e6
ROOFLINE_TARGET = 0.90
TINY_SUITE = "many-tiny"
TINY_PEERS = ("torch_cat", "foreach_copy", "cub_batched")
TINY_TARGET = 1.5
HOST_US_TARGET = 10.0
# Bytes counted per byte of the suite: gather/scatter read and write it once, scatter_add
# reads it twice and writes it once (docs/perf.md "Method"), near enough for the size gate.
PASSES = {"gather": 2, "scatter": 2, "scatter_add": 3}


def salvage(text):
    """The benchmarks a JSON holds when its writer was killed mid-run (a step's time limit):
    Google Benchmark writes each run as it finishes, so every entry up to the last
    `    }` closed at the benchmarks list's depth is whole."""
    cut = text.rfind("\n    }")
    if cut < 0:
        return {}
    try:
        return json.loads(text[:cut + len("\n    }")] + "\n  ]\n}")
    except json.JSONDecodeError:
        return {}


def load(paths):
    """{(op, device, suite): {method: row}}, the medians where the run had repetitions."""
    context, rows, errors, benchmarks = {}, {}, [], []
    for path in paths:
        with open(path) as f:
            text = f.read()
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            data = salvage(text)
            errors.append("%s: cut short (the step timed out?): the %d benchmarks it finished "
                          "are read" % (path, len(data.get("benchmarks", []))))
        context = context or data.get("context", {})
        benchmarks += data.get("benchmarks", [])
    for b in benchmarks:
        parts = b.get("run_name", b["name"]).split("/")
        if len(parts) < 4:
            continue
        op, device, suite, method = parts[:4]
        if b.get("error_occurred"):
            errors.append("%s: %s" % (b["name"], b.get("error_message", "")))
            continue
        per_method = rows.setdefault((op, device, suite), {})
        if b.get("run_type") == "aggregate":
            if b.get("aggregate_name") == "median":
                per_method[method] = dict(b, median=True)
        elif not per_method.get(method, {}).get("median"):
            per_method.setdefault(method, b)  # no repetitions: the first run
    return context, rows, errors


def verdict(ok):
    return "met" if ok else "**MISSED**"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("json", nargs="+")
    args = p.parse_args()
    context, rows, errors = load(args.json)
    if not rows:
        print("No benchmark in %s." % " ".join(args.json))
        return 1
    print("Benchmark: %s; device %s; median GB/s (bytes read + written per second)\n" % (
        context.get("flatgather_cuda_device") or context.get("flatgather_cpu", "?"),
        ", ".join(sorted({k[1] for k in rows}))))
    print("| op | device | suite | MB moved | flatgather GB/s | roofline GB/s | x roofline "
          "| best peer (GB/s) | x best peer | target |")
    print("|---|---|---|---:|---:|---:|---:|---|---:|---|")
    notes = []
    for (op, device, suite), methods in rows.items():
        ours = methods.get("flatgather", {}).get("bytes_per_second")
        moved = methods.get("flatgather", {}).get("bytes", 0.0)
        roof = methods.get("roofline", {}).get("bytes_per_second")
        peers = [(r.get("bytes_per_second") or 0.0, m) for m, r in methods.items()
                 if not m.startswith("flatgather") and m not in ("roofline", "read_bound")]
        best = max(peers) if peers else None
        targets = []
        if ours and roof and moved / PASSES.get(op, 2) >= ROOFLINE_SUITE_BYTES:
            targets.append("%.2fx roofline: %s" % (ROOFLINE_TARGET,
                                                   verdict(ours >= ROOFLINE_TARGET * roof)))
        if suite == TINY_SUITE:
            tiny = [(v, m) for v, m in peers if m in TINY_PEERS]
            if ours and tiny:
                v, m = max(tiny)
                targets.append("%.1fx %s: %s" % (TINY_TARGET, m, verdict(ours >= TINY_TARGET * v)))
            ours_row = methods.get("flatgather", {})
            host_us = ours_row.get("host_us")
            cpu_us = ours_row.get("cpu_time")
            if device != "cuda":
                pass
            elif host_us is not None:
                notes.append("%s/%s host time per call %.1f us (host_us): %.0f us target %s"
                             % (op, suite, host_us, HOST_US_TARGET,
                                verdict(host_us < HOST_US_TARGET)))
            elif cpu_us is not None and ours_row.get("time_unit", "us") == "us":
                status = ("met" if cpu_us < HOST_US_TARGET else "not shown: the bound "
                          "includes the wait for the event; it needs host_us")
                notes.append("%s/%s host time per call <= %.1f us (cpu_time, an upper bound): %s"
                             % (op, suite, cpu_us, status))
        print("| %s | %s | %s | %.1f | %s | %s | %s | %s | %s | %s |" % (
            op, device, suite, moved / 1e6,
            "%.1f" % (ours / 1e9) if ours else "error",
            "%.1f" % (roof / 1e9) if roof else "-",
            "%.2fx" % (ours / roof) if ours and roof else "-",
            "%s (%.1f)" % (best[1], best[0] / 1e9) if best else "-",
            "%.2fx" % (ours / best[0]) if ours and best and best[0] else "-",
            "; ".join(targets) or "-"))
    for line in notes:
        print("\n- " + line)
    if errors:
        print("\nFailed or left out (%d):\n" % len(errors))
        for line in errors:
            print("- " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
