"""The fused per-path phases (numba) against their plain-numpy versions, on random states
with the real base year's links, lines and priorities: the same equations, two codes."""

from __future__ import annotations

import numpy as np
import pytest

from oreflow.scenario import load_scenario
from oreflow.simulate import kernel, reference
from oreflow.simulate.engine import Behaviour, Engine
from oreflow.simulate.market import market_base

P = 7


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
    for p in range(P):
        eff = req[p].copy()
        q = queue[p].copy()
        got = {k: np.zeros((M, I)) for k in ("filed", "approved", "pipeline", "expected")}
        kernel.licences(req[p], eff, q, slot, cov, quota0, ctl_ptr, ctl_j, active[p],
                        approval[p], ahead[p], n0[p], frac[p], form, ld, li, got["filed"],
                        got["approved"], got["pipeline"], got["expected"])
        np.testing.assert_allclose(eff, eff_ref[p], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(q, q_ref[p], rtol=1e-12, atol=1e-12)
        for k, v in got.items():
            np.testing.assert_allclose(v, ref[k][p], rtol=1e-12, atol=1e-9, err_msg=k)


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
    for p in range(P):
        s = S[p].copy()
        short, imp, exp = np.zeros((M, I)), np.zeros((M, I)), np.zeros((M, I))
        scratch = (np.empty((M, I)), np.empty((M, I)), np.empty(NL), np.empty(I),
                   np.empty(I), np.empty(M), np.empty(M))
        kernel.ship(s, S0, eff[p], req[p], want[p], lo, ld, li, st.org_ptr, st.org_j,
                    active[p], origin, leakage, short, imp, exp, *scratch)
        np.testing.assert_allclose(s, S_ref[p], rtol=1e-10, atol=1e-9)
        np.testing.assert_allclose(imp, imp_ref[p], rtol=1e-10, atol=1e-9)
        np.testing.assert_allclose(exp, exp_ref[p], rtol=1e-10, atol=1e-9)
        np.testing.assert_allclose(short, short_ref[p], rtol=1e-10, atol=1e-9)
        # shipping moves material, it creates none
        assert s.sum() == pytest.approx(S[p].sum(), rel=1e-12)


def _arbitrage(S, lr, want, controlling, into, rate, margin, priced=None):
    """kernel.arbitrage on one path's copies: S, imports, exports."""
    M, I = S.shape
    s, imp, exp = S.copy(), np.zeros((M, I)), np.zeros((M, I))
    priced = np.ones((M, I)) if priced is None else priced
    kernel.arbitrage(s, lr, want, priced, controlling.astype(float), into, rate,
                     np.log1p(margin), imp, exp, np.empty(M), np.empty(M))
    return s, imp, exp


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
    for p in range(P):
        s, imp, exp = _arbitrage(S[p], lr[p], want[p], controlling[p], into[p], 0.4, 0.05,
                                 priced)
        np.testing.assert_allclose(s, S_ref[p], rtol=1e-12, atol=1e-9)
        np.testing.assert_allclose(imp, imp_ref[p], rtol=1e-12, atol=1e-9)
        np.testing.assert_allclose(exp, exp_ref[p], rtol=1e-12, atol=1e-9)
        assert s.sum() == pytest.approx(S[p].sum(), rel=1e-12)  # moves, creates nothing
        assert (exp[controlling[p]] == 0).all()  # a controlling market sells nothing


def test_arbitrage_by_hand():
    """Two markets, one item: 100 t beyond home wants at o, d priced at 2x o's ratio, margin
    5%, rate 0.5: o sells 0.5 x 100 x (1 - 1.05 / 2) = 23.75 t to d. Within the margin, from
    a controlling market, into a closed one or into one that does not use the item, nothing
    moves."""
    S, want = np.array([[150.0], [10.0]]), np.array([[50.0], [10.0]])
    lr = np.log(np.array([[1.0], [2.0]]))
    free, open_ = np.zeros(2, bool), np.ones(2)
    s, imp, exp = _arbitrage(S, lr, want, free, open_, 0.5, 0.05)
    assert exp[0, 0] == pytest.approx(23.75) and imp[1, 0] == pytest.approx(23.75)
    assert s[:, 0] == pytest.approx([126.25, 33.75])
    near = np.log(np.array([[1.0], [1.04]]))
    assert _arbitrage(S, near, want, free, open_, 0.5, 0.05)[2].sum() == 0.0
    assert _arbitrage(S, lr, want, np.array([True, False]), open_, 0.5, 0.05)[2].sum() == 0.0
    assert _arbitrage(S, lr, want, free, np.array([1.0, 0.0]), 0.5, 0.05)[2].sum() == 0.0
    assert _arbitrage(S, lr, want, free, open_, 0.0, 0.05)[2].sum() == 0.0  # off
    unused = np.array([[1.0], [0.0]])  # d does not use (price) the item: it buys none
    assert _arbitrage(S, lr, want, free, open_, 0.5, 0.05, unused)[2].sum() == 0.0


def test_use_matches(engine):
    rng = np.random.default_rng(3)
    st = engine.static
    M, I = engine.M, engine.I
    B0, d0 = st.B0, st.demand0
    S = st.S0[None] * rng.uniform(0.0, 1.2, (P, M, I))
    B = B0[None] * rng.uniform(0.0, 1.5, (P, M, B0.shape[1]))
    want = d0[None] * rng.uniform(0.5, 1.5, (P, M, d0.shape[1]))
    want = np.where(d0[None] > 0, want, 0.0)
    step, left, cdf = engine.cover_table
    tau = engine.par[4]
    prio = engine.base.line_priority
    S_ref, B_ref, del_ref, cons_ref = reference.use(S, B, B0, d0, want, st.line_item, prio,
                                                    tau, step, left, cdf)
    for p in range(P):
        s, b = S[p].copy(), B[p].copy()
        dl, cs = np.zeros_like(b), np.zeros_like(b)
        ask = want[p] + (B0 - b) / tau  # what `orders` leaves for `use`
        kernel.use(s, b, B0, d0, want[p], ask, st.line_order, st.cls_ptr, st.cls_item,
                   st.cls_first, step, left, cdf, st.bucket_lo, st.bucket_hi, dl, cs)
        np.testing.assert_allclose(dl, del_ref[p], rtol=1e-10, atol=1e-9)
        np.testing.assert_allclose(cs, cons_ref[p], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(b, B_ref[p], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(s, S_ref[p], rtol=1e-10, atol=1e-9)
        # a buyer never consumes more than it wants, nor less than it is delivered
        assert (cs <= want[p] + 1e-9).all() and (cs >= np.minimum(dl, want[p]) - 1e-9).all()
