"""The chain tables against USGS MCS 2026, read here independently of the build script."""

from __future__ import annotations

import math

import pandas as pd
import pycountry
import pytest

from oreflow.data import DatasetError, load_dataset
from oreflow.data.chain import UnknownChainError
from oreflow.data.raw import default_raw_dir

MCS = default_raw_dir() / "usgs_mcs2026" / "usgs_mcs2026_commodities_data.csv"
NEW_CHAINS = {"Ga": "GALLIUM", "Sb": "ANTIMONY", "W": "TUNGSTEN",
              "graphite_natural": "GRAPHITE (NATURAL)", "Co": "COBALT", "Li": "LITHIUM",
              "Ni": "NICKEL"}
ALL_USGS = {**NEW_CHAINS, "Ge": "GERMANIUM", "REE": "RARE EARTHS"}
NAMES = {"Burma": "MMR", "Congo (Kinshasa)": "COD", "Korea, North": "PRK", "Russia": "RUS",
         "Korea, Republic of": "KOR", "Other countries": "XOT", "World total": "WLD",
         "Turkey": "TUR", "Vietnam": "VNM", "Iran": "IRN", "Laos": "LAO", "Bolivia": "BOL",
         "Tanzania": "TZA"}
needs_raw = pytest.mark.skipif(not MCS.is_file(), reason="raw USGS file not present")


@pytest.fixture(scope="module")
def mcs() -> pd.DataFrame:
    return pd.read_csv(MCS, encoding="cp1252", dtype=str, keep_default_na=False)


def _iso(name: str) -> str:
    return NAMES.get(name) or pycountry.countries.lookup(name).alpha_3


def _number(text: str) -> float | None:
    t = text.strip().replace(",", "")
    if t in ("—",):
        return 0.0
    try:
        return float(t.lstrip("<>"))
    except ValueError:
        return None


def _usgs_world(mcs, chapter: str, year: str) -> dict[str, float]:
    rows = mcs[(mcs["MCS chapter"] == chapter) & mcs["Section"].str.startswith("World")
               & (mcs["Statistics"] == "Production") & (mcs["Year"] == year)]
    per_t = {"kilograms": 1e-3, "metric tons": 1.0}
    out = {}
    for r in rows.itertuples():
        v = _number(r.Value)
        if v is not None:
            out[_iso(r.Country)] = v * per_t[r.Unit]
    return out


@needs_raw
@pytest.mark.parametrize("chain", sorted(NEW_CHAINS))
@pytest.mark.parametrize("year", ["2024", "2025"])
def test_primary_production_by_country_equals_usgs(dataset, mcs, chain, year):
    usgs = _usgs_world(mcs, NEW_CHAINS[chain], year)
    assert len(usgs) >= 4
    c = dataset.chain(chain)
    p = dataset["chain_production"]
    ours = p[(p["chain"] == chain) & (p["stage"] == c.usgs_stage) & (p["year"] == int(year))]
    assert (ours["source_id"] == "usgs_mcs2026").all()
    ours = ours.set_index("region")["value"]
    assert set(ours.index) == set(usgs)
    for region, v in usgs.items():
        assert ours[region] == pytest.approx(v, rel=1e-12), region


def _share(dataset, chain: str, region: str, year: int = 2024) -> float:
    c = dataset.chain(chain)
    p = dataset["chain_production"]
    p = p[(p["chain"] == chain) & (p["stage"] == c.usgs_stage) & (p["year"] == year)]
    world = p.loc[p["region"] == "WLD", "value"].iloc[0]
    return float(p.loc[p["region"] == region, "value"].iloc[0] / world)


@needs_raw
def test_china_dominates_primary_gallium(dataset, mcs):
    assert _share(dataset, "Ga", "CHN") > 0.9
    usgs = _usgs_world(mcs, "GALLIUM", "2024")
    assert usgs["CHN"] / usgs["WLD"] == pytest.approx(_share(dataset, "Ga", "CHN"))


@needs_raw
def test_china_share_of_natural_graphite_mining(dataset, mcs):
    usgs = _usgs_world(mcs, "GRAPHITE (NATURAL)", "2024")
    assert usgs["CHN"] / usgs["WLD"] > 0.7  # 1,270,000 of 1,550,000 t (81.9%)
    assert _share(dataset, "graphite_natural", "CHN") == pytest.approx(usgs["CHN"] / usgs["WLD"])


@needs_raw
@pytest.mark.parametrize("chain", sorted(ALL_USGS))
@pytest.mark.parametrize("year", [2021, 2024, 2025])
def test_us_net_import_reliance_is_usgs(dataset, mcs, chain, year):
    rows = mcs[(mcs["MCS chapter"] == ALL_USGS[chain]) & (mcs["Statistics"] == "Net import "
                                                          "reliance") & (mcs["Year"] == str(year))]
    text = rows["Value"].iloc[0].strip()
    r = dataset.chain(chain).us_net_import_reliance(year)
    assert r is not None and r.text == text
    if text[0] == ">":
        assert (r.qualifier, r.percent) == (">", float(text[1:]))
    elif _number(text) is not None:
        assert r.percent == float(text) and r.qualifier == ""
    else:
        assert math.isnan(r.percent)


def test_headline_reliances(dataset):
    """The numbers in USGS MCS 2026 Figure 2 (2025): Ga and natural graphite 100%, Sb 91%,
    Co 79%, Ni 41%, Ge, Li, W '>50'."""
    expect = {"Ga": "100", "graphite_natural": "100", "Sb": "91", "Co": "79", "Ni": "41",
              "Ge": ">50", "Li": ">50", "W": ">50"}
    for chain, text in expect.items():
        assert dataset.chain(chain).us_net_import_reliance(2025).text == text, chain


def test_every_chain_is_declared_with_sourced_stages(dataset):
    ids = dataset.chain_ids
    assert ids[0] == "REE"
    assert set(ids) == {"REE", "Ga", "Ge", "Sb", "W", "graphite_natural", "graphite_synthetic",
                        "Co", "Li", "Ni"}
    for cid in ids:
        c = dataset.chain(cid)
        assert [s.order for s in c.stages] == sorted(s.order for s in c.stages)
        slots = [s.engine_slot for s in c.stages if s.engine_slot]
        assert len(slots) == len(set(slots)), cid
        assert any(s.end_use for s in c.stages), cid
    st = dataset["chain_stages"]
    assert st["status"].isin(["reported", "estimate", "assumption"]).all()


def test_processing_shares_carry_their_status(dataset):
    """Refinery and processing rows that are not from USGS are labelled estimate or
    assumption, never reported."""
    p = dataset["chain_production"]
    curated = p[p["source_id"] != "usgs_mcs2026"]
    assert len(curated) > 20
    assert curated["status"].isin(["estimate", "assumption"]).all()
    assert (curated["note"].str.len() > 0).all()


def test_stage_shares_do_not_exceed_one(dataset):
    p = dataset["chain_production"]
    s = p[p["unit"] == "share"].groupby(["chain", "stage"])["value"].sum()
    assert (s <= 1.001).all(), s[s > 1.001]


def test_us_use_is_usgs_consumption_where_published(dataset, mcs):
    d = dataset["chain_demand"].query("region == 'USA' and year == 2024").set_index("chain")
    assert d.loc["Ga", "value"] == pytest.approx(18.7)  # 18,700 kg reported
    assert d.loc["Sb", "value"] == 28_600 and d.loc["Ni", "value"] == 90_300
    assert d.loc["Ga", "status"] == "reported"
    # withheld consumption: net imports over the stated reliance, labelled an assumption
    assert d.loc["Li", "status"] == "assumption"
    assert d.loc["Li", "value"] == pytest.approx((3_020 - 1_690) / 0.75)


def test_prices_per_kg_of_basis(dataset):
    p = dataset["chain_prices"].set_index(["chain", "form", "zone", "year"])
    assert p.loc[("Sb", "antimony metal 99.65%", "ROW", 2024), "usd_per_kg_basis"] == \
        pytest.approx(10.24 / 0.45359237)
    assert p.loc[("W", "tungsten concentrate", "ROW", 2024), "usd_per_kg_basis"] == \
        pytest.approx(252 / 7.93)
    assert p.loc[("Ga", "gallium metal (US import unit value)", "ROW", 2024), "value"] == 439


def test_controls_name_their_commodity(dataset):
    ctl = dataset["export_controls"].set_index("regime")
    assert set(ctl.loc["cn-ga-ge-2023", "commodities"].split(";")) == {"Ga", "Ge"}
    assert ctl.loc["cn-ga-ge-2023", "effective"] == "2023-08-01"
    assert ctl.loc["cn-graphite-2023-12", "effective"] == "2023-12-01"
    assert ctl.loc["cn-sb-2024-09", "effective"] == "2024-09-15"
    assert ctl.loc["cn-w-2025-02", "effective"] == "2025-02-04"
    assert ctl.loc["cn-us-ban-2024-12", "state"] == "suspended"
    assert ctl.loc["cd-cobalt-quota-2025-10", "origin"] == "COD"


def test_unknown_commodity_lists_the_allowed(dataset):
    with pytest.raises(UnknownChainError) as e:
        dataset.chain("unobtainium")
    assert "Ga" in str(e.value) and "graphite_natural" in str(e.value)
    assert dataset.chain("GALLIUM").id == "Ga" and dataset.chain("graphite").id == \
        "graphite_natural"


def test_undeclared_stage_is_a_clear_error(dataset_copy):
    f = dataset_copy / "chain_production.csv"
    text = f.read_text().replace("Ga,primary,CHN,2024", "Ga,primery,CHN,2024", 1)
    f.write_text(text)
    with pytest.raises(DatasetError) as e:
        load_dataset(dataset_copy)
    msg = str(e.value)
    assert "chain_production.csv, line" in msg and "no stage 'primery'" in msg
    assert "primary, refined, wafer" in msg
