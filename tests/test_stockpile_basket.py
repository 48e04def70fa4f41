"""One budget across commodities (`stockpile_basket`): the toy chain by hand, the rare earths
alone equal the single-commodity plan, the budget, a commodity never short, marginal values,
bad input, the chain data the planner reads, charts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from oreflow.cli import app
from oreflow.network import Network
from oreflow.scenario import builtin_names, load_scenario
from oreflow.stockpile import PlanError, plan_stockpile, scenario_for_commodity
from oreflow.stockpile_basket import (
    STRATEGIES,
    commodity_seeds,
    plan_basket,
    resolve_commodities,
)
from oreflow.stockpile_report import plan_figures, render_plan_report

TOY_HALT = str(Path(__file__).parent / "fixtures" / "toy_chain" / "toy-halt-12m.yaml")
# the toy's terms, by hand (stockpile_parameters.csv, fixtures/toy_chain): base price 100 USD/kg;
# the first of 4 price blocks costs 1.125 x that; the loan (4.5% over 15 years) adds 67.5% of
# the purchase; storage 100 USD/t-yr, insurance 0.2% and rotation 5%/50 years of the price
BLOCK0 = 1e5 * 1.125
CARRY = 100 + (0.002 + 0.05 / 50) * 1e5  # USD per t a year
COST_PER_T = BLOCK0 * (1 + 0.045 * 15) + 15 * CARRY  # 194,437.5 USD per t, first block
WIDGETS, GADGETS = 5e5, 1e5  # value added lost per t (1000 x 0.5 and 200 x 0.5 USD per kg)


@pytest.fixture(scope="module")
def toy_net(toy_dataset):
    return Network.from_dataset(toy_dataset)


def _toy(toy_net, budget, **kw):
    args = dict(commodities=["TOY"], perspective="USA", scenarios={TOY_HALT: 1.0}, paths=6,
                eval_paths=4, seed=1, months=24, network=toy_net)
    return plan_basket(budget, **{**args, **kw})


def test_toy_economy_by_hand(toy_net):
    plan = _toy(toy_net, 1e9)
    (part,) = plan.parts
    e = part.econ
    assert e.forms[0] == "refined" and e.allowed.tolist() == [[True, False, False]]
    assert e.price_usd_per_t[0, 0] == pytest.approx(1e5)  # ROW price, USD per t
    assert e.value_usd_per_t[:, 0] == pytest.approx([WIDGETS, GADGETS])
    # the US makes 10 t and imports 10 t of its 20 t (the chain network's trade)
    assert e.net_imports_t_per_year[0, 0] == pytest.approx(10.0)
    assert e.use_t_per_year[0] == pytest.approx(20.0)
    # outside China the world uses 50 t a year: caps of 10% a month over 24 months = 10 t
    assert e.market_t_per_month[0, 0] * 0.1 * 24 == pytest.approx(10.0)
    assert e.carry_usd_per_t_year[0, 0] == pytest.approx(CARRY)


def test_toy_plan_by_hand_covers_the_path_when_money_is_ample(toy_net):
    """The halt is deterministic: every path is short of the same tonnes. With money to
    spare the plan holds exactly what covers the path (the budget is a limit, not a price:
    the tie-break keeps it from buying more), from the cheapest price block."""
    plan = _toy(toy_net, 1e9)
    (p,) = plan.parts
    unmet = p.seg_fit.unmet_t.sum(3)[0, 0]  # [G] t over the horizon on the one path
    assert len(p.w_fit) == 1 and unmet[0] > 0 and unmet[1] > 0
    assert unmet.sum() < 2.5  # within the first price block
    assert p.sol.holdings_t[0, 0] == pytest.approx(unmet.sum(), rel=1e-6)
    assert p.sol.purchase_usd.sum() == pytest.approx(unmet.sum() * BLOCK0, rel=1e-6)
    assert p.sol.unserved_usd[0] == pytest.approx(0.0, abs=1e-3)
    assert p.cost_usd == pytest.approx(unmet.sum() * COST_PER_T, rel=1e-6)
    assert plan.budget_dual == pytest.approx(0.0, abs=1e-9)  # the budget does not bind
    d = plan.to_dict()
    assert d["holdings"] == [{"commodity": "TOY", "element": "TOY", "form": "refined",
                              "t": round(unmet.sum(), 3), "usd": round(unmet.sum() * BLOCK0, 2)}]
    assert d["days_of_cover"]["TOY"]["TOY"] == pytest.approx(unmet.sum() / 20 * 365, abs=0.01)
    # the rule: 60 days of the 10 t of net imports
    assert p.rule_t[0, 0] == pytest.approx(10 * 60 / 365)


def test_toy_binding_budget_by_hand(toy_net):
    """20,000 USD buys 20,000 / 194,437.5 t; each dollar avoids 500,000 / 194,437.5 USD of
    lost widgets: the budget's shadow price and the commodity's last and next dollar."""
    plan = _toy(toy_net, 2e4)
    (p,) = plan.parts
    assert p.sol.holdings_t[0, 0] == pytest.approx(2e4 / COST_PER_T, rel=1e-6)
    assert plan.cost_over_tenor_usd == pytest.approx(2e4, rel=1e-6)
    per_usd = WIDGETS / COST_PER_T
    assert p.marginal["last"] == pytest.approx(per_usd, rel=1e-4)
    assert p.marginal["next"] == pytest.approx(per_usd, rel=1e-4)
    # the dual also carries the LP's tie-break (1e-3 of objective per USD of purchases)
    assert plan.budget_dual == pytest.approx(per_usd, rel=1e-3)
    assert plan.to_dict()["spent_usd"] <= plan.budget_usd
    unmet = p.seg_fit.unmet_t.sum(3)[0, 0]
    assert p.sol.unserved_usd[0] == pytest.approx(
        WIDGETS * (unmet[0] - 2e4 / COST_PER_T) + GADGETS * unmet[1], rel=1e-6)
    # money for the widgets' shortage and a little more: the next tonne goes to gadgets,
    # whose dollars avoid 100,000 / 194,437.5 USD each
    budget = (unmet[0] + unmet[1] / 2) * COST_PER_T
    plan = _toy(toy_net, budget)
    assert plan.parts[0].marginal["next"] == pytest.approx(GADGETS / COST_PER_T, rel=1e-4)
    assert plan.budget_dual == pytest.approx(GADGETS / COST_PER_T, rel=1e-2)


def test_commodity_never_short_gets_nothing(toy_net):
    """Lithium's hypothetical halt leaves the United States no physical shortage (it buys
    its chemicals from Chile and Argentina in the chain network): nothing bought for it,
    its next dollar avoids nothing, and the toy's plan is the toy's plan alone."""
    both = _toy(toy_net, 1e9, commodities=["TOY", "Li"],
                scenarios={TOY_HALT: 1.0, "lithium-halt-12m": 1.0})
    li = next(p for p in both.parts if p.commodity == "Li")
    assert not li.short
    assert li.sol.holdings_t.sum() == 0 and li.cost_usd == 0
    assert li.marginal == {"last": None, "next": 0.0}
    assert all(float(li.losses[k].max()) == 0.0 for k in STRATEGIES)
    alone = _toy(toy_net, 1e9)
    toy = next(p for p in both.parts if p.commodity == "TOY")
    assert toy.sol.holdings_t == pytest.approx(alone.parts[0].sol.holdings_t, rel=1e-9)
    assert {r["commodity"] for r in both.to_dict()["holdings"]} == {"TOY"}


def test_toy_without_a_planning_scenario_is_refused(toy_net):
    with pytest.raises(PlanError, match="no planning scenario for TOY in stockpile_scenarios"):
        plan_basket(1e6, commodities=["TOY"], network=toy_net, paths=2, eval_paths=2)


@pytest.fixture(scope="module")
def ree_both(network):
    kw = dict(budget_usd=3e8, perspective="USA", paths=40, eval_paths=20, seed=5, months=24,
              network=network)
    return plan_stockpile(**kw), plan_basket(commodities=["ree"], **kw)


def test_rare_earths_alone_equal_the_single_commodity_plan(ree_both):
    single, basket = ree_both
    (p,) = basket.parts
    assert basket.commodities == ["REE"]
    assert p.sol.objective == pytest.approx(single.in_sample_expected_unserved_usd, rel=1e-6)
    assert basket.spent_usd == pytest.approx(single.spent_usd, rel=1e-6)
    assert p.sol.holdings_t == pytest.approx(single.holdings_t, rel=1e-5, abs=1e-6)
    ev = basket.to_dict()["evaluation"]
    for k in STRATEGIES:
        assert ev["expected_unserved_usd"][k] == pytest.approx(
            single.evaluation["expected_unserved_usd"][k], rel=1e-6, abs=1.0)
    # same paths: the rare earths keep the single plan's seeds
    assert commodity_seeds(5, "REE") == tuple(
        int(s.generate_state(1)[0]) for s in np.random.SeedSequence(5).spawn(2))


def test_binding_budget_marginals_bracket_the_shadow_price(network):
    """Every commodity bought: its last dollar avoids at least the budget's shadow price and
    its next dollar at most (the allocation is optimal); spend within the budget."""
    plan = plan_basket(2e8, commodities=["REE", "Co", "graphite"], perspective="USA", paths=30,
                       eval_paths=10, seed=2, months=24, network=network)
    lam = plan.budget_dual
    assert lam > 0
    assert plan.cost_over_tenor_usd <= plan.budget_usd * (1 + 1e-6)
    assert plan.spent_usd <= plan.budget_usd
    for p in plan.parts:
        nxt = p.marginal["next"]
        assert nxt <= lam * (1 + 1e-2) + 1e-6, (p.commodity, nxt, lam)
        if p.cost_usd > 0:
            assert p.marginal["last"] >= lam * (1 - 1e-2) - 1e-6, (p.commodity, p.marginal)
    d = plan.to_dict()
    assert set(d["spend_by_commodity"]) == {"REE", "Co", "graphite_natural"}
    assert sum(s["cost_over_tenor_usd"] for s in d["spend_by_commodity"].values()) == \
        pytest.approx(d["cost_over_tenor_usd"], rel=1e-9)
    assert sum(h["usd"] for h in d["holdings"]) == pytest.approx(d["spent_usd"], rel=1e-6)
    ev = d["evaluation"]
    by = ev["by_commodity"]
    for k in STRATEGIES:
        assert ev["expected_unserved_usd"][k] == pytest.approx(
            sum(v["expected_unserved_usd"][k] for v in by.values()), rel=1e-9, abs=0.1)
    # holding nothing loses the most; the rule at the plan's money costs what the plan costs
    assert ev["expected_unserved_usd"]["none"] >= ev["expected_unserved_usd"]["plan"]
    rule = sum(p.rule_t.sum() for p in plan.parts)
    assert rule > 0 and plan.scale_equal > 0


def test_resolve_commodities_and_errors(dataset):
    assert resolve_commodities("ree, ga,graphite,GA", dataset) == ["REE", "Ga",
                                                                   "graphite_natural"]
    with pytest.raises(PlanError) as e:
        resolve_commodities("REE,unobtainium", dataset)
    msg = str(e.value)
    assert "unknown commodity 'unobtainium'" in msg
    for c in ("REE", "Ga", "Ge", "Sb", "W", "graphite_natural", "Co", "Li", "Ni"):
        assert c in msg


def test_scenario_for_one_commodity_of_several(network):
    sc, _ = load_scenario("us-ban-2024-12", network)
    ga = scenario_for_commodity(sc, "Ga")
    assert ga.commodities == ["Ga"]
    assert [s.elements for s in ga.shocks] == [["Ga"], ["Ga"]]  # the Sb licence is dropped
    with pytest.raises(PlanError, match="not W"):
        scenario_for_commodity(sc, "W")


def test_planning_data_cover_every_chain(dataset):
    """Every sector of every chain has a value of lost output, every traded stage a
    holding row, every planning scenario is built in and about its commodity."""
    from oreflow.stockpile import chain_forms

    sv = dataset["chain_sector_value"]
    forms = dataset["stockpile_chain_forms"]
    for c in dataset.chain_ids:
        if c == "REE":
            continue
        sectors = {e.sector for e in dataset.chain(c).end_uses}
        have = set(sv.loc[sv["chain"] == c, "sector"])
        assert sectors <= have, (c, sectors - have)
        for stage in filter(None, chain_forms(dataset, c)):
            assert ((forms["chain"] == c) & (forms["stage"] == stage)).any(), (c, stage)
    names = set(builtin_names())
    for c, s in zip(dataset["stockpile_scenarios"]["commodity"],
                    dataset["stockpile_scenarios"]["scenario"], strict=True):
        assert s in names
        sc, _ = load_scenario(s, Network.from_dataset(dataset))
        assert c in sc.commodities, (c, s)
    assert (sv["status"] != "").all() and (sv["source_id"] != "").all()


def test_cli_json_and_report(tmp_path):
    out = tmp_path / "plan.html"
    r = CliRunner().invoke(app, ["stockpile", "plan", "--budget-usd", "2e9", "--commodities",
                                 "Co", "--paths", "12", "--eval-paths", "6", "--months", "24",
                                 "--format", "json", "--report", str(out)])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    for k in ("budget_usd", "spent_usd", "holdings", "spend_by_commodity",
              "marginal_value_per_usd", "budget_shadow_price_usd_per_usd", "evaluation"):
        assert k in d
    assert d["spent_usd"] <= d["budget_usd"]
    assert {h["commodity"] for h in d["holdings"]} == {"Co"}
    assert all({"commodity", "element", "form", "t", "usd"} <= set(h) for h in d["holdings"])
    assert set(d["evaluation"]["expected_unserved_usd"]) == {"plan", "rule_60_days",
                                                              "rule_equal_money", "none"}
    html = out.read_text()
    for chart in ("chart-holdings", "chart-spend", "chart-marginal", "chart-loss"):
        assert f'id="{chart}"' in html


def test_cli_unknown_commodity():
    r = CliRunner().invoke(app, ["stockpile", "plan", "--commodities", "REE,Vibranium"])
    assert r.exit_code == 2
    assert "unknown commodity 'Vibranium'" in r.output and "graphite_natural" in r.output


def test_charts_of_single_and_basket_plans(ree_both):
    single, basket = ree_both
    one = plan_figures(single.to_dict())
    assert set(one) == {"holdings", "spend", "loss"}
    many = plan_figures(basket.to_dict())
    assert set(many) == {"holdings", "spend", "marginal", "loss", "loss_by_commodity"}
    loss = many["loss"]["data"]
    assert [t["name"] for t in loss] == ["expected", "worst 5% (CVaR95)"]
    assert len(loss[0]["x"]) == 4  # plan, rule at the same money, rule, nothing
    held = sum(sum(t["customdata"][i][0] for i in range(len(t["x"])))
               for t in many["holdings"]["data"])
    assert held == pytest.approx(basket.spent_usd, rel=1e-6)
    html = render_plan_report(basket.to_dict())
    assert "Plotly" in html and 'id="chart-spend"' in html


def test_scenarios_go_to_the_commodities_they_are_about(network):
    from oreflow.stockpile_basket import assign_scenarios

    mixes = assign_scenarios("licensing-2025-04:2,gallium-germanium-halt-12m",
                             ["REE", "Ga", "Co"], network)
    assert mixes["REE"] == {"licensing-2025-04": 2.0}
    assert mixes["Ga"] == {"gallium-germanium-halt-12m": 1.0}
    assert mixes["Co"] == {"cobalt-drc-2025-02": 1.0}  # its default (stockpile_scenarios.csv)
    with pytest.raises(PlanError, match="none of the commodities planned"):
        assign_scenarios("tungsten-2025-02", ["REE", "Ga"], network)
