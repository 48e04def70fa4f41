"""The base-year network: mass balance, published shares, and consistency with the sources."""

from __future__ import annotations

import numpy as np
import pytest

from oreflow.network import BALANCE_RTOL


def test_base_year_is_2024(network):
    assert network.year == 2024


def test_mining_equals_usgs_country_rows(network, dataset):
    """Element flows add back to the USGS country rows (splits are written to 4 digits), and
    those rows to the rounded USGS world total (380,000 t in 2024) within 2%."""
    mp = dataset["mine_production"].query("year == 2024")
    countries = mp.loc[mp["region"] != "WLD", "t_reo"].sum()
    assert float(network.mine_t.sum()) == pytest.approx(countries, rel=1e-4)
    assert countries == pytest.approx(380_000, rel=0.02)


def test_world_balance_closes(network):
    """Output of each stage = input of the next + end use of its form (+ losses accounted)."""
    network.check_balance()
    b = network.balance()
    assert b["rel_residual"].abs().max() <= BALANCE_RTOL


def test_mass_flows_through_the_chain(network):
    """Mined REO = end use + process losses, per element (nothing appears or vanishes)."""
    mined = network.mine_t.sum("region")
    end_use = network.demand_t.sum(("sector", "region"))
    losses = network.losses_t.sum(("stage", "region"))
    np.testing.assert_allclose(mined, end_use + losses, rtol=1e-9)


def test_trade_rows_and_columns_close(network):
    """Each region's shipments sum to its output and its receipts to its use."""
    flows = network.trade_t
    np.testing.assert_allclose(flows.sum("dest"), network.production_t.rename(region="origin"),
                               rtol=1e-9, atol=1e-6)
    np.testing.assert_allclose(flows.sel(stage=["separation", "metal", "magnet"]).sum("origin"),
                               network.use_t.sel(stage=["separation", "metal", "magnet"])
                               .rename(region="dest"), rtol=1e-9, atol=1e-6)


def test_china_share_of_2024_mining(network):
    prod = network.production_t.sel(stage="mining").sum("element")
    share = float(prod.sel(region="CHN") / prod.sum())
    assert 0.6 <= share <= 0.75


@pytest.mark.parametrize("element", ["Dy", "Tb"])
def test_china_dominates_heavy_separation(network, element):
    sep = network.production_t.sel(stage="separation", element=element)
    assert float(sep.sel(region="CHN") / sep.sum()) >= 0.85


def test_element_mix_is_mostly_light(network):
    """La+Ce+Pr+Nd are 80-99% of REO (USGS Fact Sheet 087-02)."""
    mined = network.mine_t.sum("region")
    light4 = float(mined.sel(element=["La", "Ce", "Pr", "Nd"]).sum() / mined.sum())
    assert 0.8 <= light4 <= 0.99


def test_no_flow_for_unproduced_elements(network):
    assert float(network.production_t.sel(element="Pm").sum()) == 0.0


def test_consistency_with_published_figures(network):
    """Independent figures the network was not fitted to land in a plausible band."""
    c = network.consistency_checks().set_index("check")["network"]
    assert 0.85 <= c["China share of separation (REO)"] <= 0.97
    assert 0.88 <= c["China share of magnet output"] <= 0.95
    assert 150 <= c["World NdFeB output implied, kt"] <= 350
    assert 0.15 <= c["Magnets share of REO use by volume"] <= 0.40
    assert 4_500 <= c["US use of compounds and metals, t"] <= 18_000
