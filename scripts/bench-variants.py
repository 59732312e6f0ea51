#!/usr/bin/env python3
"""Every method's speed relative to flatgather (ours, default options), from a flatgather-bench
JSON, for A/B runs of the variants (docs/perf.md, "Task size and schedule").

    scripts/bench-variants.py ab.json [--device cpu] [--markdown]   # plain python3: json

flatgather-bench --runs N writes N "median" rows per benchmark, round k's k-th. Per op, device
and suite, each cell is the median over the rounds of (method GB/s / flatgather GB/s) taken
within each round, with its range (lowest-highest): above 1.00x the method was faster than
ours. Peers and the roofline are included, so roofline = 1.05x means ours ran at 1/1.05 of
the roofline. A cell is "ERROR" when a round of that benchmark failed, "-" when it did not
run. Exits 1 when the file holds no flatgather rows.
"""
import argparse
import json
import statistics
import sys

OURS = "flatgather"


def load(path, device):
    """{(op, device, suite): {method: [GB/s per round]}}, None for a failed round."""
    with open(path) as f:
        data = json.load(f)
    runs = {}
    for b in data.get("benchmarks", []):
        parts = b.get("run_name", b["name"]).split("/")
        if len(parts) != 4 or (device and parts[1] != device):
            continue
        op, dev, suite, method = parts
        rounds = runs.setdefault((op, dev, suite), {}).setdefault(method, [])
        if b.get("error_occurred"):
            rounds.append(None)
        elif b.get("aggregate_name") == "median" or b.get("run_type") == "iteration" and (
            b.get("repetitions", 1) <= 1
        ):
            rounds.append(b["bytes_per_second"] / 1e9)
    return runs


def ratios(method_rounds, ours_rounds):
    """(median, low, high) of the per-round ratios, or a string saying why there is none."""
    if len(method_rounds) != len(ours_rounds):
        return "rounds?"
    if any(v is None for v in method_rounds + ours_rounds):
        return "ERROR"
    r = [m / o for m, o in zip(method_rounds, ours_rounds)]
    return statistics.median(r), min(r), max(r)


def cell(value):
    if isinstance(value, str):
        return value
    median, low, high = value
    return f"{median:.2f}x ({low:.2f}-{high:.2f})"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("json")
    parser.add_argument("--device", default="", help="cpu or cuda (default: both)")
    args = parser.parse_args()
    runs = load(args.json, args.device)
    groups = sorted({(op, dev) for op, dev, _ in runs})
    printed = False
    for op, dev in groups:
        suites = sorted(s for o, d, s in runs if (o, d) == (op, dev))
        # Ours with a knob changed first, then the peers, the roofline last.
        names = {m for s in suites for m in runs[(op, dev, s)] if m != OURS}
        methods = sorted(names, key=lambda m: (not m.startswith(OURS), m == "roofline", m))
        rows = []
        for s in suites:
            by_method = runs[(op, dev, s)]
            if OURS not in by_method:
                continue
            rounds = len(by_method[OURS])
            rows.append(
                f"| {s} | {rounds} | "
                + " | ".join(
                    cell(ratios(by_method[m], by_method[OURS])) if m in by_method else "-"
                    for m in methods
                )
                + " |"
            )
        if not rows:
            continue
        printed = True
        print(f"\n**{op} on {dev}**: method GB/s / {OURS} GB/s, median over rounds (range)\n")
        print("| suite | rounds | " + " | ".join(methods) + " |")
        print("|---|---:|" + "---:|" * len(methods))
        print("\n".join(rows))
    if not printed:
        print(f"bench-variants: no {OURS} rows in {args.json}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
