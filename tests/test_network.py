"""The base-year network: built from demand, balanced, and consistent with the sources."""

from __future__ import annotations

import numpy as np
import pytest

from oreflow.network import BALANCE_RTOL, allocate_trade


def test_base_year_is_2024(network):
    assert network.year == 2024


def test_mining_equals_usgs_country_rows_plus_customs_estimates(network, dataset):
    """Element flows add back to the mine rows (USGS, plus Laos from China's customs data),
    and the USGS rows to the rounded USGS world total (380,000 t in 2024) within 2%."""
    mp = dataset["mine_production"].query("year == 2024 and region != 'WLD'")
    assert float(network.mine_t.sum()) == pytest.approx(mp["t_reo"].sum(), rel=1e-4)
    usgs = mp[mp["source_id"] == "usgs_mcs2026"]["t_reo"].sum()
    assert usgs == pytest.approx(380_000, rel=0.02)


def test_every_stage_balances(network):
    """Output = use + stock change at every stage, per element (the tolerance is rounding)."""
    network.check_balance()
    assert network.balance()["rel_residual"].abs().max() <= BALANCE_RTOL


def test_mass_flows_through_the_chain(network):
    """Mined + unrecorded supply = end use + losses + unsold stock, per element."""
    supply = network.mine_t.sum("region") + network.unrecorded_t
    out = (network.demand_t.sum(("sector", "region")) + network.losses_t.sum(("stage", "region"))
           + network.stock_change_t.sum(("stage", "region")))
    np.testing.assert_allclose(supply, out, rtol=1e-9, atol=1e-6)


def test_trade_rows_and_columns_close(network):
    """A region ships what it makes and does not keep, and receives what it uses."""
    flows = network.trade_t.sel(stage=["separation", "metal", "magnet"])
    prod = network.production_t.sel(stage=["separation", "metal", "magnet"])
    kept = network.stock_change_t.sel(stage=["separation", "metal", "magnet"])
    np.testing.assert_allclose(flows.sum("dest"), (prod - kept).rename(region="origin"),
                               rtol=1e-9, atol=1e-6)
    np.testing.assert_allclose(flows.sum("origin"), network.use_t.sel(
        stage=["separation", "metal", "magnet"]).rename(region="dest"), rtol=1e-9, atol=1e-6)


@pytest.mark.parametrize("element", ["Nd", "Pr", "Dy", "Tb"])
def test_one_magnet_tonnage_whichever_element_counts_it(network, element):
    """One product per grade: the tonnage implied by each element's flow into magnets agrees
    (within 2%; by construction it is exact)."""
    implied = network.magnet_tonnage_by_element(("Nd", element))
    assert implied[element] == pytest.approx(implied["Nd"], rel=0.02)
    assert implied["Nd"] == pytest.approx(float(network.magnet_demand_t.sum()), rel=1e-9)


def test_published_magnet_output_compared_on_the_same_basis(network):
    """The ~250-300 kt/yr published figure counts sintered blanks: the network's blanks
    (finished sintered magnets / machining yield) must land in that range."""
    c = network.consistency_checks().set_index("check")
    assert "blanks" in c.loc["World sintered NdFeB blanks, kt", "basis"]
    assert 230 <= c.loc["World sintered NdFeB blanks, kt", "network"] <= 320


def test_surplus_elements_go_to_unsold_stock_mostly_in_china(network):
    s = network.surplus()
    for e in ("La", "Ce"):
        assert s.loc[e, "surplus_t"] > 0.1 * s.loc[e, "use_t"]
        assert s.loc[e, "surplus_in_china_t"] >= 0.8 * s.loc[e, "surplus_t"]
    # no element is pushed into invented use: use is what the sectors demand
    demanded = network.world_demand_t.sum("sector")
    assert float(demanded.sel(element="Sm")) < float(network.separation_t.sel(element="Sm")
                                                      .sum())


@pytest.mark.parametrize("origin", ["MYS", "LAO", "MMR"])
def test_flows_into_china_match_the_customs_data(network, origin):
    """China's 2024 HS 2846 imports (UN Comtrade) x the REO content USGS implies for Myanmar:
    the network ships the same into China, within 10%."""
    c = network.consistency_checks().set_index("check")
    row = c.loc[f"{origin} -> CHN concentrate and compounds, t REO"]
    assert row["network"] == pytest.approx(row["published"], rel=0.10)


@pytest.mark.parametrize("element", ["Dy", "Tb"])
def test_no_heavy_separation_in_the_us(network, element):
    """USGS MCS 2026: US net import reliance 100% for heavy rare-earth compounds and metals."""
    assert float(network.production_t.sel(stage="separation", region="USA",
                                          element=element)) == 0.0


def test_metal_shares_differ_by_element(network):
    metal = network.production_t.sel(stage="metal")
    share = (metal.sel(region="CHN") / metal.sum("region")).to_series().dropna().round(3)
    assert share["Nd"] < share["Dy"]
    assert len(set(share)) >= 3


def test_china_dominates_heavy_separation(network):
    for e in ("Dy", "Tb"):
        sep = network.production_t.sel(stage="separation", element=e)
        assert float(sep.sel(region="CHN") / sep.sum()) >= 0.95


def test_no_flow_for_unproduced_elements(network):
    assert float(network.production_t.sel(element="Pm").sum()) == 0.0


def test_allocation_hand_case():
    """Two origins, two destinations, one element: own use first, a committed route, the
    rest pooled pro rata, the unsold remainder kept."""
    prod = np.array([[10.0, 4.0, 0.0]])
    use = np.array([[2.0, 1.0, 6.0]])
    by_dest = np.zeros((1, 3, 3))
    by_origin = np.zeros((1, 3, 3))
    by_origin[0, 1, 0] = 1.0  # origin 1 ships all its exports to region 0 (which has plenty)
    flows, kept = allocate_trade(prod, use, by_dest, by_origin)
    assert flows[0, 1, 0] == pytest.approx(3.0)  # committed, displacing region 0's own output
    assert flows[0, 0, 0] == pytest.approx(0.0)
    assert flows[0, 0, 2] == pytest.approx(6.0)  # pooled: region 0 is the only seller left
    # region 0 keeps its 4 t it could not sell and 1 t of the import beyond its use
    assert kept[0, 0] == pytest.approx(5.0)
    np.testing.assert_allclose(flows.sum(1)[0], [3.0, 1.0, 6.0])
    np.testing.assert_allclose(flows.sum(2)[0] + kept[0] - [1.0, 0.0, 0.0], prod[0])
