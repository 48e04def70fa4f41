"""Stress-engine throughput: path-months per second and peak memory at 1k, 10k and 100k paths
for the default network and 120 months, and the bytes each path-month touches, counted from
the arrays the month kernel really receives (not assumed).

Named baselines, measured in the same run: the machine's memory bandwidth (a numpy copy of
1 GiB, read + write) and the state's own size per path (the floor: a month must at least read
and write the state it carries). The issue's target: 100,000 paths x 120 months in under 30 s
and 2 GB on 2 cores.

Run: .venv/bin/python benchmarks/bench_stress.py [--quick] [--cli 100000]
Each case runs in a fresh subprocess so its peak RSS is its own.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import resource
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

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


@contextmanager
def step_wrapped(wrap):
    """Every block's month kernel (parallel and serial) replaced by wrap(step) inside; yields
    the names of step's arguments."""
    from oreflow.simulate import kernel

    real = kernel.PARALLEL, kernel.SERIAL
    kernel.PARALLEL, kernel.SERIAL = (k._replace(step=wrap(k.step)) for k in real)
    try:
        yield list(inspect.signature(kernel.step.py_func).parameters)
    finally:
        kernel.PARALLEL, kernel.SERIAL = real


def kernel_bytes(scenario: str, paths: int = 64) -> dict:
    """Bytes per path of every per-path array `kernel.step` receives (tiles of paths,
    [tile, ..., lane]), by role in its signature: state (read and written every month),
    month inputs (read), outputs (written; observers read them once more), and the shared
    base year. Counted in a run that keeps the outputs (monthly bands read them), per lane of
    a tile (a block's last tile may be part padding: its lanes are counted, not its paths);
    the demand factors and capacities only if a shock changes them (else the kernel does not
    read them)."""
    from oreflow.simulate import kernel, run_stress

    names = list(inspect.signature(kernel.step.py_func).parameters)
    state = names[names.index("S"):names.index("queue") + 1]
    inputs = names[names.index("conc_in"):names.index("slot")]
    outputs = [n for n in names if n.startswith("out_")]
    seen: dict[str, int] = {}

    only_if = {"dem_factor": "shifted", "cap": "capped"}  # read only when the flag is set

    def counting(step):
        def count(*args):
            nb = args[names.index("S")].shape[0]
            for n, a in zip(names, args, strict=True):
                if n in only_if and not args[names.index(only_if[n])]:
                    continue
                if isinstance(a, np.ndarray) and a.ndim > 1 and a.shape[0] == nb:
                    seen[n] = max(seen.get(n, 0), a.nbytes // (nb * a.shape[-1]))
                elif n == "st":
                    seen["static"] = sum(x.nbytes for x in a if isinstance(x, np.ndarray))
            return step(*args)
        return count

    with step_wrapped(counting):
        run_stress(scenario, paths=paths, months=3, seed=1)
    by_role = {role: sum(seen.get(n, 0) for n in group)
               for role, group in (("state", state), ("inputs", inputs), ("outputs", outputs))}
    touched = 2 * by_role["state"] + by_role["inputs"] + 2 * by_role["outputs"]
    # without observers that read a month's outputs (the command without --out), the
    # balance check and the totals read them inside the kernel: the outputs stay in a tile
    # per thread (in cache) and memory sees only the state and the inputs
    in_scratch = 2 * by_role["state"] + by_role["inputs"]
    return {"state_bytes_per_path": by_role["state"],
            "input_bytes_per_path_month": by_role["inputs"],
            "output_bytes_per_path_month": by_role["outputs"],
            "static_bytes_shared": seen.get("static", 0),
            "bytes_touched_per_path_month": touched,
            "ratio_to_state_floor": round(touched / (2 * by_role["state"]), 2),
            "bytes_touched_per_path_month_outputs_in_scratch": in_scratch}


def one_case(paths: int, months: int, scenario: str) -> dict:
    from oreflow.network import Network
    from oreflow.simulate import run_stress

    net = Network.from_dataset()
    run_stress(scenario, paths=min(paths, 200), months=12, network=net)  # warm-up
    kept = [0]  # path-months whose outputs were kept (blocks with banded paths)

    def counting(step):
        def count(*args):
            if args[names.index("keep_outputs")]:
                kept[0] += args[names.index("n_paths")]
            return step(*args)
        return count

    with step_wrapped(counting) as names:
        t = time.perf_counter()
        ds = run_stress(scenario, paths=paths, months=months, network=net, seed=1)
        seconds = time.perf_counter() - t
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"paths": paths, "months": months, "seconds": round(seconds, 2),
            "path_months_per_s": round(paths * months / seconds),
            "path_months_keeping_outputs": kept[0],
            "peak_mem_mb": round(peak_mb), "balance": ds.attrs["max_rel_balance_residual"]}


def cli_case(paths: int, months: int, scenario: str) -> dict:
    """The command the issue's target is about, as a whole process (start-up, dataset, run,
    JSON): `oreflow stress SCENARIO --paths N --months M --seed 2 --format json`, without
    monthly bands (nothing it prints shows them)."""
    exe = str(Path(sys.executable).with_name("oreflow"))
    t = time.perf_counter()
    proc = subprocess.Popen([exe, "stress", scenario, "--paths", str(paths), "--months",
                             str(months), "--seed", "2", "--format", "json"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # this child's own peak (RUSAGE_CHILDREN would be the largest of every child so far,
    # the 1 GiB copy of the bandwidth baseline included)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"oreflow stress failed (exit {os.waitstatus_to_exitcode(status)})")
    peak_mb = usage.ru_maxrss / 1024
    return {"command": f"oreflow stress {scenario} --paths {paths} --months {months} "
                       "--format json", "seconds": round(seconds, 1),
            "path_months_per_s": round(paths * months / seconds),
            "peak_mem_mb": round(peak_mb),
            "acceptance_floor_path_months_per_s": 200_000}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="1k and 10k paths only")
    ap.add_argument("--cli", type=int, metavar="PATHS",
                    help="also time the oreflow stress command itself at PATHS paths")
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
    nbytes = kernel_bytes(args.scenario)
    print(json.dumps({"counted_from": "kernel.step arguments", **nbytes}))
    for paths in [1_000, 10_000] + ([] if args.quick else [100_000]):
        out = subprocess.run([sys.executable, __file__, "--case", str(paths), "--months",
                              str(args.months), "--scenario", args.scenario],
                             capture_output=True, text=True, check=True)
        row = json.loads(out.stdout.strip().splitlines()[-1])
        # blocks without banded paths keep their outputs in the kernel's scratch
        kept = row["path_months_keeping_outputs"]
        touched = (kept * nbytes["bytes_touched_per_path_month"] + (paths * args.months - kept)
                   * nbytes["bytes_touched_per_path_month_outputs_in_scratch"])
        achieved = touched / row["seconds"] / 1e9
        row["achieved_gb_s"] = round(achieved, 2)
        row["share_of_copy_bandwidth"] = round(achieved / bw, 3)
        if paths == 100_000 and args.months == 120:
            row["target_under_30s_and_2gb"] = row["seconds"] < 30 and row["peak_mem_mb"] < 2048
        print(json.dumps(row))
    if args.cli:
        print(json.dumps(cli_case(args.cli, args.months, args.scenario)))


if __name__ == "__main__":
    main()
