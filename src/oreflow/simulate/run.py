"""Run a scenario through the engine and assemble the result as an xarray Dataset.

The result keeps per-path summaries (peak price ratios, shortfall by sector, element and
region, first week of shortfall) and monthly bands (p5, p50, p95 over paths) of prices,
inventories, supply, use and unmet demand per element and zone. It records the seed, the
scenario's SHA-256, the dataset version and the largest mass-balance residual.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from oreflow.io import atomic_write
from oreflow.network import Network
from oreflow.scenario import Scenario, load_scenario
from oreflow.simulate.base import zone_base
from oreflow.simulate.engine import Behaviour, Engine
from oreflow.simulate.shocks import sample_shocks

QUANTILES = (0.05, 0.5, 0.95)
WEEKS_PER_MONTH = 52.0 / 12.0
MONTHLY = ("price_usd_per_kg", "inventory_t", "supply_t", "use_t", "unmet_t")


def run_stress(scenario: str | Path | Scenario, paths: int = 1000, seed: int = 0,
               months: int | None = None, network: Network | None = None,
               behaviour: Behaviour | None = None, chunk: int = 10_000,
               progress: Callable[[int, int], None] | None = None,
               scenario_sha256: str = "") -> xr.Dataset:
    """Simulate `paths` Monte Carlo paths of a scenario (built-in name, YAML path or object).

    Same seed, scenario and dataset give the same result. `progress(done, total)` is called
    after every simulated month of every chunk.
    """
    if paths < 1:
        raise ValueError(f"paths must be at least 1, got {paths}")
    net = network if network is not None else Network.from_dataset()
    if isinstance(scenario, Scenario):
        sc = scenario
    else:
        sc, scenario_sha256 = load_scenario(scenario, net)
    if months is not None:
        if months < 1:
            raise ValueError(f"months must be at least 1, got {months}")
        sc = sc.model_copy(update={"months": months})
    beh = behaviour or Behaviour.from_dataset(net.dataset)
    base = zone_base(net, sc.controller)
    rng = np.random.default_rng(seed)
    shocks = sample_shocks(sc, base, net.regions, rng, paths)
    engine = Engine(base, beh, sc, shocks, net.regions)
    rec = _Recorder(engine, net, paths, sc.months, shocks)
    total, done = paths * sc.months, 0
    max_resid = 0.0
    for lo in range(0, paths, chunk):
        sl = slice(lo, min(lo + chunk, paths))

        def record(t: int, state: dict, sl=sl) -> None:
            nonlocal done
            rec.record(sl, t, state)
            done += sl.stop - sl.start
            if progress is not None:
                progress(done, total)

        max_resid = max(max_resid, engine.run_chunk(sl, record))
    ds = rec.dataset(sc, seed, scenario_sha256, net.dataset.version, max_resid)
    return ds


class _Recorder:
    """Collects what the engine reports each month into per-path arrays."""

    def __init__(self, engine: Engine, net: Network, paths: int, months: int, shocks) -> None:
        b = engine.b
        self.engine, self.base = engine, b
        E, S = b.n_elements, len(b.sectors)
        self.months = months
        shape = (paths, months, 2, E)
        self.monthly = {k: np.zeros(shape, np.float32) for k in MONTHLY}
        self.short_sector = np.zeros((paths, 2, S))
        self.short_element = np.zeros((paths, 2, E))
        self.short_region = np.zeros((paths, len(b.out_regions) + 1))
        self.first = np.full((paths, S), np.inf)
        mpo = net.dataset["elements"].set_index("element")["metal_per_oxide"]
        self.metal_per_oxide = mpo.reindex(b.elements).to_numpy(float)
        starts = [s.start for s in (*shocks.controls, *shocks.outages, *shocks.shifts)]
        self.first_shock = np.min(np.stack(starts), 0) if starts else np.full(paths, np.nan)
        # sector weights within its (form, class) group, outside and inside
        f, c = b.sector_form, engine.sector_class
        d_out = b.sector_demand_out.sum(2).T  # [S, E]
        d_in = b.sector_demand_in.T
        self.w_out = np.divide(d_out, engine.d0_out[f, c], out=np.zeros_like(d_out),
                               where=engine.d0_out[f, c] > 0)
        self.w_in = np.divide(d_in, engine.d0_in[f, c], out=np.zeros_like(d_in),
                              where=engine.d0_in[f, c] > 0)
        tot = b.sector_demand_out.sum(2, keepdims=True)  # [E, S, 1]
        self.region_share = np.divide(b.sector_demand_out, tot,
                                      out=np.zeros_like(b.sector_demand_out), where=tot > 0)
        self.price0 = np.stack([b.price_in, b.price_out])

    def record(self, sl: slice, t: int, s: dict) -> None:
        b, e = self.base, self.engine
        m = self.monthly
        m["price_usd_per_kg"][sl, t] = np.stack([s["price_in"], s["price_out"]], 1)
        m["inventory_t"][sl, t] = np.stack([s["inventory_in"], s["inventory_out"]], 1)
        m["supply_t"][sl, t] = np.stack([s["supply_in"], s["supply_out"]], 1)
        m["use_t"][sl, t] = np.stack([s["use_in"], s["use_out"]], 1)
        f, c = b.sector_form, e.sector_class
        sec_out = s["short_out"][f, c] * self.w_out[:, None, :]  # [S, P, E]
        sec_in = s["short_in"][f, c] * self.w_in[:, None, :]
        m["unmet_t"][sl, t] = np.stack([sec_in.sum(0), sec_out.sum(0)], 1)
        mpo = self.metal_per_oxide
        self.short_sector[sl, 0] += (sec_in * mpo).sum(2).T
        self.short_sector[sl, 1] += (sec_out * mpo).sum(2).T
        self.short_element[sl, 0] += sec_in.sum(0) * mpo
        self.short_element[sl, 1] += sec_out.sum(0) * mpo
        self.short_region[sl, :-1] += np.einsum("spe,esr->pr", sec_out * mpo,
                                                self.region_share)
        self.short_region[sl, -1] += (sec_in * mpo).sum((0, 2))
        need = ((s["need_out"][f, c] * self.w_out[:, None, :]).sum(2)
                + (s["need_in"][f, c] * self.w_in[:, None, :]).sum(2)).T  # [P, S]
        short = (sec_out.sum(2) + sec_in.sum(2)).T
        hit = (short > 1e-9 * np.maximum(need, 1.0)) & np.isinf(self.first[sl])
        frac = np.clip(1.0 - short / np.maximum(need, 1e-12), 0.0, 1.0)
        self.first[sl] = np.where(hit, t + frac, self.first[sl])

    def dataset(self, sc: Scenario, seed: int, sha: str, version: str,
                max_resid: float) -> xr.Dataset:
        b = self.base
        zones = [b.controller, "ROW"]
        dates = pd.period_range(sc.start, periods=self.months, freq="M").astype(str)
        coords = {"month": np.arange(self.months), "zone": zones, "element": b.elements,
                  "sector": b.sectors, "quantile": list(QUANTILES)}
        data = {}
        for k, arr in self.monthly.items():
            q = np.quantile(arr, QUANTILES, axis=0).astype(np.float64)
            data[k] = (("quantile", "month", "zone", "element"), q)
        price = self.monthly["price_usd_per_kg"]
        peak = price.max(1) / np.maximum(self.price0[None], 1e-12)
        weeks = (self.first - self.first_shock[:, None]) * WEEKS_PER_MONTH
        data.update({
            "price_peak_ratio": (("path", "zone", "element"), peak.astype(np.float64)),
            "shortfall_t": (("path", "zone", "sector"), self.short_sector),
            "shortfall_element_t": (("path", "zone", "element"), self.short_element),
            "shortfall_region_t": (("path", "region"), self.short_region),
            "first_shortfall_week": (("path", "sector"), np.maximum(weeks, 0.0)),
            "base_price_usd_per_kg": (("zone", "element"), self.price0),
        })
        ds = xr.Dataset(data, coords={**coords, "date": ("month", list(dates)),
                                      "region": [*b.out_regions, b.controller],
                                      "path": np.arange(len(self.first))})
        units = {"price_usd_per_kg": "USD/kg oxide", "inventory_t": "t REO-eq",
                 "supply_t": "t REO-eq per month", "use_t": "t REO-eq per month",
                 "unmet_t": "t REO-eq per month", "shortfall_t": "t element over the horizon",
                 "shortfall_element_t": "t element over the horizon",
                 "shortfall_region_t": "t element over the horizon",
                 "first_shortfall_week": "weeks after the first shock (inf: none)",
                 "price_peak_ratio": "peak monthly price / base price"}
        for k, u in units.items():
            ds[k].attrs["units"] = u
        ds.attrs.update({
            "scenario": sc.name, "scenario_sha256": sha, "seed": int(seed),
            "paths": int(len(self.first)), "months": int(self.months), "start": sc.start,
            "controller": b.controller, "dataset_version": version,
            "max_rel_balance_residual": float(max_resid),
            "oreflow_version": _version(),
        })
        return ds


def _version() -> str:
    from oreflow import __version__

    return __version__


def summary(ds: xr.Dataset) -> dict:
    """The headline numbers as plain JSON-ready data (medians over paths)."""
    ctrl = ds.attrs["controller"]
    peak = ds["price_peak_ratio"].median("path")
    active = ds["base_price_usd_per_kg"].sel(zone="ROW") > 0
    short = ds["shortfall_t"].sum("zone").median("path")
    weeks = ds["first_shortfall_week"].median("path")
    flows = ds["use_t"].sel(quantile=0.5).sum(("month", "zone"))
    return {
        "scenario": ds.attrs["scenario"],
        "paths": int(ds.attrs["paths"]),
        "seed": int(ds.attrs["seed"]),
        "months": int(ds.attrs["months"]),
        "dataset_version": ds.attrs["dataset_version"],
        "price_peak_ratio": {
            str(e): {"CHN" if ctrl == "CHN" else ctrl: _num(peak.sel(zone=ctrl, element=e)),
                     "ROW": _num(peak.sel(zone="ROW", element=e))}
            for e in ds["element"].values
            if bool(active.sel(element=e)) and float(flows.sel(element=e)) > 0
        },
        "shortfall_t": {str(s): _num(short.sel(sector=s)) for s in ds["sector"].values},
        "first_shortfall_week": {str(s): _num(weeks.sel(sector=s), none_if_inf=True)
                                 for s in ds["sector"].values},
    }


def _num(x, none_if_inf: bool = False):
    v = float(x)
    if not np.isfinite(v):
        return None if none_if_inf or np.isnan(v) else v
    return round(v, 4)


def save_result(ds: xr.Dataset, path: Path | str) -> Path:
    """Write the result as NetCDF, atomically."""
    return atomic_write(path, lambda p: ds.to_netcdf(p, engine="h5netcdf"))
