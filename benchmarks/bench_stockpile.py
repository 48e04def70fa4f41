"""Stockpile planner: model build and HiGHS solve time as scenario paths grow, for the
default data (15 simulated elements x 3 forms x 60 months; Pm and Sc have no base-year flow).

Two formulations of the same LP, timed in the same run:
- `monthly`: the generic two-stage LP with a release variable per path, month, element,
  form and demand group (the named baseline);
- `aggregated`: the same LP with months merged into the segments between conversion lead
  times (exact; tests/test_stockpile.py checks both give the same optimum).
Both merge identical paths (deterministic scenarios) into one with their summed probability.
Target: 2,000 paths in under 60 s on 2 cores (aggregated). Prints one JSON line per case.

Run: .venv/bin/python benchmarks/bench_stockpile.py [--quick] [--sizes 100,2000]
"""

from __future__ import annotations

import argparse
import json
import time

MONTHLY_MAX_PATHS = 1_000
"""The monthly LP is not run beyond this: it grows as paths x months and stops fitting."""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="100 and 300 paths only")
    ap.add_argument("--sizes", default="100,300,1000,2000,5000,10000",
                    help="comma-separated path counts")
    args = ap.parse_args()
    from oreflow.network import Network
    from oreflow.stockpile import (
        DEFAULT_SCENARIOS,
        Terms,
        economy,
        merge_identical,
        segment,
        simulate_unmet,
        solve,
    )

    net = Network.from_dataset()
    terms = Terms.from_dataset(net.dataset)
    sizes = [100, 300] if args.quick else [int(n) for n in args.sizes.split(",")]
    for n in sizes:
        t = time.perf_counter()
        paths = simulate_unmet(DEFAULT_SCENARIOS, n, 0, 60, "USA", net)
        sim_s = time.perf_counter() - t
        econ = economy(net, "USA", terms, paths.engine)
        row = {"paths": len(paths.weight), "months": 60, "elements": len(econ.elements),
               "forms": 3, "simulate_s": round(sim_s, 2)}
        for kind in ("aggregated", "monthly"):
            if kind == "monthly" and n > MONTHLY_MAX_PATHS:
                continue
            t = time.perf_counter()
            seg, weight = merge_identical(segment(paths, econ, monthly=kind == "monthly"),
                                          paths.weight)
            seg_s = time.perf_counter() - t
            sol = solve(seg, econ, terms, weight, budget_usd=2e8)
            row["distinct_paths"] = len(weight)
            row[f"{kind}_build_s"] = round(seg_s + sol.seconds["build"], 2)
            row[f"{kind}_solve_s"] = round(sol.seconds["solve"], 2)
            row[f"{kind}_objective_usd"] = round(sol.objective, 0)
        if "monthly_solve_s" in row:
            total = {k: row[f"{k}_build_s"] + row[f"{k}_solve_s"] for k in ("aggregated",
                                                                             "monthly")}
            row["speedup_vs_monthly"] = round(total["monthly"] / total["aggregated"], 1)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
