"""The monthly stress-test engine, vectorized over Monte Carlo paths.

Every array in the step has a leading paths axis and an element axis ([P, E]); the only
Python loops are over months (a genuine recursion), over the few shocks of a scenario, and
over chunks of paths (to bound memory). Equations and parameters: docs/model.md.

Each month, per element, in two market zones (IN = the controlling country, OUT = the rest):
1. demand = base x demand shifts x (price / base price)^elasticity x (1 - substitution);
2. concentrate: mines (after outages) feed separation IN or OUT as routed in the base year;
   new separation capacity outside diverts concentrate that used to go IN;
3. OUT asks IN for its usual import share of each form (oxide, metal, magnet); controls
   approve a share of that request; OUT makes the rest itself within its metal and magnet
   capacity (base output / utilisation, plus new capacity);
4. IN serves home use first, then approved exports, from separation (which it matches to
   those needs) and inventory;
5. OUT serves oxide uses and its metal making pro rata from separation, imports, endogenous
   new supply, stockpile releases and inventory; then metal, then magnets; within each form
   sectors are served in priority order (defense first by default);
6. prices move towards base x (inventory cover / target)^-exponent, smoothed;
7. substitution and new supply build up while prices are high; recycling capacity outside
   grows after its lead time while the value of recycled output is high.
Secondary supply (recycled end-of-life magnets, as oxide outside) = recovery x min(capacity,
collection x preprocessing x end-of-life magnets), per region outside; the base-year level is
already in the base-year flows, so the engine adds only what lies above it.
Mass balance per zone and month: production + secondary + imports + releases = use + exports
+ stock change + losses; the largest relative residual is recorded with the result.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from oreflow.scenario import Scenario
from oreflow.simulate.base import FORMS, ZoneBase
from oreflow.simulate.shocks import SampledShocks

OX, MET, MAG = 0, 1, 2


@dataclass(frozen=True)
class Behaviour:
    target_cover_months: float
    price_cover_exponent: float
    price_floor_cover: float
    price_smoothing: float
    demand_elasticity: float
    substitution_rate_per_year: float
    substitution_max: float
    substitution_full_price_ratio: float
    supply_response_rate_per_year: float
    supply_response_lead_months: float
    supply_response_max: float
    restock_months: float

    @classmethod
    def from_dataset(cls, dataset, **override) -> Behaviour:
        p = dataset["market_behaviour"].set_index("parameter")["value"].astype(float)
        values = {f: float(p[f]) for f in cls.__dataclass_fields__}
        values.update(override)
        return cls(**values)


def _ramp(x: np.ndarray, full: float) -> np.ndarray:
    """0 at price ratio 1, rising linearly to 1 at `full`."""
    return np.clip((x - 1.0) / (full - 1.0), 0.0, 1.0)


def _ration(served: np.ndarray, demand_by_group: np.ndarray) -> np.ndarray:
    """Serve groups in order: [G, P, E] group demand, [P, E] total served -> [G, P, E]."""
    before = np.cumsum(demand_by_group, axis=0) - demand_by_group
    return np.clip(served[None] - before, 0.0, demand_by_group)


def _shortfall(need, want, served, total_want, form_groups) -> np.ndarray:
    """Unmet need by group after serving each form's groups in priority order; where a form
    is fully served, what is unmet is only the price-driven cut (need - want)."""
    out = need - want
    for f, idx in enumerate(form_groups):
        if len(idx) and not np.all(served[f] >= total_want[f]):
            out[idx] = need[idx] - _ration(served[f], want[idx])
    return np.maximum(out, 0.0, out=out)


def _safe_div(a, b, default: float = 0.0):
    a, b = np.broadcast_arrays(np.asarray(a, float), np.asarray(b, float))
    return np.divide(a, b, out=np.full(a.shape, default), where=b > 1e-15)


def _active(start: np.ndarray, end: np.ndarray, mid: float) -> np.ndarray:
    return (mid >= start) & (mid < end)


class Engine:
    """Holds the base year, behaviour and sampled shocks; `run_chunk` simulates a block of
    paths month by month and hands each month's [P, E] arrays to a recorder."""

    def __init__(self, base: ZoneBase, behaviour: Behaviour, scenario: Scenario,
                 shocks: SampledShocks, regions_all: list[str]):
        self.b, self.beh, self.shocks = base, behaviour, shocks
        self.months = scenario.months
        self.ys, self.ym, self.yg = (base.yields[s] for s in ("separation", "metal", "magnet"))
        ctrl = regions_all.index(base.controller)
        self.is_out = np.arange(len(regions_all)) != ctrl
        mine, to_in = base.mine, base.to_in[:, None]
        self.mined_in0 = mine[~self.is_out].sum(0)
        self.mined_out0 = mine[self.is_out].sum(0)
        self.conc_to_in0 = (mine * to_in)[self.is_out].sum(0)
        self.feed_out0 = (mine * (1 - to_in))[self.is_out].sum(0)
        self.sep_cap_out0 = base.sep_cap_out_region.sum(0)
        # demand groups: (form, priority) pairs present, served in priority order per form
        pairs = sorted(set(zip(base.sector_form.tolist(), base.priority.tolist(), strict=True)))
        self.groups = pairs
        self.sector_group = np.array([pairs.index((f, p)) for f, p in
                                      zip(base.sector_form, base.priority, strict=True)])
        self.form_groups = [np.array([g for g, (f, _) in enumerate(pairs) if f == form], int)
                            for form in range(3)]
        # the first priority (defense, medical by default) pays any price; the others cut use
        # with the short-run elasticity
        top = base.priority.min()
        self.elastic = np.array([p != top for _, p in pairs])
        G, E = len(pairs), base.n_elements
        self.d0_out = np.zeros((G, E))
        self.d0_in = np.zeros((G, E))
        for s, g in enumerate(self.sector_group):
            self.d0_out[g] += base.sector_demand_out[:, s, :].sum(1)
            self.d0_in[g] += base.sector_demand_in[:, s]
        # OUT's base requirement of each form and the share of it imported from IN
        ym, yg = self.ym, self.yg
        d = base.demand_out
        self.req0 = np.stack([d[OX] + base.prod_out["metal"] / ym,
                              d[MET] + base.prod_out["magnet"] / yg, d[MAG]])
        self.imp_share = np.stack([_safe_div(base.imports[f], self.req0[i])
                                   for i, f in enumerate(FORMS)])
        cover = behaviour.target_cover_months
        self.tgt_out = cover * self.req0  # [3, E]
        home = base.demand_in[OX] + base.demand_in[MET] / ym + base.demand_in[MAG] / (ym * yg)
        self.tgt_in = cover * home
        self.tgt_out_total = self.tgt_out.sum(0)
        # demand shifts: base demand of the shifted sectors and regions by (form, class)
        self.shift_out, self.shift_in = [], []
        for sh in shocks.shifts:
            o, i = np.zeros((G, E)), np.zeros((G, E))
            for s in np.flatnonzero(sh.sectors):
                g = self.sector_group[s]
                o[g] += base.sector_demand_out[:, s, sh.regions_out].sum(1)
                if sh.inside:
                    i[g] += base.sector_demand_in[:, s]
            self.shift_out.append(o)
            self.shift_in.append(i)
        # recycling outside: base-year secondary supply (already in the base-year flows) and
        # the value weights of recycled output, for the recyclers' price signal
        rb = base.recycling
        if rb is not None and len(rb.regions):
            self.rec_share0 = rb.recovered_share(rb.collection_rate, rb.preprocessing_yield,
                                                 rb.capacity_t_magnet)
            value = rb.eol_t.sum(0) * base.price_out
            self.sec_weight = value / value.sum() if value.sum() > 0 else value

    def _demand(self, d0, shifts_base, shifts, sub, price_ratio, mid):
        """need [G, P, E] (after substitution), want (after the price cut), want by form."""
        ref = d0[:, None, :]
        for (st, en, fac), base_g in zip(shifts, shifts_base, strict=True):
            extra = np.where(_active(st, en, mid), fac - 1.0, 0.0)[None, :, None]
            ref = ref + extra * base_g[:, None, :]
        need = ref * (1.0 - sub)[None]
        want = need.copy()
        cut = price_ratio ** self.beh.demand_elasticity
        for g in np.flatnonzero(self.elastic):
            want[g] *= cut
        by_form = np.stack([want[idx[0]:idx[-1] + 1].sum(0) if len(idx) else np.zeros_like(sub)
                            for idx in self.form_groups])  # groups are sorted by form
        return need, want, by_form

    def run_chunk(self, sl: slice, record: Callable[[int, dict], None]) -> float:
        """Simulate paths `sl`; returns the largest relative mass-balance residual."""
        b, beh, sh = self.b, self.beh, self.shocks
        n = sl.stop - sl.start
        E = b.n_elements
        ys, ym, yg = self.ys, self.ym, self.yg
        # untraded elements (no base price) get a notional price of 1 for the ratios
        P0o = np.where(b.price_out > 0, b.price_out, 1.0)[None, :]
        P0i = np.where(b.price_in > 0, b.price_in, 1.0)[None, :]
        lp_out = np.repeat(np.log(P0o), n, 0)
        lp_in = np.repeat(np.log(P0i), n, 0)
        inv = [np.repeat(self.tgt_out[f][None], n, 0) for f in range(3)]
        inv_in = np.repeat(self.tgt_in[None], n, 0)
        sub_out, sub_in, resp = (np.zeros((n, E)) for _ in range(3))
        lead = max(int(round(beh.supply_response_lead_months)), 0)
        ratio_hist = np.ones((lead + 1, n, E))
        piles = [(np.full(n, float(p.t)), b.elements.index(p.element), FORMS.index(p.form), p)
                 for p in sh.stockpiles]
        ctl = [(c.start[sl], c.end[sl], c.delay[sl], c.scale[sl], c) for c in sh.controls]
        outs = [(o.start[sl], o.end[sl], o.share[sl], o) for o in sh.outages]
        shifts = [(s.start[sl], s.end[sl], s.factor[sl]) for s in sh.shifts]
        caps = [(c.start[sl], c) for c in sh.capacities]
        sub_rate = beh.substitution_rate_per_year / 12.0
        resp_step = beh.supply_response_rate_per_year / 12.0 * b.world_demand
        resp_cap = beh.supply_response_max * b.world_demand
        full, tau = beh.substitution_full_price_ratio, beh.restock_months
        max_resid = 0.0
        rb = b.recycling if b.recycling is not None and len(b.recycling.regions) else None
        if rb is not None and not sh.recycling and not np.any(
                rb.capacity_t_magnet < rb.collection_rate * rb.preprocessing_yield
                * rb.eol_t_magnet):
            rb = None  # no policy and capacity never binds: recycling stays at today's level
        if rb is not None:
            R = len(rb.regions)
            recs = [(r.start[sl], r) for r in sh.recycling]
            cap_resp = np.zeros((n, R))  # capacity added in response to prices, t magnet/month
            rec_lead = rb.lead_months
            rev_hist = np.ones((int(rec_lead.max()) + 1, n))  # value ratio of recycled output

        for t in range(self.months):
            mid = t + 0.5
            p_out, p_in = np.exp(lp_out), np.exp(lp_in)
            # 1. demand by group: need (after shifts and substitution) and want (after the
            #    price response), and the total wanted of each form [3, P, E]
            need_out, want_out, D_out = self._demand(self.d0_out, self.shift_out, shifts,
                                                     sub_out, p_out / P0o, mid)
            need_in, want_in, D_in = self._demand(self.d0_in, self.shift_in, shifts, sub_in,
                                                  p_in / P0i, mid)

            # 2. mines, separation and processing capacity after outages and new capacity
            lost_mine = np.zeros((n, E))  # all mine output lost
            lost_mine_in = np.zeros((n, E))  # of which inside
            lost_to_in = np.zeros((n, E))  # of which was routed inside
            lost_sep_out, lost_sep_in = np.zeros((n, E)), np.zeros((n, E))
            lost_cap = {"metal": np.zeros((n, E)), "magnet": np.zeros((n, E))}
            for st, en, share, o in outs:
                lost = np.where(_active(st, en, mid), share, 0.0)[:, None] * o.elements
                r = o.region
                if o.stage == "mining":
                    amount = lost * b.mine[r]
                    lost_mine += amount
                    lost_to_in += amount * b.to_in[r]
                    if not self.is_out[r]:
                        lost_mine_in += amount
                elif o.stage == "separation":
                    if self.is_out[r]:
                        lost_sep_out += lost * b.sep_cap_out_region[r]
                    else:
                        lost_sep_in += lost * b.sep_cap_in
                else:
                    lost_cap[o.stage] += lost * b.out_region_share[o.stage][r] * \
                        b.cap_out[o.stage]
            mined_in = self.mined_in0 - lost_mine_in
            mined_out = self.mined_out0 - (lost_mine - lost_mine_in)
            conc_to_in = self.conc_to_in0 - (lost_to_in - lost_mine_in)
            feed_out = self.feed_out0 - (lost_mine - lost_mine_in) + (lost_to_in - lost_mine_in)
            sep_cap_out = np.maximum(self.sep_cap_out0 - lost_sep_out, 0.0)
            cap = {f: np.maximum(b.cap_out[f] - lost_cap[f], 0.0) for f in ("metal", "magnet")}
            new_sep = np.zeros((n, E))
            for st, c in caps:
                frac = (np.clip((mid - st) / c.ramp, 0, 1) if c.ramp > 0
                        else (mid >= st).astype(float))
                add = frac[:, None] * c.t_per_month * c.element_mix
                if c.form == "oxide":
                    new_sep = new_sep + add
                else:
                    cap[c.form] = cap[c.form] + add
            # new separation capacity outside takes concentrate that used to go inside
            divert = np.minimum(new_sep / ys, conc_to_in)
            feed_out, conc_to_in = feed_out + divert, conc_to_in - divert
            feed_in = mined_in + conc_to_in
            sep_out = np.minimum(feed_out * ys, sep_cap_out + new_sep)
            # secondary supply outside: recycling policies ramp collection, pre-processing
            # yield and capacity from today's values; capacity also grows with prices
            sec = np.zeros((n, E))
            if rb is not None:
                coll = np.repeat(rb.collection_rate[None], n, 0)
                pre = np.repeat(rb.preprocessing_yield[None], n, 0)
                cap_pol = np.repeat(rb.capacity_t_magnet[None], n, 0)
                for st, r in recs:
                    frac = (np.clip((mid - st) / r.ramp, 0, 1) if r.ramp > 0
                            else (mid >= st).astype(float))
                    for arr, target in ((coll, r.collection_rate), (pre, r.preprocessing_yield),
                                        (cap_pol, r.capacity_t_magnet)):
                        if not np.isnan(target):
                            arr[:, r.region] += frac * (target - arr[:, r.region])
                rec_feed = coll * pre * rb.eol_t_magnet
                rec_cap = cap_pol + cap_resp
                # only what lies above each region's base-year recovery is added (exactly 0
                # where nothing changed)
                extra = rb.recovered_share(coll, pre, rec_cap) - self.rec_share0
                sec = np.maximum(extra, 0.0) @ rb.eol_t

            # 3. OUT's purchases (use + restocking) and its requests to IN under controls
            allowed = np.ones((3, n, E))
            for st, en, delay, scale, c in ctl:
                since = mid - st - delay
                idx = np.clip(np.searchsorted(c.points, np.maximum(since, 0.0), "right") - 1,
                              0, None)
                share = np.where(since >= 0, c.shares[idx], 0.0)
                approve = np.where(_active(st, en, mid), np.clip(share * scale, 0, 1), 1.0)
                allowed *= 1.0 - c.affected[:, None, :] * (1.0 - approve[None, :, None])
            s = self.imp_share
            restock = [(self.tgt_out[f] - inv[f]) / tau for f in range(3)]
            buy_mag = np.maximum(D_out[MAG] + restock[MAG], 0.0)
            ask_mag = s[MAG] * buy_mag * allowed[MAG]
            m_star = np.clip(buy_mag - ask_mag, 0.0, cap["magnet"])
            req_met = D_out[MET] + m_star / yg
            buy_met = np.maximum(req_met + restock[MET], 0.0)
            ask_met = s[MET] * buy_met * allowed[MET]
            t_star = np.clip(buy_met - ask_met, 0.0, cap["metal"])
            req_ox = D_out[OX] + t_star / ym
            buy_ox = np.maximum(req_ox + restock[OX], 0.0)
            ask_ox = s[OX] * buy_ox * allowed[OX]

            # 4. IN: separation matched to needs; home use first, then approved exports
            home = D_in[OX] + D_in[MET] / ym + D_in[MAG] / (ym * yg)
            exp_need = ask_ox + ask_met / ym + ask_mag / (ym * yg)
            sep_pot = np.minimum(feed_in * ys, np.maximum(b.sep_cap_in - lost_sep_in, 0.0))
            sep_in = np.clip(home + exp_need + (self.tgt_in - inv_in) / tau, 0.0, sep_pot)
            avail_in = sep_in + inv_in
            f_home = np.minimum(1.0, _safe_div(avail_in, home, 1.0))
            left = avail_in - f_home * home
            f_exp = np.minimum(1.0, _safe_div(left, exp_need, 1.0))
            inv_in_new = left - f_exp * exp_need
            imp = [f_exp * ask_ox, f_exp * ask_met, f_exp * ask_mag]
            served_in = f_home[None] * D_in
            loss_in = (sep_in * (1 / ys - 1)
                       + (f_home * (D_in[MET] + D_in[MAG] / yg) + imp[MET] + imp[MAG] / yg)
                       * (1 / ym - 1)
                       + (f_home * D_in[MAG] + imp[MAG]) * (1 / yg - 1))

            # 5. OUT: oxide (uses and metal making), metal (uses and magnet making), magnets
            ratio_out = p_out / P0o
            rel = [np.zeros((n, E)) for _ in range(3)]
            reqs = [req_ox, req_met, D_out[MAG]]
            made = [sep_out + resp + sec, None, None]
            fill, inv_new = [None] * 3, [None] * 3
            for f in range(3):
                if f == MET:
                    made[f] = fill[OX] * t_star
                elif f == MAG:
                    made[f] = fill[MET] * m_star
                avail = made[f] + imp[f] + inv[f]
                for hold, e_i, form, pile in piles:
                    if form != f:
                        continue
                    on = ratio_out[:, e_i] >= pile.release_price_ratio
                    gap = np.maximum(reqs[f][:, e_i] - avail[:, e_i], 0.0)
                    take = np.minimum(np.minimum(hold, pile.max_release_t_per_month or np.inf),
                                      gap) * on
                    hold -= take
                    rel[f][:, e_i] += take
                avail = avail + rel[f]
                fill[f] = np.minimum(1.0, _safe_div(avail, reqs[f], 1.0))
                inv_new[f] = avail - fill[f] * reqs[f]
            served_out = np.stack([fill[OX] * D_out[OX], fill[MET] * D_out[MET],
                                   fill[MAG] * D_out[MAG]])
            loss_out = ((sep_out + resp) * (1 / ys - 1) + made[MET] * (1 / ym - 1)
                        + made[MAG] * (1 / yg - 1))

            # mass balance: production + imports + releases = use + exports + stock change
            # + losses, in each zone
            imports_out = imp[OX] + imp[MET] + imp[MAG]
            releases = rel[OX] + rel[MET] + rel[MAG]
            d_stock_out = sum(inv_new[f] - inv[f] for f in range(3)) + (feed_out - sep_out / ys)
            res_out = (mined_out + resp / ys + sec + imports_out + releases
                       - served_out.sum(0) - conc_to_in - d_stock_out - loss_out)
            d_stock_in = (inv_in_new - inv_in) + (feed_in - sep_in / ys)
            res_in = (mined_in + conc_to_in - served_in.sum(0) - imports_out - d_stock_in
                      - loss_in)
            scale_ = np.maximum(mined_in + mined_out + imports_out + releases + resp + sec,
                                1e-9)
            max_resid = max(max_resid, float((np.abs(res_out) / scale_).max()),
                            float((np.abs(res_in) / scale_).max()))

            # rationing by priority within each form; unmet = need - served, by class
            short_out = _shortfall(need_out, want_out, served_out, D_out, self.form_groups)
            short_in = _shortfall(need_in, want_in, served_in, D_in, self.form_groups)
            inv, inv_in = inv_new, inv_in_new
            record(t, {
                "price_out": p_out * (b.price_out > 0), "price_in": p_in * (b.price_in > 0),
                "inventory_out": inv[OX] + inv[MET] + inv[MAG], "inventory_in": inv_in,
                "supply_out": sep_out + resp + sec + imports_out + releases,
                "supply_in": sep_in, "secondary_out": sec,
                "use_out": served_out.sum(0), "use_in": served_in.sum(0),
                "exports_in": imports_out, "releases": releases, "new_supply": resp,
                "short_out": short_out, "short_in": short_in,
                "need_out": need_out, "need_in": need_in,
            })

            # 6. prices move towards base x (cover / target)^-exponent, smoothed
            cover_out = np.maximum(_safe_div(inv[OX] + inv[MET] + inv[MAG], self.tgt_out_total,
                                             1.0), beh.price_floor_cover)
            cover_in = np.maximum(_safe_div(inv_in, self.tgt_in, 1.0), beh.price_floor_cover)
            a, k = beh.price_smoothing, beh.price_cover_exponent
            lp_out = a * lp_out + (1 - a) * (np.log(P0o) - k * np.log(cover_out))
            lp_in = a * lp_in + (1 - a) * (np.log(P0i) - k * np.log(cover_in))
            # 7. substitution and new supply outside build up while prices are high
            r_out, r_in = np.exp(lp_out) / P0o, np.exp(lp_in) / P0i
            sub_out = np.minimum(beh.substitution_max, sub_out + sub_rate * _ramp(r_out, full))
            sub_in = np.minimum(beh.substitution_max, sub_in + sub_rate * _ramp(r_in, full))
            ratio_hist[t % (lead + 1)] = r_out  # ring buffer: slot t+1 holds month t-lead
            resp = np.minimum(resp_cap, resp + resp_step * _ramp(ratio_hist[(t + 1) % (lead + 1)],
                                                                 full))
            if rb is not None:
                # recycling capacity grows, lead_months after the value of recycled output
                # rose, while it is short of the collected feed
                size = rev_hist.shape[0]
                rev_hist[t % size] = r_out @ self.sec_weight
                lag = t - rec_lead  # the month whose signal reaches month t + 1
                signal = np.where(lag[:, None] >= 0, rev_hist[lag % size], 1.0).T  # [P, R]
                grow = (rec_cap < rec_feed) * _ramp(signal, full) * rb.expansion_t_magnet
                cap_resp = cap_resp + grow
        return max_resid
