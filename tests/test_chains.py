"""The generic chain network and its risk rows: hand-checked on the toy chain, balanced and
consistent with USGS on the real ones."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from oreflow.chain_risk import (
    all_commodities_table,
    chain_indicator_table,
    traced_share,
)
from oreflow.chains import ChainError, ChainNetwork
from oreflow.cli import app

GENERIC = ["Ga", "Ge", "Sb", "W", "graphite_natural", "graphite_synthetic", "Co", "Li", "Ni"]


@pytest.fixture(scope="module")
def toy(toy_dataset):
    return ChainNetwork.from_dataset(toy_dataset, "TOY")


def test_toy_production_use_and_trade_by_hand(toy):
    p = toy.production_t
    assert p.sel(stage="ore").to_series()[["CHN", "AUS", "XOT"]].tolist() == [60, 30, 10]
    assert float(p.sel(stage="refined", region="CHN")) == pytest.approx(90)
    assert float(p.sel(stage="refined", region="USA")) == pytest.approx(10)
    u = toy.use_t
    assert float(u.sel(stage="refined", region="USA")) == pytest.approx(20)
    assert float(u.sel(stage="refined", region="CHN")) == pytest.approx(50)
    assert float(u.sel(stage="refined", region="XOT")) == pytest.approx(30)
    assert float(u.sel(stage="ore", region="CHN")) == pytest.approx(90)  # its refiners' feed
    f = toy.trade_t
    assert float(f.sel(stage="refined", origin="CHN", dest="USA")) == pytest.approx(10)
    assert float(f.sel(stage="refined", origin="CHN", dest="XOT")) == pytest.approx(30)
    assert float(f.sel(stage="ore", origin="AUS", dest="CHN")) == pytest.approx(22.5)
    assert float(f.sel(stage="ore", origin="XOT", dest="USA")) == pytest.approx(2.5)
    toy.check_balance()
    assert toy.balance()["stock_change_t"].abs().max() == pytest.approx(0)


def test_toy_risk_rows_by_hand(toy):
    t = chain_indicator_table(toy, "USA").set_index("stage")
    assert t.loc["ore", "china_share"] == pytest.approx(0.6)
    assert t.loc["ore", "hhi"] == pytest.approx(4600)
    assert t.loc["refined", "hhi"] == pytest.approx(8200)
    assert t.loc["refined", "import_reliance"] == pytest.approx(0.5)
    assert t.loc["refined", "supply_from_china"] == pytest.approx(0.5)
    assert t.loc["ore", "import_reliance"] == pytest.approx(1.0)
    assert t.loc["ore", "supply_from_china"] == pytest.approx(0.0)
    # US refined: 10 t own (its ore came from AUS and XOT, no China) + 10 t from China
    assert t.loc["refined", "exposure"] == pytest.approx(0.5)
    assert t.loc["refined", "chokepoint"] == pytest.approx(0.82 * 0.5)
    assert t.loc["refined", "controls"] == "toy-licence"
    assert set(t["data_status"]) == {"assumption"}


def test_toy_appears_in_the_cross_commodity_table(toy_dataset):
    t = all_commodities_table(toy_dataset, "USA")
    assert {"TOY", "REE", "Ga"} <= set(t["commodity"])
    ck = t["chokepoint"].dropna().to_numpy()
    assert (np.diff(ck) <= 1e-12).all()  # ranked
    assert t["rank"].tolist() == list(range(1, len(t) + 1))


def test_traced_share_by_hand():
    # stage 0: A (China) makes 6, B makes 4; B's refiner takes 3 from A and 1 from itself
    flows = np.zeros((2, 3, 3))
    flows[0] = [[3, 3, 0], [0, 1, 0], [0, 0, 0]]
    flows[1] = [[0, 0, 0], [0, 0, 4], [0, 0, 0]]
    t = traced_share(flows, 0)
    assert t[0].tolist() == [1, 0, 0]
    assert t[1, 1] == pytest.approx(0.75) and t[1, 0] == 1.0


@pytest.mark.parametrize("chain", GENERIC)
def test_real_chains_balance_and_deliver(dataset, chain):
    net = ChainNetwork.from_dataset(dataset, chain)
    net.check_balance()
    assert net.stages  # at least one quantified stage
    b = net.balance()
    assert (b["stock_change_t"] >= -1e-6).all()
    us = dataset["chain_demand"].query("chain == @chain and region == 'USA' and unit == 't' "
                                       "and year == 2024")
    if len(us):
        assert float(net.end_use_t.sel(region="USA").sum()) == pytest.approx(
            float(us["value"].iloc[0]))


@pytest.mark.parametrize("chain", ["Ga", "Sb", "W", "graphite_natural", "Co", "Li", "Ni"])
def test_first_stage_world_output_is_usgs(dataset, chain):
    net = ChainNetwork.from_dataset(dataset, chain)
    c = dataset.chain(chain)
    world = dataset["chain_production"].query(
        "chain == @chain and stage == @c.usgs_stage and region == 'WLD' and year == 2024")
    total = float(net.production_t.sel(stage=c.usgs_stage).sum())
    # the world row is rounded; country rows may add up to a little more
    assert total == pytest.approx(float(world["value"].iloc[0]), rel=0.005)


def test_gallium_risk_shows_chinas_hold(dataset):
    t = chain_indicator_table(ChainNetwork.from_dataset(dataset, "Ga"), "USA").set_index("stage")
    assert t["china_share"].max() >= 0.9
    assert t.loc["primary", "china_share"] == pytest.approx(839 / 848)
    assert t.loc["refined", "usgs_import_reliance"] == "100"
    assert t.loc["refined", "import_reliance"] == pytest.approx(1.0)
    # the US buys refined gallium from Canada, Japan and Germany, refined from Chinese metal
    assert t.loc["refined", "exposure"] > t.loc["refined", "supply_from_china"] + 0.5
    assert "cn-ga-ge-2023" in t.loc["refined", "controls"]


def test_us_reliance_shown_as_usgs_reports_it(dataset):
    t = all_commodities_table(dataset, "USA")
    shown = t[t["usgs_import_reliance"] != ""].set_index("commodity")["usgs_import_reliance"]
    assert shown["Co"] == "74" and shown["Ni"] == "43" and shown["Ge"] == ">50"
    assert shown["Sb"] == "86" and shown["REE"] == "53"


def test_rare_earths_are_the_detailed_network(dataset):
    with pytest.raises(ChainError, match="detailed network"):
        ChainNetwork.from_dataset(dataset, "REE")


def test_a_perspective_without_flows_is_named(dataset):
    with pytest.raises(ValueError, match="not split by region"):
        chain_indicator_table(ChainNetwork.from_dataset(dataset, "Ga"), "BRA")


runner = CliRunner()


def test_cli_commodity_json_is_a_list_of_stage_rows():
    r = runner.invoke(app, ["risk", "--commodity", "ga", "--perspective", "USA",
                            "--format", "json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    assert isinstance(rows, list) and {x["stage"] for x in rows} == {"primary", "refined"}
    for key in ("china_share", "hhi", "top_producer", "import_reliance", "exposure"):
        assert all(key in x for x in rows)
    assert max(x["china_share"] for x in rows) >= 0.9


def test_cli_unknown_commodity_lists_the_allowed():
    r = runner.invoke(app, ["risk", "--commodity", "unobtainium"])
    assert r.exit_code != 0
    assert "unknown commodity 'unobtainium'" in r.output and "graphite_natural" in r.output


def test_cli_rare_earths_output_is_unchanged_by_commodity_option():
    a = runner.invoke(app, ["risk", "--format", "json"])
    b = runner.invoke(app, ["risk", "--commodity", "REE", "--format", "json"])
    assert a.exit_code == b.exit_code == 0
    assert json.loads(a.stdout) == json.loads(b.stdout)
    assert "element" in json.loads(a.stdout)[0]


def test_cli_all_ranks_every_commodity():
    r = runner.invoke(app, ["risk", "--all", "--perspective", "USA", "--format", "json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    assert {x["commodity"] for x in rows} == {"REE", *GENERIC}
    assert [x["rank"] for x in rows] == list(range(1, len(rows) + 1))
