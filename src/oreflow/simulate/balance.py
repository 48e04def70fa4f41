"""The independent balance: stocks rebuilt from cumulative flows, against the stocks the step
carries.

Merchant stock = production + inflow + imports - exports - inputs used - unsold - deliveries;
concentrate = arrivals - used; end users' own stock = deliveries - consumption. The code
shares nothing with the month step but the base year's line -> item map: it reads the
month's flows and end-of-month stocks and keeps its own running stocks. It runs inside the
kernel's loop over tiles, on each tile right after its month, while the tile's arrays are
still in cache (`kernel.step`; read from memory afterwards it cost as much as a third of the
step). `observers.BalanceCheck` holds its state and reports the largest gap.

After editing this file, delete src/oreflow/simulate/__pycache__ (see jit.py).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from oreflow.simulate.jit import JIT


@njit(**JIT)
def balance_tile(n, S, C, B, prod, inflow, imp, exp_, used, unsold, deliv, cons, conc_in,
                 conc_used, line_item, stock, conc_stock, buyer_stock, gap, bad):
    """One month for the first n lanes of a tile (arrays [..., lanes]): the running stocks
    S [M, I], C [M, E], B [M, L] take the month's flows; returns the largest absolute gap to
    the step's stocks (inf if any gap is not finite). Scratch: gap, bad [lanes]."""
    M, I = S.shape[0], S.shape[1]
    L, E = deliv.shape[1], C.shape[1]
    for q in range(n):
        gap[q] = 0.0
        bad[q] = 0.0
    for m in range(M):
        for i in range(I):
            for q in range(n):
                S[m, i, q] += (prod[m, i, q] + inflow[m, i, q] + imp[m, i, q] - exp_[m, i, q]
                               - used[m, i, q] - unsold[m, i, q])
        for l in range(L):
            it = line_item[l]
            for q in range(n):
                S[m, it, q] -= deliv[m, l, q]
                B[m, l, q] += deliv[m, l, q] - cons[m, l, q]
        for e in range(E):
            for q in range(n):
                C[m, e, q] += np.float64(conc_in[m, e, q]) - conc_used[m, e, q]
        # the largest gap by lane; d - d is nan where d is not finite
        for i in range(I):
            for q in range(n):
                d = abs(S[m, i, q] - stock[m, i, q])
                gap[q] = max(gap[q], d)
                bad[q] += d - d
        for l in range(L):
            for q in range(n):
                d = abs(B[m, l, q] - buyer_stock[m, l, q])
                gap[q] = max(gap[q], d)
                bad[q] += d - d
        for e in range(E):
            for q in range(n):
                d = abs(C[m, e, q] - conc_stock[m, e, q])
                gap[q] = max(gap[q], d)
                bad[q] += d - d
    worst = 0.0
    for q in range(n):
        if bad[q] != 0.0:  # nan
            return np.inf
        worst = max(worst, gap[q])
    return worst
