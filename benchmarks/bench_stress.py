"""Stress-engine throughput: path-months per second and peak memory at 1k, 10k and 100k paths
for the default network and 120 months, against the machine's memory bandwidth measured in
the same run with a large numpy copy (the named baseline).

Run: .venv/bin/python benchmarks/bench_stress.py [--quick]
Each case runs in a fresh subprocess so its peak RSS is its own.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np


def copy_bandwidth_gb_s(n_bytes: int = 1 << 30, repeats: int = 3) -> float:
    """Bytes moved per second by a large numpy copy (read + write)."""
    a = np.ones(n_bytes // 8)
    b = np.empty_like(a)
    best = np.inf
    for _ in range(repeats):
        t = time.perf_counter()
        np.copyto(b, a)
        best = min(best, time.perf_counter() - t)
    return 2 * a.nbytes / best / 1e9


def one_case(paths: int, months: int, scenario: str) -> dict:
    from oreflow.network import Network
    from oreflow.simulate import run_stress

    net = Network.from_dataset()
    run_stress(scenario, paths=min(paths, 200), months=12, network=net)  # warm-up
    t = time.perf_counter()
    ds = run_stress(scenario, paths=paths, months=months, network=net, seed=1)
    seconds = time.perf_counter() - t
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"paths": paths, "months": months, "seconds": round(seconds, 2),
            "path_months_per_s": round(paths * months / seconds),
            "peak_mem_mb": round(peak_mb), "balance": ds.attrs["max_rel_balance_residual"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="1k and 10k paths only")
    ap.add_argument("--case", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--bandwidth", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--months", type=int, default=120)
    ap.add_argument("--scenario", default="licensing-2025-04")
    args = ap.parse_args()
    if args.case:
        print(json.dumps(one_case(args.case, args.months, args.scenario)))
        return
    if args.bandwidth:
        print(copy_bandwidth_gb_s())
        return
    # every measurement in its own process: Linux carries a parent's peak RSS into children
    out = subprocess.run([sys.executable, __file__, "--bandwidth"], capture_output=True,
                         text=True, check=True)
    bw = float(out.stdout.strip().splitlines()[-1])
    print(json.dumps({"baseline": "numpy copy of 1 GiB", "copy_gb_s": round(bw, 2)}))
    for paths in [1_000, 10_000] + ([] if args.quick else [100_000]):
        out = subprocess.run([sys.executable, __file__, "--case", str(paths), "--months",
                              str(args.months), "--scenario", args.scenario],
                             capture_output=True, text=True, check=True)
        row = json.loads(out.stdout.strip().splitlines()[-1])
        # the engine streams ~ (3 forms x 4 classes + ~40) x E float64 arrays per path-month
        bytes_per_path_month = (3 * 4 * 6 + 60) * 17 * 8
        achieved = row["path_months_per_s"] * bytes_per_path_month / 1e9
        row["achieved_gb_s_est"] = round(achieved, 2)
        row["share_of_copy_bandwidth"] = round(achieved / bw, 3)
        row["target_100k_under_60s"] = paths != 100_000 or row["seconds"] < 60
        print(json.dumps(row))


if __name__ == "__main__":
    main()
