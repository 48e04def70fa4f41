"""The stockpile planner: which rare earths to hold, in which form, and what it buys.

A two-stage stochastic program (equations in docs/stockpile.md), solved with linopy + HiGHS:

- first stage: tonnes bought per (element, form) in blocks whose price rises with the volume
  bought (a cap per month of the outside-China market over a purchase window); purchase plus
  carrying cost (loan interest and storage over the tenor) within the budget;
- second stage, per simulated path: releases that cover the perspective's unmet demand,
  limited by what is held; oxide can serve metal and magnet users and metal can serve magnet
  users after conversion (stage yields, lead times after the disruption starts, a tolling
  capacity outside China);
- objective: expected value lost to physical shortage, or (1 - w) x expected + w x
  CVaR_alpha. A demand group (a sector buying one form) that misses an input loses the
  product it cannot make (Leontief): per path and segment the loss is the group's value added
  per t of the scarcest input times that input's unserved tonnes, the largest over elements
  (`loss >= v_ge x unserved_ge` for every element), so an element that stops a product is
  worth the product whatever its price, and a shortage of several elements in the same
  product is counted once. Demand given up because of price is not a loss the stockpile can
  serve (it is reported apart, valued at most at the consumer-surplus triangle).

Paths come from the stress engine. With perfect foresight within a path, no discounting and
values constant over time, the monthly release problem aggregates into a few time segments per
path (the months between conversion lead times), which is what makes 2,000 paths fast; with
the Leontief maximum over inputs the aggregate is a slight relaxation (a maximum of sums is at
most the sum of monthly maxima; tests: never above the monthly LP, within 0.1% of it on their
mix; bench_stockpile: about 0.3% below it on the default mix);
`monthly=True` builds the generic monthly LP.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import xarray as xr

from oreflow.network import Network
from oreflow.simulate.market import FORMS

DEFAULT_SCENARIOS = {
    "licensing-2025-04": 1.0,
    "expansion-2025-10": 1.0,
    "heavy-embargo-usa-12m": 1.0,
    "myanmar-halt-6m": 1.0,
    "malaysia-separation-outage": 1.0,
}
"""Disruption scenarios the planner draws paths from by default, equally weighted (today's
network; `quota-2010` replays 2010 on the 2010 network and is not a planning scenario)."""
DAYS_PER_YEAR = 365.0
HOLDING_MIN_T = 1e-6
"""Holdings at or below this (1 g) are the LP solver's dust: neither listed nor counted in
what a plan spends."""


class PlanError(ValueError):
    """An invalid or infeasible planning request; the message says what to change."""


# ---- economics --------------------------------------------------------------------------
@dataclass(frozen=True)
class Terms:
    """Financing, purchase and holding terms (tables stockpile_parameters, stockpile_forms)."""

    loan_rate_per_year: float
    tenor_years: float
    insurance_rate_per_year: float
    rotation_cost_share: float
    purchase_window_months: float
    max_buy_share_per_month: float
    purchase_price_slope: float
    price_blocks: int
    conversion_capacity_share: float
    rule_days: float
    processing_usd_per_t: np.ndarray  # [form] cost to make this form from the previous one
    storage_usd_per_t_year: np.ndarray  # [form]
    shelf_life_years: np.ndarray  # [form]
    lead_months: np.ndarray  # [form] months to convert into this form from the previous one

    @classmethod
    def from_dataset(cls, dataset, **override) -> Terms:
        p = dataset["stockpile_parameters"].set_index("parameter")["value"].astype(float)
        f = dataset["stockpile_forms"].set_index("form").reindex(list(FORMS))
        if f.isna().any().any():
            raise PlanError("stockpile_forms.csv must have one row for each of "
                            f"{', '.join(FORMS)}")
        needed = ("loan_rate_per_year", "tenor_years", "insurance_rate_per_year",
                  "rotation_cost_share", "purchase_window_months", "max_buy_share_per_month",
                  "purchase_price_slope", "conversion_capacity_share", "rule_days",
                  "price_blocks")
        missing = [k for k in needed if k not in p.index]
        if missing:
            raise PlanError(f"stockpile_parameters.csv has no row for parameter(s) "
                            f"{', '.join(missing)}")
        scalar = {k: float(p[k]) for k in (
            "loan_rate_per_year", "tenor_years", "insurance_rate_per_year",
            "rotation_cost_share", "purchase_window_months", "max_buy_share_per_month",
            "purchase_price_slope", "conversion_capacity_share", "rule_days")}
        scalar["price_blocks"] = max(1, int(p["price_blocks"]))
        scalar.update(override)
        return cls(**scalar,
                   processing_usd_per_t=f["processing_usd_per_kg"].to_numpy(float) * 1e3,
                   storage_usd_per_t_year=f["storage_usd_per_t_year"].to_numpy(float),
                   shelf_life_years=f["shelf_life_years"].to_numpy(float),
                   lead_months=f["conversion_lead_months"].to_numpy(float))


@dataclass(frozen=True)
class Economy:
    """What the perspective uses, imports and values, and what each holding costs.

    Quantities are t REO-eq (the engine's unit); a tonne held as metal or magnet is counted
    by the rare earth it contains."""

    perspective: str
    elements: list[str]
    group_form: np.ndarray  # [G] form index of each demand group of the engine
    group_sector: np.ndarray  # [G] sector index of each demand group
    value_usd_per_t: np.ndarray  # [G, E] value added lost per t of e when e binds (Leontief)
    use_t_per_year: np.ndarray  # [E] the perspective's end use
    net_imports_t_per_year: np.ndarray  # [E, F] the perspective's net imports by form
    price_usd_per_t: np.ndarray  # [E, F] base price of a tonne held in each form
    market_t_per_month: np.ndarray  # [E, F] outside-China use of that form and downstream
    conversion_cap_t_per_month: np.ndarray  # [F] tolling capacity per month (oxide: 0)
    yields: np.ndarray  # [F, F] t delivered in form g per t held in form f (0 if g < f)
    conversion_lead_months: np.ndarray  # [F, F] months from disruption until f can serve g
    carry_usd_per_t_year: np.ndarray  # [E, F] storage, insurance and rotation
    allowed: np.ndarray  # [E, F] forms worth holding (the perspective uses them downstream)
    forms: tuple[str, ...] = FORMS
    """Names of the three holding forms: oxide, metal, magnet for the rare earths; a chain's
    stages in the engine's first and second traded slots (chain_stages.csv), '' if none."""
    commodity: str = "REE"


def value_added_usd_per_kg_re(network: Network, sectors: list[str]) -> np.ndarray:
    """[S] value added of each sector's product per kg of rare earth it contains
    (`sector_value`: unit value x value-added share / kg of rare earth per unit)."""
    sv = network.dataset["sector_value"].set_index("sector").reindex(sectors)
    missing = sv.index[sv["unit_value_usd"].isna()].tolist()
    if missing:
        raise PlanError(f"sector_value.csv has no row for sector(s) {', '.join(missing)}")
    return (sv["unit_value_usd"] * sv["value_added_share"] / sv["re_kg_per_unit"]).to_numpy(
        float)


def leontief_value_usd_per_t(va_per_kg: np.ndarray, use_t: np.ndarray) -> np.ndarray:
    """[G, E] value added lost per t of element e missing in group g when e is the input that
    binds: the group's products need e in fixed proportion (its use mix `use_t` [G, E]), so a
    missing tonne of e stops the products that would have held it, worth va_per_kg x 1,000
    per t of all their rare earths: va x (total use / use of e). 0 where g uses no e."""
    total = use_t.sum(1, keepdims=True)
    ratio = np.divide(total, use_t, out=np.zeros_like(use_t), where=use_t > 0)
    return va_per_kg[:, None] * 1e3 * ratio


def planner_groups(base) -> tuple[list[tuple[int, int]], np.ndarray]:
    """Demand groups of the planner: (form, sector) pairs of the engine's demand lines (a
    sector's product needs its rare earths together), in order, and each line's group [L]."""
    form = base.item_form[base.line_item]
    pairs = sorted(set(zip(form.tolist(), base.line_sector.tolist(), strict=True)))
    return pairs, np.array([pairs.index((f, s)) for f, s in
                            zip(form, base.line_sector, strict=True)])


def economy(network: Network, perspective: str, terms: Terms, base) -> Economy:
    """Everything the planner needs about the perspective, from the engine's base year:
    demand groups, what their unmet demand is worth, use, imports, prices, the market."""
    markets = _perspective_markets(base, network, perspective)
    va = value_added_usd_per_kg_re(network, list(base.sectors))
    regions = _perspective_regions(network, perspective, base)
    return _economy(base, markets, va, perspective, terms, terms.processing_usd_per_t,
                    terms.lead_months, terms.storage_usd_per_t_year, terms.shelf_life_years,
                    lambda: _net_imports(network, regions, base.elements))


def _economy(base, markets: list[str], va_sector: np.ndarray, perspective: str, terms: Terms,
             processing_usd_per_t: np.ndarray, lead_months: np.ndarray,
             storage_usd_per_t_year: np.ndarray, shelf_life_years: np.ndarray,
             net_imports, forms: tuple[str, ...] = FORMS, commodity: str = "REE") -> Economy:
    """The Economy of one commodity from its engine base year and its per-form terms
    ([F] arrays: processing from the form before, conversion lead, storage, shelf life);
    `net_imports()` gives [E, F] t a year."""
    pairs, group = planner_groups(base)
    G, E = len(pairs), len(base.elements)
    line_reo = base.item_reo()[base.line_item]  # [L, E]
    mk = np.isin(base.regions, markets)
    d_line = base.demand0[mk].sum(0)[:, None] * line_reo  # [L, E] perspective, t a month
    member = np.zeros((len(group), G))
    member[np.arange(len(group)), group] = 1.0
    group_form = np.array([f for f, _ in pairs])
    group_sector = np.array([s for _, s in pairs])
    va = va_sector[group_sector]  # [G]
    d_group = member.T @ d_line  # [G, E] the perspective's use mix
    world = member.T @ (base.demand0.sum(0)[:, None] * line_reo)  # the world's, where none
    mix = np.where(d_group.sum(1, keepdims=True) > 0, d_group, world)
    value = leontief_value_usd_per_t(va, mix)
    ym = base.yields["metal"]
    ymag = base.yields["sintering"] * base.yields["machining"]
    y = np.array([1.0, ym, ymag])
    yields = np.zeros((3, 3))
    lead = np.full((3, 3), np.inf)
    for f in range(3):
        for g in range(f, 3):
            yields[f, g] = np.prod(y[f + 1:g + 1])
            lead[f, g] = lead_months[f + 1:g + 1].sum()
    c = base.controller_index
    p_out = np.delete(base.price0, c, 0).max(0)
    price = np.zeros((E, 3))
    price[:, 0] = p_out * 1e3
    for f in (1, 2):
        price[:, f] = price[:, f - 1] / y[f] + processing_usd_per_t[f]
    outside = np.arange(len(base.regions)) != c
    form = base.item_form[base.line_item]
    use_out = np.stack([(base.demand0[outside].sum(0)[:, None] * line_reo)[form == f].sum(0)
                        for f in range(3)], 1)  # [E, F] end use of each form outside
    market = np.cumsum(use_out[:, ::-1], 1)[:, ::-1]  # use of form f or later
    use_p = np.stack([d_line[form == f].sum(0) for f in range(3)], 1)
    downstream = np.cumsum(use_p[:, ::-1], 1)[:, ::-1]
    allowed = (downstream > 0) & (market > 0) & (price > 0)
    carry = (storage_usd_per_t_year[None, :]
             + (terms.insurance_rate_per_year
                + terms.rotation_cost_share / shelf_life_years[None, :]) * price)
    E_ = len(base.elements)
    prod_out = base.prod0[outside]
    cap = np.array([0.0, terms.conversion_capacity_share * prod_out[:, E_:2 * E_].sum(),
                    terms.conversion_capacity_share * (prod_out[:, 2 * E_:]
                                                       @ base.grade_reo).sum()])
    return Economy(
        perspective=perspective, elements=list(base.elements), group_form=group_form,
        group_sector=group_sector, value_usd_per_t=value, use_t_per_year=d_line.sum(0) * 12,
        net_imports_t_per_year=net_imports(),
        price_usd_per_t=price, market_t_per_month=market, conversion_cap_t_per_month=cap,
        yields=yields, conversion_lead_months=lead, carry_usd_per_t_year=carry,
        allowed=allowed, forms=tuple(forms), commodity=commodity)


def _perspective_markets(base, network: Network, perspective: str) -> list[str]:
    return _markets_of(base, network.dataset, perspective)


def _markets_of(base, dataset, perspective: str) -> list[str]:
    from oreflow.simulate.market import MarketError, perspective_markets

    try:
        markets, _ = perspective_markets(base, dataset, perspective)
    except MarketError as e:
        raise PlanError(str(e)) from None
    if base.controller in markets:
        raise PlanError(f"perspective {perspective!r} is (or includes) the controlling "
                        f"country of the scenarios ({base.controller}); plan for a region "
                        "outside it")
    return markets


def _perspective_regions(network: Network, perspective: str, base) -> list[str]:
    """Network regions of the perspective's markets (for its base-year imports)."""
    markets = _perspective_markets(base, network, perspective)
    return [r for i, r in enumerate(base.network_regions)
            if base.regions[base.region_market[i]] in markets]


def _net_imports(network: Network, regions: list[str], elements: list[str]) -> np.ndarray:
    """[E, F] the regions' base-year net imports of oxide, metal and magnets (t REO-eq/yr)."""
    trade = network.trade_t.sel(element=elements)
    out = np.zeros((len(elements), 3))
    others = [r for r in network.regions if r not in regions]
    for f, stage in enumerate(("separation", "metal", "magnet")):
        t = trade.sel(stage=stage)
        inflow = t.sel(dest=regions, origin=others).sum(("origin", "dest"))
        outflow = t.sel(origin=regions, dest=others).sum(("origin", "dest"))
        out[:, f] = np.maximum((inflow - outflow).transpose("element").to_numpy(), 0.0)
    return out


def chain_value_added_usd_per_kg(dataset, chain: str, sectors: list[str]) -> np.ndarray:
    """[S] value added of each chain sector's product per kg of the chain's basis it contains
    (`chain_sector_value`: unit value x value-added share / kg per unit). A base year of
    several chains names its sectors `<chain>_<sector>`."""
    sv = dataset["chain_sector_value"]
    sv = sv[sv["chain"] == chain].set_index("sector")
    bare = [s[len(chain) + 1:] if s.startswith(f"{chain}_") else s for s in sectors]
    missing = [s for s in bare if s not in sv.index]
    if missing:
        raise PlanError(f"chain_sector_value.csv has no row for chain {chain}, sector(s) "
                        f"{', '.join(missing)}: the planner needs the value of what a shortage "
                        "stops")
    sv = sv.loc[bare]
    return (sv["unit_value_usd"] * sv["value_added_share"] / sv["kg_per_unit"]).to_numpy(float)


def chain_forms(dataset, chain: str) -> tuple[str, str, str]:
    """The chain's stages in the engine's first and second traded slots (its holding forms;
    '' where the chain has no quantified stage there) and '' for the unused third."""
    from oreflow.simulate.chain_market import _slot_stage, chain_markets

    net = chain_markets(dataset, [chain]).networks[0]
    return (_slot_stage(net, "separation") or "", _slot_stage(net, "metal") or "", "")


def chain_economy(dataset, chain: str, perspective: str, terms: Terms, base) -> Economy:
    """The Economy of a commodity chain other than the rare earths, from its engine base year
    (`simulate.chain_market`): holding forms are the chain's traded stages, each with its
    storage, shelf life, processing cost and conversion lead time (`stockpile_chain_forms`);
    a missing tonne is worth the value added of the products it stops
    (`chain_sector_value`); net imports are the chain network's base-year trade."""
    from oreflow.simulate.chain_market import chain_markets

    if list(base.elements) != [chain]:
        raise PlanError(f"the base year holds {', '.join(base.elements)}, not {chain} alone")
    markets = _markets_of(base, dataset, perspective)
    forms = chain_forms(dataset, chain)
    fp = dataset["stockpile_chain_forms"]
    fp = fp[fp["chain"] == chain].set_index("stage")
    cols = ("processing_usd_per_kg", "storage_usd_per_t_year", "shelf_life_years",
            "conversion_lead_months")
    par = np.zeros((3, 4))
    par[:, 2] = 1.0  # shelf life of an unused form (never held)
    for f, stage in enumerate(forms):
        if not stage:
            continue
        if stage not in fp.index:
            raise PlanError(f"stockpile_chain_forms.csv has no row for chain {chain}, stage "
                            f"{stage}: the planner needs its storage cost and shelf life")
        par[f] = fp.loc[stage, list(cols)].to_numpy(float)
    va = chain_value_added_usd_per_kg(dataset, chain, list(base.sectors))
    regions = [r for i, r in enumerate(base.network_regions)
               if base.regions[base.region_market[i]] in markets]
    cnet = chain_markets(dataset, [chain]).networks[0]
    return _economy(base, markets, va, perspective, terms, par[:, 0] * 1e3, par[:, 3],
                    par[:, 1], par[:, 2], lambda: _chain_net_imports(cnet, regions, forms),
                    forms=forms, commodity=chain)


def _chain_net_imports(cnet, regions: list[str], forms) -> np.ndarray:
    """[1, F] the regions' base-year net imports of each holding form of a chain (its chain
    network's trade at that stage), t of the chain's basis a year."""
    out = np.zeros((1, 3))
    inside = [r for r in cnet.regions if r in regions]
    others = [r for r in cnet.regions if r not in regions]
    for f, stage in enumerate(forms):
        if not stage or not inside or not others:
            continue
        t = cnet.trade_t.sel(stage=stage)
        inflow = float(t.sel(dest=inside, origin=others).sum())
        outflow = float(t.sel(origin=inside, dest=others).sum())
        out[0, f] = max(inflow - outflow, 0.0)
    return out


# ---- scenario paths ---------------------------------------------------------------------
@dataclass
class UnmetPaths:
    """The perspective's physical shortage on each simulated path, with the path's probability
    (demand given up because of price is not in it: a stockpile cannot serve it)."""

    unmet_t: np.ndarray  # [P, T, G, E] t REO-eq per month
    weight: np.ndarray  # [P] probabilities summing to 1
    scenario: np.ndarray  # [P] scenario name of each path
    base: object = field(repr=False)
    price_response_usd: np.ndarray | None = None
    """[P] demand the perspective gave up because of price, valued at the consumer-surplus
    triangle (half the price rise times the tonnes given up; never above price x quantity).
    Not a loss the stockpile serves: reported beside the plan, not in its objective."""

    @property
    def start_month(self) -> np.ndarray:
        """[P] first month with any unmet demand (the months if none)."""
        any_short = self.unmet_t.reshape(*self.unmet_t.shape[:2], -1).max(2) > 0
        return np.where(any_short.any(1), any_short.argmax(1), self.unmet_t.shape[1])


def parse_scenario_weights(text: str | None) -> dict[str, float]:
    """'a,b:2,c' -> {a: 1, b: 2, c: 1}; None -> the default mix."""
    if not text:
        return dict(DEFAULT_SCENARIOS)
    out: dict[str, float] = {}
    for item in text.split(","):
        name, _, w = item.strip().partition(":")
        if not name:
            raise PlanError(f"empty scenario name in {text!r}")
        try:
            weight = float(w) if w else 1.0
        except ValueError:
            raise PlanError(f"scenario weight {w!r} of {name!r} is not a number") from None
        if not np.isfinite(weight) or weight < 0:
            raise PlanError(f"scenario weight of {name!r} must be a number >= 0, got {w!r}")
        out[name] = weight
    if sum(out.values()) <= 0:
        raise PlanError("scenario weights must not all be zero")
    return out


def simulate_unmet(scenarios: dict[str, float], paths: int, seed: int, months: int,
                   perspective: str, network: Network | None = None, behaviour=None,
                   prepare=None, commodity: str | None = None) -> UnmetPaths:
    """Run each scenario through the stress engine for its share of `paths` and keep the
    perspective's physical shortage per path, month, demand group and element.
    `behaviour` (default: the dataset's) and `prepare(name) -> (Scenario, sha256)` (default:
    `load_scenario`) let a caller run other parameter values (`oreflow.sweep.planning`).
    `commodity` (a chain id other than REE): run each scenario for that commodity alone
    (`scenario_for_commodity`), on its chain's base year."""
    from oreflow.scenario import ScenarioError, load_scenario
    from oreflow.simulate.run import RunError

    net = network if network is not None else Network.from_dataset()
    total = sum(scenarios.values())
    names = [n for n, w in scenarios.items() if w > 0]
    share = paths * np.array([scenarios[n] for n in names]) / total
    counts = np.floor(share)  # largest remainders get the paths left over: exactly `paths`
    counts[np.argsort(counts - share)[:paths - int(counts.sum())]] += 1
    counts = np.maximum(counts, 1)
    seeds = np.random.SeedSequence(seed).spawn(len(names))
    blocks, weights, labels, triangles, base = [], [], [], [], None
    for name, n, ss in zip(names, counts.astype(int), seeds, strict=True):
        try:
            sc, _ = prepare(name) if prepare is not None else load_scenario(name, net)
        except ScenarioError as e:
            raise PlanError(str(e)) from None
        if commodity is not None:
            sc = scenario_for_commodity(sc, commodity)
        keep = _Keep(n, months, perspective, net)
        try:
            _run_paths(sc.model_copy(update={"months": months}), n,
                       int(ss.generate_state(1)[0]), net, behaviour, keep)
        except (RunError, ValueError) as e:
            raise PlanError(f"scenario {name!r}: {e}") from None
        if base is not None and (keep.base.controller != base.controller
                                 or keep.base.elements != base.elements):
            raise PlanError(f"scenario {name!r} has another controller or other commodities "
                            "than the first of the mix")
        base = keep.base
        blocks.append(keep.unmet)
        triangles.append(keep.triangle)
        weights.append(np.full(n, scenarios[name] / total / n))
        labels.append(np.full(n, name, dtype=object))
    unmet = np.concatenate(blocks)
    if not np.isfinite(unmet).all():
        raise PlanError("the engine returned a non-finite shortage: the dataset or scenario "
                        "gives an unbounded market")
    return UnmetPaths(unmet, np.concatenate(weights), np.concatenate(labels), base,
                      np.concatenate(triangles))


def _run_paths(sc, paths: int, seed: int, network: Network, behaviour, observer) -> None:
    """The stress engine's months for `paths` paths of `sc`, seen by `observer` alone: the
    same paths `run_stress` simulates with the same seed (the engine's numbers do not depend
    on who watches), without the run's summary, bands and balance check, which the planner
    does not read."""
    from oreflow.simulate.engine import Behaviour, Engine
    from oreflow.simulate.market import market_base
    from oreflow.simulate.run import DEFAULT_CHUNK, with_cover

    net = network.at_year(sc.base_year)
    beh = behaviour or Behaviour.from_dataset(net.dataset)
    if sc.is_ree:
        base = with_cover(market_base(net, sc.controller), beh, net.dataset)
    else:
        from oreflow.simulate.chain_market import chain_market_base, chain_markets

        net = chain_markets(net.dataset, sc.commodities)
        base = chain_market_base(net, sc.controller)
    engine = Engine(base, beh, sc, net, seed)
    for start in range(0, paths, DEFAULT_CHUNK):
        engine.run_block(np.arange(start, min(start + DEFAULT_CHUNK, paths)), [observer])


def scenario_for_commodity(sc, commodity: str):
    """The scenario as it bears on one commodity: a scenario about several chains (Ga and
    Ge) keeps the shocks that name `commodity` (or every commodity), each narrowed to it, and
    runs on that chain alone."""
    if commodity not in sc.commodities:
        raise PlanError(f"scenario {sc.name!r} is about {', '.join(sc.commodities)}, not "
                        f"{commodity}")
    if sc.commodities == [commodity]:
        return sc
    shocks = []
    for sh in sc.shocks:
        one = getattr(sh, "element", None)
        if one is not None and one != commodity:
            continue
        els = getattr(sh, "elements", "all")
        if els is None or els == "all":
            shocks.append(sh)
        elif commodity in els:
            shocks.append(sh.model_copy(update={"elements": [commodity]}))
    return sc.model_copy(update={"commodity": [commodity], "shocks": shocks})


class _Keep:
    """Observer of run_stress: keeps the perspective's physical shortage per path, month,
    demand group and element (t REO-eq), and the consumer-surplus triangle of the demand it
    gave up because of price (USD per path)."""

    def __init__(self, paths: int, months: int, perspective: str, network: Network):
        self.paths, self.months, self.perspective = paths, months, perspective
        self.network = network
        self.unmet = None
        self.base = None
        self.triangle = np.zeros(paths)

    def start_block(self, engine, paths) -> None:
        if self.unmet is None:
            b = engine.base
            self.base = b
            markets = _perspective_markets(b, self.network, self.perspective)
            self.mk = np.isin(b.regions, markets)
            pairs, group = planner_groups(b)
            reo = b.item_reo()[b.line_item]  # [L, E]
            member = np.zeros((len(group), len(pairs)))
            member[np.arange(len(group)), group] = 1.0
            self.to_group = np.einsum("lg,le->lge", member, reo)  # [L, G, E]
            self.unmet = np.zeros((self.paths, self.months, len(pairs), len(b.elements)))
            self.reo = reo
            self.p0 = b.price0 * 1e3  # [M, E] USD per t REO-eq

    def on_month(self, view) -> None:
        short = view.physical_unmet_t[:, self.mk].sum(1)  # [P, L]
        self.unmet[view.paths, view.t] = np.einsum("pl,lge->pge", short, self.to_group)
        # demand given up because of price, by element, at half the price rise
        given_up = view.demand_reduction_t[:, self.mk] @ self.reo  # [P, m, E]
        rise = np.maximum(view.price_usd_per_kg[:, self.mk] * 1e3 - self.p0[self.mk], 0.0)
        self.triangle[view.paths] += 0.5 * (rise * given_up).sum((1, 2))

    def end_block(self, engine, paths) -> None:
        pass


# ---- the optimisation -------------------------------------------------------------------
@dataclass(frozen=True)
class Segments:
    """Unmet demand aggregated over the months in which the same holdings can serve it."""

    unmet_t: np.ndarray  # [P, E, G, K]
    serves: np.ndarray  # [P, F, G, K] holding form f can serve group g in segment k
    months: np.ndarray  # [P, F] months after the conversion lead time (for capacity)


def segment(paths: UnmetPaths, econ: Economy, monthly: bool = False) -> Segments:
    """Aggregate months into segments between the conversion lead times (after each path's
    disruption start) that matter to each demand group: exact for the release problem,
    since within a segment the same holdings can serve the same demand. `monthly` keeps
    every month (the generic LP)."""
    U = paths.unmet_t  # [P, T, G, E]
    P, T, G, E = U.shape
    start = paths.start_month
    lead = econ.conversion_lead_months[:, econ.group_form]  # [F, G]
    month = np.arange(T)
    if monthly:
        seg_unmet = U.transpose(0, 3, 2, 1)  # [P, E, G, T]
        since = month[None, :] - start[:, None]  # [P, T]
        serves = since[:, None, None, :] >= lead[None, :, :, None]
    else:
        # per demand group, the months between the lead times of the forms that can serve it
        # (oxide users: one segment; metal users: two; magnet users: three)
        n_seg = [len(np.unique(lead[np.isfinite(lead[:, g]), g])) for g in range(G)]
        seg_unmet = np.zeros((P, E, G, max(n_seg)))
        serves = np.zeros((P, 3, G, max(n_seg)), bool)
        since = month[None, :] - start[:, None]  # [P, T]
        for g in range(G):  # a handful of groups; paths and months stay vectorized
            edges = np.unique(lead[np.isfinite(lead[:, g]), g])
            seg_of = np.clip(np.searchsorted(edges, since, side="right") - 1, 0, len(edges) - 1)
            onehot = seg_of[:, :, None] == np.arange(len(edges))[None, None, :]  # [P, T, K]
            seg_unmet[:, :, g, :len(edges)] = np.einsum("pte,ptk->pek", U[:, :, g], onehot)
            serves[:, :, g, :len(edges)] = edges[None, None, :] >= lead[None, :, g, None]
    # tolling months: after the lead time into the metal and the magnet stage
    lead_into = np.array([0.0, econ.conversion_lead_months[0, 1],
                          econ.conversion_lead_months[1, 2]])
    conv_months = np.maximum(0.0, T - start[:, None] - lead_into[None, :])
    return Segments(seg_unmet, np.asarray(serves), conv_months)


def merge_identical(seg: Segments, weight: np.ndarray) -> tuple[Segments, np.ndarray]:
    """Paths with the same segments (deterministic scenarios repeat one path) become one
    path carrying their summed probability: the same LP optimum with fewer variables."""
    P = len(weight)
    key = np.concatenate([seg.unmet_t.reshape(P, -1), seg.months,
                          seg.serves.reshape(P, -1)], 1)
    _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
    merged = np.bincount(inverse.ravel(), weights=weight, minlength=len(first))
    return Segments(seg.unmet_t[first], seg.serves[first], seg.months[first]), merged


MUSD = 1e6
"""The LP counts money in millions of USD: keeps HiGHS's coefficients near 1."""
BENDERS_FROM_PATHS = 600
"""From this many distinct paths `plan_stockpile` solves by path decomposition (faster and
growing about linearly in paths; tests/test_stockpile_benders.py: the same optimum). Measured
by benchmarks/bench_stockpile.py: the aggregated LP is faster at 402 distinct paths, the
decomposition at 802 (docs/stockpile.md)."""
HIGHS_OPTIONS: dict = {}
"""Extra HiGHS options for every solve."""
TIE_BREAK = 1e-9
"""Tie-break: `TIE_BREAK x MUSD` = 0.001 USD of objective per USD spent, so that among equally
good plans the cheapest is chosen (nothing is bought that never covers anything); large
enough for HiGHS's tolerances, small against the value of what a dollar covers (it lowers a
reported shadow price by at most 0.001 USD per USD)."""


@dataclass
class Solution:
    """What an LP solve returns: holdings, spending and per-path unserved value."""

    holdings_t: np.ndarray  # [E, F]
    purchase_usd: np.ndarray  # [E, F] what was paid for each holding
    carry_usd_per_year: float
    unserved_usd: np.ndarray  # [P]
    objective: float  # in USD, without the tie-break
    seconds: dict = field(default_factory=dict)  # model build and HiGHS solve times


def solve(seg: Segments, econ: Economy, terms: Terms, weight: np.ndarray, *,
          budget_usd: float | None = None, holdings_t: np.ndarray | None = None,
          cvar_weight: float = 0.0, cvar_alpha: float = 0.95,
          min_days: np.ndarray | None = None) -> Solution:
    """Optimise holdings within `budget_usd` (first and second stage), or, given fixed
    `holdings_t`, only the releases (which then decompose by path)."""
    from linopy.config import LinopySemanticsWarning

    with warnings.catch_warnings():
        # masked variables contribute nothing to sums, which is what is meant here
        warnings.simplefilter("ignore", category=LinopySemanticsWarning)
        return _solve(seg, econ, terms, weight, budget_usd, holdings_t, cvar_weight,
                      cvar_alpha, min_days)


def _solve(seg, econ, terms, weight, budget_usd, holdings_t, cvar_weight, cvar_alpha,
           min_days) -> Solution:
    import linopy

    started = time.perf_counter()
    P, E, G, K = seg.unmet_t.shape
    F = 3
    needs_days = min_days is not None and np.any(np.asarray(min_days) > 0)
    if not (seg.unmet_t > 0).any() and (holdings_t is not None or not needs_days):
        # nothing is ever short: nothing to buy or release, nothing lost
        held = np.zeros((E, F)) if holdings_t is None else np.asarray(holdings_t, float)
        return Solution(held, np.zeros((E, F)), 0.0, np.zeros(P), 0.0, {})
    m = linopy.Model()
    blk = add_block(m, seg, econ, terms, weight, budget_usd=budget_usd, holdings_t=holdings_t,
                    cvar_weight=cvar_weight, cvar_alpha=cvar_alpha, min_days=min_days)
    m.add_objective(blk.objective)
    built = time.perf_counter()
    solve_model(m, min_days is not None)
    solved = time.perf_counter()
    return blk.solution({"build": built - started, "solve": solved - built})


SHARED_BUDGET = object()
"""`add_block(budget_usd=SHARED_BUDGET)`: the block's cost goes into a budget row the caller
adds over several blocks (`stockpile_basket`)."""


@dataclass
class Block:
    """One commodity's part of a stockpile LP (`add_block`): its objective and cost
    expressions, and what is needed to read its solution."""

    econ: Economy
    terms: Terms
    weight: np.ndarray
    cvar_weight: float
    cvar_alpha: float
    objective: object  # linopy expression, MUSD
    total_cost: object | None  # purchase plus carry over the tenor, MUSD (None: fixed holdings)
    loss: object  # linopy variable [path, group, seg]
    buy: object | None
    price: np.ndarray | None  # [E, F, B] USD per t of each price block
    holdings_t: np.ndarray | None
    shape: tuple[int, int, int, int]

    def solution(self, seconds: dict | None = None) -> Solution:
        P, E, G, K = self.shape
        F = 3
        lost = np.nan_to_num(self.loss.solution.to_numpy()) if P else np.zeros((0, G, K))
        unserved = np.maximum(lost.sum((1, 2)), 0.0) * MUSD
        if self.holdings_t is None:
            bought = np.nan_to_num(self.buy.solution.to_numpy())
            held_t, spend = bought.sum(2), (bought * self.price).sum(2)
            carry = carry_usd_per_year(held_t, spend, self.econ, self.terms)
        else:
            held_t, spend, carry = self.holdings_t, np.zeros((E, F)), 0.0
        obj = (1 - self.cvar_weight) * float(self.weight @ unserved)
        if self.cvar_weight > 0:
            obj += self.cvar_weight * cvar(unserved, self.weight, self.cvar_alpha)
        return Solution(held_t, spend, carry, unserved, obj, seconds or {})


def solve_model(m, had_min_days: bool = False) -> None:
    """Solve a stockpile LP with HiGHS (quietly); PlanError unless optimal."""
    with _quiet_stdout():
        _, condition = m.solve(solver_name="highs", io_api="direct", output_flag=False,
                               **HIGHS_OPTIONS)
    if condition != "optimal":
        hint = (" (the minimum days of cover cost more than the budget or exceed what can be "
                "bought within the purchase caps)" if had_min_days else "")
        raise PlanError(f"the stockpile problem is {condition}{hint}")


def add_block(m, seg: Segments, econ: Economy, terms: Terms, weight: np.ndarray, *,
              budget_usd=None, holdings_t: np.ndarray | None = None,
              cvar_weight: float = 0.0, cvar_alpha: float = 0.95,
              min_days: np.ndarray | None = None, prefix: str = "") -> Block:
    """Add one commodity's variables and constraints to the linopy model `m` (names start
    with `prefix`): purchases in price blocks (or fixed `holdings_t`), releases, the
    Leontief loss, CVaR; its own budget row unless `budget_usd` is SHARED_BUDGET. Returns
    the block with its objective (not yet set on `m`)."""
    from linopy.config import LinopySemanticsWarning

    with warnings.catch_warnings():
        # masked variables contribute nothing to sums, which is what is meant here
        warnings.simplefilter("ignore", category=LinopySemanticsWarning)
        return _add_block(m, seg, econ, terms, weight, budget_usd, holdings_t, cvar_weight,
                          cvar_alpha, min_days, prefix)


def _add_block(m, seg, econ, terms, weight, budget_usd, holdings_t, cvar_weight, cvar_alpha,
               min_days, prefix) -> Block:
    n = prefix
    P, E, G, K = seg.unmet_t.shape
    F = 3
    gf = econ.group_form
    dims5 = ("path", "element", "hold", "group", "seg")
    coords = {"path": np.arange(P), "element": econ.elements, "hold": list(FORMS),
              "group": np.arange(G), "seg": np.arange(K)}
    serve_form = econ.yields[:, gf] > 0  # [F, G] holding f is upstream of group g's form
    mask = ((seg.unmet_t[:, :, None] > 0)
            & seg.serves[:, None]
            & serve_form[None, None, :, :, None]
            & econ.allowed[None, :, :, None, None])
    upper = np.broadcast_to(seg.unmet_t[:, :, None], mask.shape)
    x = m.add_variables(lower=0.0, upper=xr.DataArray(upper, coords, dims5),
                        mask=xr.DataArray(mask, coords, dims5), name=f"{n}release")

    inv_yield = np.divide(1.0, econ.yields[:, gf], out=np.zeros((F, G)),
                          where=econ.yields[:, gf] > 0)
    drawn = (x * xr.DataArray(inv_yield, {"hold": list(FORMS), "group": np.arange(G)},
                              ("hold", "group"))).sum(["group", "seg"])
    has_x = mask.any((3, 4))  # [P, E, F]
    ef = {"element": econ.elements, "hold": list(FORMS)}
    buy = price = total_cost = purchase = None
    if holdings_t is None:
        B = terms.price_blocks
        cap_t = (terms.max_buy_share_per_month * econ.market_t_per_month
                 * terms.purchase_window_months)
        block = np.broadcast_to((cap_t / B)[:, :, None], (E, F, B))
        price = econ.price_usd_per_t[:, :, None] * (
            1 + terms.purchase_price_slope * (np.arange(B) + 0.5) / B)
        bcoords = {**ef, "block": np.arange(B)}
        buy = m.add_variables(lower=0.0,
                              upper=xr.DataArray(block, bcoords, ("element", "hold", "block")),
                              mask=xr.DataArray(np.broadcast_to(econ.allowed[:, :, None],
                                                                (E, F, B)),
                                                bcoords, ("element", "hold", "block")),
                              name=f"{n}buy")
        held = buy.sum("block")
        purchase = (buy * xr.DataArray(price / MUSD, bcoords,
                                       ("element", "hold", "block"))).sum()
        carry_year = (held * xr.DataArray(econ.carry_usd_per_t_year / MUSD, ef,
                                          ("element", "hold"))).sum()
        total_cost = (purchase * (1 + terms.loan_rate_per_year * terms.tenor_years)
                      + carry_year * terms.tenor_years)
        if budget_usd is not SHARED_BUDGET:
            m.add_constraints(total_cost <= (budget_usd or 0.0) / MUSD, name=f"{n}budget")
        m.add_constraints(drawn - held <= 0,
                          mask=xr.DataArray(has_x, {"path": np.arange(P), **ef},
                                            ("path", "element", "hold")), name=f"{n}held")
        if min_days is not None and np.any(min_days > 0):
            need = np.asarray(min_days, float) / DAYS_PER_YEAR * econ.use_t_per_year
            has_use = (need > 0) & econ.allowed.any(1)
            m.add_constraints(held.sum("hold") >= xr.DataArray(need, {"element": econ.elements},
                                                               ("element",)),
                              mask=xr.DataArray(has_use, {"element": econ.elements},
                                                ("element",)), name=f"{n}min_days")
    else:
        h = xr.DataArray(np.asarray(holdings_t, float), ef, ("element", "hold"))
        m.add_constraints(drawn <= h, mask=xr.DataArray(
            has_x, {"path": np.arange(P), **ef}, ("path", "element", "hold")), name=f"{n}held")

    several = (mask.sum(2) > 1)  # [P, E, G, K] buckets more than one form can serve
    if several.any():
        c4 = {k: coords[k] for k in ("path", "element", "group", "seg")}
        d4 = ("path", "element", "group", "seg")
        m.add_constraints(x.sum("hold") <= xr.DataArray(seg.unmet_t, c4, d4),
                          mask=xr.DataArray(several, c4, d4), name=f"{n}cover")
    # tolling capacity of the metal and magnet stages for converted releases
    for stage in (1, 2):
        through = np.array([[f < stage <= gf[g] for g in range(G)] for f in range(F)])
        if not (mask & through[None, None, :, :, None]).any():
            continue
        conv = (x * xr.DataArray(through.astype(float),
                                 {"hold": list(FORMS), "group": np.arange(G)},
                                 ("hold", "group"))).sum(["element", "hold", "group", "seg"])
        cap = econ.conversion_cap_t_per_month[stage] * seg.months[:, stage]
        m.add_constraints(conv <= xr.DataArray(cap, {"path": np.arange(P)}, ("path",)),
                          name=f"{n}tolling_{FORMS[stage]}")

    # Leontief loss per (path, group, segment): at least v_ge x what is left unserved of every
    # element e the group is short of (the scarcest input sets what cannot be made)
    v = econ.value_usd_per_t.T / MUSD  # [E, G]
    c4 = {k: coords[k] for k in ("path", "element", "group", "seg")}
    d4 = ("path", "element", "group", "seg")
    short = (seg.unmet_t > 0) & (v[None, :, :, None] > 0)  # [P, E, G, K]
    c3 = {k: coords[k] for k in ("path", "group", "seg")}
    loss = m.add_variables(lower=0.0, coords=c3,
                           mask=xr.DataArray(short.any(1), c3, ("path", "group", "seg")),
                           name=f"{n}loss")
    value = xr.DataArray(v, {"element": econ.elements, "group": np.arange(G)},
                         ("element", "group"))
    m.add_constraints(loss + x.sum("hold") * value
                      >= xr.DataArray(seg.unmet_t * v[None, :, :, None], c4, d4),
                      mask=xr.DataArray(short, c4, d4), name=f"{n}leontief")
    path_loss = loss.sum(["group", "seg"])  # [path], MUSD
    w = xr.DataArray(weight, {"path": np.arange(P)}, ("path",))
    objective = (1 - cvar_weight) * (path_loss * w).sum()
    if cvar_weight > 0:
        eta = m.add_variables(name=f"{n}var")  # value at risk at level alpha
        z = m.add_variables(lower=0.0, coords=[np.arange(P)], dims=["path"], name=f"{n}excess")
        m.add_constraints(z - path_loss + eta >= 0, name=f"{n}cvar")
        objective = objective + cvar_weight * (eta + (z * w).sum() / (1 - cvar_alpha))
    if holdings_t is None:
        objective = objective + TIE_BREAK * MUSD * purchase
    return Block(econ, terms, np.asarray(weight), cvar_weight, cvar_alpha, objective,
                 total_cost, loss, buy, price,
                 None if holdings_t is None else np.asarray(holdings_t, float),
                 (P, E, G, K))


_STDOUT_LOCK = threading.Lock()


@contextlib.contextmanager
def _quiet_stdout():
    """HiGHS prints its banner to file descriptor 1 before options apply; keep it out of
    `--format json` output."""
    with _STDOUT_LOCK:
        sys.stdout.flush()
        saved = os.dup(1)
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            try:
                yield
            finally:
                os.dup2(saved, 1)
                os.close(saved)


def loss_without_releases(seg: Segments, econ: Economy) -> np.ndarray:
    """[P] value lost on each path with no stockpile (USD): per group and segment, the
    scarcest input's unserved tonnes at the group's Leontief value."""
    v = econ.value_usd_per_t.T  # [E, G]
    return (seg.unmet_t * v[None, :, :, None]).max(1).sum((1, 2))


def cvar(loss: np.ndarray, weight: np.ndarray, alpha: float) -> float:
    """Conditional value at risk: expected loss in the worst (1 - alpha) of probability
    (Rockafellar and Uryasev 2000), for weighted samples."""
    order = np.argsort(loss)
    sorted_loss, w = loss[order], weight[order] / weight.sum()
    i = min(np.searchsorted(np.cumsum(w), alpha, side="left"), len(loss) - 1)
    var = sorted_loss[i]
    return float(var + (w * np.maximum(sorted_loss - var, 0.0)).sum() / (1 - alpha))


def carry_usd_per_year(held_t: np.ndarray, purchase_usd: np.ndarray, econ: Economy,
                       terms: Terms) -> float:
    """Loan interest on what was paid plus storage, insurance and rotation of what is held."""
    return float(terms.loan_rate_per_year * purchase_usd.sum()
                 + (held_t * econ.carry_usd_per_t_year).sum())


def rule_holdings(econ: Economy, terms: Terms, budget_usd: float, days: float,
                  scale_up: bool = False) -> np.ndarray:
    """The flat rule: `days` of the perspective's net imports of each element in each form,
    bought at base prices, scaled pro rata to the budget if it costs more (or, with
    `scale_up`, to exactly the budget: the rule at equal money)."""
    held = days / DAYS_PER_YEAR * econ.net_imports_t_per_year
    cost = total_cost_usd(held, held * econ.price_usd_per_t, econ, terms)
    if cost <= 0:
        return held
    return held * (budget_usd / cost if scale_up else min(1.0, budget_usd / cost))


def total_cost_usd(held_t: np.ndarray, purchase_usd: np.ndarray, econ: Economy,
                   terms: Terms) -> float:
    """Purchase plus carrying cost over the loan's tenor: what the budget must cover."""
    return float(purchase_usd.sum()
                 + terms.tenor_years * carry_usd_per_year(held_t, purchase_usd, econ, terms))


# ---- the planner ------------------------------------------------------------------------
@dataclass
class StockpilePlan:
    """A plan, the flat rule and holding nothing, scored on fresh paths."""

    budget_usd: float
    perspective: str
    elements: list[str]
    holdings_t: np.ndarray  # [E, F] t REO-eq contained
    purchase_usd: np.ndarray  # [E, F]
    carry_usd_per_year: float
    days_of_cover: np.ndarray  # [E] (nan where the perspective uses none)
    rule_holdings_t: np.ndarray  # [E, F]
    in_sample_expected_unserved_usd: float
    evaluation: dict
    settings: dict

    @property
    def spent_usd(self) -> float:
        """What the listed holdings cost (`holdings`: dust below HOLDING_MIN_T left out)."""
        return float(self.purchase_usd[self.holdings_t > HOLDING_MIN_T].sum())

    @property
    def cost_over_tenor_usd(self) -> float:
        """Purchase plus carrying cost over the loan's tenor: what counts against the budget."""
        return self.spent_usd + self.settings["tenor_years"] * self.carry_usd_per_year

    def holdings(self, min_t: float = HOLDING_MIN_T) -> pd.DataFrame:
        """One row per (element, form) held: tonnes of rare earth contained and cost."""
        rows = [{"element": e, "form": f, "t": float(self.holdings_t[i, j]),
                 "usd": float(self.purchase_usd[i, j])}
                for i, e in enumerate(self.elements) for j, f in enumerate(FORMS)
                if self.holdings_t[i, j] > min_t]
        return pd.DataFrame(rows, columns=["element", "form", "t", "usd"])

    def to_dict(self) -> dict:
        """The JSON object of `oreflow stockpile plan --format json`."""
        return {
            "budget_usd": self.budget_usd,
            "spent_usd": round(self.spent_usd, 2),
            "carry_usd_per_year": round(self.carry_usd_per_year, 2),
            "cost_over_tenor_usd": round(self.cost_over_tenor_usd, 2),
            "perspective": self.perspective,
            "holdings": [{**r, "t": round(r["t"], 3), "usd": round(r["usd"], 2)}
                         for r in self.holdings().to_dict(orient="records")],
            "days_of_cover": {e: round(float(d), 2) for e, d in
                              zip(self.elements, self.days_of_cover, strict=True)
                              if np.isfinite(d)},
            "evaluation": self.evaluation,
            "settings": self.settings,
        }


def _scale(held: np.ndarray, econ: Economy, days: float) -> float:
    """How many times `days` of net imports `held` is (1: the plain rule)."""
    base = days / DAYS_PER_YEAR * econ.net_imports_t_per_year
    return float(held.sum() / base.sum()) if base.sum() > 0 else float("nan")


def _parse_days(min_days, elements: list[str]) -> np.ndarray:
    """None, a number of days for every element, or {element: days}."""
    out = np.zeros(len(elements))
    if min_days is None:
        return out
    if isinstance(min_days, int | float):
        items = dict.fromkeys(elements, float(min_days))
    else:
        items = dict(min_days)
    for e, d in items.items():
        if e not in elements:
            raise PlanError(f"unknown element {e!r} in the minimum days of cover: choose from "
                            f"{', '.join(elements)}")
        if not np.isfinite(d) or d < 0:
            raise PlanError(f"minimum days of cover for {e} must be >= 0, got {d}")
        out[elements.index(e)] = d
    return out


def resolve_plan_perspective(network: Network, perspective: str):
    """The one region of end use a plan is for (any case): a region, or a bloc or member
    state that stands for exactly one (EU -> XEU, ITA -> XEU); see `oreflow.perspective`."""
    from oreflow.perspective import UnknownNameError, resolve_perspective

    scope = list(dict.fromkeys(network.dataset["sector_regions"]["region"]))
    try:
        p = resolve_perspective(perspective, network.dataset, within=scope)
    except UnknownNameError as e:
        raise PlanError(str(e)) from None
    if len(p.regions) != 1:
        raise PlanError(f"perspective {perspective!r} stands for several regions of use "
                        f"({', '.join(p.regions)}); the planner holds one region's stockpile: "
                        "choose one of them")
    return p


def _resolve_element_names(network: Network, elements, min_days):
    """Element names in `elements` and the keys of `min_days`, any case, as symbols."""
    from oreflow.perspective import UnknownNameError, resolve_elements

    try:
        if elements is not None:
            elements = resolve_elements(elements, network.elements, allow_total=False)
        if isinstance(min_days, dict):
            keys = resolve_elements(list(min_days), network.elements, allow_total=False)
            min_days = dict(zip(keys, min_days.values(), strict=True))
    except UnknownNameError as e:
        raise PlanError(str(e)) from None
    return elements, min_days


def plan_stockpile(budget_usd: float = 12e9, perspective: str = "USA",
                   scenarios: dict[str, float] | str | None = None, paths: int = 2000,
                   eval_paths: int = 2000, seed: int = 0, months: int = 60,
                   cvar_weight: float = 0.0, cvar_alpha: float = 0.95,
                   min_days=None, elements: list[str] | None = None,
                   network: Network | None = None, monthly: bool = False,
                   terms: Terms | None = None, sweep=None, param_draws: int = 32,
                   method: str = "auto") -> StockpilePlan:
    """Plan a stockpile for `perspective` with `budget_usd` over paths of the given scenario
    mix (name -> weight), and score it, the flat rule and no stockpile on fresh paths.

    `sweep` (a sweep file or `oreflow.sweep.design.Sweep`): draw the paths across its
    parameter distributions (`param_draws` parameter sets, Latin hypercube) and its
    scenarios, and score on fresh parameter draws. `method`: "monolithic" (one LP),
    "benders" (path decomposition, `stockpile_benders`) or "auto" (Benders from
    BENDERS_FROM_PATHS distinct paths)."""
    _check_plan_args(budget_usd, cvar_weight, cvar_alpha, paths, eval_paths, months, method,
                     seed)
    net = network if network is not None else Network.from_dataset()
    if sweep is not None:
        if scenarios is not None:
            raise PlanError("give --sweep or --scenarios, not both: with a sweep file the "
                            "plan draws from the sweep's scenarios and parameters")
        from oreflow.sweep.planning import load_for_plan

        sweep = load_for_plan(sweep, net)
        scenarios = dict.fromkeys(sweep.scenario_names, 1.0)
    mix = parse_scenario_weights(scenarios) if not isinstance(scenarios, dict) else scenarios
    named = resolve_plan_perspective(net, perspective)
    perspective = named.regions[0]
    elements, min_days = _resolve_element_names(net, elements, min_days)
    terms = terms or Terms.from_dataset(net.dataset)
    seed_fit, seed_eval = (int(s.generate_state(1)[0])
                           for s in np.random.SeedSequence(seed).spawn(2))
    def draw(n: int, seed_: int) -> UnmetPaths:
        if sweep is None:
            return simulate_unmet(mix, n, seed_, months, perspective, net)
        from oreflow.sweep.planning import uncertain_unmet

        return uncertain_unmet(sweep, n, seed_, months, perspective, net, param_draws)

    fit = draw(paths, seed_fit)
    econ = economy(net, perspective, terms, fit.base)
    econ = only_elements(econ, elements)
    days = _parse_days(min_days, econ.elements)
    seg_fit, w_fit = merge_identical(segment(fit, econ, monthly), fit.weight)
    use_benders = method == "benders" or (method == "auto" and not monthly
                                          and len(w_fit) >= BENDERS_FROM_PATHS)
    if use_benders:
        from oreflow.stockpile_benders import solve_benders

        with _quiet_stdout():  # HiGHS prints a banner on fd 1 when a model is created
            sol, _ = solve_benders(seg_fit, econ, terms, w_fit, budget_usd=budget_usd,
                                   cvar_weight=cvar_weight, cvar_alpha=cvar_alpha,
                                   min_days=days)
    else:
        sol = solve(seg_fit, econ, terms, w_fit, budget_usd=budget_usd,
                    cvar_weight=cvar_weight, cvar_alpha=cvar_alpha, min_days=days)
    rule = rule_holdings(econ, terms, budget_usd, terms.rule_days)

    test = draw(eval_paths, seed_eval)
    seg, w_test = merge_identical(segment(test, econ), test.weight)
    none = loss_without_releases(seg, econ)
    plan_cost = total_cost_usd(sol.holdings_t, sol.purchase_usd, econ, terms)
    rule_same = rule_holdings(econ, terms, plan_cost, terms.rule_days, scale_up=True)
    losses = {"plan": solve(seg, econ, terms, w_test, holdings_t=sol.holdings_t).unserved_usd,
              "rule_60_days": solve(seg, econ, terms, w_test, holdings_t=rule).unserved_usd,
              "rule_equal_money": solve(seg, econ, terms, w_test,
                                        holdings_t=rule_same).unserved_usd,
              "none": none}
    use = econ.use_t_per_year / DAYS_PER_YEAR
    cover = np.divide(sol.holdings_t.sum(1), use, out=np.full(len(use), np.nan),
                      where=use > 0)
    return StockpilePlan(
        budget_usd=float(budget_usd), perspective=perspective, elements=econ.elements,
        holdings_t=sol.holdings_t, purchase_usd=sol.purchase_usd,
        carry_usd_per_year=sol.carry_usd_per_year, days_of_cover=cover,
        rule_holdings_t=rule,
        in_sample_expected_unserved_usd=float(w_fit @ sol.unserved_usd),
        evaluation={
            "paths": int(len(test.weight)),
            "expected_unserved_usd": {k: round(float(w_test @ v), 2)
                                      for k, v in losses.items()},
            "cvar95_unserved_usd": {k: round(cvar(v, w_test, 0.95), 2)
                                    for k, v in losses.items()},
            "rule_equal_money_days": round(terms.rule_days * _scale(rule_same, econ,
                                                                    terms.rule_days), 2),
            "valuation": "physical shortage at the Leontief value added of the products it "
                         "stops (the scarcest input binds); demand given up because of price "
                         "is not served by a stockpile and is reported apart",
            "price_response_loss_usd": round(float(test.weight @ test.price_response_usd), 2)
            if test.price_response_usd is not None else None,
        },
        settings={"scenarios": mix, "paths": int(len(fit.weight)), "seed": int(seed),
                  "months": int(months), "tenor_years": terms.tenor_years,
                  "cvar_weight": cvar_weight, "cvar_alpha": cvar_alpha,
                  "min_days": {e: float(d) for e, d in zip(econ.elements, days, strict=True)
                               if d > 0},
                  "perspective_as_given": named.code, "perspective_note": named.note,
                  "method": "benders" if use_benders else "monolithic",
                  "sweep": None if sweep is None else {
                      "file": sweep.label, "sha256": sweep.sha256, "param_draws": param_draws,
                      "parameters": [p.name for p in sweep.params]},
                  "dataset_version": net.dataset.version})


def only_elements(econ: Economy, elements: list[str] | None) -> Economy:
    """The economy with purchases allowed only of `elements` (None: all of them)."""
    if elements is None:
        return econ
    unknown = [e for e in elements if e not in econ.elements]
    if unknown:
        raise PlanError(f"unknown element(s) {', '.join(unknown)}: choose from "
                        f"{', '.join(econ.elements)}")
    keep = np.isin(econ.elements, elements)
    return dataclasses.replace(econ, allowed=econ.allowed & keep[:, None])


def _check_plan_args(budget_usd, cvar_weight, cvar_alpha, paths, eval_paths, months,
                     method, seed) -> None:
    """The arguments every plan shares, checked before any path is simulated."""
    if int(seed) != seed or seed < 0:
        raise PlanError(f"seed must be a whole number >= 0, got {seed}")
    _check(budget_usd, "budget_usd", lo=0.0)
    _check(cvar_weight, "cvar_weight", lo=0.0, hi=1.0)
    if not (0.0 < cvar_alpha < 1.0):
        raise PlanError(f"cvar_alpha must lie strictly between 0 and 1, got {cvar_alpha}")
    for name, n in (("paths", paths), ("eval_paths", eval_paths), ("months", months)):
        if int(n) != n or n < 1:
            raise PlanError(f"{name} must be a whole number >= 1, got {n}")
    if method not in ("auto", "monolithic", "benders"):
        raise PlanError(f"method {method!r}: allowed auto, monolithic, benders")


def _check(x: float, name: str, lo: float | None = None, hi: float | None = None) -> None:
    if not isinstance(x, int | float) or not np.isfinite(x):
        raise PlanError(f"{name} must be a finite number, got {x!r}")
    if (lo is not None and x < lo) or (hi is not None and x > hi):
        rng = f">= {lo:g}" if hi is None else f"between {lo:g} and {hi:g}"
        raise PlanError(f"{name} must be {rng}, got {x}")
