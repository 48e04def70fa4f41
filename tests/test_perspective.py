"""One resolver for perspective, region and element names: the function itself, then every
entry point that uses it (risk, stocks, stockpile, scenario files; the web API in
test_web_risk.py)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from oreflow.cli import app
from oreflow.perspective import (
    UnknownElementError,
    UnknownPerspectiveError,
    allowed_codes,
    flow_regions,
    resolve_elements,
    resolve_perspective,
    resolve_region,
)

USE_REGIONS = ["CHN", "USA", "XEU", "JPN", "KOR", "IND", "XOT"]


def test_blocs_any_case(network):
    for name in ("EU", "eu", " Eu "):
        p = resolve_perspective(name, network)
        assert p.code == "EU" and p.kind == "bloc"
        assert set(p.regions) == {"DEU", "EST", "FRA", "XEU"}
        assert "counted through XEU" in p.note
    assert resolve_perspective("quad", network).regions == ("AUS", "IND", "JPN", "USA")


def test_g7_says_which_members_it_leaves_out(network):
    p = resolve_perspective("G7", network)
    assert set(p.regions) == {"DEU", "FRA", "GBR", "JPN", "USA"}
    assert "CAN, ITA have no flow of their own" in p.note and "XEU" in p.note


def test_member_state_without_flows_maps_to_its_demand_holder(network):
    p = resolve_perspective("ita", network)
    assert (p.code, p.regions, p.kind) == ("ITA", ("XEU",), "member")
    assert "ITA has no flow of its own" in p.note and "XEU" in p.note
    assert resolve_perspective("can", network).regions == ("XOT",)  # G7, MSP: no pseudo-region
    # a member with its own flows stands for itself; its end-use demand is in XEU
    deu = resolve_perspective("deu", network)
    assert deu.regions == ("DEU",) and "end-use demand is part of XEU" in deu.note


def test_regions_with_flows(network):
    regions = flow_regions(network)
    assert {"CHN", "USA", "XEU", "EST", "FRA"} <= set(regions)
    assert "ITA" not in regions and "WLD" not in regions
    assert resolve_perspective("usa", network).regions == ("USA",)


def test_unknown_lists_every_allowed_code(network):
    with pytest.raises(UnknownPerspectiveError) as e:
        resolve_perspective("Atlantis", network)
    msg = str(e.value)
    assert msg.startswith("unknown perspective 'Atlantis'; allowed (any case): regions: ")
    allowed = allowed_codes(network)
    for code in allowed["regions"] + allowed["blocs"] + allowed["member states"]:
        assert code in msg and code in e.value.allowed
    assert {"EU", "G7", "MSP", "QUAD", "ITA", "USA", "XEU"} <= set(e.value.allowed)
    assert isinstance(e.value, ValueError)


def test_scope_of_use_regions(dataset):
    """`stocks` and the stockpile planner work on the regions of end use: EU is XEU there."""
    assert resolve_perspective("eu", dataset, within=USE_REGIONS).regions == ("XEU",)
    assert resolve_perspective("deu", dataset, within=USE_REGIONS).regions == ("XEU",)
    assert resolve_perspective("g7", dataset, within=USE_REGIONS).regions == ("USA", "JPN")
    assert resolve_region("Eu", dataset, within=USE_REGIONS) == "XEU"
    with pytest.raises(UnknownPerspectiveError, match=r"stands for several regions \(USA, JPN\)"):
        resolve_region("g7", dataset, within=USE_REGIONS)


def test_elements_any_case():
    known = ["Nd", "Pr", "Dy", "Tb"]
    assert resolve_elements(["dy", "REO", "nd,PR", "Dy"], known) == ["Dy", "REO", "Nd", "Pr"]
    assert resolve_elements("tb", known) == ["Tb"]
    assert resolve_elements(None, known) == []
    with pytest.raises(UnknownElementError, match="allowed: Nd, Pr, Dy, Tb, REO"):
        resolve_elements(["Xx"], known)
    with pytest.raises(UnknownElementError, match=r"allowed \(magnets\): Nd, Pr, Dy, Tb \("):
        resolve_elements(["reo"], known, allow_total=False, label="magnets")


# ---- entry points ---------------------------------------------------------------------------
def test_risk_cli_accepts_lower_case():
    res = CliRunner().invoke(app, ["risk", "--perspective", "eu", "--element", "dy",
                                   "--format", "json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert {r["perspective"] for r in rows} == {"EU"} and {r["element"] for r in rows} == {"Dy"}


def test_risk_cli_member_state_note():
    res = CliRunner().invoke(app, ["risk", "-p", "ita", "-e", "Nd", "--format", "json"])
    assert res.exit_code == 0, res.output
    assert "ITA has no flow of its own" in " ".join(res.stderr.split())
    assert {r["perspective"] for r in json.loads(res.stdout)} == {"ITA"}


@pytest.mark.parametrize("region, expected", [("eu", "XEU"), ("ita", "XEU"), ("Xeu", "XEU"),
                                              ("usa", "USA")])
def test_stocks_cli_regions(region, expected):
    res = CliRunner().invoke(app, ["stocks", "-r", region, "-e", "dy", "--format", "json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["region"] == expected


def test_stocks_cli_bloc_of_several_regions():
    res = CliRunner().invoke(app, ["stocks", "-r", "g7", "-e", "DY", "--format", "json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["region"] == "all regions"  # USA and JPN together


def test_stockpile_names(network):
    from oreflow.stockpile import PlanError, _resolve_element_names, resolve_plan_perspective

    assert resolve_plan_perspective(network, "eu").regions == ("XEU",)
    assert resolve_plan_perspective(network, "usa").regions == ("USA",)
    p = resolve_plan_perspective(network, "fra")
    assert p.regions == ("XEU",) and "FRA" in p.note
    with pytest.raises(PlanError, match="stands for several regions of use"):
        resolve_plan_perspective(network, "G7")
    with pytest.raises(PlanError, match="unknown perspective 'ATL'; allowed"):
        resolve_plan_perspective(network, "ATL")
    els, days = _resolve_element_names(network, ["dy", "TB"], {"nd": 30.0})
    assert els == ["Dy", "Tb"] and days == {"Nd": 30.0}
    with pytest.raises(PlanError, match="unknown element 'Kr'"):
        _resolve_element_names(network, None, {"Kr": 30.0})


SCENARIO = """
name: names
start: "2025-01"
months: 6
controller: chn
shocks:
  - type: export_control
    origin: Chn
    elements: [dy, TB]
    destinations: [eu, usa, ita]
  - type: outage
    region: mys
    stage: separation
    share_lost: 0.5
  - type: recycling
    region: eu
    collection_rate: 0.3
  - type: demand_shift
    sector: wind
    region: fra
    factor: 1.2
  - type: stockpile
    holder: usa
    element: nd
    t: 10
"""


def test_scenario_names_resolve(network):
    from oreflow.scenario import parse_scenario

    sc = parse_scenario(SCENARIO, "names", network)
    ctl, outage, rec, shift, pile = sc.shocks
    assert sc.controller == "CHN" and ctl.origin == "CHN" and ctl.elements == ["Dy", "Tb"]
    assert ctl.destinations == ["DEU", "EST", "FRA", "XEU", "USA"]  # EU expanded, ITA in XEU
    assert (outage.region, rec.region, shift.region) == ("MYS", "XEU", "XEU")
    assert (pile.holder, pile.element) == ("USA", "Nd")


@pytest.mark.parametrize("old, new, words", [
    ("destinations: [eu, usa, ita]", "destinations: [atlantis]",
     ["shocks[0] (export_control).destinations: unknown name 'atlantis'; allowed (any case)",
      "blocs: EU, G7, MSP, QUAD"]),
    ("region: mys", "region: g7",
     ["shocks[1] (outage).region: 'g7' stands for several regions; give one of them (DEU,"]),
    ("elements: [dy, TB]", "elements: [dy, Kr]",
     ["shocks[0] (export_control).elements: unknown name 'Kr'; allowed: Ce, Dy"]),
])
def test_scenario_name_errors(network, old, new, words):
    from oreflow.scenario import ScenarioError, parse_scenario

    with pytest.raises(ScenarioError) as e:
        parse_scenario(SCENARIO.replace(old, new), "names", network)
    for w in words:
        assert w in str(e.value), str(e.value)
