"""Reports of a stress result: one self-contained HTML file and the headline tables.

The HTML inlines Plotly.js from the `plotly` Python package, so it opens offline and needs
nothing but a browser. It shows the base-year chain as a Sankey (mining, separation, metal,
magnets, sectors; by country), fan charts (p5/p50/p95 over paths) of prices inside and
outside the controlling country and of unmet demand, the spread of each sector's unmet
demand over the horizon, the headline tables and the run's seed, scenario and dataset
version. The same tables export to CSV, Excel and Parquet. Every file is written atomically.
"""

from __future__ import annotations

import io
import json
import math
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import xarray as xr

from oreflow.io import atomic_write, atomic_write_text
from oreflow.network import Network
from oreflow.simulate.results import (  # noqa: F401
    ResultError,
    check_result,
    has_end_use,
    load_result,
)

ReportError = ResultError
"""A result that cannot be reported on, or a bad export request (the same family)."""

STAGE_NAMES = {"mining": "Mining", "separation": "Separation", "metal": "Metal",
               "magnet": "Magnets"}
STAGE_COLOURS = {"mining": "#8c6d31", "separation": "#3182bd", "metal": "#756bb1",
                 "magnet": "#e6550d", "sector": "#31a354", "loss": "#969696"}
LOSSES = "Process losses"
REGION_COLOURS = ("#d62728", "#1f77b4")  # controller, perspective
TABLE_FORMATS = ("csv", "xlsx", "parquet")


# ---- reading a result ------------------------------------------------------------------
def perspective_region(ds: xr.Dataset) -> str:
    """The outside region a report shows beside the controller: the run's perspective if it
    has one market region, else the outside region with the largest physical shortage."""
    ctrl = ds.attrs["controller"]
    regions = [str(r) for r in ds["region"].values]
    chosen = json.loads(ds.attrs.get("perspective_regions", "[]"))
    chosen = [r for r in chosen if r != ctrl and r in regions]
    if len(chosen) == 1:
        return chosen[0]
    outside = [r for r in regions if r != ctrl]
    short = ds["unmet_physical_t"].sum("sector").median("path").sel(region=outside)
    return outside[int(np.argmax(short.values))] if float(short.max()) > 0 else outside[0]


def perspective_of(ds: xr.Dataset) -> list[str]:
    """Market regions the run's perspective reads (all regions if none was given)."""
    chosen = json.loads(ds.attrs.get("perspective_regions", "[]"))
    return chosen or [str(r) for r in ds["region"].values]


# ---- the base-year chain -----------------------------------------------------------------
UNSOLD = "Unsold stock"
SWARF_OUT = "Swarf to recycling"
SWARF_IN = "Swarf recycled"
UNRECORDED = "Unrecorded supply"


def sankey_links(network: Network, min_share: float = 0.01) -> pd.DataFrame:
    """Flows of the base-year chain in t REO-eq per year, summed over elements.

    Nodes are (stage, country) for mining, separation, metal and magnets, one node per end-use
    sector, process losses, unsold stock, unrecorded supply and swarf (made at magnet plants,
    recycled at separation plants: two nodes, so the chart has no loop). Concentrate goes from
    mines to the country that separates it, and on (unseparated) where that country cannot;
    product traded into a country is split between its next stage and its end uses in
    proportion to what it uses of each. A country with less than `min_share` of a stage's
    world throughput joins that stage's "other" node. Columns: source, target, t, kind
    ('flow' or 'loss'); every stage node's inflow equals its outflow plus losses."""
    n = network
    y = n.yields
    trade, use, demand = n.trade_t, n.use_t, n.demand_t
    form = n.dataset["sectors"].set_index("sector")["form"].reindex(n.sectors)
    loss = n.losses_t
    labels = _stage_labels(n, min_share)
    parts: list[pd.DataFrame] = []

    def add(da: xr.DataArray, src: str, dst: str, s_stage: str | None, d_stage: str | None,
            kind: str = "flow") -> None:
        df = da.to_series().reset_index(name="t")
        df = df[df["t"] > 0]
        if df.empty:
            return
        df["source"] = df[src].map(labels[s_stage]) if s_stage else df[src]
        df["target"] = df[dst].map(labels[d_stage]) if d_stage else df[dst]
        df["kind"] = kind
        parts.append(df[["source", "target", "t", "kind"]])

    def const(da: xr.DataArray, name: str) -> xr.DataArray:
        return da.expand_dims(_n=[name])

    def split(stage: str, nxt: xr.DataArray | None, next_stage: str | None,
              sector_form: str) -> None:
        """Send stage `stage`'s traded output to the next stage and to its end-use sectors."""
        u = use.sel(stage=stage).rename(region="dest")
        t = trade.sel(stage=stage)

        def share(x: xr.DataArray) -> xr.DataArray:
            return (x / u.where(u > 0)).fillna(0.0)

        if nxt is not None:
            add((t * share(nxt.rename(region="dest"))).sum("element"), "origin", "dest", stage,
                next_stage)
        secs = [s for s in n.sectors if form[s] == sector_form]
        if secs:
            d = demand.sel(sector=secs).rename(region="dest")
            add((t * share(d)).sum(("element", "dest")), "origin", "sector", stage, None)

    add((n.mine_t * n.routing).sum("element"), "region", "dest", "mining", "separation")
    add(n._feed_legs["onward"].sum("element"), "region", "dest", "separation", "separation")
    add(const(n.concentrate_stock_t.sum("element"), UNSOLD), "region", "_n", "separation",
        None)
    add(const(n.stock_change_t.sel(stage="separation").sum("element"), UNSOLD), "region", "_n",
        "separation", None)
    add(const(n.swarf_secondary_t.sum("element"), SWARF_IN), "_n", "region", None,
        "separation")
    add(const((n.swarf_t - n.swarf_kept_t).sum("element"), SWARF_OUT), "region", "_n",
        "magnet", None)
    unrec = xr.zeros_like(n.swarf_t)
    unrec.loc[{"region": "CHN"}] = n.unrecorded_t
    add(const(unrec.sum("element"), UNRECORDED), "_n", "region", None, "separation")
    for stage in ("separation", "metal", "magnet"):
        add(loss.sel(stage=stage).sum("element").expand_dims(_to=[LOSSES]), "region", "_to",
            stage, None, kind="loss")
    split("separation", n.metal_t / y["metal"], "metal", "oxide")
    split("metal", n.metal_for_magnets_t, "magnet", "metal")
    split("magnet", None, None, "magnet")
    links = pd.concat(parts, ignore_index=True)
    return (links.groupby(["source", "target", "kind"], as_index=False, sort=False)["t"].sum()
            [["source", "target", "t", "kind"]])


def _stage_labels(n: Network, min_share: float) -> dict[str, dict[str, str]]:
    """Node label of each country at each stage; small countries share an 'other' node."""
    through = {"mining": n.mine_t.sum("element"),
               "separation": n.separation_feed_t.sum("element"),
               "metal": (n.metal_t / n.yields["metal"]).sum("element"),
               "magnet": n.metal_for_magnets_t.sum("element")}
    out = {}
    for stage, da in through.items():
        s = da.to_series()
        big = s >= min_share * s.sum()
        name = STAGE_NAMES[stage]
        out[stage] = {r: f"{name} · {r}" if big[r] else f"{name} · other" for r in s.index}
    return out


def node_balance(links: pd.DataFrame) -> pd.DataFrame:
    """Per node: inflow, outflow and losses (t/yr); for a stage node inflow = out + losses."""
    inflow = links.groupby("target")["t"].sum()
    outflow = links[links["kind"] == "flow"].groupby("source")["t"].sum()
    losses = links[links["kind"] == "loss"].groupby("source")["t"].sum()
    nodes = sorted(set(links["source"]) | set(links["target"]))
    df = pd.DataFrame({"inflow_t": inflow, "outflow_t": outflow, "loss_t": losses},
                      index=nodes).fillna(0.0)
    df.index.name = "node"
    return df


def sankey_figure(network: Network, min_share: float = 0.01) -> go.Figure:
    links = sankey_links(network, min_share)
    nodes = list(dict.fromkeys([*links["source"], *links["target"]]))
    index = {k: i for i, k in enumerate(nodes)}

    def colour(node: str) -> str:
        for stage, name in STAGE_NAMES.items():
            if node.startswith(name + " · "):
                return STAGE_COLOURS[stage]
        if node in (LOSSES, UNSOLD, SWARF_OUT, SWARF_IN, UNRECORDED):
            return STAGE_COLOURS["loss"]
        return STAGE_COLOURS["sector"]

    link_colour = [("rgba(150,150,150,0.35)" if k == "loss" else _fade(colour(s)))
                   for s, k in zip(links["source"], links["kind"], strict=True)]
    fig = go.Figure(go.Sankey(
        valueformat=",.0f", valuesuffix=" t",
        node={"label": nodes, "color": [colour(x) for x in nodes], "pad": 8,
              "thickness": 14, "align": "justify"},
        link={"source": links["source"].map(index).tolist(),
              "target": links["target"].map(index).tolist(),
              "value": links["t"].round(3).tolist(), "color": link_colour}))
    fig.update_layout(title=f"Base-year chain {network.year}, t REO-eq per year (all rare "
                            "earths; countries under 1% of a stage grouped as 'other')",
                      height=720, margin={"l": 10, "r": 10, "t": 50, "b": 10},
                      font={"size": 11})
    return fig


def _fade(hex_colour: str, alpha: float = 0.35) -> str:
    r, g, b = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


# ---- fan charts ----------------------------------------------------------------------------
def _active_elements(ds: xr.Dataset) -> list[str]:
    """Elements that trade and flow in this run (others have flat, empty bands)."""
    base = ds["base_price_usd_per_kg"].max("region")
    flows = ds["use_t"].sel(quantile=0.5).sum(("month", "region"))
    return [str(e) for e in ds["element"].values
            if float(base.sel(element=e)) > 0 and float(flows.sel(element=e)) > 0]


def default_element(ds: xr.Dataset) -> str:
    """The element the fan charts open on."""
    return _default_element(ds, _active_elements(ds) or [str(e) for e in ds["element"].values])


def _default_element(ds: xr.Dataset, elements: list[str]) -> str:
    """The element whose price rise outside the controller costs most: (median peak ratio - 1)
    x base price x what the regions outside use (falls back to the largest use by value)."""
    ctrl = ds.attrs["controller"]
    outside = [r for r in ds["region"].values if r != ctrl]
    peak = ds["price_peak_ratio_outside"].median("path").fillna(1.0)
    base = ds["base_price_usd_per_kg"].sel(region=outside)
    price = base.where(base > 0).mean("region").fillna(0.0)  # over the regions that use it
    use = ds["use_t"].sel(quantile=0.5, region=outside).sum(("month", "region"))
    value = price * use

    def score(e: str) -> tuple[float, float]:
        v = float(value.sel(element=e))
        return float(peak.sel(element=e) - 1.0) * v, v

    return max(elements, key=score)


def default_sector(ds: xr.Dataset) -> str | None:
    """The sector the monthly sector fan opens on: the largest median physical shortage."""
    tot = ds["unmet_sector_t"].sel(quantile=0.5).sum(("month", "region"))
    return str(tot["sector"].values[int(np.argmax(tot.values))])


def fan_figure(ds: xr.Dataset, var: str, title: str, unit: str,
               pick: str | None = None) -> dict:
    """p5-p95 band and median inside the controller and in the perspective region over the
    months, one element (or sector) at a time, chosen from a menu; opens on `pick` if given.

    Returned as a plain figure dict: its traces are built directly, which is ten times
    faster than validating them one by one as plotly objects."""
    dim = "sector" if "sector" in ds[var].dims else "element"
    if dim == "element":
        items = _active_elements(ds) or [str(e) for e in ds["element"].values]
        first = pick if pick in items else _default_element(ds, items)
    else:
        items = [str(x) for x in ds["sector"].values]
        first = pick if pick in items else default_sector(ds)
    dates = [str(d) for d in ds["date"].values] if "date" in ds.coords else \
        list(map(int, ds["month"].values))
    ctrl = ds.attrs["controller"]
    shown = [ctrl, perspective_region(ds)]
    arr = ds[var].sel(region=shown).transpose("quantile", "month", "region", dim)
    qs = [float(q) for q in arr["quantile"].values]
    names = list(map(str, arr[dim].values))
    data = []
    for item in items:
        ii = names.index(item)
        for zi, (z, colour) in enumerate(zip(shown, REGION_COLOURS, strict=True)):
            lo, mid, hi = (arr.values[qs.index(q), :, zi, ii].tolist() for q in (0.05, 0.5,
                                                                                  0.95))
            name = f"inside {z}" if z == ctrl else z
            common = {"type": "scatter", "x": dates, "mode": "lines", "legendgroup": z,
                      "visible": item == first}
            data += [
                {**common, "y": hi, "line": {"width": 0}, "hoverinfo": "skip",
                 "showlegend": False, "meta": {dim: item, "region": z, "q": 0.95}},
                {**common, "y": lo, "line": {"width": 0}, "fill": "tonexty",
                 "fillcolor": _fade(colour, 0.2), "name": f"{name} p5-p95",
                 "meta": {dim: item, "region": z, "q": 0.05}},
                {**common, "y": mid, "line": {"color": colour}, "name": f"{name} median",
                 "meta": {dim: item, "region": z, "q": 0.5}},
            ]
    per = 3 * len(shown)
    buttons = [{"label": item, "method": "update",
                "args": [{"visible": [j // per == i for j in range(per * len(items))]},
                         {"title.text": f"{title}: {item}"}]}
               for i, item in enumerate(items)]
    layout = {
        "title": {"text": f"{title}: {first}"}, "yaxis": {"title": {"text": unit}},
        "hovermode": "x unified", "height": 420, "margin": {"l": 60, "r": 10, "t": 60, "b": 40},
        "legend": {"orientation": "h", "y": -0.15},
        "updatemenus": [{"buttons": buttons, "active": items.index(first), "x": 1.0,
                         "xanchor": "right", "y": 1.15, "yanchor": "top"}]}
    return {"data": data, "layout": layout}


def sector_figure(ds: xr.Dataset) -> go.Figure:
    """Physical shortage by sector over the horizon in the perspective's regions: median
    bar, p5-p95 whisker over paths; demand given up because of price beside it."""
    t = sector_table(ds).sort_values("unmet_physical_t_p50")
    fig = go.Figure([
        go.Bar(y=t["sector"], x=t["unmet_physical_t_p50"], orientation="h",
               marker_color="#e6550d", name="physical shortage (median)",
               error_x={"type": "data", "symmetric": False,
                        "array": (t["unmet_physical_t_p95"] - t["unmet_physical_t_p50"]).tolist(),
                        "arrayminus": (t["unmet_physical_t_p50"] - t["unmet_physical_t_p5"]
                                       ).tolist()},
               hovertemplate="%{y}: median %{x:,.0f} t short<extra></extra>"),
        go.Bar(y=t["sector"], x=t["demand_reduction_t_p50"], orientation="h",
               marker_color="#9ecae1", name="given up because of price (median)",
               hovertemplate="%{y}: median %{x:,.0f} t given up<extra></extra>")])
    who = ", ".join(perspective_of(ds))
    fig.update_layout(title=f"By sector over the horizon ({who}), t of element<br>"
                            "<sup>physical shortage: median, whisker p5-p95 over paths; demand "
                            "given up because of price is not a shortage</sup>",
                      barmode="group", height=460,
                      margin={"l": 140, "r": 10, "t": 60, "b": 40},
                      legend={"orientation": "h", "y": -0.12})
    return fig


def figures(ds: xr.Dataset, network: Network | None = None, element: str | None = None,
            sector: str | None = None) -> dict[str, go.Figure | dict]:
    """Every chart of the report, by name (the web pages show the same ones). Element fans
    open on `element` (default: the element whose price rise costs most), the sector fan on
    `sector` (default: the most short)."""
    ctrl = ds.attrs["controller"]
    figs: dict[str, go.Figure | dict] = {
        "prices": fan_figure(ds, "price_usd_per_kg",
                             f"Price inside {ctrl} and in {perspective_region(ds)}, "
                             "p5/p50/p95", "USD/kg oxide", element),
        "unmet_sector": fan_figure(ds, "unmet_sector_t",
                                   "Physical shortage per month by sector, p5/p50/p95",
                                   "t of element per month", sector),
        "unmet": fan_figure(ds, "unmet_month_t",
                            "Physical shortage per month by element, p5/p50/p95",
                            "t of element per month", element),
        "sectors": sector_figure(ds),
    }
    if network is not None:
        figs = {"sankey": sankey_figure(network), **figs}
    return figs


# ---- headline tables -------------------------------------------------------------------
def sector_table(ds: xr.Dataset) -> pd.DataFrame:
    """Per sector, in the perspective's regions: physical shortage over the horizon
    p5/p50/p95, demand given up because of price (median), share of paths with a physical
    shortage, median week of the first stoppage."""
    regions = perspective_of(ds)
    phys = ds["unmet_physical_t"].sel(region=regions).sum("region")
    red = ds["demand_reduction_t"].sel(region=regions).sum("region")
    q = phys.quantile([0.05, 0.5, 0.95], "path")
    weeks = ds["first_stoppage_week"].sel(region=regions).min("region").median("path").values
    df = pd.DataFrame({
        "sector": [str(s) for s in ds["sector"].values],
        "unmet_physical_t_p5": q.sel(quantile=0.05).values,
        "unmet_physical_t_p50": q.sel(quantile=0.5).values,
        "unmet_physical_t_p95": q.sel(quantile=0.95).values,
        "demand_reduction_t_p50": red.median("path").values,
        "paths_short_share": (phys > 1e-9).mean("path").values,
        "first_stoppage_week_p50": np.where(np.isfinite(weeks), weeks, np.nan),
    })
    return df.sort_values("unmet_physical_t_p50", ascending=False, kind="stable",
                          ignore_index=True)


def region_table(ds: xr.Dataset) -> pd.DataFrame:
    """Per market region: physical shortage and demand reduction over the horizon (median,
    t of element) and the median week its first sector stops."""
    used = has_end_use(ds)  # no end use: n/a, not 0
    phys = ds["unmet_physical_t"].sum("sector")
    red = ds["demand_reduction_t"].sum("sector")
    first = ds["first_stoppage_week"].min("sector").median("path")
    return pd.DataFrame({
        "region": [str(r) for r in ds["region"].values],
        "unmet_physical_t_p50": np.where(used, phys.median("path").values, np.nan),
        "unmet_physical_t_p95": np.where(used, phys.quantile(0.95, "path").values, np.nan),
        "demand_reduction_t_p50": np.where(used, red.median("path").values, np.nan),
        "first_stoppage_week_p50": np.where(np.isfinite(first.values), first.values, np.nan),
    })


def price_table(ds: xr.Dataset) -> pd.DataFrame:
    """Per element and region: base price, the peak price ratio p5/p50/p95 over paths and the
    median lowest ratio (a price that falls shows there)."""
    # a region without a base price has no ratio on any path (NaN), so NaN quantiles
    priced = ds["base_price_usd_per_kg"] > 0
    q = ds["price_peak_ratio"].where(priced, 1.0).quantile([0.05, 0.5, 0.95], "path")
    q = q.where(priced)
    low = (ds["price_low_ratio"].where(priced, 1.0).median("path").where(priced)
           if "price_low_ratio" in ds else None)  # older result files have no lowest price
    rows = []
    for e in _active_elements(ds):
        for z in ds["region"].values:
            rows.append({"element": e, "region": str(z),
                         "base_price_usd_per_kg": float(ds["base_price_usd_per_kg"]
                                                        .sel(region=z, element=e)),
                         **{f"peak_ratio_p{int(p * 100)}": float(q.sel(quantile=p, region=z,
                                                                       element=e))
                            for p in (0.05, 0.5, 0.95)},
                         "low_ratio_p50": (float(low.sel(region=z, element=e))
                                           if low is not None else np.nan)})
    return pd.DataFrame(rows, columns=["element", "region", "base_price_usd_per_kg",
                                       "peak_ratio_p5", "peak_ratio_p50", "peak_ratio_p95",
                                       "low_ratio_p50"])


def _bands_long(da: xr.DataArray) -> pd.DataFrame:
    """A banded variable as long rows with p5/p50/p95 columns."""
    wide = da.to_series().unstack("quantile")
    wide.columns = [f"p{round(q * 100)}" for q in wide.columns]
    return wide.reset_index()


def _with_dates(df: pd.DataFrame, ds: xr.Dataset, at: int) -> pd.DataFrame:
    """Insert the calendar month of each row's `month` index at column `at`."""
    if "date" in ds.coords:
        dates = dict(zip(ds["month"].values.tolist(), map(str, ds["date"].values), strict=True))
        df.insert(at, "date", df["month"].map(dates))
    return df


MONTHLY_VARS = ("price_usd_per_kg", "stock_t", "supply_t", "use_t", "unmet_month_t")


def monthly_sector_table(ds: xr.Dataset) -> pd.DataFrame:
    """Monthly p5/p50/p95 of physical shortage by region and sector (t of element)."""
    return _with_dates(_bands_long(ds["unmet_sector_t"]), ds, 1)


def monthly_table(ds: xr.Dataset) -> pd.DataFrame:
    """Monthly p5/p50/p95 of every banded variable by region and element, long form."""
    frames = [_bands_long(ds[var]).assign(variable=var) for var in MONTHLY_VARS if var in ds]
    df = pd.concat(frames, ignore_index=True)
    df = df[["variable", *[c for c in df.columns if c != "variable"]]]
    return _with_dates(df, ds, 2)


def run_table(ds: xr.Dataset) -> pd.DataFrame:
    """The run's settings and provenance as key/value rows."""
    keys = ("scenario", "seed", "paths", "months", "start", "controller", "perspective",
            "dataset_version", "scenario_sha256", "oreflow_version",
            "max_rel_balance_residual", "leakage", "notes")
    return pd.DataFrame([(k, str(ds.attrs[k])) for k in keys if k in ds.attrs],
                        columns=["key", "value"])


def headline_tables(ds: xr.Dataset) -> dict[str, pd.DataFrame]:
    """The tables every report shows and exports: sectors (perspective), regions, prices,
    monthly bands, monthly bands by sector, run."""
    check_result(ds)
    return {"sectors": sector_table(ds), "regions": region_table(ds),
            "prices": price_table(ds), "monthly": monthly_table(ds),
            "monthly_sector": monthly_sector_table(ds), "run": run_table(ds)}


# ---- exports ---------------------------------------------------------------------------
def _check_format(fmt: str) -> str:
    if fmt not in TABLE_FORMATS:
        raise ReportError(f"unknown table format {fmt!r}; choose one of "
                          f"{', '.join(TABLE_FORMATS)}")
    return fmt


def _write_table(df: pd.DataFrame, fmt: str, target) -> None:
    if fmt == "csv":
        df.to_csv(target, index=False)
    else:
        df.to_parquet(target, engine="pyarrow", index=False)


def _xlsx(tables: dict[str, pd.DataFrame], target) -> None:
    with pd.ExcelWriter(target, engine="openpyxl") as xw:
        for name, df in tables.items():
            df.to_excel(xw, sheet_name=name[:31], index=False)


def export_tables(tables: dict[str, pd.DataFrame], fmt: str, out_dir: Path | str,
                  stem: str = "tables") -> list[Path]:
    """Write the tables to `out_dir`: one file per table (csv, parquet) or one workbook with
    a sheet per table (`<stem>.xlsx`). Returns the paths written."""
    _check_format(fmt)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ReportError(f"{out_dir}: exists and is not a folder")
    if fmt == "xlsx":
        return [atomic_write(out_dir / f"{stem}.xlsx", lambda p: _xlsx(tables, p))]
    return [atomic_write(out_dir / f"{name}.{fmt}", lambda p, df=df: _write_table(df, fmt, p))
            for name, df in tables.items()]


def export_bytes(tables: dict[str, pd.DataFrame], fmt: str, table: str | None = None,
                 stem: str = "tables") -> tuple[bytes, str, str]:
    """(content, media type, file name) of an export, for downloads: one table, or all of
    them (csv and parquet in a zip; xlsx as one sheet per table)."""
    _check_format(fmt)
    if table is not None:
        if table not in tables:
            raise ReportError(f"unknown table {table!r}; tables: {', '.join(tables)}")
        tables = {table: tables[table]}
        stem = f"{stem}-{table}"
    buf = io.BytesIO()
    if fmt == "xlsx":
        _xlsx(tables, buf)
        return buf.getvalue(), ("application/vnd.openxmlformats-officedocument."
                                "spreadsheetml.sheet"), f"{stem}.xlsx"
    if len(tables) == 1:
        (df,) = tables.values()
        _write_table(df, fmt, buf)
        media = "text/csv" if fmt == "csv" else "application/vnd.apache.parquet"
        return buf.getvalue(), media, f"{stem}.{fmt}"
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, df in tables.items():
            part = io.BytesIO()
            _write_table(df, fmt, part)
            zf.writestr(f"{name}.{fmt}", part.getvalue())
    return buf.getvalue(), "application/zip", f"{stem}-{fmt}.zip"


# ---- the HTML report -------------------------------------------------------------------
def _jinja():
    import jinja2

    return jinja2.Environment(loader=jinja2.PackageLoader("oreflow", "web/templates"),
                              autoescape=jinja2.select_autoescape(["html"]))


def figure_html(fig: go.Figure | dict, div_id: str) -> str:
    """A chart as a <div> and the script that draws it (Plotly.js must already be loaded)."""
    import plotly.io as pio

    return pio.to_html(fig, full_html=False, include_plotlyjs=False, div_id=div_id,
                       validate=False, config={"displaylogo": False, "responsive": True})


def fmt_number(v, digits: str = ",.0f") -> str:
    """Numbers for tables: n/a for missing or infinite values."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    return format(v, digits)


def render_report(ds: xr.Dataset, network: Network | None = None) -> str:
    """The whole report as one HTML string with Plotly.js inlined (no network needed)."""
    from plotly.offline import get_plotlyjs

    check_result(ds)
    net = network if network is not None else Network.from_dataset()
    ree = set(map(str, ds["element"].values)) <= set(net.elements)
    figs = figures(ds, net if ree else None)  # the Sankey is the rare-earth network's
    tables = headline_tables(ds)
    regions = tables["regions"].to_dict("records")
    prices = tables["prices"]
    prices = prices[(prices["peak_ratio_p50"] > 1.01) | (prices["peak_ratio_p95"] > 1.01)]
    env = _jinja()
    env.filters["num"] = fmt_number
    mismatch = ds.attrs["dataset_version"] != net.dataset.version
    return env.get_template("report.html").render(
        attrs=ds.attrs, charts={k: figure_html(f, f"chart-{k}") for k, f in figs.items()},
        sectors=tables["sectors"].to_dict("records"), prices=prices.to_dict("records"),
        regions=regions, perspective=", ".join(perspective_of(ds)),
        notes=json.loads(ds.attrs.get("notes", "[]")),
        network_version=net.dataset.version, mismatch=mismatch, plotlyjs=get_plotlyjs(),
        created=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"))


def write_report(ds: xr.Dataset, path: Path | str, network: Network | None = None) -> Path:
    """Render the report and write it atomically."""
    return atomic_write_text(path, render_report(ds, network))
