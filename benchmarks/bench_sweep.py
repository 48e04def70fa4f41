"""Sweep throughput: path-months a second for the same sweep run three ways, with the ratio
against one process (the named baseline):

- `one process`: `run_sweep(..., serial=True)`, in this process (numba's threads as set);
- `LocalCluster`: 2 worker processes, one thread each, started by `run_sweep`;
- `scheduler + workers`: `dask scheduler` and two `dask worker` processes started here as
  separate programs (or an existing cluster: OREFLOW_DASK_SCHEDULER=tcp://host:port), used
  through `--scheduler` as a user would.

Each run writes a fresh Zarr store; all three stores must hold the same numbers (checked).
Times include the cluster's start (LocalCluster) and the workers' first task (imports, the
numba kernel loaded from cache), as a user sees them.

Run: .venv/bin/python benchmarks/bench_sweep.py [--quick] [--paths 256] [--n 8]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SWEEP = """
name: bench-sweep
scenarios: [licensing-2025-04]
paths: {paths}
block_paths: {block}
months: {months}
seed: 0
design: {{method: saltelli, n: {n}, seed: 0}}
parameters:
  buyer_cover_months: {{dist: uniform, low: 1.0, high: 4.0}}
  shocks[0].approval_scale: {{dist: uniform, low: 0.5, high: 1.2}}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_cluster(tmp: Path) -> tuple[str, list[subprocess.Popen]]:
    """`dask scheduler` and two `dask worker`s as separate processes on this machine."""
    bindir = Path(sys.executable).parent
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs = [subprocess.Popen([str(bindir / "dask"), "scheduler", "--host", "127.0.0.1",
                               "--port", str(port), "--dashboard-address", "127.0.0.1:0"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    for i in range(2):
        procs.append(subprocess.Popen([str(bindir / "dask"), "worker", address, "--nworkers",
                                       "1", "--nthreads", "1", "--no-dashboard",
                                       "--local-directory", str(tmp / f"w{i}")],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    from distributed import Client

    with Client(address, timeout="60s") as c:
        c.wait_for_workers(2, timeout=120)
    return address, procs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="a smaller sweep")
    ap.add_argument("--paths", type=int, default=256)
    ap.add_argument("--months", type=int, default=24)
    ap.add_argument("--n", type=int, default=8, help="Saltelli base samples (power of two)")
    args = ap.parse_args()
    if args.quick:
        args.paths, args.n = 64, 4
    from oreflow.network import Network
    from oreflow.sweep.design import parse_sweep
    from oreflow.sweep.run import run_sweep
    from oreflow.sweep.store import open_store

    net = Network.from_dataset()
    text = SWEEP.format(paths=args.paths, block=max(1, args.paths // 2), months=args.months,
                        n=args.n)
    sweep = parse_sweep(text, "bench.yaml", network=net)
    tmp = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    procs: list[subprocess.Popen] = []
    rows = []
    try:
        address = os.environ.get("OREFLOW_DASK_SCHEDULER")
        if not address:
            address, procs = _start_cluster(tmp)
        modes = [("one process", {"serial": True}),
                 ("LocalCluster, 2 workers", {"workers": 2}),
                 (f"scheduler + workers ({address})", {"scheduler": address})]
        stores = []
        for label, kw in modes:
            out = tmp / f"{len(stores)}.zarr"
            started = time.perf_counter()
            run = run_sweep(sweep, out, network=net, **kw)
            wall = time.perf_counter() - started
            pm = sweep.points * sweep.spec.paths * sweep.months * len(sweep.scenarios)
            rows.append({"mode": label, "path_months": pm, "seconds": round(wall, 2),
                         "path_months_per_s": round(pm / wall, 0), "where": run.where})
            stores.append(open_store(out))
        base = rows[0]["path_months_per_s"]
        for r in rows:
            r["ratio_vs_one_process"] = round(r["path_months_per_s"] / base, 2)
        same = all(np.array_equal(stores[0].array(k), s.array(k), equal_nan=True)
                   for s in stores[1:] for k in ("unmet_physical_t", "headline", "sobol_ST"))
        for r in rows:
            r["same_numbers_as_one_process"] = same
            print(json.dumps(r), flush=True)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
