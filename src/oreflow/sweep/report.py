"""Tables and an HTML report of a finished sweep: Sobol indices per headline and parameter,
tornado charts of the most uncertain headlines, and the design's ranges.

The HTML follows the stress report's style (same stylesheet, Plotly.js inlined: opens
offline) and is written atomically.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from oreflow.sweep.errors import SweepError
from oreflow.sweep.store import HEADLINE_UNITS, SweepStore


def sobol_table(st: SweepStore) -> pd.DataFrame:
    """One row per (scenario, headline, parameter) with S1, ST and their 95% CI half-widths,
    for the headlines that vary across the design."""
    if not st.complete:
        raise SweepError(f"{st.path}: the sweep is not complete; run it again to finish")
    a = st.attrs
    if a["design"]["method"] != "saltelli":
        raise SweepError(f"{st.path}: Sobol indices need a saltelli design (this one is "
                         f"{a['design']['method']})")
    names = st.root["headline"].attrs["headlines"]
    H = st.array("headline")
    arrays = {k: st.array(f"sobol_{k}") for k in ("S1", "S1_conf", "ST", "ST_conf")}
    rows = []
    for s, scen in enumerate(a["scenarios"]):
        for h, name in enumerate(names):
            if not np.isfinite(arrays["ST"][s, h]).any():
                continue
            y = H[s, :, h]
            for d, par in enumerate(a["parameters"]):
                rows.append({"scenario": scen, "headline": name, "parameter": par,
                             "S1": arrays["S1"][s, h, d], "S1_ci95": arrays["S1_conf"][s, h, d],
                             "ST": arrays["ST"][s, h, d], "ST_ci95": arrays["ST_conf"][s, h, d],
                             "headline_mean": float(np.mean(y)),
                             "headline_p5": float(np.quantile(y, 0.05)),
                             "headline_p95": float(np.quantile(y, 0.95))})
    return pd.DataFrame(rows, columns=["scenario", "headline", "parameter", "S1", "S1_ci95",
                                       "ST", "ST_ci95", "headline_mean", "headline_p5",
                                       "headline_p95"])


def top_headlines(table: pd.DataFrame, n: int, prefer: list[str] = ()) -> list[str]:
    """Headlines to show first: those named in `prefer`, then by their spread across the
    design (p95 - p5 over the mean)."""
    if table.empty:
        return []
    h = table.groupby("headline", sort=False)[["headline_mean", "headline_p5",
                                              "headline_p95"]].first()
    spread = (h["headline_p95"] - h["headline_p5"]) / h["headline_mean"].abs().clip(lower=1e-9)
    order = [x for x in prefer if x in h.index]
    order += [x for x in spread.sort_values(ascending=False).index if x not in order]
    return order[:n]


def shown(st: SweepStore, table: pd.DataFrame, scenario: str, top: int) -> pd.DataFrame:
    """A scenario's rows for the `top` headlines (the sweep file's `headlines` first, then
    the most uncertain), headline by headline, parameters by total index."""
    t = table[table["scenario"] == scenario]
    heads = top_headlines(t, top, st.attrs["sweep_spec"].get("headlines", []))
    t = t[t["headline"].isin(heads)].copy()
    t["order"] = t["headline"].map({h: i for i, h in enumerate(heads)})
    return t.sort_values(["order", "ST"], ascending=[True, False]).drop(columns="order")


def design_table(st: SweepStore) -> pd.DataFrame:
    a = st.attrs
    rows = []
    for name, kind, d in zip(a["parameters"], a["parameter_kinds"], a["parameter_dists"],
                             strict=True):
        rows.append({"parameter": name, "kind": kind, "dist": d["dist"], "low": d["low"],
                     "mode": d.get("mode", np.nan), "high": d["high"]})
    return pd.DataFrame(rows)


def render_report(st: SweepStore, top: int = 8) -> str:
    """The sweep report as one HTML string (Plotly.js inlined)."""
    import plotly.graph_objects as go
    from plotly.offline import get_plotlyjs

    from oreflow.report import _jinja, figure_html, fmt_number

    table = sobol_table(st)
    a = st.attrs
    charts = []
    for scen in a["scenarios"]:
        t = table[table["scenario"] == scen]
        for h in top_headlines(t, top, a["sweep_spec"].get("headlines", [])):
            rows = t[t["headline"] == h].sort_values("ST")
            fig = go.Figure([
                go.Bar(y=rows["parameter"], x=rows["ST"], orientation="h", name="total ST",
                       error_x={"type": "data", "array": rows["ST_ci95"]},
                       marker_color="#e6550d"),
                go.Bar(y=rows["parameter"], x=rows["S1"], orientation="h",
                       name="first-order S1", error_x={"type": "data",
                                                       "array": rows["S1_ci95"]},
                       marker_color="#3182bd")])
            fig.update_layout(barmode="group", height=140 + 45 * len(rows),
                              title=f"{scen}: {h}", xaxis_title="Sobol index (share of "
                              "variance), 95% CI", margin={"l": 200, "r": 20, "t": 50, "b": 40})
            charts.append(figure_html(fig, f"tornado-{len(charts)}"))
    env = _jinja()
    env.filters["num"] = fmt_number
    return env.get_template("sweep.html").render(
        attrs=a, charts=charts, table=table.to_dict("records"),
        design=design_table(st).to_dict("records"), units=HEADLINE_UNITS,
        plotlyjs=get_plotlyjs(), created=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"))


def write_report(st: SweepStore, path: Path | str, top: int = 8) -> Path:
    from oreflow.io import atomic_write_text

    return atomic_write_text(path, render_report(st, top))
