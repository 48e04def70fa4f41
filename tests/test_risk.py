"""Indicators: hand-computed formulas, then properties on the embedded network."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

from oreflow.risk import (
    BASIS,
    TOTAL,
    UnknownPerspectiveError,
    chokepoints,
    eu_sr_formula,
    hhi,
    import_reliance,
    indicator_table,
    partners,
    perspective_regions,
    production_shares,
    sources_table,
    sourcing_shares,
    trade_factor,
    trade_parts,
    wgi_scaled,
)


def _da(values, origins=("A", "B", "C")):
    return xr.DataArray(np.array(values, float), dims="origin", coords={"origin": list(origins)})


def test_hhi_hand_computed():
    shares = xr.DataArray([0.5, 0.3, 0.2], dims="region")
    assert float(hhi(shares)) == pytest.approx(50**2 + 30**2 + 20**2)  # 3800
    assert float(hhi(xr.DataArray([1.0], dims="region"))) == 10_000


def test_eu_formula_hand_computed():
    gs = _da([0.6, 0.3, 0.1])
    src = _da([0.2, 0.8, 0.0])
    wgi = _da([6.0, 2.0, 4.0])
    t = _da([1.2, 0.8, 1.0])
    ir = 0.5
    hhi_gs = 0.36 * 6 * 1.2 + 0.09 * 2 * 0.8 + 0.01 * 4 * 1.0  # 2.776
    hhi_src = 0.04 * 6 * 1.2 + 0.64 * 2 * 0.8  # 1.312
    expected = (hhi_gs * 0.25 + hhi_src * 0.75) * (1 - 0.01) * 0.9
    got = float(eu_sr_formula(gs, src, wgi, t, ir, 0.01, 0.9))
    assert got == pytest.approx(expected, rel=1e-12)


def test_full_reliance_weights_global_and_sourcing_equally():
    gs, src = _da([1.0, 0, 0]), _da([0, 1.0, 0])
    wgi, t = _da([8.0, 2.0, 5.0]), _da([1.0, 1.0, 1.0])
    assert float(eu_sr_formula(gs, src, wgi, t, 1.0, 0.0, 1.0)) == pytest.approx(0.5 * 8 + 0.5 * 2)


def test_perspectives(network):
    assert perspective_regions(network, "USA") == ["USA"]
    eu = perspective_regions(network, "EU")
    assert {"XEU", "DEU", "EST", "FRA"} <= set(eu) and "USA" not in eu
    assert set(perspective_regions(network, "quad")) <= {"AUS", "IND", "JPN", "USA"}
    with pytest.raises(UnknownPerspectiveError, match="unknown perspective 'ATLANTIS'"):
        perspective_regions(network, "ATLANTIS")


@pytest.mark.parametrize("perspective", ["USA", "EU", "JPN", "IND", "g7", "ita"])
def test_indicator_ranges(network, perspective):
    t = indicator_table(network, perspective)
    assert t["china_share"].between(0, 1).all()
    assert t["hhi"].between(0, 10_000).all()
    assert t["import_reliance"].dropna().between(0, 1).all()
    assert (t["eu_sr"].dropna() >= 0).all()
    assert {"REO", "Nd", "Dy", "Tb"} <= set(t["element"])
    assert set(t["stage"]) == {"mining", "separation", "metal", "magnet"}


def test_usa_is_net_exporter_of_concentrate_and_importer_of_magnets(network):
    t = indicator_table(network, "USA").set_index(["element", "stage"])
    assert t.loc[("REO", "mining"), "import_reliance"] == 0.0
    assert t.loc[("REO", "magnet"), "import_reliance"] > 0.95


def test_china_share_of_reo_mining_in_table(network, dataset):
    """China's quota (270,000 t) over the sum of the 2024 country rows (USGS, plus Laos from
    China's customs data)."""
    mp = dataset["mine_production"].query("year == 2024 and region != 'WLD'")
    t = indicator_table(network, "USA").set_index(["element", "stage"])
    assert t.loc[("REO", "mining"), "china_share"] == pytest.approx(
        270_000 / mp["t_reo"].sum(), rel=1e-3)


def test_licences_raise_supply_risk_of_controlled_elements(network):
    """Dy (licensed since April 2025) scores higher than Nd at separation for an importer."""
    t = indicator_table(network, "JPN").set_index(["element", "stage"])
    assert t.loc[("Dy", "separation"), "eu_sr"] > t.loc[("Nd", "separation"), "eu_sr"]


def test_chokepoints_are_sorted(network):
    top = chokepoints(indicator_table(network, "USA"), 5)
    assert len(top) == 5
    assert (np.diff(top["chokepoint"].to_numpy()) <= 0).all()
    assert top["rank"].tolist() == [1, 2, 3, 4, 5]


def test_unknown_element(network):
    with pytest.raises(ValueError, match="unknown element 'Xx'; allowed: Ce, Dy"):
        indicator_table(network, "USA", ["Xx"])


def test_names_are_case_insensitive(network):
    a = indicator_table(network, "eu", ["dy", "reo"])
    b = indicator_table(network, "EU", ["Dy", "REO"])
    assert a.equals(b) and set(a["element"]) == {"Dy", "REO"}
    assert (a["perspective"] == "EU").all()


# ---- import reliance, the US heavy rare earths, new scrap --------------------------------
@pytest.mark.parametrize("element", ["Dy", "Tb"])
def test_us_heavy_separation_reliance_is_total(network, element):
    """USGS MCS 2026: the US imports all of its heavy rare-earth compounds (no heavy
    separation in the US in 2024)."""
    t = indicator_table(network, "USA", [element]).set_index("stage")
    assert t.loc["separation", "import_reliance"] == 1.0


def test_new_scrap_nets_out_of_reliance(network):
    """New scrap is neither production nor consumption for USGS: reliance = net imports /
    (use - swarf recovered there). The US recovers its Nd swarf itself (it separates light
    rare earths); its Dy swarf goes to China (it separates no heavy ones)."""
    assert float(network.swarf_secondary_t.sel(element="Dy", region="USA")) == 0.0
    use = float(network.use_t.sel(element="Nd", stage="separation", region="USA"))
    out = float(network.production_t.sel(element="Nd", stage="separation", region="USA"))
    swarf = float(network.swarf_secondary_t.sel(element="Nd", region="USA"))
    assert swarf > 0
    ir = float(import_reliance(network, ["USA"]).sel(element="Nd", stage="separation"))
    assert ir == pytest.approx(max(use - out, 0.0) / (use - swarf))


# ---- EU supply risk with the EC's inputs ------------------------------------------------
def test_eu_rows_carry_element_inputs(network, dataset):
    crit = dataset["eu_criticality"].pivot(index="element", columns="parameter",
                                           values="value")
    t = indicator_table(network, "EU")
    for e in ("Dy", "Tb", "Nd", "La", "Y"):
        rows = t[t["element"] == e]
        assert (rows["si_sr"] == crit.loc[e, "si_sr"]).all()
        assert (rows["eol_rir"] == crit.loc[e, "eol_rir"]).all()
    assert t.loc[t["element"] == "Dy", "eol_rir"].iloc[0] == 0.08  # EC 2020, HREE group
    assert t.loc[t["element"] == "Nd", "eol_rir"].iloc[0] == 0.03  # EC 2020, LREE group
    assert set(t["tc_setting"]) == {"current"}
    # each input says how firm it is: the uniform SI_SR is an assumption, in the output
    status = dataset["eu_criticality"].pivot(index="element", columns="parameter",
                                             values="status")
    for e in ("Dy", "Nd"):
        rows = t[t["element"] == e]
        assert (rows["si_sr_status"] == status.loc[e, "si_sr"]).all()
        assert (rows["eol_rir_status"] == status.loc[e, "eol_rir"]).all()
    assert (t.loc[t["element"] == "REO", "si_sr_status"] == "assumption").all()


def test_reo_row_carries_the_weakest_input_status():
    from types import SimpleNamespace

    import pandas as pd

    from oreflow.risk import _eu_input_status

    crit = pd.DataFrame({"element": ["Dy", "Nd", "Dy", "Nd"],
                         "parameter": ["si_sr", "si_sr", "eol_rir", "eol_rir"],
                         "status": ["reported", "estimate", "reported", "reported"]})
    st = _eu_input_status(SimpleNamespace(dataset={"eu_criticality": crit}))
    assert st["si_sr"] == {"Dy": "reported", "Nd": "estimate", "REO": "estimate"}
    assert st["eol_rir"]["REO"] == "reported"


def test_eu_sr_by_hand_for_nd_separation(network, dataset):
    """One row recomputed from its parts: global shares, the EU's sourcing from the sources
    view, WGI, t_c, reliance, and the EC inputs of Nd."""
    eu = perspective_regions(network, "EU")
    gs = production_shares(network).sel(element="Nd", stage="separation").to_series()
    src = sources_table(network, "EU", "Nd", ["separation"]).groupby("origin")["share"].sum()
    wgi = wgi_scaled(network).to_series()
    t = trade_factor(network, "EU").sel(element="Nd", stage="separation").to_series()
    ir = float(import_reliance(network, eu).sel(element="Nd", stage="separation"))
    hhi_gs = sum(gs[c] ** 2 * wgi[c] * t[c] for c in gs.index if gs[c] > 0)
    hhi_src = sum(src[c] ** 2 * wgi[c] * t[c] for c in src.index)
    expected = (hhi_gs * ir / 2 + hhi_src * (1 - ir / 2)) * (1 - 0.03) * 0.9
    row = indicator_table(network, "EU", ["Nd"]).set_index("stage").loc["separation"]
    assert row["eu_sr"] == pytest.approx(expected, rel=1e-9)


def test_eu_sr_ec_is_the_higher_of_extraction_and_processing(network):
    t = indicator_table(network, "EU")
    for _, rows in t.groupby("element"):
        r = rows.set_index("stage")
        both = r.loc[["mining", "separation"], "eu_sr"]
        assert (rows["eu_sr_ec"].nunique(dropna=False)) == 1
        if both.notna().any():
            assert r["eu_sr_ec"].iloc[0] == pytest.approx(both.max())
            assert r["eu_sr_ec_stage"].iloc[0] == both.idxmax()
    nd = t[t["element"] == "Nd"].set_index("stage")
    assert np.isfinite(nd.loc["mining", "eu_sr"])  # Nd's extraction stage is computed


def test_partners_come_from_trade_agreements(network):
    eu = partners(network, "EU")
    assert {"JPN", "KOR", "CAN", "VNM", "GBR", "DEU", "XEU"} <= eu
    assert not {"CHN", "USA", "AUS", "MMR", "MYS", "RUS"} & eu
    assert "CHN" in partners(network, "JPN")  # RCEP, in force 2022
    assert "JPN" in partners(network, "USA") and "USA" in partners(network, "JPN")
    assert "DEU" in partners(network, "KOR")  # EU-Korea FTA: the EU speaks for its members


def test_trade_factor_settings(network):
    """'current': the April 2025 licences raise Chinese Dy (x 1.2); 'ec': nothing in force
    in the 2023 assessment's window (quotas ended 2015). Japan has RCEP with China (0.8)."""
    eu_now = trade_factor(network, "EU", "current").sel(origin="CHN", stage="separation")
    eu_ec = trade_factor(network, "EU", "ec").sel(origin="CHN", stage="separation")
    assert float(eu_now.sel(element="Dy")) == pytest.approx(1.2)
    assert float(eu_now.sel(element="Nd")) == float(eu_ec.sel(element="Dy")) == 1.0
    jp = trade_factor(network, "JPN", "current").sel(origin="CHN", stage="separation")
    assert float(jp.sel(element="Dy")) == pytest.approx(0.8 * 1.2)
    assert float(trade_factor(network, "EU", "current").sel(
        origin="MYS", stage="mining", element="Nd")) == pytest.approx(1.5)  # MCS T4 ban
    assert float(trade_factor(network, "EU", "ec").sel(
        origin="MYS", stage="mining", element="Nd")) == 1.0
    a = indicator_table(network, "JPN", ["Dy"], "ec").set_index("stage")
    b = indicator_table(network, "JPN", ["Dy"], "current").set_index("stage")
    assert b.loc["separation", "eu_sr"] > a.loc["separation", "eu_sr"]
    assert set(a["tc_setting"]) == {"ec"}
    with pytest.raises(ValueError, match="allowed ec, current"):
        indicator_table(network, "JPN", ["Dy"], "2017")


# ---- chokepoints: no ties by construction ----------------------------------------------
def test_chokepoint_scores_tie_only_for_identical_splits(network):
    """Rows whose country splits differ never share a score; rows that do share one (Nd and
    Pr metal come from one stage_shares row) are ranked by world tonnage."""
    shares = production_shares(network)
    for perspective in ("USA", "EU", "JPN"):
        t = indicator_table(network, perspective)
        rows = t[(t["element"] != TOTAL) & t["chokepoint"].notna() & (t["chokepoint"] > 0)]
        for _, group in rows.groupby(rows["chokepoint"].round(12)):
            if len(group) < 2:
                continue
            splits = [shares.sel(element=e, stage=s).values.round(9)
                      for e, s in zip(group["element"], group["stage"], strict=True)]
            assert all((x == splits[0]).all() for x in splits), group
        top = chokepoints(t, len(rows))
        assert top["rank"].is_unique
        key = list(zip(-top["chokepoint"], -top["world_t"], strict=True))
        assert key == sorted(key)


def test_metal_stage_china_shares_are_element_specific(network):
    t = indicator_table(network, "USA")
    metal = t[(t["stage"] == "metal") & (t["element"] != TOTAL)]
    assert metal["china_share"].round(3).nunique() >= 3


# ---- who supplies the perspective ----------------------------------------------------------
@pytest.mark.parametrize("stage", ["separation", "metal", "magnet"])
def test_trade_parts_add_up_to_the_trade_matrix(network, stage):
    parts = trade_parts(network, stage)
    total = network.trade_t.sel(stage=stage).transpose("element", "origin", "dest").to_numpy()
    assert all((v >= -1e-9).all() for v in parts.values())
    np.testing.assert_allclose(sum(parts.values()), total, rtol=1e-9, atol=1e-6)


@pytest.mark.parametrize("perspective", ["USA", "EU", "JPN"])
def test_sources_are_the_sourcing_of_the_formula(network, perspective):
    src = sources_table(network, perspective)
    assert set(src["basis"]) <= set(BASIS)
    sums = src.groupby(["stage", "element"])["share"].sum()
    np.testing.assert_allclose(sums.to_numpy(), 1.0, rtol=1e-9)
    formula = sourcing_shares(network, perspective_regions(network, perspective))
    by_origin = src.groupby(["element", "stage", "origin"])["share"].sum()
    for (e, s, o), v in by_origin.items():
        assert float(formula.sel(element=e, stage=s, origin=o)) == pytest.approx(v, rel=1e-9)


def test_source_bases(network):
    us = sources_table(network, "USA", "Dy", ["separation", "magnet"]).set_index(
        ["stage", "origin", "basis"])["t"]
    assert ("separation", "CHN", "observed") in us.index  # USITC import shares
    assert ("magnet", "CHN", "observed") in us.index
    nd = sources_table(network, "USA", "Nd", ["separation"])
    assert set(nd["origin"]) == {"USA"}  # a net exporter of NdPr uses its own
    jp = sources_table(network, "JPN", "Nd", ["separation"]).set_index(["origin", "basis"])
    assert ("MYS", "routed") in jp.index  # Lynas NdPr to Japan: an assumed route
    eu = sources_table(network, "EU", None, ["separation"])
    assert set(eu.loc[eu["origin"] != "CHN", "basis"]) <= {"domestic", "allocated"}
    # Lynas and Solikamsk output is committed elsewhere: no invented Malaysian or Russian
    # supply to the EU
    assert not {"MYS", "RUS"} & set(eu["origin"])


def test_sources_cli_json(network):
    from typer.testing import CliRunner

    from oreflow.cli import app

    res = CliRunner().invoke(app, ["risk", "-p", "eu", "--sources", "-e", "nd", "--format",
                                   "json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert isinstance(rows, list) and {r["element"] for r in rows} == {"Nd"}
    assert {r["stage"] for r in rows} == {"mining", "separation", "metal", "magnet"}
    assert {"perspective", "stage", "element", "origin", "basis", "t", "share"} <= set(rows[0])
    want = sources_table(network, "EU", "Nd")
    assert len(rows) == len(want)
    assert [r["t"] for r in rows] == pytest.approx(want["t"].tolist())


def test_risk_cli_json_rows(network):
    from typer.testing import CliRunner

    from oreflow.cli import app

    res = CliRunner().invoke(app, ["risk", "-p", "eu", "-e", "dy", "--format", "json",
                                   "--trade-factors", "ec"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert isinstance(rows, list) and len(rows) == 4
    assert {r["tc_setting"] for r in rows} == {"ec"}
    assert {"eu_sr", "eu_sr_ec", "si_sr", "eol_rir", "import_reliance",
            "china_share"} <= set(rows[0])
    table = CliRunner().invoke(app, ["risk", "-p", "eu", "-e", "dy", "--trade-factors", "ec"])
    assert "t_c 'ec'" in " ".join(table.stdout.split())
    bad = CliRunner().invoke(app, ["risk", "-p", "atlantis"])
    text = " ".join(bad.output.split())
    assert bad.exit_code != 0 and "unknown perspective 'atlantis'" in text
    assert "blocs: EU, G7, MSP, QUAD" in text and "ITA" in text
