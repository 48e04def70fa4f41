"""One month of the market, fused per path (numba).

The month is a sequence of phases, each a small function over one path's state; `step`
runs them for every path of a chunk in parallel (`prange`). The phases, in order:

1. `demand`      need (base x shifts x (1 - substitution)) and want (need x price^elasticity)
2. `orders`      purchases (wants, buyers' and merchants' restocking, the next stage's
                 inputs) become requests to each origin in the base-year sourcing shares
3. `licences`    requests to a controlling origin join its licence queue; a review time
                 (fractional months, split between two months) later a share is approved
4. `produce`     separation, metal and magnet making move towards their orders (partial
                 adjustment) within capacity and the inputs on hand; swarf goes back to oxide
5. `ship`        origins serve requests from what they hold beyond their home wants; a share
                 of a controlled origin's deliveries is pooled (leakage); requests left unmet
                 are re-sourced from other origins' spare stock
   `arbitrage`   merchants in markets that control nothing sell stock to markets whose
                 price exceeds theirs by more than the trade margin (off by default)
6. `use`         each region's lines are served by priority; buyers draw their own stocks,
                 spread across buyers (gamma-distributed cover): unmet want is physical
                 shortage, want given up because of price is demand reduction
7. `prices`      each region's price moves towards base x (cover / target)^-k, smoothed
8. `respond`     substitution builds up while prices are high (by element, and by magnet
                 grade where magnets themselves are scarce)

Equations and parameters: docs/model.md, section 3. Units: t REO-eq a month (magnets: t of
finished magnet). Every array argument is one path's slice; `step` takes the [P, ...] arrays.

Speed (issue 12, part 11). A path-month is a few thousand scalar operations, so the step is
bound by arithmetic, not memory: the phases loop over the non-zero entries of the sparse base
year (`Static`: grade compositions, controlled links, swarf routes, an origin's links as
index lists built once by `static_arrays`) and keep their scratch space per thread, in cache.
Every sum keeps its order and only terms that are exactly zero are skipped, so the results are
those of the dense loops to the last bit.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit, prange

OX, MET, MAG = 0, 1, 2

JIT = {"cache": True, "error_model": "numpy"}
"""Compilation options of every phase. error_model "numpy": a float division by zero gives
inf or nan instead of raising, which spares a test and a branch on every division (every
division here is guarded, so the results are those of the default model)."""

COVER_BUCKETS = 1024
"""Buckets of the index that speeds up the inverse of the buyers' cover table (a power of
two, so that a share times COVER_BUCKETS is exact)."""


class Static(NamedTuple):
    """What does not change during a run: the base year and its sparse index lists."""

    own_share: np.ndarray  # [M, I] share of an item's use a region sources from itself
    link_o: np.ndarray  # [NL] trade links origin -> dest for an item
    link_d: np.ndarray
    link_i: np.ndarray
    link_w: np.ndarray  # [NL] base-year sourcing share
    org_ptr: np.ndarray  # [M + 1] an origin's links: org_j[org_ptr[o]:org_ptr[o + 1]]
    org_j: np.ndarray
    S0: np.ndarray  # [M, I] merchant stock targets
    B0: np.ndarray  # [M, L] buyers' stock targets
    demand0: np.ndarray  # [M, L]
    line_item: np.ndarray  # [L]
    line_order: np.ndarray  # [L] lines by (item, priority)
    cls_ptr: np.ndarray  # [C + 1] classes (item, priority) as runs of line_order
    cls_item: np.ndarray  # [C]
    cls_first: np.ndarray  # [C] first class of its item
    elasticity: np.ndarray  # [L]
    item_form: np.ndarray  # [I]
    line_sub: np.ndarray  # [L] a line's substitution: its element's, or E + its grade's
    gw_ptr: np.ndarray  # [G + 1] grade -> (element, value weight), non-zero weights
    gw_e: np.ndarray
    gw_v: np.ndarray
    gw_used: np.ndarray  # elements with a positive value weight in some grade
    gw_used_metal: np.ndarray  # their metal items (E + element)
    mg_ptr: np.ndarray  # [G + 1] grade -> (element, metal, swarf) per t magnet, non-zero
    mg_e: np.ndarray
    mg_i: np.ndarray  # metal item (E + element)
    mg_metal: np.ndarray
    mg_swarf: np.ndarray
    me_ptr: np.ndarray  # [E + 1] element -> (grade, metal per t magnet), non-zero
    me_g: np.ndarray
    me_i: np.ndarray  # grade item (2 E + grade)
    me_v: np.ndarray
    sw_src: np.ndarray  # swarf routes (src, element, dst, share > 0) in that order
    sw_e: np.ndarray
    sw_dst: np.ndarray
    sw_v: np.ndarray
    price0: np.ndarray  # [M, E]
    line_sector: np.ndarray  # [L]
    line_h: np.ndarray  # [L] number of elements in a line's item
    line_e: np.ndarray  # [L, H] a line's elements and t element per unit (first line_h)
    line_f: np.ndarray
    line_tot: np.ndarray  # [L] t of all elements per unit (the line_f sum, in order)
    eps_item: np.ndarray  # [M, I] price elasticity of each market
    ratio0: np.ndarray  # [M, I] base-year expected supply / use
    unsold0: np.ndarray  # [M, I]
    frac_grid_step: float  # buyers' cover table (engine.buyer_cover_table)
    frac_left: np.ndarray
    cdf: np.ndarray
    bucket_lo: np.ndarray  # [COVER_BUCKETS] bracket of frac_left for a share in a bucket
    bucket_hi: np.ndarray
    par: np.ndarray  # yields, adjustment, horizons, price, substitution and arbitrage parameters


class Controls(NamedTuple):
    """The licence controls of a block: [K, NL] coverage and quotas, their origins and
    leakage, and each control's covered links as an index list."""

    cov: np.ndarray
    quota0: np.ndarray
    ctl_origin: np.ndarray
    leakage: np.ndarray
    ctl_ptr: np.ndarray  # [K + 1] links with cov > 0: ctl_j[ctl_ptr[k]:ctl_ptr[k + 1]]
    ctl_j: np.ndarray
    target: np.ndarray  # [K, M] share of a market a destination-specific control targets


def csr(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row pointers and column indices of the True entries of a 2-D mask, row by row."""
    rows, cols = np.nonzero(mask)
    ptr = np.zeros(mask.shape[0] + 1, np.int64)
    np.add.at(ptr, rows + 1, 1)
    return np.cumsum(ptr), cols.astype(np.int64)


def cover_buckets(frac_left: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For a share r in bucket k ([k, k + 1) / COVER_BUCKETS) a bracket [lo, hi] of the
    decreasing table with frac_left[lo] > r >= frac_left[hi]: the bisection in
    `_months_drawn` starts there and ends where a bisection of the whole table ends (the
    crossing is unique in a non-increasing table). A table that is not non-increasing gets
    the whole table as every bracket."""
    n = len(frac_left)
    if not (np.diff(frac_left) <= 0).all():
        return np.zeros(COVER_BUCKETS, np.int64), np.full(COVER_BUCKETS, n - 1, np.int64)
    edge = np.arange(COVER_BUCKETS + 1) / COVER_BUCKETS
    ge = (frac_left[None, :] >= edge[1:, None]).sum(1)
    gt = (frac_left[None, :] > edge[:-1, None]).sum(1)
    return np.maximum(ge - 1, 0).astype(np.int64), np.minimum(gt, n - 1).astype(np.int64)


@njit(inline="always", **JIT)
def _interp(x, grid_lo, grid_step, values):
    """Linear interpolation on a uniform grid, clamped at both ends."""
    pos = (x - grid_lo) / grid_step
    n = values.shape[0]
    if pos <= 0.0:
        return values[0]
    if pos >= n - 1:
        return values[n - 1]
    i = int(pos)
    f = pos - i
    return values[i] * (1.0 - f) + values[i + 1] * f


@njit(inline="always", **JIT)
def _months_drawn(remaining, frac_left, bucket_lo, bucket_hi):
    """Inverse of the remaining-stock table: months of want drawn from every buyer that
    leave `remaining` (a share of the starting stock). frac_left decreases from 1 to 0; the
    bisection starts from the bracket of `remaining`'s bucket (`cover_buckets`)."""
    n = frac_left.shape[0]
    if remaining >= frac_left[0]:
        return 0.0
    if remaining <= frac_left[n - 1]:
        return float(n - 1)
    b = int(remaining * bucket_lo.shape[0])
    b = min(max(b, 0), bucket_lo.shape[0] - 1)
    lo, hi = bucket_lo[b], bucket_hi[b]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if frac_left[mid] > remaining:
            lo = mid
        else:
            hi = mid
    span = frac_left[lo] - frac_left[hi]
    f = (frac_left[lo] - remaining) / span if span > 0 else 0.0
    return lo + f


@njit(**JIT)
def licences(req, eff, queue, slot, cov, quota0, ctl_ptr, ctl_j, ctl_active, approval, ahead,
             review_n0, review_frac, item_form, link_d, link_i, out_filed, out_approved,
             out_pipeline, out_expected):
    """Requests on controlled links join the queue [Lq, NC] in month `slot` (column c is
    control k's link ctl_j[c], for c in ctl_ptr[k]:ctl_ptr[k + 1], the links with cov > 0);
    what was filed `review` months earlier (split between two months) is decided now and
    the share `approval` of it approved. `eff` (the requests an origin will try to ship)
    loses the controlled part and gains the approvals. What buyers can expect:
    `out_pipeline`, what is still under review, and `out_expected`, the controlled requests
    at `ahead`, the approval share announced for the coming months, less what the link
    brings this month (the correction to this month's imports as a guide to the coming
    months). Where `quota0` [K, links] is positive the control is a quota: a link ships at
    most `approval` x quota0 (its base-year flow) of what is decided."""
    Lq = queue.shape[0]
    K = ctl_ptr.shape[0] - 1
    out_filed[:] = 0.0
    out_approved[:] = 0.0
    out_pipeline[:] = 0.0
    out_expected[:] = 0.0
    for k in range(K):
        n0 = review_n0[k]
        fr = review_frac[k]
        on = ctl_active[k]
        now = slot % Lq
        at0, at1 = (slot - n0) % Lq, (slot - n0 - 1) % Lq
        for c in range(ctl_ptr[k], ctl_ptr[k + 1]):
            j = ctl_j[c]
            cv = cov[k, j]
            d, i = link_d[j], link_i[j]
            if on:
                queue[now, c] = req[j] * cv
                out_filed[d, i] += req[j] * cv
                eff[j] = req[j] * (1.0 - cv)
            else:
                queue[now, c] = 0.0
            q0 = queue[at0, c] if n0 < Lq else 0.0
            q1 = queue[at1, c] if n0 + 1 < Lq else 0.0
            processed = (1.0 - fr) * q0 + fr * q1
            share = approval[k, item_form[i]] if on else 1.0
            quota = quota0[k, j]
            ok = processed * share
            if quota > 0.0 and on:
                ok = min(processed, share * quota)
            eff[j] += ok
            out_approved[d, i] += ok
            # what buyers count on from this link over the coming months, against what it
            # brings now: requests at the announced approval share (1 when no control is in
            # force or announced), the applications under review at that share
            coming = ahead[k, item_form[i]]
            flowing = ok if on else req[j] * cv + processed
            counted = min(req[j] * cv, coming * quota) if quota > 0.0 else req[j] * cv * coming
            out_expected[d, i] += counted - flowing
            pending = fr * q0
            for n in range(min(n0, Lq)):
                pending += queue[(slot - n) % Lq, c]
            out_pipeline[d, i] += pending * coming


@njit(**JIT)
def ship(S, S0, eff, req, want_item, link_o, link_d, link_i, org_ptr, org_j, ctl_active,
         ctl_origin, leakage, short_imp, out_imp, out_exp, asked_out, fill_out, sent_by,
         sent, asked, spare, controlling):
    """Origins ship requests from what they hold beyond their home wants, pro rata; a share
    `leakage` of a controlling origin's shipments (its links: org_j[org_ptr[o]:org_ptr[o +
    1]]) is pooled over destinations by their requests; requests left unmet are re-sourced
    from spare stock (above target and home wants) at origins that control nothing, and
    what is still unmet is left in `short_imp`. The last seven arguments are scratch:
    asked_out, fill_out [M, I], sent_by [NL], sent, asked [I], spare, controlling [M]."""
    M, I = S.shape
    NL = link_o.shape[0]
    K = ctl_origin.shape[0]
    out_imp[:] = 0.0
    out_exp[:] = 0.0
    asked_out[:] = 0.0
    fill_out[:] = 1.0
    for j in range(NL):
        asked_out[link_o[j], link_i[j]] += eff[j]
    for o in range(M):
        for i in range(I):
            if asked_out[o, i] > 0.0:
                avail = S[o, i] - want_item[o, i]
                fill_out[o, i] = min(1.0, max(avail, 0.0) / asked_out[o, i])
    for j in range(NL):
        sent_by[j] = eff[j] * fill_out[link_o[j], link_i[j]]
    for k in range(K):
        lam = leakage[k]
        if not ctl_active[k] or lam <= 0.0:
            continue
        c = ctl_origin[k]
        sent[:] = 0.0
        asked[:] = 0.0
        for jj in range(org_ptr[c], org_ptr[c + 1]):
            j = org_j[jj]
            sent[link_i[j]] += sent_by[j]
            asked[link_i[j]] += req[j]
        for jj in range(org_ptr[c], org_ptr[c + 1]):
            j = org_j[jj]
            i = link_i[j]
            if asked[i] > 0.0:
                sent_by[j] = (1.0 - lam) * sent_by[j] + lam * sent[i] * req[j] / asked[i]
    for j in range(NL):
        q = sent_by[j]
        o, d, i = link_o[j], link_d[j], link_i[j]
        S[o, i] -= q
        S[d, i] += q
        out_exp[o, i] += q
        out_imp[d, i] += q
    for d in range(M):
        for i in range(I):
            short_imp[d, i] = 0.0
    for j in range(NL):
        short_imp[link_d[j], link_i[j]] += req[j] - sent_by[j]
    controlling[:] = 0.0
    for k in range(K):
        if ctl_active[k]:
            controlling[ctl_origin[k]] = 1.0
    for i in range(I):
        unmet_total = 0.0
        for d in range(M):
            if short_imp[d, i] < 0.0:
                short_imp[d, i] = 0.0
            unmet_total += short_imp[d, i]
        if unmet_total <= 1e-12:
            continue
        spare_total = 0.0
        for o in range(M):
            spare[o] = 0.0 if controlling[o] > 0.0 else max(
                S[o, i] - S0[o, i] - want_item[o, i], 0.0)
            spare_total += spare[o]
        if spare_total <= 0.0:
            continue
        moved = min(spare_total, unmet_total)
        for o in range(M):
            if spare[o] <= 0.0:
                continue
            give = moved * spare[o] / spare_total
            for d in range(M):
                if d == o or short_imp[d, i] <= 0.0:
                    continue
                q = give * short_imp[d, i] / unmet_total
                S[o, i] -= q
                S[d, i] += q
                out_exp[o, i] += q
                out_imp[d, i] += q
        for d in range(M):
            short_imp[d, i] *= 1.0 - moved / unmet_total


@njit(**JIT)
def arbitrage(S, lr, want_item, priced, controlling, into, rate, log_margin, out_imp,
              out_exp, sell, gap):
    """Merchants in a market that controls nothing sell the stock they hold beyond their
    home wants (`sell`, taken before any of this month's arbitrage) to markets whose price,
    relative to base, exceeds theirs by more than the trade margin: a share `rate` a month,
    split over the dearer markets by their gaps g = 1 - (1 + margin) p_o / p_d (scaled down
    when the gaps add up to more than 1). `into` [M] is the share a market may receive (a
    destination-specific control lets in its leakage); a market buys only items it prices
    (`priced` [M, I] > 0: it uses them). Prices are compared relative to base: the base year
    is taken as free of arbitrage. Scratch: sell, gap [M]."""
    M, I = S.shape
    if rate <= 0.0:
        return
    for i in range(I):
        for o in range(M):
            sell[o] = 0.0 if controlling[o] > 0.0 else S[o, i] - want_item[o, i]
        for o in range(M):
            if sell[o] <= 0.0:
                continue
            total = 0.0
            for d in range(M):
                gap[d] = 0.0
                x = lr[o, i] - lr[d, i] + log_margin
                if d != o and into[d] > 0.0 and priced[d, i] > 0.0 and x < 0.0:
                    gap[d] = 1.0 - np.exp(x)
                    total += gap[d]
            if total <= 0.0:
                continue
            scale = rate * sell[o] / max(total, 1.0)
            for d in range(M):
                if gap[d] > 0.0:
                    q = scale * gap[d] * into[d]
                    S[o, i] -= q
                    S[d, i] += q
                    out_exp[o, i] += q
                    out_imp[d, i] += q


@njit(**JIT)
def use(S, B, B0, demand0, want, ask, line_order, cls_ptr, cls_item, cls_first,
        frac_grid_step, frac_left, cdf, bucket_lo, bucket_hi, out_del, out_cons):
    """Each market serves an item's lines from its merchant stock by priority (pro rata
    within a priority class: line_order[cls_ptr[c]:cls_ptr[c + 1]], an item's classes in
    turn from the one marked cls_first) what they ask, `ask` = want + (B0 - B) / tau_b
    (`orders`; negative asks nothing); end users then consume from deliveries and their own
    stocks, spread across buyers: a share of buyers given by the cover table has run dry
    and consumes only what it receives."""
    M, L = demand0.shape
    C = cls_item.shape[0]
    for m in range(M):
        for l in range(L):
            out_del[m, l] = 0.0
            out_cons[m, l] = 0.0
        avail = 0.0
        for c in range(C):
            i = cls_item[c]
            if cls_first[c]:
                avail = max(S[m, i], 0.0)
            asked = 0.0
            for n in range(cls_ptr[c], cls_ptr[c + 1]):  # what the class asks (kept in out_del)
                l = line_order[n]
                if demand0[m, l] > 0.0:
                    a = max(ask[m, l], 0.0)
                    out_del[m, l] = a
                    asked += a
            fill = min(1.0, avail / asked) if asked > 0.0 else 0.0
            for n in range(cls_ptr[c], cls_ptr[c + 1]):
                l = line_order[n]
                if demand0[m, l] <= 0.0:
                    continue
                q = out_del[m, l] * fill
                out_del[m, l] = q
                avail -= q
                S[m, i] -= q
        for l in range(L):  # buyers' own stocks, spread across buyers
            if demand0[m, l] <= 0.0:
                continue
            w, q = want[m, l], out_del[m, l]
            if q >= w:
                out_cons[m, l] = w
                B[m, l] += q - w
            else:
                z = _months_drawn(B[m, l] / B0[m, l], frac_left, bucket_lo,
                                  bucket_hi) * frac_grid_step
                still = 1.0 - _interp(z, 0.0, frac_grid_step, cdf)
                draw = min(B[m, l], (w - q) * still)
                B[m, l] -= draw
                out_cons[m, l] = q + draw


@njit(**JIT)
def demand(st, lr, sub, dem_factor, out_need, out_want, want_item, sub_eff):
    """Need (base x shifts x (1 - substitution)) and want (need x price^elasticity) of every
    line, and the wants summed by item. A magnet grade is thrifted as much as the elements
    in it are (value-weighted), or as the grade itself is when magnets are scarcer:
    `sub_eff` [M, E + G] is the substitution each line reads (elements, then grades)."""
    M, L = st.demand0.shape
    E = st.price0.shape[1]
    G = st.gw_ptr.shape[0] - 1
    for m in range(M):
        for i in range(want_item.shape[1]):
            want_item[m, i] = 0.0
        for e in range(E):
            sub_eff[m, e] = sub[m, e]
        for g in range(G):
            s = 0.0
            for k in range(st.gw_ptr[g], st.gw_ptr[g + 1]):
                s += st.gw_v[k] * sub[m, st.gw_e[k]]
            sub_eff[m, E + g] = max(s, sub[m, E + g])
        for l in range(L):
            d0 = st.demand0[m, l]
            if d0 <= 0.0:
                out_need[m, l] = 0.0
                out_want[m, l] = 0.0
                continue
            i = st.line_item[l]
            s = sub_eff[m, st.line_sub[l]]
            lrl = lr[m, i]  # the line's own item (oxide, metal or magnet grade)
            need = d0 * dem_factor[m, l] * (1.0 - s)
            eps = st.elasticity[l]
            want = need * np.exp(eps * lrl) if eps != 0.0 and lrl != 0.0 else need
            out_need[m, l] = need
            out_want[m, l] = want
            want_item[m, i] += want


@njit(**JIT)
def orders(st, S, B, plan, out_want, purch, req, ask):
    """Purchases (wants, buyers' restocking, the next stage's inputs, merchants' restocking)
    and the requests they make on each trade link (base-year sourcing shares). `ask` [M, L]
    keeps what each line asks (`use` serves it)."""
    M, I = S.shape
    L = st.demand0.shape[1]
    E = st.price0.shape[1]
    G = st.mg_ptr.shape[0] - 1
    ym, tau_m, tau_b = st.par[1], st.par[3], st.par[4]
    for m in range(M):
        for i in range(I):
            purch[m, i] = 0.0
        for l in range(L):
            if st.demand0[m, l] > 0.0:
                pur = out_want[m, l] + (st.B0[m, l] - B[m, l]) / tau_b
                ask[m, l] = pur
                if pur > 0.0:
                    purch[m, st.line_item[l]] += pur
        for e in range(E):  # inputs of this month's planned metal and magnet making
            purch[m, e] += plan[m, E + e] / ym
        for g in range(G):
            pg = plan[m, 2 * E + g]
            for k in range(st.mg_ptr[g], st.mg_ptr[g + 1]):
                purch[m, st.mg_i[k]] += pg * st.mg_metal[k]
        for i in range(I):
            purch[m, i] += (st.S0[m, i] - S[m, i]) / tau_m
            if purch[m, i] < 0.0:
                purch[m, i] = 0.0
    for j in range(st.link_o.shape[0]):  # requests origin -> dest (before controls)
        req[j] = purch[st.link_d[j], st.link_i[j]] * st.link_w[j]


@njit(**JIT)
def produce(st, S, C, plan, swarf_last, orders_, conc_in, cap, inflow, out_prod, out_drawn,
            out_conc_used, want_g, need_e, phi, swarf_made):
    """Separation (from concentrate on hand), metal (from oxide) and magnets (from metal,
    each grade limited by its scarcest element) move towards their orders within capacity;
    swarf goes back to separation where it is recycled (kept unprocessed elsewhere: lost)."""
    M, I = S.shape
    E = C.shape[1]
    G = st.mg_ptr.shape[0] - 1
    ys, ym, kappa = st.par[0], st.par[1], st.par[2]
    for m in range(M):
        for i in range(I):
            out_prod[m, i] = 0.0
            out_drawn[m, i] = 0.0
        for e in range(E):
            swarf_made[m, e] = 0.0
        for e in range(E):  # separation (primary), from concentrate on hand
            C[m, e] += conc_in[m, e]
            target = orders_[m, e] - swarf_last[m, e]
            plan[m, e] += kappa * (target - plan[m, e])
            q = min(plan[m, e], cap[m, e], C[m, e] * ys)
            q = max(q, 0.0)
            used = q / ys
            C[m, e] -= used
            out_conc_used[m, e] = used
            out_prod[m, e] = q
            S[m, e] += q + inflow[m, e]
        for e in range(E):  # metal, from oxide on hand
            i = E + e
            plan[m, i] += kappa * (orders_[m, i] - plan[m, i])
            q = max(min(plan[m, i], cap[m, i], S[m, e] * ym), 0.0)
            drawn = q / ym
            S[m, e] -= drawn
            out_drawn[m, e] += drawn
            S[m, i] += q + inflow[m, i]
            out_prod[m, i] = q
        # magnets, from metal on hand: each grade is limited by its scarcest element
        for g in range(G):
            i = 2 * E + g
            plan[m, i] += kappa * (orders_[m, i] - plan[m, i])
            want_g[g] = max(min(plan[m, i], cap[m, i]), 0.0)
        for e in range(E):
            phi[e] = 1.0
            need = 0.0
            for k in range(st.me_ptr[e], st.me_ptr[e + 1]):
                need += want_g[st.me_g[k]] * st.me_v[k]
            need_e[e] = need
            if need > S[m, E + e] and need > 0.0:
                phi[e] = max(S[m, E + e], 0.0) / need
        for g in range(G):
            f = 1.0
            for k in range(st.mg_ptr[g], st.mg_ptr[g + 1]):
                if st.mg_metal[k] > 0.0 and phi[st.mg_e[k]] < f:
                    f = phi[st.mg_e[k]]
            q = want_g[g] * f
            i = 2 * E + g
            out_prod[m, i] = q
            S[m, i] += q + inflow[m, i]
            for k in range(st.mg_ptr[g], st.mg_ptr[g + 1]):
                drawn = q * st.mg_metal[k]
                S[m, st.mg_i[k]] -= drawn
                out_drawn[m, st.mg_i[k]] += drawn
                swarf_made[m, st.mg_e[k]] += q * st.mg_swarf[k]
    for m in range(M):
        for e in range(E):
            swarf_last[m, e] = 0.0
    for k in range(st.sw_src.shape[0]):
        made = swarf_made[st.sw_src[k], st.sw_e[k]]
        if made <= 0.0:
            continue
        sw = made * st.sw_v[k]
        if sw > 0.0:
            dst, e = st.sw_dst[k], st.sw_e[k]
            swarf_last[dst, e] += sw
            S[dst, e] += sw
            out_prod[dst, e] += sw


@njit(**JIT)
def shortfall(st, S, out_want, out_need, out_cons, out_unsold, out_short_item, out_phys_el,
              out_red_el, out_phys_sec, out_red_sec, out_need_sec):
    """Output a region could not sell in the base year goes to unsold stock, from what it
    holds above target; then what the month leaves short, by item, element and sector (t
    of element): physical (wanted, not consumed) and demand reduction (given up to price)."""
    M, I = S.shape
    L = st.demand0.shape[1]
    E = out_phys_el.shape[1]
    NS = out_phys_sec.shape[1]
    for m in range(M):
        for i in range(I):
            take = 0.0
            if st.unsold0[m, i] > 0.0:
                take = min(st.unsold0[m, i], max(S[m, i] - st.S0[m, i], 0.0))
                S[m, i] -= take
            out_unsold[m, i] = take
            out_short_item[m, i] = 0.0
        for e in range(E):
            out_phys_el[m, e] = 0.0
            out_red_el[m, e] = 0.0
        for s_ in range(NS):
            out_phys_sec[m, s_] = 0.0
            out_red_sec[m, s_] = 0.0
            out_need_sec[m, s_] = 0.0
        for l in range(L):
            if st.demand0[m, l] <= 0.0:
                continue
            short = max(out_want[m, l] - out_cons[m, l], 0.0)
            red = max(out_need[m, l] - out_want[m, l], 0.0)
            out_short_item[m, st.line_item[l]] += short
            for h in range(st.line_h[l]):
                e = st.line_e[l, h]
                f = st.line_f[l, h]
                out_phys_el[m, e] += short * f
                out_red_el[m, e] += red * f
            tot = st.line_tot[l]
            sc = st.line_sector[l]
            out_phys_sec[m, sc] += short * tot
            out_red_sec[m, sc] += red * tot
            out_need_sec[m, sc] += out_need[m, l] * tot


@njit(**JIT)
def prices(st, S, B, plan, lr, sub, want_item, inflow, out_prod, out_imp, out_exp,
           out_expected, out_pipeline, out_unsold, held_b, target, phi):
    """Holders price each item by the supply they can expect over `horizon` months (stocks
    held by merchants and end users, the licence pipeline, this month's production, imports
    and inflows, kept up) against current use (final wants, the next stage's input, exports
    shipped), relative to the base year; the price that makes the market's demand, at its
    elasticity (substitution over the horizon included), take what it can expect. Quotes
    move part of the way each month; metal costs at least its oxide, a magnet grade at
    least its metals. Then substitution responds (phase 8)."""
    M, I = S.shape
    L = st.demand0.shape[1]
    E = st.price0.shape[1]
    G = st.gw_ptr.shape[0] - 1
    ym = st.par[1]
    horizon, a_smooth, log_cap = st.par[5], st.par[6], st.par[7]
    sub_rate, sub_max, full_ratio = st.par[8], st.par[9], st.par[10]
    for m in range(M):
        for i in range(I):
            held_b[i] = 0.0
        for l in range(L):  # end users' own stocks count as held
            if st.demand0[m, l] > 0.0:
                held_b[st.line_item[l]] += B[m, l]
        for i in range(I):
            held = S[m, i] + held_b[i]
            use_now = want_item[m, i] + out_exp[m, i]
            if i < E:
                use_now += plan[m, E + i] / ym
            elif i < 2 * E:
                e = i - E
                for k in range(st.me_ptr[e], st.me_ptr[e + 1]):
                    use_now += plan[m, st.me_i[k]] * st.me_v[k]
            # imports under licence count at the share announced for the coming months
            supply = (out_prod[m, i] + out_imp[m, i] + out_expected[m, i] + inflow[m, i]
                      - out_unsold[m, i])
            if use_now <= 0.0 or st.ratio0[m, i] <= 0.0:
                target[i] = 0.0
                continue
            x = (held + out_pipeline[m, i] + horizon * supply) / (horizon * use_now)
            x = max(x / st.ratio0[m, i], 1e-12)
            t_ = np.log(x) / st.eps_item[m, i]
            target[i] = min(max(t_, -log_cap), log_cap)
        for e in range(E):  # cost floors: metal >= oxide, grade >= its metals
            if target[E + e] < target[e]:
                target[E + e] = target[e]
        for k in range(st.gw_used.shape[0]):  # metal price ratios, once
            phi[st.gw_used[k]] = np.exp(target[st.gw_used_metal[k]])
        for g in range(G):
            cost = 0.0
            for k in range(st.gw_ptr[g], st.gw_ptr[g + 1]):
                if st.gw_v[k] > 0.0:
                    cost += st.gw_v[k] * phi[st.gw_e[k]]
            floor = np.log(cost) if cost > 0.0 else 0.0
            if target[2 * E + g] < floor:
                target[2 * E + g] = floor
        for i in range(I):
            lr[m, i] = a_smooth * lr[m, i] + (1.0 - a_smooth) * target[i]
        # ---- 8. respond: substitution ramps up with the price ratio (0 at or below base)
        for e in range(E):
            ramp = 0.0
            if lr[m, e] > 0.0 or full_ratio <= 1.0:
                r = np.exp(lr[m, e])
                ramp = min(max((r - 1.0) / (full_ratio - 1.0), 0.0), 1.0)
            sub[m, e] = min(sub_max, sub[m, e] + sub_rate * ramp)
        for g in range(G):
            ramp = 0.0
            if lr[m, 2 * E + g] > 0.0 or full_ratio <= 1.0:
                r = np.exp(lr[m, 2 * E + g])
                ramp = min(max((r - 1.0) / (full_ratio - 1.0), 0.0), 1.0)
            sub[m, E + g] = min(sub_max, sub[m, E + g] + sub_rate * ramp)


@njit(**JIT)
def step_path(  # noqa: PLR0913 - one path's state and the month's inputs
        st, ctl,
        # state (in/out)
        S, C, B, plan, lr, sub, swarf_last, short_imp, queue,
        # month inputs for this path
        conc_in, cap, dem_factor, inflow, ctl_active, approval, ahead, review_n0,
        review_frac, slot,
        # outputs for this path (overwritten)
        out_prod, out_imp, out_exp, out_drawn, out_del, out_cons, out_need, out_want,
        out_price, out_conc_used, out_filed, out_approved, out_short_item, out_phys_el,
        out_red_el, out_phys_sec, out_red_sec, out_need_sec, out_unsold, out_pipeline,
        out_expected,
        # scratch (this thread's)
        want_item, purch, orders_, sub_eff, req, eff, want_g, need_e, phi, swarf_made,
        asked_out, fill_out, sent_by, sent_i, asked_i, spare, controlling, held_b, target,
        ask, into, gap):
    M, I = S.shape
    E = st.price0.shape[1]
    # prices at the start of the month: the element's is its separated product's (oxide)
    for m in range(M):
        for e in range(E):
            p0 = st.price0[m, e]
            out_price[m, e] = np.exp(lr[m, e]) * p0 if p0 > 0 else 0.0
    demand(st, lr, sub, dem_factor, out_need, out_want, want_item, sub_eff)  # 1
    orders(st, S, B, plan, out_want, purch, req, ask)  # 2
    for j in range(req.shape[0]):  # 3. licences
        eff[j] = req[j]
    licences(req, eff, queue, slot, ctl.cov, ctl.quota0, ctl.ctl_ptr, ctl.ctl_j, ctl_active,
             approval, ahead, review_n0, review_frac, st.item_form, st.link_d, st.link_i,
             out_filed, out_approved, out_pipeline, out_expected)
    for o in range(M):  # what each origin is asked to make ready
        for i in range(I):
            orders_[o, i] = purch[o, i] * st.own_share[o, i] + short_imp[o, i]
    for j in range(eff.shape[0]):
        orders_[st.link_o[j], st.link_i[j]] += eff[j]
    produce(st, S, C, plan, swarf_last, orders_, conc_in, cap, inflow, out_prod, out_drawn,
            out_conc_used, want_g, need_e, phi, swarf_made)  # 4
    ship(S, st.S0, eff, req, want_item, st.link_o, st.link_d, st.link_i, st.org_ptr,
         st.org_j, ctl_active, ctl.ctl_origin, ctl.leakage, short_imp, out_imp, out_exp,
         asked_out, fill_out, sent_by, sent_i, asked_i, spare, controlling)  # 5
    K = ctl.target.shape[0]
    for d in range(M):  # what a market may receive by arbitrage: its controls' leakage
        into[d] = 1.0
        for k in range(K):
            if ctl_active[k]:
                into[d] *= 1.0 - ctl.target[k, d] * (1.0 - ctl.leakage[k])
    arbitrage(S, lr, want_item, st.ratio0, controlling, into, st.par[11], st.par[12],
              out_imp, out_exp, spare, gap)
    use(S, B, st.B0, st.demand0, out_want, ask, st.line_order, st.cls_ptr, st.cls_item,
        st.cls_first, st.frac_grid_step, st.frac_left, st.cdf, st.bucket_lo, st.bucket_hi,
        out_del, out_cons)  # 6
    shortfall(st, S, out_want, out_need, out_cons, out_unsold, out_short_item, out_phys_el,
              out_red_el, out_phys_sec, out_red_sec, out_need_sec)
    prices(st, S, B, plan, lr, sub, want_item, inflow, out_prod, out_imp, out_exp,
           out_expected, out_pipeline, out_unsold, held_b, target, phi)  # 7 and 8


PATHS_PER_TASK = 32
"""Paths a thread takes at a time (its scratch space is allocated once per task)."""


@njit(parallel=True, **JIT)
def step(st, ctl, S, C, B, plan, lr, sub, swarf_last, short_imp, queue,
         conc_in, cap, dem_factor, inflow, ctl_active, approval, ahead, review_n0, review_frac,
         slot,
         out_prod, out_imp, out_exp, out_drawn, out_del, out_cons, out_need, out_want,
         out_price, out_conc_used, out_filed, out_approved, out_short_item, out_phys_el,
         out_red_el, out_phys_sec, out_red_sec, out_need_sec, out_unsold, out_pipeline,
         out_expected):
    """One month for every path of a chunk: arrays carry a leading paths axis. Paths run
    in tasks of PATHS_PER_TASK, each with its own scratch space."""
    P, M, I = S.shape
    E = st.price0.shape[1]
    G = st.gw_ptr.shape[0] - 1
    NL = st.link_o.shape[0]
    n_tasks = (P + PATHS_PER_TASK - 1) // PATHS_PER_TASK
    for task in prange(n_tasks):
        want_item, purch, orders_ = np.empty((M, I)), np.empty((M, I)), np.empty((M, I))
        asked_out, fill_out = np.empty((M, I)), np.empty((M, I))
        sub_eff = np.empty((M, E + G))
        req, eff, sent_by = np.empty(NL), np.empty(NL), np.empty(NL)
        want_g, need_e, phi = np.empty(G), np.empty(E), np.empty(E)
        swarf_made = np.empty((M, E))
        sent_i, asked_i, held_b, target = np.empty(I), np.empty(I), np.empty(I), np.empty(I)
        spare, controlling, into, gap = np.empty(M), np.empty(M), np.empty(M), np.empty(M)
        ask = np.empty((M, st.demand0.shape[1]))
        for p in range(task * PATHS_PER_TASK, min(P, (task + 1) * PATHS_PER_TASK)):
            step_path(st, ctl, S[p], C[p], B[p], plan[p], lr[p], sub[p], swarf_last[p],
                      short_imp[p], queue[p], conc_in[p], cap[p], dem_factor[p], inflow[p],
                      ctl_active[p], approval[p], ahead[p], review_n0[p], review_frac[p],
                      slot,
                      out_prod[p], out_imp[p], out_exp[p], out_drawn[p], out_del[p],
                      out_cons[p], out_need[p], out_want[p], out_price[p], out_conc_used[p],
                      out_filed[p], out_approved[p], out_short_item[p], out_phys_el[p],
                      out_red_el[p], out_phys_sec[p], out_red_sec[p], out_need_sec[p],
                      out_unsold[p], out_pipeline[p], out_expected[p],
                      want_item, purch, orders_, sub_eff, req, eff, want_g, need_e, phi,
                      swarf_made, asked_out, fill_out, sent_by, sent_i, asked_i, spare,
                      controlling, held_b, target, ask, into, gap)
