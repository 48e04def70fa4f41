"""The risk page and its JSON: the numbers of `oreflow risk` (indicators, chokepoints, who
supplies a perspective) for one perspective and element, and their charts."""

from __future__ import annotations

import plotly.graph_objects as go

from oreflow.io import json_records
from oreflow.network import Network
from oreflow.perspective import TOTAL, allowed_codes, resolve_elements, resolve_perspective
from oreflow.report import STAGE_NAMES
from oreflow.risk import BASIS, chokepoints, indicator_table, sources_table

BASIS_COLOURS = {"domestic": "#31a354", "observed": "#3182bd", "routed": "#756bb1",
                 "allocated": "#fd8d3c"}
STAGE_USE = {"mining": "concentrate feed", "separation": "separated products",
             "metal": "metals and alloys", "magnet": "magnets"}


def risk_json(network: Network, perspective: str, element: str | None = None,
              trade_factors: str = "current", top: int = 10) -> dict:
    """What `oreflow risk --format json` prints (`rows`, for the element if one is given),
    the chokepoint ranking of the perspective over every element, and the perspective's
    regions and note."""
    p = resolve_perspective(perspective, network)
    els = resolve_elements(element, network.elements)
    full = indicator_table(network, p, None, trade_factors)
    rows = full[full["element"].isin(els)] if els else full
    return {"perspective": p.code, "regions": list(p.regions), "note": p.note,
            "tc_setting": trade_factors, "year": network.year,
            "rows": json_records(rows), "chokepoints": json_records(chokepoints(full, top))}


def sources_json(network: Network, perspective: str, element: str | None = None) -> dict:
    """What `oreflow risk --sources --format json` prints (`rows`), with the perspective."""
    p = resolve_perspective(perspective, network)
    src = sources_table(network, p, element or None)
    return {"perspective": p.code, "regions": list(p.regions), "note": p.note,
            "year": network.year, "basis": list(BASIS), "rows": json_records(src)}


def picker_options(network: Network) -> dict:
    """Perspectives (blocs, regions with flows, member states) and elements with output."""
    codes = allowed_codes(network)
    out = network.production_t.sum(("stage", "region"))
    elements = [TOTAL, *[e for e in network.elements if float(out.sel(element=e)) > 0]]
    return {"blocs": codes["blocs"], "regions": codes["regions"],
            "members": codes["member states"], "elements": elements}


def source_bars(rows: list[dict], stage: str, who: str, element: str) -> go.Figure:
    """Country shares of the perspective's supply at one stage, stacked by basis."""
    at = [r for r in rows if r["stage"] == stage and r["element"] == element]
    total = {}
    for r in at:
        total[r["origin"]] = total.get(r["origin"], 0.0) + r["share"]
    origins = sorted(total, key=lambda o: total[o])
    fig = go.Figure()
    for basis in BASIS:
        share = {r["origin"]: r["share"] for r in at if r["basis"] == basis}
        if not share:
            continue
        t = {r["origin"]: r["t"] for r in at if r["basis"] == basis}
        fig.add_trace(go.Bar(
            y=origins, x=[share.get(o, 0.0) for o in origins], orientation="h", name=basis,
            marker_color=BASIS_COLOURS[basis], customdata=[t.get(o, 0.0) for o in origins],
            hovertemplate="%{y}: %{x:.1%} (%{customdata:,.1f} t)<extra>" + basis + "</extra>"))
    fig.update_layout(
        barmode="stack", height=max(220, 60 + 26 * len(origins)),
        title=f"{STAGE_NAMES[stage]}: {who}'s {element} suppliers ({STAGE_USE[stage]})",
        showlegend=True,
        xaxis={"tickformat": ".0%", "range": [0, 1]}, margin={"l": 60, "r": 20, "t": 50, "b": 30},
        legend={"orientation": "h", "y": -0.15}, font={"size": 11})
    if not at:
        fig.add_annotation(text=f"{who} takes no {element} at this stage", showarrow=False,
                           x=0.5, y=0.5, xref="paper", yref="paper")
    return fig


def source_sankey(rows: list[dict], who: str, element: str) -> go.Figure:
    """The perspective's sourcing as a flow diagram: origin countries at each stage into
    what the perspective takes of that stage's product, links coloured by basis."""
    at = [r for r in rows if r["element"] == element and r["t"] > 0]
    nodes: list[str] = []
    index: dict[str, int] = {}

    def node(label: str) -> int:
        if label not in index:
            index[label] = len(nodes)
            nodes.append(label)
        return index[label]

    src, dst, val, col, lab = [], [], [], [], []
    for r in at:
        stage = STAGE_NAMES[r["stage"]]
        src.append(node(f"{r['origin']} · {stage}"))
        dst.append(node(f"{who}: {STAGE_USE[r['stage']]}"))
        val.append(round(r["t"], 3))
        col.append(_rgba(BASIS_COLOURS[r["basis"]]))
        lab.append(r["basis"])
    fig = go.Figure(go.Sankey(
        valueformat=",.1f", valuesuffix=" t",
        node={"label": nodes, "pad": 10, "thickness": 14,
              "color": ["#cccccc" if " · " in n else "#23303f" for n in nodes]},
        link={"source": src, "target": dst, "value": val, "color": col, "label": lab}))
    fig.update_layout(title=f"Where {who}'s {element} comes from at each stage, t REO-eq a year "
                            "(link colour: " + ", ".join(BASIS) + ")",
                      height=max(420, 22 * len(nodes)),
                      margin={"l": 10, "r": 10, "t": 50, "b": 10}, font={"size": 11})
    return fig


def _rgba(hex_colour: str, alpha: float = 0.55) -> str:
    h = hex_colour.lstrip("#")
    r, g, b = (int(h[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"
