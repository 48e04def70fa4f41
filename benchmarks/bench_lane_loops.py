"""What one of the month kernel's lane loops costs, by where its rows sit (L1, L2, L3 cache).

The kernel (`oreflow.simulate.kernel`) is ~20,800 loops a tile-month over a tile's 64 lanes,
each reading and writing a few rows of 64 numbers, compiled as the kernel is
(`simulate/jit.JIT`, the lane count a constant). This times such loops on double rows (512
bytes) that sit in the first-level cache, in the second and in the third, to say which one
the kernel's average when its rows were double (~24 ns a loop, README's Speed section)
matched: the named baseline is the same loop over rows in L1. Then the same loop on
single-precision rows, and flows in single precision booked into a double stock (the
kernel's widths now, `kernel.SINGLE` and `kernel.ACCOUNT`). Prints one JSON line per loop
shape.

Run: .venv/bin/python benchmarks/bench_lane_loops.py
"""

from __future__ import annotations

import json
import time

import numpy as np
from numba import njit

from oreflow.simulate.jit import JIT
from oreflow.simulate.kernel import LANES

ROWS = {"L1": 8, "L2": 100, "L3": 2000}
"""Rows per array: 5 arrays of 8 rows are 20 kB (a 32 kB L1), of 100 rows 250 kB (a 1 MB
L2), of 2,000 rows 5 MB (beyond L2, within a 32 MB L3)."""


@njit(**JIT)
def load3_store2(a, b, c, d, e, reps):
    """d = a + b, e = a x c: three rows read, two written (like the kernel's typical loop)."""
    for _ in range(reps):
        for k in range(a.shape[0]):
            for q in range(LANES):
                d[k, q] = a[k, q] + b[k, q]
                e[k, q] = a[k, q] * c[k, q]


@njit(**JIT)
def load3_store1(a, b, c, d, e, reps):
    """d = a + b x c: three rows read, one written."""
    for _ in range(reps):
        for k in range(a.shape[0]):
            for q in range(LANES):
                d[k, q] = a[k, q] + b[k, q] * c[k, q]


@njit(**JIT)
def load1_store1(a, b, c, d, e, reps):
    """d = 2 a: one row read, one written."""
    for _ in range(reps):
        for k in range(a.shape[0]):
            for q in range(LANES):
                d[k, q] = a[k, q] * 2.0


@njit(**JIT)
def flows_into_stock(a, b, c, d, e, reps):
    """e += a - b, d = a x b: two flows read, one row written, a stock updated (the
    kernel's booking of flows into a stock account)."""
    for _ in range(reps):
        for k in range(a.shape[0]):
            for q in range(LANES):
                x = a[k, q] - b[k, q]
                d[k, q] = a[k, q] * b[k, q]
                e[k, q] += x


def ns_per_loop(f, rows: int, loops: int = 4_000_000, repeats: int = 5,
                dtype=np.float64, stock_dtype=None) -> float:
    """Nanoseconds a loop, the arrays in `dtype` (the fifth, e, in `stock_dtype` if given)."""
    arrays = [np.random.default_rng(i).random((rows, LANES)).astype(dtype) for i in range(5)]
    if stock_dtype is not None:
        arrays[4] = arrays[4].astype(stock_dtype)
    f(*arrays, 1)
    reps = max(1, loops // rows)
    best = np.inf
    for _ in range(repeats):
        t = time.perf_counter()
        f(*arrays, reps)
        best = min(best, (time.perf_counter() - t) / (reps * rows))
    return best * 1e9


def main() -> None:
    for f in (load3_store2, load3_store1, load1_store1):
        ns = {level: ns_per_loop(f, rows) for level, rows in ROWS.items()}
        print(json.dumps({"loop": f.__name__, "lanes": LANES, "baseline": "rows in L1",
                          **{f"ns_rows_in_{k}": round(v, 1) for k, v in ns.items()},
                          **{f"ratio_{k}_to_L1": round(v / ns["L1"], 2) for k, v in ns.items()
                             if k != "L1"}}))
    # the same loop on rows of single precision (half the bytes), the rows as many as the
    # kernel's: what narrower rows buy (the kernel's rows are single, kernel.SINGLE)
    f, rows = load3_store2, ROWS["L3"]
    double, single = ns_per_loop(f, rows), ns_per_loop(f, rows, dtype=np.float32)
    print(json.dumps({"loop": f.__name__, "lanes": LANES, "rows": rows,
                      "baseline": "float64 rows", "ns_float64": round(double, 1),
                      "ns_float32": round(single, 1),
                      "ratio_float32_to_float64": round(single / double, 2)}))
    # flows in single precision booked into a double stock (the kernel's stock accounts)
    f = flows_into_stock
    double = ns_per_loop(f, rows)
    mixed = ns_per_loop(f, rows, dtype=np.float32, stock_dtype=np.float64)
    print(json.dumps({"loop": f.__name__, "lanes": LANES, "rows": rows,
                      "baseline": "float64 rows and stock", "ns_float64": round(double, 1),
                      "ns_float32_flows_float64_stock": round(mixed, 1),
                      "ratio_to_float64": round(mixed / double, 2)}))


if __name__ == "__main__":
    main()
