"""Run a sweep: every (scenario, design point, block of paths) not yet in the store, serially
in this process or as tasks on Dask (`distributed`), then headlines and Sobol indices.

Results come back to this process, which alone writes the store, as tasks finish (in any
order: each block has its own chunk). Restarting an interrupted sweep with the same file and
store computes only the blocks its completion mask lacks.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from oreflow.sweep.design import Sweep
from oreflow.sweep.errors import SweepError
from oreflow.sweep.store import SweepStore, create_or_open
from oreflow.sweep.tasks import Task, coords, dataset_version, run_task


@dataclass
class SweepRun:
    """What a run did: blocks computed now, blocks found done, where, and how long."""

    store: SweepStore
    computed: int
    skipped: int
    total: int
    where: str
    seconds: float
    path_months: int
    dashboard: str | None = None

    @property
    def path_months_per_s(self) -> float:
        return self.path_months / self.seconds if self.seconds > 0 else float("nan")


def tasks(sweep: Sweep, done, threads: int | None) -> list[Task]:
    """The tasks still to run, in (scenario, point, block) order."""
    out = []
    for s, (text, label) in enumerate(zip(sweep.scenario_texts, sweep.scenario_names,
                                          strict=True)):
        for p in range(sweep.points):
            params, values = sweep.point_values(p)
            for b, (lo, hi) in enumerate(sweep.blocks):
                if done[s, p, b]:
                    continue
                out.append(Task(s, p, b, lo, hi, text, label, sweep.months, sweep.spec.seed,
                                tuple(params), tuple(float(v) for v in values), threads))
    return out


def _axes(sweep: Sweep) -> dict[str, list[str]]:
    axes = [coords(sc.controller) for sc in sweep.scenarios]
    if any(a != axes[0] for a in axes[1:]):
        raise SweepError(f"{sweep.label}: the scenarios' base years have different elements, "
                         "regions or sectors; sweep them separately")
    return axes[0]


def perspective_markets(sweep: Sweep, network) -> list[str] | None:
    if not sweep.spec.perspective:
        return None
    from oreflow.simulate.market import MarketError, market_base
    from oreflow.simulate.market import perspective_markets as pm

    try:
        markets, _ = pm(market_base(network, sweep.scenarios[0].controller), network.dataset,
                        sweep.spec.perspective)
    except MarketError as e:
        raise SweepError(f"{sweep.label}: perspective: {e}") from None
    return markets


def run_sweep(sweep: Sweep, out: Path | str, *, scheduler: str | None = None,
              workers: int | None = None, serial: bool = False,
              progress: Callable[[int, int], None] | None = None,
              on_block: Callable[[Task], None] | None = None,
              on_dashboard: Callable[[str], None] | None = None,
              network=None) -> SweepRun:
    """Run what the store at `out` lacks and finish it. `serial`: in this process;
    `scheduler` ('tcp://host:8786'): an existing Dask cluster; else a LocalCluster of
    `workers` processes (default: the machine's cores). `progress(done, total)` counts
    tasks; `on_block(task)` is called after each block is stored."""
    from oreflow.sweep.tasks import _network

    net = network if network is not None else _network()
    markets = perspective_markets(sweep, net)
    store = create_or_open(out, sweep, _axes(sweep), dataset_version())
    done = store.done()
    total = int(done.size)
    started = time.perf_counter()
    dashboard = None
    if serial or done.all():  # nothing to compute: no cluster to start
        todo = tasks(sweep, done, None)
        where = "in-process" if serial else "nothing to compute"
        for i, t in enumerate(todo):
            _store(store, run_task(t), on_block)
            if progress:
                progress(i + 1, len(todo))
    else:
        with _client(scheduler, workers) as (client, where):
            dashboard = client.dashboard_link
            if on_dashboard and dashboard:
                on_dashboard(dashboard)
            nthreads = sum(client.nthreads().values())
            todo = tasks(sweep, done, 1 if nthreads > 1 else None)
            _run_on_dask(client, store, todo, progress, on_block)
    elapsed = time.perf_counter() - started
    store.finish(markets)
    return SweepRun(store, len(todo), total - len(todo), total, where, elapsed,
                    sum(t.stop - t.start for t in todo) * sweep.months, dashboard)


def _store(store: SweepStore, result: dict, on_block) -> None:
    if result["dataset_version"] != store.attrs["dataset_version"]:
        raise SweepError(f"a worker used dataset {result['dataset_version']}, the store "
                         f"{store.attrs['dataset_version']}: install the same oreflow on "
                         "every worker")
    store.write_block(result)
    if on_block:
        on_block(result["task"])


@contextlib.contextmanager
def _client(scheduler: str | None, workers: int | None) -> Iterator:
    """A Dask client on `scheduler`, or on a LocalCluster of worker processes that this
    context starts and stops."""
    from distributed import Client, LocalCluster

    if scheduler:
        try:
            client = Client(scheduler, timeout="20s")
        except (OSError, TimeoutError) as e:
            raise SweepError(f"--scheduler {scheduler}: cannot connect ({e})") from None
        try:
            if not client.nthreads():
                client.wait_for_workers(1, timeout=60)
            yield client, f"scheduler {scheduler} ({len(client.nthreads())} workers)"
        finally:
            client.close()
        return
    n = workers or os.cpu_count() or 1
    with LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                      dashboard_address=":0", silence_logs=40) as cluster, \
            Client(cluster) as client:
        yield client, f"LocalCluster ({n} workers)"


def _run_on_dask(client, store: SweepStore, todo: list[Task], progress, on_block) -> None:
    from distributed import as_completed

    if not todo:
        return
    futures = client.map(run_task, todo, pure=False)
    try:
        for i, fut in enumerate(as_completed(futures), 1):
            try:
                result = fut.result()
            except SweepError:
                raise
            except Exception as e:
                raise SweepError(f"a task failed on a worker: {type(e).__name__}: {e}") from e
            _store(store, result, on_block)
            if progress:
                progress(i, len(todo))
    finally:
        client.cancel(futures)
