"""Benchmark of oreflow.mfa's inflow-driven dynamic stock model against flodym.

Prints two JSON lines:

1. ``{"case": "200x30x10", ...}``: 200 years x 30 regions x 10 products, normal lifetimes
   (mean per region x product drawn in 5-25 years, std = 0.3 x mean, fixed seed); oreflow
   (best of 5) and flodym (best of 2) timed in the same run; ``max_rel_diff`` is the largest
   relative difference of the stock over all cells. Targets: speedup >= 20, diff <= 1e-9.
2. ``{"case": "200x30x10x1000samples", ...}``: 1,000 Monte Carlo samples of that stock
   (lifetime means and inflows perturbed per sample) on a trailing samples axis, run in
   chunks of samples that are reduced to summary statistics as they come, so memory stays
   flat. ``oreflow_s`` is the time inside `inflow_driven`, ``total_s`` adds sampling and
   reduction, ``peak_mem_mb`` is the process's peak RSS (measured before flodym runs).
   Target: under 30 s on 2 cores.

3. ``{"case": "200x30x10 like-for-like", ...}``: the same case with the same outputs and the
   same dense method as flodym (`method="cohort"`, `return_cohorts=True`: the survival
   matrix per cohort and the stock by cohort), so the headline speedup is not the fast path's
   alone.

Usage: python benchmarks/bench_mfa.py [--quick] [--samples-chunk N]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import flodym as fd
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from oreflow.mfa import NormalLifetime, inflow_driven  # noqa: E402

SEED = 20240611


def make_case(n_t: int, n_r: int, n_p: int, rng: np.random.Generator):
    """Inflow growing ~3 %/yr with noise, and normal-lifetime means per region x product."""
    mean = rng.uniform(5.0, 25.0, (n_r, n_p))
    base = rng.uniform(10.0, 1000.0, (n_r, n_p))
    growth = 1.03 ** np.arange(n_t)
    inflow = base * growth[:, None, None] * rng.lognormal(0.0, 0.2, (n_t, n_r, n_p))
    return inflow, mean


def best_of(fn, repeats: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def flodym_stock(inflow: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    n_t, n_r, n_p = inflow.shape
    dims = fd.DimensionSet(dim_list=[
        fd.Dimension(name="time", letter="t", items=list(range(2000, 2000 + n_t))),
        fd.Dimension(name="region", letter="r", items=[f"r{i}" for i in range(n_r)]),
        fd.Dimension(name="product", letter="p", items=[f"p{i}" for i in range(n_p)]),
    ])
    lifetime = fd.NormalLifetime(dims=dims, mean=mean, std=std)
    dsm = fd.InflowDrivenDSM(dims=dims, lifetime_model=lifetime,
                             inflow=fd.StockArray(dims=dims, values=inflow.copy()))
    dsm.compute()
    return dsm.stock.values


def monte_carlo(inflow: np.ndarray, mean: np.ndarray, n_samples: int, chunk: int,
                rng: np.random.Generator) -> dict:
    """Run n_samples perturbed stocks in chunks; keep mean/sd per cell and world totals."""
    n_t, n_r, n_p = inflow.shape
    total = np.zeros((n_t, n_samples))
    s1 = np.zeros((n_t, n_r, n_p))
    s2 = np.zeros((n_t, n_r, n_p))
    model_s = 0.0
    t_start = time.perf_counter()
    for a in range(0, n_samples, chunk):
        m = min(chunk, n_samples - a)
        mean_s = mean[:, :, None] * rng.lognormal(0.0, 0.15, (n_r, n_p, m))
        inflow_s = inflow[..., None] * rng.lognormal(0.0, 0.1, (n_t, n_r, n_p, m))
        t0 = time.perf_counter()
        res = inflow_driven(inflow_s, NormalLifetime(mean_s, 0.3 * mean_s))
        model_s += time.perf_counter() - t0
        stock = res.stock
        total[:, a:a + m] = stock.sum(axis=(1, 2))
        s1 += stock.sum(axis=-1)
        s2 += np.einsum("trps,trps->trp", stock, stock)
    total_s = time.perf_counter() - t_start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    p5, p50, p95 = np.percentile(total[-1], [5, 50, 95])
    return {
        "oreflow_s": round(model_s, 3),
        "total_s": round(total_s, 3),
        "peak_mem_mb": round(peak_mb, 1),
        "samples_chunk": chunk,
        "final_world_stock_p5_p50_p95": [round(float(v), 1) for v in (p5, p50, p95)],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small smoke run")
    ap.add_argument("--samples-chunk", type=int, default=100,
                    help="Monte Carlo samples per inflow_driven call (memory vs speed)")
    args = ap.parse_args()
    n_t, n_r, n_p, n_samples = (40, 6, 4, 20) if args.quick else (200, 30, 10, 1000)
    rng = np.random.default_rng(SEED)
    inflow, mean = make_case(n_t, n_r, n_p, rng)
    std = 0.3 * mean

    # Monte Carlo first, so the peak RSS it reports is its own and not flodym's
    mc = monte_carlo(inflow, mean, n_samples, min(args.samples_chunk, n_samples), rng)

    lifetime = NormalLifetime(mean, std)
    ore_s, res = best_of(lambda: inflow_driven(inflow, lifetime), 5)
    fd_s, fd_stock = best_of(lambda: flodym_stock(inflow, mean, std), 1 if args.quick else 2)
    rel = np.abs(res.stock - fd_stock) / np.maximum(np.abs(fd_stock), np.finfo(float).tiny)
    print(json.dumps({
        "case": f"{n_t}x{n_r}x{n_p}",
        "oreflow_s": round(ore_s, 5),
        "flodym_s": round(fd_s, 4),
        "speedup": round(fd_s / ore_s, 1),
        "max_rel_diff": float(f"{rel.max():.3g}"),
    }))
    print(json.dumps({"case": f"{n_t}x{n_r}x{n_p}x{n_samples}samples", **mc}))
    like_s, like = best_of(lambda: inflow_driven(inflow, lifetime, method="cohort",
                                                 return_cohorts=True), 3)
    rel = np.abs(like.stock - fd_stock) / np.maximum(np.abs(fd_stock), np.finfo(float).tiny)
    print(json.dumps({
        "case": f"{n_t}x{n_r}x{n_p} like-for-like (dense cohort method, stock by cohort)",
        "oreflow_s": round(like_s, 5), "flodym_s": round(fd_s, 4),
        "speedup": round(fd_s / like_s, 1), "max_rel_diff": float(f"{rel.max():.3g}"),
    }))


if __name__ == "__main__":
    main()
