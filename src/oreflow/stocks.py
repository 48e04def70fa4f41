"""Magnets in use: historical inflows, stocks, end-of-life flows and secondary supply.

How much Nd, Pr, Dy and Tb sit in magnets in use, by sector and region, year by year; how much
reaches end of life; how much could come back as secondary supply under a collection rate
and a recycling capacity. Equations and data: docs/stocks.md.

1. **Inflow into use** (year x region x sector x element, t of element a year): the base
   year's magnet end use from the network (`Network.demand_t` of the magnet sectors, so the
   stocks and the stress engine share one base year) times three indices from the dataset:
   world magnet output / base-year output (`magnet_history`), the sector's share of magnet
   mass / its base-year share (`magnet_sector_history`) and, for Dy and Tb, the heavy-REE
   content of that year's magnets / today's (thrifting after 2011). Regions are the regions
   of manufacture of `sector_regions` (read as regions of use; see docs/stocks.md). After
   the base year an optional growth rate projects the inflow.
2. **Stocks and end of life**: `oreflow.mfa.inflow_driven` with a log-normal lifetime per
   sector (`magnet_lifetimes`); the same model runs on magnet mass (t magnet).
3. **Secondary supply** per region and year: collected feed = collection rate x pre-processing
   yield x end-of-life magnets; the recycler processes min(capacity, feed); each element
   comes back at the recovery yield in proportion to what was processed:
   ``secondary = recovery x collection x preprocessing x eol x min(1, capacity / feed)``,
   so secondary <= capacity x recovery (magnet basis) and <= collection x eol x yields.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import xarray as xr

from oreflow.data.load import Dataset
from oreflow.data.schema import RECYCLING_PARAMETERS
from oreflow.mfa import LogNormalLifetime, inflow_driven
from oreflow.network import Network

__all__ = [
    "HEAVY_REE",
    "REGION_ALIASES",
    "StocksError",
    "magnet_inflows",
    "magnet_lifetimes",
    "magnet_stocks",
    "recycling_parameters",
    "resolve_elements",
    "resolve_regions",
    "secondary_supply",
    "stock_regions",
    "stocks_tables",
]

HEAVY_REE = ("Dy", "Tb")
"""Elements whose content per tonne of magnet follows `magnet_history.heavy_ree_index`."""

_FRACTIONS = ("collection_rate", "preprocessing_yield", "recovery_yield")

RegionValues = float | Mapping[str, float] | xr.DataArray | None
"""A per-region setting: one number for every region, {region: value}, or a DataArray over
`region`; None keeps the dataset's value."""


class StocksError(ValueError):
    """Bad input to the stock model; the message names the argument, file or allowed values."""


def _network(network: Network | Dataset | None) -> Network:
    if network is None:
        return Network.from_dataset()
    if isinstance(network, Dataset):
        return Network.from_dataset(network)
    return network


def _magnet_sectors(ds: Dataset) -> list[str]:
    sec = ds["sectors"]
    return list(sec.loc[sec["form"] == "magnet", "sector"])


def stock_regions(ds: Dataset) -> list[str]:
    """Regions of magnet use (the regions of `sector_regions`), in the table's order."""
    return list(dict.fromkeys(ds["sector_regions"]["region"]))


def magnet_lifetimes(ds: Dataset) -> LogNormalLifetime:
    """Log-normal lifetime per magnet sector (parameters are DataArrays over `sector`)."""
    lt = ds["magnet_lifetimes"].pivot(index="sector", columns="parameter", values="years")
    sectors = _magnet_sectors(ds)
    missing = [s for s in sectors if s not in lt.index or lt.loc[s].isna().any()]
    if missing:
        raise StocksError(f"magnet_lifetimes.csv: no mean and std for sector(s) {missing}; "
                          f"every magnet sector needs both ({', '.join(sectors)})")
    lt = lt.reindex(sectors)

    def da(col: str) -> xr.DataArray:
        return xr.DataArray(lt[col].to_numpy(float), dims="sector", coords={"sector": sectors})

    return LogNormalLifetime(mean=da("mean"), std=da("std"))


def recycling_parameters(ds: Dataset) -> xr.Dataset:
    """The `recycling` table as one variable per parameter over `region`, range-checked."""
    rec = ds["recycling"]
    wide = rec.pivot(index="region", columns="parameter", values="value")
    regions = stock_regions(ds)
    missing = [(r, p) for r in regions for p in RECYCLING_PARAMETERS
               if r not in wide.index or p not in wide.columns or np.isnan(wide.loc[r, p])]
    if missing:
        r, p = missing[0]
        raise StocksError(f"recycling.csv: no {p!r} for region {r!r} ({len(missing)} missing); "
                          f"each region of sector_regions.csv ({', '.join(regions)}) needs "
                          f"every parameter ({', '.join(RECYCLING_PARAMETERS)})")
    wide = wide.reindex(index=regions)
    out = xr.Dataset({p: ("region", wide[p].to_numpy(float)) for p in RECYCLING_PARAMETERS},
                     coords={"region": regions})
    for p in _FRACTIONS:
        bad = (out[p] < 0) | (out[p] > 1)
        if bool(bad.any()):
            r = str(out["region"][bad.values][0].item())
            v = float(out[p].sel(region=r))
            raise StocksError(f"recycling.csv: {p} for region {r!r} is {v:g}; allowed: a "
                              "fraction in [0, 1]")
    return out


def _history(ds: Dataset, quantity: str) -> xr.DataArray:
    h = ds["magnet_history"].query("quantity == @quantity")
    return xr.DataArray(h["value"].to_numpy(float), dims="year",
                        coords={"year": h["year"].to_numpy(int)})


def _sector_history(ds: Dataset, sectors: list[str]) -> xr.DataArray:
    sh = ds["magnet_sector_history"].pivot(index="year", columns="sector", values="share")
    sh = sh.reindex(columns=sectors, fill_value=0.0)
    return xr.DataArray(sh.to_numpy(float), dims=("year", "sector"),
                        coords={"year": sh.index.to_numpy(int), "sector": sectors})


def _growth(growth_per_year: float | Mapping[str, float] | xr.DataArray,
            sectors: list[str]) -> xr.DataArray:
    if isinstance(growth_per_year, xr.DataArray):
        g = growth_per_year
    elif isinstance(growth_per_year, Mapping):
        unknown = sorted(set(growth_per_year) - set(sectors))
        if unknown:
            raise StocksError(f"growth_per_year: unknown sector(s) {unknown}; allowed: "
                              f"{', '.join(sectors)}")
        g = xr.DataArray([float(growth_per_year.get(s, 0.0)) for s in sectors], dims="sector",
                         coords={"sector": sectors})
    else:
        g = xr.DataArray(float(growth_per_year))
    if not bool(np.isfinite(g).all()) or bool((g <= -1).any()):
        raise StocksError(f"growth_per_year must be finite and > -1 (a yearly rate such as 0.05), "
                          f"got {g.values.tolist()}")
    return g


def magnet_inflows(network: Network | Dataset | None = None, *, start_year: int = 1990,
                   end_year: int | None = None,
                   growth_per_year: float | Mapping[str, float] | xr.DataArray = 0.0
                   ) -> xr.Dataset:
    """Magnets put into use each year, by region, sector and element (t element a year) and
    as magnet mass (t magnet a year); history from `start_year` to the base year, projected
    at `growth_per_year` (a number, or per sector) up to `end_year`."""
    net = _network(network)
    ds = net.dataset
    base_year = net.year
    first = int(ds["magnet_history"]["year"].min())
    end_year = base_year if end_year is None else int(end_year)
    if not first <= int(start_year) <= base_year:
        raise StocksError(f"start_year {start_year}: allowed {first}..{base_year} (the years of "
                          "magnet_history.csv)")
    if end_year < start_year or end_year > 2100:
        raise StocksError(f"end_year {end_year}: allowed {start_year}..2100")
    sectors = _magnet_sectors(ds)
    regions = stock_regions(ds)
    comp = ds["magnet_composition"]
    elements = [e for e in net.elements if e in set(comp["element"])]
    mpo = ds["elements"].set_index("element")["metal_per_oxide"].reindex(elements)
    # base-year end use of each magnet sector, t REO-eq -> t element
    base = (net.demand_t.sel(sector=sectors, region=regions, element=elements)
            * xr.DataArray(mpo.to_numpy(float), dims="element", coords={"element": elements}))
    base = base.transpose("region", "sector", "element")
    content = (comp.pivot(index="sector", columns="element", values="t_per_t_magnet")
               .reindex(index=sectors, columns=elements).fillna(0.0).sum(axis=1))
    re_per_magnet = xr.DataArray(content.to_numpy(float), dims="sector",
                                 coords={"sector": sectors})
    base_magnet = base.sum("element") / re_per_magnet

    years = np.arange(int(start_year), end_year + 1)
    hist_years = years[years <= base_year]
    output = _history(ds, "world_output_t_magnet")
    heavy = _history(ds, "heavy_ree_index")
    shares = _sector_history(ds, sectors)
    for name, arr in (("magnet_history.csv (world_output_t_magnet)", output),
                      ("magnet_history.csv (heavy_ree_index)", heavy),
                      ("magnet_sector_history.csv", shares)):
        have = set(arr["year"].values.tolist())
        gap = [int(y) for y in hist_years if y not in have]
        if gap:
            raise StocksError(f"{name}: no row for year(s) {gap[:5]}; it must cover "
                              f"{hist_years[0]}..{base_year}")
    idx_mass = (output.sel(year=hist_years) / output.sel(year=base_year)
                * (shares.sel(year=hist_years) / shares.sel(year=base_year)))
    is_heavy = xr.DataArray(np.isin(elements, HEAVY_REE), dims="element",
                            coords={"element": elements})
    idx_heavy = xr.where(is_heavy, heavy.sel(year=hist_years) / heavy.sel(year=base_year), 1.0)
    proj_years = years[years > base_year]
    if len(proj_years):
        g = _growth(growth_per_year, sectors)
        steps = xr.DataArray(proj_years - base_year, dims="year", coords={"year": proj_years})
        proj = (1.0 + g) ** steps * xr.ones_like(re_per_magnet)
        idx_mass = xr.concat([idx_mass, proj.transpose("year", "sector")], dim="year")
        idx_heavy = xr.concat([idx_heavy, xr.ones_like(steps) * xr.ones_like(is_heavy)],
                              dim="year")
    inflow_el = (base * idx_mass * idx_heavy).transpose("year", "region", "sector", "element")
    inflow_mag = (base_magnet * idx_mass).transpose("year", "region", "sector")
    out = xr.Dataset({"inflow_t_element": inflow_el, "inflow_t_magnet": inflow_mag})
    # how each year's level is known: the status of its world-output row; sector shares
    # before the base year are assumptions throughout (magnet_sector_history.csv)
    h = ds["magnet_history"].query("quantity == 'world_output_t_magnet'").set_index("year")
    status = [str(h["status"].get(int(y), "")) if y <= base_year else "projection"
              for y in years]
    out = out.assign_coords(output_status=("year", status))
    out.attrs.update(base_year=base_year, dataset_version=ds.version,
                     output_status="status of magnet_history.world_output_t_magnet in each "
                     "year (reported, estimate, assumption) or projection")
    return out


def _per_region(value: RegionValues, name: str, default: xr.DataArray, lo: float,
                hi: float) -> xr.DataArray:
    """A per-region setting as a DataArray over the default's regions, range-checked."""
    regions = [str(r) for r in default["region"].values]
    if value is None:
        out = default
    elif isinstance(value, xr.DataArray):
        out = value.broadcast_like(default) if "region" in value.dims else value + 0 * default
    elif isinstance(value, Mapping):
        unknown = sorted(set(value) - set(regions))
        if unknown:
            raise StocksError(f"{name}: unknown region(s) {unknown}; allowed: "
                              f"{', '.join(regions)}")
        out = default.copy(data=[float(value.get(r, default.sel(region=r))) for r in regions])
    else:
        out = xr.full_like(default, float(value))
    v = out.values
    if not np.all(np.isfinite(v)) or np.any(v < lo) or np.any(v > hi):
        raise StocksError(f"{name} must lie in [{lo:g}, {hi:g}], got {np.unique(v).tolist()}")
    return out.astype(float)


def secondary_supply(eol_t_element: xr.DataArray, eol_t_magnet: xr.DataArray,
                     collection_rate, preprocessing_yield, recovery_yield,
                     capacity_t_magnet_per_year) -> xr.Dataset:
    """Secondary supply from end-of-life magnets, per region (and any other dims).

    feed_t_magnet = collection x preprocessing x eol magnets summed over sectors (what reaches
    the recyclers of a region); processed_t_magnet = min(capacity, feed); every element and
    sector comes back in proportion: secondary = recovery x collection x preprocessing x eol
    x processed / feed. Collection and capacity are the binding levers: below capacity,
    secondary supply is proportional to the collection rate.
    """
    collected = collection_rate * preprocessing_yield
    feed = (collected * eol_t_magnet).sum("sector")
    processed = np.minimum(capacity_t_magnet_per_year, feed)
    used = xr.where(feed > 0, processed / feed.where(feed > 0), 1.0)
    secondary = recovery_yield * collected * used * eol_t_element
    return xr.Dataset({"feed_t_magnet": feed, "processed_t_magnet": processed,
                       "capacity_used_share": used, "secondary_potential_t": secondary})


def magnet_stocks(network: Network | Dataset | None = None, *, start_year: int = 1990,
                  end_year: int | None = None,
                  growth_per_year: float | Mapping[str, float] | xr.DataArray = 0.0,
                  lifetime: LogNormalLifetime | None = None,
                  collection_rate: RegionValues = None, preprocessing_yield: RegionValues = None,
                  recovery_yield: RegionValues = None,
                  capacity_t_magnet_per_year: RegionValues = None) -> xr.Dataset:
    """Inflow, stock in use, end-of-life outflow and secondary supply of magnets.

    Returns an xarray Dataset over (year, region, sector, element): `inflow_t_element`,
    `stock_t_element`, `eol_t_element` (t element; flows a year, stocks at year end),
    `secondary_potential_t` (t element a year); over (year, region, sector): the same in
    t magnet; over (year, region): `feed_t_magnet`, `processed_t_magnet`,
    `capacity_used_share`; over region: the recycling settings used. The recycling settings
    default to the dataset's `recycling` table; pass a number, {region: value} or a
    DataArray to override (e.g. collection_rate={"XEU": 0.25}).
    """
    net = _network(network)
    ds = net.dataset
    flows = magnet_inflows(net, start_year=start_year, end_year=end_year,
                           growth_per_year=growth_per_year)
    lt = lifetime if lifetime is not None else magnet_lifetimes(ds)
    res = {}
    for unit, inflow in (("element", flows["inflow_t_element"]),
                         ("magnet", flows["inflow_t_magnet"])):
        r = inflow_driven(inflow.rename(year="time"), lt)
        res[f"inflow_t_{unit}"] = inflow
        res[f"stock_t_{unit}"] = r.stock.rename(time="year")
        res[f"eol_t_{unit}"] = r.outflow.rename(time="year")
    out = xr.Dataset(res)
    par = recycling_parameters(ds)
    settings = {
        "collection_rate": _per_region(collection_rate, "collection_rate",
                                       par["collection_rate"], 0, 1),
        "preprocessing_yield": _per_region(preprocessing_yield, "preprocessing_yield",
                                           par["preprocessing_yield"], 0, 1),
        "recovery_yield": _per_region(recovery_yield, "recovery_yield", par["recovery_yield"],
                                      0, 1),
        "capacity_t_magnet_per_year": _per_region(capacity_t_magnet_per_year,
                                                  "capacity_t_magnet_per_year",
                                                  par["capacity_t_magnet_per_year"], 0, np.inf),
    }
    sec = secondary_supply(out["eol_t_element"], out["eol_t_magnet"], **settings)
    sec = sec.transpose("year", "region", ...)
    out = out.merge(sec).assign(settings)
    units = {"inflow_t_element": "t element per year", "stock_t_element": "t element at year end",
             "eol_t_element": "t element per year", "inflow_t_magnet": "t magnet per year",
             "stock_t_magnet": "t magnet at year end", "eol_t_magnet": "t magnet per year",
             "feed_t_magnet": "t magnet per year", "processed_t_magnet": "t magnet per year",
             "capacity_used_share": "fraction", "secondary_potential_t": "t element per year",
             "collection_rate": "fraction", "preprocessing_yield": "fraction",
             "recovery_yield": "fraction", "capacity_t_magnet_per_year": "t magnet per year"}
    for k, u in units.items():
        out[k].attrs["units"] = u
    out.attrs.update(flows.attrs)
    return out


REGION_ALIASES = {"EU": "XEU"}
"""Kept for callers that import it: `resolve_regions` resolves blocs and member states through
`oreflow.perspective` (EU -> XEU, its members -> XEU, G7 -> USA, JPN, ...)."""

_REPORT = {"inflow_t_element": "inflow_t", "stock_t_element": "stock_t",
           "eol_t_element": "eol_t", "secondary_potential_t": "secondary_potential_t"}


def resolve_regions(regions: list[str], region: str | None, dataset: Dataset | None = None
                    ) -> list[str]:
    """The stock regions a name selects (any case): a region of use, a bloc (EU -> XEU), a
    member state (ITA -> XEU, the region that holds its demand), or None/'all'."""
    from oreflow.data.load import load_dataset
    from oreflow.perspective import UnknownNameError, resolve_perspective

    if region is None or region.strip().lower() in ("all", "world"):
        return regions
    try:
        return list(resolve_perspective(region, dataset or load_dataset(), within=regions,
                                        what="region").regions)
    except UnknownNameError as e:
        raise StocksError(f"{e} or all") from None


def resolve_elements(known: list[str], elements: list[str] | None) -> list[str]:
    """Magnet elements by symbol (any case) among `known`; None gives Nd, Pr, Dy, Tb."""
    from oreflow.perspective import UnknownNameError
    from oreflow.perspective import resolve_elements as resolve

    if not elements:
        return [e for e in ("Nd", "Pr", "Dy", "Tb") if e in known]
    try:
        return resolve(elements, known, allow_total=False, label="elements in magnets")
    except UnknownNameError as e:
        raise StocksError(str(e)) from None


def stocks_tables(ds: xr.Dataset, elements: list[str], regions: list[str],
                  year: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two tidy tables from `magnet_stocks` summed over the given regions: by sector and
    element in `year` (with an 'all sectors' row per element), and by year and element."""
    years = ds["year"].values
    if year not in years:
        raise StocksError(f"year {year}: allowed {int(years[0])}..{int(years[-1])} (project "
                          "further with end_year / --until)")
    sel = ds[list(_REPORT)].sel(region=regions, element=elements).sum("region")
    sel = sel.rename(_REPORT)
    one = sel.sel(year=year)
    total = one.sum("sector").expand_dims(sector=["all sectors"])
    by_sector = (xr.concat([one, total], dim="sector").drop_vars("output_status")
                 .to_dataframe().reset_index().drop(columns="year"))
    by_sector = by_sector[["element", "sector", *_REPORT.values()]]
    by_sector = by_sector.sort_values(["element", "sector"], key=_sector_order,
                                      kind="stable").reset_index(drop=True)
    by_year = sel.sum("sector").to_dataframe().reset_index()
    by_year = by_year[["year", "element", *_REPORT.values(), "output_status"]]
    return by_sector, by_year.sort_values(["element", "year"], kind="stable").reset_index(
        drop=True)


def _sector_order(col: pd.Series) -> pd.Series:
    return col.map(lambda v: (1, v) if v == "all sectors" else (0, v)) if col.name == "sector" \
        else col
