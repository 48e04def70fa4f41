"""Magnets in use and recycling: stock mass balance, hand-computed cases, secondary-supply
bounds, the CLI, and recycling in the stress engine (common random numbers)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr
from typer.testing import CliRunner

from oreflow.cli import app
from oreflow.data import DatasetError, load_dataset
from oreflow.mfa import FixedLifetime, check_mass_balance
from oreflow.scenario import ScenarioError, parse_scenario
from oreflow.simulate import run_stress
from oreflow.simulate.kernel import SINGLE
from oreflow.simulate.market import market_base
from oreflow.simulate.recycling import recycling_base
from oreflow.stocks import (
    StocksError,
    magnet_inflows,
    magnet_stocks,
    recycling_parameters,
    secondary_supply,
)


@pytest.fixture(scope="module")
def stocks(network):
    return magnet_stocks(network)


def _time(da: xr.DataArray) -> xr.DataArray:
    return da.rename(year="time").transpose("time", ...)


@pytest.mark.parametrize("unit", ["element", "magnet"])
def test_inflow_minus_eol_is_stock_change(stocks, unit):
    """Mass balance of the stock in use, every year, region, sector (and element)."""
    check_mass_balance(_time(stocks[f"inflow_t_{unit}"]), _time(stocks[f"eol_t_{unit}"]),
                       _time(stocks[f"stock_t_{unit}"]))
    # and by hand for one series: the stock at the end is everything that came in and left
    s = stocks.sel(region="XEU", sector="wind", element="Dy")
    assert float(s["stock_t_element"][-1]) == pytest.approx(
        float(s["inflow_t_element"].sum() - s["eol_t_element"].sum()), rel=1e-12)


def test_eol_never_exceeds_cumulative_inflow(stocks):
    for unit in ("element", "magnet"):
        cum_in = stocks[f"inflow_t_{unit}"].cumsum("year")
        cum_out = stocks[f"eol_t_{unit}"].cumsum("year")
        assert bool((cum_out <= cum_in * (1 + 1e-12)).all())
        assert bool((stocks[f"stock_t_{unit}"] >= -1e-9).all())


def test_base_year_inflow_is_the_networks_magnet_use(network, stocks, dataset):
    """The stocks and the stress engine share one base year."""
    mpo = dataset["elements"].set_index("element")["metal_per_oxide"]
    for e in ("Nd", "Dy", "Tb"):
        net_t = float(network.enduse_by_form_t("magnet").sel(element=e).sum()) * mpo[e]
        ours = float(stocks["inflow_t_element"].sel(year=network.year, element=e).sum())
        assert ours == pytest.approx(net_t, rel=1e-12)


def test_history_follows_output_sector_shares_and_thrifting(network, stocks, dataset):
    inflow = stocks["inflow_t_magnet"].sum(("region", "sector"))
    assert bool((inflow.diff("year") > 0).all())  # world magnet output only grew
    h = dataset["magnet_history"].query("quantity == 'world_output_t_magnet'")
    out = h.set_index("year")["value"]
    sh = dataset["magnet_sector_history"].query("sector == 'wind'").set_index("year")["share"]
    wind = stocks["inflow_t_magnet"].sel(sector="wind", region="XEU")
    # a sector's inflow follows world output x its share of magnet mass, from the base year
    assert float(wind.sel(year=2010) / wind.sel(year=network.year)) == pytest.approx(
        out[2010] / out[network.year] * sh[2010] / sh[network.year], rel=1e-12)
    ratio = float(inflow.sel(year=2010) / inflow.sel(year=network.year))
    assert ratio == pytest.approx(out[2010] / out[network.year], rel=0.05)
    assert float(stocks["inflow_t_magnet"].sel(year=1995, sector="ev_motors").sum()) == 0.0
    # Dy per tonne of magnet: twice today's before the 2010-11 thrifting (heavy_ree_index)
    per_t = stocks["inflow_t_element"].sel(element="Dy") / stocks["inflow_t_magnet"]
    w = per_t.sel(region="USA", sector="wind")
    assert float(w.sel(year=2005) / w.sel(year=network.year)) == pytest.approx(2.0, rel=1e-12)
    nd = (stocks["inflow_t_element"].sel(element="Nd") / stocks["inflow_t_magnet"]).sel(
        region="USA", sector="wind")
    assert float(nd.sel(year=2005) / nd.sel(year=network.year)) == pytest.approx(1.0, rel=1e-12)


def test_fixed_lifetime_hand_case(network):
    """A 1-year lifetime with mid-year entry: in stock at the end of its year, out the next."""
    s = magnet_stocks(network, start_year=2020, lifetime=FixedLifetime(1.0))
    i, o, k = s["inflow_t_element"], s["eol_t_element"], s["stock_t_element"]
    xr.testing.assert_allclose(k, i)
    xr.testing.assert_allclose(o.isel(year=slice(1, None)),
                               i.isel(year=slice(None, -1)).assign_coords(year=o.year[1:]))
    assert float(o.isel(year=0).max()) == 0.0


def test_projection_grows_inflow(network):
    s = magnet_inflows(network, start_year=2020, end_year=2030, growth_per_year=0.05)
    i = s["inflow_t_element"].sum(("region", "sector"))
    assert float(i.sel(year=2030, element="Nd") / i.sel(year=2024, element="Nd")) == \
        pytest.approx(1.05 ** 6, rel=1e-12)


def test_secondary_supply_hand_case():
    """eol 100 t magnets (23 t Nd), collection 0.5, pre-processing 0.6, recovery 0.9."""
    eol_el = xr.DataArray([[23.0]], dims=("sector", "element"),
                          coords={"sector": ["wind"], "element": ["Nd"]})
    eol_mag = xr.DataArray([100.0], dims="sector", coords={"sector": ["wind"]})
    free = secondary_supply(eol_el, eol_mag, 0.5, 0.6, 0.9, 1e9)
    assert float(free["feed_t_magnet"]) == pytest.approx(30.0)
    assert float(free["secondary_potential_t"].sum()) == pytest.approx(0.9 * 0.5 * 0.6 * 23)
    tight = secondary_supply(eol_el, eol_mag, 0.5, 0.6, 0.9, 20.0)
    assert float(tight["processed_t_magnet"]) == pytest.approx(20.0)
    assert float(tight["secondary_potential_t"].sum()) == pytest.approx(
        0.9 * 0.5 * 0.6 * 23 * 20 / 30)


def test_secondary_is_bounded_and_monotone_in_collection(network):
    runs = [magnet_stocks(network, start_year=2000, collection_rate=c,
                          capacity_t_magnet_per_year={"XEU": 500.0})
            for c in (0.0, 0.1, 0.3, 0.9)]
    for s in runs:
        sec = s["secondary_potential_t"]
        cap = s["collection_rate"] * s["preprocessing_yield"] * s["recovery_yield"]
        assert bool((sec <= cap * s["eol_t_element"] * (1 + 1e-12) + 1e-12).all())
        # what the recyclers process never exceeds their capacity
        assert bool((s["processed_t_magnet"] <= s["capacity_t_magnet_per_year"] + 1e-9).all())
    totals = [float(s["secondary_potential_t"].sum()) for s in runs]
    assert totals[0] == 0.0
    assert all(b > a for a, b in zip(totals, totals[1:], strict=False))
    eu = [float(s["processed_t_magnet"].sel(region="XEU", year=2024)) for s in runs]
    assert eu[-1] == pytest.approx(500.0)  # the EU's 500 t capacity binds at 90% collection


def test_bad_inputs_name_the_field(network, dataset_copy):
    with pytest.raises(StocksError, match="unknown region"):
        magnet_stocks(network, collection_rate={"ATL": 0.5})
    with pytest.raises(StocksError, match=r"collection_rate must lie in \[0, 1\]"):
        magnet_stocks(network, collection_rate=1.5)
    with pytest.raises(StocksError, match="start_year 1950: allowed 1990..2024"):
        magnet_inflows(network, start_year=1950)
    f = dataset_copy / "recycling.csv"
    f.write_text(f.read_text().replace("XEU,collection_rate,0.01", "XEU,collection_rate,1.7"))
    # the dataset's validation refuses it first, naming file, line and range (issue 11)
    with pytest.raises(DatasetError, match=r"recycling.csv, line \d+, column 'value': "
                                           r"collection_rate = 1.7 is outside its range"):
        recycling_parameters(load_dataset(dataset_copy))


# ---- CLI -----------------------------------------------------------------------------------

def test_cli_json_matches_the_api(stocks):
    res = CliRunner().invoke(app, ["stocks", "--element", "Dy", "--region", "EU", "--format",
                                   "json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["region"] == "XEU" and out["year"] == 2024
    total = next(r for r in out["by_sector"] if r["sector"] == "all sectors")
    eu = stocks.sel(region="XEU", element="Dy", year=2024)
    assert total["stock_t"] == pytest.approx(float(eu["stock_t_element"].sum()))
    assert total["eol_t"] == pytest.approx(float(eu["eol_t_element"].sum()))
    assert total["secondary_potential_t"] == pytest.approx(
        float(eu["secondary_potential_t"].sum()))
    assert {r["sector"] for r in out["by_sector"]} >= {"ev_motors", "wind", "all sectors"}
    assert [r["year"] for r in out["by_year"]][:2] == [1990, 1991]
    status = {r["year"]: r["output_status"] for r in out["by_year"]}
    assert (status[1990], status[2010], status[2015]) == ("assumption", "reported", "estimate")


def test_cli_collection_rate_raises_secondary():
    def eu(rate):
        args = ["stocks", "-e", "Nd", "-r", "XEU", "--format", "json"]
        res = CliRunner().invoke(app, args + (["--collection-rate", str(rate)] if rate else []))
        assert res.exit_code == 0, res.output
        rows = json.loads(res.stdout)["by_sector"]
        return next(r for r in rows if r["sector"] == "all sectors")["secondary_potential_t"]

    assert eu(0.2) == pytest.approx(20 * eu(None), rel=1e-9)  # 0.01 -> 0.2, capacity slack


@pytest.mark.parametrize(("args", "message"), [
    (["--element", "Xx"], "unknown element 'Xx'; allowed (elements in magnets): Ce, Dy, Gd"),
    (["--region", "Mars"], "unknown region 'Mars'; allowed (any case): regions: CHN, IND, JPN"),
    (["--region", "Mars"], "blocs: EU, G7, MSP, QUAD; member states"),
    (["--year", "2030"], "year 2030: allowed 1990..2024"),
])
def test_cli_bad_names(args, message):
    res = CliRunner().invoke(app, ["stocks", *args])
    assert res.exit_code != 0
    assert message in " ".join(res.output.split())


# ---- recycling in the stress engine --------------------------------------------------------

def _long_controls(collection: float | None, months: int = 72) -> str:
    rec = "" if collection is None else "".join(f"""
  - type: recycling
    region: {r}
    start: 3
    ramp_months: 24
    collection_rate: {collection}
    capacity_t_magnet_per_year: 20000
""" for r in ("USA", "XEU", "JPN", "KOR"))
    return f"""
name: crn-recycling
start: "2025-04"
months: {months}
shocks:
  - type: export_control
    elements: [Sm, Gd, Tb, Dy, Lu, Y]
    start: {{dist: uniform, low: 0, high: 3}}
    approval: [[0, 0.1], [2, 0.5], [6, 0.7]]
    approval_scale: {{dist: uniform, low: 0.6, high: 1.1}}
""" + rec


class _Secondary:
    """Observer: recycled oxide above the base year, per month, [P, E] summed over regions."""

    def __init__(self):
        self.by_month = {}

    def start_block(self, engine, paths):
        pass

    def end_block(self, engine, paths):
        pass

    def on_month(self, v):
        self.by_month[v.t] = v.secondary_t.sum(1).copy()


def test_higher_collection_lowers_ex_china_shortfall(network):
    """Common random numbers: same seed and draws, only the collection rate differs."""
    runs = [run_stress(parse_scenario(_long_controls(c), network=network), paths=60, seed=17,
                       network=network) for c in (0.05, 0.4)]
    low, high = (float(r["unmet_physical_t"].drop_sel(region="CHN").sum()) for r in runs)
    assert high < low
    for r in runs:
        assert r.attrs["max_rel_balance_residual"] < 1e-9
    # more secondary Dy and Tb with the higher rate, on every path
    for e in ("Dy", "Tb"):
        assert bool((runs[1]["secondary_added_t"].sel(element=e)
                     > runs[0]["secondary_added_t"].sel(element=e)).all())


def test_baseline_recycling_adds_nothing_and_ramps_to_the_stock_model(network):
    """Today's recycling is in the base-year flows; a policy adds what lies above it, equal
    to the stock model's secondary supply once ramped (no price signal in a calm market)."""
    base = run_stress("licensing-2025-04", paths=20, seed=1, network=network)
    assert float(np.abs(base["secondary_added_t"]).max()) == 0.0
    text = """
name: eu-only
start: "2025-01"
months: 24
shocks:
  - type: recycling
    region: XEU
    start: 0
    ramp_months: 6
    collection_rate: 0.3
"""
    seen = _Secondary()
    ds = run_stress(parse_scenario(text, network=network), paths=4, seed=0, network=network,
                    observers=[seen])
    assert ds.attrs["max_rel_balance_residual"] < 1e-9
    rb = recycling_base(network, "CHN", market_base(network).elements)
    coll = rb.collection_rate.copy()
    coll[rb.regions.index("XEU")] = 0.3
    expected = (rb.secondary_t(coll, rb.preprocessing_yield, rb.capacity_t_magnet)
                - rb.secondary_t(rb.collection_rate, rb.preprocessing_yield,
                                 rb.capacity_t_magnet))
    late = seen.by_month[12][0]  # landed in the kernel's single-precision rows
    np.testing.assert_allclose(late, expected, rtol=np.finfo(SINGLE).eps, atol=1e-12)
    first = seen.by_month[0][0]  # month 0 of a 6-month ramp: 1/12 of the way
    np.testing.assert_allclose(first, late / 12, rtol=2 * np.finfo(SINGLE).eps, atol=1e-15)
    assert late.max() > 0


def test_capacity_grows_after_its_lead_time_when_prices_are_high(network):
    """Collection far above capacity: recycled Dy is flat until prices have been high for
    the lead time (30 months), then capacity and secondary supply grow."""
    text = _long_controls(None, months=60) + """
  - type: recycling
    region: XEU
    collection_rate: 0.6
"""
    obs = _Secondary()
    run_stress(parse_scenario(text, network=network), paths=8, seed=3, network=network,
               observers=[obs])
    seen = obs.by_month
    dy = market_base(network).elements.index("Dy")
    flat = [seen[t][:, dy] for t in (1, 10, 25)]
    np.testing.assert_allclose(flat[0], flat[1])
    np.testing.assert_allclose(flat[0], flat[2])
    assert bool((seen[55][:, dy] > flat[0] * 1.05).all())


@pytest.mark.parametrize(("shock", "message"), [
    ("    region: CHN\n    collection_rate: 0.5\n", "recycling.region 'CHN'"),
    ("    region: XEU\n    collection_rate: 0.001\n", "below the base-year value"),
    ("    region: XEU\n", "needs at least one target"),
    ("    region: XEU\n    capacity_factor: 2\n    capacity_t_magnet_per_year: 5\n",
     "not both"),
])
def test_bad_recycling_shocks(network, shock, message):
    text = f"name: x\nstart: '2025-01'\nmonths: 3\nshocks:\n  - type: recycling\n{shock}"
    with pytest.raises((ScenarioError, ValueError), match=".") as exc:
        run_stress(parse_scenario(text, "bad.yaml", network), paths=2, network=network)
    assert message in str(exc.value)
