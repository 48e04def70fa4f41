"""Per-path totals over the horizon, kept month by month inside the kernel's loop over tiles.

Peak and lowest price ratios by region and for the outside zone, physical shortage and
demand reduction by region and sector and by region and element, recycled and new supply,
and the month each sector first stops. `kernel.step` runs `totals_tile` on each tile right
after its month, while the tile's arrays are still in cache; `observers.PathSummary` holds
the totals (`Totals`, in the kernel's layout) and copies them out per path at a block's end.

After editing this file, delete src/oreflow/simulate/__pycache__ (see jit.py).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from oreflow.simulate.jit import JIT


class Totals(NamedTuple):
    """A block's running totals, [tile, ..., lane] (`kernel.tiles`), and what they weigh by.
    M regions, E elements, S sectors; a Totals with no tiles keeps nothing."""

    threshold: float  # share of a sector's need short that counts as a stoppage
    inv_p0: np.ndarray  # [M, E] 1 / base price (0: untraded)
    outside_w: np.ndarray  # [M, E] a region's weight in the outside zone's price
    metal_per_oxide: np.ndarray  # [E] t element per t REO-eq
    month: np.ndarray  # [tile] the last month totalled
    peak: np.ndarray  # [tile, M, E, lane] price ratios
    low: np.ndarray
    peak_outside: np.ndarray  # [tile, E, lane]
    low_outside: np.ndarray
    secondary: np.ndarray  # [tile, E, lane] t element
    new_supply: np.ndarray
    unmet_el: np.ndarray  # [tile, M, E, lane] t element
    reduction_el: np.ndarray
    unmet: np.ndarray  # [tile, M, S, lane] t element
    reduction: np.ndarray
    need: np.ndarray
    first: np.ndarray  # [tile, M, S, lane] month of the first stoppage (inf: none)
    prev: np.ndarray  # [tile, M, S, lane] last month's share short


def no_totals(M: int, E: int, S: int) -> Totals:
    """Totals that keep nothing (a run without PathSummary)."""
    z2, z1 = np.zeros((M, E)), np.zeros(E)
    return Totals(0.0, z2, z2, z1, np.zeros(0), *(np.zeros((0, *s, 1)) for s in (
        (M, E), (M, E), (E,), (E,), (E,), (E,), (M, E), (M, E), (M, S), (M, S), (M, S),
        (M, S), (M, S))))


@njit(**JIT)
def totals_tile(n, t, b, tot, price, secondary, new_supply, unmet_el_m, red_el_m, phys_s,
                red_s, need_s, out):
    """Month t for the first n lanes of tile b: tile arrays [..., lane], but new_supply
    [paths, E] paths first (the tile's paths start at b x lanes). A sector's first stoppage
    is interpolated within the month from last month's share. Scratch: out [lanes] (the
    outside zone's price ratio)."""
    M, E, W = price.shape
    S = phys_s.shape[1]
    inv_p0, outside_w, mpo = tot.inv_p0, tot.outside_w, tot.metal_per_oxide
    peak, low, peak_outside, low_outside = tot.peak[b], tot.low[b], tot.peak_outside[b], \
        tot.low_outside[b]
    for e in range(E):
        for q in range(n):
            out[q] = 0.0
        for m in range(M):
            w, inv = outside_w[m, e], inv_p0[m, e]
            if inv > 0.0:
                for q in range(n):
                    ratio = price[m, e, q] * inv
                    p, lo = peak[m, e, q], low[m, e, q]
                    peak[m, e, q] = ratio if not ratio <= p else p  # replaces the initial NaN
                    low[m, e, q] = ratio if not ratio >= lo else lo
                    out[q] += ratio * w
            else:
                for q in range(n):
                    out[q] += price[m, e, q] * inv * w
            for q in range(n):
                tot.unmet_el[b, m, e, q] += unmet_el_m[m, e, q]
                tot.reduction_el[b, m, e, q] += red_el_m[m, e, q]
        for q in range(n):
            p, lo = peak_outside[e, q], low_outside[e, q]
            peak_outside[e, q] = out[q] if not out[q] <= p else p
            low_outside[e, q] = out[q] if not out[q] >= lo else lo
    first_path = b * W  # recycled and new oxide, paths first (each sum in region order)
    for e in range(E):
        for m in range(M):
            for q in range(n):
                tot.secondary[b, e, q] += secondary[m, e, q] * mpo[e]
        for q in range(n):
            tot.new_supply[b, e, q] += new_supply[first_path + q, e] * mpo[e]
    first, prev, threshold = tot.first[b], tot.prev[b], tot.threshold
    for m in range(M):
        for s_ in range(S):
            for q in range(n):
                ph, nd = phys_s[m, s_, q], need_s[m, s_, q]
                tot.unmet[b, m, s_, q] += ph
                tot.reduction[b, m, s_, q] += red_s[m, s_, q]
                tot.need[b, m, s_, q] += nd
                share = ph / nd if nd > 0.0 else 0.0
                before, was = prev[m, s_, q], first[m, s_, q]
                f = (threshold - before) / (share - before) if share > before else 1.0
                stops = share >= threshold and was == np.inf
                first[m, s_, q] = t + min(max(f, 0.0), 1.0) if stops else was
                prev[m, s_, q] = share
    tot.month[b] = t
