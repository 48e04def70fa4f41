"""One budget across minerals: the multi-commodity stockpile plan (`oreflow stockpile plan
--commodities REE,Ga,Co,...`), Project Vault's question.

Each commodity is planned on its own paths: the rare earths on the planner's default mix
(`stockpile.DEFAULT_SCENARIOS`, element by element on the detailed network), every other
commodity on its own scenarios (`stockpile_scenarios.csv`: its recorded controls and a
hypothetical stop), run through the stress engine on its chain's base year. Each gets its
Economy (forms, prices, purchase caps, the value of what a shortage stops) and its Segments,
exactly as a single-commodity plan. Then ONE linear program holds every commodity's
first-stage purchases and second-stage releases (`stockpile.add_block`), its blocks
independent except for one budget row: purchase plus carrying cost over the tenor, summed
over commodities, within the budget. The budget row's dual is what one more dollar of budget
is worth; each commodity's last dollar (and next dollar) is measured by re-solving its block
alone with 1% less (more) money. Paths of different commodities come from different
scenarios and are not paired, so the expected loss adds up over commodities; a tail measure
of the whole basket needs a joint distribution, and the sum of the commodities' CVaRs used
here (in the objective with `cvar_weight`, and in the evaluation) is the CVaR of the total
when bad paths coincide (comonotone), an upper bound of it otherwise.

The flat rule: 60 days (`stockpile_parameters.rule_days`) of the perspective's base-year net
imports of every commodity and form, at base prices, scaled down pro rata over the whole
basket if it costs more than the budget (`rule_60_days`) or to exactly the plan's money
(`rule_equal_money`). Net imports of a chain are its chain network's base-year trade, the
same numbers the engine starts from.
"""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from oreflow.network import Network
from oreflow.stockpile import (
    DAYS_PER_YEAR,
    DEFAULT_SCENARIOS,
    HOLDING_MIN_T,
    MUSD,
    SHARED_BUDGET,
    Economy,
    PlanError,
    Segments,
    Solution,
    Terms,
    _check_plan_args,
    _parse_days,
    _resolve_element_names,
    add_block,
    chain_economy,
    cvar,
    economy,
    loss_without_releases,
    merge_identical,
    only_elements,
    parse_scenario_weights,
    resolve_plan_perspective,
    segment,
    simulate_unmet,
    solve,
    solve_model,
    total_cost_usd,
)

REE = "REE"
MARGINAL_STEP = 0.01
"""A commodity's last (next) dollar: the loss avoided by the last (next) 1% of its cost over
the tenor, per USD (re-solving its block alone with 1% less or more money)."""
MARGINAL_STEP_UNSPENT_USD = 1e6
"""The next-dollar step of a commodity the plan spends nothing on."""
STRATEGIES = ("plan", "rule_equal_money", "rule_60_days", "none")


# ---- which commodities, which scenarios ------------------------------------------------
def resolve_commodities(commodities, dataset) -> list[str]:
    """Commodity ids (chains.csv, any case or alias: 'graphite' -> graphite_natural) in the
    order given, without repeats; PlanError naming the allowed ones otherwise."""
    from oreflow.data.chain import UnknownChainError, resolve_chain_id

    items = commodities.split(",") if isinstance(commodities, str) else list(commodities)
    items = [str(c).strip() for c in items if str(c).strip()]
    if not items:
        raise PlanError("--commodities is empty; allowed (any case): "
                        f"{', '.join(dataset.chain_ids)}")
    out = []
    for c in items:
        try:
            cid = resolve_chain_id(c, dataset)
        except UnknownChainError as e:
            raise PlanError(f"unknown commodity {c!r} in --commodities; allowed (any case, or "
                            f"an alias such as graphite): {', '.join(e.allowed)}") from None
        if cid not in out:
            out.append(cid)
    return out


def planning_mix(dataset, commodity: str) -> dict[str, float]:
    """The default scenario mix of a commodity: the rare earths' DEFAULT_SCENARIOS, the
    others' rows of stockpile_scenarios.csv."""
    if commodity == REE:
        return dict(DEFAULT_SCENARIOS)
    t = dataset["stockpile_scenarios"]
    t = t[(t["commodity"] == commodity) & (t["weight"] > 0)]
    if t.empty:
        raise PlanError(f"no planning scenario for {commodity} in stockpile_scenarios.csv: "
                        "add rows there or give its scenarios with --scenarios")
    return dict(zip(t["scenario"], t["weight"].astype(float), strict=True))


def assign_scenarios(scenarios, commodities: list[str], net: Network
                     ) -> dict[str, dict[str, float]]:
    """Each commodity's mix: the scenarios of `scenarios` ('a:2,b' or {name: weight}) that
    are about it (a scenario's `commodity` field; several chains: each of them), else its
    default mix."""
    from oreflow.scenario import ScenarioError, load_scenario

    mixes = {c: None for c in commodities}
    if scenarios:
        given = (parse_scenario_weights(scenarios) if not isinstance(scenarios, dict)
                 else dict(scenarios))
        for name, w in given.items():
            try:
                sc, _ = load_scenario(name, net)
            except ScenarioError as e:
                raise PlanError(str(e)) from None
            about = [REE] if sc.is_ree else sc.commodities
            hit = [c for c in about if c in mixes]
            if not hit:
                raise PlanError(f"scenario {name!r} is about {', '.join(about)}, none of the "
                                f"commodities planned ({', '.join(commodities)})")
            for c in hit:
                mixes[c] = {**(mixes[c] or {}), name: float(w)}
    out = {}
    for c, mix in mixes.items():
        mix = mix if mix is not None else planning_mix(net.dataset, c)
        if sum(mix.values()) <= 0:
            raise PlanError(f"the scenario weights of {c} are all zero")
        out[c] = mix
    return out


def commodity_seeds(seed: int, commodity: str) -> tuple[int, int]:
    """Fitting and evaluation seeds of a commodity: the rare earths' are those of the
    single-commodity plan (same paths); another commodity's are derived from its id."""
    ss = (np.random.SeedSequence(seed) if commodity == REE else
          np.random.SeedSequence([seed, zlib.crc32(commodity.encode("utf-8"))]))
    a, b = (int(s.generate_state(1)[0]) for s in ss.spawn(2))
    return a, b


def _split_min_days(min_days, commodities: list[str], dataset):
    """None, days for everything, or {key: days} where a key is a chain id (any case or
    alias) or a rare-earth element: -> {commodity: None | days | {element: days}}."""
    from oreflow.data.chain import UnknownChainError, resolve_chain_id

    if min_days is None or isinstance(min_days, int | float):
        return dict.fromkeys(commodities, min_days)
    out: dict[str, object] = dict.fromkeys(commodities)
    ree: dict[str, float] = {}
    for key, d in dict(min_days).items():
        try:
            cid = resolve_chain_id(key, dataset)
        except UnknownChainError:
            cid = None
        if cid is not None and cid != REE:
            if cid not in commodities:
                raise PlanError(f"minimum days for {cid}, which is not planned")
            out[cid] = {cid: float(d)}
        else:
            ree[key] = float(d)
    if ree:
        if REE not in commodities:
            raise PlanError(f"minimum days for {', '.join(ree)}: not a planned commodity "
                            f"({', '.join(commodities)})")
        out[REE] = ree
    return out


# ---- the plan ---------------------------------------------------------------------------
@dataclass
class Part:
    """One commodity of the basket: its economy, paths, plan and scores."""

    commodity: str
    name: str
    basis: str
    mix: dict[str, float]
    econ: Economy
    seg_fit: Segments
    w_fit: np.ndarray
    days: np.ndarray
    sol: Solution | None = None
    cost_usd: float = 0.0
    rule_t: np.ndarray | None = None  # 60 days of net imports, unscaled
    losses: dict = field(default_factory=dict)  # strategy -> [P_test]
    w_test: np.ndarray | None = None
    price_response_usd: float | None = None
    marginal: dict = field(default_factory=dict)
    reliance: str | None = None

    @property
    def short(self) -> bool:
        return bool((self.seg_fit.unmet_t > 0).any())


@dataclass
class BasketPlan:
    """A plan across commodities under one budget, the flat rule and nothing, scored on
    fresh paths of each commodity."""

    budget_usd: float
    perspective: str
    parts: list[Part]
    budget_dual: float
    scale_equal: float
    scale_budget: float
    rule_days: float
    tenor_years: float
    settings: dict

    @property
    def commodities(self) -> list[str]:
        return [p.commodity for p in self.parts]

    @property
    def spent_usd(self) -> float:
        """What the listed holdings cost (`holdings`: dust below HOLDING_MIN_T left out)."""
        return float(sum(p.sol.purchase_usd[p.sol.holdings_t > HOLDING_MIN_T].sum()
                         for p in self.parts))

    @property
    def carry_usd_per_year(self) -> float:
        return float(sum(p.sol.carry_usd_per_year for p in self.parts))

    @property
    def cost_over_tenor_usd(self) -> float:
        return float(sum(p.cost_usd for p in self.parts))

    def holdings(self, min_t: float = HOLDING_MIN_T) -> pd.DataFrame:
        """One row per (commodity, element, form) held: tonnes of the commodity's basis
        (rare earths: REO-eq contained) and what they cost."""
        rows = []
        for p in self.parts:
            for i, e in enumerate(p.econ.elements):
                for j, f in enumerate(p.econ.forms):
                    t = float(p.sol.holdings_t[i, j])
                    if t > min_t:
                        rows.append({"commodity": p.commodity, "element": e, "form": f,
                                     "t": t, "usd": float(p.sol.purchase_usd[i, j])})
        return pd.DataFrame(rows, columns=["commodity", "element", "form", "t", "usd"])

    def spend(self) -> pd.DataFrame:
        """One row per commodity: purchases, carrying cost, cost over the tenor, share of
        the budget, the value at stake and the marginal value of its last and next dollar."""
        rows = []
        for p in self.parts:
            rows.append({
                "commodity": p.commodity, "purchase_usd": float(p.sol.purchase_usd.sum()),
                "carry_usd_per_year": float(p.sol.carry_usd_per_year),
                "cost_over_tenor_usd": p.cost_usd,
                "share_of_budget": p.cost_usd / self.budget_usd if self.budget_usd else 0.0,
                "last_dollar_usd_per_usd": p.marginal.get("last"),
                "next_dollar_usd_per_usd": p.marginal.get("next"),
            })
        return pd.DataFrame(rows)

    def evaluation(self) -> dict:
        exp = {k: round(float(sum(p.w_test @ p.losses[k] for p in self.parts)), 2)
               for k in STRATEGIES}
        tail = {k: round(float(sum(cvar(p.losses[k], p.w_test, 0.95) for p in self.parts)), 2)
                for k in STRATEGIES}
        by = {p.commodity: {
            "paths": int(len(p.w_test)),
            "expected_unserved_usd": {k: round(float(p.w_test @ p.losses[k]), 2)
                                      for k in STRATEGIES},
            "cvar95_unserved_usd": {k: round(cvar(p.losses[k], p.w_test, 0.95), 2)
                                    for k in STRATEGIES},
            "price_response_loss_usd": (None if p.price_response_usd is None
                                        else round(p.price_response_usd, 2)),
        } for p in self.parts}
        imports = sum(float(p.rule_t.sum()) for p in self.parts)
        return {
            "paths": {p.commodity: int(len(p.w_test)) for p in self.parts},
            "expected_unserved_usd": exp,
            "cvar95_unserved_usd": tail,
            "cvar95_note": "sum of the commodities' CVaR95 (their paths are not paired): the "
                           "basket's tail if bad paths coincide, an upper bound otherwise",
            "rule_equal_money_days": round(self.rule_days * self.scale_equal, 2)
            if imports > 0 else None,
            "rule_60_days_scale": round(self.scale_budget, 6),
            "by_commodity": by,
            "valuation": "physical shortage at the Leontief value added of the products it "
                         "stops (the scarcest input binds); demand given up because of price "
                         "is not served by a stockpile and is reported apart",
            "price_response_loss_usd": round(float(sum(
                p.price_response_usd or 0.0 for p in self.parts)), 2),
        }

    def to_dict(self) -> dict:
        """The JSON object of `oreflow stockpile plan --commodities ... --format json`."""
        h = self.holdings()
        sp = self.spend()
        return {
            "budget_usd": self.budget_usd,
            "spent_usd": round(self.spent_usd, 2),
            "carry_usd_per_year": round(self.carry_usd_per_year, 2),
            "cost_over_tenor_usd": round(self.cost_over_tenor_usd, 2),
            "perspective": self.perspective,
            "commodities": self.commodities,
            "holdings": [{**r, "t": round(r["t"], 3), "usd": round(r["usd"], 2)}
                         for r in h.to_dict(orient="records")],
            "spend_by_commodity": {
                r["commodity"]: {
                    "purchase_usd": round(r["purchase_usd"], 2),
                    "carry_usd_per_year": round(r["carry_usd_per_year"], 2),
                    "cost_over_tenor_usd": round(r["cost_over_tenor_usd"], 2),
                    "share_of_budget": round(r["share_of_budget"], 6)}
                for r in sp.to_dict(orient="records")},
            "marginal_value_per_usd": {
                p.commodity: {k: (None if p.marginal.get(k) is None
                                  else round(p.marginal[k], 6)) for k in ("last", "next")}
                for p in self.parts},
            "budget_shadow_price_usd_per_usd": round(self.budget_dual, 6),
            "marginal_value_note": (
                "expected loss avoided (the in-sample objective) per USD of budget. last: by "
                "the last 1% of the commodity's cost over the tenor (its block re-solved "
                "alone with 1% less money); next: by 1% more (1 M USD where nothing is "
                "spent). budget_shadow_price_usd_per_usd: the dual of the shared budget row "
                "(0 when the budget does not bind). At the optimum every commodity bought "
                "has last >= shadow price >= next"),
            "days_of_cover": {p.commodity: _cover(p) for p in self.parts},
            "commodity_info": {p.commodity: {
                "name": p.name, "basis": p.basis,
                "forms": [f for f, ok in zip(p.econ.forms, p.econ.allowed.any(0),
                                             strict=True) if f and ok],
                "scenarios": p.mix,
                "net_imports_t_per_year": {
                    f: round(float(p.econ.net_imports_t_per_year[:, j].sum()), 3)
                    for j, f in enumerate(p.econ.forms) if f},
                "net_imports_basis": ("the detailed network's base-year trade"
                                      if p.commodity == REE else
                                      "the chain network's base-year trade (chains.py)"),
                "usgs_net_import_reliance_pct": p.reliance,
                "short_in_sample": p.short,
            } for p in self.parts},
            "evaluation": self.evaluation(),
            "settings": self.settings,
        }


def _cover(p: Part) -> dict:
    use = p.econ.use_t_per_year / DAYS_PER_YEAR
    held = p.sol.holdings_t.sum(1)
    return {e: round(float(h / u), 2) for e, h, u in
            zip(p.econ.elements, held, use, strict=True) if u > 0}


def plan_basket(budget_usd: float = 12e9, commodities=("REE",), perspective: str = "USA",
                scenarios=None, paths: int = 2000, eval_paths: int = 2000, seed: int = 0,
                months: int = 60, cvar_weight: float = 0.0, cvar_alpha: float = 0.95,
                min_days=None, elements: list[str] | None = None,
                network: Network | None = None, terms: Terms | None = None,
                method: str = "auto") -> BasketPlan:
    """Plan one stockpile across `commodities` (ids of chains.csv, any case or alias) with
    one budget, and score it, the flat rule and nothing on fresh paths of each commodity."""
    _check_plan_args(budget_usd, cvar_weight, cvar_alpha, paths, eval_paths, months, method,
                     seed)
    if method == "benders":
        raise PlanError("--method benders decomposes one commodity's plan; with --commodities "
                        "the plan is one LP across commodities (auto or monolithic)")
    started = time.perf_counter()
    net = network if network is not None else Network.from_dataset()
    ds = net.dataset
    named = resolve_plan_perspective(net, perspective)
    perspective = named.regions[0]
    ids = resolve_commodities(commodities, ds)
    if elements is not None and REE not in ids:
        raise PlanError("--elements picks rare earths; REE is not among the commodities")
    elements, _ = _resolve_element_names(net, elements, None) if elements is not None \
        else (None, None)
    mixes = assign_scenarios(scenarios, ids, net)
    days_by = _split_min_days(min_days, ids, ds)
    terms = terms or Terms.from_dataset(ds)
    parts: list[Part] = []
    tests = {}
    for c in ids:
        seed_fit, seed_eval = commodity_seeds(seed, c)
        chain = None if c == REE else c
        fit = simulate_unmet(mixes[c], paths, seed_fit, months, perspective, net,
                             commodity=chain)
        if c == REE:
            econ = only_elements(economy(net, perspective, terms, fit.base), elements)
            dmin = days_by[c]
            if isinstance(dmin, dict):
                _, dmin = _resolve_element_names(net, None, dmin)
        else:
            econ = chain_economy(ds, c, perspective, terms, fit.base)
            dmin = days_by[c]
        days = _parse_days(dmin, econ.elements)
        seg_fit, w_fit = merge_identical(segment(fit, econ), fit.weight)
        info = ds.chain(c)
        rel = _reliance(info) if perspective == "USA" else None
        parts.append(Part(c, info.name, info.basis, mixes[c], econ, seg_fit, w_fit, days,
                          reliance=rel))
        tests[c] = (seed_eval, chain)
    simulated = time.perf_counter()
    dual = _solve_joint(parts, terms, budget_usd, cvar_weight, cvar_alpha)
    for p in parts:
        p.cost_usd = total_cost_usd(p.sol.holdings_t, p.sol.purchase_usd, p.econ, terms)
    _marginals(parts, terms, cvar_weight, cvar_alpha)
    solved = time.perf_counter()

    # the flat rule over the basket, and the scores on fresh paths
    for p in parts:
        p.rule_t = terms.rule_days / DAYS_PER_YEAR * p.econ.net_imports_t_per_year
    rule_cost = sum(total_cost_usd(p.rule_t, p.rule_t * p.econ.price_usd_per_t, p.econ, terms)
                    for p in parts)
    plan_cost = sum(p.cost_usd for p in parts)
    scale_budget = min(1.0, budget_usd / rule_cost) if rule_cost > 0 else 1.0
    scale_equal = plan_cost / rule_cost if rule_cost > 0 else 0.0
    for p in parts:
        seed_eval, chain = tests[p.commodity]
        test = simulate_unmet(p.mix, eval_paths, seed_eval, months, perspective, net,
                              commodity=chain)
        seg, w = merge_identical(segment(test, p.econ), test.weight)
        p.w_test = w
        p.losses = {
            "plan": solve(seg, p.econ, terms, w, holdings_t=p.sol.holdings_t).unserved_usd,
            "rule_60_days": solve(seg, p.econ, terms, w,
                                  holdings_t=p.rule_t * scale_budget).unserved_usd,
            "rule_equal_money": solve(seg, p.econ, terms, w,
                                      holdings_t=p.rule_t * scale_equal).unserved_usd,
            "none": loss_without_releases(seg, p.econ)}
        if test.price_response_usd is not None:
            p.price_response_usd = float(test.weight @ test.price_response_usd)
    scored = time.perf_counter()
    return BasketPlan(
        budget_usd=float(budget_usd), perspective=perspective, parts=parts,
        budget_dual=dual, scale_equal=scale_equal, scale_budget=scale_budget,
        rule_days=terms.rule_days, tenor_years=terms.tenor_years,
        settings={"commodities": ids, "scenarios": {p.commodity: p.mix for p in parts},
                  "paths": int(paths), "eval_paths": int(eval_paths), "seed": int(seed),
                  "months": int(months), "tenor_years": terms.tenor_years,
                  "cvar_weight": cvar_weight, "cvar_alpha": cvar_alpha,
                  "min_days": {p.commodity: {e: float(d) for e, d in
                                             zip(p.econ.elements, p.days, strict=True) if d > 0}
                               for p in parts if (p.days > 0).any()},
                  "perspective_as_given": named.code, "perspective_note": named.note,
                  "method": "monolithic (one LP across commodities)",
                  "seconds": {"simulate_and_build": round(simulated - started, 2),
                              "optimise_and_marginals": round(solved - simulated, 2),
                              "score": round(scored - solved, 2)},
                  "dataset_version": ds.version})


def _reliance(chain) -> str | None:
    """USGS's latest US net import reliance for the chain, as USGS prints it ('>50')."""
    s = chain._salient
    s = s[s["statistic"] == "Net import reliance"]
    if s.empty:
        return None
    r = chain.us_net_import_reliance(int(s["year"].max()))
    return None if r is None else r.text


def _block_needed(p: Part) -> bool:
    return p.short or bool((p.days > 0).any())


def _solve_joint(parts: list[Part], terms: Terms, budget_usd: float, cvar_weight: float,
                 cvar_alpha: float) -> float:
    """One LP: every commodity's block, one budget row over their costs. Sets each part's
    solution; returns the budget row's dual (USD of objective per USD of budget, >= 0)."""
    import linopy

    live = [p for p in parts if _block_needed(p)]
    for p in parts:
        if p not in live:  # never short, no minimum: nothing to buy, nothing lost
            E = len(p.econ.elements)
            P = len(p.w_fit)
            p.sol = Solution(np.zeros((E, 3)), np.zeros((E, 3)), 0.0, np.zeros(P), 0.0, {})
    if not live:
        return 0.0
    m = linopy.Model()
    blocks = [add_block(m, p.seg_fit, p.econ, terms, p.w_fit, budget_usd=SHARED_BUDGET,
                        cvar_weight=cvar_weight, cvar_alpha=cvar_alpha, min_days=p.days,
                        prefix=f"{p.commodity}:") for p in live]
    total = blocks[0].total_cost
    objective = blocks[0].objective
    for b in blocks[1:]:
        total = total + b.total_cost
        objective = objective + b.objective
    m.add_constraints(total <= budget_usd / MUSD, name="budget")
    m.add_objective(objective)
    solve_model(m, any((p.days > 0).any() for p in live))
    for p, b in zip(live, blocks, strict=True):
        p.sol = b.solution()
    dual = m.constraints["budget"].dual  # MUSD of objective per MUSD of budget, <= 0
    return abs(float(np.nan_to_num(np.asarray(dual))))


def _objective_at(p: Part, terms: Terms, budget: float, cvar_weight: float,
                  cvar_alpha: float) -> float:
    """The commodity's in-sample objective (USD) with `budget` for it alone."""
    sol = solve(p.seg_fit, p.econ, terms, p.w_fit, budget_usd=max(budget, 0.0),
                cvar_weight=cvar_weight, cvar_alpha=cvar_alpha,
                min_days=p.days if (p.days > 0).any() else None)
    return sol.objective


def _marginals(parts: list[Part], terms: Terms, cvar_weight: float, cvar_alpha: float) -> None:
    """Each commodity's last and next dollar (MARGINAL_STEP of its cost), by re-solving its
    block alone. A commodity never short has none: its dollars avoid nothing (0)."""
    for p in parts:
        if not _block_needed(p):
            p.marginal = {"last": None, "next": 0.0}
            continue
        at = p.sol.objective
        if p.cost_usd > 0:
            step = MARGINAL_STEP * p.cost_usd
            try:
                less = _objective_at(p, terms, p.cost_usd - step, cvar_weight, cvar_alpha)
                last = max(0.0, (less - at) / step)
            except PlanError:  # minimum days cannot be met with less money
                last = None
        else:
            step, last = MARGINAL_STEP_UNSPENT_USD, None
        more = _objective_at(p, terms, p.cost_usd + step, cvar_weight, cvar_alpha)
        p.marginal = {"last": last, "next": max(0.0, (at - more) / step)}
