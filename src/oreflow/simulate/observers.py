"""What the engine hands out each month, and the observers that keep what a run reports.

`MonthView` is the typed interface: one month's flows and end-of-month stocks for a block of
paths, every array with a leading paths axis and the axes named in its comment. Observers
(`start_block`, `on_month`, `end_block`) keep what they need indexed by each path's global
index, so results do not depend on how a run was split into blocks. Nothing outside the
engine reads engine internals: the report, the web app and the stockpile planner are
observers or read the finished result.
"""

from __future__ import annotations

import threading
from typing import Protocol

import numpy as np

from oreflow.simulate.kernel import LANES, paths_first, tiles
from oreflow.simulate.market import MarketBase
from oreflow.simulate.totals import Totals

WEEKS_PER_MONTH = 52.0 / 12.0


NOT_KEPT = ("the engine keeps a block's month outputs only when some observer reads them in "
            "that block (`reads_outputs`; BalanceCheck and PathSummary run inside the kernel)")


class MonthView:
    """One month of a block of paths. M market regions, E elements, I items, L demand lines,
    S sectors. Flows are t a month (t REO-eq; magnet items t of finished magnet), stocks
    end-of-month. Every array below has a leading paths axis [P, ...] (a copy made when first
    read); `tiled(name)` gives the engine's own array in the kernel's layout ([tile, ...,
    lane], `kernel.tiles`) without a copy. The month's outputs (prices, flows, shortfalls)
    are there only when some observer reads them in this block (`NOT_KEPT`).
    """

    t: int
    paths: np.ndarray  # [P] global path indices
    base: MarketBase
    first_shock_month: np.ndarray  # [P] start of the earliest shock (nan: none)
    price_usd_per_kg: np.ndarray  # [P, M, E] oxide price this month (0: untraded)
    production_t: np.ndarray  # [P, M, I] output (oxide: separation + swarf recovered)
    imports_t: np.ndarray  # [P, M, I]
    exports_t: np.ndarray  # [P, M, I]
    inputs_used_t: np.ndarray  # [P, M, I] oxide into metal, metal into magnets
    inflow_t: np.ndarray  # [P, M, I] new supply, recycling, stockpile releases
    deliveries_t: np.ndarray  # [P, M, L] to end users
    consumption_t: np.ndarray  # [P, M, L] used by end users (deliveries + own stock drawn)
    need_t: np.ndarray  # [P, M, L] demand before the price response
    want_t: np.ndarray  # [P, M, L] demand after the price response
    concentrate_in_t: np.ndarray  # [P, M, E] concentrate arriving at separators
    concentrate_used_t: np.ndarray  # [P, M, E]
    mined_lost_t: np.ndarray  # [P, E] mine output lost to outages
    stock_t: np.ndarray  # [P, M, I] merchant stocks
    concentrate_stock_t: np.ndarray  # [P, M, E]
    buyer_stock_t: np.ndarray  # [P, M, L] end users' own stocks
    licence_filed_t: np.ndarray  # [P, M, I] requests to a controlling origin filed (queued)
    licence_approved_t: np.ndarray  # [P, M, I] decided and approved this month (shipped
    #                                 as far as the origin has the material)
    unmet_physical_element_t: np.ndarray  # [P, M, E] t element physically short
    demand_reduction_element_t: np.ndarray  # [P, M, E] t element given up because of price
    unmet_physical_sector_t: np.ndarray  # [P, M, S] t element physically short
    demand_reduction_sector_t: np.ndarray  # [P, M, S]
    need_sector_t: np.ndarray  # [P, M, S] t element needed (before the price response)
    unsold_t: np.ndarray  # [P, M, I] output put to unsold stock (as in the base year)
    secondary_t: np.ndarray  # [P, M, E] recycled oxide above the base-year level (in inflow_t)
    new_supply_t: np.ndarray  # [P, E] new primary supply outside (in inflow_t, by outside use)
    releases_t: np.ndarray  # [P, M, I] stockpile releases (in inflow_t)

    FIELDS = frozenset(__annotations__) - {"t", "paths", "base", "first_shock_month"}
    """The arrays a month hands out (each [P, ...] as annotated above)."""

    def __init__(self, t: int, paths: np.ndarray, base: MarketBase,
                 first_shock_month: np.ndarray, tiled: dict[str, np.ndarray],
                 **arrays: np.ndarray):
        """`tiled`: fields in the kernel's layout; `arrays`: fields already paths first."""
        self.t, self.paths, self.base = t, paths, base
        self.first_shock_month = first_shock_month  # [P] start of the earliest shock (nan)
        unknown = (set(tiled) | set(arrays)) - set(self.FIELDS)
        if unknown:
            raise TypeError(f"MonthView has no field(s) {sorted(unknown)}")
        self._tiled = tiled
        self._first = dict(arrays)

    def tiled(self, name: str) -> np.ndarray:
        """The engine's array `name` in the kernel's layout (read only)."""
        if name not in self._tiled:
            raise AttributeError(f"MonthView.{name} was not kept: {NOT_KEPT}")
        return self._tiled[name]

    def __getattr__(self, name: str) -> np.ndarray:
        if name.startswith("_") or name not in self.FIELDS:
            raise AttributeError(name)
        got = self._first.get(name)
        if got is None:
            got = self._first[name] = paths_first(self.tiled(name), len(self.paths))
        return got

    @property
    def physical_unmet_t(self) -> np.ndarray:
        """[P, M, L] wanted but not consumed: the physical shortage."""
        return np.maximum(self.want_t - self.consumption_t, 0.0)

    @property
    def demand_reduction_t(self) -> np.ndarray:
        """[P, M, L] given up because of price (need - want)."""
        return np.maximum(self.need_t - self.want_t, 0.0)


class Observer(Protocol):
    """Sees every month of every block of paths. One that sets `thread_safe = True` may see
    blocks run side by side on threads (`run.run_blocks`): it keeps a block's state per
    thread and writes only its paths' rows. One that reads a month's outputs only for some
    paths says which blocks it reads with `reads_outputs(paths) -> bool` (`reads_outputs`);
    without it, the engine keeps the outputs of every block for it."""

    def start_block(self, engine, paths: np.ndarray) -> None: ...

    def on_month(self, view: MonthView) -> None: ...

    def end_block(self, engine, paths: np.ndarray) -> None: ...


def all_thread_safe(observers) -> bool:
    """Whether every observer may see blocks run side by side (`Observer`)."""
    return all(getattr(o, "thread_safe", False) for o in observers)


def reads_outputs(observer, paths: np.ndarray | None = None) -> bool:
    """Whether `observer` reads the month's outputs of the block of paths `paths` (None: of
    some block). BalanceCheck and PathSummary run inside the kernel and read none."""
    if isinstance(observer, (BalanceCheck, PathSummary)):
        return False
    says = getattr(observer, "reads_outputs", None)
    return True if says is None or paths is None else bool(says(paths))


class _Base:
    def start_block(self, engine, paths: np.ndarray) -> None:
        pass

    def end_block(self, engine, paths: np.ndarray) -> None:
        pass


def line_maps(base: MarketBase) -> tuple[np.ndarray, np.ndarray]:
    """[L, E] t of each element per unit of each line's item, and [L, S] sector membership."""
    per_item = base.item_element_t()
    el = per_item[base.line_item]
    sec = np.zeros((len(base.line_item), len(base.sectors)))
    sec[np.arange(len(base.line_item)), base.line_sector] = 1.0
    return el, sec


class PathSummary(_Base):
    """Per-path totals over the horizon: peak and lowest price ratios by region and outside
    zone (a price that falls, as China's inside price when exports are refused, shows only in
    the lowest), physical shortage and demand reduction (t element) by region and sector and
    by region and element, and the week each sector first stops in each region."""

    def __init__(self, base: MarketBase, paths: int, months: int, threshold: float,
                 offset: int = 0):
        M, E, S = len(base.regions), len(base.elements), len(base.sectors)
        self.base, self.offset, self.months, self.threshold = base, offset, months, threshold
        self.el, self.sec = line_maps(base)
        self.el_total = self.el.sum(1)  # t element per unit of each line's item
        c = base.controller_index
        use = base.use0[:, :E] * (np.arange(M) != c)[:, None]
        self.outside_w = use / np.maximum(use.sum(0, keepdims=True), 1e-300)
        self.inv_p0 = np.divide(1.0, base.price0, out=np.zeros_like(base.price0),
                                where=base.price0 > 0)
        # per path over the whole run, [P, ...]; a block of paths keeps its totals in the
        # kernel's layout (`totals.Totals`) while it runs and copies them here at its end
        for name, dims, init in self._TOTALS:
            shape = {"ME": (M, E), "MS": (M, S), "E": (E,)}[dims]
            setattr(self, name, np.full((paths, *shape), init))
        self.first_shock = np.full(paths, np.nan)
        self._block = threading.local()  # the running block's totals, per thread

    thread_safe = True

    _TOTALS = (("peak", "ME", np.nan), ("low", "ME", np.nan), ("peak_outside", "E", np.nan),
               ("low_outside", "E", np.nan), ("unmet", "MS", 0.0), ("reduction", "MS", 0.0),
               ("need", "MS", 0.0), ("first", "MS", np.inf), ("unmet_el", "ME", 0.0),
               ("reduction_el", "ME", 0.0), ("secondary", "E", 0.0),
               ("new_supply", "E", 0.0))

    def start_block(self, engine, paths: np.ndarray) -> None:
        n = len(paths)
        running = {name: tiles(n, *getattr(self, name).shape[1:], fill=np.full(
            getattr(self, name).shape[1:], init)) for name, _, init in self._TOTALS}
        self._block.totals = Totals(
            threshold=float(self.threshold), inv_p0=self.inv_p0, outside_w=self.outside_w,
            metal_per_oxide=np.ascontiguousarray(self.base.metal_per_oxide, dtype=float),
            month=np.full((n + LANES - 1) // LANES, -1.0),
            prev=tiles(n, *self.unmet.shape[1:]), **running)  # prev: last month's share short

    def kernel_totals(self) -> Totals:
        """The block's running totals, for `kernel.step` to keep."""
        return self._block.totals

    def on_month(self, v: MonthView) -> None:
        if (self._block.totals.month != v.t).any():
            raise RuntimeError("the engine did not keep the totals this month")
        self.first_shock[v.paths - self.offset] = v.first_shock_month

    def end_block(self, engine, paths: np.ndarray) -> None:
        rows, totals = paths - self.offset, self._block.totals
        for name, _, _ in self._TOTALS:
            getattr(self, name)[rows] = paths_first(getattr(totals, name), len(paths))
        del self._block.totals

    def first_stoppage_week(self) -> np.ndarray:
        """[P, M, S] weeks from the first shock to the first stoppage (inf: none)."""
        start = np.nan_to_num(self.first_shock, nan=0.0)[:, None, None]
        return np.maximum(self.first - start, 0.0) * WEEKS_PER_MONTH


BAND_PATHS = 1_000
"""Monthly bands are exact quantiles over the paths with global index below BAND_PATHS: the
same paths whatever the chunking or the blocks a run is split into (totals per path use every
path). Memory: paths x months x cells x 4 bytes per banded variable."""


class PathBands(_Base):
    """Monthly p5/p50/p95 over paths of one variable, from the values of the paths with
    global index < `keep` (exact quantiles; identical however the run was split)."""

    def __init__(self, name: str, months: int, shape: tuple[int, ...], extract,
                 keep: int = BAND_PATHS):
        self.name, self.extract, self.keep = name, extract, keep
        self.values = np.full((keep, months, *shape), np.nan, np.float32)

    thread_safe = True  # writes only the rows of its block's paths

    def reads_outputs(self, paths: np.ndarray) -> bool:
        """Only a block with banded paths: the others' months go unread."""
        return bool((paths < self.keep).any())

    def on_month(self, v: MonthView) -> None:
        sel = v.paths < self.keep
        if sel.any():
            self.values[v.paths[sel], v.t] = self.extract(v, sel)

    def quantiles(self, qs=(0.05, 0.5, 0.95)) -> np.ndarray:
        """[Q, months, *shape] over the kept paths that ran."""
        ran = ~np.isnan(self.values[:, 0].reshape(self.keep, -1)[:, 0])
        vals = self.values[ran].astype(float)
        if len(vals) == 0:
            return np.full((len(qs), *self.values.shape[1:]), np.nan)
        return np.quantile(vals, qs, axis=0)


class BalanceCheck(_Base):
    """Stocks rebuilt from cumulative flows, independently of the step, against the stocks
    the step carries (`balance`): merchant, concentrate and end users'. Keeps the largest
    relative gap over every month, path, region and item. The engine runs it inside the
    kernel's loop over tiles (`kernel_arrays`); this observer holds its state."""

    def __init__(self, base: MarketBase, conc0: np.ndarray):
        self.base, self.conc0 = base, conc0
        self.max_rel = 0.0
        self.scale = max(float(base.stock0.sum()), 1.0)
        self._block = threading.local()  # the running block's stocks, per thread
        self._lock = threading.Lock()

    thread_safe = True

    def start_block(self, engine, paths: np.ndarray) -> None:
        n = len(paths)
        b, blk = self.base, self._block
        blk.S = tiles(n, *b.stock0.shape, fill=b.stock0)
        blk.C = tiles(n, *self.conc0.shape, fill=self.conc0)
        blk.B = tiles(n, *b.buyer_stock0.shape, fill=b.buyer_stock0)
        blk.worst = np.full(len(blk.S), -1.0)  # [tile] this month's largest gap

    def kernel_arrays(self) -> tuple[np.ndarray, ...]:
        """Its running stocks and the month's largest gap by tile, for `kernel.step`."""
        blk = self._block
        return blk.S, blk.C, blk.B, blk.worst

    def on_month(self, v: MonthView) -> None:
        worst = self._block.worst
        if (worst < 0).any():
            raise RuntimeError("the engine did not run the balance check this month")
        with self._lock:
            self.max_rel = max(self.max_rel, float(worst.max(initial=0.0)) / self.scale)
        worst[:] = -1.0
