"""The path decomposition of the stockpile LP against the monolithic LP (the reference):
the hand case, real paths with expected value and CVaR objectives, minimum days, the
planner's choice of method and uncertain planning over a sweep's parameters."""

from __future__ import annotations

import numpy as np
import pytest
from test_stockpile import _hand_economy, _hand_paths, _hand_terms

from oreflow.stockpile import (
    DEFAULT_SCENARIOS,
    Terms,
    economy,
    merge_identical,
    plan_stockpile,
    segment,
    simulate_unmet,
    solve,
)
from oreflow.stockpile_benders import solve_benders


def test_hand_case():
    econ, terms, paths = _hand_economy(), _hand_terms(), _hand_paths()
    seg = segment(paths, econ)
    sol, info = solve_benders(seg, econ, terms, paths.weight, budget_usd=4000.0)
    assert sol.holdings_t[0, 0] == pytest.approx(20.0, rel=1e-6)
    assert sol.holdings_t[0, 2] == pytest.approx(2000.0 / 300.0, rel=1e-6)
    assert sol.unserved_usd[0] == pytest.approx(10_000.0 / 3.0, rel=1e-6)
    assert info.iterations >= 1


@pytest.fixture(scope="module")
def many(network):
    terms = Terms.from_dataset(network.dataset)
    paths = simulate_unmet(DEFAULT_SCENARIOS, 300, 5, 60, "USA", network)
    econ = economy(network, "USA", terms, paths.base)
    seg, w = merge_identical(segment(paths, econ), paths.weight)
    assert len(w) > 100
    return seg, w, econ, terms


@pytest.mark.parametrize("budget, cvar_weight", [(3e7, 0.0), (2e8, 0.0), (2e8, 0.5),
                                                 (1e12, 0.0)])
def test_same_optimum_as_the_monolithic_lp(many, budget, cvar_weight):
    seg, w, econ, terms = many
    ref = solve(seg, econ, terms, w, budget_usd=budget, cvar_weight=cvar_weight)
    sol, info = solve_benders(seg, econ, terms, w, budget_usd=budget,
                              cvar_weight=cvar_weight, clusters=16, batch_paths=64)
    assert sol.objective == pytest.approx(ref.objective, rel=1e-6, abs=1.0)
    # and it is a plan: within budget, the true releases given its holdings score the same
    check = solve(seg, econ, terms, w, holdings_t=sol.holdings_t)
    np.testing.assert_allclose(check.unserved_usd, sol.unserved_usd, rtol=1e-6, atol=1.0)
    assert sol.purchase_usd.sum() <= budget * (1 + 1e-9)
    assert info.cuts >= 16


def test_minimum_days_hold_in_the_decomposition(many):
    seg, w, econ, terms = many
    days = np.zeros(len(econ.elements))
    days[econ.elements.index("Dy")] = 120.0
    ref = solve(seg, econ, terms, w, budget_usd=1e8, min_days=days)
    sol, _ = solve_benders(seg, econ, terms, w, budget_usd=1e8, min_days=days)
    assert sol.objective == pytest.approx(ref.objective, rel=1e-6, abs=1.0)
    i = econ.elements.index("Dy")
    need = 120.0 / 365.0 * econ.use_t_per_year[i]
    assert sol.holdings_t[i].sum() >= need * (1 - 1e-9)


def test_plan_chooses_the_method_and_says_which(network):
    kw = {"budget_usd": 5e8, "paths": 40, "eval_paths": 20, "months": 24,
          "scenarios": "licensing-2025-04", "network": network}
    mono = plan_stockpile(method="monolithic", **kw)
    bend = plan_stockpile(method="benders", **kw)
    assert mono.settings["method"] == "monolithic" and bend.settings["method"] == "benders"
    assert bend.in_sample_expected_unserved_usd == pytest.approx(
        mono.in_sample_expected_unserved_usd, rel=1e-6, abs=1.0)


def test_plan_over_a_sweeps_parameters(network, tmp_path):
    spec = tmp_path / "p.yaml"
    spec.write_text("""
name: plan-sweep
scenarios: [licensing-2025-04]
paths: 10
design: {method: lhs, n: 4}
parameters:
  buyer_cover_months: {dist: uniform, low: 1.0, high: 4.0}
  shocks[0].approval_scale: {dist: uniform, low: 0.3, high: 1.2}
""")
    kw = {"budget_usd": 5e8, "paths": 40, "eval_paths": 40, "months": 24, "network": network}
    plain = plan_stockpile(scenarios="licensing-2025-04", **kw)
    swept = plan_stockpile(sweep=spec, param_draws=4, **kw)
    assert swept.settings["sweep"]["parameters"] == ["buyer_cover_months",
                                                     "shocks[0].approval_scale"]
    # approval as low as 0.3 and thin buyers' stocks: more is short than at the defaults
    assert (swept.evaluation["expected_unserved_usd"]["none"]
            > plain.evaluation["expected_unserved_usd"]["none"])
    from oreflow.stockpile import PlanError

    with pytest.raises(PlanError, match="not both"):
        plan_stockpile(sweep=spec, scenarios="quota-2010", **kw)
