"""Chain scenarios through the unchanged stress engine: the toy chain by hand, the built-in
control scenarios, the same JSON keys as the rare earths."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from oreflow.cli import app
from oreflow.network import Network
from oreflow.scenario import ScenarioError, load_scenario, parse_scenario
from oreflow.simulate import run_stress, summary
from oreflow.simulate.chain_market import chain_market_base, chain_markets
from oreflow.simulate.market import MarketError

CHAIN_SCENARIOS = ["gallium-germanium-2023-08", "graphite-2023-12", "antimony-2024-09",
                   "us-ban-2024-12", "tungsten-2025-02", "cobalt-drc-2025-02"]


@pytest.fixture(scope="module")
def toy_net(toy_dataset):
    return Network.from_dataset(toy_dataset)


def _toy(toy_net, shocks: str, months: int = 12):
    return parse_scenario(f"name: toy\ncommodity: TOY\nstart: \"2026-01\"\nmonths: {months}\n"
                          f"sources: [toy_test_data]\nshocks:{shocks}", network=toy_net)


def test_toy_market_base_is_the_chain_network_per_month(toy_dataset):
    base = chain_market_base(chain_markets(toy_dataset, ["TOY"]))
    assert base.elements == ["TOY"] and base.grades == []
    chn, usa = base.regions.index("CHN"), base.regions.index("USA")
    assert base.prod0[chn, 0] == pytest.approx(90 / 12)  # refined toyium, t a month
    assert base.use0[usa, 0] == pytest.approx(20 / 12)
    assert base.source_share[chn, usa, 0] == pytest.approx(0.5)  # half the US use from China
    assert base.price0[chn, 0] == 80 and base.price0[usa, 0] == 100
    assert sorted(base.sectors) == ["gadgets", "widgets"]


def test_toy_baseline_is_flat_and_balanced(toy_net):
    ds = run_stress(_toy(toy_net, " []"), paths=8, seed=1, network=toy_net)
    assert float(ds["unmet_physical_t"].max()) <= 1e-6
    p = ds["price_usd_per_kg"] / ds["base_price_usd_per_kg"]
    assert float(np.abs(p - 1).max()) < 0.05
    assert ds.attrs["max_rel_balance_residual"] < 1e-9


def test_toy_harsher_control_never_lowers_the_shortfall(toy_net):
    body = """
  - type: export_control
    elements: [TOY]
    stages: [separation]
    duration: 12
    approval: [[0, {a}]]
"""
    unmet = []
    for a in (0.8, 0.4, 0.0):
        ds = run_stress(_toy(toy_net, body.format(a=a), months=24), paths=8, seed=2,
                        network=toy_net)
        unmet.append(float(ds["unmet_physical_t"].sum()))
        assert ds.attrs["max_rel_balance_residual"] < 1e-9
    assert unmet[0] <= unmet[1] <= unmet[2] and unmet[2] > 0


@pytest.mark.parametrize("name", CHAIN_SCENARIOS)
def test_builtin_chain_scenarios_validate_and_cite_their_sources(network, name):
    sc, _ = load_scenario(name, network)
    assert not sc.is_ree and sc.sources
    known = set(network.dataset["sources"]["source_id"])
    assert set(sc.sources) <= known


def test_same_seed_same_numbers(network):
    a = summary(run_stress("antimony-2024-09", paths=10, seed=5, network=network))
    b = summary(run_stress("antimony-2024-09", paths=10, seed=5, network=network))
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def test_a_control_outside_china_raises_prices_there(network):
    ds = run_stress("gallium-germanium-2023-08", paths=20, seed=1, network=network)
    peak = ds["price_peak_ratio_outside"].median("path")
    assert float(peak.sel(element="Ga")) > 1.05
    assert float(peak.sel(element="Ge")) > 1.0


def test_commodity_errors_name_the_allowed(network):
    with pytest.raises(ScenarioError, match="unknown commodity 'Xx'"):
        parse_scenario("name: t\ncommodity: Xx\nstart: \"2026-01\"\n", network=network)
    text = ("name: t\ncommodity: Sb\nstart: \"2026-01\"\nshocks:\n  - type: export_control\n"
            "    elements: [Sb]\n    stages: [metal]\n")
    with pytest.raises(ScenarioError, match="engine slot 'metal'"):
        parse_scenario(text, network=network)
    text = text.replace("[Sb]", "[Ga]").replace("[metal]", "[separation]")
    with pytest.raises(ScenarioError, match="not a commodity of this scenario"):
        parse_scenario(text, network=network)


def test_chains_without_a_price_cannot_run(dataset):
    with pytest.raises(MarketError, match="graphite_synthetic"):
        chain_market_base(chain_markets(dataset, ["graphite_synthetic"]))


def test_cli_stress_json_has_the_rare_earth_keys():
    r = CliRunner()
    a = r.invoke(app, ["stress", "gallium-germanium-2023-08", "--paths", "8", "--months", "6",
                       "--format", "json"])
    b = r.invoke(app, ["stress", "licensing-2025-04", "--paths", "8", "--months", "6",
                       "--format", "json"])
    assert a.exit_code == 0, a.output
    assert b.exit_code == 0, b.output
    ga, ree = json.loads(a.stdout), json.loads(b.stdout)
    assert set(ga) == set(ree)
    assert set(ga["price_peak_ratio"]) == {"Ga", "Ge"}


def test_a_region_without_use_reports_no_price_and_no_shortage(network):
    """USGS records antimony use for the USA and China only (the rest is in OTH): the EU,
    Japan, Korea and India use none in the base year, so they get no price multiple and no
    shortage figure (null, with a note), not a multiple of an unused price or a zero that
    reads as 'unaffected'. The outside price, weighted by use, is unchanged by it."""
    ds = run_stress("antimony-2024-09", paths=10, seed=2, network=network)
    base = chain_market_base(chain_markets(network.dataset, ["Sb"]))
    unused = [r for m, r in enumerate(base.regions)
              if base.use0[m].sum() <= 0 and base.demand0[m].sum() <= 0]
    assert set(unused) == {"EU", "JPN", "KOR", "IND"}
    out = summary(ds)
    for r in unused:
        assert out["price_peak_ratio"]["Sb"][r] is None
        assert out["unmet_physical_t_by_region"][r] is None
        assert out["demand_reduction_t_by_region"][r] is None
    assert out["price_peak_ratio"]["Sb"]["USA"] > 1.0
    assert out["unmet_physical_t_by_region"]["USA"] > 0
    assert any("EU, JPN, KOR, IND use none of it" in n for n in out["notes"])
    eu = summary(ds, "EU", ["EU"])
    assert any(n.startswith("the perspective's regions (EU)") for n in eu["notes"])
    usa = summary(ds, "USA", ["USA"])["notes"]
    assert not any(n.startswith("the perspective's regions") for n in usa)


def test_every_rare_earth_region_is_priced(network):
    """Every market region uses rare earths: no price is withheld and no note is added."""
    ds = run_stress("licensing-2025-04", paths=4, months=2, seed=1, network=network)
    assert not any("use none of it" in n for n in summary(ds)["notes"])
    assert bool((ds["base_price_usd_per_kg"] > 0).all())  # every element, every region
    assert all(v is not None for v in summary(ds)["unmet_physical_t_by_region"].values())
