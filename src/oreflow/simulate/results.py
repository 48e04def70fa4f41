"""A stress run's result: the xarray Dataset, its headline summary, and its file I/O.

The Dataset holds per-path totals (peak price ratios, physical shortage and demand reduction
by region and sector, first stoppage week) and monthly p5/p50/p95 bands, with the run's seed,
scenario hash, dataset version and the largest balance residual in its attributes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from oreflow.io import atomic_write_bytes

QUANTILES = (0.05, 0.5, 0.95)
OUTSIDE = "ROW"
"""Zone key of everything outside the controller (today's key for the outside price)."""
ENGINE = "markets-v2"
UNITS = {
    "price_usd_per_kg": "USD/kg oxide",
    "price_peak_ratio": "peak monthly price / base price",
    "price_peak_ratio_outside": "peak of the outside price (regions weighted by base use) / base",
    "price_low_ratio": "lowest monthly price / base price",
    "price_low_ratio_outside": "lowest outside price (regions weighted by base use) / base",
    "unmet_physical_t": "t element over the horizon: wanted but not delivered (physical)",
    "demand_reduction_t": "t element over the horizon: given up because of price",
    "unmet_physical_element_t": "t element over the horizon (physical shortage)",
    "demand_reduction_element_t": "t element over the horizon (demand given up for price)",
    "need_t": "t element over the horizon: demand before the price response",
    "first_stoppage_week": "weeks after the first shock until the stoppage threshold (inf: none)",
    "stock_t": "t REO-eq in merchant stocks (oxide, metal and magnets)",
    "supply_t": "t REO-eq a month separated (incl. swarf recovered)",
    "use_t": "t element a month consumed by end users",
    "unmet_month_t": "t element a month physically short",
    "unmet_sector_t": "t element a month physically short, by sector",
    "secondary_added_t": "t element over the horizon: recycled outside the controller above "
                         "its base-year level",
    "new_supply_t": "t element over the horizon: new primary supply outside the controller",
}


class ResultError(ValueError):
    """A result file that cannot be read or is not an oreflow stress result."""


def assemble(summary_obs, bands: dict, base, scenario, seed: int, sha: str, version: str,
             max_resid: float, notes: list[str], leakage: float,
             price_cap: float = np.inf) -> xr.Dataset:
    """The result Dataset from the run's observers."""
    b = base
    months = scenario.months
    dates = pd.period_range(scenario.start, periods=months, freq="M").astype(str)
    coords = {"path": np.arange(summary_obs.peak.shape[0]), "month": np.arange(months),
              "region": list(b.regions), "element": list(b.elements), "sector": list(b.sectors),
              "quantile": list(QUANTILES)}
    p = summary_obs
    data = {
        "price_peak_ratio": (("path", "region", "element"), p.peak),
        "price_peak_ratio_outside": (("path", "element"), p.peak_outside),
        "price_low_ratio": (("path", "region", "element"), p.low),
        "price_low_ratio_outside": (("path", "element"), p.low_outside),
        "unmet_physical_t": (("path", "region", "sector"), p.unmet),
        "demand_reduction_t": (("path", "region", "sector"), p.reduction),
        "unmet_physical_element_t": (("path", "region", "element"), p.unmet_el),
        "demand_reduction_element_t": (("path", "region", "element"), p.reduction_el),
        "need_t": (("path", "region", "sector"), p.need),
        "first_stoppage_week": (("path", "region", "sector"), p.first_stoppage_week()),
        "base_price_usd_per_kg": (("region", "element"), b.price0),
        "secondary_added_t": (("path", "element"), p.secondary),
        "new_supply_t": (("path", "element"), p.new_supply),
    }
    for name, (dims, sketch) in bands.items():
        data[name] = (("quantile", "month", *dims), sketch.quantiles(QUANTILES))
    ds = xr.Dataset(data, coords={**coords, "date": ("month", list(dates))})
    for k, u in UNITS.items():
        if k in ds:
            ds[k].attrs["units"] = u
    ds.attrs.update({
        "scenario": scenario.name, "scenario_sha256": sha, "seed": int(seed),
        "paths": int(p.peak.shape[0]), "months": int(months), "start": scenario.start,
        "controller": b.controller, "dataset_version": version,
        "max_rel_balance_residual": float(max_resid), "engine": ENGINE,
        "leakage": float(leakage), "notes": json.dumps(notes), "price_cap": float(price_cap),
        "band_paths": int(min(p.peak.shape[0], _band_paths())) if bands else 0,
        "oreflow_version": _version(),
    })
    return ds


def _band_paths() -> int:
    from oreflow.simulate.observers import BAND_PATHS

    return BAND_PATHS


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("oreflow")
    except PackageNotFoundError:
        return "unknown"


def _num(x, none_if_inf: bool = False):
    v = float(x)
    if not np.isfinite(v):
        return None if none_if_inf or np.isnan(v) else v
    return round(v, 4)


def perspective_markets(ds: xr.Dataset, regions: list[str] | None) -> list[str]:
    """Market regions of a perspective's network regions (None: every region)."""
    if not regions:
        return [str(r) for r in ds["region"].values]
    return [r for r in ds["region"].values if r in set(regions)]


def summary(ds: xr.Dataset, perspective: str | None = None,
            markets: list[str] | None = None) -> dict:
    """Headline numbers as JSON-ready data: medians over paths. Sector figures are for the
    perspective's market regions (`markets`; default: every region)."""
    ctrl = ds.attrs["controller"]
    regions = [str(r) for r in ds["region"].values]
    sel = markets or regions

    def by_zone(var: str) -> dict:
        return _zones(ds, ds[var].median("path"), ds[f"{var}_outside"].median("path"))

    prices = by_zone("price_peak_ratio")
    lows = by_zone("price_low_ratio") if "price_low_ratio" in ds else None  # older files: none
    phys = _reduce(ds["unmet_physical_t"].sel(region=sel), "sum", "region")
    red = _reduce(ds["demand_reduction_t"].sel(region=sel), "sum", "region")
    first = _reduce(ds["first_stoppage_week"].sel(region=sel), "min", "region")
    by_region_phys = _reduce(ds["unmet_physical_t"], "sum", "sector").median("path")
    by_region_red = _reduce(ds["demand_reduction_t"], "sum", "sector").median("path")
    first_region = _reduce(ds["first_stoppage_week"], "min", "sector").median("path")
    sectors = [str(s) for s in ds["sector"].values]
    # a region without end use has no shortage to report: null, not a reassuring zero
    users = {r for r, u in zip(regions, has_end_use(ds), strict=True) if u}
    notes = json.loads(ds.attrs.get("notes", "[]"))
    if markets and not users & set(sel):
        notes.append(f"the perspective's regions ({', '.join(sel)}) have no end use in this "
                     "run's base year: their shortage figures are zero by construction")
    out = {
        "scenario": ds.attrs["scenario"],
        "paths": int(ds.attrs["paths"]),
        "seed": int(ds.attrs["seed"]),
        "months": int(ds.attrs["months"]),
        "start": ds.attrs["start"],
        "dataset_version": ds.attrs["dataset_version"],
        "controller": ctrl,
        "perspective": perspective or "all regions",
        "perspective_regions": sel,
        "price_peak_ratio": prices,
        "price_low_ratio": lows,
        "shortfall_t": {s: _num(phys.sel(sector=s).median("path")) for s in sectors},
        "first_shortfall_week": {s: _num(first.sel(sector=s).median("path"), True)
                                 for s in sectors},
        "unmet_physical_t": {s: _num(phys.sel(sector=s).median("path")) for s in sectors},
        "unmet_physical_t_p95": {s: _num(phys.sel(sector=s).quantile(0.95, "path"))
                                 for s in sectors},
        "demand_reduction_t": {s: _num(red.sel(sector=s).median("path")) for s in sectors},
        "unmet_physical_t_by_region": {r: _num(by_region_phys.sel(region=r)) if r in users
                                       else None for r in regions},
        "demand_reduction_t_by_region": {r: _num(by_region_red.sel(region=r)) if r in users
                                         else None for r in regions},
        "first_stoppage_week_by_region": {r: _num(first_region.sel(region=r), True)
                                          for r in regions},
        "price_at_cap_share": price_at_cap_share(ds),
        "price_at_floor_share": price_at_floor_share(ds),
        "new_supply_t": _new_supply(ds),
        "notes": notes,
        "units": {
            "price_peak_ratio": f"median over paths of the peak monthly oxide price / base "
                                f"price; keys: the controller ({ctrl}), {OUTSIDE} (every region "
                                f"outside it, weighted by base use) and each market region "
                                "(null: a region that uses none of it in the base year, in "
                                "any form, has no base price)",
            "price_low_ratio": "median over paths of the lowest monthly oxide price / base "
                               "price, keyed as price_peak_ratio: a price that falls (China's "
                               "inside price when exports are refused) shows here, not in the "
                               "peak",
            "shortfall_t": "t element over the horizon, median over paths: physical shortage "
                           "(wanted, not delivered) in the perspective's regions",
            "first_shortfall_week": "weeks after the first shock until a sector first loses "
                                    "the stoppage threshold of its demand physically (median; "
                                    "null: not on the median path)",
            "unmet_physical_t": "t element, physical shortage, median over paths",
            "demand_reduction_t": "t element given up because of price (not a shortage)",
            "unmet_physical_t_by_region": "t element over the horizon, all sectors, median "
                                          "(null: the region has no end use in the base year)",
            "demand_reduction_t_by_region": "t element over the horizon, all sectors, median "
                                            "(null: no end use in the base year)",
            "first_stoppage_week_by_region": "weeks until the first sector of the region "
                                             "stops (median; null: none)",
            "price_at_floor_share": "share of paths whose lowest price, in any region, reaches "
                                    "the numerical guard's floor (1/price_cap of base): a "
                                    "low there is the guard's echo, not a result",
            "new_supply_t": "t element over the horizon, median over paths: endogenous new "
                            "primary supply outside the controller (new mines answering a high "
                            "price, docs/model.md section 3; elements with none are left out)",
            "price_at_cap_share": "share of paths whose peak price, in any region, reaches the "
                                  f"numerical guard ({ds.attrs.get('price_cap', 'n/a')}x base): "
                                  "a price there is the guard's echo, not a result",
        },
    }
    return out


def has_end_use(ds: xr.Dataset) -> np.ndarray:
    """[region] bool: the region has end use on some path. A region without any has no
    shortage to report (null or n/a), not a zero that reads as unaffected."""
    return (_reduce(_reduce(ds["need_t"], "sum", "sector"), "max", "path") > 0).values


def _reduce(da: xr.DataArray, how: str, dim: str) -> xr.DataArray:
    """`da.<how>(dim)`, skipping NaN only where `da` holds one: the same numbers, without
    the masked copy of the whole array xarray makes to skip NaN (a 100,000-path summary
    spent ~0.4 s on those copies)."""
    return getattr(da, how)(dim, skipna=bool(np.isnan(da.values).any()))


def _new_supply(ds: xr.Dataset) -> dict[str, float]:
    """Element -> median t of endogenous new supply over the horizon, where any path has
    some (older results without the variable: empty)."""
    if "new_supply_t" not in ds:
        return {}
    v = ds["new_supply_t"]
    return {str(e): _num(v.sel(element=e).median("path")) for e in ds["element"].values
            if float(v.sel(element=e).max()) > 0}


def _zones(ds: xr.Dataset, per_region: xr.DataArray, outside: xr.DataArray) -> dict:
    """Element (traded) -> {controller, outside zone, every other region}: a price figure
    already reduced over paths, [region, element] and [element]."""
    ctrl = ds.attrs["controller"]
    base = ds["base_price_usd_per_kg"]
    out = {}
    for e in ds["element"].values:
        if float(base.sel(element=e).max()) <= 0:
            continue
        row = {ctrl: _num(per_region.sel(region=ctrl, element=e)),
               OUTSIDE: _num(outside.sel(element=e))}
        row.update({str(r): _num(per_region.sel(region=r, element=e))
                    for r in ds["region"].values if r != ctrl})
        out[str(e)] = row
    return out


class CompareError(ValueError):
    """Two results that cannot be compared path by path; the message says why."""


PAIRED = ("paths are paired: path i of both runs has the same seed, and shocks listed in the "
          "same order in both scenarios draw the same numbers on it (put what one scenario "
          "adds after the shocks they share); a change is the median over paths of the "
          "path's own difference, not the difference of two medians")


def compare(ds: xr.Dataset, against: xr.Dataset, perspective: str | None = None,
            markets: list[str] | None = None) -> dict:
    """`ds` against `against`, path by path (common random numbers): the change in physical
    shortage and in demand given up because of price, by sector for the perspective's
    regions (`markets`; default: every region) and by region, as p5/p50/p95 over paths of
    each path's difference (tonnes, `ds` minus `against`); and the ratio of the price peaks,
    median over paths, keyed as `summary`'s `price_peak_ratio`. Refused unless both runs
    have the same paths, seed, months, regions, elements, sectors and controller."""
    for key in ("paths", "seed", "months", "controller"):
        if ds.attrs.get(key) != against.attrs.get(key):
            raise CompareError(f"the runs differ in {key} ({ds.attrs.get(key)!r} against "
                               f"{against.attrs.get(key)!r}): compare runs of the same paths, "
                               "seed, horizon and controller")
    for dim in ("region", "element", "sector"):
        if list(ds[dim].values) != list(against[dim].values):
            raise CompareError(f"the runs have different {dim}s: compare scenarios of the "
                               "same commodities on the same base year")
    ctrl = ds.attrs["controller"]
    regions = [str(r) for r in ds["region"].values]
    sel = markets or regions
    sectors = [str(x) for x in ds["sector"].values]

    def bands(d: xr.DataArray) -> dict:
        q = d.quantile([0.05, 0.5, 0.95], "path")
        return {"p5": _num(q.sel(quantile=0.05)), "p50": _num(q.sel(quantile=0.5)),
                "p95": _num(q.sel(quantile=0.95))}

    def change(var: str, dim: str) -> xr.DataArray:
        a, b = ds[var], against[var]
        if dim == "sector":
            return a.sel(region=sel).sum("region") - b.sel(region=sel).sum("region")
        return a.sum("sector") - b.sum("sector")

    used = has_end_use(ds)
    phys_s, red_s = change("unmet_physical_t", "sector"), change("demand_reduction_t", "sector")
    phys_r = change("unmet_physical_t", "region")
    prices = _zones(ds, (ds["price_peak_ratio"] / against["price_peak_ratio"]).median("path"),
                    (ds["price_peak_ratio_outside"]
                     / against["price_peak_ratio_outside"]).median("path"))
    return {
        "scenario": ds.attrs["scenario"], "against": against.attrs["scenario"],
        "paths": int(ds.attrs["paths"]), "seed": int(ds.attrs["seed"]),
        "months": int(ds.attrs["months"]), "controller": ctrl,
        "perspective": perspective or "all regions", "perspective_regions": sel,
        "unmet_physical_t_change": {x: bands(phys_s.sel(sector=x)) for x in sectors},
        "demand_reduction_t_change": {x: bands(red_s.sel(sector=x)) for x in sectors},
        "unmet_physical_t_change_by_region": {
            r: bands(phys_r.sel(region=r)) if u else None
            for r, u in zip(regions, used, strict=True)},
        "price_peak_ratio_change": prices,
        "notes": [PAIRED],
        "units": {
            "unmet_physical_t_change": "t element over the horizon, this scenario minus the "
                                       "other, path by path, p5/p50/p95 over paths, in the "
                                       "perspective's regions (negative: shortage avoided)",
            "demand_reduction_t_change": "t element given up because of price, the same way",
            "unmet_physical_t_change_by_region": "t element, all sectors, the same way (null: "
                                                 "the region has no end use)",
            "price_peak_ratio_change": "median over paths of this scenario's peak price / the "
                                       "other's on the same path (1: unchanged), keyed as "
                                       "price_peak_ratio",
        },
    }


def price_at_floor_share(ds: xr.Dataset) -> dict[str, float]:
    """Element -> share of paths whose lowest price ratio in any region is at the numerical
    guard's lower bound (1 / price_cap, within 1% in log terms): such a low is the guard's
    echo, not a result."""
    at = _at_floor(ds)
    if at is None:
        return {}
    share = at.any("region").mean("path")
    traded = ds["base_price_usd_per_kg"].max("region") > 0
    return {str(e): round(float(share.sel(element=e)), 4) for e in ds["element"].values
            if bool(traded.sel(element=e))}


def floor_note(ds: xr.Dataset) -> str | None:
    """A note naming the elements and regions whose lowest price reaches the guard's lower
    bound on some path, or None."""
    share = price_at_floor_share(ds)
    hit = {e: v for e, v in share.items() if v > 0}
    if not hit:
        return None
    at = _at_floor(ds)
    where = sorted({str(r) for r in ds["region"].values
                    if bool(at.sel(region=r, element=list(hit)).any())})
    note = (f"{', '.join(hit)}: the lowest price in {', '.join(where)} reaches the numerical "
            f"guard's floor (1/{float(ds.attrs['price_cap']):g} of base) on up to "
            f"{max(hit.values()):.0%} of paths: a low there is the guard's echo, not a result")
    note += (". It comes from a surplus the region cannot sell on (stock held for buyers "
             "who stopped ordering, as when new mines flood them with a co-product)")
    if float(ds.attrs.get("arbitrage_rate", 0.0)) <= 0:
        note += (": with arbitrage_rate 0 (an assumption) a region's stock reaches others "
                 "only to fill their unmet requests")
    return note + " (docs/model.md, section 4)"


UNLINKED_RATIO = 1.1
"""A controller's median peak at least this multiple of base, and of the outside's median
peak, is named by `unlinked_note`."""


def unlinked_note(ds: xr.Dataset) -> str | None:
    """With arbitrage off, the controller's price and the outside's are linked only by what
    the controller ships: a shortage inside it (a mine halt, an outage) raises its price
    while the outside, still served at the base-year rate, stays put. Where no control
    forbids it, exporters would raise their export prices too, so the outside's flat price
    is the assumption's echo: a note names the elements, or None."""
    if float(ds.attrs.get("arbitrage_rate", 0.0)) > 0 or "price_peak_ratio_outside" not in ds:
        return None
    inside = ds["price_peak_ratio"].sel(region=ds.attrs["controller"]).median("path")
    outside = ds["price_peak_ratio_outside"].median("path")
    hit = [(str(e), float(inside.sel(element=e)), float(outside.sel(element=e)))
           for e in ds["element"].values
           if float(inside.sel(element=e)) >= UNLINKED_RATIO
           and float(inside.sel(element=e)) >= UNLINKED_RATIO * float(outside.sel(element=e))]
    if not hit:
        return None
    figures = ", ".join(f"{e} {i:.2f}x vs {o:.2f}x" for e, i, o in hit)
    return (f"{', '.join(e for e, _, _ in hit)}: the price inside {ds.attrs['controller']} "
            f"rises while the outside's does not (median peaks, inside vs outside: {figures}). "
            "With arbitrage_rate 0 (an assumption) the zones are linked only by what the "
            "controller ships, and its exporters keep shipping what is asked of them; where no "
            "control forbids it, trade would carry part of the rise outside: run with "
            "arbitrage on to see it (docs/model.md, section 4)")


def _at_floor(ds: xr.Dataset) -> xr.DataArray | None:
    """[path, region, element] lowest price at the guard's lower bound (1 / price_cap, within
    1% in log terms); None without a guard or lowest prices (older results)."""
    cap = float(ds.attrs.get("price_cap", np.inf))
    if not np.isfinite(cap) or cap <= 1 or "price_low_ratio" not in ds:
        return None
    return np.log(ds["price_low_ratio"].fillna(1.0)) <= -0.99 * np.log(cap)


def price_at_cap_share(ds: xr.Dataset) -> dict[str, float]:
    """Element -> share of paths whose peak price ratio in any region is at the numerical
    guard (within 1% of it, in log terms)."""
    cap = float(ds.attrs.get("price_cap", np.inf))
    if not np.isfinite(cap) or cap <= 1:
        return {}
    peak = ds["price_peak_ratio"].max("region")
    at = (np.log(peak.fillna(1.0)) >= 0.99 * np.log(cap)).mean("path")
    traded = ds["base_price_usd_per_kg"].max("region") > 0
    return {str(e): round(float(at.sel(element=e)), 4) for e in ds["element"].values
            if bool(traded.sel(element=e))}


def save_result(ds: xr.Dataset, path: Path | str) -> Path:
    """Write the result as NetCDF, atomically. It is serialised in memory first, so HDF5 never
    writes to disk (it crashes on a full disk); the file write raises oreflow.io.WriteError."""
    return atomic_write_bytes(path, ds.to_netcdf(engine="h5netcdf"))


REQUIRED = ("price_peak_ratio", "unmet_physical_t", "demand_reduction_t",
            "first_stoppage_week", "price_usd_per_kg")


def check_result(ds: xr.Dataset, label: str = "result") -> xr.Dataset:
    """Refuse a Dataset that is not an oreflow stress result of this engine."""
    if ds.attrs.get("engine") != ENGINE:
        raise ResultError(f"{label}: not an oreflow stress result of engine {ENGINE} "
                          f"(engine attribute: {ds.attrs.get('engine')!r}); re-run the stress "
                          "test")
    missing = [v for v in REQUIRED if v not in ds]
    if missing:
        raise ResultError(f"{label}: missing variable(s) {', '.join(missing)}")
    return ds


def load_result(path: Path | str) -> xr.Dataset:
    p = Path(path)
    if not p.is_file():
        raise ResultError(f"{p}: no such file")
    try:
        with xr.open_dataset(p, engine="h5netcdf") as ds:
            ds = ds.load()
    except Exception as e:  # h5py/h5netcdf raise many types for a file that is not NetCDF
        raise ResultError(f"{p}: not a readable NetCDF file ({type(e).__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else 'no detail'})") from None
    return check_result(ds, str(p))
