"""Peak-memory estimate of a stress run and the memory budget runs must fit in.

Memory of `run_stress` grows with the number of paths (per-path summaries and sampled shocks
are kept for every path) and with paths x months for the first `BAND_PATHS` paths (their
monthly values are kept until the bands are taken). `estimate_run_bytes` models the peak
resident memory of a whole `oreflow stress` process as

    base + chunk x min(paths, 4,000) + per_path x paths + per_shock x shocks x paths
         + band x min(paths, BAND_PATHS) x months

with the per-path, chunk and band terms proportional to the network's element count (the
arrays are [path, element] and [month, zone, element, path]).

How the coefficients were measured (2-core, 23 GB machine, Python 3.11, numpy 2.4, default
network: 17 elements, the market engine): peak RSS ("Maximum resident set size" of
`/usr/bin/time -v`) of `oreflow stress licensing-2025-04 --format json --out r.nc` for 18
(paths, months) pairs from 1 x 1 to 200,000 x 1 and 50,000 x 120, fitted by least squares on
the terms above: base 382 MB, chunk 86.1 kB, per path 9.85 kB, band 2,712 B per path-month;
every measured peak lies within 8% of the fit. Scenarios with 100 shocks added 16
(outages) to 33 (export controls) bytes per path and shock (measured on the first engine).
The coefficients below are those values per element (/17), and the estimate is multiplied
by `SAFETY` (1.15). `benchmarks/bench_memory.py` repeats the measurement and prints the fit,
to update them when the engine changes. A run without `--out` (no monthly bands, nothing
else reading a month's outputs) keeps those outputs in the kernel's scratch and needs less
per path, so it runs twice the paths at once (`run.run_blocks`; at 12,000 paths x 12 months
0.67 of the estimate, against 0.76 with `--out`); the estimate stays the budget for both.

The budget defaults to `DEFAULT_FRACTION` of the machine's memory (physical memory from
`os.sysconf`, or the cgroup limit if lower); `OREFLOW_MEMORY_BUDGET` (e.g. `8G`, `500M`, bytes)
or `--max-memory` on `oreflow stress` and `oreflow serve` overrides it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

BASE_BYTES = 382 * 2**20
"""Interpreter, libraries, dataset and network."""
MEASURED_ELEMENTS = 17
CHUNK_BYTES_PER_PATH_ELEMENT = 86_053 / MEASURED_ELEMENTS
CHUNK_PATHS = 4_000
"""Paths simulated at once with the month's outputs kept: two threads x blocks of 2,000."""
PATH_BYTES_PER_ELEMENT = (9_854 + 64 * MEASURED_ELEMENTS) / MEASURED_ELEMENTS
"""The fit, plus what was added after it: each path's lowest price ratios, 8 B for each of
7 regions and the outside zone, per element."""
BAND_BYTES_PER_PATH_MONTH_ELEMENT = 2_712 / MEASURED_ELEMENTS
BAND_PATHS = 1_000
"""Monthly bands are quantiles over the first BAND_PATHS paths (oreflow.simulate.observers)."""
SHOCK_BYTES_PER_PATH = 40
"""Sampled values of one shock, per path (measured 16-33 B)."""
SAFETY = 1.15
DEFAULT_FRACTION = 0.5
"""Share of the machine's memory one process's runs may take by default."""
ENV_BUDGET = "OREFLOW_MEMORY_BUDGET"


class MemoryLimitError(ValueError):
    """A run whose estimated peak memory exceeds the budget."""

    def __init__(self, message: str, estimate: int, budget: int) -> None:
        super().__init__(message)
        self.estimate, self.budget = estimate, budget


def fmt_bytes(n: float) -> str:
    """1.5 GB, 230 MB, 12 kB (powers of 1024, as `free -h`)."""
    for unit, size in (("TB", 2**40), ("GB", 2**30), ("MB", 2**20), ("kB", 2**10)):
        if abs(n) >= size:
            return f"{n / size:,.1f} {unit}"
    return f"{int(n)} B"


_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)


def parse_bytes(text: str | int | float, what: str = ENV_BUDGET) -> int:
    """'8G', '512M', '2.5GB', '1000000' -> bytes (powers of 1024); ValueError names `what`."""
    if isinstance(text, int | float):
        value = float(text)
    else:
        m = _SIZE.match(str(text))
        if not m:
            raise ValueError(f"{what}: {str(text)[:40]!r} is not a size; give bytes or a number "
                             "with K, M, G or T (e.g. 8G, 512M)")
        value = float(m.group(1)) * 1024 ** "_kmgt".index(m.group(2).lower() or "_")
    if not (value >= 1 and value < 2**62):
        raise ValueError(f"{what}: {text!r} is not a usable size (1 byte to 4 EB)")
    return int(value)


def machine_memory() -> int:
    """Physical memory in bytes, or the cgroup (container) limit if that is lower."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for f in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(f).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and 0 < int(text) < total:
            total = int(text)
    return int(total)


def default_budget() -> int:
    return int(machine_memory() * DEFAULT_FRACTION)


def memory_budget(override: str | int | None = None) -> int:
    """The budget: `override` (a CLI option), else $OREFLOW_MEMORY_BUDGET, else the default."""
    if override is not None:
        return parse_bytes(override, "--max-memory")
    env = os.environ.get(ENV_BUDGET)
    if env:
        return parse_bytes(env, ENV_BUDGET)
    return default_budget()


def estimate_run_bytes(paths: int, months: int, shocks: int = 0,
                       elements: int = MEASURED_ELEMENTS) -> int:
    """Estimated peak resident memory (bytes) of a process running one stress run."""
    paths, months, shocks, elements = (max(0, int(x)) for x in (paths, months, shocks, elements))
    e = max(elements, 1)
    total = (BASE_BYTES
             + CHUNK_BYTES_PER_PATH_ELEMENT * e * min(paths, CHUNK_PATHS)
             + PATH_BYTES_PER_ELEMENT * e * paths
             + SHOCK_BYTES_PER_PATH * shocks * paths
             + BAND_BYTES_PER_PATH_MONTH_ELEMENT * e * min(paths, BAND_PATHS) * months)
    return int(total * SAFETY)


def run_bytes_above_base(paths: int, months: int, shocks: int = 0,
                         elements: int = MEASURED_ELEMENTS) -> int:
    """What one more run adds to a process that is already running (the web server)."""
    return max(0, estimate_run_bytes(paths, months, shocks, elements)
               - int(BASE_BYTES * SAFETY))


def check_run_memory(paths: int, months: int, shocks: int = 0,
                     elements: int = MEASURED_ELEMENTS, budget: int | None = None,
                     option: str = "--max-memory or OREFLOW_MEMORY_BUDGET") -> int:
    """The estimate, or MemoryLimitError naming estimate, budget and how to change it."""
    budget = memory_budget() if budget is None else int(budget)
    est = estimate_run_bytes(paths, months, shocks, elements)
    if est > budget:
        fit = max_paths_within(budget, months, shocks, elements)
        hint = (f"at most {fit:,} paths fit at {months:,} month(s)" if fit >= 1
                else "no run fits")
        raise MemoryLimitError(
            f"{paths:,} paths x {months:,} month(s) would need about {fmt_bytes(est)} of "
            f"memory (estimate), above the budget of {fmt_bytes(budget)}; {hint}. Use fewer "
            f"paths or months, or raise the budget ({option})", est, budget)
    return est


def max_paths_within(budget: int, months: int, shocks: int = 0,
                     elements: int = MEASURED_ELEMENTS) -> int:
    """The largest path count whose estimate fits `budget` (0 if none does)."""
    lo, hi = 0, 1
    while hi < 10**12 and estimate_run_bytes(hi, months, shocks, elements) <= budget:
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if estimate_run_bytes(mid, months, shocks, elements) <= budget:
            lo = mid
        else:
            hi = mid
    return lo
