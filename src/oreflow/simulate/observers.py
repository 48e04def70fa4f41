"""What the engine hands out each month, and the observers that keep what a run reports.

`MonthView` is the typed interface: one month's flows and end-of-month stocks for a block of
paths, every array with a leading paths axis and the axes named in its comment. Observers
(`start_block`, `on_month`, `end_block`) keep what they need indexed by each path's global
index, so results do not depend on how a run was split into blocks. Nothing outside the
engine reads engine internals: the report, the web app and the stockpile planner are
observers or read the finished result.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numba import njit, prange

from oreflow.simulate.kernel import JIT
from oreflow.simulate.market import MarketBase

WEEKS_PER_MONTH = 52.0 / 12.0


@dataclass(frozen=True)
class MonthView:
    """One month of a block of paths. M market regions, E elements, I items, L demand lines.
    Flows are t a month (t REO-eq; magnet items t of finished magnet), stocks end-of-month."""

    t: int
    paths: np.ndarray  # [P] global path indices
    base: MarketBase
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
    first_shock_month: np.ndarray  # [P] start of the earliest shock (nan: none)
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

    @property
    def physical_unmet_t(self) -> np.ndarray:
        """[P, M, L] wanted but not consumed: the physical shortage."""
        return np.maximum(self.want_t - self.consumption_t, 0.0)

    @property
    def demand_reduction_t(self) -> np.ndarray:
        """[P, M, L] given up because of price (need - want)."""
        return np.maximum(self.need_t - self.want_t, 0.0)


class Observer(Protocol):
    def start_block(self, engine, paths: np.ndarray) -> None: ...

    def on_month(self, view: MonthView) -> None: ...

    def end_block(self, engine, paths: np.ndarray) -> None: ...


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
        self.peak = np.full((paths, M, E), np.nan)
        self.peak_outside = np.full((paths, E), np.nan)
        self.low = np.full((paths, M, E), np.nan)
        self.low_outside = np.full((paths, E), np.nan)
        self.unmet = np.zeros((paths, M, S))
        self.reduction = np.zeros((paths, M, S))
        self.unmet_el = np.zeros((paths, M, E))
        self.reduction_el = np.zeros((paths, M, E))
        self.need = np.zeros((paths, M, S))
        self.first = np.full((paths, M, S), np.inf)
        self._prev = np.zeros((paths, M, S))
        self.first_shock = np.full(paths, np.nan)
        self.secondary = np.zeros((paths, E))
        self.new_supply = np.zeros((paths, E))

    def on_month(self, v: MonthView) -> None:
        i = v.paths - self.offset
        _summary_month(i, float(v.t), self.threshold, v.price_usd_per_kg, self.inv_p0,
                       self.outside_w, self.base.metal_per_oxide, v.secondary_t,
                       v.new_supply_t, v.unmet_physical_element_t,
                       v.demand_reduction_element_t, v.unmet_physical_sector_t,
                       v.demand_reduction_sector_t, v.need_sector_t, self.peak,
                       self.peak_outside, self.low, self.low_outside, self.secondary,
                       self.new_supply, self.unmet_el, self.reduction_el, self.unmet,
                       self.reduction, self.need, self.first, self._prev)
        self.first_shock[i] = v.first_shock_month

    def first_stoppage_week(self) -> np.ndarray:
        """[P, M, S] weeks from the first shock to the first stoppage (inf: none)."""
        start = np.nan_to_num(self.first_shock, nan=0.0)[:, None, None]
        return np.maximum(self.first - start, 0.0) * WEEKS_PER_MONTH


@njit(parallel=True, **JIT)
def _summary_month(rows, t, threshold, price, inv_p0, outside_w, mpo, secondary, new_supply,
                   unmet_el_m, red_el_m, phys_s, red_s, need_s, peak, peak_outside, low,
                   low_outside, secondary_sum, new_supply_sum, unmet_el, reduction_el, unmet,
                   reduction, need, first, prev):
    """One month of PathSummary for a chunk (rows: this chunk's rows in the totals). A
    sector's first stoppage is interpolated within the month from last month's share."""
    P, M, E = price.shape
    S = phys_s.shape[2]
    for p in prange(P):
        r = rows[p]
        for e in range(E):
            out = 0.0
            for m in range(M):
                ratio = price[p, m, e] * inv_p0[m, e]
                if inv_p0[m, e] > 0.0 and not ratio <= peak[r, m, e]:
                    peak[r, m, e] = ratio  # also replaces the initial NaN
                if inv_p0[m, e] > 0.0 and not ratio >= low[r, m, e]:
                    low[r, m, e] = ratio
                out += ratio * outside_w[m, e]
                unmet_el[r, m, e] += unmet_el_m[p, m, e]
                reduction_el[r, m, e] += red_el_m[p, m, e]
                secondary_sum[r, e] += secondary[p, m, e] * mpo[e]
            if not out <= peak_outside[r, e]:
                peak_outside[r, e] = out
            if not out >= low_outside[r, e]:
                low_outside[r, e] = out
            new_supply_sum[r, e] += new_supply[p, e] * mpo[e]
        for m in range(M):
            for s_ in range(S):
                ph, nd = phys_s[p, m, s_], need_s[p, m, s_]
                unmet[r, m, s_] += ph
                reduction[r, m, s_] += red_s[p, m, s_]
                need[r, m, s_] += nd
                share = ph / nd if nd > 0.0 else 0.0
                before = prev[r, m, s_]
                if share >= threshold and first[r, m, s_] == np.inf:
                    f = (threshold - before) / (share - before) if share > before else 1.0
                    first[r, m, s_] = t + min(max(f, 0.0), 1.0)
                prev[r, m, s_] = share


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
    the step carries: merchant (production + inflow + imports - exports - inputs used -
    deliveries), concentrate (arrivals - used) and end users' (deliveries - consumption).
    Keeps the largest relative gap over every month, path, region and item."""

    def __init__(self, base: MarketBase, conc0: np.ndarray):
        self.base, self.conc0 = base, conc0
        self.max_rel = 0.0
        onehot = np.zeros((len(base.line_item), base.n_items))
        onehot[np.arange(len(base.line_item)), base.line_item] = 1.0
        self.line_to_item = onehot
        self.scale = max(float(base.stock0.sum()), 1.0)

    def start_block(self, engine, paths: np.ndarray) -> None:
        n = len(paths)
        b = self.base
        self.S = np.repeat(b.stock0[None], n, 0).astype(float)
        self.C = np.repeat(self.conc0[None], n, 0).astype(float)
        self.B = np.repeat(b.buyer_stock0[None], n, 0).astype(float)

    def on_month(self, v: MonthView) -> None:
        worst = _balance_month(
            self.S, self.C, self.B, v.production_t, v.inflow_t, v.imports_t, v.exports_t,
            v.inputs_used_t, v.unsold_t, v.deliveries_t, v.consumption_t,
            v.concentrate_in_t, v.concentrate_used_t, self.base.line_item, v.stock_t,
            v.concentrate_stock_t, v.buyer_stock_t) / self.scale
        self.max_rel = max(self.max_rel, float(worst))


@njit(parallel=True, **JIT)
def _balance_month(S, C, B, prod, inflow, imp, exp_, used, unsold, deliv, cons, conc_in,
                   conc_used, line_item, stock, conc_stock, buyer_stock):
    """One month of the independent balance (fused over paths): stocks rebuilt from the
    flows, and the largest gap to the stocks the step carries (inf if not finite)."""
    P = S.shape[0]
    worst = np.zeros(P)
    for p in prange(P):
        worst[p] = _balance_path(S[p], C[p], B[p], prod[p], inflow[p], imp[p], exp_[p],
                                 used[p], unsold[p], deliv[p], cons[p], conc_in[p],
                                 conc_used[p], line_item, stock[p], conc_stock[p],
                                 buyer_stock[p])
    return worst.max()


@njit(**JIT)
def _balance_path(S, C, B, prod, inflow, imp, exp_, used, unsold, deliv, cons, conc_in,
                  conc_used, line_item, stock, conc_stock, buyer_stock):
    M, I = S.shape
    L, E = deliv.shape[1], C.shape[1]
    w = 0.0
    for m in range(M):
        for i in range(I):
            S[m, i] += (prod[m, i] + inflow[m, i] + imp[m, i] - exp_[m, i] - used[m, i]
                        - unsold[m, i])
        for l in range(L):
            S[m, line_item[l]] -= deliv[m, l]
            B[m, l] += deliv[m, l] - cons[m, l]
        for e in range(E):
            C[m, e] += conc_in[m, e] - conc_used[m, e]
        for i in range(I):
            w = _gap(w, S[m, i] - stock[m, i])
        for l in range(L):
            w = _gap(w, B[m, l] - buyer_stock[m, l])
        for e in range(E):
            w = _gap(w, C[m, e] - conc_stock[m, e])
    return w


@njit(inline="always", **JIT)
def _gap(w, d):
    d = abs(d)
    if d != d:
        return np.inf
    return d if d > w else w
