"""Peak memory of `oreflow stress` against the estimate of oreflow.limits, and a fresh fit of
its coefficients (re-run this when the engine changes and update the constants there).

Each case runs `oreflow stress licensing-2025-04 --format json --out r.nc` in its own process
under /usr/bin/time and reads its peak resident memory ("%M"). The fit is least squares on
1, min(paths, 4000), paths and min(paths, 10000) x months, as in oreflow.limits.

Run: .venv/bin/python benchmarks/bench_memory.py [--quick]   (about 2 minutes; --quick: 30 s)
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from oreflow import limits

FULL = [(1, 1), (1000, 1), (2000, 1), (4000, 1), (10000, 1), (30000, 1), (50000, 1),
        (100000, 1), (200000, 1), (1000, 120), (2000, 120), (4000, 60), (10000, 12),
        (10000, 60), (10000, 120), (20000, 120), (30000, 60), (50000, 120)]
QUICK = [(1, 1), (2000, 1), (10000, 1), (50000, 1), (2000, 60), (10000, 24)]


def peak_rss(paths: int, months: int, out: Path) -> tuple[int, float]:
    """Peak RSS (bytes) and seconds of one `oreflow stress` process, measured by
    /usr/bin/time (a small parent: a child's ru_maxrss starts at its parent's size)."""
    exe = Path(sys.executable).with_name("oreflow")
    cmd = ["/usr/bin/time", "-f", "%M", str(exe), "stress", "licensing-2025-04", "--paths",
           str(paths), "--months", str(months), "--format", "json", "--out", str(out)]
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return int(r.stderr.strip().splitlines()[-1]) * 1024, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    cases = QUICK if args.quick else FULL
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for paths, months in cases:
            rss, secs = peak_rss(paths, months, Path(tmp) / "r.nc")
            est = limits.estimate_run_bytes(paths, months, shocks=1)
            rows.append((paths, months, rss))
            print(f"{paths:>8,} paths x {months:>3} months: peak {rss / 2**20:7.1f} MB, "
                  f"estimate {est / 2**20:7.1f} MB ({est / rss:4.2f}x), {secs:5.1f} s",
                  flush=True)
    p = np.array([r[0] for r in rows], float)
    m = np.array([r[1] for r in rows], float)
    y = np.array([r[2] for r in rows], float)
    x = np.stack([np.ones_like(p), np.minimum(p, limits.CHUNK_PATHS), p,
                  np.minimum(p, limits.BAND_PATHS) * m], 1)
    c, *_ = np.linalg.lstsq(x, y, rcond=None)
    print(f"fit: base {c[0] / 2**20:.0f} MB, chunk {c[1]:.0f} B/path, per path {c[2]:.0f} B, "
          f"band {c[3]:.0f} B per path-month (for {limits.MEASURED_ELEMENTS} elements); "
          f"worst ratio measured/fit {np.max(y / (x @ c)):.3f}")
    print(f"(this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB)")


if __name__ == "__main__":
    main()
