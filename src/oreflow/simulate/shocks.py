"""A scenario's shocks as per-path arrays, and what they do to each month's inputs.

Sampling is path-indexed (`rng.uniform(seed, stream, path)`): streams are numbered shock by
shock, field by field, so a path's draws depend only on the seed, its index and the
scenario's structure. A shock is active in month t when start <= t + 1/2 < start + duration.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from oreflow.scenario import (
    QUOTA_MAX_SHARE,
    DemandShift,
    ExportControl,
    NewCapacity,
    Outage,
    Recycling,
    Scenario,
    Stockpile,
    sample,
)
from oreflow.simulate.market import FORMS, MAG, MET, OX, MarketBase
from oreflow.simulate.rng import uniform

STAGE_FORM = {"separation": OX, "metal": MET, "magnet": MAG}


class ShockError(ValueError):
    """A shock the engine cannot apply to this base year; the message names it."""


@dataclass
class Draws:
    """Per-path draws for one chunk of global path indices, stream by stream."""

    seed: int
    paths: np.ndarray  # global indices
    stream: int = 0

    def __call__(self, q, default: float = np.nan) -> np.ndarray:
        return sample(q, self.uniform(), default)

    def uniform(self) -> np.ndarray:
        u = uniform(self.seed, self.stream, self.paths)
        self.stream += 1
        return u


@dataclass
class Control:
    start: np.ndarray  # [P]
    end: np.ndarray
    scale: np.ndarray
    review: np.ndarray  # [P] months, fractional
    origin: int  # market region
    coverage: np.ndarray  # [M, I] share of origin -> dest requests under licence
    paths: list[np.ndarray]  # per form: [K, 2] (month since start, share)
    leakage: float
    widened: list[str] = field(default_factory=list)  # grades covered through their content
    announced: np.ndarray | None = None  # [P] month the control is announced
    quota: bool = False  # approval is a share of each link's base-year flow, not of requests
    expected: np.ndarray | None = None  # [K, 2] the path buyers expect, if not `paths`
    destination_specific: bool = False  # names its destinations (not `all`)

    def months(self, t0: int, t1: int, horizon: float) -> ControlMonths:
        """The control in months t0..t1-1 (midpoints t + 0.5), for every path at once."""
        mids = np.arange(t0, t1) + 0.5
        ahead = max(int(round(horizon)), 1)
        coming = np.arange(t0, t1 + ahead - 1) + 0.5  # every month some month looks at
        # the approval buyers count on: the announced path in months the control is in
        # force, 1 in the others; its mean over the coming `ahead` months, summed in order
        active = self._active(coming)
        counted = self._approval(coming, True)
        term = np.where(active[..., None], counted, 1.0)
        total = np.zeros((len(mids), *term.shape[1:]))
        for h in range(ahead):
            total += term[h:h + len(mids)]
        known = mids[:, None] >= (self.announced if self.announced is not None else self.start)
        approval = (counted[:len(mids)] if self.expected is None
                    else self._approval(mids, False))
        return ControlMonths(active[:len(mids)], approval,
                             np.where(known[..., None], total / ahead, 1.0))

    def _active(self, mids: np.ndarray) -> np.ndarray:
        return (mids[:, None] >= self.start) & (mids[:, None] < self.end)

    def _approval(self, mids: np.ndarray, expected: bool) -> np.ndarray:
        """[T, P, 3] approval share per form at month midpoints `mids` [T], by the months
        since the control's start (whether it is in force is `_active`'s); `expected`: the
        path buyers expect."""
        since = np.maximum(mids[:, None] - self.start, 0.0)
        out = np.empty((*since.shape, 3))
        paths = [self.expected] * 3 if expected and self.expected is not None else self.paths
        for f, pts in enumerate(paths):
            idx = np.clip(np.searchsorted(pts[:, 0], since, "right") - 1, 0, None)
            out[..., f] = np.clip(pts[idx, 1] * self.scale, 0.0,
                                  QUOTA_MAX_SHARE if self.quota else 1.0)
        return out


class ControlMonths(NamedTuple):
    """A control over a run of months t, for every path p: whether it is in force [t, p],
    its approval share per form (oxide, metal, magnet) [t, p, 3], and the approval buyers
    expect over the coming months [t, p, 3] (the mean over `horizon` months of the announced
    path, 1 in months it is not in force; 1 before it is announced)."""

    active: np.ndarray
    approval: np.ndarray
    expected: np.ndarray


@dataclass
class CapacityChange:
    """Capacity lost (outage, share < 0 effect) or added (new capacity) in a market region."""

    start: np.ndarray
    end: np.ndarray  # inf for new capacity
    amount: np.ndarray  # [P] share lost (outage) or t a month at full ramp (new capacity)
    ramp: float
    market: int
    items: np.ndarray  # [I] t a month per unit amount (capacity profile over items)
    divert: np.ndarray | None  # [E] new separation takes concentrate bound to the controller


@dataclass
class MineOutage:
    start: np.ndarray
    end: np.ndarray
    share: np.ndarray
    region: int  # network region
    elements: np.ndarray  # [E] bool


@dataclass
class Shift:
    start: np.ndarray
    end: np.ndarray
    factor: np.ndarray
    mask: np.ndarray  # [M, L] bool


@dataclass
class Holding:
    market: int
    item: int
    t: float
    release_ratio: float
    max_release: float


@dataclass
class SampledShocks:
    controls: list[Control]
    mines: list[MineOutage]
    capacity: list[CapacityChange]
    shifts: list[Shift]
    holdings: list[Holding]
    recycling: list[Recycling]
    first_start: np.ndarray  # [P] start of the earliest shock (nan: none)


def _mask(names, universe: list[str]) -> np.ndarray:
    if names == "all":
        return np.ones(len(universe), bool)
    return np.isin(universe, list(names))


def _active(start, end, mid: float) -> np.ndarray:
    return (mid >= start) & (mid < end)


def control_coverage(shock: ExportControl, base: MarketBase, network) -> tuple[np.ndarray,
                                                                                list[str]]:
    """[M, I] share of each destination market's requests to the origin that needs a
    licence, and the magnet grades the control covers because they contain a controlled
    element."""
    E = len(base.elements)
    el = _mask(shock.elements, base.elements)
    items = np.zeros(base.n_items)
    widened = []
    if "separation" in shock.stages:
        items[:E] = el
    if "metal" in shock.stages:
        items[E:2 * E] = el
    if "magnet" in shock.stages:
        carries = (base.grade_reo[:, el] > 0).any(1)
        items[2 * E:] = carries
        widened = [g for g, c in zip(base.grades, carries, strict=True) if c]
    M = len(base.regions)
    origin = base.regions.index(shock.origin) if shock.origin in base.regions else \
        base.region_market[base.network_regions.index(shock.origin)]
    dest = np.ones(M)
    if shock.destinations != "all":
        dest = _destination_share(shock.destinations, base, network, origin)
    dest[origin] = 0.0
    return dest[:, None] * items[None, :], widened


def _destination_share(destinations: list[str], base: MarketBase, network,
                       origin: int) -> np.ndarray:
    """Share of each market's base-year imports from the origin that goes to the listed
    network regions (a market named directly counts whole)."""
    M = len(base.regions)
    out = np.zeros(M)
    codes = set(destinations)
    for m, code in enumerate(base.regions):
        if code in codes:
            out[m] = 1.0
    nets = [r for r in codes if r in base.network_regions and r not in base.regions]
    if nets:
        imports = network.use_t.sum(("element", "stage"))  # a region's weight in its market
        for r in nets:
            m = base.region_market[base.network_regions.index(r)]
            members = [x for i, x in enumerate(base.network_regions) if base.region_market[i] == m]
            total = float(imports.sel(region=members).sum())
            if total > 0:
                out[m] = min(1.0, out[m] + float(imports.sel(region=r)) / total)
    return out


def sample_shocks(scenario: Scenario, base: MarketBase, network, seed: int,
                  paths: np.ndarray, leakage: float) -> SampledShocks:
    """Per-path draws of every shock for the global path indices `paths`."""
    draw = Draws(seed, np.asarray(paths, dtype=np.int64))
    n = len(paths)
    horizon = float(scenario.months)
    E, G, M = len(base.elements), len(base.grades), len(base.regions)
    out = SampledShocks([], [], [], [], [], [], np.full(n, np.nan))
    starts = []
    for i_shock, shock in enumerate(scenario.shocks):
        where = f"shocks[{i_shock}] ({shock.type})"
        if isinstance(shock, Stockpile):
            m = _market(shock.holder, base, where)
            form = FORMS.index(shock.form)
            e = base.elements.index(shock.element) if shock.element in base.elements else None
            if e is None:
                raise ShockError(f"{where}: element {shock.element!r} has no base-year flow")
            item = e if form == OX else E + e if form == MET else None
            if item is None:
                raise ShockError(f"{where}: hold magnets as a grade is not supported; hold "
                                 "oxide or metal")
            out.holdings.append(Holding(m, item, float(shock.t), shock.release_price_ratio,
                                        shock.max_release_t_per_month or np.inf))
            continue
        if isinstance(shock, Recycling):
            out.recycling.append(shock)
            continue
        if isinstance(shock, NewCapacity):
            start = draw(shock.start)
            late = draw.uniform() < shock.delay_probability
            start = start + np.where(late, draw(shock.delay_months, 0.0), 0.0)
            m = _market(shock.region, base, where)
            form = STAGE_FORM[shock.stage]
            profile = _profile(base, form, _mask(shock.elements, base.elements), m, where)
            divert = None
            if form == OX:
                divert = profile[:E] / base.yields["separation"]
            out.capacity.append(CapacityChange(start, np.full(n, np.inf),
                                               np.full(n, shock.t_per_year / 12.0),
                                               float(shock.ramp_months), m, profile, divert))
            starts.append(start)
            continue
        start = draw(shock.start)
        end = np.minimum(start + draw(shock.duration, np.inf), horizon + 1.0)
        starts.append(start)
        if isinstance(shock, ExportControl):
            if shock.origin != scenario.controller:
                raise ShockError(f"{where}.origin {shock.origin!r}: the scenario's controller "
                                 f"is {scenario.controller}; controls by another origin are "
                                 "not modelled")
            cov, widened = control_coverage(shock, base, network)
            paths_by_form = [np.array(shock.approval_path(s), float)
                             for s in ("separation", "metal", "magnet")]
            out.controls.append(Control(
                start, end, draw(shock.approval_scale), draw(shock.review_delay, 0.0),
                base.regions.index(scenario.controller), cov, paths_by_form,
                leakage if shock.leakage is None else float(shock.leakage), widened,
                start - shock.announced_months, shock.approval_basis == "base_year",
                None if shock.expected_approval is None
                else np.array(shock.expected_approval, float),
                destination_specific=shock.destinations != "all"))
        elif isinstance(shock, Outage):
            share = draw(shock.share_lost)
            if shock.stage == "mining":
                r = base.network_regions.index(shock.region)
                out.mines.append(MineOutage(start, end, share, r,
                                            _mask(shock.elements, base.elements)))
            else:
                r = base.network_regions.index(shock.region)
                m = int(base.region_market[r])
                form = STAGE_FORM[shock.stage]
                items = np.zeros(base.n_items)
                sl = {OX: slice(0, E), MET: slice(E, 2 * E), MAG: slice(2 * E, 2 * E + G)}[form]
                mask = np.ones(G, bool) if form == MAG else _mask(shock.elements, base.elements)
                items[sl] = base.cap0[m, sl] * base.cap_share[r, sl] * mask
                if items.sum() <= 0:
                    raise ShockError(f"{where}: {shock.region} has no {shock.stage} capacity "
                                     "in the base year")
                out.capacity.append(CapacityChange(start, end, -share, 0.0, m, items, None))
        elif isinstance(shock, DemandShift):
            s = base.sectors.index(shock.sector)
            lines = base.line_sector == s
            markets = np.ones(M, bool)
            if shock.region != "all":
                markets = np.zeros(M, bool)
                markets[_market(shock.region, base, where)] = True
            out.shifts.append(Shift(start, end, draw(shock.factor),
                                    markets[:, None] & lines[None, :]))
    if starts:
        out.first_start = np.min(np.stack(starts), 0)
    return out


def _market(region: str, base: MarketBase, where: str) -> int:
    if region in base.regions:
        return base.regions.index(region)
    if region in base.network_regions:
        return int(base.region_market[base.network_regions.index(region)])
    raise ShockError(f"{where}: region {region!r} is not in the base year")


def _profile(base: MarketBase, form: int, elements: np.ndarray, m: int, where: str):
    """How new capacity of a form splits over items: the region's (or else the world's)
    base use of that form, restricted to the listed elements."""
    E, G = len(base.elements), len(base.grades)
    sl = {OX: slice(0, E), MET: slice(E, 2 * E), MAG: slice(2 * E, 2 * E + G)}[form]
    use = base.use0[:, sl].sum(0)
    if form != MAG:
        use = use * elements
    if use.sum() <= 0:
        raise ShockError(f"{where}: none of its elements has base-year use of that form")
    out = np.zeros(base.n_items)
    out[sl] = use / use.sum()
    return out


def month_inputs(sh: SampledShocks, base: MarketBase, t: int, n: int,
                 conc_base: np.ndarray, out: dict | None = None
                 ) -> tuple[dict[str, np.ndarray], set[str]]:
    """Capacity, concentrate arrivals and demand factors of month t for n paths (written
    into the arrays of `out` when given, to spare the allocations), and the names of the
    arrays this call wrote (the others hold what they held)."""
    mid = t + 0.5
    E = len(base.elements)
    if out is None:
        out = {"cap": np.empty((n, *base.cap0.shape)),
               "conc_in": np.empty((n, *conc_base.shape)),
               "dem_factor": np.empty((n, *base.demand0.shape)),
               "mined_lost": np.empty((n, E))}
        fresh = True
    else:
        fresh = False
    cap, conc, dem = out["cap"], out["conc_in"], out["dem_factor"]
    mined_lost = out["mined_lost"]
    # start from the base year; arrays no shock writes keep it from the month they were
    # filled (their values are those a refill would give)
    diverts = any(ch.divert is not None for ch in sh.capacity)
    rewrite = {"cap": fresh or bool(sh.capacity), "conc_in": fresh or bool(sh.mines) or diverts,
               "dem_factor": fresh or bool(sh.shifts), "mined_lost": fresh or bool(sh.mines)}
    if fresh:
        cap[:] = base.cap0
    else:
        for ch in sh.capacity:
            cap[:, ch.market] = base.cap0[ch.market]
    if rewrite["conc_in"]:
        conc[:] = conc_base
    if rewrite["dem_factor"]:
        dem[:] = 1.0
    if rewrite["mined_lost"]:
        mined_lost[:] = 0.0
    for o in sh.mines:
        lost = np.where(_active(o.start, o.end, mid), o.share, 0.0)[:, None] * o.elements
        amount = lost * base.mine[o.region]  # [P, E]
        mined_lost += amount
        conc -= amount[:, None, :] * base.feed_share[o.region][None]
    c = base.controller_index
    for ch in sh.capacity:
        if ch.ramp > 0:
            frac = np.clip((mid - ch.start) / ch.ramp, 0.0, 1.0)
        else:
            frac = ((mid >= ch.start) & (mid < ch.end)).astype(float)
        add = (frac * ch.amount)[:, None] * ch.items[None, :]
        cap[:, ch.market] = np.maximum(cap[:, ch.market] + add, 0.0)
        if ch.divert is not None and ch.market != c:
            want = (frac * ch.amount)[:, None] * ch.divert[None, :]
            moved = np.minimum(want, conc[:, c])
            conc[:, c] -= moved
            conc[:, ch.market] += moved
    for s in sh.shifts:
        f = np.where(_active(s.start, s.end, mid), s.factor, 1.0)
        dem *= np.where(s.mask[None], f[:, None, None], 1.0)
    if rewrite["conc_in"]:
        np.maximum(conc, 0.0, out=conc)
    return out, {k for k, w in rewrite.items() if w}
