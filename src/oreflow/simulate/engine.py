"""The monthly stress-test engine: state, month inputs from the shocks, and the loop.

Each market region (CHN, USA, EU, JPN, KOR, IND, OTH) mines, separates, makes metal and
magnets, holds merchant stocks, trades and uses rare earths; its end users hold their own
stocks. A month is `kernel.step` (the phases); around it this module prepares what the shocks
do to the month (capacities, concentrate arrivals, demand shifts, licence approvals), the
endogenous inflows (new supply, recycling, stockpile releases) and hands every month to the
observers as a `MonthView`. The state and the month's arrays are kept in the kernel's layout
(`kernel.tiles`); numpy code here works on paths-first arrays and copies them in.

Paths run in chunks identified by their global indices, and every draw of a path depends
only on (seed, path index): a chunk's results do not depend on how the run was split.
"""

from __future__ import annotations

import gc
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields

import numba
import numpy as np
from scipy.special import gammainc, gammaincc

from oreflow.scenario import Scenario
from oreflow.simulate import kernel
from oreflow.simulate.market import MAG, MET, OX, MarketBase
from oreflow.simulate.new_supply import NewSupply
from oreflow.simulate.observers import (
    BalanceCheck,
    MonthView,
    Observer,
    PathSummary,
    all_thread_safe,
    reads_outputs,
)
from oreflow.simulate.recycling import RecyclingBase, recycling_base
from oreflow.simulate.shocks import SampledShocks, month_inputs, sample_shocks
from oreflow.simulate.totals import no_totals

COVER_GRID = 512
"""Points of the buyers' cover table (months drawn -> share of stock left, share dry)."""

CONTROL_MONTHS = 12
"""Months of the licence controls' state computed at once (`shocks.Control.months`): a few
array operations a year instead of a dozen a month, in a few MB per control and 4,000 paths."""


@dataclass(frozen=True)
class Behaviour:
    """Behavioural parameters (`market_behaviour.csv`; docs/model.md lists each)."""

    target_cover_months: float
    price_horizon_months: float
    expectation_horizon_months: float
    price_smoothing: float
    price_cap: float
    price_rationing_elasticity: float
    substitution_rate_per_year: float
    substitution_max: float
    substitution_full_price_ratio: float
    supply_response_rate_per_year: float
    supply_response_lead_months: float
    supply_response_max: float
    restock_months: float
    production_adjustment_per_month: float
    buyer_cover_months: float
    buyer_cover_cv: float
    leakage: float
    stoppage_threshold: float
    arbitrage_rate: float
    arbitrage_margin: float

    @classmethod
    def from_dataset(cls, dataset, **override) -> Behaviour:
        p = dataset["market_behaviour"].set_index("parameter")["value"].astype(float)
        names = [f.name for f in fields(cls)]
        missing = [n for n in names if n not in p.index and n not in override]
        if missing:
            raise ValueError(f"market_behaviour.csv has no row for parameter(s) "
                             f"{', '.join(missing)}")
        values = {n: float(p[n]) for n in names if n in p.index}
        values.update(override)
        return cls(**values)


def buyer_cover_table(mean: float, cv: float) -> tuple[float, np.ndarray, np.ndarray]:
    """Buyers' cover is gamma-distributed (mean `mean` months, coefficient of variation
    `cv`). Returns the grid step (months), the share of the buyers' total stock left after
    every buyer has drawn z months of want (E[max(c - z, 0)] / mean), and the share of buyers
    already dry (P[c <= z])."""
    k = 1.0 / max(cv, 1e-6) ** 2
    scale = mean / k
    z = np.linspace(0.0, mean * (1 + 8 * cv), COVER_GRID)
    x = z / scale  # gamma(k, scale) cdf and survival, as regularized incomplete gammas
    cdf = gammainc(k, x)
    left = mean * gammaincc(k + 1, x) - z * gammaincc(k, x)
    return float(z[1] - z[0]), np.clip(left / mean, 0.0, 1.0), cdf


class Engine:
    """A scenario on a base year with a behaviour: `run_block(paths, observers)` simulates
    the global path indices `paths` month by month."""

    def __init__(self, base: MarketBase, behaviour: Behaviour, scenario: Scenario, network,
                 seed: int):
        self.base, self.beh, self.scenario, self.seed = base, behaviour, scenario, seed
        self.network = network
        self.months = scenario.months
        b, beh = base, behaviour
        E, G, M = len(b.elements), len(b.grades), len(b.regions)
        self.E, self.G, self.M, self.I = E, G, M, b.n_items
        self.L = len(b.line_item)
        order = np.lexsort((b.line_priority, b.line_item))
        W = b.source_share
        o, d, i = np.nonzero(W * (1 - np.eye(M))[:, :, None] > 0)
        self.links = (o, d, i)
        step, left, cdf = buyer_cover_table(beh.buyer_cover_months, beh.buyer_cover_cv)
        self.cover_table = (step, left, cdf)
        self.par = np.array([
            b.yields["separation"], b.yields["metal"], beh.production_adjustment_per_month,
            beh.restock_months, beh.restock_months, beh.price_horizon_months,
            beh.price_smoothing, np.log(beh.price_cap), beh.substitution_rate_per_year / 12.0,
            beh.substitution_max, beh.substitution_full_price_ratio, beh.arbitrage_rate,
            np.log1p(beh.arbitrage_margin)])
        eps_item, ratio0 = self._price_response()
        made = b.prod0[:, 2 * E:] @ b.swarf_per_magnet  # [M, E] swarf made
        self.swarf0 = np.einsum("me,mne->ne", made, b.swarf_share)  # recycled where it goes
        # swarf a region recovers beyond what it ships in the base year (magnet makers with no
        # use for it) went to unsold stock then; it keeps going there, from stock above target
        self.unsold0 = np.zeros((M, self.I))
        self.unsold0[:, :E] = np.maximum(self.swarf0 - b.prod0[:, :E], 0.0)
        self.static = kernel.narrow(_static(b, W, (o, d, i), order, self._grade_weights(),
                                            eps_item, ratio0, self.unsold0, self.cover_table,
                                            self.par))
        self.conc_base = np.einsum("re,rme->me", b.mine, b.feed_share)
        self.plan0 = b.prod0.copy()
        self.plan0[:, :E] = np.maximum(b.prod0[:, :E] - self.swarf0, 0.0)
        outside = np.arange(M) != b.controller_index
        w = b.use0[:, :E] * outside[:, None]
        self.outside_weight = w / np.maximum(w.sum(0, keepdims=True), 1e-300)
        self.new_supply = NewSupply.of(b, self.outside_weight)
        rb = recycling_base(network, b.controller, b.elements)
        self.recycling = rb if len(rb.regions) else None

    def _price_response(self) -> tuple[np.ndarray, np.ndarray]:
        """Per market and item: the elasticity with which its price clears expected supply
        against use: its demand's (its lines and the lines downstream of it, weighted by the
        rare earth they use), substitution over the price horizon, and the part of a gap that
        is rationed by quantity (allocation, contracts) rather than by price; and the base
        year's ratio of expected supply to use."""
        b, beh = self.base, self.beh
        E, M, I = self.E, self.M, self.I
        el = b.item_reo()[b.line_item]  # [L, E] t REO-eq per unit of each line
        form = b.item_form[b.line_item]
        grade = np.where(form == 2, b.line_item - 2 * E, -1)
        w = np.zeros((M, len(b.line_item), I))
        d = b.demand0  # [M, L]
        for l_, i in enumerate(b.line_item):
            w[:, l_, i] += d[:, l_] * el[l_].sum()
            for e in np.flatnonzero(el[l_] > 0):
                w[:, l_, e] += d[:, l_] * el[l_, e] * (form[l_] != 0 or i == e)
                if form[l_] == 2:
                    w[:, l_, E + e] += d[:, l_] * el[l_, e]
        del grade
        w[:, :, :E] = np.where(w[:, :, :E] > 0, w[:, :, :E], 0.0)
        tot = w.sum(1)
        world = w.sum(0)
        eps = np.einsum("mli,l->mi", w, b.line_elasticity)
        eps_world = np.einsum("li,l->i", world, b.line_elasticity) / np.maximum(
            world.sum(0), 1e-300)
        eps = np.where(tot > 0, eps / np.maximum(tot, 1e-300), eps_world[None])
        H = beh.price_horizon_months
        substitution = beh.substitution_rate_per_year / 12.0 * H / np.log(
            beh.substitution_full_price_ratio)
        eps = np.minimum(eps - substitution - beh.price_rationing_elasticity, -1e-3)
        flows = b.source_share * b.use0[None]  # [M_o, M_d, I]
        own = np.einsum("mmi->mi", flows)
        imports, exports = flows.sum(0) - own, flows.sum(1) - own
        held = b.stock0 + np.einsum("ml,li->mi", b.buyer_stock0,
                                    np.eye(I)[b.line_item])
        use = H * (b.use0 + exports)
        ratio0 = np.divide(held + H * (b.prod0 + imports), use, out=np.zeros_like(use),
                           where=use > 0)
        return eps, ratio0

    def _grade_weights(self) -> np.ndarray:
        """[G, E] each element's share of a grade's rare-earth value at base prices."""
        b = self.base
        v = b.grade_reo * b.price0.mean(0)[None, :]
        return v / np.maximum(v.sum(1, keepdims=True), 1e-300)

    # ---- one block of paths ---------------------------------------------------------------
    def shocks(self, paths: np.ndarray) -> SampledShocks:
        return sample_shocks(self.scenario, self.base, self.network, self.seed, paths,
                             self.beh.leakage)

    @staticmethod
    def keeps_outputs(observers: Sequence[Observer], holdings: bool,
                      paths: np.ndarray | None = None) -> bool:
        """Whether the block of paths `paths` (None: some block) keeps every path's month
        outputs: for observers that read them (`observers.reads_outputs`: not the balance
        check and the per-path totals, which read them inside the kernel; the monthly bands
        only in blocks with banded paths) and for stockpile releases (which follow last
        month's shortfalls); otherwise they stay in a tile of scratch per thread."""
        return holdings or any(reads_outputs(o, paths) for o in observers)

    def run_block(self, paths: np.ndarray, observers: Sequence[Observer],
                  progress=None, serial: bool = False) -> None:
        """Run the paths `paths` (global indices) over the horizon. `serial`: the kernels run
        on this thread alone and without the GIL (`kernel.SERIAL`), for blocks run side by
        side on threads of their own; their observers must then be `thread_safe`."""
        if serial and not all_thread_safe(observers):
            raise ValueError("blocks run side by side take only thread_safe observers")
        with no_gc():
            self._run_block(paths, observers, progress,
                            kernel.SERIAL if serial else kernel.PARALLEL)

    def _run_block(self, paths: np.ndarray, observers: Sequence[Observer], progress,
                   kern: kernel.Kernels) -> None:
        b, beh = self.base, self.beh
        paths = np.asarray(paths, dtype=np.int64)
        n, E, M, I, L = len(paths), self.E, self.M, self.I, self.L
        sh = self.shocks(paths)
        K = len(sh.controls)
        # the state, the month's inputs and outputs in the kernel's layout (kernel.tiles)
        st = {k: kernel.tiles(n, *v.shape, fill=v, dtype=kernel.width(k)) for k, v in (
            ("S", b.stock0), ("C", self.conc_base), ("B", b.buyer_stock0), ("plan", self.plan0),
            ("lr", np.zeros((M, I))), ("ratio", np.ones((M, E))),  # ratio: exp(lr[:, :E])
            ("sub", np.zeros((M, E + self.G))),
            ("swarf_last", self.swarf0), ("short_imp", np.zeros((M, I))))}
        lq = int(np.ceil(max([np.nanmax(c.review) for c in sh.controls] or [0.0]))) + 2
        lo, ld, li = self.links
        cov = np.zeros((max(K, 1), len(lo)), kernel.SINGLE)
        quota0 = np.zeros((max(K, 1), len(lo)), kernel.SINGLE)
        origin = np.zeros(max(K, 1), np.int64)
        leak = np.zeros(max(K, 1), kernel.SINGLE)
        link_flow0 = b.source_share[lo, ld, li] * b.use0[ld, li]  # base-year t a month
        for k, c in enumerate(sh.controls):
            cov[k] = np.where(lo == c.origin, c.coverage[ld, li], 0.0)
            origin[k], leak[k] = c.origin, c.leakage
            if c.quota:
                quota0[k] = cov[k] * link_flow0
        review = np.zeros((n, max(K, 1)))
        for k, c in enumerate(sh.controls):
            review[:, k] = c.review
        n0 = kern.to_tiles(np.floor(review).astype(np.int64),
                           kernel.tiles(n, max(K, 1), dtype=np.int64))
        frac = kern.to_tiles(review - np.floor(review),
                             kernel.tiles(n, max(K, 1), dtype=kernel.SINGLE))
        S_ = len(b.sectors)
        # the month's outputs, kept for observers that read them and for stockpile releases
        # (they follow last month's shortfalls); the balance check and the per-path totals
        # read them inside the kernel, which otherwise needs only a tile per thread
        keep = self.keeps_outputs(observers, bool(sh.holdings), paths)
        n_out = n if keep else kernel.LANES * (1 if kern.serial else numba.config.NUMBA_NUM_THREADS)
        out = {k: kernel.tiles(n_out, M, shape, dtype=kernel.width(k)) for k, shape in (
            ("prod", I), ("imp", I), ("exp", I), ("drawn", I), ("del", L), ("cons", L),
            ("need", L), ("want", L), ("price", E), ("conc_used", E), ("filed", I),
            ("approved", I), ("short_item", I), ("phys_el", E), ("red_el", E),
            ("phys_sec", S_), ("red_sec", S_), ("need_sec", S_), ("unsold", I))}
        holdings = [np.full(n, h.t) for h in sh.holdings]
        ns = self.new_supply
        new_cap = np.zeros((n, len(ns.ore_volume)))  # [paths, ore] t a month
        resp = np.zeros((n, E))
        lead = max(int(round(beh.supply_response_lead_months)), 0)
        signal_hist = np.ones((lead + 1, n, len(ns.ore_volume)))
        rec = _RecyclingState(self.recycling, sh, n, b, beh) if self.recycling is not None \
            else None
        for obs in observers:
            obs.start_block(self, paths)
        # observers of every path every month run inside the kernel's loop over tiles
        checks = [o for o in observers if isinstance(o, BalanceCheck)]
        summaries = [o for o in observers if isinstance(o, PathSummary)]
        if len(checks) > 1 or len(summaries) > 1:
            raise ValueError("a run takes at most one BalanceCheck and one PathSummary")
        balance = checks[0].kernel_arrays() if checks else (
            kernel.tiles(0, M, I), kernel.tiles(0, M, E), kernel.tiles(0, M, L), np.zeros(0))
        totals = summaries[0].kernel_totals() if summaries else no_totals(M, E, len(b.sectors))
        last_short = kernel.tiles(n, M, I, dtype=kernel.SINGLE)
        inp = None
        ctl_ptr, ctl_j = kernel.csr(cov > 0)
        # licence applications [month, link]
        queue = kernel.tiles(n, lq, len(ctl_j), dtype=kernel.SINGLE)
        # what a destination-specific control targets
        target = np.zeros((max(K, 1), M), kernel.SINGLE)
        for k, c in enumerate(sh.controls):
            if c.destination_specific:
                target[k] = c.coverage.max(1)
        ctl = kernel.Controls(cov=cov, quota0=quota0, ctl_origin=origin.astype(np.uint64),
                              leakage=leak, ctl_ptr=ctl_ptr.astype(np.uint64),
                              ctl_j=ctl_j.astype(np.uint64), target=target)
        # month buffers, reused (observers read a month's arrays during on_month only)
        inflow = np.zeros((n, M, I)) if sh.holdings else None
        # recycled oxide above the base year (0: none)
        secondary = kernel.tiles(n, M, E, dtype=kernel.SINGLE)
        # (recycled, extra, each market's recycling regions, eol) for `kernel.oxide_inflow`
        no_recycling = (False, np.zeros((n, 0)), np.zeros(M + 1, np.int64),
                        np.zeros(0, np.int64), np.zeros((0, E)))
        released = np.zeros((n, M, I))
        kin = {k: kernel.tiles(n, *shape, dtype=kernel.SINGLE) for k, shape in (
            ("conc_in", (M, E)), ("cap", (M, I)), ("dem_factor", (M, L)), ("inflow", (M, I)))}
        k_active = kernel.tiles(n, max(K, 1), dtype=np.bool_)
        k_approval, k_ahead = (kernel.tiles(n, max(K, 1), 3, fill=np.ones((max(K, 1), 3)),
                                            dtype=kernel.SINGLE) for _ in range(2))
        for t in range(self.months):
            mid = t + 0.5
            inp, written = month_inputs(sh, b, t, n, self.conc_base, inp)
            for name in written & kin.keys():  # into the kernel's layout
                kern.to_tiles(inp[name], kin[name])
            if sh.controls:
                w = t % CONTROL_MONTHS
                if w == 0:  # the controls over the coming months, [month, path, control, ...]
                    coming = [c.months(t, min(t + CONTROL_MONTHS, self.months),
                                       beh.expectation_horizon_months) for c in sh.controls]
                    active, approval, ahead = (np.stack(x, 2) for x in zip(*coming,
                                                                          strict=True))
                kern.to_tiles(active[w], k_active)
                kern.to_tiles(approval[w], k_approval)
                kern.to_tiles(ahead[w], k_ahead)
            # inflow: new supply, recycling, stockpile releases (only the oxide columns and
            # the released cells are ever non-zero; adding zeros is skipped, exactly)
            recycled = no_recycling if rec is None else (
                True, rec.extra(mid), rec.market_ptr, rec.market_r, rec.eol)
            kern.oxide_inflow(n, resp, ns.land, *recycled, kin["inflow"], secondary)
            first = {}
            if sh.holdings:  # paths first: releases follow last month's shortfalls
                inflow[:] = 0.0  # new and recycled oxide as the kernel just landed them
                inflow[:, :, :E] = kernel.paths_first(kin["inflow"], n)[:, :, :E]
                released = np.zeros((n, M, I))
                for h, hold in zip(sh.holdings, holdings, strict=True):
                    ratio = np.exp(st["lr"][:, h.market, h.item].reshape(-1)[:n])
                    on = ratio >= h.release_ratio
                    take = np.minimum(np.minimum(hold, h.max_release),
                                      last_short[:, h.market, h.item].reshape(-1)[:n])
                    # in the width the kernel lands it in (kernel.SINGLE)
                    take = np.where(on, take, 0.0).astype(kernel.SINGLE).astype(float)
                    hold -= take
                    released[:, h.market, h.item] += take
                inflow += released
                kern.to_tiles(inflow, kin["inflow"])
                first["inflow_t"] = inflow
            r_out = np.empty((n, E))  # [P, E]
            kern.step(self.static, ctl, n, st["S"], st["C"], st["B"], st["plan"], st["lr"],
                      st["ratio"], st["sub"], st["swarf_last"], st["short_imp"], queue,
                      kin["conc_in"], kin["cap"], kin["dem_factor"], kin["inflow"],
                      k_active, k_approval, k_ahead, n0, frac, t, bool(sh.shifts),
                      bool(sh.capacity),
                      out["prod"], out["imp"], out["exp"], out["drawn"], out["del"],
                      out["cons"], out["need"], out["want"], out["price"], out["conc_used"],
                      out["filed"], out["approved"], out["short_item"], out["phys_el"],
                      out["red_el"], out["phys_sec"], out["red_sec"], out["need_sec"],
                      out["unsold"], *balance, totals, secondary,
                      np.ascontiguousarray(resp), keep, self.outside_weight, r_out)
            last_short = out["short_item"]
            view = MonthView(
                t=t, paths=paths, base=b, first_shock_month=sh.first_start,
                mined_lost_t=inp["mined_lost"], new_supply_t=resp,
                releases_t=released, **first,
                tiled={"inflow_t": kin["inflow"], "concentrate_in_t": kin["conc_in"],
                       "secondary_t": secondary,
                       "stock_t": st["S"], "concentrate_stock_t": st["C"],
                       "buyer_stock_t": st["B"], **({
                           "price_usd_per_kg": out["price"], "production_t": out["prod"],
                           "imports_t": out["imp"], "exports_t": out["exp"],
                           "inputs_used_t": out["drawn"], "deliveries_t": out["del"],
                           "consumption_t": out["cons"], "need_t": out["need"],
                           "want_t": out["want"], "concentrate_used_t": out["conc_used"],
                           "licence_filed_t": out["filed"],
                           "licence_approved_t": out["approved"],
                           "unmet_physical_element_t": out["phys_el"],
                           "demand_reduction_element_t": out["red_el"],
                           "unmet_physical_sector_t": out["phys_sec"],
                           "demand_reduction_sector_t": out["red_sec"],
                           "need_sector_t": out["need_sec"], "unsold_t": out["unsold"]}
                           if keep else {})})
            for obs in observers:
                obs.on_month(view)
            # responses outside the month kernel to the month's outside price ratio r_out
            # (kept by the kernel): new supply after its lead time, recycling
            signal_hist[t % (lead + 1)] = ns.basket_ratio(r_out)
            full = beh.substitution_full_price_ratio
            ramp = np.clip((signal_hist[(t + 1) % (lead + 1)] - 1.0) / (full - 1.0), 0.0, 1.0)
            new_cap = ns.grow(new_cap, ramp, beh.supply_response_rate_per_year,
                              beh.supply_response_max)
            resp = ns.output(new_cap)
            if rec is not None:
                rec.respond(t, r_out)
            if progress is not None:
                progress(n)
        for obs in observers:
            obs.end_block(self, paths)


@contextmanager
def no_gc():
    """The cyclic garbage collector off: the month loop allocates many large arrays and no
    reference cycles, so it would only rescan them. Nests (and blocks on threads of their
    own run inside one: only the outermost turns it back on)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _static(b: MarketBase, W: np.ndarray, links, order: np.ndarray, grade_w: np.ndarray,
            eps_item: np.ndarray, ratio0: np.ndarray, unsold0: np.ndarray, cover, par
            ) -> kernel.Static:
    """The kernel's base year, with the index lists its loops run over (the non-zero
    entries of the sparse compositions, an origin's links, the priority classes)."""
    E, M = len(b.elements), len(b.regions)
    o, d, i = links
    line_item = b.line_item.astype(np.int64)
    org_ptr, org_j = kernel.csr(np.arange(M)[:, None] == o[None, :])
    # priority classes: runs of equal (item, priority) in line_order
    key = np.stack([b.line_item[order], b.line_priority[order]], 1)
    new = np.r_[True, (key[1:] != key[:-1]).any(1)]
    starts = np.flatnonzero(new)
    cls_item = line_item[order][starts]
    cls_first = np.r_[True, cls_item[1:] != cls_item[:-1]]
    gw_ptr, gw_e = kernel.csr(grade_w != 0)
    mpm, spm = b.metal_per_magnet, b.swarf_per_magnet
    mg_ptr, mg_e = kernel.csr((mpm != 0) | (spm != 0))
    mg_g = np.repeat(np.arange(len(mpm)), np.diff(mg_ptr))
    me_ptr, me_g = kernel.csr(mpm.T != 0)
    me_e = np.repeat(np.arange(E), np.diff(me_ptr))
    share = np.ascontiguousarray(np.transpose(b.swarf_share, (0, 2, 1)))  # [src, e, dst]
    sw_src, sw_e, sw_dst = np.nonzero(share > 0)
    line_el = b.item_element_t()[b.line_item]
    lines = _sparse_lines(line_el)
    line_tot = np.zeros(len(line_item))
    for l_, row in enumerate(lines["line_f"]):  # summed in the order the kernel used to
        for h, e in enumerate(lines["line_e"][l_]):
            if e < 0:
                break
            line_tot[l_] += row[h]
    step, left, cdf = cover
    bucket_lo, bucket_hi = kernel.cover_buckets(left)
    G = len(b.grades)
    # index arrays are unsigned: numba then indexes without the negative-index wraparound
    u = np.uint64

    def ix(a):
        return np.asarray(a).astype(u)

    line_sub = np.where(b.item_form[b.line_item] == 2, E + b.line_item - 2 * E,
                        np.where(b.line_item < E, b.line_item, b.line_item - E))
    gw_used = np.flatnonzero((grade_w > 0).any(0))
    return kernel.Static(
        own_share=np.ascontiguousarray(np.einsum("mmi->mi", W)),
        link_o=ix(o), link_d=ix(d), link_i=ix(i),
        link_w=W[o, d, i].astype(float), org_ptr=ix(org_ptr), org_j=ix(org_j),
        S0=b.stock0.copy(), cap0=b.cap0.copy(), B0=b.buyer_stock0.copy(),
        demand0=b.demand0.copy(),
        line_item=ix(line_item), line_order=ix(order),
        cls_ptr=ix(np.r_[starts, len(order)]), cls_item=ix(cls_item),
        cls_first=cls_first, elasticity=b.line_elasticity.astype(float),
        item_form=ix(b.item_form), line_sub=ix(line_sub),
        gw_ptr=ix(gw_ptr), gw_e=ix(gw_e), gw_v=grade_w[np.repeat(np.arange(G),
                                                              np.diff(gw_ptr)), gw_e].copy(),
        gw_used=ix(gw_used), gw_used_metal=ix(E + gw_used),
        mg_ptr=ix(mg_ptr), mg_e=ix(mg_e), mg_i=ix(E + mg_e), mg_metal=mpm[mg_g, mg_e].copy(),
        mg_swarf=spm[mg_g, mg_e].copy(),
        me_ptr=ix(me_ptr), me_g=ix(me_g), me_i=ix(2 * E + me_g), me_v=mpm[me_g, me_e].copy(),
        sw_src=ix(sw_src), sw_e=ix(sw_e), sw_dst=ix(sw_dst),
        sw_v=share[sw_src, sw_e, sw_dst].copy(),
        price0=b.price0.copy(), line_sector=ix(b.line_sector),
        # (line_e stays signed: measured faster in `shortfall` than unsigned)
        line_h=ix((lines["line_e"] >= 0).sum(1)), line_e=np.maximum(lines["line_e"], 0),
        line_f=lines["line_f"], line_tot=line_tot,
        eps_item=eps_item, ratio0=ratio0, unsold0=unsold0,
        frac_grid_step=float(step), frac_left=left, cdf=cdf, bucket_lo=bucket_lo,
        bucket_hi=bucket_hi, par=par)


def _sparse_lines(line_el: np.ndarray) -> dict[str, np.ndarray]:
    """A line's elements as index and value lists (-1 pads): [L, H]."""
    width = int((line_el > 0).sum(1).max())
    idx = np.full((len(line_el), width), -1, np.int64)
    val = np.zeros((len(line_el), width))
    for l_, row in enumerate(line_el):
        nz = np.flatnonzero(row > 0)
        idx[l_, :len(nz)] = nz
        val[l_, :len(nz)] = row[nz]
    return {"line_e": idx, "line_f": val}


class _RecyclingState:
    """Secondary supply from end-of-life magnets outside the controller above today's level:
    policies ramp collection, pre-processing and capacity; capacity also grows after a lead
    time while the value of recycled output is high (docs/model.md, section 5)."""

    def __init__(self, rb: RecyclingBase, sh: SampledShocks, n: int, b: MarketBase, beh):
        self.rb, self.n, self.beh = rb, n, beh
        self.policies = []
        for r in sh.recycling:
            if r.region not in rb.regions:
                raise ValueError(f"recycling.region {r.region!r}: recycling is modelled in the "
                                 f"regions of recycling.csv outside the controller "
                                 f"({b.controller}); allowed: {', '.join(rb.regions)}")
            i = rb.regions.index(r.region)
            cap = np.nan
            if r.capacity_t_magnet_per_year is not None:
                cap = r.capacity_t_magnet_per_year / 12.0
            elif r.capacity_factor is not None:
                cap = r.capacity_factor * rb.capacity_t_magnet[i]
            for name, target, today in (("collection_rate", r.collection_rate,
                                         rb.collection_rate[i]),
                                        ("preprocessing_yield", r.preprocessing_yield,
                                         rb.preprocessing_yield[i]),
                                        ("capacity", None if np.isnan(cap) else cap,
                                         rb.capacity_t_magnet[i])):
                if target is not None and target < today - 1e-12:
                    raise ValueError(f"recycling ({r.region}).{name}: {target:g} is below the "
                                     f"base-year value {today:g} (recycling.csv); the engine "
                                     "models recycling at or above today's level")
            start = np.full(n, float(r.start)) if isinstance(r.start, int | float) else None
            if start is None:
                raise ValueError("recycling.start must be a number of months")
            self.policies.append((start, float(r.ramp_months), i,
                                  np.nan if r.collection_rate is None else r.collection_rate,
                                  np.nan if r.preprocessing_yield is None
                                  else r.preprocessing_yield, cap))
        nets = b.network_regions
        market = np.array([b.region_market[nets.index(r)] if r in nets else len(b.regions) - 1
                           for r in rb.regions], dtype=np.int64)
        # each market's recycling regions, in region order (`kernel.oxide_inflow`)
        self.market_ptr, self.market_r = kernel.csr(
            np.arange(len(b.regions))[:, None] == market[None, :])
        self.eol = np.array(rb.eol_t)  # writable, as no_recycling's: one compiled signature
        self.share0 = rb.recovered_share(rb.collection_rate, rb.preprocessing_yield,
                                         rb.capacity_t_magnet)
        value = self.eol.sum(0) * b.price0[-1]
        self.weight = value / value.sum() if value.sum() > 0 else value
        self.cap_resp = np.zeros((n, len(rb.regions)))
        self.hist = np.ones((int(rb.lead_months.max()) + 1, n))
        self.feed = self.cap = None

    def extra(self, mid: float) -> np.ndarray:
        """[n, region] share of each region's end-of-life flow recovered above the base year
        in the month with midpoint `mid` (`kernel.oxide_inflow` lands it in the markets)."""
        rb, n = self.rb, self.n
        coll = np.repeat(rb.collection_rate[None], n, 0)
        pre = np.repeat(rb.preprocessing_yield[None], n, 0)
        cap = np.repeat(rb.capacity_t_magnet[None], n, 0)
        for start, ramp, i, c, p, k in self.policies:
            frac = np.clip((mid - start) / ramp, 0, 1) if ramp > 0 else (mid >= start) * 1.0
            for arr, target in ((coll, c), (pre, p), (cap, k)):
                if not np.isnan(target):
                    arr[:, i] += frac * (target - arr[:, i])
        self.feed = coll * pre * rb.eol_t_magnet
        self.cap = cap + self.cap_resp
        return np.maximum(rb.recovered_share(coll, pre, self.cap) - self.share0, 0.0)

    def respond(self, t: int, r_out: np.ndarray) -> None:
        rb = self.rb
        size = self.hist.shape[0]
        self.hist[t % size] = r_out @ self.weight
        lag = t - rb.lead_months
        signal = np.where(lag[:, None] >= 0, self.hist[lag % size], 1.0).T
        full = self.beh.substitution_full_price_ratio
        ramp = np.clip((signal - 1.0) / (full - 1.0), 0.0, 1.0)
        self.cap_resp = self.cap_resp + (self.cap < self.feed) * ramp * rb.expansion_t_magnet


__all__ = ["Behaviour", "Engine", "MAG", "MET", "OX"]
