"""Stockpile planner: model build and HiGHS solve time as scenario paths grow, for the
default data (15 simulated elements x 3 forms x 60 months; Pm and Sc have no base-year flow).

Three ways to the same optimum, timed in the same run:
- `monthly`: the generic two-stage LP with a release variable per path, month, element,
  form and demand group (the named baseline);
- `aggregated`: the same LP with months merged into the segments between conversion lead
  times (with the Leontief loss a slight relaxation: tests/test_stockpile.py checks it is
  never above the monthly optimum; `aggregated_below_monthly` prints by how much): the
  monolithic reference;
- `benders`: the aggregated LP decomposed by path (`stockpile_benders`; same optimum,
  tests/test_stockpile_benders.py), `speedup_benders` = aggregated / benders time.
All merge identical paths (deterministic scenarios) into one with their summed probability.
Targets: 2,000 paths under 60 s (aggregated); 10,000 paths under 3 minutes (benders) on 2
cores. Prints one JSON line per case.

Run: .venv/bin/python benchmarks/bench_stockpile.py [--quick] [--sizes 100,2000]
     [--monolithic-max 5000]
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
    ap.add_argument("--budget-usd", type=float, default=2e8)
    ap.add_argument("--monthly-max", type=int, default=MONTHLY_MAX_PATHS,
                    help="largest path count the monthly LP is run for")
    ap.add_argument("--monolithic-max", type=int, default=5_000,
                    help="largest path count the monolithic (aggregated) LP is run for")
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
    from oreflow.stockpile_benders import solve_benders

    net = Network.from_dataset()
    terms = Terms.from_dataset(net.dataset)
    sizes = [100, 300] if args.quick else [int(n) for n in args.sizes.split(",")]
    for n in sizes:
        t = time.perf_counter()
        paths = simulate_unmet(DEFAULT_SCENARIOS, n, 0, 60, "USA", net)
        sim_s = time.perf_counter() - t
        econ = economy(net, "USA", terms, paths.base)
        row = {"paths": len(paths.weight), "months": 60, "budget_usd": args.budget_usd,
               "elements": len(econ.elements), "forms": 3, "simulate_s": round(sim_s, 2)}
        t = time.perf_counter()
        seg, weight = merge_identical(segment(paths, econ), paths.weight)
        seg_s = time.perf_counter() - t
        sol, info = solve_benders(seg, econ, terms, weight, budget_usd=args.budget_usd)
        row["benders_build_s"] = round(seg_s + sol.seconds["build"], 2)
        row["benders_solve_s"] = round(sol.seconds["solve"], 2)
        row["benders_iterations"] = info.iterations
        row["benders_objective_usd"] = round(sol.objective, 0)
        for kind in ("aggregated", "monthly"):
            if kind == "monthly" and n > args.monthly_max:
                continue
            if kind == "aggregated" and n > args.monolithic_max:
                continue
            t = time.perf_counter()
            seg, weight = merge_identical(segment(paths, econ, monthly=kind == "monthly"),
                                          paths.weight)
            seg_s = time.perf_counter() - t
            sol = solve(seg, econ, terms, weight, budget_usd=args.budget_usd)
            row["distinct_paths"] = len(weight)
            row[f"{kind}_build_s"] = round(seg_s + sol.seconds["build"], 2)
            row[f"{kind}_solve_s"] = round(sol.seconds["solve"], 2)
            row[f"{kind}_objective_usd"] = round(sol.objective, 0)
        if "aggregated_solve_s" in row:
            agg = row["aggregated_build_s"] + row["aggregated_solve_s"]
            row["speedup_benders"] = round(agg / (row["benders_build_s"]
                                                  + row["benders_solve_s"]), 1)
            row["same_optimum"] = bool(abs(row["benders_objective_usd"]
                                           - row["aggregated_objective_usd"])
                                       <= 1e-6 * max(abs(row["aggregated_objective_usd"]), 1))
        if "monthly_solve_s" in row:
            total = {k: row[f"{k}_build_s"] + row[f"{k}_solve_s"] for k in ("aggregated",
                                                                             "monthly")}
            row["speedup_vs_monthly"] = round(total["monthly"] / total["aggregated"], 1)
            # the aggregate is a relaxation (a max of sums <= the sum of maxima): how much
            row["aggregated_below_monthly"] = round(
                1 - row["aggregated_objective_usd"] / row["monthly_objective_usd"], 5)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
