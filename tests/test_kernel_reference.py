"""The fused phases (numba) against their plain-numpy versions, on random states with the
real base year's links, lines and priorities: the same equations, two codes. The phases run
over lanes of paths (the paths as the last axis); here one lane a path, all at once."""

from __future__ import annotations

import numpy as np
import pytest

from oreflow.scenario import load_scenario
from oreflow.simulate import kernel, reference
from oreflow.simulate.engine import Behaviour, Engine
from oreflow.simulate.market import market_base

P = 7


def lanes(x):
    """[P, ...] -> the kernel's [..., P]."""
    return np.ascontiguousarray(np.moveaxis(x, 0, -1))


def paths(x):
    """The kernel's [..., P] -> [P, ...]."""
    return np.moveaxis(x, -1, 0)


@pytest.fixture(scope="module")
def engine(network):
    sc, _ = load_scenario("licensing-2025-04", network)
    return Engine(market_base(network), Behaviour.from_dataset(network.dataset), sc,
                  network, 0)


def _links(engine):
    st = engine.static
    return st.link_o, st.link_d, st.link_i


def test_licences_match(engine):
    rng = np.random.default_rng(1)
    lo, ld, li = _links(engine)
    M, I = engine.M, engine.I
    K, Lq, NL = 2, 5, len(lo)
    req = rng.uniform(0, 10, (P, NL))
    cov = np.where(rng.random((K, NL)) < 0.4, rng.uniform(0.2, 1.0, (K, NL)), 0.0)
    ctl_ptr, ctl_j = kernel.csr(cov > 0)
    queue = rng.uniform(0, 5, (P, Lq, len(ctl_j)))
    active = rng.random((P, K)) < 0.7
    approval = rng.uniform(0, 1, (P, K, 3))
    review = rng.uniform(0, 3.5, (P, K))
    n0, frac = np.floor(review).astype(np.int64), review - np.floor(review)
    slot = 9
    ahead = rng.uniform(0, 1, (P, K, 3))
    quota0 = np.zeros((K, NL))  # the second control is a quota on base-year flows
    quota0[1] = cov[1] * rng.uniform(0, 8, NL)
    form = engine.static.item_form
    q_ref = queue.copy()
    eff_ref, ref = reference.licences(req, q_ref, slot, cov, quota0, ctl_ptr, ctl_j, active,
                                      approval, ahead, n0, frac, form, ld, li, M, I)
    eff = lanes(req)
    q = lanes(queue)
    got = {k: np.zeros((M, I, P)) for k in ("filed", "approved", "pipeline", "expected")}
    kernel.licences(lanes(req), eff, q, slot, cov, quota0, ctl_ptr, ctl_j, lanes(active),
                    lanes(approval), lanes(ahead), lanes(n0), lanes(frac), form, ld, li,
                    got["filed"], got["approved"], got["pipeline"], got["expected"], True, P)
    np.testing.assert_allclose(paths(eff), eff_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(paths(q), q_ref, rtol=1e-12, atol=1e-12)
    for k, v in got.items():
        np.testing.assert_allclose(paths(v), ref[k], rtol=1e-12, atol=1e-9, err_msg=k)
    # without `keep` the filings and approvals (read only by observers) are left as they
    # were, and nothing the month goes on with changes
    eff2, q2 = lanes(req), lanes(queue)
    got2 = {k: np.full((M, I, P), -7.0) for k in got}
    kernel.licences(lanes(req), eff2, q2, slot, cov, quota0, ctl_ptr, ctl_j, lanes(active),
                    lanes(approval), lanes(ahead), lanes(n0), lanes(frac), form, ld, li,
                    got2["filed"], got2["approved"], got2["pipeline"], got2["expected"], False,
                    P)
    assert (got2["filed"] == -7.0).all() and (got2["approved"] == -7.0).all()
    for a, b in ((eff2, eff), (q2, q), (got2["pipeline"], got["pipeline"]),
                 (got2["expected"], got["expected"])):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("leak", [0.0, 0.4, 1.0])
def test_shipping_matches(engine, leak):
    rng = np.random.default_rng(2)
    lo, ld, li = _links(engine)
    M, I = engine.M, engine.I
    NL = len(lo)
    st = engine.static
    S0 = st.S0
    S = S0[None] * rng.uniform(0.0, 2.0, (P, M, I))
    want = S0[None] * rng.uniform(0.0, 0.6, (P, M, I))
    req = rng.uniform(0, 1, (P, NL)) * S0[lo, li][None] * 0.5
    eff = req * rng.uniform(0.3, 1.2, (P, NL))
    active = rng.random((P, 1)) < 0.8
    origin = np.array([engine.base.controller_index])
    leakage = np.array([leak])
    S_ref, imp_ref, exp_ref, short_ref = reference.ship(S, S0, eff, req, want, lo, ld, li,
                                                        active, origin, leakage)
    s = lanes(S)
    short, imp, exp = (np.full((M, I, P), np.nan) for _ in range(3))  # ship writes each
    scratch = (np.empty((M, I, P)), np.empty((M, I, P)), np.empty((NL, P)), np.empty((I, P)),
               np.empty((I, P)), np.empty((M, P)), np.empty((M, P)), np.empty(P))
    kernel.ship(s, S0, lanes(eff), lanes(req), lanes(want), lo, ld, li, st.org_ptr, st.org_j,
                lanes(active), origin, leakage, short, imp, exp, *scratch, P)
    np.testing.assert_allclose(paths(s), S_ref, rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(paths(imp), imp_ref, rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(paths(exp), exp_ref, rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(paths(short), short_ref, rtol=1e-10, atol=1e-9)
    # shipping moves material, it creates none
    np.testing.assert_allclose(s.sum((0, 1)), S.sum((1, 2)), rtol=1e-12)


def _arbitrage(S, lr, want, controlling, into, rate, margin, priced=None):
    """kernel.arbitrage on copies of paths-first [P, M, I] states: S, imports, exports."""
    n, M, I = S.shape
    s, imp, exp = lanes(S), np.zeros((M, I, n)), np.zeros((M, I, n))
    priced = np.ones((M, I)) if priced is None else priced
    kernel.arbitrage(s, lanes(lr), lanes(want), priced, lanes(controlling.astype(float)),
                     lanes(into), rate, np.log1p(margin), imp, exp, np.empty((M, n)),
                     np.empty((M, n)), n)
    return paths(s), paths(imp), paths(exp)


def test_arbitrage_matches(engine):
    rng = np.random.default_rng(4)
    M, I = engine.M, engine.I
    S0 = engine.static.S0
    S = S0[None] * rng.uniform(0.0, 2.0, (P, M, I))
    want = S0[None] * rng.uniform(0.0, 0.8, (P, M, I))
    lr = rng.normal(0.0, 0.8, (P, M, I))
    controlling = rng.random((P, M)) < 0.2
    into = np.where(rng.random((P, M)) < 0.2, rng.uniform(0, 1, (P, M)), 1.0)
    priced = engine.static.ratio0
    S_ref, imp_ref, exp_ref = reference.arbitrage(S, lr, want, priced, controlling, into, 0.4,
                                                  0.05)
    s, imp, exp = _arbitrage(S, lr, want, controlling, into, 0.4, 0.05, priced)
    np.testing.assert_allclose(s, S_ref, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(imp, imp_ref, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(exp, exp_ref, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(s.sum((1, 2)), S.sum((1, 2)), rtol=1e-12)  # moves only
    assert (np.moveaxis(exp, 1, 0)[controlling.T] == 0).all()  # a controlling market sells none


def test_arbitrage_by_hand():
    """Two markets, one item: 100 t beyond home wants at o, d priced at 2x o's ratio, margin
    5%, rate 0.5: o sells 0.5 x 100 x (1 - 1.05 / 2) = 23.75 t to d. Within the margin, from
    a controlling market, into a closed one or into one that does not use the item, nothing
    moves."""
    S, want = np.array([[[150.0], [10.0]]]), np.array([[[50.0], [10.0]]])  # one path
    lr = np.log(np.array([[[1.0], [2.0]]]))
    free, open_ = np.zeros((1, 2), bool), np.ones((1, 2))
    s, imp, exp = _arbitrage(S, lr, want, free, open_, 0.5, 0.05)
    assert exp[0, 0, 0] == pytest.approx(23.75) and imp[0, 1, 0] == pytest.approx(23.75)
    assert s[0, :, 0] == pytest.approx([126.25, 33.75])
    near = np.log(np.array([[[1.0], [1.04]]]))
    assert _arbitrage(S, near, want, free, open_, 0.5, 0.05)[2].sum() == 0.0
    assert _arbitrage(S, lr, want, np.array([[True, False]]), open_, 0.5, 0.05)[2].sum() == 0.0
    assert _arbitrage(S, lr, want, free, np.array([[1.0, 0.0]]), 0.5, 0.05)[2].sum() == 0.0
    assert _arbitrage(S, lr, want, free, open_, 0.0, 0.05)[2].sum() == 0.0  # off
    unused = np.array([[1.0], [0.0]])  # d does not use (price) the item: it buys none
    assert _arbitrage(S, lr, want, free, open_, 0.5, 0.05, unused)[2].sum() == 0.0


def _stocks(engine, rng):
    """Random merchant and buyers' stocks, [P, M, I] and [P, M, L], around the base year's."""
    st = engine.static
    S = st.S0[None] * rng.uniform(0.0, 1.2, (P, engine.M, engine.I))
    B = st.B0[None] * rng.uniform(0.0, 1.5, (P, engine.M, st.B0.shape[1]))
    return S, B


def test_use_matches(engine):
    rng = np.random.default_rng(3)
    st = engine.static
    B0, d0 = st.B0, st.demand0
    S, B = _stocks(engine, rng)
    want = d0[None] * rng.uniform(0.5, 1.5, (P, *d0.shape))
    want = np.where(d0[None] > 0, want, 0.0)
    step, left, cdf = engine.cover_table
    tau = engine.par[4]
    prio = engine.base.line_priority
    S_ref, B_ref, del_ref, cons_ref = reference.use(S, B, B0, d0, want, st.line_item, prio,
                                                    tau, step, left, cdf)
    s, b = lanes(S), lanes(B)
    dl, cs = np.full_like(b, np.nan), np.full_like(b, np.nan)  # use writes every cell
    ask = lanes(want + (B0[None] - B) / tau)  # what `orders` leaves for `use`
    kernel.use(s, b, B0, d0, lanes(want), ask, st.line_order, st.cls_ptr, st.cls_item,
               st.cls_first, step, left, cdf, st.bucket_lo, st.bucket_hi, dl, cs,
               np.empty(P), np.empty(P), np.empty(P), P)
    np.testing.assert_allclose(paths(dl), del_ref, rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(paths(cs), cons_ref, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(paths(b), B_ref, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(paths(s), S_ref, rtol=1e-10, atol=1e-9)
    # a buyer never consumes more than it wants, nor less than it is delivered
    cs, dl = paths(cs), paths(dl)
    assert (cs <= want + 1e-9).all() and (cs >= np.minimum(dl, want) - 1e-9).all()
    # both of the kernel's ways were taken: lines delivered all they want in every lane
    # (their buyers' lane-by-lane loop skipped) and lines short in some lane
    served = (dl >= want).all(0)[d0 > 0]
    assert served.any() and not served.all()


def test_demand_thrifts_a_grade_by_its_elements_or_itself(engine):
    """A magnet line's need falls by its grade's substitution: the value-weighted thrift of
    the elements in it, or the grade's own when magnets themselves are scarcer (the larger);
    an element line's by its element's. Prices at base: want = need."""
    st = engine.static
    M, I, L = engine.M, engine.I, st.demand0.shape[1]
    E, G = st.price0.shape[1], len(st.gw_ptr) - 1
    rng = np.random.default_rng(5)
    sub = np.zeros((M, E + G, P))
    sub[:, :E] = rng.uniform(0, 0.3, (M, E, P))  # elements
    sub[:, E:] = np.where(np.arange(P) % 2 == 0, 0.6, 0.0)  # grades: even paths only
    factor = rng.uniform(0.8, 1.2, (M, L, P))
    need, want = np.zeros((M, L, P)), np.zeros((M, L, P))
    kernel.demand(st, np.zeros((M, I, P)), sub, factor, True, need, want,
                  np.empty((M, I, P)), np.empty((M, E + G, P)), P)
    weights = np.zeros((G, E))  # grade -> value weight of each element
    for g in range(G):
        for k in range(st.gw_ptr[g], st.gw_ptr[g + 1]):
            weights[g, st.gw_e[k]] = st.gw_v[k]
    thrift = np.concatenate([sub[:, :E], np.maximum(
        np.einsum("ge,mep->mgp", weights, sub[:, :E]), sub[:, E:])], axis=1)
    expected = (st.demand0[:, :, None] * factor
                * (1 - thrift[:, st.line_sub.astype(int)]))
    np.testing.assert_allclose(need, np.where(st.demand0[:, :, None] > 0, expected, 0.0),
                               rtol=1e-12)
    np.testing.assert_array_equal(want, need)
    # without demand shifts the kernel does not read the factors (all 1): the same need
    need1, need_ = np.zeros((M, L, P)), np.zeros((M, L, P))
    for shifted, out, f in ((True, need1, np.ones((M, L, P))),
                            (False, need_, np.full((M, L, P), np.nan))):
        kernel.demand(st, np.zeros((M, I, P)), sub, f, shifted, out, np.zeros((M, L, P)),
                      np.empty((M, I, P)), np.empty((M, E + G, P)), P)
    np.testing.assert_array_equal(need_, need1)
    magnet = st.line_sub >= E
    assert magnet.any() and (thrift[:, E:, 0] > thrift[:, E:, 1]).all()  # the grade's own


def test_production_without_capacity_shocks_reads_the_base_capacity(engine):
    """When no shock changes capacity the kernel takes the base year's (`Static.cap0`)
    instead of reading each path's: the same output, stocks and plans to the last bit."""
    st = engine.static
    M, I = engine.M, engine.I
    E, G = st.price0.shape[1], len(st.gw_ptr) - 1
    rng = np.random.default_rng(8)
    start = {"S": st.S0[:, :, None] * rng.uniform(0, 2, (M, I, P)),
             "C": rng.uniform(0, 50, (M, E, P)),
             "plan": st.S0[:, :, None] * rng.uniform(0, 0.5, (M, I, P)),
             "swarf": rng.uniform(0, 1, (M, E, P))}
    orders = st.S0[:, :, None] * rng.uniform(0, 0.5, (M, I, P))
    conc_in, inflow = rng.uniform(0, 5, (M, E, P)), rng.uniform(0, 1, (M, I, P))
    got = []
    for capped, cap in ((True, np.repeat(st.cap0[:, :, None], P, 2)),
                        (False, np.full((M, I, P), np.nan))):
        s = {k: v.copy() for k, v in start.items()}
        out = {k: np.zeros(shape) for k, shape in (("prod", (M, I, P)), ("drawn", (M, I, P)),
                                                    ("conc_used", (M, E, P)))}
        kernel.produce(st, s["S"], s["C"], s["plan"], s["swarf"], orders, conc_in, cap, capped,
                       inflow, out["prod"], out["drawn"], out["conc_used"], np.empty((G, P)),
                       np.empty((E, P)), np.empty((E, P)), np.empty((M, E, P)), np.empty(P),
                       np.empty(P), P)
        got.append({**s, **out})
    assert (got[0]["prod"] > 0).any()
    for k in got[0]:
        np.testing.assert_array_equal(got[1][k], got[0][k], err_msg=k)


def test_use_in_the_engine_widths_books_exactly_what_it_reports(engine):
    """In the engine's widths (wants, asks and deliveries single precision, kernel.SINGLE;
    merchant and buyers' stocks and consumption double, kernel.ACCOUNT) `use` matches the
    reference to single precision, and the stocks change by exactly what it reports, the
    flows the independent balance adds up."""
    rng = np.random.default_rng(3)
    st = engine.static
    B0, d0 = st.B0, st.demand0
    S, B = _stocks(engine, rng)
    # small wants too, so that some deliveries (wants and restocking) exceed twice the want
    want = np.where(d0[None] > 0, d0[None] * rng.uniform(0.05, 1.5, (P, *d0.shape)), 0.0)
    want = want.astype(kernel.SINGLE)
    step, left, cdf = engine.cover_table
    tau = engine.par[4]
    ask = (want + (B0[None] - B) / tau).astype(kernel.SINGLE)
    S_ref, B_ref, del_ref, cons_ref = reference.use(
        S, B, B0, d0, want.astype(float), st.line_item, engine.base.line_priority, tau, step,
        left, cdf)
    s, b = lanes(S), lanes(B)
    dl = np.full(b.shape, np.nan, kernel.SINGLE)
    cs = np.full_like(b, np.nan)
    kernel.use(s, b, B0, d0, lanes(want), lanes(ask), st.line_order, st.cls_ptr, st.cls_item,
               st.cls_first, st.frac_grid_step, st.frac_left, st.cdf, st.bucket_lo,
               st.bucket_hi, dl, cs, *(np.empty(P, kernel.SINGLE) for _ in range(3)), P)
    assert s.dtype == b.dtype == cs.dtype == kernel.ACCOUNT
    one = np.finfo(kernel.SINGLE).eps
    np.testing.assert_allclose(paths(dl), del_ref, rtol=8 * one, atol=1e-3)
    np.testing.assert_allclose(paths(s), S_ref, rtol=8 * one, atol=1e-3)
    # exactly what it reports: merchants lose the deliveries, buyers gain deliveries less
    # consumption (double sums of the single-precision deliveries)
    dl, cs = paths(dl).astype(float), paths(cs)
    delivered = np.zeros_like(S)
    np.add.at(delivered, (slice(None), slice(None), st.line_item.astype(int)), dl)
    np.testing.assert_allclose(paths(s), S - delivered, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(paths(b), B + dl - cs, rtol=1e-12, atol=1e-9)


def test_production_in_the_engine_widths_books_exactly_what_it_reports(engine):
    """In the engine's widths the concentrate stock (double) loses exactly the concentrate
    used that production reports (single precision): the step books the rounded number."""
    st = engine.static
    M, I = engine.M, engine.I
    E, G = st.price0.shape[1], len(st.gw_ptr) - 1
    rng = np.random.default_rng(8)
    row = kernel.SINGLE

    def r(*shape, hi=1.0):
        return rng.uniform(0, hi, shape)

    S = st.S0[:, :, None] * r(M, I, P, hi=2)
    C = r(M, E, P, hi=50)
    plan = (st.S0[:, :, None] * r(M, I, P, hi=0.5)).astype(row)
    orders = (st.S0[:, :, None] * r(M, I, P, hi=0.5)).astype(row)
    conc_in, inflow, swarf = r(M, E, P, hi=5).astype(row), r(M, I, P).astype(row), \
        r(M, E, P).astype(row)
    prod, drawn, used = np.zeros((M, I, P)), np.zeros((M, I, P)), np.zeros((M, E, P), row)
    C_before = C.copy()
    kernel.produce(st, S, C, plan, swarf, orders, conc_in, np.zeros((M, I, P), row), False,
                   inflow, prod, drawn, used, np.empty((G, P), row), np.empty((E, P), row),
                   np.empty((E, P), row), np.empty((M, E, P), row), np.empty(P, row),
                   np.empty(P, row), P)
    assert (used > 0).any()
    np.testing.assert_allclose(C, C_before + conc_in - used.astype(float), rtol=1e-12,
                               atol=1e-12)
