"""Sweeps: parameters and their errors, the task against the stress run, serial against a
2-worker LocalCluster (identical Zarr contents), block size, a killed sweep resumed, Sobol
indices of the Ishigami function against their analytic values, and a real scheduler with
workers when CI provides one."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from oreflow.sweep.design import parse_sweep
from oreflow.sweep.errors import SweepError

SMALL = """
name: test-sweep
scenarios: [licensing-2025-04]
paths: {paths}
block_paths: {block}
months: 6
seed: 3
perspective: USA
design: {{method: saltelli, n: 4, seed: 1}}
parameters:
  buyer_cover_months: {{dist: uniform, low: 1.0, high: 4.0}}
  shocks[0].approval_scale: {{dist: uniform, low: 0.5, high: 1.2}}
"""


def small(paths: int = 24, block: int = 8) -> str:
    return SMALL.format(paths=paths, block=block)


def zarr_contents(path: Path) -> dict:
    """Every array (bytes) and every attribute of a store."""
    import zarr

    root = zarr.open_group(str(path), mode="r")
    out = {"attrs": dict(root.attrs)}
    for name, arr in root.arrays():
        out[name] = (arr.shape, arr.dtype.str, np.asarray(arr[...]).tobytes(), dict(arr.attrs))
    return out


def assert_same_store(a: Path, b: Path) -> None:
    ca, cb = zarr_contents(a), zarr_contents(b)
    assert sorted(ca) == sorted(cb)
    for k in ca:
        assert ca[k] == cb[k], f"{k} differs"


# ---- parameters and designs ----------------------------------------------------------------
def test_unknown_parameter_lists_the_allowed_ones(network):
    text = small().replace("buyer_cover_months:", "buyer_cover_days:")
    with pytest.raises(SweepError) as e:
        parse_sweep(text, "s.yaml", network=network)
    msg = str(e.value)
    assert "unknown parameter 'buyer_cover_days'" in msg
    from oreflow.simulate.engine import Behaviour

    for f in dataclasses.fields(Behaviour):  # read from the dataclass, whatever it holds
        assert f.name in msg


@pytest.mark.parametrize("edit, message", [
    (("shocks[0].approval_scale", "shocks[3].approval_scale"), "has 3 shock(s)"),
    (("shocks[0].approval_scale", "shocks[0].origin"), "no numeric field 'origin'"),
    (("high: 1.2", "high: 12.0"), "approval_scale must lie in [0, 10]"),
    (("n: 4,", "n: 6,"), "power of two"),
    (("paths: 24", "paths: 0"), "paths"),
])
def test_bad_sweep_files_name_the_field(network, edit, message):
    with pytest.raises(SweepError) as e:
        parse_sweep(small().replace(*edit), "s.yaml", network=network)
    assert message in str(e.value)
    assert "s.yaml" in str(e.value)


def test_design_maps_the_unit_design_through_each_distribution(network):
    sw = parse_sweep(small(), "s.yaml", network=network)
    assert sw.unit.shape == (4 * (2 + 2), 2)
    lo, hi = 1.0, 4.0
    np.testing.assert_allclose(sw.values[:, 0], lo + (hi - lo) * sw.unit[:, 0])
    params, _ = sw.point_values(0)
    assert [p.name for p in params] == ["buyer_cover_months", "shocks[0].approval_scale"]


def test_grid_and_lhs_designs(network):
    grid = parse_sweep(small().replace("method: saltelli, n: 4", "method: grid, n: 3"),
                       network=network)
    assert grid.points == 9
    assert sorted(set(grid.values[:, 1])) == pytest.approx([0.5, 0.85, 1.2])
    lhs = parse_sweep(small().replace("method: saltelli, n: 4", "method: lhs, n: 5"),
                      network=network)
    # a Latin hypercube puts one point in each fifth of every parameter's range
    assert sorted(np.floor(lhs.unit[:, 0] * 5)) == [0, 1, 2, 3, 4]


def test_cover_parameters_rescale_the_base_year_stocks(network):
    """market_base reads the cover parameters from the table: the sweep's rescaled base must
    equal the base built from a dataset with the values edited."""
    from oreflow.simulate.engine import Behaviour
    from oreflow.simulate.market import market_base
    from oreflow.simulate.run import COVER_STOCKS
    from oreflow.sweep.tasks import base_for

    ds = network.dataset
    tables = dict(ds.tables)
    mb = tables["market_behaviour"].copy()
    new = {"target_cover_months": 4.5, "buyer_cover_months": 1.7}
    for k, v in new.items():
        mb.loc[mb["parameter"] == k, "value"] = v
    tables["market_behaviour"] = mb
    edited = dataclasses.replace(ds, tables=tables, version=ds.version + "-edited")
    ref = market_base(dataclasses.replace(network, dataset=edited), "CHN")
    got = base_for("CHN", Behaviour.from_dataset(ds, **new), ds)
    assert set(COVER_STOCKS) == set(new)
    for f in dataclasses.fields(ref):
        a, b = getattr(ref, f.name), getattr(got, f.name)
        if isinstance(a, np.ndarray) and a.dtype.kind == "f":
            np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-9, err_msg=f.name)


def test_a_task_gives_the_stress_runs_per_path_results(network):
    """One task = the engine's per-path totals for those paths, with the point's values."""
    from oreflow.simulate.engine import Behaviour
    from oreflow.simulate.run import run_stress
    from oreflow.sweep.run import tasks
    from oreflow.sweep.tasks import run_task

    sw = parse_sweep(small().replace("buyer_cover_months", "leakage")
                     .replace("low: 1.0, high: 4.0", "low: 0.1, high: 0.6"),
                     network=network)
    t = tasks(sw, np.zeros((1, sw.points, len(sw.blocks)), bool), None)[5]
    r = run_task(t)
    params, values = sw.point_values(t.point)
    from oreflow.sweep.design import apply_parameters

    beh, sc = apply_parameters(params, values, sw.scenarios[0], network.dataset)
    assert isinstance(beh, Behaviour) and beh.leakage == values[0]
    ds = run_stress(sc, paths=sw.spec.paths, seed=sw.spec.seed, network=network,
                    behaviour=beh, block=(t.start, t.stop))
    np.testing.assert_array_equal(r["arrays"]["unmet_physical_t"],
                                  ds["unmet_physical_t"].values.astype(np.float32))
    np.testing.assert_array_equal(r["arrays"]["price_peak_ratio_outside"],
                                  ds["price_peak_ratio_outside"].values.astype(np.float32))
    assert r["arrays"]["price_peak_ratio_outside"].max() > 1.5  # the control bites


# ---- runs and stores ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def serial_store(tmp_path_factory, network):
    from oreflow.sweep.run import run_sweep

    out = tmp_path_factory.mktemp("serial") / "s.zarr"
    run = run_sweep(parse_sweep(small(), "s.yaml", network=network), out, serial=True,
                    network=network)
    assert run.computed == run.total == 16 * 3
    return out


def test_serial_store_holds_headlines_and_sobol(serial_store):
    from oreflow.sweep.report import sobol_table
    from oreflow.sweep.store import open_store

    st = open_store(serial_store)
    assert st.complete and st.done().all()
    peaks = st.array("price_peak_ratio_outside")
    assert np.isfinite(peaks).all()
    head = st.array("headline")
    names = st.root["headline"].attrs["headlines"]
    i = names.index("price_peak_ratio_outside_p50:Dy")
    # headlines are medians over every path of a point, taken after merging the blocks
    e = st.attrs["axes"]["element"].index("Dy")
    np.testing.assert_allclose(head[0, :, i], np.median(peaks[0, :, :, e].astype(float), 1))
    t = sobol_table(st)
    assert set(t["parameter"]) == {"buyer_cover_months", "shocks[0].approval_scale"}
    assert t["ST"].notna().all()


def test_two_workers_and_serial_give_identical_stores(serial_store, tmp_path, network):
    from oreflow.sweep.run import run_sweep

    out = tmp_path / "dask.zarr"
    run = run_sweep(parse_sweep(small(), "s.yaml", network=network), out, workers=2,
                    network=network)
    assert run.where == "LocalCluster (2 workers)" and run.computed == 48
    assert_same_store(serial_store, out)


def test_block_size_does_not_change_the_numbers(serial_store, tmp_path, network):
    from oreflow.sweep.run import run_sweep
    from oreflow.sweep.store import open_store

    out = tmp_path / "b.zarr"
    run_sweep(parse_sweep(small(block=5), "s.yaml", network=network), out, serial=True,
              network=network)
    a, b = open_store(serial_store), open_store(out)
    for name in ("price_peak_ratio_outside", "unmet_physical_t", "first_stoppage_week",
                 "headline", "sobol_ST", "sobol_S1_conf"):
        np.testing.assert_array_equal(a.array(name), b.array(name), err_msg=name)


KILLER = """
import os, signal, sys
from oreflow.sweep.design import parse_sweep
from oreflow.sweep.run import run_sweep
done = []
def on_block(task):
    done.append(task)
    if len(done) == int(sys.argv[2]):
        os.kill(os.getpid(), signal.SIGKILL)  # a hard kill, as by the OOM killer or ^\\\\
run_sweep(parse_sweep(open(sys.argv[3]).read(), "s.yaml"), sys.argv[1], serial=True,
          on_block=on_block)
"""


def test_a_killed_sweep_resumes_and_recomputes_only_missing_blocks(serial_store, tmp_path,
                                                                    network):
    from oreflow.sweep.run import run_sweep
    from oreflow.sweep.store import open_store

    spec = tmp_path / "s.yaml"
    spec.write_text(small())
    out = tmp_path / "killed.zarr"
    r = subprocess.run([sys.executable, "-c", KILLER, str(out), "17", str(spec)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == -9, r.stderr
    st = open_store(out)
    assert not st.complete and st.done().sum() == 17
    run = run_sweep(parse_sweep(small(), "s.yaml", network=network), out, serial=True,
                    network=network)
    assert (run.computed, run.skipped) == (48 - 17, 17)
    assert_same_store(serial_store, out)
    assert not list(out.rglob("*.partial"))


def test_a_store_of_another_sweep_is_refused(serial_store, network):
    from oreflow.sweep.run import run_sweep

    with pytest.raises(SweepError, match="holds another sweep"):
        run_sweep(parse_sweep(small(paths=30), "s.yaml", network=network), serial_store,
                  serial=True, network=network)


# ---- Sobol indices -------------------------------------------------------------------------
def test_sobol_indices_of_the_ishigami_function_match_the_analytic_values(network):
    """Ishigami (a=7, b=0.1) on [-pi, pi]^3: analytic S1 = (0.3139, 0.4424, 0),
    ST = (0.5576, 0.4424, 0.2437). The design goes through the sweep's own path (a sweep
    file's uniform parameters -> Saltelli points -> values), indices through sensitivity."""
    from oreflow.scenario import Uniform
    from oreflow.sweep.design import Parameter, unit_design
    from oreflow.sweep.sensitivity import sobol_indices

    a, b = 7.0, 0.1
    v = a ** 2 / 8 + b * np.pi ** 4 / 5 + b ** 2 * np.pi ** 8 / 18 + 0.5
    v1 = 0.5 * (1 + b * np.pi ** 4 / 5) ** 2
    v2 = a ** 2 / 8
    v13 = b ** 2 * np.pi ** 8 * (1 / 18 - 1 / 50)
    s1 = np.array([v1, v2, 0.0]) / v
    st = np.array([v1 + v13, v2, v13]) / v
    params = [Parameter(f"x{i}", "behaviour", Uniform(dist="uniform", low=-np.pi,
                                                       high=np.pi)) for i in range(3)]
    unit = unit_design("saltelli", 2048, 3, seed=0)
    x = np.stack([p.values(unit[:, i]) for i, p in enumerate(params)], 1)
    y = np.sin(x[:, 0]) + a * np.sin(x[:, 1]) ** 2 + b * x[:, 2] ** 4 * np.sin(x[:, 0])
    r = sobol_indices(y, 3, seed=0)
    for k, exact in (("S1", s1), ("ST", st)):
        got, ci = r[k][0], r[f"{k}_conf"][0]
        assert np.all(np.abs(got - exact) <= ci), (k, got, exact, ci)
        assert np.all(ci < 0.1)  # and the intervals are tight enough to mean something
    # the bootstrap intervals are reproducible: the same values and seed, the same intervals
    # (seed 0 included), another seed other resamples
    again, other = sobol_indices(y, 3, seed=0), sobol_indices(y, 3, seed=1)
    assert np.array_equal(again["ST_conf"], r["ST_conf"])
    assert not np.array_equal(other["ST_conf"], r["ST_conf"])


def test_sobol_of_a_constant_output_is_nan_not_zero():
    from oreflow.sweep.design import unit_design
    from oreflow.sweep.sensitivity import sobol_indices

    unit = unit_design("saltelli", 8, 2, seed=0)
    r = sobol_indices(np.stack([unit[:, 0], np.ones(len(unit))], 1), 2)
    assert np.isfinite(r["ST"][0]).all() and np.isnan(r["ST"][1]).all()


# ---- the command line ----------------------------------------------------------------------
def test_help_imports_no_dask_zarr_or_salib():
    code = ("import sys; from typer.testing import CliRunner; from oreflow.cli import app; "
            "r = CliRunner().invoke(app, ['--help']); assert r.exit_code == 0; "
            "r = CliRunner().invoke(app, ['sweep', '--help']); assert r.exit_code == 0; "
            "bad = [m for m in ('dask', 'distributed', 'zarr', 'SALib') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_cli_runs_resumes_and_reports(tmp_path):
    from typer.testing import CliRunner

    from oreflow.cli import app

    spec = tmp_path / "s.yaml"
    spec.write_text(small(paths=8, block=8))
    out = tmp_path / "c.zarr"
    r = CliRunner().invoke(app, ["sweep", str(spec), "--out", str(out), "--serial"])
    assert r.exit_code == 0, r.output
    assert "Sobol indices" in r.output and "ST_ci95" in r.output
    r = CliRunner().invoke(app, ["sweep", str(spec), "--out", str(out), "--format", "json"])
    assert r.exit_code == 0, r.output
    import json

    d = json.loads(r.stdout)
    assert d["computed_blocks"] == 0 and d["skipped_blocks"] == 16 and d["complete"]
    assert {"S1", "ST", "S1_ci95", "ST_ci95"} <= set(d["sobol"][0])
    html = tmp_path / "r.html"
    r = CliRunner().invoke(app, ["sweep", "report", str(out), "--out", str(html)])
    assert r.exit_code == 0, r.output
    text = html.read_text()
    assert 'id="sobol"' in text and "tornado-0" in text
    r = CliRunner().invoke(app, ["sweep", "report", str(tmp_path / "nope.zarr")])
    assert r.exit_code == 2 and "no such sweep store" in r.output
    r = CliRunner().invoke(app, ["sweep", str(tmp_path / "nope.yaml"), "--out", str(out)])
    assert r.exit_code == 2 and "no such sweep file" in r.output


# ---- a real scheduler and workers (CI starts them: .ci/run) --------------------------------
def test_sweep_on_a_running_scheduler(serial_store, tmp_path):
    address = os.environ.get("OREFLOW_DASK_SCHEDULER")
    if not address:
        if os.environ.get("OREFLOW_REQUIRE_DASK") == "1":
            pytest.fail("OREFLOW_REQUIRE_DASK=1 but OREFLOW_DASK_SCHEDULER is not set: CI "
                        "must start `dask scheduler` and two `dask worker`s (.ci/run)")
        pytest.skip("no Dask scheduler (set OREFLOW_DASK_SCHEDULER=tcp://host:port)")
    spec = tmp_path / "s.yaml"
    spec.write_text(small())
    out = tmp_path / "remote.zarr"
    r = subprocess.run([sys.executable, "-m", "oreflow.cli", "sweep", str(spec), "--out",
                        str(out), "--scheduler", address], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"scheduler {address}" in r.stdout and "48 block(s) computed" in r.stdout
    assert_same_store(serial_store, out)


def test_scheduler_that_is_not_there_is_named(tmp_path):
    from typer.testing import CliRunner

    from oreflow.cli import app

    spec = tmp_path / "s.yaml"
    spec.write_text(small(paths=8, block=8))
    r = CliRunner().invoke(app, ["sweep", str(spec), "--out", str(tmp_path / "x.zarr"),
                                 "--scheduler", "tcp://127.0.0.1:1"])
    assert r.exit_code == 2 and "--scheduler tcp://127.0.0.1:1: cannot connect" in r.output


def test_the_web_app_shows_a_finished_sweep(serial_store, tmp_path):
    import shutil

    from fastapi.testclient import TestClient

    from oreflow.web import create_app

    data = tmp_path / "data"
    (data / "sweeps").mkdir(parents=True)
    shutil.copytree(serial_store, data / "sweeps" / "small.zarr")
    with TestClient(create_app(data), base_url="http://localhost") as c:
        listed = c.get("/api/sweeps").json()
        assert [s["id"] for s in listed] == ["small"] and listed[0]["complete"]
        rows = c.get("/api/sweeps/small/sobol").json()
        assert {"headline", "parameter", "S1", "ST", "S1_ci95"} <= set(rows[0])
        page = c.get("/sweeps/small")
        assert page.status_code == 200 and 'id="sobol"' in page.text
        assert c.get("/sweeps/..%2Fetc").status_code == 404
        assert c.get("/sweeps/nope").status_code == 404


def test_cli_refuses_a_file_as_the_store(tmp_path):
    """--out must be a folder (new, or a store to resume): a file is refused before the run,
    with the flag named, and is left as it was."""
    from typer.testing import CliRunner

    from oreflow.cli import app

    spec = tmp_path / "s.yaml"
    spec.write_text(SMALL)
    target = tmp_path / "notes.txt"
    target.write_text("keep me")
    r = CliRunner().invoke(app, ["sweep", "run", str(spec), "--out", str(target), "--serial"])
    assert r.exit_code == 2
    assert "--out" in r.output and "not a folder" in r.output
    assert target.read_text() == "keep me"
