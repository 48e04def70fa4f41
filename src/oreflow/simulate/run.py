"""Run a scenario through the engine and assemble the result as an xarray Dataset.

The result keeps per-path summaries (peak price ratios, shortfall by sector, element and
region, first week of shortfall) and monthly bands (p5, p50, p95 over paths) of prices,
inventories, supply, use and unmet demand per element and zone. It records the seed, the
scenario's SHA-256, the dataset version and the largest mass-balance residual.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from oreflow.finite import check_result_finite
from oreflow.io import atomic_write_bytes
from oreflow.network import Network
from oreflow.scenario import Scenario, load_scenario
from oreflow.simulate.base import zone_base
from oreflow.simulate.engine import Behaviour, Engine
from oreflow.simulate.shocks import sample_shocks

QUANTILES = (0.05, 0.5, 0.95)
BAND_PATHS = 10_000
"""Monthly bands are quantiles over the first BAND_PATHS paths (per-path summaries use all)."""
WEEKS_PER_MONTH = 52.0 / 12.0
SHORTFALL_THRESHOLD = 0.005
"""A sector counts as short from the first month its unmet need of any element exceeds 0.5%
of its need of that element."""
MONTHLY = ("price_usd_per_kg", "inventory_t", "supply_t", "use_t", "unmet_t")


def run_stress(scenario: str | Path | Scenario, paths: int = 1000, seed: int = 0,
               months: int | None = None, network: Network | None = None,
               behaviour: Behaviour | None = None, chunk: int = 2_000,
               progress: Callable[[int, int], None] | None = None,
               scenario_sha256: str = "", threads: int | None = None,
               on_month: Callable[[Engine, slice, int, dict], None] | None = None
               ) -> xr.Dataset:
    """Simulate `paths` Monte Carlo paths of a scenario (built-in name, YAML path or object).

    Same seed, scenario and dataset give the same result. `progress(done, total)` is called
    after every simulated month of every chunk; `on_month(engine, paths_slice, month, state)`
    sees the engine's monthly [group, path, element] arrays (the stockpile planner keeps
    unmet demand per path this way); chunks run in two threads, so it must only write into
    its own slice.
    """
    if paths < 1:
        raise ValueError(f"paths must be at least 1, got {paths}")
    threads = threads or min(2, os.cpu_count() or 1)
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
    lock = threading.Lock()

    def run_one(lo: int) -> float:
        sl = slice(lo, min(lo + chunk, paths))

        def record(t: int, state: dict) -> None:
            nonlocal done
            rec.record(sl, t, state)
            if on_month is not None:
                on_month(engine, sl, t, state)
            with lock:
                done += sl.stop - sl.start
                if progress is not None:
                    progress(done, total)

        bands = rec.start_chunk(sl)
        resid = engine.run_chunk(sl, record)
        with lock:
            rec.end_chunk(bands)
        return resid

    # chunks are independent: two threads keep both cores busy (numpy releases the GIL)
    with ThreadPoolExecutor(max_workers=threads) as pool:
        # np.max, not max(): a NaN residual must propagate, not be skipped
        max_resid = float(np.max(list(pool.map(run_one, range(0, paths, chunk)))))
    ds = rec.dataset(sc, seed, scenario_sha256, net.dataset.version, max_resid)
    return check_result_finite(ds, f"scenario {sc.name!r}")


class _Recorder:
    """Collects what the engine reports each month.

    Monthly bands: each chunk of paths keeps its months in path-last float32 arrays, and its
    p5/p50/p95 are averaged over chunks weighted by size (exact when one chunk holds every
    path). Unmet need is accumulated by demand group and turned into sectors, elements and
    regions at the end with fixed weights (a sector's share of its group's base demand)."""

    def __init__(self, engine: Engine, net: Network, paths: int, months: int, shocks) -> None:
        b = engine.b
        self.engine, self.base, self.paths = engine, b, paths
        self.band_total = min(paths, BAND_PATHS)
        E, S, G = b.n_elements, len(b.sectors), len(engine.groups)
        self.months = months
        self.bands = {k: np.zeros((len(QUANTILES), months, 2, E)) for k in MONTHLY}
        self._bands_of: dict[int, dict[str, np.ndarray]] = {}
        self.peak = np.full((paths, 2, E), np.nan)
        self.acc = np.zeros((2, G, paths, E))  # zone (in, out), group, path, element
        self.first = np.full((paths, S), np.inf)
        self.secondary = np.zeros((paths, E))  # recycled supply above the base-year level
        mpo = net.dataset["elements"].set_index("element")["metal_per_oxide"]
        self.metal_per_oxide = mpo.reindex(b.elements).to_numpy(float)
        starts = [s.start for s in (*shocks.controls, *shocks.outages, *shocks.shifts)]
        self.first_shock = np.min(np.stack(starts), 0) if starts else np.full(paths, np.nan)
        # W[zone, group, element, sector]: a sector's share of its group's base demand
        g = engine.sector_group
        self.W = np.zeros((2, G, E, S))
        for zone, (d_sec, d_grp) in enumerate([(b.sector_demand_in.T, engine.d0_in),
                                               (b.sector_demand_out.sum(2).T, engine.d0_out)]):
            w = np.divide(d_sec, d_grp[g], out=np.zeros_like(d_sec), where=d_grp[g] > 0)
            for s in range(S):
                self.W[zone, g[s], :, s] = w[s]
        # [zone, sector, 1, element]: each sector's weight in its own group
        self.w_sector = self.W[:, g, :, np.arange(S)].transpose(1, 0, 2)[:, :, None, :]
        tot = b.sector_demand_out.sum(2, keepdims=True)
        share = np.divide(b.sector_demand_out, tot, out=np.zeros_like(b.sector_demand_out),
                          where=tot > 0)  # [E, S, R_out]
        self.W_region = np.einsum("ges,esr->ger", self.W[1], share)
        self.price0 = np.stack([b.price_in, b.price_out])
        self.inv_price0 = np.divide(1.0, self.price0, out=np.full_like(self.price0, np.nan),
                                    where=self.price0 > 0)  # no ratio for untraded elements

    def start_chunk(self, sl: slice) -> dict:
        """Band storage for the part of this chunk that lies in the first BAND_PATHS paths."""
        E = self.base.n_elements
        n = max(0, min(sl.stop, self.band_total) - sl.start)
        self._bands_of[sl.start] = {k: np.zeros((self.months, 2, E, n), np.float32)
                                    for k in MONTHLY} if n else {}
        return self._bands_of[sl.start]

    def end_chunk(self, bands: dict) -> None:
        for k, arr in bands.items():
            self.bands[k] += np.quantile(arr, QUANTILES, axis=-1) * (
                arr.shape[-1] / self.band_total)

    def record(self, sl: slice, t: int, s: dict) -> None:
        bands = self._bands_of[sl.start]
        if bands:
            n = bands["use_t"].shape[-1]
            self._record_bands(bands, t, {k: v[:n] if v.ndim == 2 else v[:, :n]
                                          for k, v in s.items() if not k.startswith("need")})
        self._record_paths(sl, t, s)

    def _record_bands(self, c: dict, t: int, s: dict) -> None:
        for k, (a, b) in {"price_usd_per_kg": ("price_in", "price_out"),
                          "inventory_t": ("inventory_in", "inventory_out"),
                          "supply_t": ("supply_in", "supply_out"),
                          "use_t": ("use_in", "use_out")}.items():
            c[k][t, 0] = s[a].T
            c[k][t, 1] = s[b].T
        c["unmet_t"][t, 0] = s["short_in"].sum(0).T
        c["unmet_t"][t, 1] = s["short_out"].sum(0).T

    def _record_paths(self, sl: slice, t: int, s: dict) -> None:
        self.peak[sl, 0] = np.fmax(self.peak[sl, 0], s["price_in"] * self.inv_price0[0])
        self.peak[sl, 1] = np.fmax(self.peak[sl, 1], s["price_out"] * self.inv_price0[1])
        self.acc[0, :, sl] += s["short_in"]
        self.acc[1, :, sl] += s["short_out"]
        self.secondary[sl] += s["secondary_out"]
        # a sector is short once any element it uses is short by more than the threshold
        # (a motor line stops for want of Dy even when its Nd arrives)
        first = self.first[sl]
        todo = np.flatnonzero(np.isinf(first).any(0))  # sectors not yet short on every path
        if len(todo) == 0:
            return
        g, w = self.engine.sector_group[todo], self.w_sector[:, todo]
        short = s["short_in"][g] * w[0] + s["short_out"][g] * w[1]
        need = s["need_in"][g] * w[0] + s["need_out"][g] * w[1]  # [S_todo, P, E]
        worst = np.divide(short, need, out=np.zeros_like(short), where=need > 1e-12).max(2).T
        hit = (worst > SHORTFALL_THRESHOLD) & np.isinf(first[:, todo])
        first[:, todo] = np.where(hit, t + 1.0 - np.minimum(worst, 1.0), first[:, todo])

    def dataset(self, sc: Scenario, seed: int, sha: str, version: str,
                max_resid: float) -> xr.Dataset:
        b = self.base
        zones = [b.controller, "ROW"]
        dates = pd.period_range(sc.start, periods=self.months, freq="M").astype(str)
        coords = {"month": np.arange(self.months), "zone": zones, "element": b.elements,
                  "sector": b.sectors, "quantile": list(QUANTILES)}
        data = {k: (("quantile", "month", "zone", "element"), v) for k, v in self.bands.items()}
        weeks = (self.first - self.first_shock[:, None]) * WEEKS_PER_MONTH
        acc = self.acc * self.metal_per_oxide  # t REO-eq -> t element
        by_sector = np.einsum("zgpe,zges->pzs", acc, self.W)
        by_element = acc.sum(1).transpose(1, 0, 2)
        by_region = np.concatenate([np.einsum("gpe,ger->pr", acc[1], self.W_region),
                                    acc[0].sum((0, 2))[:, None]], 1)
        data.update({
            "price_peak_ratio": (("path", "zone", "element"), self.peak),
            "shortfall_t": (("path", "zone", "sector"), by_sector),
            "shortfall_element_t": (("path", "zone", "element"), by_element),
            "shortfall_region_t": (("path", "region"), by_region),
            "first_shortfall_week": (("path", "sector"), np.maximum(weeks, 0.0)),
            "base_price_usd_per_kg": (("zone", "element"), self.price0),
            "secondary_added_t": (("path", "element"), self.secondary * self.metal_per_oxide),
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
                 "price_peak_ratio": "peak monthly price / base price",
                 "secondary_added_t": "t element over the horizon: recycled supply outside "
                                      "the controller above its base-year level"}
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
    """Write the result as NetCDF, atomically. It is serialised in memory first, so HDF5 never
    writes to disk (it crashes on a full disk); the file write raises oreflow.io.WriteError."""
    return atomic_write_bytes(path, ds.to_netcdf(engine="h5netcdf"))
