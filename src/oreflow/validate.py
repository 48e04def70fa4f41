"""Backtests: the model against recorded episodes, figure by figure.

`validation_targets.csv` lists each recorded figure: a price multiple over the episode's base
in one zone (outside China, `ROW`: regions weighted by base-year use, as `stress` reports
it; inside, `CHN`), at its peak, in a given month, the month of the peak, or the export /
domestic price gap. Targets with role `fit` are what `scripts/calibrate.py` fits the price
parameters to (in-sample); role `check` targets are never fitted (out-of-sample). Each
statistic is the one `oreflow stress` reports: per path, then the median over paths, with the
5th-95th percentiles over paths and seeds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from oreflow.network import Network
from oreflow.simulate.engine import Behaviour
from oreflow.simulate.observers import _Base

DEFAULT_SEEDS = (1, 2, 3)


class PriceTrace(_Base):
    """Monthly price multiples per path, outside China (use-weighted, as PathSummary) and in
    the controller's market: [paths, months, elements] each."""

    def __init__(self, paths: int, months: int):
        self.paths, self.months = paths, months

    def start_block(self, engine, paths: np.ndarray) -> None:
        b = engine.base
        M, E = len(b.regions), len(b.elements)
        if not hasattr(self, "outside"):
            self.outside = np.full((self.paths, self.months, E), np.nan)
            self.inside = np.full((self.paths, self.months, E), np.nan)
            c = b.controller_index
            use = b.use0[:, :E] * (np.arange(M) != c)[:, None]
            self._w = use / np.maximum(use.sum(0, keepdims=True), 1e-300)
            self._inv = np.divide(1.0, b.price0, out=np.zeros_like(b.price0),
                                  where=b.price0 > 0)
            self._c = c
            self.elements = list(b.elements)
            self.base_outside = (b.price0 * self._w).sum(0)  # USD/kg
            self.base_inside = b.price0[c]

    def on_month(self, v) -> None:
        ratio = v.price_usd_per_kg * self._inv
        self.outside[v.paths, v.t] = np.einsum("pme,me->pe", ratio, self._w)
        self.inside[v.paths, v.t] = ratio[:, self._c]


@dataclass
class Simulated:
    """Per-path values of one target over every seed."""

    values: np.ndarray

    @property
    def median(self) -> float:
        return float(np.nanmedian(self.values))

    @property
    def p5(self) -> float:
        return float(np.nanpercentile(self.values, 5))

    @property
    def p95(self) -> float:
        return float(np.nanpercentile(self.values, 95))


def _statistic(row, tr: PriceTrace) -> np.ndarray:
    e = tr.elements.index(row.element)
    series = (tr.outside if row.zone == "ROW" else tr.inside)[:, :, e]
    if row.quantity == "peak_ratio":
        return np.nanmax(series, axis=1)
    if row.quantity == "peak_month":
        return np.nanargmax(series, axis=1).astype(float)
    # the model's price at the start of month t is its quote at time t (months since start)
    t = min(int(np.floor(row.month + 0.5)), series.shape[1] - 1)
    if row.quantity == "ratio_at":
        return series[:, t]
    # gap_at: export / domestic price in USD at that month
    out = tr.outside[:, t, e] * tr.base_outside[e]
    ins = tr.inside[:, t, e] * tr.base_inside[e]
    return out / np.where(ins > 0, ins, np.nan)


def simulate(targets: pd.DataFrame, behaviour: Behaviour | None = None,
             seeds: Sequence[int] = DEFAULT_SEEDS, paths: int = 200,
             network: Network | None = None) -> dict[str, Simulated]:
    """Every target's per-path statistic over `seeds` x `paths` paths."""
    from oreflow.simulate.run import run_stress

    net = network if network is not None else Network.from_dataset()
    found: dict[str, list[np.ndarray]] = {t: [] for t in targets["target"]}
    from oreflow.scenario import load_scenario

    for scenario, rows in targets.groupby("scenario", sort=False):
        sc, _ = load_scenario(scenario, net)
        snet = net.at_year(sc.base_year)
        beh = behaviour or Behaviour.from_dataset(snet.dataset)
        for seed in seeds:
            tr = PriceTrace(paths, sc.months)
            run_stress(sc, paths=paths, seed=seed, network=snet, behaviour=beh,
                       observers=[tr])
            for row in rows.itertuples():
                found[row.target].append(_statistic(row, tr))
    return {t: Simulated(np.concatenate(v)) for t, v in found.items()}


def table(targets: pd.DataFrame, sim: dict[str, Simulated]) -> pd.DataFrame:
    """Observed against simulated, one row per target; `pass` when the observed range meets
    the simulated 5th-95th percentile range."""
    rows = []
    for r in targets.itertuples():
        s = sim[r.target]
        hit = r.observed_low <= s.p95 and r.observed_high >= s.p5
        rows.append({
            "target": r.target, "scenario": r.scenario, "sample": "in-sample" if r.role == "fit"
            else "out-of-sample", "quantity": r.quantity, "element": r.element,
            "zone": r.zone, "month": r.month, "observed": r.observed,
            "observed_range": f"{r.observed_low:g}-{r.observed_high:g}",
            "simulated_median": s.median, "simulated_p5": s.p5, "simulated_p95": s.p95,
            "result": "pass" if hit else "miss", "basis": r.basis, "source_id": r.source_id,
        })
    return pd.DataFrame(rows)


def report_markdown(tab: pd.DataFrame, behaviour: Behaviour, seeds: Sequence[int],
                    paths: int, dataset_version: str) -> str:
    """docs/validation.md: the backtest table and how to read it."""
    fitted = ("price_rationing_elasticity", "price_horizon_months")
    lines = [
        "# Validation: the model against recorded episodes",
        "",
        "Generated by `oreflow validate` (do not edit by hand). Dataset "
        f"`{dataset_version}`; seeds {', '.join(map(str, seeds))}, {paths} paths each.",
        "",
        "Each row is a recorded figure (`validation_targets.csv`, with its source) and the "
        "same statistic from the model: per path, then the median over paths, with the 5th "
        "and 95th percentiles over paths and seeds. Price multiples are over the episode's "
        "base (2010-11: Q1 2010 FOB quotes, the last quarter before the July 2010 quota cut; "
        "2025: the March 2025 quotes). `ROW` is the outside-China price (regions weighted by "
        "base-year use, as `oreflow stress` reports it), `CHN` the price inside China; "
        "`gap_at` is the export over the domestic price in USD. A row passes when the observed "
        "range meets the simulated 5th-95th percentile range; a miss is reported, not tuned "
        "away.",
        "",
        "**In-sample** rows are what `scripts/calibrate.py` fits "
        f"({' and '.join(f'`{p}`' for p in fitted)}, on the 2010-11 Dy and Nd outside peaks); "
        "**out-of-sample** rows were never used in a fit. Fitted values: "
        + ", ".join(f"`{p}` = {getattr(behaviour, p):g}" for p in fitted) + ".",
        "",
        "| target | sample | zone | element | quantity | month | observed | simulated median "
        "[p5-p95] | result |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in tab.itertuples():
        month = "" if pd.isna(r.month) else f"{r.month:g}"
        lines.append(
            f"| {r.target} | {r.sample} | {r.zone} | {r.element} | {r.quantity} | {month} | "
            f"{r.observed:g} ({r.observed_range}) | {r.simulated_median:.3g} "
            f"[{r.simulated_p5:.3g}-{r.simulated_p95:.3g}] | {r.result} |")
    n_out = int((tab["sample"] == "out-of-sample").sum())
    miss = int(((tab["sample"] == "out-of-sample") & (tab["result"] == "miss")).sum())
    lines += [
        "",
        f"Out-of-sample: {n_out - miss} of {n_out} pass, {miss} miss.",
        "",
        "## What each target is",
        "",
    ]
    lines += [f"- `{r.target}` ({r.scenario}): {r.basis} [{r.source_id}]"
              for r in tab.itertuples()]
    return "\n".join(lines) + "\n"


def run_validation(out: Path | None = None, seeds: Sequence[int] = DEFAULT_SEEDS,
                   paths: int = 200, network: Network | None = None) -> pd.DataFrame:
    """Simulate every target and, with `out`, write the Markdown report atomically."""
    from oreflow.io import atomic_write_text

    net = network if network is not None else Network.from_dataset()
    targets = net.dataset["validation_targets"]
    sim = simulate(targets, seeds=seeds, paths=paths, network=net)
    tab = table(targets, sim)
    if out is not None:
        beh = Behaviour.from_dataset(net.dataset)
        atomic_write_text(Path(out), report_markdown(tab, beh, seeds, paths,
                                                     net.dataset.version))
    return tab
