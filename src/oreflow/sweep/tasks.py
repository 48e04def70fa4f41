"""One task of a sweep: (design point, scenario, block of paths) -> per-path summaries.

A task runs the engine for the global path indices of its block with the point's parameters
and the sweep's seed (the same seed at every point: common random numbers, so differences
between points are the parameters' doing, not the draws'). It returns per-path arrays, which
merge across blocks by concatenation in path order; headline statistics (medians over paths)
are taken after merging (`store.finish`), never averaged across blocks. A block's numbers do
not depend on where or in which order it runs, nor on the number of numba threads (the kernel
is parallel over paths with no reduction across them).

The task is a plain top-level function of plain data, so Dask can ship it to any worker that
has oreflow installed; each worker process caches the dataset, the network, the base year
per controller and the parsed scenarios.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

DEFAULT_CHUNK = 2_000
"""Paths the engine simulates at once inside a task (bounds memory)."""


@dataclass(frozen=True)
class Task:
    """Everything a worker needs for one block: plain data, no file paths."""

    scenario: int  # index in the sweep's scenarios
    point: int  # design point
    block: int  # index of the block of paths
    start: int  # first global path index
    stop: int  # one past the last
    scenario_text: str
    scenario_label: str
    months: int
    seed: int
    params: tuple  # Parameter objects (design.Parameter), fixed first
    values: tuple  # one float per parameter
    threads: int | None = None  # numba threads in this task (None: leave as is)


OUTPUTS = {
    # name: (dims after the path axis, units)
    "price_peak_ratio_outside": (("element",), "peak of the outside price (regions outside "
                                 "the controller weighted by base use) / base price"),
    "unmet_physical_t": (("region", "sector"), "t element over the horizon: wanted but not "
                         "delivered (physical shortage)"),
    "first_stoppage_week": (("region", "sector"), "weeks after the first shock until the "
                            "sector first loses the stoppage threshold of its demand "
                            "physically (inf: not within the horizon)"),
}


@functools.lru_cache(maxsize=1)
def _network():
    from oreflow.network import Network

    return Network.from_dataset()


@functools.lru_cache(maxsize=16)
def _scenario(text: str, label: str, months: int):
    from oreflow.scenario import parse_scenario

    sc = parse_scenario(text, label, _network())
    return sc.model_copy(update={"months": months})


@functools.lru_cache(maxsize=8)
def _base(controller: str):
    from oreflow.simulate.market import market_base

    return market_base(_network(), controller)


def base_for(controller: str, behaviour, dataset):
    """The base year for a behaviour (stocks sized by its cover parameters: run.with_cover)."""
    from oreflow.simulate.run import with_cover

    return with_cover(_base(controller), behaviour, dataset)


def dataset_version() -> str:
    return _network().dataset.version


def run_task(task: Task) -> dict:
    """Simulate one block and return its per-path arrays (float32), the block's largest
    balance residual and the dataset version the worker used."""
    from oreflow.simulate.engine import Engine
    from oreflow.simulate.observers import BalanceCheck, PathSummary
    from oreflow.simulate.run import run_blocks
    from oreflow.sweep.design import apply_parameters

    if task.threads is not None:
        import numba

        numba.set_num_threads(max(1, min(task.threads, numba.config.NUMBA_NUM_THREADS)))
    net = _network()
    sc0 = _scenario(task.scenario_text, task.scenario_label, task.months)
    beh, sc = apply_parameters(list(task.params), np.asarray(task.values), sc0, net.dataset)
    base = base_for(sc.controller, beh, net.dataset)
    engine = Engine(base, beh, sc, net, task.seed)
    n = task.stop - task.start
    summ = PathSummary(base, n, sc.months, beh.stoppage_threshold, offset=task.start)
    balance = BalanceCheck(base, engine.conc_base)
    run_blocks(engine, task.start, task.stop, DEFAULT_CHUNK, [summ, balance])
    out = {
        "price_peak_ratio_outside": summ.peak_outside.astype(np.float32),
        "unmet_physical_t": summ.unmet.astype(np.float32),
        "first_stoppage_week": summ.first_stoppage_week().astype(np.float32),
    }
    for k in ("price_peak_ratio_outside", "unmet_physical_t"):
        if not np.isfinite(out[k]).all():
            raise FloatingPointError(f"scenario {sc.name}, point {task.point}, paths "
                                     f"{task.start}-{task.stop - 1}: non-finite {k}")
    return {"task": task, "arrays": out, "max_rel_balance_residual": float(balance.max_rel),
            "dataset_version": net.dataset.version}


def coords(controller: str) -> dict[str, list[str]]:
    """Labels of the output axes for a controller's base year."""
    b = _base(controller)
    return {"element": list(b.elements), "region": list(b.regions), "sector": list(b.sectors)}
