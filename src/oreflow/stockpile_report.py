"""Charts of a stockpile plan, from its JSON (`StockpilePlan.to_dict()` or
`BasketPlan.to_dict()`): holdings by commodity (or element) and form, spend by commodity
against the budget, what the last and next dollar of each commodity avoid, and the expected
and tail (CVaR95) loss of the plan, the 60-day rule and no stockpile. Plotly figures as plain
dicts, drawn by the web app's stockpile page (`/api/stockpile` returns them under `charts`)
and written as one self-contained HTML file by `oreflow stockpile plan --report FILE`."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from oreflow.io import atomic_write_text

STRATEGY_LABELS = {"plan": "plan", "rule_equal_money": "60-day rule at the plan's money",
                   "rule_60_days": "60-day rule", "none": "no stockpile"}
SHORT_LABELS = {"plan": "plan", "rule_equal_money": "rule, same money",
                "rule_60_days": "60-day rule", "none": "nothing"}
STRATEGY_COLOURS = {"plan": "#2ca02c", "rule_equal_money": "#1f77b4",
                    "rule_60_days": "#9ecae1", "none": "#d62728"}
FORM_COLOURS = {"oxide": "#3182bd", "metal": "#756bb1", "magnet": "#e6550d"}
"""The rare earths' forms keep the report's stage colours; a chain's stages take the next
free colour of OTHER_COLOURS."""
OTHER_COLOURS = ("#31a354", "#8c6d31", "#969696", "#17becf", "#bcbd22", "#e377c2",
                 "#7f7f7f", "#9467bd", "#ff7f0e", "#1f77b4")


def _layout(title: str, **kw) -> dict:
    return {"title": {"text": title, "font": {"size": 14}}, "margin": {"t": 50, "r": 20},
            "legend": {"orientation": "h", "y": -0.2}, "height": 380, **kw}


def _basket(plan: dict) -> bool:
    return "commodities" in plan


def holdings_figure(plan: dict) -> dict:
    """How each commodity's (or, for the rare earths alone, each element's) purchases split
    over its forms, in percent, stacked; USD and tonnes in the hover text (the amounts
    differ by orders of magnitude between commodities: `spend_figure` shows them)."""
    key = "commodity" if _basket(plan) else "element"
    rows = plan["holdings"]
    cats = list(dict.fromkeys(r[key] for r in rows))
    forms = list(dict.fromkeys(r["form"] for r in rows))
    traces = []
    others = iter(OTHER_COLOURS * (1 + len(forms) // len(OTHER_COLOURS)))
    colour = {f: FORM_COLOURS.get(f) or next(others) for f in forms}
    for f in forms:
        usd = {c: 0.0 for c in cats}
        t = {c: 0.0 for c in cats}
        for r in rows:
            if r["form"] == f:
                usd[r[key]] += r["usd"]
                t[r[key]] += r["t"]
        traces.append({"type": "bar", "name": f, "x": cats, "y": [usd[c] for c in cats],
                       "customdata": [[usd[c], t[c]] for c in cats],
                       "marker": {"color": colour[f]},
                       "hovertemplate": "%{x}, " + f + ": %{customdata[0]:,.0f} USD, "
                                        "%{customdata[1]:,.2f} t<extra></extra>"})
    return {"data": traces, "layout": _layout(
        f"Holdings by {key} and form (share of the {key}'s purchases)", barmode="stack",
        barnorm="percent", yaxis={"title": "% of purchases"})}


def spend_figure(plan: dict) -> dict:
    """Purchases and interest plus carrying cost over the tenor by commodity, log scale
    (the budget as a line). The rare earths alone: purchases by element."""
    if _basket(plan):
        sp = plan["spend_by_commodity"]
        cats = list(sp)
        tenor = plan["settings"]["tenor_years"]
        purchase = [sp[c]["purchase_usd"] for c in cats]
        carry = [sp[c]["cost_over_tenor_usd"] - sp[c]["purchase_usd"] for c in cats]
        traces = [
            {"type": "bar", "name": "purchases", "x": cats, "y": purchase,
             "marker": {"color": "#3182bd"}},
            {"type": "bar", "name": f"interest and carrying cost, {tenor:g} years",
             "x": cats, "y": carry, "marker": {"color": "#9ecae1"}},
            {"type": "scatter", "mode": "lines", "name": "budget", "x": cats,
             "y": [plan["budget_usd"]] * len(cats),
             "line": {"color": "#d62728", "dash": "dash"}},
        ]
        title = (f"Spend by commodity: {plan['cost_over_tenor_usd'] / 1e9:,.2f} of a "
                 f"{plan['budget_usd'] / 1e9:,.2f} B USD budget (log scale)")
        yaxis = {"title": "USD", "type": "log"}
    else:
        by: dict[str, float] = {}
        for r in plan["holdings"]:
            by[r["element"]] = by.get(r["element"], 0.0) + r["usd"]
        cats = list(by)
        traces = [{"type": "bar", "name": "purchases", "x": cats, "y": [by[c] for c in cats],
                   "marker": {"color": "#3182bd"}}]
        title = (f"Purchases by element: {plan['spent_usd'] / 1e9:,.3f} B USD (cost over the "
                 f"tenor {plan['cost_over_tenor_usd'] / 1e9:,.3f} of a "
                 f"{plan['budget_usd'] / 1e9:,.2f} B USD budget)")
        yaxis = {"title": "USD"}
    return {"data": traces, "layout": _layout(title, barmode="group", yaxis=yaxis)}


def marginal_figure(plan: dict) -> dict | None:
    """Expected loss avoided by each commodity's last and next dollar, with the budget's
    shadow price (basket plans only). Log scale when the values span more than a factor of
    100 (zeros are then not drawn: the hover and the table show them)."""
    if not _basket(plan):
        return None
    mv = plan["marginal_value_per_usd"]
    cats = list(mv)
    lam = plan["budget_shadow_price_usd_per_usd"]
    values = [v for c in cats for v in (mv[c]["last"], mv[c]["next"]) if v]
    log = bool(values) and max(values) > 100 * min(values)

    def shown(v):
        return None if v is None or (log and v <= 0) else v

    traces = [{"type": "bar", "name": name, "x": cats, "y": [shown(mv[c][k]) for c in cats],
               "marker": {"color": colour},
               "hovertemplate": "%{x}: %{y:.4g} USD per USD<extra>" + name + "</extra>"}
              for k, name, colour in (("last", "last dollar", "#31a354"),
                                      ("next", "next dollar", "#a1d99b"))]
    if lam > 0 or not log:
        traces.append({"type": "scatter", "mode": "lines", "name": "budget shadow price",
                       "x": cats, "y": [lam] * len(cats),
                       "line": {"color": "#d62728", "dash": "dash"}})
    return {"data": traces, "layout": _layout(
        f"What the last and next dollar avoid (USD of expected loss per USD; budget shadow "
        f"price {lam:.3g})", barmode="group",
        yaxis={"title": "USD per USD", **({"type": "log"} if log else {})})}


def loss_figure(plan: dict) -> dict:
    """Expected and tail (CVaR95) value lost on fresh paths, by strategy (log scale)."""
    ev = plan["evaluation"]
    keys = [k for k in STRATEGY_LABELS if k in ev["expected_unserved_usd"]]
    x = [SHORT_LABELS[k] for k in keys]
    traces = [{"type": "bar", "name": name, "x": x,
               "y": [max(ev[field][k], 1.0) for k in keys],
               "marker": {"color": colour},
               "hovertemplate": "%{x}: %{y:,.0f} USD<extra>" + name + "</extra>"}
              for field, name, colour in (("expected_unserved_usd", "expected", "#636363"),
                                          ("cvar95_unserved_usd", "worst 5% (CVaR95)",
                                           "#bdbdbd"))]
    return {"data": traces, "layout": _layout(
        "Loss on fresh paths: plan, rule and nothing (USD, log scale)", barmode="group",
        yaxis={"title": "USD", "type": "log"})}


def loss_by_commodity_figure(plan: dict) -> dict | None:
    """Expected loss of each strategy by commodity (basket plans only; log scale)."""
    if not _basket(plan):
        return None
    by = plan["evaluation"]["by_commodity"]
    cats = list(by)
    traces = [{"type": "bar", "name": SHORT_LABELS[k], "x": cats,
               "y": [max(by[c]["expected_unserved_usd"][k], 1.0) for c in cats],
               "marker": {"color": STRATEGY_COLOURS[k]}}
              for k in STRATEGY_LABELS]
    return {"data": traces, "layout": _layout(
        "Expected loss by commodity (USD, log scale; 1 stands for none)",
        barmode="group", yaxis={"title": "USD", "type": "log"})}


def plan_figures(plan: dict) -> dict[str, dict]:
    """Every chart of a plan, by name (those that apply to it)."""
    figs = {"holdings": holdings_figure(plan), "spend": spend_figure(plan),
            "marginal": marginal_figure(plan), "loss": loss_figure(plan),
            "loss_by_commodity": loss_by_commodity_figure(plan)}
    return {k: v for k, v in figs.items() if v is not None}


def render_plan_report(plan: dict) -> str:
    """The plan's charts and headline tables as one HTML string, Plotly.js inlined."""
    from plotly.offline import get_plotlyjs

    from oreflow.report import _jinja, figure_html, fmt_number

    env = _jinja()
    env.filters["num"] = fmt_number
    figs = plan_figures(plan)
    return env.get_template("stockpile_report.html").render(
        plan=plan, basket=_basket(plan), labels=STRATEGY_LABELS,
        charts={k: figure_html(f, f"chart-{k}") for k, f in figs.items()},
        plotlyjs=get_plotlyjs(), created=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"))


def write_plan_report(plan: dict, path: Path | str) -> Path:
    """Render the plan's report and write it atomically."""
    return atomic_write_text(path, render_plan_report(plan))
