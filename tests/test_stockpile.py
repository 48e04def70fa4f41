"""The stockpile planner: a hand-solved case, the aggregation against the monthly LP,
budget properties, out-of-sample ordering on the default data, and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from oreflow.cli import app
from oreflow.network import Network
from oreflow.stockpile import (
    Economy,
    PlanError,
    Terms,
    UnmetPaths,
    cvar,
    economy,
    merge_identical,
    plan_stockpile,
    segment,
    simulate_unmet,
    solve,
    total_cost_usd,
)

INF = np.inf


def _hand_terms() -> Terms:
    """No interest, storage or price slope: the budget buys at list price."""
    z = np.zeros(3)
    return Terms(loan_rate_per_year=0.0, tenor_years=1.0, insurance_rate_per_year=0.0,
                 rotation_cost_share=0.0, purchase_window_months=1.0,
                 max_buy_share_per_month=1.0, purchase_price_slope=0.0, price_blocks=1,
                 conversion_capacity_share=1.0, rule_days=60.0, processing_usd_per_t=z,
                 storage_usd_per_t_year=z, shelf_life_years=np.ones(3), lead_months=z)


def _hand_economy() -> Economy:
    """One element, one magnet user valuing a missing tonne at 1,000 USD. Magnets cost
    300 USD/t and serve at once; oxide costs 100 USD/t, yields 0.5 t of magnet and serves
    only from month 6 after the disruption starts (no metal form)."""
    return Economy(
        perspective="X", elements=["Nd"], group_form=np.array([2]),
        group_sector=np.array([0]), value_usd_per_t=np.array([[1000.0]]),
        use_t_per_year=np.array([365.0]), net_imports_t_per_year=np.array([[0.0, 0.0, 365.0]]),
        price_usd_per_t=np.array([[100.0, 150.0, 300.0]]),
        market_t_per_month=np.full((1, 3), 1e6),
        conversion_cap_t_per_month=np.array([0.0, 1e6, 1e6]),
        yields=np.array([[1.0, 1.0, 0.5], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]]),
        conversion_lead_months=np.array([[0.0, 3.0, 6.0], [INF, 0.0, 3.0], [INF, INF, 0.0]]),
        carry_usd_per_t_year=np.zeros((1, 3)), allowed=np.array([[True, False, True]]))


def _hand_paths() -> UnmetPaths:
    """One path, 12 months: 10 t short in months 0-5 and 10 t in months 6-11."""
    unmet = np.full((1, 12, 1, 1), 10.0 / 6.0)
    return UnmetPaths(unmet, np.ones(1), np.array(["hand"]), base=None)


@pytest.mark.parametrize("monthly", [False, True])
def test_hand_case(monthly):
    # 4,000 USD: the late 10 t are cheapest from oxide (2 t oxide per t, 200 USD per t
    # served) = 2,000 USD; the rest buys 2,000 / 300 = 6.67 t of magnets for the early
    # months, leaving 3.33 t = 3,333 USD unserved
    econ, terms, paths = _hand_economy(), _hand_terms(), _hand_paths()
    seg = segment(paths, econ, monthly=monthly)
    sol = solve(seg, econ, terms, paths.weight, budget_usd=4000.0)
    assert sol.holdings_t[0, 0] == pytest.approx(20.0, rel=1e-6)
    assert sol.holdings_t[0, 2] == pytest.approx(2000.0 / 300.0, rel=1e-6)
    assert sol.unserved_usd[0] == pytest.approx(10_000.0 / 3.0, rel=1e-6)
    # 5,000 USD covers everything; 1 MUSD buys nothing more than that
    for budget in (5000.0, 1e6):
        sol = solve(seg, econ, terms, paths.weight, budget_usd=budget)
        assert sol.unserved_usd[0] == pytest.approx(0.0, abs=1e-3)
        assert sol.purchase_usd.sum() == pytest.approx(5000.0, rel=1e-6)


def test_hand_case_conversion_capacity_binds():
    # tolling 1 t of magnet per month for the 9 months after the magnet stage's 3-month lead:
    # oxide can serve 9 t of the late 10 t, magnets the rest
    econ = _hand_economy()
    from dataclasses import replace

    econ = replace(econ, conversion_cap_t_per_month=np.array([0.0, 1.0, 1.0]))
    paths = _hand_paths()
    sol = solve(segment(paths, econ), econ, _hand_terms(), paths.weight, budget_usd=1e6)
    assert sol.holdings_t[0, 0] == pytest.approx(18.0, rel=1e-6)  # 9 t served / 0.5 yield
    assert sol.holdings_t[0, 2] == pytest.approx(11.0, rel=1e-6)  # 10 early + 1 late
    assert sol.unserved_usd[0] == pytest.approx(0.0, abs=1e-3)


def test_leontief_loss_by_hand():
    """A magnet user needs 10 t of Nd per t of Dy; its product is worth 1,000 USD of value
    added per t of rare earths in it (11 t: v_Nd = 1,100, v_Dy = 11,000 USD per t). Short of
    10 t Nd and 1 t Dy, it loses 11,000 USD once (not 22,000: one product, two inputs).
    Nd alone or Dy alone makes nothing: 1,000 USD buys both in proportion (magnets at 100 and
    200 USD per t: 8.33 t Nd and 0.833 t Dy), leaving 1,100 x 1.667 = 1,833 USD lost."""
    from dataclasses import replace

    from oreflow.stockpile import loss_without_releases

    econ = replace(_hand_economy(), elements=["Nd", "Dy"],
                   value_usd_per_t=np.array([[1100.0, 11000.0]]),
                   use_t_per_year=np.array([365.0, 36.5]),
                   net_imports_t_per_year=np.array([[0, 0, 365.0], [0, 0, 36.5]]),
                   price_usd_per_t=np.array([[100.0, 150.0, 100.0], [100.0, 150.0, 200.0]]),
                   market_t_per_month=np.full((2, 3), 1e6), carry_usd_per_t_year=np.zeros((2, 3)),
                   allowed=np.array([[False, False, True], [False, False, True]]))
    unmet = np.zeros((1, 12, 1, 2))
    unmet[0, 0, 0] = [10.0, 1.0]
    paths = UnmetPaths(unmet, np.ones(1), np.array(["hand"]), base=None)
    seg = segment(paths, econ)
    assert loss_without_releases(seg, econ)[0] == pytest.approx(11_000.0)
    sol = solve(seg, econ, _hand_terms(), paths.weight, budget_usd=1000.0)
    assert sol.holdings_t[:, 2] == pytest.approx([25 / 3, 5 / 6], rel=1e-6)
    assert sol.unserved_usd[0] == pytest.approx(1100.0 * 5 / 3, rel=1e-6)
    # holding Nd alone serves nothing
    alone = solve(seg, econ, _hand_terms(), paths.weight, holdings_t=np.array([[0, 0, 10.0],
                                                                                [0, 0, 0.0]]))
    assert alone.unserved_usd[0] == pytest.approx(11_000.0, rel=1e-6)


def test_cvar_by_hand():
    loss = np.array([30.0, 0.0, 20.0, 10.0])
    assert cvar(loss, np.ones(4) / 4, 0.5) == pytest.approx(25.0)
    assert cvar(loss, np.ones(4) / 4, 0.75) == pytest.approx(30.0)
    # weights count: the 30 carries half of the probability
    assert cvar(loss, np.array([0.5, 0.5 / 3, 0.5 / 3, 0.5 / 3]), 0.5) == pytest.approx(30.0)


def test_cvar_objective_prefers_the_bad_path():
    # two equally likely paths short of 10 t and 30 t; 1,500 USD buys 15 t of magnets.
    # Expected value is indifferent; CVaR at 0.5 is the loss on the bad path, which the
    # stockpile covers fully in both cases: the objective equals the hand-computed CVaR
    econ, terms = _hand_economy(), _hand_terms()
    unmet = np.zeros((2, 12, 1, 1))
    unmet[0, 0], unmet[1, 0] = 10.0, 30.0
    paths = UnmetPaths(unmet, np.array([0.5, 0.5]), np.array(["a", "b"]), base=None)
    seg = segment(paths, econ)
    sol = solve(seg, econ, terms, paths.weight, budget_usd=4500.0, cvar_weight=1.0,
                cvar_alpha=0.5)
    assert sol.holdings_t[0, 2] == pytest.approx(15.0, rel=1e-6)
    assert sol.objective == pytest.approx((30.0 - 15.0) * 1000.0, rel=1e-6)
    assert sol.unserved_usd[1] == pytest.approx(15_000.0, rel=1e-6)


# ---- the default data --------------------------------------------------------------------
@pytest.fixture(scope="module")
def net():
    return Network.from_dataset()


@pytest.fixture(scope="module")
def fitted(net):
    paths = simulate_unmet({"licensing-2025-04": 1.0, "heavy-embargo-usa-12m": 1.0}, 24, 3,
                           36, "USA", net)
    terms = Terms.from_dataset(net.dataset)
    return paths, economy(net, "USA", terms, paths.base), terms


def test_aggregated_is_the_monthly_lp_within_a_tenth_of_a_percent(fitted):
    """Segments sum the months in which the same holdings can serve; with the Leontief
    maximum over inputs that is a relaxation of the monthly LP (a max of sums is at most the
    sum of monthly maxima): never above it, and close."""
    paths, econ, terms = fitted
    for budget in (3e7, 2e8):
        fast = solve(segment(paths, econ), econ, terms, paths.weight, budget_usd=budget)
        full = solve(segment(paths, econ, monthly=True), econ, terms, paths.weight,
                     budget_usd=budget)
        assert fast.objective <= full.objective * (1 + 1e-7) + 1.0
        assert fast.objective == pytest.approx(full.objective, rel=1e-3, abs=1.0)


def test_merging_identical_paths_keeps_the_optimum(fitted):
    paths, econ, terms = fitted
    seg = segment(paths, econ)
    merged, w = merge_identical(seg, paths.weight)
    assert len(w) < len(paths.weight)  # the US embargo scenario is deterministic
    assert w.sum() == pytest.approx(1.0)
    full = solve(seg, econ, terms, paths.weight, budget_usd=5e7)
    fast = solve(merged, econ, terms, w, budget_usd=5e7)
    assert fast.objective == pytest.approx(full.objective, rel=1e-6, abs=1.0)


def test_budget_properties(fitted):
    paths, econ, terms = fitted
    seg = segment(paths, econ)
    previous = np.inf
    for budget in (0.0, 1e7, 5e7, 2e8, 1e9):
        sol = solve(seg, econ, terms, paths.weight, budget_usd=budget)
        cost = total_cost_usd(sol.holdings_t, sol.purchase_usd, econ, terms)
        assert cost <= budget * (1 + 1e-7) + 1e-3
        expected = float(paths.weight @ sol.unserved_usd)
        assert expected <= previous * (1 + 1e-7) + 1.0
        previous = expected
        if budget == 0.0:
            assert np.allclose(sol.holdings_t, 0.0, atol=1e-9)
    assert previous < 1e-3 * float(paths.weight @ solve(seg, econ, terms, paths.weight,
                                                         budget_usd=0.0).unserved_usd)


def test_holdings_respect_purchase_caps(fitted):
    paths, econ, terms = fitted
    sol = solve(segment(paths, econ), econ, terms, paths.weight, budget_usd=1e12)
    cap = terms.max_buy_share_per_month * econ.market_t_per_month * terms.purchase_window_months
    assert np.all(sol.holdings_t <= cap * (1 + 1e-7) + 1e-9)
    assert np.all(sol.holdings_t[~econ.allowed] == 0.0)


def test_plan_beats_rule_beats_nothing_out_of_sample():
    """On fresh paths: the plan loses less than the 60-day rule bought with the same money,
    which loses less than nothing (out of sample: the plan was fitted on other paths; at a
    budget where money binds: at 12 B USD both cover nearly everything)."""
    plan = plan_stockpile(budget_usd=2e9, perspective="USA", paths=400, eval_paths=400,
                          seed=11)
    ev = plan.evaluation["expected_unserved_usd"]
    assert ev["plan"] <= ev["rule_equal_money"] <= ev["none"]
    assert ev["rule_60_days"] <= ev["none"]
    assert ev["none"] > 0
    assert plan.cost_over_tenor_usd <= 2e9 * (1 + 1e-9)
    d = plan.to_dict()
    assert {h["form"] for h in d["holdings"]} <= {"oxide", "metal", "magnet"}
    assert sum(h["usd"] for h in d["holdings"]) == pytest.approx(d["spent_usd"], rel=1e-6)


def test_min_days_rule(net):
    plan = plan_stockpile(budget_usd=1e9, paths=20, eval_paths=10, months=24,
                          scenarios="licensing-2025-04", min_days={"Dy": 90.0}, network=net)
    i = plan.elements.index("Dy")
    assert plan.days_of_cover[i] >= 90.0 - 1e-6


@pytest.mark.parametrize("kwargs, message", [
    ({"budget_usd": -1.0}, "budget_usd must be >= 0"),
    ({"budget_usd": float("nan")}, "budget_usd must be a finite number"),
    ({"cvar_alpha": 1.0}, "cvar_alpha must lie strictly between 0 and 1"),
    ({"cvar_weight": 2.0}, "cvar_weight must be between 0 and 1"),
    ({"elements": ["Nd", "Xx"]}, "unknown element 'Xx'; allowed"),
    ({"min_days": {"Kr": 30.0}}, "unknown element 'Kr'"),
    ({"perspective": "ATL"}, "unknown perspective 'ATL'"),
    ({"perspective": "G7"}, "stands for several regions of use (JPN, USA)"),
    ({"perspective": "CHN"}, "the controlling country"),
    ({"scenarios": "no-such-scenario"}, "no-such-scenario"),
    ({"scenarios": "quota-2010:-1"}, "must be a number >= 0"),
    ({"paths": 0}, "paths must be a whole number >= 1"),
    ({"seed": -1}, "seed must be a whole number >= 0"),
    ({"budget_usd": 1e6, "min_days": 365.0}, "infeasible"),
])
def test_bad_input(net, kwargs, message):
    args = {"paths": 4, "eval_paths": 4, "months": 12, "scenarios": "licensing-2025-04",
            "network": net, **kwargs}
    with pytest.raises(PlanError) as e:
        plan_stockpile(**args)
    assert message in str(e.value)


def test_cli_json():
    r = CliRunner().invoke(app, ["stockpile", "plan", "--budget-usd", "5e8", "--paths", "30",
                                 "--eval-paths", "30", "--months", "24", "--scenarios",
                                 "licensing-2025-04,heavy-embargo-usa-12m:2", "--format", "json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    for key in ("budget_usd", "spent_usd", "carry_usd_per_year", "holdings", "days_of_cover",
                "evaluation"):
        assert key in d
    assert set(d["evaluation"]) >= {"paths", "expected_unserved_usd", "cvar95_unserved_usd"}
    for k in ("expected_unserved_usd", "cvar95_unserved_usd"):
        assert set(d["evaluation"][k]) == {"plan", "rule_60_days", "rule_equal_money", "none"}
    assert d["evaluation"]["paths"] == 30
    assert d["spent_usd"] <= d["budget_usd"]


def test_cli_errors():
    r = CliRunner().invoke(app, ["stockpile", "plan", "--budget-usd", "-5", "--paths", "4"])
    assert r.exit_code == 2
    assert "budget_usd must be >= 0" in r.output
    r = CliRunner().invoke(app, ["stockpile", "plan", "--min-days", "Dy=4"])
    assert r.exit_code == 2
    assert "--min-days" in r.output


def test_missing_stockpile_parameter_is_named(net):
    from dataclasses import replace

    tables = dict(net.dataset.tables)
    tables["stockpile_parameters"] = tables["stockpile_parameters"].query(
        "parameter != 'tenor_years'")
    with pytest.raises(PlanError, match=r"stockpile_parameters.csv has no row for "
                                        r"parameter\(s\) tenor_years"):
        Terms.from_dataset(replace(net.dataset, tables=tables))


def test_never_buys_for_demand_lost_to_price_alone(tmp_path, network):
    """A partial cut of La, Ce and Y raises their price in the US and buyers give some demand
    up, but nothing is physically short: valued on physical shortage, the plan buys nothing
    (the demand given up is reported apart, at the consumer-surplus triangle)."""
    from oreflow.stockpile import plan_stockpile

    f = tmp_path / "price-alone.yaml"
    f.write_text("""
name: price-alone
start: "2026-01"
months: 12
shocks:
  - type: export_control
    elements: [La, Ce, Y]
    stages: [separation, metal]
    approval: [[0, 0.6]]
    duration: 4
""")
    plan = plan_stockpile(budget_usd=1e8, perspective="USA", scenarios={str(f): 1.0},
                          paths=30, eval_paths=30, months=12, network=network)
    assert plan.holdings_t.sum() == 0.0 and plan.spent_usd == 0.0
    ev = plan.evaluation
    assert ev["expected_unserved_usd"]["none"] == 0.0
    assert ev["price_response_loss_usd"] > 0.0


def test_cli_json_is_clean_with_the_decomposition():
    """HiGHS prints a banner on file descriptor 1 when a model is made: `--format json` must
    still be one JSON object when the plan is solved by Benders."""
    import json
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "oreflow.cli", "stockpile", "plan",
                        "--budget-usd", "1e8", "--paths", "40", "--eval-paths", "40",
                        "--months", "12", "--method", "benders", "--format", "json"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["settings"]["method"] == "benders"
