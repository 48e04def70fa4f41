"""Price formation: no headline on the numerical guard, partial licences below full cuts,
announcements move prices before the material does, inside prices can fall."""

from __future__ import annotations

import numpy as np
import pytest

from oreflow.scenario import builtin_names, parse_scenario
from oreflow.simulate import run_stress, summary


def _scenario(network, body: str, months: int = 24):
    return parse_scenario(f"name: test\nstart: \"2026-01\"\nmonths: {months}\nshocks:\n{body}",
                          network=network)


@pytest.mark.parametrize("name", builtin_names())
def test_no_headline_median_sits_on_the_price_guard(network, name):
    ds = run_stress(name, paths=200, seed=2, network=network)
    cap = ds.attrs["price_cap"]
    peak = ds["price_peak_ratio"].median("path")
    assert float(peak.max()) < 0.95 * cap, peak.max("region").to_series().nlargest(3)
    assert all(v < 0.5 for v in summary(ds)["price_at_cap_share"].values())


def _peak_outside(network, body, element="Dy", **kw):
    ds = run_stress(_scenario(network, body), paths=20, seed=3, network=network, **kw)
    return float(ds["price_peak_ratio_outside"].sel(element=element).median("path"))


def test_a_partial_licence_with_a_refilling_pipeline_peaks_below_a_full_cut(network):
    partial = _peak_outside(network, """  - type: export_control
    elements: [Dy, Tb]
    duration: 6
    approval: [[0, 0.5]]
    review_months: 1
""")
    full = _peak_outside(network, """  - type: export_control
    elements: [Dy, Tb]
    duration: 6
    approval: [[0, 0.0]]
""")
    assert 1.0 < partial < full


def test_an_announced_control_moves_the_outside_price_in_its_first_month(network):
    """Announced three months ahead, the cut moves the price in month 0, before any
    licence is refused; unannounced, the price stays at base until the control starts."""
    body = """  - type: export_control
    elements: [Dy, Tb]
    start: 3
    approval: [[0, 0.2]]
    announced_months: {ann}
"""
    out = {}
    for ann in (0, 3):
        ds = run_stress(_scenario(network, body.format(ann=ann)), paths=4, seed=1,
                        network=network)
        p = ds["price_usd_per_kg"].sel(quantile=0.5, region="USA", element="Dy")
        out[ann] = (p / ds["base_price_usd_per_kg"].sel(region="USA", element="Dy")).values
    assert out[3][1] > 1.01  # the first month's move shows in the next month's quote
    assert abs(out[0][1] - 1.0) < 1e-9 and abs(out[0][3] - 1.0) < 1e-9
    assert out[0][5] > 1.01  # the unannounced control moves it once in force


def test_export_refusal_lowers_the_price_inside_and_raises_it_outside(network):
    ds = run_stress(_scenario(network, """  - type: export_control
    elements: [Dy, Tb]
    approval: [[0, 0.0]]
"""), paths=8, seed=1, network=network)
    p = ds["price_usd_per_kg"].sel(quantile=0.5, element="Dy")
    base = ds["base_price_usd_per_kg"].sel(element="Dy")
    ratio = (p / base)
    assert float(ratio.sel(region="CHN").min()) < 0.99
    assert float(ratio.sel(region="USA").max()) > 1.5


def test_prices_are_form_specific(network):
    """A cut of magnets only raises magnet grade prices, not the oxide's."""
    ds = run_stress(_scenario(network, """  - type: export_control
    elements: [Dy]
    stages: [magnet]
    approval: [[0, 0.0]]
"""), paths=6, seed=1, network=network)
    oxide_peak = float(ds["price_peak_ratio"].sel(region="USA", element="Dy").median())
    assert oxide_peak < 1.05
    assert float(ds["unmet_physical_t"].sel(region="USA").sum()) + float(
        ds["demand_reduction_t"].sel(region="USA").sum()) > 0
    np.testing.assert_array_less(0, ds["demand_reduction_t"].sel(region="USA").sum("sector"))
