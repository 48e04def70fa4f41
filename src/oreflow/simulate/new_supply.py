"""New primary supply outside the controller: mines that open when prices stay high.

Sprecher et al. (2017) measured non-Chinese primary supply ramping at ~4% of total market
volume a year after 2011. A mine yields every element of its ore together, so a crisis in
one element brings its co-products too: the new supply follows the composition of the ore
separated outside the controller today. Parameters: `market_behaviour.csv`
(`supply_response_*`); equations: docs/model.md, section 3, item 8.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from oreflow.simulate.market import MarketBase


@dataclass(frozen=True)
class NewSupply:
    """What new mines of each ore yield (rare earths: light-rich bastnaesite and monazite,
    almost no Dy or Tb), the price their expansion answers (the ore's basket of oxides at
    base-year values) and where they sell (outside markets, by use)."""

    ore_group: np.ndarray  # [E] the ore an element comes from
    ore_volume: np.ndarray  # [ores] world use of the ore's elements, t a month
    mix: np.ndarray  # [E] share of an ore's output that is this element
    basket_weight: np.ndarray  # [E, ores] share of the ore's output value at base prices
    land: np.ndarray  # [M, E] where the output is sold: outside markets by their use

    @classmethod
    def of(cls, b: MarketBase, outside_weight: np.ndarray) -> NewSupply:
        E, M = len(b.elements), len(b.regions)
        group = np.asarray(b.ore_group)
        n_ores = int(group.max()) + 1 if E else 0
        world_use = b.use0[:, :E].sum(0)
        outside = b.region_market != b.controller_index
        separated = (b.mine * (1.0 - b.to_controller))[outside].sum(0)
        mined = b.mine[outside].sum(0)
        mix = np.zeros(E)
        for g in range(n_ores):  # an ore nobody separates or mines outside: world use
            on = group == g
            for v in (separated[on], mined[on], world_use[on]):
                if v.sum() > 0:
                    mix[on] = v / v.sum()
                    break
        price_out = (b.price0[:, :E] * outside_weight).sum(0)
        value = mix * price_out
        basket = np.zeros((E, n_ores))
        for g in range(n_ores):
            on = group == g
            v = value[on] if value[on].sum() > 0 else mix[on]
            basket[on, g] = v / max(v.sum(), 1e-300)
        land = outside_weight.copy()
        unused = land.sum(0) <= 0  # an element no outside market uses: the rest of the world
        land[M - 1, unused] = 1.0
        volume = np.bincount(group, weights=world_use, minlength=n_ores)
        return cls(group, volume, mix, basket, land)

    def basket_ratio(self, ratio: np.ndarray) -> np.ndarray:
        """[P, E] outside price over base -> [P, ores] the ore's basket over base. A sum in
        a fixed order, element by element: not BLAS, nor numpy's sum, whose grouping of
        terms follows the array's memory alignment; a path's result must not depend on how
        a run was split into blocks."""
        out = np.zeros((ratio.shape[0], self.basket_weight.shape[1]))
        for e in range(ratio.shape[1]):
            out += ratio[:, e, None] * self.basket_weight[e]
        return out

    def grow(self, capacity: np.ndarray, ramp: np.ndarray, rate_per_year: float,
             max_share: float) -> np.ndarray:
        """[P, ores] new capacity (t a month) after a month at `ramp` (0-1) of the full
        rate, a share of the ore's world market a year; never above `max_share` of it."""
        return np.minimum(max_share * self.ore_volume,
                          capacity + rate_per_year / 12.0 * self.ore_volume * ramp)

    def output(self, capacity: np.ndarray) -> np.ndarray:
        """[P, ores] capacity -> [P, E] output of each element."""
        return capacity[:, self.ore_group] * self.mix
