"""A sweep's Zarr store: per-path results chunked by (scenario, design point, block of paths),
a completion mask, and the headlines and Sobol indices once every block is in.

Layout (Zarr v3, one store per sweep; axes in each array's `dimension_names`):

    attrs                      the sweep file's text and SHA-256, scenarios, parameters,
                               design, paths, block size, seed, dataset version, axis labels,
                               `complete` (true only once everything below is written)
    design_unit                [point, parameter] the design on the unit hypercube
    design_value               [point, parameter] parameter values at each point
    price_peak_ratio_outside   [scenario, point, path, element]   per path, float32
    unmet_physical_t           [scenario, point, path, region, sector]
    first_stoppage_week        [scenario, point, path, region, sector] (inf: none)
    max_rel_balance_residual   [scenario, point, block]
    done                       [scenario, point, block] the completion mask
    headline                   [scenario, point, headline] medians over all paths
    sobol_S1, sobol_S1_conf,   [scenario, headline, parameter] (saltelli designs)
    sobol_ST, sobol_ST_conf

Crash safety: a block's data chunks are written before its mask entry, and every chunk and
metadata file is written to a temporary name and renamed into place (zarr's LocalStore does
this), so a killed sweep leaves either a block marked done with its data, or a block to
recompute. A new store is built in a temporary directory and renamed into place, so a store
either exists with all its arrays or not at all. Only the process that runs the sweep writes
(workers return arrays), so workers need no shared file system.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from oreflow.sweep.errors import SweepError
from oreflow.sweep.tasks import OUTPUTS

FORMAT = "oreflow-sweep-1"
MAX_READ_CELLS = 50_000_000
"""Per-path values read at once when computing headlines (bounds memory to ~400 MB)."""
WEEKS_PER_MONTH = 52.0 / 12.0


def _zarr():
    import zarr

    return zarr


def create_or_open(path: Path | str, sweep, axes: dict[str, list[str]],
                   dataset_version: str) -> SweepStore:
    """The store for `sweep` at `path`: created if absent, reopened to resume if it holds
    the same sweep (same file text, scenarios and dataset), refused otherwise."""
    p = Path(path)
    if p.exists():
        st = SweepStore(p)
        if st.attrs.get("sweep_sha256") != sweep.sha256:
            raise SweepError(f"{p}: holds another sweep (or another version of this sweep "
                             "file: the text, scenarios, paths or block size changed); use "
                             "another --out or delete it to start over")
        if st.attrs.get("dataset_version") != dataset_version:
            raise SweepError(f"{p}: made with dataset {st.attrs.get('dataset_version')}, "
                             f"this is {dataset_version}; use another --out")
        return st
    return _create(p, sweep, axes, dataset_version)


def _create(p: Path, sweep, axes, dataset_version: str) -> SweepStore:
    zarr = _zarr()
    from oreflow.simulate.results import _version

    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{p.name}.", dir=p.parent))
    try:
        root = zarr.open_group(str(tmp), mode="w", zarr_format=3)
        S, P, N = len(sweep.scenarios), sweep.points, sweep.spec.paths
        nb, B = len(sweep.blocks), sweep.spec.block_paths
        params = [p_.name for p_ in sweep.params]
        root.create_array("design_unit", data=sweep.unit, chunks=sweep.unit.shape,
                          dimension_names=("point", "parameter"))
        root.create_array("design_value", data=sweep.values, chunks=sweep.values.shape,
                          dimension_names=("point", "parameter"))
        for name, (dims, units) in OUTPUTS.items():
            shape = tuple(len(axes[d]) for d in dims)
            a = root.create_array(name, shape=(S, P, N, *shape), chunks=(1, 1, B, *shape),
                                  dtype="float32", fill_value=np.nan,
                                  dimension_names=("scenario", "point", "path", *dims))
            a.attrs["units"] = units
        root.create_array("max_rel_balance_residual", shape=(S, P, nb), chunks=(1, 1, nb),
                          dtype="float64", fill_value=np.nan,
                          dimension_names=("scenario", "point", "block"))
        root.create_array("done", shape=(S, P, nb), chunks=(1, 1, nb), dtype="bool",
                          fill_value=False, dimension_names=("scenario", "point", "block"))
        spec = sweep.spec
        root.attrs.update({
            "format": FORMAT, "name": spec.name, "description": spec.description,
            "sweep_file": Path(sweep.label).name, "sweep_sha256": sweep.sha256,
            "sweep_spec": spec.model_dump(mode="json"),
            "scenarios": sweep.scenario_names, "scenario_texts": sweep.scenario_texts,
            "controllers": [sc.controller for sc in sweep.scenarios],
            "parameters": params,
            "parameter_kinds": [p_.kind for p_ in sweep.params],
            "parameter_dists": [p_.dist.model_dump() for p_ in sweep.params],
            "fixed": {p_.name: v for p_, v in sweep.fixed},
            "design": spec.design.model_dump(), "points": P, "paths": N,
            "block_paths": B, "blocks": nb, "months": sweep.months, "seed": spec.seed,
            "perspective": spec.perspective, "axes": axes,
            "dataset_version": dataset_version, "oreflow_version": _version(),
            "complete": False,
        })
        os.replace(tmp, p)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return SweepStore(p)


class SweepStore:
    """An open sweep store (read and, for the process running the sweep, write)."""

    def __init__(self, path: Path | str, mode: str = "r+"):
        zarr = _zarr()
        self.path = Path(path)
        try:
            self.root = zarr.open_group(str(self.path), mode=mode, zarr_format=3)
        except Exception as e:  # zarr raises several types for a folder that is not a store
            raise SweepError(f"{self.path}: not a readable Zarr store ({type(e).__name__}: "
                             f"{str(e).splitlines()[0] if str(e) else 'no detail'})") from None
        if self.root.attrs.get("format") != FORMAT:
            raise SweepError(f"{self.path}: not an oreflow sweep store (format "
                             f"{self.root.attrs.get('format')!r}, expected {FORMAT})")

    @property
    def attrs(self) -> dict:
        return dict(self.root.attrs)

    @property
    def complete(self) -> bool:
        return bool(self.root.attrs.get("complete", False))

    def done(self) -> np.ndarray:
        return np.asarray(self.root["done"][...], bool)

    def write_block(self, result: dict) -> None:
        """Data first, then the mask entry: a crash in between leaves the block to redo."""
        t = result["task"]
        for name, arr in result["arrays"].items():
            self.root[name][t.scenario, t.point, t.start:t.stop] = arr
        self.root["max_rel_balance_residual"][t.scenario, t.point, t.block] = \
            result["max_rel_balance_residual"]
        self.root["done"][t.scenario, t.point, t.block] = True

    def array(self, name: str) -> np.ndarray:
        return np.asarray(self.root[name][...])

    # ---- headlines and sensitivity --------------------------------------------------------
    def finish(self, perspective_markets: list[str] | None) -> None:
        """Headlines (medians over every path of each point) and Sobol indices; then mark
        the store complete. Re-running it gives the same arrays."""
        from oreflow.sweep.sensitivity import sobol_indices

        a = self.attrs
        if not self.done().all():
            raise SweepError(f"{self.path}: {int((~self.done()).sum())} block(s) missing; "
                             "run the sweep again to complete it")
        names, values = self._headlines(perspective_markets)
        zarr_kw = {"overwrite": True}
        S, P = values.shape[:2]
        h = self.root.create_array("headline", shape=values.shape, chunks=(1, P, len(names)),
                                   dtype="float64", dimension_names=("scenario", "point",
                                                                     "headline"), **zarr_kw)
        h[...] = values
        h.attrs["headlines"] = names
        h.attrs["units"] = HEADLINE_UNITS
        if a["design"]["method"] == "saltelli":
            D = len(a["parameters"])
            out = {k: np.full((S, len(names), D), np.nan) for k in
                   ("S1", "S1_conf", "ST", "ST_conf")}
            for s in range(S):
                res = sobol_indices(values[s], D, seed=a["design"]["seed"])
                for k in out:
                    out[k][s] = res[k]
            for k, v in out.items():
                arr = self.root.create_array(f"sobol_{k}", shape=v.shape,
                                             chunks=(1, len(names), D), dtype="float64",
                                             dimension_names=("scenario", "headline",
                                                              "parameter"), **zarr_kw)
                arr[...] = v
        self.root.attrs.update({"complete": True,
                                "perspective_markets": perspective_markets or []})

    def _headlines(self, markets: list[str] | None) -> tuple[list[str], np.ndarray]:
        a = self.attrs
        ax = a["axes"]
        regions, sectors, elements = ax["region"], ax["sector"], ax["element"]
        sel = np.isin(regions, markets) if markets else np.ones(len(regions), bool)
        horizon_weeks = a["months"] * WEEKS_PER_MONTH
        names = ([f"price_peak_ratio_outside_p50:{e}" for e in elements]
                 + [f"unmet_physical_t_p50:{s}" for s in sectors]
                 + [f"unmet_physical_t_p50_by_region:{r}" for r in regions]
                 + [f"first_stoppage_week_p50:{s}" for s in sectors])
        S, P = len(a["scenarios"]), a["points"]
        out = np.full((S, P, len(names)), np.nan)
        cells = a["paths"] * len(regions) * len(sectors)
        step = max(1, int(MAX_READ_CELLS // max(cells, 1)))  # points read at once
        for s in range(S):
            for p0 in range(0, P, step):
                sl = slice(p0, min(p0 + step, P))
                peak = np.asarray(self.root["price_peak_ratio_outside"][s, sl], float)
                unmet = np.asarray(self.root["unmet_physical_t"][s, sl], float)
                first = np.asarray(self.root["first_stoppage_week"][s, sl], float)
                first = np.minimum(first[:, :, sel].min(2), horizon_weeks)
                out[s, sl] = np.concatenate([
                    np.median(peak, 1),
                    np.median(unmet[:, :, sel].sum(2), 1),
                    np.median(unmet.sum(3), 1),
                    np.median(first, 1)], 1)
        return names, out


HEADLINE_UNITS = {
    "price_peak_ratio_outside_p50": "median over paths of the peak outside price / base price",
    "unmet_physical_t_p50": "t element over the horizon, median over paths: physical "
                            "shortage of the sector in the perspective's regions",
    "unmet_physical_t_p50_by_region": "t element over the horizon, all sectors, median",
    "first_stoppage_week_p50": "weeks from the first shock until the sector first stops in "
                               "any of the perspective's regions, median over paths; a path "
                               "with no stoppage counts as the end of the horizon (censored)",
}


def open_store(path: Path | str) -> SweepStore:
    p = Path(path)
    if not p.exists():
        raise SweepError(f"{p}: no such sweep store")
    return SweepStore(p, mode="r")


def describe(st: SweepStore) -> dict:
    """What a store holds, JSON-ready (for `sweep report --format json` and the web app)."""
    a = st.attrs
    done = st.done()
    return {"name": a["name"], "scenarios": a["scenarios"], "parameters": a["parameters"],
            "design": a["design"], "points": a["points"], "paths": a["paths"],
            "months": a["months"], "seed": a["seed"], "complete": st.complete,
            "blocks_done": int(done.sum()), "blocks": int(done.size),
            "dataset_version": a["dataset_version"], "sweep_sha256": a["sweep_sha256"],
            "fixed": a.get("fixed", {}), "perspective": a.get("perspective")}
