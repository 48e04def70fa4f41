"""Plain-numpy versions of the engine's hot phases, vectorised over paths.

They state the same equations as `kernel.licences`, `kernel.ship`, `kernel.arbitrage` and
`kernel.use` (fused
per path with numba, for speed) in array form: the tests run both on random states and
require the same result, so the fast code is checked against code that reads like the
model description (docs/model.md, section 3)."""

from __future__ import annotations

import numpy as np


def licences(req, queue, slot, cov, quota0, ctl_ptr, ctl_j, active, approval, ahead,
             review_n0, review_frac, item_form, link_d, link_i, M, I):
    """req [P, NL]; queue [P, Lq, NC] (updated; column c is control k's link ctl_j[c] for c
    in ctl_ptr[k]:ctl_ptr[k + 1]); active [P, K]; approval and ahead [P, K, 3]; review_n0
    (int), review_frac [P, K]. Returns eff [P, NL] and filed, approved, pipeline and
    expected [P, M, I] (as `kernel.licences`)."""
    P, Lq, NC = queue.shape
    eff = req.copy()
    out = {k: np.zeros((P, M, I)) for k in ("filed", "approved", "pipeline", "expected")}
    p = np.arange(P)
    for k in range(len(ctl_ptr) - 1):
        cols = np.arange(ctl_ptr[k], ctl_ptr[k + 1])
        links = ctl_j[cols]  # control k's links (cov > 0)
        form = item_form[link_i[links]]
        cv = cov[k, links]
        act = active[:, k][:, None]
        r = req[:, links]
        controlled = r * cv
        q = queue[:, :, cols]  # [P, Lq, n] (a copy: written back below)
        q[:, slot % Lq] = np.where(act, controlled, 0.0)
        eff[:, links] = np.where(act, r * (1 - cv), eff[:, links])
        n0 = review_n0[:, k]
        q0 = np.where((n0 < Lq)[:, None], q[p, (slot - n0) % Lq], 0.0)
        q1 = np.where((n0 + 1 < Lq)[:, None], q[p, (slot - n0 - 1) % Lq], 0.0)
        fr = review_frac[:, k][:, None]
        processed = (1 - fr) * q0 + fr * q1
        share = np.where(act, approval[:, k][:, form], 1.0)
        quota = quota0[k, links][None, :]
        ok = np.where((quota > 0) & act, np.minimum(processed, share * quota),
                      processed * share)
        eff[:, links] = eff[:, links] + ok
        coming = ahead[:, k][:, form]
        flowing = np.where(act, ok, controlled + processed)
        counted = np.where(quota > 0, np.minimum(controlled, coming * quota),
                           controlled * coming)
        pending = fr * q0
        for n in range(Lq):
            pending = pending + np.where((n < n0)[:, None], q[:, (slot - n) % Lq], 0.0)
        queue[:, :, cols] = q
        for name, v in (("filed", np.where(act, controlled, 0.0)), ("approved", ok),
                        ("expected", counted - flowing), ("pipeline", pending * coming)):
            np.add.at(out[name], (slice(None), link_d[links], link_i[links]), v)
    return eff, out


def ship(S, S0, eff, req, want_item, link_o, link_d, link_i, active, ctl_origin, leakage):
    """S [P, M, I] (a new array is returned); eff, req [P, NL]; want_item [P, M, I];
    active [P, K]. Returns S, imports, exports [P, M, I] and the unmet requests [P, M, I]."""
    P, M, I = S.shape
    S = S.copy()
    asked = np.zeros((P, M, I))
    np.add.at(asked, (slice(None), link_o, link_i), eff)
    avail = np.maximum(S - want_item, 0.0)
    fill = np.where(asked > 0, np.minimum(1.0, np.divide(avail, asked, out=np.ones_like(avail),
                                                         where=asked > 0)), 1.0)
    sent = eff * fill[:, link_o, link_i]
    for k in range(len(ctl_origin)):
        lam = leakage[k]
        if lam <= 0:
            continue
        mine = link_o == ctl_origin[k]
        tot_sent = np.zeros((P, I))
        tot_req = np.zeros((P, I))
        np.add.at(tot_sent, (slice(None), link_i[mine]), sent[:, mine])
        np.add.at(tot_req, (slice(None), link_i[mine]), req[:, mine])
        ts, tr = tot_sent[:, link_i], tot_req[:, link_i]
        pooled = (1 - lam) * sent + lam * ts * np.divide(req, tr, out=np.zeros_like(req),
                                                         where=tr > 0)
        sent = np.where(mine[None] & active[:, k][:, None] & (tr > 0), pooled, sent)
    imp = np.zeros((P, M, I))
    exp = np.zeros((P, M, I))
    np.add.at(exp, (slice(None), link_o, link_i), sent)
    np.add.at(imp, (slice(None), link_d, link_i), sent)
    S += imp - exp
    short = np.zeros((P, M, I))
    np.add.at(short, (slice(None), link_d, link_i), req - sent)
    short = np.maximum(short, 0.0)
    controlling = np.zeros((P, M), bool)
    for k in range(len(ctl_origin)):
        controlling[:, ctl_origin[k]] |= active[:, k]
    spare = np.where(controlling[:, :, None], 0.0, np.maximum(S - S0 - want_item, 0.0))
    unmet_t, spare_t = short.sum(1), spare.sum(1)  # [P, I]
    moved = np.where((unmet_t > 1e-12) & (spare_t > 0), np.minimum(unmet_t, spare_t), 0.0)
    give = spare * np.divide(moved, spare_t, out=np.zeros_like(moved), where=spare_t > 0)[:,
                                                                                        None]
    share = np.divide(short, unmet_t[:, None], out=np.zeros_like(short),
                      where=unmet_t[:, None] > 0)
    # origin o gives to every destination d != o in proportion to d's unmet requests
    flow = give[:, :, None, :] * share[:, None, :, :]  # [P, o, d, I]
    idx = np.arange(M)
    flow[:, idx, idx, :] = 0.0
    out_o, in_d = flow.sum(2), flow.sum(1)
    S += in_d - out_o
    exp += out_o
    imp += in_d
    short *= 1 - np.divide(moved, unmet_t, out=np.zeros_like(moved), where=unmet_t > 0)[:, None]
    return S, imp, exp, short


def arbitrage(S, lr, want_item, priced, controlling, into, rate, margin):
    """S, lr, want_item [P, M, I]; priced [M, I]; controlling [P, M] (bool); into [P, M].
    Markets that control nothing sell a share `rate` of their stock beyond home wants to
    markets that price the item (relative to base) above theirs by more than `margin`, split
    by the gaps 1 - (1 + margin) p_o / p_d. Returns S, imports, exports [P, M, I] (as
    `kernel.arbitrage`)."""
    M = S.shape[1]
    sell = np.where(controlling[:, :, None], 0.0, S - want_item)
    x = lr[:, :, None, :] - lr[:, None, :, :] + np.log1p(margin)  # [P, o, d, I]
    ok = ((x < 0.0) & (into[:, None, :, None] > 0.0) & ~np.eye(M, dtype=bool)[None, :, :, None]
          & (sell[:, :, None, :] > 0.0) & (priced > 0.0)[None, None, :, :])
    gap = np.where(ok, 1.0 - np.exp(np.minimum(x, 0.0)), 0.0)
    scale = rate * np.maximum(sell, 0.0) / np.maximum(gap.sum(2), 1.0)  # [P, o, I]
    flow = scale[:, :, None, :] * gap * into[:, None, :, None]
    exp, imp = flow.sum(2), flow.sum(1)
    return S - exp + imp, imp, exp


def use(S, B, B0, demand0, want, line_item, line_prio, tau_b, step, frac_left, cdf):
    """S [P, M, I], B [P, M, L] (new arrays returned); want [P, M, L]. Returns S, B,
    deliveries and consumption [P, M, L]."""
    S, B = S.copy(), B.copy()
    ask = np.where(demand0[None] > 0, np.maximum(want + (B0 - B) / tau_b, 0.0), 0.0)
    deliv = np.zeros_like(ask)
    for i in np.unique(line_item):
        avail = np.maximum(S[:, :, i], 0.0)
        for p in np.unique(line_prio[line_item == i]):
            sel = (line_item == i) & (line_prio == p)
            asked = ask[:, :, sel].sum(2)
            fill = np.where(asked > 0, np.minimum(1.0, np.divide(avail, asked,
                                                                 out=np.zeros_like(avail),
                                                                 where=asked > 0)), 0.0)
            q = ask[:, :, sel] * fill[:, :, None]
            deliv[:, :, sel] = q
            got = q.sum(2)
            avail = avail - got
            S[:, :, i] -= got
    short = want - deliv
    left = np.divide(B, B0, out=np.zeros_like(B), where=B0 > 0)
    # months drawn: invert the decreasing table of stock left, then the share still holding
    z = np.interp(-left, -frac_left, np.arange(len(frac_left)) * step)
    still = 1.0 - np.interp(z, np.arange(len(cdf)) * step, cdf)
    draw = np.where(short > 0, np.minimum(B, short * still), 0.0)
    cons = np.where(short > 0, deliv + draw, want)
    B = np.where(short > 0, B - draw, B + (deliv - want))
    active = demand0[None] > 0
    return (S, np.where(active, B, B), np.where(active, deliv, 0.0),
            np.where(active, cons, 0.0))
