"""The independent balance (oreflow.simulate.balance) on a hand-computed tile: one region,
two items, one demand line, one element, two lanes."""

from __future__ import annotations

import numpy as np

from oreflow.simulate.balance import balance_tile


def _tile(stock_gap=0.0):
    one = lambda *s: np.ones((*s, 2))  # noqa: E731
    S, C, B = 10 * one(1, 2), 5 * one(1, 1), 3 * one(1, 1)
    prod, inflow, imp, exp_, used, unsold = (one(1, 2) * v for v in (4, 1, 2, 3, 1, 0.5))
    deliv, cons, conc_in, conc_used = 2 * one(1, 1), 1.5 * one(1, 1), one(1, 1), 0.25 * one(1, 1)
    line_item = np.array([1])
    # merchant: 10 + 4 + 1 + 2 - 3 - 1 - 0.5 = 12.5, less 2 delivered from item 1
    stock = np.array([[[12.5, 12.5], [10.5, 10.5 + stock_gap]]])
    conc_stock = np.full((1, 1, 2), 5.75)  # 5 + 1 - 0.25
    buyer_stock = np.full((1, 1, 2), 3.5)  # 3 + 2 - 1.5
    return [S, C, B, prod, inflow, imp, exp_, used, unsold, deliv, cons, conc_in, conc_used,
            line_item, stock, conc_stock, buyer_stock, np.empty(2), np.empty(2)]


def test_balance_of_consistent_stocks_is_zero_and_a_gap_shows_its_size():
    a = _tile()
    assert balance_tile(2, *a) == 0.0
    np.testing.assert_allclose(a[0][0, :, 0], [12.5, 10.5])  # its own running stocks
    assert balance_tile(2, *_tile(stock_gap=0.5)) == 0.5
    assert balance_tile(1, *_tile(stock_gap=0.5)) == 0.0  # lane 1 not in use


def test_balance_gap_that_is_not_finite_is_inf():
    assert balance_tile(2, *_tile(stock_gap=np.nan)) == np.inf
    assert balance_tile(2, *_tile(stock_gap=np.inf)) == np.inf
