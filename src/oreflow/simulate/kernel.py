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
6. `use`         each region's lines are served by priority; buyers draw their own stocks,
                 spread across buyers (gamma-distributed cover): unmet want is physical
                 shortage, want given up because of price is demand reduction
7. `prices`      each region's price moves towards base x (cover / target)^-k, smoothed
8. `respond`     substitution builds up while prices are high (by element, and by magnet
                 grade where magnets themselves are scarce)

Equations and parameters: docs/model.md, section 3. Units: t REO-eq a month (magnets: t of
finished magnet). Every array argument is one path's slice; `step` takes the [P, ...] arrays.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

OX, MET, MAG = 0, 1, 2


@njit(cache=True, inline="always")
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


@njit(cache=True)
def _months_drawn(remaining, frac_left):
    """Inverse of the remaining-stock table: months of want drawn from every buyer that
    leave `remaining` (a share of the starting stock). frac_left decreases from 1 to 0."""
    n = frac_left.shape[0]
    if remaining >= frac_left[0]:
        return 0.0
    if remaining <= frac_left[n - 1]:
        return float(n - 1)
    lo, hi = 0, n - 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if frac_left[mid] > remaining:
            lo = mid
        else:
            hi = mid
    span = frac_left[lo] - frac_left[hi]
    f = (frac_left[lo] - remaining) / span if span > 0 else 0.0
    return lo + f


@njit(cache=True)
def licences(req, eff, queue, slot, cov, quota0, ctl_active, approval, ahead, review_n0,
             review_frac, item_form, link_d, link_i, out_filed, out_approved, out_pipeline,
             out_expected):
    """Requests on controlled links join the queue [K, Lq, links] in month `slot`; what was
    filed `review` months earlier (split between two months) is decided now and the share
    `approval` of it approved. `eff` (the requests an origin will try to ship) loses the
    controlled part and gains the approvals. What buyers can expect: `out_pipeline`, what is
    still under review, and `out_expected`, the controlled requests at `ahead`, the approval
    share announced for the coming months, less what the link brings this month (the
    correction to this month's imports as a guide to the coming months). Where `quota0`
    [K, links] is positive the control is a quota: a link ships at most `approval` x quota0
    (its base-year flow) of what is decided."""
    M, I = out_filed.shape
    K, Lq, NL = queue.shape
    for d in range(M):
        for i in range(I):
            out_filed[d, i] = 0.0
            out_approved[d, i] = 0.0
            out_pipeline[d, i] = 0.0
            out_expected[d, i] = 0.0
    for k in range(K):
        n0 = review_n0[k]
        fr = review_frac[k]
        for j in range(NL):
            cv = cov[k, j]
            if cv <= 0.0:
                continue
            d, i = link_d[j], link_i[j]
            if ctl_active[k]:
                queue[k, slot % Lq, j] = req[j] * cv
                out_filed[d, i] += req[j] * cv
                eff[j] = req[j] * (1.0 - cv)
            else:
                queue[k, slot % Lq, j] = 0.0
            q0 = queue[k, (slot - n0) % Lq, j] if n0 < Lq else 0.0
            q1 = queue[k, (slot - n0 - 1) % Lq, j] if n0 + 1 < Lq else 0.0
            processed = (1.0 - fr) * q0 + fr * q1
            share = approval[k, item_form[i]] if ctl_active[k] else 1.0
            quota = quota0[k, j]
            ok = processed * share
            if quota > 0.0 and ctl_active[k]:
                ok = min(processed, share * quota)
            eff[j] += ok
            out_approved[d, i] += ok
            # what buyers count on from this link over the coming months, against what it
            # brings now: requests at the announced approval share (1 when no control is in
            # force or announced), the applications under review at that share
            coming = ahead[k, item_form[i]]
            flowing = ok if ctl_active[k] else req[j] * cv + processed
            counted = min(req[j] * cv, coming * quota) if quota > 0.0 else req[j] * cv * coming
            out_expected[d, i] += counted - flowing
            pending = fr * q0
            for n in range(min(n0, Lq)):
                pending += queue[k, (slot - n) % Lq, j]
            out_pipeline[d, i] += pending * coming


@njit(cache=True)
def ship(S, S0, eff, req, want_item, link_o, link_d, link_i, ctl_active, ctl_origin,
         leakage, short_imp, out_imp, out_exp, work):
    """Origins ship requests from what they hold beyond their home wants, pro rata; a share
    `leakage` of a controlling origin's shipments is pooled over destinations by their
    requests; requests left unmet are re-sourced from spare stock (above target and home
    wants) at origins that control nothing, and what is still unmet is left in `short_imp`.
    `work` is scratch space of at least 2 M I + NL + 2 I + 2 M floats."""
    M, I = S.shape
    NL = link_o.shape[0]
    K = ctl_origin.shape[0]
    asked_out = work[:M * I].reshape((M, I))
    fill_out = work[M * I:2 * M * I].reshape((M, I))
    sent_by = work[2 * M * I:2 * M * I + NL]
    off = 2 * M * I + NL
    sent, asked = work[off:off + I], work[off + I:off + 2 * I]
    spare = work[off + 2 * I:off + 2 * I + M]
    controlling = work[off + 2 * I + M:off + 2 * I + 2 * M]
    for m in range(M):
        for i in range(I):
            out_imp[m, i] = 0.0
            out_exp[m, i] = 0.0
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
        for j in range(NL):
            if link_o[j] == c:
                sent[link_i[j]] += sent_by[j]
                asked[link_i[j]] += req[j]
        for j in range(NL):
            i = link_i[j]
            if link_o[j] == c and asked[i] > 0.0:
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


@njit(cache=True)
def use(S, B, B0, demand0, want, line_item, line_order, line_prio, tau_b, frac_grid_step,
        frac_left, cdf, out_del, out_cons):
    """Each market serves an item's lines from its merchant stock by priority (pro rata
    within a priority); end users then consume from deliveries and their own stocks, spread
    across buyers: a share of buyers given by the cover table has run dry and consumes only
    what it receives."""
    M = S.shape[0]
    L = line_item.shape[0]
    for m in range(M):
        for l in range(L):
            out_del[m, l] = 0.0
            out_cons[m, l] = 0.0
        # lines are ordered by (item, priority): serve each item's lines in that order
        n = 0
        while n < L:
            i = line_item[line_order[n]]
            avail = max(S[m, i], 0.0)
            end = n
            while end < L and line_item[line_order[end]] == i:
                end += 1
            j = n
            while j < end:  # one priority class at a time, pro rata within it
                p_ = line_prio[line_order[j]]
                k2 = j
                asked = 0.0
                while k2 < end and line_prio[line_order[k2]] == p_:
                    l = line_order[k2]
                    if demand0[m, l] > 0.0:
                        asked += max(want[m, l] + (B0[m, l] - B[m, l]) / tau_b, 0.0)
                    k2 += 1
                fill = min(1.0, avail / asked) if asked > 0.0 else 0.0
                for jj in range(j, k2):
                    l = line_order[jj]
                    if demand0[m, l] <= 0.0:
                        continue
                    q = max(want[m, l] + (B0[m, l] - B[m, l]) / tau_b, 0.0) * fill
                    out_del[m, l] = q
                    avail -= q
                    S[m, i] -= q
                j = k2
            n = end
        for l in range(L):  # buyers' own stocks, spread across buyers
            if demand0[m, l] <= 0.0:
                continue
            w, q = want[m, l], out_del[m, l]
            if q >= w:
                out_cons[m, l] = w
                B[m, l] += q - w
            else:
                z = _months_drawn(B[m, l] / B0[m, l], frac_left) * frac_grid_step
                still = 1.0 - _interp(z, 0.0, frac_grid_step, cdf)
                draw = min(B[m, l], (w - q) * still)
                B[m, l] -= draw
                out_cons[m, l] = q + draw


@njit(cache=True)
def step_path(  # noqa: PLR0913 - one path's state and the month's inputs
        # state (in/out)
        S, C, B, plan, lr, sub, swarf_last, short_imp, queue,
        # month inputs for this path
        conc_in, cap, dem_factor, inflow, ctl_active, approval, ahead, review_n0,
        review_frac, slot,
        # static
        own_share, link_o, link_d, link_i, link_w, S0, B0, demand0, line_item, line_order,
        line_prio, elasticity, item_form, item_el, grade_reo, metal_per_magnet,
        swarf_per_magnet, grade_w, price0, cov, quota0, ctl_origin, leakage, frac_grid_step,
        frac_left, cdf, par,
        # outputs for this path (overwritten)
        out_prod, out_imp, out_exp, out_drawn, out_del, out_cons, out_need, out_want,
        out_price, out_conc_used, out_filed, out_approved,
        line_el, line_sector, out_short_item, out_phys_el, out_red_el, out_phys_sec,
        out_red_sec, out_need_sec, unsold0, out_unsold, swarf_share, line_e, line_f,
        eps_item, ratio0, out_pipeline, out_expected, work):
    M, I = S.shape
    E = price0.shape[1]
    G = grade_reo.shape[0]
    L = line_item.shape[0]
    NL = link_o.shape[0]
    ys, ym = par[0], par[1]
    kappa, tau_m, tau_b = par[2], par[3], par[4]
    horizon, a_smooth, log_cap = par[5], par[6], par[7]
    sub_rate, sub_max, full_ratio = par[8], par[9], par[10]

    # scratch space (no allocation in the month): views into this path's `work`
    ratio = work[:M * E].reshape((M, E))
    log_ratio = work[M * E:2 * M * E].reshape((M, E))
    off = 2 * M * E
    want_item = work[off:off + M * I].reshape((M, I))
    purch = work[off + M * I:off + 2 * M * I].reshape((M, I))
    orders = work[off + 2 * M * I:off + 3 * M * I].reshape((M, I))
    off += 3 * M * I
    grade_ratio = work[off:off + M * G].reshape((M, G))
    grade_log = work[off + M * G:off + 2 * M * G].reshape((M, G))
    grade_sub = work[off + 2 * M * G:off + 3 * M * G].reshape((M, G))
    off += 3 * M * G
    req = work[off:off + NL]
    eff = work[off + NL:off + 2 * NL]
    off += 2 * NL
    swarf_made = work[off:off + M * E].reshape((M, E))
    want_g = work[off + M * E:off + M * E + G]
    phi = work[off + M * E + G:off + M * E + G + E]
    off += M * E + G + E
    ship_work = work[off:]
    # prices at the start of the month (ratio to base): every item has its own, the
    # element's price is its separated product's (oxide)
    for m in range(M):
        for e in range(E):
            log_ratio[m, e] = lr[m, e]
            ratio[m, e] = np.exp(lr[m, e])
            out_price[m, e] = ratio[m, e] * price0[m, e] if price0[m, e] > 0 else 0.0
    # ---- 1. demand ------------------------------------------------------------------
    want_item[:] = 0.0
    for m in range(M):
        for g in range(G):
            s = 0.0
            for e2 in range(E):
                s += grade_w[g, e2] * sub[m, e2]
            grade_log[m, g] = lr[m, 2 * E + g]
            grade_ratio[m, g] = np.exp(grade_log[m, g])
            grade_sub[m, g] = max(s, sub[m, E + g])  # thrifting away from a scarce grade
    for m in range(M):
        for l in range(L):
            d0 = demand0[m, l]
            if d0 <= 0.0:
                out_need[m, l] = 0.0
                out_want[m, l] = 0.0
                continue
            i = line_item[l]
            e = item_el[i]
            if e >= 0:
                r = np.exp(lr[m, i])  # the line's own form (oxide or metal)
                lrl = lr[m, i]
                s = sub[m, e]
            else:
                g = i - 2 * E
                r = grade_ratio[m, g]
                lrl = grade_log[m, g]
                s = grade_sub[m, g]
            need = d0 * dem_factor[m, l] * (1.0 - s)
            eps = elasticity[l]
            want = need * np.exp(eps * lrl) if eps != 0.0 and lrl != 0.0 else need
            out_need[m, l] = need
            out_want[m, l] = want
            want_item[m, i] += want
    # ---- 2. orders ------------------------------------------------------------------
    purch[:] = 0.0
    for m in range(M):
        for l in range(L):
            if demand0[m, l] > 0.0:
                pur = out_want[m, l] + (B0[m, l] - B[m, l]) / tau_b
                if pur > 0.0:
                    purch[m, line_item[l]] += pur
        for e in range(E):  # inputs of this month's planned metal and magnet making
            purch[m, e] += plan[m, E + e] / ym
        for g in range(G):
            pg = plan[m, 2 * E + g]
            for e in range(E):
                purch[m, E + e] += pg * metal_per_magnet[g, e]
        for i in range(I):
            purch[m, i] += (S0[m, i] - S[m, i]) / tau_m
            if purch[m, i] < 0.0:
                purch[m, i] = 0.0
    for j in range(NL):  # requests on each trade link origin -> dest (before controls)
        req[j] = purch[link_d[j], link_i[j]] * link_w[j]
    # ---- 3. licences ----------------------------------------------------------------
    eff[:] = req
    licences(req, eff, queue, slot, cov, quota0, ctl_active, approval, ahead, review_n0,
             review_frac, item_form, link_d, link_i, out_filed, out_approved, out_pipeline,
             out_expected)
    for o in range(M):
        for i in range(I):
            orders[o, i] = purch[o, i] * own_share[o, i] + short_imp[o, i]
    for j in range(NL):
        orders[link_o[j], link_i[j]] += eff[j]
    # ---- 4. produce -----------------------------------------------------------------
    swarf_made[:] = 0.0
    for m in range(M):
        for i in range(I):
            out_prod[m, i] = 0.0
            out_drawn[m, i] = 0.0
        for e in range(E):  # separation (primary), from concentrate on hand
            C[m, e] += conc_in[m, e]
            target = orders[m, e] - swarf_last[m, e]
            plan[m, e] += kappa * (target - plan[m, e])
            q = min(plan[m, e], cap[m, e], C[m, e] * ys)
            q = max(q, 0.0)
            C[m, e] -= q / ys
            out_conc_used[m, e] = q / ys
            out_prod[m, e] = q
            S[m, e] += q + inflow[m, e]
        for e in range(E):  # metal, from oxide on hand
            i = E + e
            plan[m, i] += kappa * (orders[m, i] - plan[m, i])
            q = max(min(plan[m, i], cap[m, i], S[m, e] * ym), 0.0)
            S[m, e] -= q / ym
            out_drawn[m, e] += q / ym
            S[m, i] += q + inflow[m, i]
            out_prod[m, i] = q
        # magnets, from metal on hand: each grade is limited by its scarcest element
        for g in range(G):
            i = 2 * E + g
            plan[m, i] += kappa * (orders[m, i] - plan[m, i])
            want_g[g] = max(min(plan[m, i], cap[m, i]), 0.0)
        phi[:] = 1.0
        for e in range(E):
            need = 0.0
            for g in range(G):
                need += want_g[g] * metal_per_magnet[g, e]
            if need > S[m, E + e] and need > 0.0:
                phi[e] = max(S[m, E + e], 0.0) / need
        for g in range(G):
            f = 1.0
            for e in range(E):
                if metal_per_magnet[g, e] > 0.0 and phi[e] < f:
                    f = phi[e]
            q = want_g[g] * f
            i = 2 * E + g
            out_prod[m, i] = q
            S[m, i] += q + inflow[m, i]
            for e in range(E):
                drawn = q * metal_per_magnet[g, e]
                S[m, E + e] -= drawn
                out_drawn[m, E + e] += drawn
                swarf_made[m, e] += q * swarf_per_magnet[g, e]
    # swarf goes back to separation where it is recycled (kept unprocessed elsewhere: lost)
    for m in range(M):
        for e in range(E):
            swarf_last[m, e] = 0.0
    for src in range(M):
        for e in range(E):
            made = swarf_made[src, e]
            if made <= 0.0:
                continue
            for dst in range(M):
                sw = made * swarf_share[src, dst, e]
                if sw > 0.0:
                    swarf_last[dst, e] += sw
                    S[dst, e] += sw
                    out_prod[dst, e] += sw
    # ---- 5. ship --------------------------------------------------------------------
    for m in range(M):
        for i in range(I):
            out_imp[m, i] = 0.0
            out_exp[m, i] = 0.0
    ship(S, S0, eff, req, want_item, link_o, link_d, link_i, ctl_active, ctl_origin,
         leakage, short_imp, out_imp, out_exp, ship_work)
    # ---- 6. use ---------------------------------------------------------------------
    use(S, B, B0, demand0, out_want, line_item, line_order, line_prio, tau_b, frac_grid_step,
        frac_left, cdf, out_del, out_cons)
    # a region's output it could not sell in the base year goes on to unsold stock, from
    # what it holds above target (swarf at magnet makers with no use for it)
    for m in range(M):
        for i in range(I):
            take = 0.0
            if unsold0[m, i] > 0.0:
                take = min(unsold0[m, i], max(S[m, i] - S0[m, i], 0.0))
                S[m, i] -= take
            out_unsold[m, i] = take
    # what the month leaves short, by item, element and sector (t of element)
    for m in range(M):
        for i in range(I):
            out_short_item[m, i] = 0.0
        for e in range(E):
            out_phys_el[m, e] = 0.0
            out_red_el[m, e] = 0.0
        for s_ in range(out_phys_sec.shape[1]):
            out_phys_sec[m, s_] = 0.0
            out_red_sec[m, s_] = 0.0
            out_need_sec[m, s_] = 0.0
        for l in range(L):
            if demand0[m, l] <= 0.0:
                continue
            short = max(out_want[m, l] - out_cons[m, l], 0.0)
            red = max(out_need[m, l] - out_want[m, l], 0.0)
            out_short_item[m, line_item[l]] += short
            tot = 0.0
            for h in range(line_e.shape[1]):
                e = line_e[l, h]
                if e < 0:
                    break
                f = line_f[l, h]
                out_phys_el[m, e] += short * f
                out_red_el[m, e] += red * f
                tot += f
            sc = line_sector[l]
            out_phys_sec[m, sc] += short * tot
            out_red_sec[m, sc] += red * tot
            out_need_sec[m, sc] += out_need[m, l] * tot
    # ---- 7. prices ------------------------------------------------------------------
    # holders price each item by the supply they can expect over `horizon` months (stocks
    # held by merchants and end users, the licence pipeline, this month's production,
    # imports and inflows, kept up) against current use (final wants, the next stage's
    # input, exports shipped), relative to the base year; the price that makes the market's
    # demand, at its elasticity (substitution over the horizon included), take what it can
    # expect. Quotes move part of the way each month; metal costs at least its oxide, a magnet
    # grade at least its metals.
    target = purch  # scratch reused: purchases and orders are done with this month
    held_b = orders
    for m in range(M):
        for i in range(I):
            held_b[m, i] = 0.0
        for l in range(L):  # end users' own stocks count as held
            if demand0[m, l] > 0.0:
                held_b[m, line_item[l]] += B[m, l]
        for i in range(I):
            held = S[m, i] + held_b[m, i]
            use_now = want_item[m, i] + out_exp[m, i]
            if i < E:
                use_now += plan[m, E + i] / ym
            elif i < 2 * E:
                for g in range(G):
                    use_now += plan[m, 2 * E + g] * metal_per_magnet[g, i - E]
            # imports under licence count at the share announced for the coming months
            supply = (out_prod[m, i] + out_imp[m, i] + out_expected[m, i] + inflow[m, i]
                      - out_unsold[m, i])
            if use_now <= 0.0 or ratio0[m, i] <= 0.0:
                target[m, i] = 0.0
                continue
            x = (held + out_pipeline[m, i] + horizon * supply) / (horizon * use_now)
            x = max(x / ratio0[m, i], 1e-12)
            t_ = np.log(x) / eps_item[m, i]
            target[m, i] = min(max(t_, -log_cap), log_cap)
        for e in range(E):  # cost floors: metal >= oxide, grade >= its metals
            if target[m, E + e] < target[m, e]:
                target[m, E + e] = target[m, e]
        for e in range(E):  # metal price ratios, once (phi is free scratch here)
            phi[e] = np.exp(target[m, E + e])
        for g in range(G):
            cost = 0.0
            for e in range(E):
                w = grade_w[g, e]
                if w > 0.0:
                    cost += w * phi[e]
            floor = np.log(cost) if cost > 0.0 else 0.0
            if target[m, 2 * E + g] < floor:
                target[m, 2 * E + g] = floor
        for i in range(I):
            lr[m, i] = a_smooth * lr[m, i] + (1.0 - a_smooth) * target[m, i]
        # ---- 8. respond -----------------------------------------------------------------
        for e in range(E):
            r = np.exp(lr[m, e])
            ramp = min(max((r - 1.0) / (full_ratio - 1.0), 0.0), 1.0)
            sub[m, e] = min(sub_max, sub[m, e] + sub_rate * ramp)
        for g in range(G):
            r = np.exp(lr[m, 2 * E + g])
            ramp = min(max((r - 1.0) / (full_ratio - 1.0), 0.0), 1.0)
            sub[m, E + g] = min(sub_max, sub[m, E + g] + sub_rate * ramp)


@njit(cache=True, parallel=True)
def step(S, C, B, plan, lr, sub, swarf_last, short_imp, queue,
         conc_in, cap, dem_factor, inflow, ctl_active, approval, ahead, review_n0, review_frac,
         slot,
         own_share, link_o, link_d, link_i, link_w, S0, B0, demand0, line_item, line_order,
         line_prio, elasticity, item_form, item_el, grade_reo, metal_per_magnet,
         swarf_per_magnet, grade_w, price0, cov, quota0, ctl_origin, leakage, frac_grid_step,
         frac_left, cdf, par,
         out_prod, out_imp, out_exp, out_drawn, out_del, out_cons, out_need, out_want,
         out_price, out_conc_used, out_filed, out_approved,
         line_el, line_sector, out_short_item, out_phys_el, out_red_el, out_phys_sec,
         out_red_sec, out_need_sec, unsold0, out_unsold, swarf_share, line_e, line_f,
         eps_item, ratio0, out_pipeline, out_expected, work):
    """One month for every path of a chunk: arrays carry a leading paths axis."""
    for p in prange(S.shape[0]):
        step_path(S[p], C[p], B[p], plan[p], lr[p], sub[p], swarf_last[p], short_imp[p],
                  queue[p], conc_in[p], cap[p], dem_factor[p], inflow[p], ctl_active[p],
                  approval[p], ahead[p], review_n0[p], review_frac[p], slot,
                  own_share, link_o, link_d, link_i, link_w, S0, B0, demand0, line_item,
                  line_order, line_prio, elasticity, item_form, item_el, grade_reo,
                  metal_per_magnet, swarf_per_magnet, grade_w, price0, cov, quota0, ctl_origin,
                  leakage,
                  frac_grid_step, frac_left, cdf, par,
                  out_prod[p], out_imp[p], out_exp[p], out_drawn[p], out_del[p], out_cons[p],
                  out_need[p], out_want[p], out_price[p], out_conc_used[p], out_filed[p],
                  out_approved[p], line_el, line_sector, out_short_item[p], out_phys_el[p],
                  out_red_el[p], out_phys_sec[p], out_red_sec[p], out_need_sec[p], unsold0,
                  out_unsold[p], swarf_share, line_e, line_f, eps_item, ratio0,
                  out_pipeline[p], out_expected[p], work[p])
