"""Run a scenario through the engine and assemble the result (`results.py`).

`run_stress` simulates paths in chunks (to bound memory) and hands every month to the
observers; a `block` of global path indices runs part of a larger run, and its per-path
results are those the whole run gives for the same paths. `run_blocks` runs the chunks side
by side, one a thread, when it can.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numba
import numpy as np
import xarray as xr

from oreflow.finite import check_result_finite
from oreflow.network import Network
from oreflow.scenario import Scenario, load_scenario
from oreflow.simulate.engine import Behaviour, Engine, no_gc
from oreflow.simulate.kernel import LANES
from oreflow.simulate.market import market_base
from oreflow.simulate.observers import (
    BAND_PATHS,
    BalanceCheck,
    Observer,
    PathBands,
    PathSummary,
    all_thread_safe,
)
from oreflow.simulate.results import (  # noqa: F401 (API)
    assemble,
    floor_note,
    save_result,
    summary,
    unlinked_note,
)

DEFAULT_CHUNK = 4_000


class RunError(ValueError):
    """A run that cannot start, or whose result is not finite; the message says why."""


def run_blocks(engine: Engine, lo: int, hi: int, chunk: int, observers: Sequence[Observer],
               progress: Callable[[int], None] | None = None) -> None:
    """Run the paths with global index lo..hi-1 in blocks of paths. With more than one of
    numba's threads and observers that are all `thread_safe`, blocks run side by side, one a
    thread, each with the serial kernels (`kernel.SERIAL`): the Python between one block's
    months then overlaps another block's months, where the kernel parallel over tiles would
    leave a core idle. Otherwise blocks of `chunk` paths run one after the other, the kernel
    parallel over tiles. `chunk` bounds the paths in flight whose month outputs are kept
    (`Engine.keeps_outputs`): side by side, those run in blocks of chunk / threads paths;
    when the outputs stay in the kernel's scratch a path takes about a third of the memory
    and blocks of `chunk` paths run side by side. The results are the same either way: a
    path's months do not depend on the block it runs in. `progress(k)`: k more path-months
    done."""
    chunk, threads = max(1, chunk), numba.get_num_threads()
    n = hi - lo
    keep = engine.keeps_outputs(observers, bool(engine.shocks(np.arange(lo, lo + 1)).holdings))
    per = -(-chunk // threads) if keep else chunk
    # blocks of whole tiles, as many as a multiple of the threads so that none waits at the end
    count = -(-n // max(LANES, per))
    count = -(-count // threads) * threads
    size = -(-n // count)
    size = -(-size // LANES) * LANES
    side = threads > 1 and size < n and all_thread_safe(observers)
    if not side:
        for start in range(lo, hi, chunk):
            engine.run_block(np.arange(start, min(start + chunk, hi)), observers, progress)
        return
    lock = threading.Lock()

    def tick(k: int) -> None:
        if progress is not None:
            with lock:
                progress(k)

    blocks = [np.arange(s, min(s + size, hi)) for s in range(lo, hi, size)]
    with no_gc(), ThreadPoolExecutor(threads) as pool:
        futures = [pool.submit(engine.run_block, idx, observers, tick, True) for idx in blocks]
        try:
            for f in futures:
                f.result()
        except BaseException:
            for f in futures:
                f.cancel()
            raise


def _bands(engine: Engine, block: tuple[int, int]) -> dict[str, tuple[tuple[str, ...],
                                                                      PathBands]]:
    """The monthly bands a result keeps, each as (dims, observer)."""
    b = engine.base
    E, M = len(b.elements), len(b.regions)
    reo = b.item_reo()  # [I, E]
    el, _ = _line_maps(b)
    months = engine.months
    keep = max(0, min(BAND_PATHS, block[1]))

    def band(name, dims, shape, fn):
        return name, (dims, PathBands(name, months, shape, fn, keep))

    return dict([
        band("price_usd_per_kg", ("region", "element"), (M, E),
             lambda v, s: v.price_usd_per_kg[s]),
        band("stock_t", ("region", "element"), (M, E), lambda v, s: v.stock_t[s] @ reo),
        band("supply_t", ("region", "element"), (M, E),
             lambda v, s: v.production_t[s][:, :, :E]),
        band("use_t", ("region", "element"), (M, E), lambda v, s: v.consumption_t[s] @ el),
        band("unmet_month_t", ("region", "element"), (M, E),
             lambda v, s: v.unmet_physical_element_t[s]),
        band("unmet_sector_t", ("region", "sector"), (M, len(b.sectors)),
             lambda v, s: v.unmet_physical_sector_t[s]),
    ])


def _line_maps(b):
    from oreflow.simulate.observers import line_maps

    return line_maps(b)


def run_stress(scenario: str | Path | Scenario, paths: int = 1000, seed: int = 0,
               months: int | None = None, network: Network | None = None,
               behaviour: Behaviour | None = None, chunk: int = DEFAULT_CHUNK,
               progress: Callable[[int, int], None] | None = None,
               scenario_sha256: str = "", observers: Sequence[Observer] = (),
               block: tuple[int, int] | None = None, bands: bool = True) -> xr.Dataset:
    """Simulate `paths` Monte Carlo paths of a scenario (built-in name, YAML path or object).

    Same seed, scenario and dataset give the same result, whatever the chunk size. `block`
    (start, stop) runs only those global path indices (a part of a larger run). `observers`
    see every month (`observers.MonthView`). `progress(done, total)` counts path-months.
    `bands=False` skips the monthly p5/p50/p95 bands (the per-path totals and the headline
    figures do not need them; the report and a saved result do)."""
    if paths < 1:
        raise RunError(f"paths must be at least 1, got {paths}")
    net = network if network is not None else Network.from_dataset()
    if isinstance(scenario, Scenario):
        sc = scenario
    else:
        sc, scenario_sha256 = load_scenario(scenario, net)
    net = net.at_year(sc.base_year)
    if months is not None:
        if months < 1:
            raise RunError(f"months must be at least 1, got {months}")
        sc = sc.model_copy(update={"months": months})
    beh = behaviour or Behaviour.from_dataset(net.dataset)
    if sc.is_ree:
        base = with_cover(market_base(net, sc.controller), beh, net.dataset)
    else:  # another commodity: its chains in the engine's slots (simulate/chain_market.py)
        from oreflow.simulate.chain_market import chain_market_base, chain_markets

        net = chain_markets(net.dataset, sc.commodities)
        base = chain_market_base(net, sc.controller)
    engine = Engine(base, beh, sc, net, seed)
    lo, hi = block if block is not None else (0, paths)
    if not 0 <= lo < hi:
        raise RunError(f"block {block!r}: need 0 <= start < stop")
    n = hi - lo
    summ = PathSummary(base, n, sc.months, beh.stoppage_threshold, offset=lo)
    band_obs = _bands(engine, (lo, hi)) if bands else {}
    balance = BalanceCheck(base, engine.conc_base)
    watchers = [summ, balance, *(s for _, s in band_obs.values()), *observers]
    total, done = n * sc.months, 0

    def tick(k: int) -> None:
        nonlocal done
        done += k
        if progress is not None:
            progress(done, total)

    notes = []
    if not sc.is_ree:
        ds_ = net.dataset
        bases = "; ".join(f"{c}: {ds_.chain(c).basis}" for c in base.elements)
        notes.append("elements are commodities, in t of each chain's basis (" + bases + "); the "
                     "'oxide' price is the price of each chain's first traded item (engine slot "
                     "'separation', chain_stages.csv), per kg of basis")
    for c in engine.shocks(np.arange(lo, lo + 1)).controls:
        if c.widened:
            notes.append("a control on magnets covers the grades that contain a "
                         f"controlled element: {', '.join(c.widened)}")
    run_blocks(engine, lo, hi, chunk, watchers, tick)
    notes.extend(unpriced_notes(base))
    if beh.arbitrage_rate <= 0 and len(base.regions) > 2:
        notes.append("prices of the importing regions are linked only by re-sourcing unmet "
                     "requests from spare stock, not by arbitrage (arbitrage_rate 0, an "
                     "assumption): one region's price multiple can sit far above another's "
                     "(docs/model.md, section 4)")
    ds = assemble(summ, band_obs, base, sc, seed, scenario_sha256, net.dataset.version,
                  balance.max_rel, notes, beh.leakage, beh.price_cap)
    ds.attrs.update(arbitrage_rate=float(beh.arbitrage_rate),
                    arbitrage_margin=float(beh.arbitrage_margin))
    late = [n for n in (floor_note(ds), unlinked_note(ds)) if n]
    if late:
        ds.attrs["notes"] = json.dumps(notes + late)
    return check_result_finite(ds, f"scenario {sc.name!r}")


def unpriced_notes(base) -> list[str]:
    """A note per element priced somewhere but not in every region outside the controller:
    those regions use none of it in the base year, so they have no price and no shortage."""
    notes = []
    for e, name in enumerate(base.elements):
        p = base.price0[:, e]
        none = [r for m, r in enumerate(base.regions)
                if p[m] <= 0 and r != base.controller]
        if none and (p > 0).any():
            notes.append(f"{name}: {', '.join(none)} use none of it in the base year, in "
                         "any form (the data count their use, if any, in OTH, the rest of the "
                         "world): no price is reported for them, and their shortage is zero by "
                         "construction, not a finding")
    return notes


COVER_STOCKS = {"target_cover_months": "stock0", "buyer_cover_months": "buyer_stock0"}
"""Behavioural parameters that `market_base` reads from the dataset's table to size the base
year's stocks (merchant stocks = cover x throughput; buyers' = cover x demand)."""


def with_cover(base, behaviour: Behaviour, dataset):
    """The base year with its stocks sized by `behaviour`'s cover parameters, where they
    differ from the dataset's (exact: both stocks are linear in their cover). Without it a
    behaviour given to a run would change the buyers' cover spread but not their stock."""
    import dataclasses

    default = Behaviour.from_dataset(dataset)
    update = {}
    for fld, attr in COVER_STOCKS.items():
        old, new = getattr(default, fld), getattr(behaviour, fld)
        if new != old:
            update[attr] = getattr(base, attr) * (new / old)
    return dataclasses.replace(base, **update) if update else base
