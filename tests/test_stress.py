"""The stress engine: balance, licence queue, regions and leakage, reproducibility, outputs."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from oreflow.scenario import builtin_names, parse_scenario, scenario_text
from oreflow.simulate import compare, load_result, run_stress, save_result, summary
from oreflow.simulate.kernel import SINGLE
from oreflow.simulate.observers import MonthView
from oreflow.simulate.results import CompareError, floor_note


def _scenario(network, body: str, months: int = 24):
    return parse_scenario(f"name: test\nstart: \"2026-01\"\nmonths: {months}\nshocks:\n{body}",
                          network=network)


@pytest.fixture(scope="module")
def baseline(network):
    return run_stress("baseline", paths=40, seed=3, network=network)


def test_baseline_has_no_physical_shortage_and_flat_prices(baseline):
    assert float(baseline["unmet_physical_t"].max()) <= 1e-6
    price = baseline["price_usd_per_kg"]
    base = baseline["base_price_usd_per_kg"]
    ratio = (price / base.where(base > 0)).values
    ratio = ratio[np.isfinite(ratio)]
    assert ratio.min() >= 0.95 and ratio.max() <= 1.05  # every zone, month and quantile
    low = baseline["price_low_ratio"].values  # every path, not only the bands' quantiles
    assert np.nanmin(low) >= 0.95 and np.nanmax(baseline["price_peak_ratio"].values) <= 1.05
    assert baseline.attrs["max_rel_balance_residual"] < 1e-9


def test_shortage_by_element_and_by_sector_are_the_same_tonnes(network):
    """Physical shortage and demand reduction are counted once, in t of element: summed over
    elements and over sectors they agree in every path and region, and they are different
    quantities (under the 2025 licences buyers both run short and give up demand)."""
    ds = run_stress("licensing-2025-04", paths=16, seed=4, network=network)
    for el, sec in (("unmet_physical_element_t", "unmet_physical_t"),
                    ("demand_reduction_element_t", "demand_reduction_t")):
        # each month's sums are kept in single precision (kernel.SINGLE): a few roundings
        np.testing.assert_allclose(ds[el].sum("element"), ds[sec].sum("sector"),
                                   rtol=8 * np.finfo(SINGLE).eps, atol=1e-9)
    phys = float(ds["unmet_physical_t"].sum())
    red = float(ds["demand_reduction_t"].sum())
    assert phys > 0 and red > 0 and abs(phys - red) > 0.1 * max(phys, red)


@pytest.mark.parametrize("name", builtin_names())
def test_independent_balance_holds_in_every_builtin_scenario(network, name):
    """Stocks rebuilt from cumulative flows (BalanceCheck) agree with the stocks the step
    carries, every month, path, region and item."""
    ds = run_stress(name, paths=12, seed=1, network=network, months=24)
    assert ds.attrs["max_rel_balance_residual"] < 1e-9


class _Wants:
    """Observer: want summed over paths and months (reads a month's outputs)."""

    def __init__(self):
        self.want = 0.0

    def start_block(self, engine, paths):
        pass

    def end_block(self, engine, paths):
        pass

    def on_month(self, v: MonthView):
        self.want += v.want_t.sum()


def test_results_are_the_same_whether_or_not_a_months_outputs_are_kept(network):
    """With only the totals and the balance check (run inside the kernel) a run keeps a
    month's outputs in scratch a tile per thread; an observer that reads them makes the
    engine keep them all. The per-path results are the same either way, to the bit."""
    wants = _Wants()
    alone = run_stress("licensing-2025-04", paths=70, seed=5, months=24, network=network,
                       bands=False)
    read = run_stress("licensing-2025-04", paths=70, seed=5, months=24, network=network,
                      bands=False, observers=[wants])
    assert wants.want > 0
    for k in alone.data_vars:
        np.testing.assert_array_equal(alone[k].values, read[k].values, err_msg=k)
    assert alone.attrs["max_rel_balance_residual"] == read.attrs["max_rel_balance_residual"]


def test_month_view_says_an_output_was_not_kept():
    v = MonthView(t=0, paths=np.arange(3), base=None, first_shock_month=np.zeros(3),
                  tiled={})
    with pytest.raises(AttributeError, match="want_t was not kept"):
        _ = v.want_t


class _Licences:
    """Observer: licence requests filed and approvals per month, summed over paths."""

    def __init__(self, months):
        self.filed = np.zeros(months)
        self.approved = np.zeros(months)

    def start_block(self, engine, paths):
        pass

    def end_block(self, engine, paths):
        pass

    def on_month(self, v: MonthView):
        self.filed[v.t] += v.licence_filed_t.sum()
        self.approved[v.t] += v.licence_approved_t.sum()


@pytest.mark.parametrize("review", [2.0, 1.5])
def test_licence_queue_with_full_approval_delivers_every_request(network, review):
    sc = _scenario(network, f"""  - type: export_control
    elements: all
    approval: [[0, 1.0]]
    review_months: {review}
""", months=18)
    obs = _Licences(18)
    ds = run_stress(sc, paths=6, seed=2, network=network, observers=[obs])
    f, a = obs.filed, obs.approved
    assert f.sum() > 0
    n0, frac = int(review), review - int(review)
    expected = np.zeros_like(f)
    expected[n0:] += (1 - frac) * f[:len(f) - n0]
    expected[n0 + 1:] += frac * f[:len(f) - n0 - 1]
    np.testing.assert_allclose(a, expected, rtol=1e-12, atol=1e-9)
    # every request filed up to month T is approved by month T + ceil(review), none is lost
    up = int(np.ceil(review))
    T = len(f) - up - 1
    early = (1 - frac) * f[T + 1] if frac > 0 else 0.0  # part of T + 1's, decided early
    assert a[:T + up + 1].sum() == pytest.approx(f[:T + 1].sum() + early, rel=1e-12)
    assert ds.attrs["max_rel_balance_residual"] < 1e-9


def test_results_do_not_depend_on_chunks_or_blocks(network):
    a = run_stress("licensing-2025-04", paths=60, seed=5, network=network, chunk=17)
    b = run_stress("licensing-2025-04", paths=60, seed=5, network=network, chunk=60)
    for v in a.data_vars:
        np.testing.assert_array_equal(a[v].values, b[v].values, err_msg=v)
    part1 = run_stress("licensing-2025-04", paths=60, seed=5, network=network, block=(0, 25))
    part2 = run_stress("licensing-2025-04", paths=60, seed=5, network=network, block=(25, 60))
    for v in ("price_peak_ratio", "unmet_physical_t", "demand_reduction_t",
              "first_stoppage_week"):
        joined = np.concatenate([part1[v].values, part2[v].values])
        np.testing.assert_array_equal(joined, a[v].values, err_msg=v)


class _MonthCounter:
    """An observer that does not say it is thread_safe: blocks then run one after the other."""

    def __init__(self):
        self.months = 0

    def start_block(self, engine, paths):
        pass

    def on_month(self, view):
        self.months += 1

    def end_block(self, engine, paths):
        pass


class _ReadsEveryMonth:
    """A thread_safe observer that reads a month's outputs in every block."""

    thread_safe = True

    def start_block(self, engine, paths):
        pass

    def on_month(self, view):
        assert view.production_t.shape[0] == len(view.paths)

    def end_block(self, engine, paths):
        pass


def test_blocks_without_banded_paths_keep_no_outputs_and_change_nothing(network, monkeypatch):
    """The monthly bands read a month's outputs only in blocks with banded paths: the other
    blocks leave them in the kernel's scratch, and the result is the one where every block
    keeps them."""
    from oreflow.simulate import run as run_module
    from oreflow.simulate.engine import Engine
    from oreflow.simulate.observers import PathBands

    bands = PathBands("x", 3, (1,), None, keep=64)
    assert Engine.keeps_outputs([bands], False, np.arange(0, 64))
    assert not Engine.keeps_outputs([bands], False, np.arange(64, 128))
    assert Engine.keeps_outputs([bands], True, np.arange(64, 128))  # stockpile releases
    assert Engine.keeps_outputs([bands, _ReadsEveryMonth()], False, np.arange(64, 128))
    monkeypatch.setattr(run_module, "BAND_PATHS", 40)
    few = run_stress("licensing-2025-04", paths=200, seed=5, months=18, network=network,
                     chunk=64)
    every = run_stress("licensing-2025-04", paths=200, seed=5, months=18, network=network,
                       chunk=64, observers=[_ReadsEveryMonth()])
    assert "price_usd_per_kg" in few
    for v in every.data_vars:
        np.testing.assert_array_equal(few[v].values, every[v].values, err_msg=v)


@pytest.mark.skipif(__import__("numba").get_num_threads() < 2, reason="needs two threads")
def test_blocks_side_by_side_give_the_results_of_blocks_in_turn(network):
    """With two threads and thread_safe observers, blocks run side by side with the serial
    kernels; an observer that is not thread_safe makes them run in turn with the kernel
    parallel over tiles. Same per-path results, bands, balance; a block with the serial
    kernels refuses an observer that is not thread_safe."""
    from oreflow.simulate.engine import Engine

    counter = _MonthCounter()
    side = run_stress("licensing-2025-04", paths=90, seed=6, months=18, network=network,
                      chunk=30)
    turn = run_stress("licensing-2025-04", paths=90, seed=6, months=18, network=network,
                      chunk=30, observers=[counter])
    assert counter.months == 3 * 18  # three blocks of 30, in turn
    for v in side.data_vars:
        np.testing.assert_array_equal(side[v].values, turn[v].values, err_msg=v)
    assert side.attrs["max_rel_balance_residual"] == turn.attrs["max_rel_balance_residual"]
    engine = Engine.__new__(Engine)
    with pytest.raises(ValueError, match="thread_safe"):
        engine.run_block(np.arange(4), [counter], serial=True)


def test_a_run_without_bands_has_the_same_totals_and_headline(network):
    """The monthly bands only feed the report and saved files: skipping them changes no
    per-path total and no headline figure."""
    a = run_stress("licensing-2025-04", paths=30, seed=4, months=12, network=network)
    b = run_stress("licensing-2025-04", paths=30, seed=4, months=12, network=network,
                   bands=False)
    assert "price_usd_per_kg" in a and "price_usd_per_kg" not in b
    for v in b.data_vars:
        np.testing.assert_array_equal(a[v].values, b[v].values, err_msg=v)
    assert json.dumps(summary(a)) == json.dumps(summary(b))


def test_same_seed_same_result_other_seed_other_draws(network):
    a = run_stress("licensing-2025-04", paths=20, seed=7, network=network, months=12)
    b = run_stress("licensing-2025-04", paths=20, seed=7, network=network, months=12)
    c = run_stress("licensing-2025-04", paths=20, seed=8, network=network, months=12)
    np.testing.assert_array_equal(a["price_peak_ratio"].values, b["price_peak_ratio"].values)
    assert not np.array_equal(a["price_peak_ratio"].values, c["price_peak_ratio"].values)


EMBARGO = """  - type: export_control
    elements: [Dy, Tb]
    destinations: [USA]
    duration: 12
    approval: [[0, 0.0]]
    leakage: {leak}
"""


def test_us_embargo_hits_the_us_first_and_leakage_closes_the_gap(network):
    gaps = []
    for leak in (0.0, 0.5, 1.0):
        ds = run_stress(_scenario(network, EMBARGO.format(leak=leak)), paths=8, seed=1,
                        network=network)
        by_region = summary(ds)["unmet_physical_t_by_region"]
        others = [v for r, v in by_region.items() if r not in ("USA", "CHN")]
        if leak == 0.0:
            assert by_region["USA"] > 0 and by_region["USA"] >= max(others)
        gaps.append(by_region["USA"] - max(others))
    assert gaps[0] > gaps[1] >= gaps[2] and gaps[2] <= 1e-6 * max(gaps[0], 1.0)


def test_arbitrage_links_outside_prices_and_keeps_the_balance(network):
    """Off by default; switched on, merchants sell to dearer markets: the gap between the
    US and EU median Dy peaks (log ratio) halves at least (expansion-2025-10),
    the balance still holds, and a US-only embargo still hits the US first (nothing is sold
    into a market a control without leakage closes; docs/model.md says what still leaks)."""
    from oreflow.simulate.engine import Behaviour

    assert Behaviour.from_dataset(network.dataset).arbitrage_rate == 0.0
    spread = []
    for rate in (0.0, 0.5):
        beh = Behaviour.from_dataset(network.dataset, arbitrage_rate=rate)
        ds = run_stress("expansion-2025-10", paths=40, seed=1, network=network, behaviour=beh)
        assert ds.attrs["max_rel_balance_residual"] < 1e-9
        dy = ds["price_peak_ratio"].sel(element="Dy").median("path")
        spread.append(float(np.log(dy.sel(region="USA") / dy.sel(region="EU"))))
    assert spread[0] > 0.3 and abs(spread[1]) < 0.5 * spread[0]
    beh = Behaviour.from_dataset(network.dataset, arbitrage_rate=0.5)
    ds = run_stress(_scenario(network, EMBARGO.format(leak=0.0)), paths=8, seed=1,
                    network=network, behaviour=beh)
    by_region = summary(ds)["unmet_physical_t_by_region"]
    others = [v for r, v in by_region.items() if r not in ("USA", "CHN")]
    assert by_region["USA"] > 0 and by_region["USA"] >= max(others)


def test_new_capacity_outside_china_creates_no_shortage_inside(network):
    ds = run_stress(_scenario(network, """  - type: new_capacity
    region: USA
    stage: separation
    t_per_year: 8000
    ramp_months: 6
"""), paths=10, seed=1, network=network)
    assert float(ds["unmet_physical_t"].sel(region="CHN").max()) <= 1e-9


def test_export_refusal_can_lower_the_price_inside(network):
    """Chinese separators keep producing for a while when exports are refused: the surplus
    is trapped inside and the inside price falls (the dataset's SMM quotes: Dy -22% in 2025)."""
    ds = run_stress(_scenario(network, """  - type: export_control
    elements: [Dy, Tb]
    approval: [[0, 0.0]]
"""), paths=8, seed=1, network=network)
    p = ds["price_usd_per_kg"].sel(quantile=0.5, region="CHN", element="Dy")
    base = float(ds["base_price_usd_per_kg"].sel(region="CHN", element="Dy"))
    assert float(p.min()) < 0.99 * base
    # the headline shows it: the lowest inside price, while the peak stays at base
    s = summary(ds)
    assert s["price_low_ratio"]["Dy"]["CHN"] == pytest.approx(float(p.min()) / base, abs=0.1)
    assert s["price_low_ratio"]["Dy"]["CHN"] < 0.99 <= s["price_peak_ratio"]["Dy"]["CHN"]


def test_lowest_price_is_below_and_peak_above_the_first_month(network):
    """Month 0 starts at base prices: every path's lowest ratio is at most 1 and its peak
    at least 1, in every priced zone; both are NaN only where there is no base price."""
    ds = run_stress("licensing-2025-04", paths=12, months=9, seed=2, network=network)
    priced = (ds["base_price_usd_per_kg"] > 0).values[None]
    low, peak = ds["price_low_ratio"].values, ds["price_peak_ratio"].values
    assert (np.isnan(low) == ~priced).all() and (np.isnan(peak) == ~priced).all()
    one_rounding = np.finfo(SINGLE).eps  # prices are single precision (kernel.SINGLE)
    assert (low[np.broadcast_to(priced, low.shape)] <= 1 + one_rounding).all()
    assert (peak[np.broadcast_to(priced, peak.shape)] >= 1 - one_rounding).all()
    out_low, out_peak = ds["price_low_ratio_outside"].values, ds["price_peak_ratio_outside"].values
    assert (out_low <= out_peak).all()


def test_control_on_one_element_leaves_others_physically_whole(network):
    ds = run_stress(_scenario(network, """  - type: export_control
    elements: [La]
    stages: [separation, metal]
    approval: [[0, 0.0]]
"""), paths=8, seed=1, network=network)
    short = ds["unmet_physical_element_t"].sum("region").median("path")
    others = short.drop_sel(element="La")
    assert float(others.max()) <= 1e-6 * max(float(short.sel(element="La")), 1.0)


def test_harsher_approval_never_lowers_the_physical_shortage(network):
    """Common random numbers: the same draws, only the approval share differs."""
    totals = []
    for share in (1.0, 0.6, 0.3, 0.0):
        ds = run_stress(_scenario(network, f"""  - type: export_control
    elements: [Dy, Tb, Y]
    approval: [[0, {share}]]
    approval_scale: {{dist: uniform, low: 0.8, high: 1.0}}
"""), paths=10, seed=4, network=network)
        totals.append(float(ds["unmet_physical_t"].drop_sel(region="CHN").sum()))
    assert all(b >= a - 1e-6 for a, b in zip(totals, totals[1:], strict=False))
    assert totals[-1] > totals[0]


def test_another_controller_runs_with_its_own_flows(network):
    sc = parse_scenario("""name: us-controls
start: "2026-01"
months: 12
controller: USA
shocks:
  - type: export_control
    origin: USA
    elements: all
    approval: [[0, 0.0]]
""", network=network)
    ds = run_stress(sc, paths=4, seed=1, network=network)
    assert ds.attrs["controller"] == "USA"
    assert ds.attrs["max_rel_balance_residual"] < 1e-9


def test_a_controller_without_a_market_is_refused_at_validation(network):
    from oreflow.scenario import ScenarioError

    with pytest.raises(ScenarioError, match="controller 'MMR'.*allowed: CHN, USA, EU"):
        parse_scenario("name: x\nstart: \"2026-01\"\ncontroller: MMR\n", network=network)


def test_result_records_provenance_and_survives_netcdf(network, tmp_path):
    ds = run_stress("myanmar-halt-6m", paths=10, seed=11, network=network)
    for key in ("seed", "scenario_sha256", "dataset_version", "max_rel_balance_residual",
                "controller", "engine", "leakage", "band_paths"):
        assert key in ds.attrs
    assert len(ds.attrs["scenario_sha256"]) == 64
    path = save_result(ds, tmp_path / "r.nc")
    back = load_result(path)
    np.testing.assert_array_equal(back["unmet_physical_t"].values, ds["unmet_physical_t"].values)


def test_summary_keys_with_a_perspective(network):
    ds = run_stress("heavy-embargo-usa-12m", paths=6, seed=1, network=network)
    s = summary(ds, "USA", ["USA"])
    for key in ("price_peak_ratio", "price_low_ratio", "shortfall_t", "first_shortfall_week",
                "unmet_physical_t_by_region", "demand_reduction_t_by_region",
                "first_stoppage_week_by_region", "units"):
        assert key in s
    assert set(s["unmet_physical_t_by_region"]) == set(ds["region"].values)
    assert {"CHN", "ROW", "USA", "EU", "JPN"} <= set(s["price_peak_ratio"]["Dy"])
    assert set(s["price_low_ratio"]["Dy"]) == set(s["price_peak_ratio"]["Dy"])
    assert s["shortfall_t"]["wind"] == pytest.approx(
        float(ds["unmet_physical_t"].sel(region="USA", sector="wind").median("path")), abs=1e-3)


def test_cli_json_with_a_perspective(tmp_path):
    r = subprocess.run([sys.executable, "-m", "oreflow.cli", "stress", "heavy-embargo-usa-12m",
                        "--paths", "4", "--perspective", "usa", "--format", "json"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["perspective"] == "USA" and d["perspective_regions"] == ["USA"]
    assert d["unmet_physical_t_by_region"]["USA"] > 0


@pytest.mark.parametrize("out", ["result.txt", "folder"])
def test_cli_refuses_a_bad_out_before_running(tmp_path, out):
    (tmp_path / "folder.nc").mkdir()
    target = tmp_path / ("folder.nc" if out == "folder" else out)
    r = subprocess.run([sys.executable, "-m", "oreflow.cli", "stress", "baseline", "--paths",
                        "10000000", "--out", str(target)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode != 0
    assert "--out" in r.stderr and any(w in " ".join(r.stderr.split()) for w in (
        "must end in .nc", "not a regular file", "is a directory"))


def test_validation_warns_about_shocks_that_do_nothing(network):
    from oreflow.scenario import scenario_warnings

    sc = _scenario(network, """  - type: outage
    region: JPN
    stage: mining
    share_lost: 1.0
  - type: export_control
    elements: [Dy]
    start: 30
    approval: [[0, 0.0]]
  - type: export_control
    elements: [La]
    stages: [magnet]
    approval: [[0, 0.0]]
""")
    w = scenario_warnings(sc, network)
    assert len(w) == 3
    assert "JPN has no base-year mining output" in w[0]
    assert "after the 24-month horizon" in w[1]
    assert "exports none of La at magnet" in w[2]
    assert scenario_warnings(parse_scenario(open_builtin("licensing-2025-04"),
                                            network=network), network) == []


def open_builtin(name: str) -> str:
    from oreflow.scenario import scenario_text

    return scenario_text(name)[1]


def _with_us_gd_stock(network):
    label, text = scenario_text("licensing-2025-04")
    text = text.replace("name: licensing-2025-04", "name: with-us-gd").rstrip() + """
  - type: stockpile
    holder: USA
    element: Gd
    form: oxide
    t: 60
    release_price_ratio: 2
"""
    return parse_scenario(text, "with-us-gd.yaml", network)


def test_compare_is_path_by_path(network):
    """The same scenario against itself changes nothing, exactly; a US gadolinium stockpile
    added after the licences' shocks (so every path keeps its draws) avoids US medical
    shortage on the median path and lowers the US gadolinium peak, and leaves prices
    elsewhere alone where nothing links them."""
    base = run_stress("licensing-2025-04", paths=60, seed=3, network=network, bands=False)
    same = compare(base, base, "USA", ["USA"])
    assert {v[q] for v in same["unmet_physical_t_change"].values()
            for q in ("p5", "p50", "p95")} == {0.0}  # each path against itself
    assert {x for row in same["price_peak_ratio_change"].values() for x in row.values()} == {1.0}
    stock = run_stress(_with_us_gd_stock(network), paths=60, seed=3, network=network,
                       bands=False)
    c = compare(stock, base, "USA", ["USA"])
    assert c["unmet_physical_t_change"]["medical"]["p50"] < -1.0
    assert c["unmet_physical_t_change_by_region"]["USA"]["p50"] < -1.0
    assert c["price_peak_ratio_change"]["Gd"]["USA"] < 0.95
    assert c["price_peak_ratio_change"]["Dy"]["CHN"] == 1.0
    with pytest.raises(CompareError, match="paths"):
        compare(stock, run_stress("licensing-2025-04", paths=30, seed=3, network=network,
                                  bands=False))


def test_cli_against_refuses_what_cannot_be_paired(tmp_path):
    from typer.testing import CliRunner

    from oreflow.cli import app

    r = CliRunner()
    res = r.invoke(app, ["stress", "licensing-2025-04", "--against", "antimony-2024-09",
                         "--paths", "3"])
    assert res.exit_code != 0 and "commodities ['Sb'] is not" in res.output
    res = r.invoke(app, ["stress", "licensing-2025-04", "--against", "baseline", "--paths",
                         "3", "--out", str(tmp_path / "r.nc")])
    assert res.exit_code != 0 and "give --out or --against" in res.output
    assert not (tmp_path / "r.nc").exists()
    res = r.invoke(app, ["stress", "licensing-2025-04", "--against", "baseline", "--paths",
                         "4", "--months", "6", "--format", "json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["against"] == "baseline" and out["months"] == 6
    assert set(out["unmet_physical_t_change"]["wind"]) == {"p5", "p50", "p95"}
    assert not any("share random numbers only" in n for n in out["notes"])
    res = r.invoke(app, ["stress", "expansion-2025-10", "--against", "licensing-2025-04",
                         "--paths", "4", "--months", "3", "--format", "json"])
    assert any("share random numbers only" in n for n in json.loads(res.stdout)["notes"])


def test_a_low_at_the_guard_is_flagged(network):
    """A lowest price at the numerical guard's floor (1 / price_cap) is the guard's echo,
    not a result: the summary gives the share of paths and a note naming the region, as it
    does for the cap."""
    ds = run_stress("licensing-2025-04", paths=4, months=3, seed=1, network=network,
                    bands=False)
    assert max(summary(ds)["price_at_floor_share"].values()) == 0
    low = ds["price_low_ratio"].copy()
    low.loc[{"path": 1, "region": "OTH", "element": "Dy"}] = 1.0 / ds.attrs["price_cap"]
    hit = ds.assign(price_low_ratio=low)
    share = summary(hit)["price_at_floor_share"]
    assert share["Dy"] == 0.25 and share["Tb"] == 0
    note = floor_note(hit)
    assert note.startswith("Dy: the lowest price in OTH reaches the numerical guard's floor")


class _Watch:
    """Keeps the engine's new-supply description and each month's new supply."""

    def __init__(self):
        self.resp = []

    def start_block(self, engine, paths):
        self.ns, self.base = engine.new_supply, engine.base

    def on_month(self, v):
        self.resp.append(v.new_supply_t.copy())

    def end_block(self, engine, paths):
        pass


def test_new_supply_outside_is_coproduced_and_sold_where_it_is_used(network, dataset):
    """New mines outside the controller yield their ore's elements together (the 2010 ore
    separated outside China is light: Ce, La, Nd, almost no Dy or Tb), expand at most 4% of
    the ore's world market a year while that basket sells above base, and sell where the
    outside uses each oxide. Before, all of it went to the rest of the world, which could
    not sell it on: its Dy and Nd prices fell to the numerical floor on every path of the
    2010 replay."""
    from oreflow.simulate import Behaviour

    w = _Watch()
    ds = run_stress("quota-2010", paths=12, seed=1, network=network, bands=False,
                    observers=[w])
    ns, b = w.ns, w.base
    E = len(b.elements)
    el = b.elements.index
    assert ns.mix.sum() == pytest.approx(1.0)
    assert ns.mix[el("Dy")] < 0.005 and ns.mix[el("Tb")] < 0.005 and ns.mix[el("Ce")] > 0.3
    outside = np.arange(len(b.regions)) != b.controller_index
    use = b.use0[:, :E] * outside[:, None]
    assert (use.sum(0) > 0).all()
    assert np.allclose(ns.land, use / use.sum(0))  # outside markets, by their use
    resp = np.array(w.resp)  # [month, path, element]
    total = resp.sum(2)
    assert total[-1].min() > 0  # the 2011 prices brought new mines on every path
    assert np.allclose(resp, total[..., None] * ns.mix)  # in the ore's proportions
    rate = Behaviour.from_dataset(dataset).supply_response_rate_per_year / 12.0
    growth = np.diff(total, axis=0)
    assert growth.min() >= 0 and growth.max() <= rate * ns.ore_volume[0] * (1 + 1e-12)
    s = summary(ds)
    assert s["price_at_floor_share"]["Dy"] == 0 and s["price_at_floor_share"]["Nd"] == 0
    new = s["new_supply_t"]  # what the run reports: t element over the horizon, median
    assert max(new, key=new.get) == "Ce" and new.get("Dy", 0.0) < 0.01 * new["Ce"]
    assert new["Nd"] == pytest.approx(float(ds["new_supply_t"].sel(element="Nd").median()),
                                      abs=1e-3)


def test_new_supply_of_separate_commodities_answers_each_price(network):
    """Chain commodities come from their own ores: gallium's new supply answers gallium's
    price alone, germanium's germanium's."""
    w = _Watch()
    run_stress("gallium-germanium-2023-08", paths=2, months=2, seed=1, network=network,
               bands=False, observers=[w])
    assert list(w.ns.ore_group) == [0, 1] and np.array_equal(w.ns.mix, [1.0, 1.0])
    assert np.array_equal(w.ns.basket_weight, np.eye(2))


def test_a_rise_inside_the_controller_that_stays_inside_is_named(network, dataset):
    """A Myanmar halt with no export control raises China's heavy rare-earth prices; with
    arbitrage off the outside, still served from China's stock, stays at base, and the
    result says that this is the assumption's echo. With arbitrage on, as the note says,
    part of the rise reaches the outside."""
    from oreflow.simulate import Behaviour

    ds = run_stress("myanmar-halt-6m", paths=20, seed=1, network=network, bands=False)
    s = summary(ds)
    note = next(n for n in s["notes"] if "rises while the outside's does not" in n)
    assert note.startswith("Dy, ") and "Tb" in note
    assert s["price_peak_ratio"]["Dy"]["CHN"] > 1.2 > s["price_peak_ratio"]["Dy"]["ROW"]
    beh = Behaviour.from_dataset(dataset, arbitrage_rate=0.5)
    linked = summary(run_stress("myanmar-halt-6m", paths=20, seed=1, network=network,
                                bands=False, behaviour=beh))
    assert linked["price_peak_ratio"]["Dy"]["ROW"] > 1.1
    assert not any("rises while the outside's does not" in n for n in linked["notes"])


def test_csv_keeps_stdout_to_the_table_and_the_notes_on_stderr():
    """`--format csv` is for pipes: stdout is the sector table alone, and the notes that
    say how to read it (here: prices not linked by arbitrage, a rise that stays inside
    China) still reach the user, on stderr."""
    import io

    import pandas as pd

    p = subprocess.run([sys.executable, "-m", "oreflow.cli", "stress", "myanmar-halt-6m",
                        "--paths", "8", "--months", "6", "--format", "csv"],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    table = pd.read_csv(io.StringIO(p.stdout))
    assert "unmet_physical_t_p50" in table.columns and len(table) > 5
    assert "note: " in p.stderr and "not by arbitrage" in p.stderr


def test_shocks_that_start_and_end_mid_run_reach_the_month_they_act_in(network):
    """Capacity, concentrate arrivals and demand factors change in months 3-6 only (a
    separation and a mine outage in China, and a demand cut for everyone's EV motors):
    the month kernel sees each month's values, not the first month's. Concentrate stocks move
    by exactly the month's arrivals (as MonthView reports them) less what was used."""
    sc = _scenario(network, """  - type: outage
    region: CHN
    stage: separation
    share_lost: 0.5
    start: 3
    duration: 4
  - type: outage
    region: CHN
    stage: mining
    share_lost: 0.8
    start: 3
    duration: 4
  - type: demand_shift
    sector: ev_motors
    factor: 0.5
    start: 3
    duration: 4
""", months=10)

    class Months:
        def __init__(self):
            self.seen = []

        def start_block(self, engine, paths):
            pass

        def end_block(self, engine, paths):
            pass

        def on_month(self, v):
            b = v.base
            c, E = b.controller_index, len(b.elements)
            ev = np.asarray(b.line_sector) == list(b.sectors).index("ev_motors")
            self.seen.append({"C": v.concentrate_stock_t.copy(),
                              "arrived": v.concentrate_in_t.copy(),
                              "used": v.concentrate_used_t.copy(),
                              "separated": v.production_t[:, c, :E].sum(1),
                              "ev_need": v.need_t[:, :, ev].sum((1, 2))})

    obs = Months()
    run_stress(sc, paths=4, seed=1, network=network, observers=[obs])
    m = obs.seen
    for t in range(1, 10):
        np.testing.assert_allclose(m[t]["C"], m[t - 1]["C"] + m[t]["arrived"] - m[t]["used"],
                                   rtol=1e-12, atol=1e-9)
    assert m[3]["arrived"].sum() < 0.5 * m[2]["arrived"].sum()
    for t in range(3, 7):
        assert (m[t]["separated"] < 0.8 * m[2]["separated"]).all()
        np.testing.assert_allclose(m[t]["ev_need"], 0.5 * m[2]["ev_need"], rtol=0.01)
    assert (m[7]["separated"] > 0.95 * m[2]["separated"]).all()
    assert (m[7]["ev_need"] > 0.95 * m[2]["ev_need"]).all()


def test_the_benchmark_counts_the_bytes_the_kernel_receives():
    """benchmarks/bench_stress.py counts the bytes of the arrays the step receives, whichever
    way the blocks run (it wraps kernel.PARALLEL and kernel.SERIAL): the state it counts is
    the merchant, concentrate and buyers' stocks at least, the same however the paths fill
    the tiles, and each wrapper is put back."""
    import importlib.util
    from pathlib import Path

    from oreflow.simulate import kernel

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_stress.py"
    spec = importlib.util.spec_from_file_location("bench_stress", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    before = kernel.PARALLEL, kernel.SERIAL
    got = bench.kernel_bytes("licensing-2025-04")
    assert (kernel.PARALLEL, kernel.SERIAL) == before
    M, I, L = 7, 36, 60  # the default network's regions, items, demand lines
    assert got["state_bytes_per_path"] >= 8 * M * (I + L)
    assert got["output_bytes_per_path_month"] > 0 and got["ratio_to_state_floor"] > 1
    # per lane, whatever the blocks: a block whose last tile is mostly padding counts the same
    assert bench.kernel_bytes("licensing-2025-04", paths=2 * kernel.LANES) == got


def test_the_kernel_keeps_exp_of_the_log_price_ratios_and_the_outside_ratio(network):
    """After each month the kernel's `ratio` state is exp(lr) of the oxides (next month's
    prices read it) and the outside ratio it hands the responses is their use-weighted sum
    over the regions outside the controller (checked against numpy, every step of a run,
    whichever way the blocks run)."""
    from oreflow.simulate import kernel

    names = list(__import__("inspect").signature(kernel.step.py_func).parameters)
    seen = []
    real = kernel.PARALLEL, kernel.SERIAL

    def checking(step):
        def check(*args):
            step(*args)
            a = dict(zip(names, args, strict=True))
            n, ratio, lr = a["n_paths"], a["ratio"], a["lr"]
            E = ratio.shape[2]
            want = np.exp(lr[:, :, :E].astype(np.float64))
            r = kernel.paths_first(ratio, n)
            # exp in double, rounded once to the single-precision row (kernel.SINGLE)
            np.testing.assert_allclose(r, kernel.paths_first(want, n),
                                       rtol=np.finfo(kernel.SINGLE).eps / 2, atol=0)
            outside = (r * a["outside_w"][None]).sum(1)
            np.testing.assert_allclose(a["outside_ratio_out"], outside, rtol=1e-14, atol=0)
            seen.append(n)
        return check

    kernel.PARALLEL, kernel.SERIAL = (k._replace(step=checking(k.step)) for k in real)
    try:
        ds = run_stress("licensing-2025-04", paths=40, seed=2, months=8, network=network,
                        bands=False)
    finally:
        kernel.PARALLEL, kernel.SERIAL = real
    assert sum(seen) == 40 * 8
    assert float(ds["price_peak_ratio_outside"].max()) > 1.01  # the prices did move


def test_control_months_hand_computed():
    """A control's state over a run of months (shocks.Control.months), by hand: path 0 starts
    at month 2 and is announced at month 1; path 1 runs from month 0 at half the approval
    path. Buyers expect the mean over the next two months of the approval in force (1 where
    the control is not), from the month it is announced."""
    from oreflow.simulate.shocks import Control

    steps = np.array([[0.0, 0.2], [1.0, 0.6]])  # months since start -> share
    full = np.array([[0.0, 1.0]])
    c = Control(start=np.array([2.0, 0.0]), end=np.array([5.0, np.inf]),
                scale=np.array([1.0, 0.5]), review=np.zeros(2), origin=0,
                coverage=np.zeros((1, 1)), paths=[steps, steps, full], leakage=0.0,
                announced=np.array([1.0, 0.0]))
    got = c.months(0, 4, horizon=2)
    assert got.active.tolist() == [[False, True], [False, True], [True, True], [True, True]]
    np.testing.assert_allclose(got.approval[:, :, 0], [[0.2, 0.1], [0.2, 0.3], [0.2, 0.3],
                                                       [0.6, 0.3]])
    np.testing.assert_allclose(got.approval[:, :, 2], [[1.0, 0.5]] * 4)
    np.testing.assert_allclose(got.expected[:, :, 0], [[1.0, 0.2], [0.6, 0.3], [0.4, 0.3],
                                                       [0.6, 0.3]])
    np.testing.assert_allclose(got.expected[:, :, 2], [[1.0, 0.5]] * 4)
    # the same months asked in two runs give the same numbers
    later = c.months(2, 4, horizon=2)
    np.testing.assert_array_equal(later.expected, got.expected[2:])
    # buyers reading their own path: the expected approval follows it, the approval does not
    c.expected = np.array([[0.0, 0.5]])
    got = c.months(0, 4, horizon=2)
    np.testing.assert_allclose(got.approval[:, :, 0], [[0.2, 0.1], [0.2, 0.3], [0.2, 0.3],
                                                       [0.6, 0.3]])
    np.testing.assert_allclose(got.expected[:, :, 0], [[1.0, 0.25], [0.75, 0.25],
                                                       [0.5, 0.25], [0.5, 0.25]])


def test_summary_reductions_skip_nan_exactly_where_there_is_one():
    """results._reduce skips NaN only where the array holds one: a NaN cell is left out of
    its sum and max (not spread to them), and a NaN-free array gives numpy's plain sum."""
    import xarray as xr

    from oreflow.simulate.results import _reduce

    a = xr.DataArray([[1.0, np.nan, 2.0], [3.0, 4.0, 5.0]], dims=("path", "region"))
    np.testing.assert_array_equal(_reduce(a, "sum", "region").values, [3.0, 12.0])
    np.testing.assert_array_equal(_reduce(a, "max", "path").values, [3.0, 4.0, 5.0])
    b = a.fillna(0.25)
    np.testing.assert_array_equal(_reduce(b, "sum", "region").values, b.values.sum(1))


def test_the_kernel_refuses_tiles_of_another_lane_count(network, monkeypatch):
    """The phases loop over kernel.LANES lanes without bounds checks, so `step` refuses
    arrays in tiles of any other width instead of reading past them."""
    from oreflow.simulate import kernel

    calls = []

    def capture(*args):
        calls.append(args)
        return real(*args)

    real = kernel.SERIAL.step
    monkeypatch.setattr(kernel, "SERIAL", kernel.SERIAL._replace(step=capture))
    monkeypatch.setattr(kernel, "PARALLEL", kernel.PARALLEL._replace(step=capture))
    run_stress("licensing-2025-04", paths=64, months=1, network=network, bands=False)
    args = list(calls[0])
    state = args[3]  # S [tile, M, I, lane]
    args[3] = np.zeros((*state.shape[:-1], kernel.LANES // 2))
    with pytest.raises(ValueError, match="tiles of LANES lanes"):
        real(*args)
