"""The stockpile LP by path decomposition (L-shaped / Benders), for many paths.

Same problem as `stockpile.solve` (the monolithic LP stays the reference; tests check both
give the same optimum), split where it is separable:

- master: purchases in price blocks (budget, caps, minimum days) and one value variable per
  cluster of paths (and the CVaR threshold), with cuts;
- subproblems: each path's releases given the holdings (the second stage after `segment`),
  built once as block-diagonal HiGHS models over batches of paths; every iteration changes
  only the holdings' row bounds and re-solves from the previous basis (dual simplex warm
  start), so an iteration costs about one pass over the paths. The row duals of the holdings
  constraints are the subgradients of each path's loss.

Cuts are aggregated over clusters of paths of similar size (multi-cut with a bounded number
of value variables: the master stays small whatever the number of paths) and a cut that has
been slack for `DROP_AFTER` iterations is dropped. An L-infinity trust region around the
incumbent (Linderoth and Wright 2003) keeps early iterations from jumping between the corners
of the budget polytope. Convergence: stop when the model's best value within the trust region
is within `tol` of the incumbent's true value, which for a convex model that is exact at the
incumbent proves optimality. Batches can run on threads (HiGHS releases the GIL while it
solves).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from oreflow.stockpile import (
    DAYS_PER_YEAR,
    MUSD,
    TIE_BREAK,
    Economy,
    PlanError,
    Segments,
    Solution,
    Terms,
    carry_usd_per_year,
    cvar,
    loss_without_releases,
)

INF = 1e30  # HiGHS's infinity is 1e20 or more; anything above counts as none
BATCH_PATHS = 400
"""Paths per subproblem model: large enough to amortise HiGHS's per-call cost, small enough
for quick warm-started re-solves."""
CLUSTERS = 64
"""Value variables of the master (paths are grouped by size into this many clusters)."""
DROP_AFTER = 8
"""Iterations a cut may stay slack before it is dropped."""


@dataclass
class BendersInfo:
    iterations: int = 0
    cuts: int = 0
    dropped: int = 0
    seconds: dict = field(default_factory=dict)
    gap_musd: float = float("nan")


def _highs(threads: int = 1):
    import highspy

    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("threads", threads)
    return h


class _Batch:
    """One block-diagonal release model over a batch of paths: x >= 0 per (path, element,
    holding form, demand group, segment) that can be served and a loss >= 0 per (path, group,
    segment) short of anything; rows: holdings per (path, element, form), cover per bucket
    served by several forms, tolling per (path, stage), and the Leontief rows loss + v x
    served >= v x unmet per (path, element, group, segment) short (`stockpile._solve`)."""

    def __init__(self, seg: Segments, econ: Economy, paths: np.ndarray):
        import highspy

        F = 3
        U = seg.unmet_t[paths]  # [n, E, G, K]
        n, E, G, K = U.shape
        gf = econ.group_form
        serve_form = econ.yields[:, gf] > 0  # [F, G]
        mask = ((U[:, :, None] > 0) & seg.serves[paths][:, None]
                & serve_form[None, None, :, :, None] & econ.allowed[None, :, :, None, None])
        p, e, f, g, k = np.nonzero(mask)
        nx = len(p)
        inv_yield = np.divide(1.0, econ.yields[:, gf], out=np.zeros((F, G)),
                              where=econ.yields[:, gf] > 0)
        v = econ.value_usd_per_t.T / MUSD  # [E, G] MUSD per t
        # rows: holdings
        hkey = (p * E + e) * F + f
        held_keys, held_row = np.unique(hkey, return_inverse=True)
        rows_i = [held_row]
        rows_j = [np.arange(nx)]
        rows_v = [inv_yield[f, g]]
        nrow = len(held_keys)
        lower, upper = [np.full(nrow, -INF)], [np.zeros(nrow)]
        # cover rows where several forms serve one bucket
        bkey = ((p * E + e) * G + g) * K + k
        bkeys, binv, bcount = np.unique(bkey, return_inverse=True, return_counts=True)
        several = bcount[binv] > 1
        if several.any():
            ckeys, crow = np.unique(bkey[several], return_inverse=True)
            rows_i.append(nrow + crow)
            rows_j.append(np.flatnonzero(several))
            rows_v.append(np.ones(int(several.sum())))
            pe, rest = np.divmod(ckeys, G * K)
            gg, kk = np.divmod(rest, K)
            pp, ee = np.divmod(pe, E)
            lower.append(np.full(len(ckeys), -INF))
            upper.append(U[pp, ee, gg, kk])
            nrow += len(ckeys)
        # tolling of converted releases, per path and stage
        toll_first = nrow
        toll_path = []
        for stage in (1, 2):
            through = (f < stage) & (stage <= gf[g])
            if not through.any():
                continue
            cap = econ.conversion_cap_t_per_month[stage] * seg.months[paths, stage]
            tp, trow = np.unique(p[through], return_inverse=True)
            rows_i.append(nrow + trow)
            rows_j.append(np.flatnonzero(through))
            rows_v.append(np.ones(int(through.sum())))
            lower.append(np.full(len(tp), -INF))
            upper.append(cap[tp])
            toll_path.append(tp)
            nrow += len(tp)
        self.toll_first = toll_first
        self.toll_path = np.concatenate(toll_path) if toll_path else np.zeros(0, np.int64)
        # Leontief rows: one per (path, element, group, segment) short; a loss column per
        # (path, group, segment) short of anything
        short = (U > 0) & (v[None, :, :, None] > 0)
        sp, se, sg, sk = np.nonzero(short)
        lkey = (sp * G + sg) * K + sk
        loss_keys, loss_col = np.unique(lkey, return_inverse=True)
        nl = len(loss_keys)
        rkey = ((sp * E + se) * G + sg) * K + sk
        row_of = dict(zip(rkey.tolist(), range(len(rkey)), strict=True))
        xrow = np.array([row_of.get(int(r), -1) for r in bkey], np.int64)
        hit = xrow >= 0
        rows_i += [nrow + np.arange(len(rkey)), nrow + xrow[hit]]
        rows_j += [nx + loss_col, np.flatnonzero(hit)]
        rows_v += [np.ones(len(rkey)), v[e[hit], g[hit]]]
        lower.append(v[se, sg] * U[sp, se, sg, sk])
        upper.append(np.full(len(rkey), INF))
        nrow += len(rkey)
        ri, rj, rv = (np.concatenate(x) for x in (rows_i, rows_j, rows_v))
        order = np.lexsort((ri, rj))  # column-major for HiGHS's CSC
        ri, rj, rv = ri[order], rj[order], rv[order]
        ncol = nx + nl
        start = np.searchsorted(rj, np.arange(ncol + 1))
        lp = highspy.HighsLp()
        lp.num_col_, lp.num_row_ = ncol, nrow
        lp.col_cost_ = np.concatenate([np.zeros(nx), np.ones(nl)])
        lp.col_lower_ = np.zeros(ncol)
        lp.col_upper_ = np.concatenate([U[p, e, g, k], np.full(nl, INF)])
        lp.row_lower_ = np.concatenate(lower)
        lp.row_upper_ = np.concatenate(upper)
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.start_ = start.astype(np.int32)
        lp.a_matrix_.index_ = ri.astype(np.int32)
        lp.a_matrix_.value_ = rv
        self.h = _highs()
        self.h.setOptionValue("simplex_strategy", 1)  # dual simplex: warm starts on RHS
        if nx:
            self.h.passModel(lp)
        self.paths, self.n, self.nx = paths, n, nx
        self.held_p, rem = np.divmod(held_keys, E * F)
        self.held_e, self.held_f = np.divmod(rem, F)
        self.held_rows = np.arange(len(held_keys), dtype=np.int32)
        self.loss_path = loss_keys // (G * K)
        self.total_musd = (U * v[None, :, :, None]).max(1).sum((1, 2))  # no releases

    def solve(self, held_t: np.ndarray):
        """Loss per path [n] (MUSD), d loss / d holdings [n, E, F] (MUSD per t), and whether
        a path's tolling capacity binds [n]."""
        n = self.n
        E, F = held_t.shape
        grad = np.zeros((n, E, F))
        if self.nx == 0:
            return self.total_musd.copy(), grad, np.zeros(n, bool)
        ub = held_t[self.held_e, self.held_f].astype(float)
        self.h.changeRowsBounds(len(self.held_rows), self.held_rows,
                                np.full(len(ub), -INF), ub)
        self.h.run()
        status = self.h.getModelStatus()
        import highspy

        if status != highspy.HighsModelStatus.kOptimal:
            raise PlanError(f"a release subproblem ended {self.h.modelStatusToString(status)}")
        sol = self.h.getSolution()
        col = np.asarray(sol.col_value)
        loss = np.bincount(self.loss_path, weights=col[self.nx:], minlength=n)
        row_dual = np.asarray(sol.row_dual)
        grad[self.held_p, self.held_e, self.held_f] = row_dual[:len(self.held_rows)]
        toll = row_dual[self.toll_first:self.toll_first + len(self.toll_path)]
        binds = np.zeros(n, bool)
        binds[self.toll_path[np.abs(toll) > 1e-12]] = True
        return np.maximum(loss, 0.0), grad, binds


class _Master:
    """Purchases in price blocks, value variables and cuts, in one HiGHS model that grows and
    shrinks by rows between warm-started solves. Columns: purchases | expected loss per
    cluster (theta_L) | its tolling-free relaxation per cluster and element (phi) | with CVaR,
    the excess over the threshold per cluster (theta_Z) and the threshold eta."""

    def __init__(self, econ: Economy, terms: Terms, budget_usd: float, clusters: int,
                 cvar_weight: float, cvar_alpha: float, min_days: np.ndarray | None):
        import highspy

        E, F = econ.allowed.shape
        B = terms.price_blocks
        cap_t = terms.max_buy_share_per_month * econ.market_t_per_month \
            * terms.purchase_window_months
        price = econ.price_usd_per_t[:, :, None] * (
            1 + terms.purchase_price_slope * (np.arange(B) + 0.5) / B)  # [E, F, B]
        e, f, b = np.nonzero(np.broadcast_to(econ.allowed[:, :, None], (E, F, B)))
        self.buy_e, self.buy_f = e, f
        nb = len(e)
        C = clusters
        self.price_musd = price[e, f, b] / MUSD
        self.E, self.F, self.C, self.nb = E, F, C, nb
        self.cvar = cvar_weight > 0
        self.thetaL, self.phi0 = nb, nb + C
        self.thetaZ = nb + C + C * E
        self.eta = self.thetaZ + C
        ncol = self.thetaZ + ((C + 1) if self.cvar else 0)
        cost = np.zeros(ncol)
        cost[:nb] = TIE_BREAK * MUSD * self.price_musd
        cost[nb:nb + C] = 1.0 - cvar_weight
        lower, upper = np.zeros(ncol), np.full(ncol, INF)
        upper[:nb] = (cap_t / B)[e, f]
        if self.cvar:
            cost[self.thetaZ:self.thetaZ + C] = cvar_weight / (1 - cvar_alpha)
            cost[self.eta] = cvar_weight
        h = _highs()
        h.setOptionValue("simplex_strategy", 1)
        h.addVars(ncol, lower, upper)
        h.changeColsCost(ncol, np.arange(ncol, dtype=np.int32), cost)
        # budget: purchase (1 + loan x tenor) + tenor x carry x held <= budget
        coef = (self.price_musd * (1 + terms.loan_rate_per_year * terms.tenor_years)
                + terms.tenor_years * econ.carry_usd_per_t_year[e, f] / MUSD)
        h.addRow(-INF, (budget_usd or 0.0) / MUSD, nb, np.arange(nb, dtype=np.int32), coef)
        if min_days is not None and np.any(min_days > 0):
            need = np.asarray(min_days, float) / DAYS_PER_YEAR * econ.use_t_per_year
            for el in np.flatnonzero((need > 0) & econ.allowed.any(1)):
                idx = np.flatnonzero(e == el).astype(np.int32)
                h.addRow(need[el], INF, len(idx), idx, np.ones(len(idx)))
        # theta_L >= sum_e phi_ce: the tolling-free relaxation bounds the loss from below
        for c in range(C):
            idx = np.concatenate([[nb + c], self.phi0 + c * E + np.arange(E)])
            h.addRow(0.0, INF, len(idx), idx.astype(np.int32),
                     np.concatenate([[1.0], -np.ones(E)]))
        self.h = h
        self.cap_ef = cap_t
        self.base_rows = h.getNumRow()
        # trust-region rows on the holdings h[e,f] = sum of its blocks
        self.tr_keys = np.unique(e * F + f)
        for key in self.tr_keys:
            idx = np.flatnonzero(e * F + f == key).astype(np.int32)
            h.addRow(-INF, INF, len(idx), idx, np.ones(len(idx)))
        self.tr_rows = np.arange(self.base_rows, self.base_rows + len(self.tr_keys),
                                 dtype=np.int32)
        self.cut_age: list[int] = []
        self.status_ok = highspy.HighsModelStatus.kOptimal

    def _row(self, col: int, g: np.ndarray, rhs: float, g_eta: float = 0.0,
             buys: np.ndarray | None = None) -> None:
        """col >= rhs + g . h (+ g_eta eta), h the holdings of the `buys` columns."""
        buys = np.arange(self.nb) if buys is None else buys
        coef = -g[self.buy_f[buys]] if g.ndim == 1 else -g[self.buy_e[buys], self.buy_f[buys]]
        nz = coef != 0
        idx = np.concatenate([buys[nz], [col]])
        vals = np.concatenate([coef[nz], [1.0]])
        if g_eta != 0:
            idx, vals = np.append(idx, self.eta), np.append(vals, -g_eta)
        self.h.addRow(rhs, INF, len(idx), idx.astype(np.int32), vals)
        self.cut_age.append(0)

    def add_cuts(self, ev: dict, held: np.ndarray, eta: float) -> int:
        """Cuts at (held, eta): expected loss and, with CVaR, excess per cluster; the
        relaxation per cluster and element where no path's tolling binds (there the
        subproblem's duals are those of the relaxation)."""
        n = 0
        for c in range(self.C):
            g = ev["gL"][c]
            self._row(self.thetaL + c, g, ev["L"][c] - float((g * held).sum()))
            n += 1
            if self.cvar:
                g = ev["gZ"][c]
                self._row(self.thetaZ + c, g, ev["Z"][c] - float((g * held).sum())
                          - ev["gEta"][c] * eta, ev["gEta"][c])
                n += 1
        for c in ev["free"]:
            for el in range(self.E):
                g = ev["gL"][c, el]
                self._row(self.phi0 + c * self.E + el, g, ev["Le"][c, el] - float(g @ held[el]),
                          buys=np.flatnonzero(self.buy_e == el))
                n += 1
        return n

    def held(self, buy: np.ndarray) -> np.ndarray:
        out = np.zeros((self.E, self.F))
        np.add.at(out, (self.buy_e, self.buy_f), buy)
        return out

    def set_region(self, centre: np.ndarray | None, radius: float) -> None:
        """Box of `radius` x each holding's purchase cap around `centre`."""
        if centre is None:
            lo, hi = np.full(len(self.tr_rows), -INF), np.full(len(self.tr_rows), INF)
        else:
            c = centre.ravel()[self.tr_keys]
            span = self.cap_ef.ravel()[self.tr_keys] * radius
            lo, hi = c - span, c + span
        self.h.changeRowsBounds(len(self.tr_rows), self.tr_rows, lo, hi)

    def solve(self) -> tuple[np.ndarray, float, float]:
        self.h.run()
        if self.h.getModelStatus() != self.status_ok:
            raise PlanError(f"the stockpile problem is "
                            f"{self.h.modelStatusToString(self.h.getModelStatus()).lower()}")
        x = np.asarray(self.h.getSolution().col_value)
        return (x[:self.nb], float(x[self.eta]) if self.cvar else 0.0,
                float(self.h.getInfo().objective_function_value))

    def drop_slack(self) -> int:
        """Age cuts by their slack; drop those slack for DROP_AFTER iterations."""
        n_cut = len(self.cut_age)
        if not n_cut:
            return 0
        first = self.base_rows + len(self.tr_rows)
        duals = np.asarray(self.h.getSolution().row_dual)[first:first + n_cut]
        age = np.where(np.abs(duals) > 1e-12, 0, np.asarray(self.cut_age) + 1)
        drop = np.flatnonzero(age > DROP_AFTER)
        if len(drop):
            self.h.deleteRows(len(drop), (first + drop).astype(np.int32))
        self.cut_age = list(np.delete(age, drop))
        return len(drop)


def solve_benders(seg: Segments, econ: Economy, terms: Terms, weight: np.ndarray, *,
                  budget_usd: float, cvar_weight: float = 0.0, cvar_alpha: float = 0.95,
                  min_days: np.ndarray | None = None, clusters: int = CLUSTERS,
                  batch_paths: int = BATCH_PATHS, threads: int = 2, tol: float = 1e-7,
                  max_iterations: int = 500) -> tuple[Solution, BendersInfo]:
    """Optimise holdings within `budget_usd` by path decomposition; the same optimum as
    `stockpile.solve` (the tie-break included)."""
    started = time.perf_counter()
    info = BendersInfo()
    P = len(weight)
    w = np.asarray(weight, float) / float(np.sum(weight))
    total = loss_without_releases(seg, econ) / MUSD
    order = np.argsort(total, kind="stable")
    C = max(1, min(clusters, P))
    cluster_of = np.empty(P, np.int64)
    cluster_of[order] = np.arange(P) * C // P
    batches = [_Batch(seg, econ, idx) for idx in np.array_split(np.arange(P),
                                                                 max(1, -(-P // batch_paths)))]
    master = _Master(econ, terms, budget_usd, C, cvar_weight, cvar_alpha, min_days)
    built = time.perf_counter()
    a, cw = cvar_alpha, cvar_weight
    pool = ThreadPoolExecutor(max(1, threads)) if threads > 1 and len(batches) > 1 else None

    def evaluate(held: np.ndarray, eta: float, buy: np.ndarray) -> dict:
        """Per-cluster values and subgradients at (held, eta), and the true objective."""
        res = list(pool.map(lambda b: b.solve(held), batches)) if pool else \
            [b.solve(held) for b in batches]
        loss = np.concatenate([r[0] for r in res])  # [P]
        grad = np.concatenate([r[1] for r in res])  # [P, E, F]

        def by_cluster(weights, arr=None):
            if arr is None:
                return np.bincount(cluster_of, weights=weights, minlength=C)
            out = np.zeros((C, *arr.shape[1:]))
            np.add.at(out, cluster_of, weights.reshape(-1, *[1] * (arr.ndim - 1)) * arr)
            return out

        # the Leontief loss does not split by element: no per-element relaxation cuts
        ev = {"loss": loss, "L": by_cluster(w * loss), "gL": by_cluster(w, grad),
              "free": np.zeros(0, np.int64)}
        true = (1 - cw) * float(w @ loss) + TIE_BREAK * MUSD * float(master.price_musd @ buy)
        if cw > 0:
            over = (loss > eta).astype(float)
            ev["Z"] = by_cluster(w * np.maximum(loss - eta, 0.0))
            ev["gZ"] = by_cluster(w * over, grad)
            ev["gEta"] = -by_cluster(w * over)
            true += cw * eta + cw / (1 - a) * float(ev["Z"].sum())
        ev["true"] = true
        return ev

    try:
        held = np.zeros(econ.allowed.shape)
        buy = np.zeros(master.nb)
        eta = 0.0
        ev = evaluate(held, eta, buy)
        incumbent = ev["true"]
        info.cuts += master.add_cuts(ev, held, eta)
        best = (buy, held, eta, ev["loss"])
        radius = 1.0  # share of each holding's purchase cap
        for it in range(1, max_iterations + 1):
            master.set_region(best[1], radius)
            buy_new, eta_new, model = master.solve()
            info.dropped += master.drop_slack()
            if incumbent - model <= tol * max(1.0, abs(incumbent)):
                # the model's best within the region is the incumbent's value; that proves
                # optimality only if the region does not bind: check against the whole model
                master.set_region(None, radius)
                _, _, bound = master.solve()
                if incumbent - bound <= tol * max(1.0, abs(incumbent)):
                    info.iterations = it
                    info.gap_musd = max(incumbent - bound, 0.0)
                    break
                radius = min(radius * 4.0, 1.0)
                continue
            held_new = master.held(buy_new)
            ev = evaluate(held_new, eta_new, buy_new)
            true = ev["true"]
            info.cuts += master.add_cuts(ev, held_new, eta_new)
            predicted = incumbent - model
            if incumbent - true >= 1e-4 * predicted:  # a serious step
                step = float(np.max(np.abs(held_new - best[1]) / np.maximum(master.cap_ef,
                                                                              1e-300)))
                if incumbent - true >= 0.5 * predicted and step >= 0.99 * radius:
                    radius = min(radius * 2.0, 1.0)
                best, incumbent = (buy_new, held_new, eta_new, ev["loss"]), true
            elif incumbent - true < -0.5 * predicted:  # the model was far too optimistic
                radius = max(radius * 0.5, 1e-9)
            info.iterations = it
        else:
            raise PlanError(f"the decomposition did not converge in {max_iterations} "
                            "iterations")
    finally:
        if pool:
            pool.shutdown()
    buy, held, eta, loss = best
    price_blocks = np.zeros(econ.allowed.shape)
    np.add.at(price_blocks, (master.buy_e, master.buy_f), buy * master.price_musd * MUSD)
    unserved = loss * MUSD
    obj = (1 - cvar_weight) * float(w @ unserved)
    if cvar_weight > 0:
        obj += cvar_weight * cvar(unserved, w, cvar_alpha)
    done = time.perf_counter()
    info.seconds = {"build": built - started, "solve": done - built}
    sol = Solution(held, price_blocks, carry_usd_per_year(held, price_blocks, econ, terms),
                   unserved, obj, dict(info.seconds))
    return sol, info
