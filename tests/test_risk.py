"""Indicators: hand-computed formulas, then properties on the embedded network."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from oreflow.risk import (
    UnknownPerspectiveError,
    chokepoints,
    eu_sr_formula,
    hhi,
    indicator_table,
    perspective_regions,
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
    assert "XEU" in eu and "DEU" in eu and "USA" not in eu
    assert set(perspective_regions(network, "quad")) <= {"AUS", "IND", "JPN", "USA"}
    with pytest.raises(UnknownPerspectiveError, match="unknown perspective 'ATLANTIS'"):
        perspective_regions(network, "ATLANTIS")


@pytest.mark.parametrize("perspective", ["USA", "EU", "JPN", "IND"])
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


def test_china_share_of_reo_mining_in_table(network):
    t = indicator_table(network, "USA").set_index(["element", "stage"])
    assert t.loc[("REO", "mining"), "china_share"] == pytest.approx(270_000 / 380_000, rel=0.02)


def test_licences_raise_supply_risk_of_controlled_elements(network):
    """Dy (licensed since April 2025) scores higher than Nd at separation for an importer."""
    t = indicator_table(network, "JPN").set_index(["element", "stage"])
    assert t.loc[("Dy", "separation"), "eu_sr"] > t.loc[("Nd", "separation"), "eu_sr"]


def test_chokepoints_are_sorted(network):
    top = chokepoints(indicator_table(network, "USA"), 5)
    assert len(top) == 5
    assert (np.diff(top["chokepoint"].to_numpy()) <= 0).all()


def test_unknown_element(network):
    with pytest.raises(ValueError, match="unknown element"):
        indicator_table(network, "USA", ["Xx"])
