"""The HTML report and table exports: the Sankey closes, the fans are ordered, the report
carries its provenance and opens offline, exports round-trip, the CLI fails cleanly."""

from __future__ import annotations

import io
import json
import re
import zipfile

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from typer.testing import CliRunner

from oreflow.cli import app
from oreflow.report import (
    LOSSES,
    ReportError,
    export_bytes,
    export_tables,
    fan_figure,
    figures,
    headline_tables,
    load_result,
    node_balance,
    render_report,
    sankey_links,
    write_report,
)
from oreflow.simulate import run_stress, save_result


@pytest.fixture(scope="module")
def result(network):
    return run_stress("licensing-2025-04", paths=120, seed=17, months=12, network=network)


@pytest.fixture(scope="module")
def result_file(result, tmp_path_factory):
    return save_result(result, tmp_path_factory.mktemp("res") / "licensing.nc")


@pytest.fixture(scope="module")
def html(result, network):
    return render_report(result, network)


# ---- Sankey --------------------------------------------------------------------------------
def test_sankey_every_stage_node_closes(network):
    """inflow = outflow + process losses at every separation, metal and magnet node."""
    links = sankey_links(network)
    assert (links["t"] > 0).all()
    bal = node_balance(links)
    stage_nodes = [n for n in bal.index if n.split(" · ")[0] in ("Separation", "Metal",
                                                                   "Magnets")]
    assert len(stage_nodes) >= 6
    for node in stage_nodes:
        row = bal.loc[node]
        assert row["inflow_t"] > 0
        np.testing.assert_allclose(row["inflow_t"], row["outflow_t"] + row["loss_t"],
                                   rtol=1e-9, err_msg=node)
        assert row["loss_t"] > 0  # every stage after mining loses something


def test_sankey_sources_and_sinks_match_the_network(network):
    links = sankey_links(network)
    bal = node_balance(links)
    mining = bal[bal.index.str.startswith("Mining · ")]
    assert (mining["inflow_t"] == 0).all()
    np.testing.assert_allclose(mining["outflow_t"].sum(), float(network.mine_t.sum()),
                               rtol=1e-9)
    np.testing.assert_allclose(bal.loc["Unsold stock", "inflow_t"],
                               float(network.stock_change_t.sum()), rtol=1e-9)
    demand = network.world_demand_t.sum("element").to_series()
    for sector, t in demand.items():
        if t > 0:
            np.testing.assert_allclose(bal.loc[sector, "inflow_t"], t, rtol=1e-9)
            assert bal.loc[sector, "outflow_t"] == 0
    np.testing.assert_allclose(bal.loc[LOSSES, "inflow_t"],
                               float(network.losses_t.sum()), rtol=1e-9)


def test_sankey_is_by_country_with_small_ones_grouped(network):
    links = sankey_links(network, min_share=0.01)
    nodes = set(links["source"]) | set(links["target"])
    assert {"Mining · CHN", "Separation · CHN", "Metal · CHN", "Magnets · CHN"} <= nodes
    assert "Mining · AUS" in nodes and "Magnets · JPN" in nodes
    every = sankey_links(network, min_share=0.0)
    assert len(set(every["source"])) > len(set(links["source"]))
    np.testing.assert_allclose(every["t"].sum(), links["t"].sum(), rtol=1e-12)


# ---- fan charts --------------------------------------------------------------------------
@pytest.mark.parametrize("var", ["price_usd_per_kg", "unmet_month_t"])
def test_fan_bands_are_ordered_and_match_the_result(result, var):
    fig = fan_figure(result, var, "t", "u")
    bands: dict[tuple, dict[float, np.ndarray]] = {}
    for tr in fig["data"]:
        m = tr["meta"]
        bands.setdefault((m["element"], m["region"]), {})[m["q"]] = np.asarray(tr["y"], float)
    assert len(bands) >= 10
    for (element, region), b in bands.items():
        assert set(b) == {0.05, 0.5, 0.95}
        assert np.all(b[0.05] <= b[0.5] + 1e-9) and np.all(b[0.5] <= b[0.95] + 1e-9)
        np.testing.assert_allclose(b[0.5], result[var].sel(quantile=0.5, element=element,
                                                            region=region).values)
    visible = [tr for tr in fig["data"] if tr["visible"]]
    assert len(visible) == 6  # one element at a time: 3 traces x (controller, perspective)


def test_default_element_is_one_that_moves(result):
    fig = fan_figure(result, "price_usd_per_kg", "t", "u")
    shown = {tr["meta"]["element"] for tr in fig["data"] if tr["visible"]}
    # a licensed element, or one carried in the licensed magnets
    assert shown & {"Dy", "Tb", "Sm", "Gd", "Y", "Lu", "Nd", "Pr", "Ho"}
    (e,) = shown
    peak = result["price_peak_ratio_outside"].sel(element=e).median("path")
    assert float(peak) > 1.5  # it moves
    nd = fan_figure(result, "price_usd_per_kg", "t", "u", pick="Nd")
    assert {tr["meta"]["element"] for tr in nd["data"] if tr["visible"]} == {"Nd"}
    assert nd["layout"]["title"]["text"] == "t: Nd"


# ---- monthly physical shortage by sector --------------------------------------------------
def test_sector_months_add_up_to_the_horizon_shortfall(network):
    """The monthly sector bands and the horizon totals come from the same shortage: on a
    deterministic scenario (every path alike) the monthly medians add up to the total."""
    ds = run_stress("heavy-embargo-usa-12m", paths=4, seed=8, months=18, network=network)
    monthly = ds["unmet_sector_t"].sel(quantile=0.5).sum("month")
    total = ds["unmet_physical_t"].median("path")
    assert float(total.max()) > 1  # the scenario does leave sectors short
    np.testing.assert_allclose(monthly.transpose("region", "sector").values,
                               total.transpose("region", "sector").values, rtol=1e-5, atol=1e-3)


def test_sector_fan_is_ordered_and_opens_on_the_largest(result):
    band = result["unmet_sector_t"]
    assert band.dims == ("quantile", "month", "region", "sector")
    assert (band.sel(quantile=0.05) <= band.sel(quantile=0.5) + 1e-6).all()
    assert (band.sel(quantile=0.5) <= band.sel(quantile=0.95) + 1e-6).all()
    figs = figures(result)
    assert list(figs) == ["prices", "unmet_sector", "unmet", "sectors"]
    shown = {tr["meta"]["sector"] for tr in figs["unmet_sector"]["data"] if tr["visible"]}
    big = band.sel(quantile=0.5).sum(("month", "region"))
    assert shown == {str(big["sector"].values[int(np.argmax(big.values))])}


def test_sector_bands_export(result, tmp_path):
    tables = headline_tables(result)
    t = tables["monthly_sector"]
    row = t[(t["region"] == "USA") & (t["month"] == 4)].sort_values("p50").iloc[-1]
    assert row["p50"] == pytest.approx(float(result["unmet_sector_t"].sel(
        quantile=0.5, region="USA", month=4, sector=row["sector"])))
    (back,) = [p for p in export_tables(tables, "csv", tmp_path) if p.stem == "monthly_sector"]
    _same(pd.read_csv(back), t)


# ---- the report ----------------------------------------------------------------------------
def test_report_carries_provenance(result, html):
    a = result.attrs
    assert f'<meta name="oreflow-seed" content="{a["seed"]}">' in html
    assert a["dataset_version"] in html and a["scenario"] in html
    assert a["scenario_sha256"] in html
    assert re.search(r"<td>Seed</td><td>17</td>", html)
    for chart in ("chart-sankey", "chart-prices", "chart-unmet", "chart-sectors"):
        assert f'id="{chart}"' in html


def test_report_shows_what_to_read_the_figures_with(result, html):
    """The run's notes (controls widened, prices not linked by arbitrage, lows at the
    numerical floor, ...) stand beside the headline figures, not only in the JSON."""
    from markupsafe import escape

    notes = json.loads(result.attrs["notes"])
    assert notes and 'id="run-notes"' in html
    for n in notes:
        assert str(escape(n)) in html


def test_report_opens_offline(html):
    """Plotly.js is inlined; nothing is fetched from anywhere."""
    assert len(html) > 3_000_000  # plotly.min.js is inside
    tags = re.findall(r"<(?:script|link|img|iframe)\b[^>]*>", html)
    assert not [t for t in tags if re.search(r"\b(?:src|href)\s*=", t)], tags
    assert "cdn.plot.ly/plotly" not in html


def test_report_headline_table_matches_the_result(result, html):
    t = headline_tables(result)["sectors"]
    top = t.iloc[0]
    assert top["unmet_physical_t_p50"] == pytest.approx(
        float(result["unmet_physical_t"].sum("region").sel(sector=top["sector"])
              .median("path")))
    assert f"<td>{top['sector']}</td>" in html
    assert format(top["unmet_physical_t_p50"], ",.0f") in html
    assert (t["unmet_physical_t_p5"] <= t["unmet_physical_t_p50"]).all()
    assert (t["unmet_physical_t_p50"] <= t["unmet_physical_t_p95"]).all()


def test_write_report_is_atomic(result, network, tmp_path, monkeypatch):
    target = tmp_path / "r.html"
    target.write_text("old")
    import oreflow.report as rep

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(rep, "render_report", boom)
    with pytest.raises(RuntimeError):
        write_report(result, target, network)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]


# ---- exports -------------------------------------------------------------------------------
def _same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True),
                                  check_dtype=False, check_exact=False, rtol=1e-12)


@pytest.mark.parametrize("fmt", ["csv", "xlsx", "parquet"])
def test_exports_round_trip(result, tmp_path, fmt):
    tables = headline_tables(result)
    written = export_tables(tables, fmt, tmp_path, stem="run")
    if fmt == "xlsx":
        assert [p.name for p in written] == ["run.xlsx"]
        back = pd.read_excel(written[0], sheet_name=None)
    else:
        assert sorted(p.name for p in written) == sorted(f"{n}.{fmt}" for n in tables)
        read = pd.read_csv if fmt == "csv" else pd.read_parquet
        back = {p.stem: read(p) for p in written}
    assert set(back) == set(tables)
    for name in ("sectors", "prices", "monthly"):
        _same(back[name], tables[name])
    assert dict(zip(back["run"]["key"], back["run"]["value"].astype(str), strict=True))[
        "seed"] == "17"
    assert not list(tmp_path.glob(".*.tmp"))


def test_export_bytes_one_table_or_all(result):
    tables = headline_tables(result)
    data, media, name = export_bytes(tables, "csv", "sectors", stem="x")
    assert media == "text/csv" and name == "x-sectors.csv"
    _same(pd.read_csv(io.BytesIO(data)), tables["sectors"])
    data, media, name = export_bytes(tables, "parquet", stem="x")
    assert media == "application/zip"
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert sorted(zf.namelist()) == sorted(f"{n}.parquet" for n in tables)
        _same(pd.read_parquet(io.BytesIO(zf.read("prices.parquet"))), tables["prices"])
    with pytest.raises(ReportError, match="unknown table 'nope'"):
        export_bytes(tables, "csv", "nope")
    with pytest.raises(ReportError, match="unknown table format 'xls'"):
        export_bytes(tables, "xls")


def test_monthly_table_is_the_bands(result):
    m = headline_tables(result)["monthly"]
    row = m[(m["variable"] == "price_usd_per_kg") & (m["region"] == "USA")
            & (m["element"] == "Dy") & (m["month"] == 5)].iloc[0]
    band = result["price_usd_per_kg"].sel(region="USA", element="Dy", month=5)
    assert row["p50"] == pytest.approx(float(band.sel(quantile=0.5)))
    assert row["date"] == str(result["date"].values[5])
    assert (m["p5"] <= m["p50"] + 1e-9).all() and (m["p50"] <= m["p95"] + 1e-9).all()


# ---- loading and the CLI -----------------------------------------------------------------
def test_load_result_round_trips(result, result_file):
    back = load_result(result_file)
    assert back.attrs["seed"] == 17
    np.testing.assert_array_equal(back["unmet_physical_t"].values,
                                  result["unmet_physical_t"].values)


def test_cli_report_writes_html_and_tables(result_file, tmp_path):
    out = tmp_path / "report.html"
    r = CliRunner().invoke(app, ["report", str(result_file), "-o", str(out), "--tables-dir",
                                 str(tmp_path / "t"), "--table-format", "parquet"])
    assert r.exit_code == 0, r.output
    text = out.read_text(encoding="utf-8")
    assert "oreflow-data-" in text and 'content="17"' in text
    assert sorted(p.name for p in (tmp_path / "t").iterdir()) == [
        "monthly.parquet", "monthly_sector.parquet", "prices.parquet", "regions.parquet",
        "run.parquet", "sectors.parquet"]


def _one_error_line(r) -> str:
    assert r.exit_code == 2
    assert "Traceback" not in r.output
    lines = [x for x in r.output.splitlines() if x.strip()]
    assert lines[0].startswith("error:")
    return " ".join(" ".join(lines).split())


def test_cli_report_missing_file(tmp_path):
    r = CliRunner().invoke(app, ["report", str(tmp_path / "nope.nc"), "-o",
                                 str(tmp_path / "r.html")])
    assert "no such file" in _one_error_line(r)
    assert not (tmp_path / "r.html").exists()


def test_cli_report_not_netcdf_and_not_oreflow(tmp_path):
    bad = tmp_path / "bad.nc"
    bad.write_text("hello")
    r = CliRunner().invoke(app, ["report", str(bad), "-o", str(tmp_path / "r.html")])
    assert "not a readable NetCDF file" in _one_error_line(r)
    other = tmp_path / "other.nc"
    xr.Dataset({"a": ("x", [1.0, 2.0])}).to_netcdf(other, engine="h5netcdf")
    r = CliRunner().invoke(app, ["report", str(other), "-o", str(tmp_path / "r.html")])
    assert "not an oreflow stress result" in _one_error_line(r)
    assert not (tmp_path / "r.html").exists()
