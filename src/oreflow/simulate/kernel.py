"""One month of the market, fused over tiles of paths (numba).

The month is a sequence of phases, each a small function over one tile's state; `step`
runs them for every tile of a chunk in parallel (`prange`). The phases, in order:

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
finished magnet).

Layout and speed (issue 12, part 11). A tile-month is ~20,800 loops over the tile's lanes
(counted before the last speed step, which skips some), most of them a few operations each,
which take several times what their arithmetic needs: they are bound by moving rows of 64
numbers between the core's caches (benchmarks/bench_lane_loops.py; README, Speed), so what
costs is the bytes a phase reads and writes, not its arithmetic. So rows are single
precision (`SINGLE`) except the stock accounts (`ACCOUNT`, double: the balance's 1e-9),
which took the command 0.85x the time of rows all double (paired, 30,000 paths). Every
per-path array is stored in tiles of LANES paths with the paths innermost, [tile, ..., lane]
(`tiles`; `paths_first` gives [paths, ...] back): a phase loops over the base year's entries
once and, inside, over the lanes, which LLVM turns into vector instructions (a tile's data
is contiguous, so the loops' strides are plain). The phases take one tile's arrays [...,
lane] and the number n of lanes to compute, which each phase asks numba to take as a
constant (`literally`: it compiles a phase for each n it is given): the kernel gives LANES,
every lane of a tile, padding included, so that every lane loop's trip count is known when
compiled. With every array argument declared not to overlap another (`jit.JIT`), LLVM then
vectorises the loops with no run-time checks of trip count or overlap (both together: 0.92x
the time of neither; either alone 0.97-1.0x). exp and log run over the lanes too (`vecmath`,
glibc's results to the last bit in double, then rounded to the row's width). The phases loop
over the non-zero entries of the sparse base year (`Static`: grade compositions, controlled
links, swarf routes, an origin's links, as index lists built once) and keep their scratch
space per tile. Every path runs the same operations in the same order as it would alone, so
results are identical however paths are split into tiles, chunks or runs.

Every function with a `prange` also has a serial twin (`SERIAL`, compiled without the GIL)
for blocks of paths run side by side, one a thread (`run.run_blocks`): then each thread
keeps its block's tiles to itself and the Python between two months of one block overlaps
another block's month.
"""

from __future__ import annotations

import types
from typing import NamedTuple

import numpy as np
from numba import get_thread_id, literally, njit, prange

from oreflow.simulate.balance import balance_tile
from oreflow.simulate.jit import JIT
from oreflow.simulate.totals import totals_tile
from oreflow.simulate.vecmath import exp_lanes, log_lanes, times_exp_lanes

OX, MET, MAG = 0, 1, 2

COVER_BUCKETS = 1024
"""Buckets of the index that speeds up the inverse of the buyers' cover table (a power of
two, so that a share times COVER_BUCKETS is exact)."""


LANES = 64
"""Paths in a tile, the unit a task runs: every per-path array is stored in tiles of LANES
paths, [tile, ..., lane] (`tiles`), so that a task's data is contiguous and each phase's
inner loops run over the lanes in vector registers. Measured (whole command, paired, AVX-512
machine with 1 MB of L2 a core): at 20,000 paths 16 lanes 1.24x the time of 32, 48 0.94x, 64
0.97x, 128 1.02x, 56 ~3% ahead of 48 and of 64 (within the noise); at 100,000 paths 56 0.92x
of 32 and 64 within 1% of 56. Longer tiles spread each entry's loop overhead over more
paths, until (likely) a tile's state and scratch (~70 kB a lane when every row was double;
these figures predate single-precision rows) no longer stay in the caches. 64 rather than
56: blocks of a power-of-two count of paths then fill whole tiles, shared evenly by the
threads (a sweep of 256-path tasks took 1.1-1.3x as long with 56 lanes: 5 tiles, of which
one thread ran 3). Results do not depend on it."""


SINGLE = np.float32
"""Width of every per-path row but the stock accounts (prices, plans, wants, requests, the
licence queue, the month's inputs and the outputs no stock is booked from), and of the base
year's constants: a lane loop moves half the bytes of double rows (the loops are bound by
moving rows between the caches, not by arithmetic). Single precision keeps ~7 significant
digits, far finer than any input the model has."""

ZERO, ONE = SINGLE(0.0), SINGLE(1.0)
TINY = SINGLE(1e-12)
"""Constants in SINGLE width: a float literal is double to numba, and a double operand turns
a loop over single-precision rows into double arithmetic (measured: 0.95x the kernel's time
with these, against double literals)."""

ACCOUNT = np.float64
"""Width of the stock accounts: merchants', concentrate and end users' stocks, and the
outputs a stock is booked from in more than one addend (production, imports, exports, inputs
drawn, consumption), so that the independent balance holds to 1e-9; and of the licences
filed and approved (kept only for observers), so that what the queue approves adds up to
what was filed. Where a single-precision output is booked into a stock (concentrate used,
deliveries, unsold), the step books the rounded number, the one the balance reads."""

ACCOUNTS = frozenset({"S", "C", "B", "prod", "imp", "exp", "drawn", "cons", "filed",
                      "approved"})
"""The engine's names of the state and outputs kept in ACCOUNT width."""


def width(name: str):
    """The dtype of the engine's state or output `name`."""
    return ACCOUNT if name in ACCOUNTS else SINGLE


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
    cap0: np.ndarray  # [M, I] base-year capacity (every path's unless a shock changes it)
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


def narrow(st: Static) -> Static:
    """`st` with its floating-point arrays and numbers in SINGLE width."""
    return Static(*(SINGLE(v) if isinstance(v, float) else v.astype(SINGLE)
                    if isinstance(v, np.ndarray) and v.dtype.kind == "f" else v for v in st))


class Controls(NamedTuple):
    """The licence controls of a chunk: [K, NL] coverage and quotas, their origins and
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


def tiles(n: int, *shape: int, fill=None, dtype=float) -> np.ndarray:
    """A per-path array of n paths in the kernel's layout: [tile, *shape, lane], LANES
    lanes a tile (the last tile padded), each tile contiguous. `fill` [*shape] sets every
    path (padding included)."""
    a = np.zeros(((n + LANES - 1) // LANES, *shape, LANES), dtype)
    if fill is not None:
        a[:] = np.asarray(fill)[..., None]
    return a


def paths_first(a: np.ndarray, n: int) -> np.ndarray:
    """[n, *shape]: a copy of the first n paths of a `tiles` array, paths first."""
    return np.moveaxis(a, -1, 1).reshape(-1, *a.shape[1:-1])[:n]


@njit(parallel=True, **JIT)
def _to_tiles(src, dst):
    n, F, W = src.shape[0], src.shape[1], dst.shape[-1]
    for b in prange(dst.shape[0]):
        first = b * W
        for f in range(F):  # element by element (a row slice per path cost ~5x more)
            for q in range(min(W, n - first)):
                dst[b, f, q] = src[first + q, f]


def _tiler(copy):
    """`to_tiles` over the compiled copy loop `copy` (parallel or its serial twin)."""

    def to_tiles(x: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Write paths-first x [n, *shape] into the `tiles` array out; returns out."""
        n = x.shape[0]
        copy(np.ascontiguousarray(x).reshape(n, -1),
             out.reshape(out.shape[0], -1, out.shape[-1]))
        return out

    return to_tiles


to_tiles = _tiler(_to_tiles)


@njit(parallel=True, **JIT)
def oxide_inflow(n, new_supply, land, recycled, extra, rec_ptr, rec_r, eol, out, secondary):
    """This month's oxide inflow into `out` [tile, M, I, lane], columns e < E (the others
    stay as they are): new supply [n, E] landed in the markets by `land` [M, E], plus, if
    `recycled`, the recycled oxide of each market, also written to `secondary` [tile, M, E,
    lane]: extra [n, R] (share of each recycling region's end-of-life flow recovered above the
    base year) x eol [R, E], over the market's recycling regions rec_r[rec_ptr[m]:rec_ptr[m +
    1]] in region order. Each sum starts from 0 in that order."""
    W = out.shape[-1]
    M, E = land.shape
    R = extra.shape[1]
    for b in prange(out.shape[0]):
        n_ = min(W, n - b * W)
        ns, ex = np.empty((E, W)), np.empty((R, W))  # the tile's paths, lanes innermost
        for q in range(n_):
            for e in range(E):
                ns[e, q] = new_supply[b * W + q, e]
            for r in range(R):
                ex[r, q] = extra[b * W + q, r]
        for m in range(M):
            for e in range(E):
                lw = land[m, e]
                for q in range(n_):
                    out[b, m, e, q] = ZERO + ns[e, q] * lw
                if recycled:
                    for q in range(n_):
                        secondary[b, m, e, q] = ZERO
                    for k in range(rec_ptr[m], rec_ptr[m + 1]):
                        r = rec_r[k]
                        v = eol[r, e]
                        for q in range(n_):
                            secondary[b, m, e, q] += ex[r, q] * v
                    for q in range(n_):
                        out[b, m, e, q] += secondary[b, m, e, q]


@njit(**JIT)
def outside_ratio_tile(n, first, ratio, weight, out, acc):
    """out[first + q, e] for the tile's first n lanes: the outside zone's price ratio of
    element e, sum over regions m of ratio[m, e] (the oxide's price over base, kept by
    `prices`) x weight [M, E], from the first region in region order."""
    M, E = weight.shape
    for e in range(E):
        for q in range(n):
            acc[q] = ratio[0, e, q] * weight[0, e]
        for m in range(1, M):
            for q in range(n):
                acc[q] += ratio[m, e, q] * weight[m, e]
        for q in range(n):
            out[first + q, e] = acc[q]


@njit(inline="always", **JIT)
def _interp(x, grid_lo, grid_step, values):
    """Linear interpolation on a uniform grid, clamped at both ends."""
    pos = (x - grid_lo) / grid_step
    n = values.shape[0]
    if pos <= ZERO:
        return values[0]
    if pos >= n - 1:
        return values[n - 1]
    i = int(pos)
    f = pos - i
    return values[i] * (ONE - f) + values[i + 1] * f


@njit(inline="always", **JIT)
def _months_drawn(remaining, frac_left, bucket_lo, bucket_hi):
    """Inverse of the remaining-stock table: months of want drawn from every buyer that
    leave `remaining` (a share of the starting stock). frac_left decreases from 1 to 0; the
    bisection starts from the bracket of `remaining`'s bucket (`cover_buckets`)."""
    n = frac_left.shape[0]
    if remaining >= frac_left[0]:
        return ZERO
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
    f = (frac_left[lo] - remaining) / span if span > 0 else ZERO
    return lo + f


@njit(**JIT)
def month_prices(st, ratio, out_price, n):
    """Prices at the start of the month: the element's is its separated product's (oxide),
    base x ratio [M, E, lanes] (exp of the oxide's log price ratio, kept by `prices`)."""
    n = literally(n)
    M, E = st.price0.shape
    for m in range(M):
        for e in range(E):
            base = st.price0[m, e]
            if base > 0:
                for q in range(n):
                    out_price[m, e, q] = ratio[m, e, q] * base
            else:
                for q in range(n):
                    out_price[m, e, q] = ZERO


@njit(**JIT)
def demand(st, lr, sub, dem_factor, shifted, out_need, out_want, want_item, sub_eff, n):
    """Need (base x shifts x (1 - substitution)) and want (need x price^elasticity) of every
    line, and the wants summed by item. A magnet grade is thrifted as much as the elements
    in it are (value-weighted), or as the grade itself is when magnets are scarcer:
    `sub_eff` [M, E + G, lanes] is the substitution each line reads (elements, then
    grades). The shifts `dem_factor` are read only if `shifted` (otherwise every factor is
    1). want = need x exp(elasticity x log price ratio), in one loop (`times_exp_lanes`)."""
    n = literally(n)
    M, L = st.demand0.shape
    E = st.price0.shape[1]
    G = st.gw_ptr.shape[0] - 1
    for m in range(M):
        for i in range(want_item.shape[1]):
            for q in range(n):
                want_item[m, i, q] = ZERO
        for e in range(E):
            for q in range(n):
                sub_eff[m, e, q] = sub[m, e, q]
        for g in range(G):
            for q in range(n):
                sub_eff[m, E + g, q] = ZERO
            for k in range(st.gw_ptr[g], st.gw_ptr[g + 1]):
                v, e = st.gw_v[k], st.gw_e[k]
                for q in range(n):
                    sub_eff[m, E + g, q] += v * sub[m, e, q]
            for q in range(n):
                sub_eff[m, E + g, q] = max(sub_eff[m, E + g, q], sub[m, E + g, q])
        for l in range(L):
            d0 = st.demand0[m, l]
            if d0 <= ZERO:
                for q in range(n):
                    out_need[m, l, q] = ZERO
                    out_want[m, l, q] = ZERO
                continue
            i = st.line_item[l]  # the line's own item (oxide, metal or magnet grade)
            si = st.line_sub[l]
            eps = st.elasticity[l]
            if shifted:
                for q in range(n):
                    out_need[m, l, q] = d0 * dem_factor[m, l, q] * (ONE - sub_eff[m, si, q])
            else:  # every factor is 1: d0 x 1 is d0, exactly
                for q in range(n):
                    out_need[m, l, q] = d0 * (ONE - sub_eff[m, si, q])
            if eps != ZERO:
                times_exp_lanes(out_need[m, l], eps, lr[m, i], out_want[m, l], n)
            else:
                for q in range(n):
                    out_want[m, l, q] = out_need[m, l, q]
            for q in range(n):
                want_item[m, i, q] += out_want[m, l, q]


@njit(**JIT)
def orders(st, S, B, plan, out_want, purch, req, ask, n):
    """Purchases (wants, buyers' restocking, the next stage's inputs, merchants' restocking)
    and the requests they make on each trade link (base-year sourcing shares). `ask`
    [M, L, lanes] keeps what each line asks (`use` serves it)."""
    n = literally(n)
    M, I = st.S0.shape
    L = st.demand0.shape[1]
    E = st.price0.shape[1]
    G = st.mg_ptr.shape[0] - 1
    ym, tau_m, tau_b = st.par[1], st.par[3], st.par[4]
    for m in range(M):
        for i in range(I):
            for q in range(n):
                purch[m, i, q] = ZERO
        for l in range(L):
            if st.demand0[m, l] > ZERO:
                it, b0 = st.line_item[l], st.B0[m, l]
                for q in range(n):
                    pur = out_want[m, l, q] + (b0 - B[m, l, q]) / tau_b
                    ask[m, l, q] = pur
                    if pur > ZERO:
                        purch[m, it, q] += pur
        for e in range(E):  # inputs of this month's planned metal and magnet making
            for q in range(n):
                purch[m, e, q] += plan[m, E + e, q] / ym
        for g in range(G):
            for k in range(st.mg_ptr[g], st.mg_ptr[g + 1]):
                mi, mm = st.mg_i[k], st.mg_metal[k]
                for q in range(n):
                    purch[m, mi, q] += plan[m, 2 * E + g, q] * mm
        for i in range(I):
            s0 = st.S0[m, i]
            for q in range(n):
                v = purch[m, i, q] + (s0 - S[m, i, q]) / tau_m
                purch[m, i, q] = ZERO if v < ZERO else v
    for j in range(st.link_o.shape[0]):  # requests origin -> dest (before controls)
        d, i, w = st.link_d[j], st.link_i[j], st.link_w[j]
        for q in range(n):
            req[j, q] = purch[d, i, q] * w


@njit(**JIT)
def licences(req, eff, queue, slot, cov, quota0, ctl_ptr, ctl_j, ctl_active, approval, ahead,
             review_n0, review_frac, item_form, link_d, link_i, out_filed, out_approved,
             out_pipeline, out_expected, keep, n):
    """Requests on controlled links join the queue [Lq, NC, paths] in month `slot` (column c
    is control k's link ctl_j[c], for c in ctl_ptr[k]:ctl_ptr[k + 1], the links with cov >
    0); what was filed `review` months earlier (split between two months) is decided now and
    the share `approval` of it approved. `eff` (the requests an origin will try to ship)
    loses the controlled part and gains the approvals. What buyers can expect:
    `out_pipeline`, what is still under review, and `out_expected`, the controlled requests
    at `ahead`, the approval share announced for the coming months, less what the link
    brings this month (the correction to this month's imports as a guide to the coming
    months). Where `quota0` [K, links] is positive the control is a quota: a link ships at
    most `approval` x quota0 (its base-year flow) of what is decided. Controls' state
    (ctl_active, approval, ahead, review) differs by path: [K, (3,) paths]. `out_filed` and
    `out_approved` (for observers) are written only if `keep`."""
    n = literally(n)
    Lq = queue.shape[0]
    K = ctl_ptr.shape[0] - 1
    M, I = out_filed.shape[0], out_filed.shape[1]
    for m in range(M):
        for i in range(I):
            for q in range(n):
                out_pipeline[m, i, q] = ZERO
                out_expected[m, i, q] = ZERO
                if keep:
                    out_filed[m, i, q] = ZERO
                    out_approved[m, i, q] = ZERO
    now = slot % Lq
    back_at = np.empty(Lq, np.int64)  # the queue's month `back` months ago
    for back in range(Lq):
        back_at[back] = (slot - back) % Lq
    at0, at1, backs = np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, np.int64)
    for k in range(K):
        for q in range(n):  # each lane's months decided now and its months under review
            n0 = review_n0[k, q]
            at0[q], at1[q] = (slot - n0) % Lq, (slot - n0 - 1) % Lq
            backs[q] = min(n0, Lq)
        for c in range(ctl_ptr[k], ctl_ptr[k + 1]):
            j = ctl_j[c]
            cv = cov[k, j]
            d, i = link_d[j], link_i[j]
            f = item_form[i]
            quota = quota0[k, j]
            for q in range(n):
                n0 = review_n0[k, q]
                fr = review_frac[k, q]
                on = ctl_active[k, q]
                r = req[j, q]
                if on:
                    filed = r * cv
                    queue[now, c, q] = filed
                    if keep:
                        out_filed[d, i, q] += filed
                    eff[j, q] = r * (ONE - cv)
                else:
                    queue[now, c, q] = ZERO
                q0 = queue[at0[q], c, q] if n0 < Lq else ZERO
                q1 = queue[at1[q], c, q] if n0 + 1 < Lq else ZERO
                # in double: an application's two parts add up to it (to ~1e-16)
                processed = (1.0 - ACCOUNT(fr)) * q0 + ACCOUNT(fr) * q1
                share = approval[k, f, q] if on else ONE
                ok = processed * share
                if quota > ZERO and on:
                    ok = min(processed, share * quota)
                eff[j, q] += ok
                if keep:
                    out_approved[d, i, q] += ok
                # what buyers count on from this link over the coming months, against what
                # it brings now: requests at the announced approval share (1 when no control
                # is in force or announced), the applications under review at that share
                coming = ahead[k, f, q]
                flowing = ok if on else r * cv + processed
                counted = min(r * cv, coming * quota) if quota > ZERO else r * cv * coming
                out_expected[d, i, q] += counted - flowing
                pending = fr * q0
                for back in range(backs[q]):
                    pending += queue[back_at[back], c, q]
                out_pipeline[d, i, q] += pending * coming


@njit(**JIT)
def ship(S, S0, eff, req, want_item, link_o, link_d, link_i, org_ptr, org_j, ctl_active,
         ctl_origin, leakage, short_imp, out_imp, out_exp, asked_out, fill_out, sent_by,
         sent, asked, spare, controlling, unmet, n):
    """Origins ship requests from what they hold beyond their home wants, pro rata; a share
    `leakage` of a controlling origin's shipments (its links: org_j[org_ptr[o]:org_ptr[o +
    1]]) is pooled over destinations by their requests; requests left unmet are re-sourced
    from spare stock (above target and home wants) at origins that control nothing, and
    what is still unmet is left in `short_imp`. eff, req, want_item and the last eight
    arguments are this tile's lanes (scratch: asked_out, fill_out [M, I, lanes], sent_by
    [NL, lanes], sent, asked [I, lanes], spare, controlling [M, lanes], unmet [lanes])."""
    n = literally(n)
    M, I = S0.shape
    NL = link_o.shape[0]
    K = ctl_origin.shape[0]
    for o in range(M):
        for i in range(I):
            for q in range(n):
                out_imp[o, i, q] = ZERO
                out_exp[o, i, q] = ZERO
                asked_out[o, i, q] = ZERO
                short_imp[o, i, q] = ZERO
    for j in range(NL):
        o, i = link_o[j], link_i[j]
        for q in range(n):
            asked_out[o, i, q] += eff[j, q]
    for o in range(M):
        for i in range(I):
            for q in range(n):
                a = asked_out[o, i, q]
                avail = S[o, i, q] - want_item[o, i, q]
                fill_out[o, i, q] = min(ONE, max(avail, ZERO) / a) if a > ZERO else ONE
    for j in range(NL):
        o, i = link_o[j], link_i[j]
        for q in range(n):
            sent_by[j, q] = eff[j, q] * fill_out[o, i, q]
    for k in range(K):
        lam = leakage[k]
        if lam <= ZERO:
            continue
        c = ctl_origin[k]
        for i in range(I):
            for q in range(n):
                sent[i, q] = ZERO
                asked[i, q] = ZERO
        for jj in range(org_ptr[c], org_ptr[c + 1]):
            j = org_j[jj]
            i = link_i[j]
            for q in range(n):
                sent[i, q] += sent_by[j, q]
                asked[i, q] += req[j, q]
        for jj in range(org_ptr[c], org_ptr[c + 1]):
            j = org_j[jj]
            i = link_i[j]
            for q in range(n):
                if ctl_active[k, q] and asked[i, q] > ZERO:
                    sent_by[j, q] = ((ONE - lam) * sent_by[j, q]
                                     + lam * sent[i, q] * req[j, q] / asked[i, q])
    for j in range(NL):
        o, d, i = link_o[j], link_d[j], link_i[j]
        for q in range(n):
            x = sent_by[j, q]
            S[o, i, q] -= x
            S[d, i, q] += x
            out_exp[o, i, q] += x
            out_imp[d, i, q] += x
            short_imp[d, i, q] += req[j, q] - x
    for o in range(M):
        for q in range(n):
            controlling[o, q] = ZERO
    for k in range(K):
        for q in range(n):
            if ctl_active[k, q]:
                controlling[ctl_origin[k], q] = ONE
    for i in range(I):
        for q in range(n):
            unmet[q] = ZERO
        for d in range(M):
            for q in range(n):
                v = short_imp[d, i, q]
                if v < ZERO:
                    v = ZERO
                short_imp[d, i, q] = v
                unmet[q] += v
        failed = False
        for q in range(n):
            failed |= not unmet[q] <= TINY
        if not failed:
            continue
        for q in range(n):  # re-sourcing, lane by lane (rare: only where requests failed)
            unmet_total = unmet[q]
            if unmet_total <= TINY:
                continue
            spare_total = ZERO
            for o in range(M):
                spare[o, q] = ZERO if controlling[o, q] > ZERO else max(
                    S[o, i, q] - S0[o, i] - want_item[o, i, q], ZERO)
                spare_total += spare[o, q]
            if spare_total <= ZERO:
                continue
            moved = min(spare_total, unmet_total)
            for o in range(M):
                if spare[o, q] <= ZERO:
                    continue
                give = moved * spare[o, q] / spare_total
                for d in range(M):
                    if d == o or short_imp[d, i, q] <= ZERO:
                        continue
                    x = give * short_imp[d, i, q] / unmet_total
                    S[o, i, q] -= x
                    S[d, i, q] += x
                    out_exp[o, i, q] += x
                    out_imp[d, i, q] += x
            for d in range(M):
                short_imp[d, i, q] *= ONE - moved / unmet_total


@njit(**JIT)
def arbitrage(S, lr, want_item, priced, controlling, into, rate, log_margin, out_imp,
              out_exp, sell, gap, n):
    """Merchants in a market that controls nothing sell the stock they hold beyond their
    home wants (`sell`, taken before any of this month's arbitrage) to markets whose price,
    relative to base, exceeds theirs by more than the trade margin: a share `rate` a month,
    split over the dearer markets by their gaps g = 1 - (1 + margin) p_o / p_d (scaled down
    when the gaps add up to more than 1). `into` [M, lanes] is the share a market may
    receive (a destination-specific control lets in its leakage); a market buys only items
    it prices (`priced` [M, I] > 0: it uses them). Prices are compared relative to base: the
    base year is taken as free of arbitrage. Lane by lane (off by default). Scratch: sell,
    gap [M, lanes]."""
    n = literally(n)
    M, I = priced.shape
    if rate <= ZERO:
        return
    for i in range(I):
        for q in range(n):
            for o in range(M):
                sell[o, q] = ZERO if controlling[o, q] > ZERO else S[o, i, q] - want_item[o, i, q]
            for o in range(M):
                if sell[o, q] <= ZERO:
                    continue
                total = ZERO
                for d in range(M):
                    gap[d, q] = ZERO
                    x = lr[o, i, q] - lr[d, i, q] + log_margin
                    if d != o and into[d, q] > ZERO and priced[d, i] > ZERO and x < ZERO:
                        gap[d, q] = ONE - np.exp(x)
                        total += gap[d, q]
                if total <= ZERO:
                    continue
                scale = rate * sell[o, q] / max(total, ONE)
                for d in range(M):
                    if gap[d, q] > ZERO:
                        x = scale * gap[d, q] * into[d, q]
                        S[o, i, q] -= x
                        S[d, i, q] += x
                        out_exp[o, i, q] += x
                        out_imp[d, i, q] += x


@njit(**JIT)
def use(S, B, B0, demand0, want, ask, line_order, cls_ptr, cls_item, cls_first,
        frac_grid_step, frac_left, cdf, bucket_lo, bucket_hi, out_del, out_cons, avail, asked,
        fill, n):
    """Each market serves an item's lines from its merchant stock by priority (pro rata
    within a priority class: line_order[cls_ptr[c]:cls_ptr[c + 1]], an item's classes in
    turn from the one marked cls_first) what they ask, `ask` [M, L, lanes] = want + (B0 -
    B) / tau_b (`orders`; negative asks nothing); end users then consume from deliveries and
    their own stocks, spread across buyers: a share of buyers given by the cover table has
    run dry and consumes only what it receives. Scratch: avail, asked, fill [lanes]."""
    n = literally(n)
    M, L = demand0.shape
    C = cls_item.shape[0]
    for m in range(M):
        for l in range(L):  # lines with demand get both below, in every lane
            if not demand0[m, l] > ZERO:
                for q in range(n):
                    out_del[m, l, q] = ZERO
                    out_cons[m, l, q] = ZERO
        for q in range(n):
            avail[q] = ZERO
        for c in range(C):
            i = cls_item[c]
            if cls_first[c]:
                for q in range(n):
                    avail[q] = max(S[m, i, q], ZERO)
            for q in range(n):
                asked[q] = ZERO
            for k in range(cls_ptr[c], cls_ptr[c + 1]):  # what the class asks (in out_del)
                l = line_order[k]
                if demand0[m, l] > ZERO:
                    for q in range(n):
                        a = max(ask[m, l, q], ZERO)
                        out_del[m, l, q] = a
                        asked[q] += a
            for q in range(n):
                fill[q] = min(ONE, avail[q] / asked[q]) if asked[q] > ZERO else ZERO
            for k in range(cls_ptr[c], cls_ptr[c + 1]):
                l = line_order[k]
                if demand0[m, l] <= ZERO:
                    continue
                for q in range(n):
                    x = out_del[m, l, q] * fill[q]
                    out_del[m, l, q] = x
                    avail[q] -= x
                    S[m, i, q] -= x
        for l in range(L):  # buyers' own stocks, spread across buyers
            if demand0[m, l] <= ZERO:
                continue
            b0 = B0[m, l]
            short = False
            for q in range(n):  # delivered all they want: the rest restocks them
                w, x = want[m, l, q], out_del[m, l, q]
                if x >= w:
                    out_cons[m, l, q] = w
                    B[m, l, q] += ACCOUNT(x) - w
                short |= not x >= w
            if not short:
                continue
            for q in range(n):  # short of want (lane by lane): buyers with stock draw on it
                w, x = want[m, l, q], out_del[m, l, q]
                if not x >= w:
                    z = _months_drawn(B[m, l, q] / b0, frac_left, bucket_lo,
                                      bucket_hi) * frac_grid_step
                    still = ONE - _interp(z, ZERO, frac_grid_step, cdf)
                    draw = min(B[m, l, q], (w - x) * still)
                    B[m, l, q] -= draw
                    out_cons[m, l, q] = x + draw


@njit(**JIT)
def produce(st, S, C, plan, swarf_last, orders_, conc_in, cap, capped, inflow, out_prod,
            out_drawn, out_conc_used, want_g, need_e, phi, swarf_made, f_g, q_g, n):
    """Separation (from concentrate on hand), metal (from oxide) and magnets (from metal,
    each grade limited by its scarcest element) move towards their orders within capacity
    (`cap`, or the base year's `st.cap0` when no shock changes capacity: `capped` false);
    swarf goes back to separation where it is recycled (kept unprocessed elsewhere: lost)."""
    n = literally(n)
    M, I = st.S0.shape
    E = st.price0.shape[1]
    G = st.mg_ptr.shape[0] - 1
    ys, ym, kappa = st.par[0], st.par[1], st.par[2]
    for m in range(M):
        for i in range(I):
            for q in range(n):
                out_prod[m, i, q] = ZERO
                out_drawn[m, i, q] = ZERO
        for e in range(E):
            for q in range(n):
                swarf_made[m, e, q] = ZERO
        for e in range(E):  # separation (primary), from concentrate on hand
            c0 = st.cap0[m, e]
            for q in range(n):
                C[m, e, q] += conc_in[m, e, q]
                target = orders_[m, e, q] - swarf_last[m, e, q]
                plan[m, e, q] += kappa * (target - plan[m, e, q])
                c = cap[m, e, q] if capped else c0
                x = min(plan[m, e, q], c, C[m, e, q] * ys)
                x = max(x, ZERO)
                used = SINGLE(x / ys)  # booked as the balance reads it
                C[m, e, q] -= used
                out_conc_used[m, e, q] = used
                out_prod[m, e, q] = x
                S[m, e, q] += x + inflow[m, e, q]
        for e in range(E):  # metal, from oxide on hand
            i = E + e
            c0 = st.cap0[m, i]
            for q in range(n):
                plan[m, i, q] += kappa * (orders_[m, i, q] - plan[m, i, q])
                c = cap[m, i, q] if capped else c0
                x = max(min(plan[m, i, q], c, S[m, e, q] * ym), ZERO)
                drawn = x / ym
                S[m, e, q] -= drawn
                out_drawn[m, e, q] += drawn
                S[m, i, q] += x + inflow[m, i, q]
                out_prod[m, i, q] = x
        # magnets, from metal on hand: each grade is limited by its scarcest element
        for g in range(G):
            i = 2 * E + g
            c0 = st.cap0[m, i]
            for q in range(n):
                plan[m, i, q] += kappa * (orders_[m, i, q] - plan[m, i, q])
                c = cap[m, i, q] if capped else c0
                want_g[g, q] = max(min(plan[m, i, q], c), ZERO)
        for e in range(E):
            for q in range(n):
                phi[e, q] = ONE
                need_e[e, q] = ZERO
            for k in range(st.me_ptr[e], st.me_ptr[e + 1]):
                g, v = st.me_g[k], st.me_v[k]
                for q in range(n):
                    need_e[e, q] += want_g[g, q] * v
            for q in range(n):
                need, s = need_e[e, q], S[m, E + e, q]
                if need > s and need > ZERO:
                    phi[e, q] = max(s, ZERO) / need
        for g in range(G):
            for q in range(n):
                f_g[q] = ONE
            for k in range(st.mg_ptr[g], st.mg_ptr[g + 1]):
                if st.mg_metal[k] > ZERO:
                    e = st.mg_e[k]
                    for q in range(n):
                        if phi[e, q] < f_g[q]:
                            f_g[q] = phi[e, q]
            i = 2 * E + g
            for q in range(n):
                x = want_g[g, q] * f_g[q]
                q_g[q] = x
                out_prod[m, i, q] = x
                S[m, i, q] += x + inflow[m, i, q]
            for k in range(st.mg_ptr[g], st.mg_ptr[g + 1]):
                mi, mm, e, sw = st.mg_i[k], st.mg_metal[k], st.mg_e[k], st.mg_swarf[k]
                for q in range(n):
                    drawn = q_g[q] * mm
                    S[m, mi, q] -= drawn
                    out_drawn[m, mi, q] += drawn
                    swarf_made[m, e, q] += q_g[q] * sw
    for m in range(M):
        for e in range(E):
            for q in range(n):
                swarf_last[m, e, q] = ZERO
    for k in range(st.sw_src.shape[0]):
        src, e, dst, v = st.sw_src[k], st.sw_e[k], st.sw_dst[k], st.sw_v[k]
        for q in range(n):
            made = swarf_made[src, e, q]
            if made > ZERO:
                sw = made * v
                if sw > ZERO:
                    swarf_last[dst, e, q] += sw
                    S[dst, e, q] += sw
                    out_prod[dst, e, q] += sw


@njit(**JIT)
def shortfall(st, S, out_want, out_need, out_cons, out_unsold, out_short_item, out_phys_el,
              out_red_el, out_phys_sec, out_red_sec, out_need_sec, short_l, red_l, keep, n):
    """Output a region could not sell in the base year goes to unsold stock, from what it
    holds above target; then what the month leaves short, by item, element and sector (t
    of element): physical (wanted, not consumed) and demand reduction (given up to price);
    by item (`out_short_item`) only if `keep`. Scratch: short_l, red_l [lanes]."""
    n = literally(n)
    M, I = st.S0.shape
    L = st.demand0.shape[1]
    E = out_phys_el.shape[1]
    NS = out_phys_sec.shape[1]
    for m in range(M):
        for i in range(I):
            u0, s0 = st.unsold0[m, i], st.S0[m, i]
            if u0 > ZERO:
                for q in range(n):
                    take = SINGLE(min(u0, max(S[m, i, q] - s0, ZERO)))  # as booked
                    S[m, i, q] -= take
                    out_unsold[m, i, q] = take
            else:
                for q in range(n):
                    out_unsold[m, i, q] = ZERO
            if keep:
                for q in range(n):
                    out_short_item[m, i, q] = ZERO
        for e in range(E):
            for q in range(n):
                out_phys_el[m, e, q] = ZERO
                out_red_el[m, e, q] = ZERO
        for s_ in range(NS):
            for q in range(n):
                out_phys_sec[m, s_, q] = ZERO
                out_red_sec[m, s_, q] = ZERO
                out_need_sec[m, s_, q] = ZERO
        for l in range(L):
            if st.demand0[m, l] <= ZERO:
                continue
            it = st.line_item[l]
            for q in range(n):
                short = max(out_want[m, l, q] - out_cons[m, l, q], ZERO)
                red = max(out_need[m, l, q] - out_want[m, l, q], ZERO)
                short_l[q] = short
                red_l[q] = red
            if keep:
                for q in range(n):
                    out_short_item[m, it, q] += short_l[q]
            for h in range(st.line_h[l]):
                e, f = st.line_e[l, h], st.line_f[l, h]
                for q in range(n):
                    out_phys_el[m, e, q] += short_l[q] * f
                    out_red_el[m, e, q] += red_l[q] * f
            tot, sc = st.line_tot[l], st.line_sector[l]
            for q in range(n):
                out_phys_sec[m, sc, q] += short_l[q] * tot
                out_red_sec[m, sc, q] += red_l[q] * tot
                out_need_sec[m, sc, q] += out_need[m, l, q] * tot


@njit(**JIT)
def prices(st, S, B, plan, lr, ratio, sub, want_item, inflow, out_prod, out_imp, out_exp,
           out_expected, out_pipeline, out_unsold, held_b, target, phi, cost, lg, n):
    """Holders price each item by the supply they can expect over `horizon` months (stocks
    held by merchants and end users, the licence pipeline, this month's production, imports
    and inflows, kept up) against current use (final wants, the next stage's input, exports
    shipped), relative to the base year; the price that makes the market's demand, at its
    elasticity (substitution over the horizon included), take what it can expect. Quotes
    move part of the way each month; metal costs at least its oxide, a magnet grade at
    least its metals. Then substitution responds (phase 8). ratio [M, E, lanes] keeps the
    oxides' new price ratios exp(lr) (the next month's prices and the outside ratio read
    them). Scratch: held_b, target [I, lanes], phi [E, lanes], cost, lg [lanes]."""
    n = literally(n)
    M, I = st.S0.shape
    L = st.demand0.shape[1]
    E = st.price0.shape[1]
    G = st.gw_ptr.shape[0] - 1
    ym = st.par[1]
    horizon, a_smooth, log_cap = st.par[5], st.par[6], st.par[7]
    sub_rate, sub_max, full_ratio = st.par[8], st.par[9], st.par[10]
    for m in range(M):
        for i in range(I):
            for q in range(n):
                held_b[i, q] = ZERO
        for l in range(L):  # end users' own stocks count as held
            if st.demand0[m, l] > ZERO:
                it = st.line_item[l]
                for q in range(n):
                    held_b[it, q] += B[m, l, q]
        for i in range(I):
            r0, eps = st.ratio0[m, i], st.eps_item[m, i]
            if r0 <= ZERO:
                for q in range(n):
                    target[i, q] = ZERO
                continue
            for q in range(n):  # use now (in `cost`)
                cost[q] = want_item[m, i, q] + out_exp[m, i, q]
            if i < E:
                for q in range(n):
                    cost[q] += plan[m, E + i, q] / ym
            elif i < 2 * E:
                for k in range(st.me_ptr[i - E], st.me_ptr[i - E + 1]):
                    gi, v = st.me_i[k], st.me_v[k]
                    for q in range(n):
                        cost[q] += plan[m, gi, q] * v
            for q in range(n):
                held = S[m, i, q] + held_b[i, q]
                # imports under licence count at the share announced for the coming months
                supply = (out_prod[m, i, q] + out_imp[m, i, q] + out_expected[m, i, q]
                          + inflow[m, i, q] - out_unsold[m, i, q])
                x = (held + out_pipeline[m, i, q] + horizon * supply) / (horizon * cost[q])
                target[i, q] = max(x / r0, TINY)
            log_lanes(target[i], lg, n)
            for q in range(n):
                if cost[q] <= ZERO:
                    target[i, q] = ZERO
                else:
                    t_ = lg[q] / eps
                    target[i, q] = min(max(t_, -log_cap), log_cap)
        for e in range(E):  # cost floors: metal >= oxide, grade >= its metals
            for q in range(n):
                if target[E + e, q] < target[e, q]:
                    target[E + e, q] = target[e, q]
        for k in range(st.gw_used.shape[0]):  # metal price ratios, once
            e, mi = st.gw_used[k], st.gw_used_metal[k]
            exp_lanes(target[mi], phi[e], n)
        for g in range(G):
            for q in range(n):
                cost[q] = ZERO
            for k in range(st.gw_ptr[g], st.gw_ptr[g + 1]):
                v, e = st.gw_v[k], st.gw_e[k]
                if v > ZERO:
                    for q in range(n):
                        cost[q] += v * phi[e, q]
            log_lanes(cost, lg, n)
            for q in range(n):
                floor = lg[q] if cost[q] > ZERO else ZERO
                if target[2 * E + g, q] < floor:
                    target[2 * E + g, q] = floor
        for i in range(I):
            for q in range(n):
                lr[m, i, q] = a_smooth * lr[m, i, q] + (ONE - a_smooth) * target[i, q]
        # ---- 8. respond: substitution ramps up with the price ratio (0 at or below base)
        for e in range(E):
            exp_lanes(lr[m, e], ratio[m, e], n)
            _substitute(lr[m, e], sub[m, e], ratio[m, e], full_ratio, sub_rate, sub_max, n)
        for g in range(G):
            exp_lanes(lr[m, 2 * E + g], cost, n)
            _substitute(lr[m, 2 * E + g], sub[m, E + g], cost, full_ratio, sub_rate, sub_max,
                        n)


@njit(inline="always", **JIT)
def _substitute(lr, sub, ratio, full_ratio, sub_rate, sub_max, n):
    """Substitution `sub` [lanes] grows by sub_rate x the ramp of the price ratio
    ratio = exp(lr) (read only; taken as 1 where lr <= 0 when full_ratio > 1)."""
    at_base = full_ratio > ONE
    for q in range(n):
        r = ONE if at_base and not lr[q] > ZERO else ratio[q]
        ramp = min(max((r - ONE) / (full_ratio - ONE), ZERO), ONE)
        sub[q] = min(sub_max, sub[q] + sub_rate * ramp)


@njit(**JIT)
def step_tile(  # noqa: PLR0913 - one tile's state, the month's inputs and outputs
        st, ctl,
        # state (in/out)
        S, C, B, plan, lr, ratio, sub, swarf_last, short_imp, queue,
        # month inputs
        conc_in, cap, dem_factor, inflow, ctl_active, approval, ahead, review_n0,
        review_frac, slot, shifted, capped,
        # outputs (overwritten; out_filed, out_approved and out_short_item only if `keep`)
        keep,
        out_prod, out_imp, out_exp, out_drawn, out_del, out_cons, out_need, out_want,
        out_price, out_conc_used, out_filed, out_approved, out_short_item, out_phys_el,
        out_red_el, out_phys_sec, out_red_sec, out_need_sec, out_unsold):
    """One month for every lane of a tile (arrays [..., LANES]): the padding lanes of a
    last tile too (they hold a base-year path, and nothing reads them), so that every
    phase's lane loops have a trip count known when compiled (`literally`)."""
    M, I = st.S0.shape
    E = st.price0.shape[1]
    G = st.gw_ptr.shape[0] - 1
    L = st.demand0.shape[1]
    NL = st.link_o.shape[0]
    K = ctl.target.shape[0]
    W = LANES
    f = SINGLE  # every scratch row is single precision
    want_item, purch, orders_ = np.empty((M, I, W), f), np.empty((M, I, W), f), \
        np.empty((M, I, W), f)
    asked_out, fill_out = np.empty((M, I, W), f), np.empty((M, I, W), f)
    sub_eff, ask = np.empty((M, E + G, W), f), np.empty((M, L, W), f)
    req, eff, sent_by = np.empty((NL, W), f), np.empty((NL, W), f), np.empty((NL, W), f)
    want_g, need_e, phi = np.empty((G, W), f), np.empty((E, W), f), np.empty((E, W), f)
    swarf_made = np.empty((M, E, W), f)
    sent_i, asked_i = np.empty((I, W), f), np.empty((I, W), f)
    held_b, target = np.empty((I, W), f), np.empty((I, W), f)
    spare, controlling = np.empty((M, W), f), np.empty((M, W), f)
    into, gap = np.empty((M, W), f), np.empty((M, W), f)
    v1, v2, v3 = np.empty(W, f), np.empty(W, f), np.empty(W, f)
    out_pipeline, out_expected = np.empty((M, I, W), f), np.empty((M, I, W), f)  # licences'
    month_prices(st, ratio, out_price, LANES)
    demand(st, lr, sub, dem_factor, shifted, out_need, out_want, want_item, sub_eff,
           LANES)  # 1
    orders(st, S, B, plan, out_want, purch, req, ask, LANES)  # 2
    for j in range(NL):  # 3. licences
        for q in range(LANES):
            eff[j, q] = req[j, q]
    licences(req, eff, queue, slot, ctl.cov, ctl.quota0, ctl.ctl_ptr, ctl.ctl_j, ctl_active,
             approval, ahead, review_n0, review_frac, st.item_form, st.link_d, st.link_i,
             out_filed, out_approved, out_pipeline, out_expected, keep, LANES)
    for o in range(M):  # what each origin is asked to make ready
        for i in range(I):
            own = st.own_share[o, i]
            for q in range(LANES):
                orders_[o, i, q] = purch[o, i, q] * own + short_imp[o, i, q]
    for j in range(NL):
        o, i = st.link_o[j], st.link_i[j]
        for q in range(LANES):
            orders_[o, i, q] += eff[j, q]
    produce(st, S, C, plan, swarf_last, orders_, conc_in, cap, capped, inflow, out_prod,
            out_drawn, out_conc_used, want_g, need_e, phi, swarf_made, v1, v2, LANES)  # 4
    ship(S, st.S0, eff, req, want_item, st.link_o, st.link_d, st.link_i, st.org_ptr,
         st.org_j, ctl_active, ctl.ctl_origin, ctl.leakage, short_imp, out_imp, out_exp,
         asked_out, fill_out, sent_by, sent_i, asked_i, spare, controlling, v1, LANES)  # 5
    for d in range(M):  # what a market may receive by arbitrage: its controls' leakage
        for q in range(LANES):
            into[d, q] = ONE
        for k in range(K):
            cut = ONE - ctl.target[k, d] * (ONE - ctl.leakage[k])
            for q in range(LANES):
                if ctl_active[k, q]:
                    into[d, q] *= cut
    arbitrage(S, lr, want_item, st.ratio0, controlling, into, st.par[11], st.par[12],
              out_imp, out_exp, spare, gap, LANES)
    use(S, B, st.B0, st.demand0, out_want, ask, st.line_order, st.cls_ptr, st.cls_item,
        st.cls_first, st.frac_grid_step, st.frac_left, st.cdf, st.bucket_lo, st.bucket_hi,
        out_del, out_cons, v1, v2, v3, LANES)  # 6
    shortfall(st, S, out_want, out_need, out_cons, out_unsold, out_short_item, out_phys_el,
              out_red_el, out_phys_sec, out_red_sec, out_need_sec, v1, v2, keep, LANES)
    prices(st, S, B, plan, lr, ratio, sub, want_item, inflow, out_prod, out_imp, out_exp,
           out_expected, out_pipeline, out_unsold, held_b, target, phi, v1, v2, LANES)  # 7, 8


@njit(parallel=True, **JIT)
def step(st, ctl, n_paths, S, C, B, plan, lr, ratio, sub, swarf_last, short_imp, queue,
         conc_in, cap, dem_factor, inflow, ctl_active, approval, ahead, review_n0, review_frac,
         slot, shifted, capped,
         out_prod, out_imp, out_exp, out_drawn, out_del, out_cons, out_need, out_want,
         out_price, out_conc_used, out_filed, out_approved, out_short_item, out_phys_el,
         out_red_el, out_phys_sec, out_red_sec, out_need_sec, out_unsold,
         bal_S, bal_C, bal_B, bal_worst, totals, secondary, new_supply, keep_outputs,
         outside_w, outside_ratio_out):
    """One month for the n_paths paths of a chunk, every array in tiles [tile, ...,
    lane]; a task runs a tile. Then, on the tile while it is in cache, the observers that
    read every path every month: unless bal_worst is empty, the independent balance
    (`balance.balance_tile`: its own stocks bal_S, bal_C, bal_B take the month's flows,
    bal_worst [tile] gets the largest gap), and unless `totals` has no tiles the per-path
    totals (`totals.totals_tile`; secondary [tile, M, E, lane] and new_supply [paths, E],
    paths first, are the month's recycled and new oxide). Without `keep_outputs` the outputs
    have a tile per thread, scratch that each tile's month overwrites (nothing else reads
    them), and those that neither the balance nor the totals read (licences filed and
    approved, shortfall by item) are not written.
    Last, outside_ratio_out [paths, E] gets the outside zone's price ratio at the month's
    end (`outside_ratio_tile`), which the responses after the month read. `shifted` and
    `capped`: whether a shock changes the demand factors or the capacities (otherwise the
    kernel reads neither: the factors are 1 and the capacities the base year's)."""
    W = S.shape[-1]
    if W != LANES:  # the phases loop over LANES lanes, unchecked
        raise ValueError("step: arrays must be in tiles of LANES lanes (kernel.tiles)")
    check = bal_worst.shape[0] > 0
    total = totals.month.shape[0] > 0
    for b in prange(S.shape[0]):
        n = min(W, n_paths - b * W)
        o = np.int64(b) if keep_outputs else np.int64(get_thread_id())
        step_tile(st, ctl, S[b], C[b], B[b], plan[b], lr[b], ratio[b], sub[b],
                   swarf_last[b], short_imp[b], queue[b], conc_in[b], cap[b], dem_factor[b],
                   inflow[b], ctl_active[b], approval[b], ahead[b], review_n0[b], review_frac[b],
                   slot, shifted, capped, keep_outputs, out_prod[o], out_imp[o], out_exp[o],
                   out_drawn[o], out_del[o], out_cons[o], out_need[o], out_want[o],
                   out_price[o], out_conc_used[o], out_filed[o], out_approved[o],
                   out_short_item[o], out_phys_el[o], out_red_el[o], out_phys_sec[o],
                   out_red_sec[o], out_need_sec[o], out_unsold[o])
        if check:
            bal_worst[b] = balance_tile(
                n, bal_S[b], bal_C[b], bal_B[b], out_prod[o], inflow[b], out_imp[o],
                out_exp[o], out_drawn[o], out_unsold[o], out_del[o], out_cons[o], conc_in[b],
                out_conc_used[o], st.line_item, S[b], C[b], B[b], np.empty(W), np.empty(W))
        if total:
            totals_tile(n, slot, b, totals, out_price[o], secondary[b], new_supply,
                        out_phys_el[o], out_red_el[o], out_phys_sec[o], out_red_sec[o],
                        out_need_sec[o], np.empty(W))
        outside_ratio_tile(n, b * W, ratio[b], outside_w, outside_ratio_out, np.empty(W))


def _serial(parallel):
    """The serial twin of a `prange` function: the same code compiled without the GIL and
    without numba's threads (prange runs as range), under its own name (numba names its cache
    files after the function, not after the options it was compiled with)."""
    f = parallel.py_func
    twin = types.FunctionType(f.__code__, f.__globals__, f.__name__ + "_serial")
    twin.__qualname__, twin.__doc__ = f.__qualname__ + "_serial", f.__doc__
    return njit(nogil=True, **JIT)(twin)


class Kernels(NamedTuple):
    """The functions a block of paths runs each month, parallel over tiles or serial."""

    serial: bool
    step: object
    oxide_inflow: object
    to_tiles: object


PARALLEL = Kernels(False, step, oxide_inflow, to_tiles)
SERIAL = Kernels(True, _serial(step), _serial(oxide_inflow),
                 _tiler(_serial(_to_tiles)))
